"""The Kubernetes backend's pure parts: the driver's exit code (pod first, then the operator's
errorMessage), why a driver pod does not start, which failures Prefect retries, pod sizing and
PVC mounts in the rendered SparkApplication, and the Spark UI a person can open."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client
from prefect.states import Failed
from pydantic import ValidationError

from lakehouse.errors import ConfigError, SparkJobError, is_contract_violation, is_retryable
from lakehouse.jobs import Resources, SparkJob
from lakehouse.k8s import pods, states
from lakehouse.k8s.errors import SparkApplicationFailed, SparkDriverStartFailed
from lakehouse.k8s.logs import DriverLogFollower
from lakehouse.k8s.render import render_spec
from lakehouse.k8s.report import AppReport
from lakehouse.settings import KubernetesSettings, Settings
from tasks.spark import _retry_unless_config_error

DRIVER = "spark-kubernetes-driver"


def _pod(
    *,
    waiting: tuple[str, str] | None = None,
    exit_code: int | None = None,
    running: bool = False,
    unschedulable: str | None = None,
    phase: str = "Pending",
    reason: str | None = None,
    node: str | None = "node-1",
) -> client.V1Pod:
    state = None
    if waiting:
        state = client.V1ContainerState(waiting=client.V1ContainerStateWaiting(reason=waiting[0], message=waiting[1]))
    elif exit_code is not None:
        state = client.V1ContainerState(
            terminated=client.V1ContainerStateTerminated(
                exit_code=exit_code, reason="Error" if exit_code else "Completed"
            )
        )
    elif running:
        state = client.V1ContainerState(running=client.V1ContainerStateRunning())
    statuses = (
        None
        if state is None
        else [
            client.V1ContainerStatus(
                name="sidecar",
                image="x",
                image_id="",
                ready=True,
                restart_count=0,
                state=client.V1ContainerState(terminated=client.V1ContainerStateTerminated(exit_code=3)),
            ),
            client.V1ContainerStatus(name=DRIVER, image="x", image_id="", ready=False, restart_count=0, state=state),
        ]
    )
    conditions = None
    if unschedulable is not None:
        conditions = [
            client.V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable", message=unschedulable)
        ]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="app-driver", uid="u-1"),
        spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name=DRIVER)]),
        status=client.V1PodStatus(phase=phase, reason=reason, container_statuses=statuses, conditions=conditions),
    )


# --------------------------------------------------------------------------- exit code


@pytest.mark.parametrize(
    ("message", "code"),
    [
        # operator v2.5.2, controller.go updateDriverState
        ("driver container failed with ExitCode: 65, Reason: Error", 65),
        ("driver container failed with ExitCode: 137, Reason: OOMKilled", 137),
        ("driver container status missing", None),
        ("driver pod not found", None),
        ("failed to submit spark application: failed to run spark-submit: ExitCode: 65", None),
        (None, None),
    ],
)
def test_exit_code_from_the_operators_error_message(message: str | None, code: int | None) -> None:
    assert states.exit_code_from_error_message(message) == code


def test_exit_code_from_the_driver_pod() -> None:
    assert pods.exit_code(_pod(exit_code=65), DRIVER) == 65  # not the sidecar's 3
    assert pods.exit_code(_pod(running=True), DRIVER) is None
    assert pods.exit_code(_pod(), DRIVER) is None
    assert pods.started(_pod(exit_code=65), DRIVER) and pods.started(_pod(running=True), DRIVER)
    assert not pods.started(_pod(waiting=("ContainerCreating", "")), DRIVER)


def test_failed_app_error_carries_exit_code_and_a_contract_fail_is_not_retried() -> None:
    def failed(code: int | None) -> SparkApplicationFailed:
        return SparkApplicationFailed(
            "silver",
            "failed",
            app="a",
            namespace="ns",
            error_message="x",
            state="FAILED",
            attempts=1,
            exit_code=code,
            metrics=[{"rule": "r", "failed": 3}],
        )

    contract = failed(65)
    assert contract.exit_code == 65 and contract.metrics == [{"rule": "r", "failed": 3}]
    assert is_contract_violation(contract) and not is_retryable(contract)
    assert is_retryable(failed(1)) and is_retryable(failed(None))
    assert not is_retryable(ConfigError("bad"))
    # The Prefect task's retry condition, on the state a failed attempt leaves.
    assert _retry_unless_config_error(None, None, Failed(data=contract)) is False
    assert _retry_unless_config_error(None, None, Failed(data=failed(1))) is True
    assert _retry_unless_config_error(None, None, Failed(data=SparkJobError("j", "x"))) is True


# --------------------------------------------------------------------------- driver start


@pytest.mark.parametrize(
    ("pod", "reason", "permanent"),
    [
        (_pod(waiting=("ErrImagePull", "pull access denied")), "ErrImagePull", False),
        (_pod(waiting=("ImagePullBackOff", "Back-off pulling image")), "ImagePullBackOff", False),
        (_pod(waiting=("InvalidImageName", 'couldn\'t parse image name "A:b"')), "InvalidImageName", True),
        (_pod(waiting=("ErrImageNeverPull", "image not present")), "ErrImageNeverPull", True),
        (_pod(waiting=("CreateContainerConfigError", 'secret "s3" not found')), "CreateContainerConfigError", False),
        (_pod(unschedulable="0/1 nodes are available: 1 Insufficient cpu.", node=None), "Unschedulable", False),
    ],
)
def test_driver_start_problems(pod: client.V1Pod, reason: str, permanent: bool) -> None:
    problem = pods.start_problem(pod, DRIVER)
    assert problem is not None
    assert (problem.reason, problem.permanent) == (reason, permanent)
    assert problem.message


@pytest.mark.parametrize(
    "pod",
    [
        _pod(),
        _pod(waiting=("ContainerCreating", "")),
        _pod(running=True),
        _pod(exit_code=1),
    ],
)
def test_a_starting_running_or_ended_driver_is_no_start_problem(pod: client.V1Pod) -> None:
    assert pods.start_problem(pod, DRIVER) is None


def test_pod_level_failure_reason() -> None:
    pod = _pod(phase="Failed", reason="OutOfcpu")
    pod.status.message = "Pod Node didn't have enough resource: cpu"
    assert pods.failure(pod) == "OutOfcpu: Pod Node didn't have enough resource: cpu"
    assert pods.failure(_pod(exit_code=1, phase="Failed")) is None


def test_driver_start_failure_error() -> None:
    def err(permanent: bool) -> SparkDriverStartFailed:
        return SparkDriverStartFailed(
            "bronze",
            app="a",
            namespace="ns",
            pod="a-driver",
            reason="InvalidImageName",
            pod_message='couldn\'t parse image name "Bad:Name"',
            waited_s=2.2,
            permanent=permanent,
            error_message=None,
            state="SUBMITTED",
            attempts=1,
        )

    e = err(True)
    assert isinstance(e, SparkApplicationFailed)
    assert 'pod ns/a-driver is InvalidImageName (couldn\'t parse image name "Bad:Name")' in str(e)
    assert "the app was deleted" in str(e) and e.state == "SUBMITTED"
    assert not is_retryable(e)
    assert is_retryable(err(False)) and "for 2s (kubernetes.driver_start_timeout_seconds)" in str(err(False))


class _FakeCore:
    """CoreV1Api stand-in: a pod that is not on a node yet (its log: an empty 200)."""

    def __init__(self, pod: client.V1Pod) -> None:
        self.pod = pod
        self.pod_reads = 0
        self.log_reads = 0

    def read_namespaced_pod(self, *_: Any, **__: Any) -> client.V1Pod:
        self.pod_reads += 1
        return self.pod

    def read_namespaced_pod_log(self, *_: Any, **__: Any) -> Any:
        self.log_reads += 1
        raise AssertionError("the log of a container that never started was opened")


def test_log_follower_backs_off_on_a_pod_that_has_not_started_and_reports_each_read() -> None:
    core = _FakeCore(_pod(unschedulable="0/1 nodes are available", node=None))
    seen: list[str] = []
    follower = DriverLogFollower(
        core,
        "ns",
        DRIVER,
        lambda _: None,  # type: ignore[arg-type]
        on_pod=lambda pod: seen.append(pod.metadata.name),
    )
    follower.start()
    follower.follow("app-driver", 1)
    time.sleep(1.5)
    follower.stop()
    assert core.log_reads == 0
    assert 2 <= core.pod_reads <= 6  # a backoff (0.25 s doubling), not a busy loop
    assert seen == ["app-driver"] * core.pod_reads


def test_log_follower_opens_the_log_once_the_container_started() -> None:
    core = _FakeCore(_pod(waiting=("ErrImagePull", "nope")))
    done = threading.Event()

    def read_log(*_: Any, **__: Any) -> Any:
        core.log_reads += 1
        done.set()
        raise client.ApiException(status=400)

    core.read_namespaced_pod_log = read_log  # type: ignore[method-assign]
    follower = DriverLogFollower(core, "ns", DRIVER, lambda _: None)  # type: ignore[arg-type]
    follower.start()
    follower.follow("app-driver", 1)
    time.sleep(0.6)
    assert core.log_reads == 0
    core.pod = _pod(running=True)
    assert done.wait(5)
    follower.stop()


# --------------------------------------------------------------------------- sizing, volumes


def _spec(settings: Settings | None = None, **resources: Any) -> dict[str, Any]:
    job = SparkJob(name="x", entrypoint="spark_jobs.bronze", resources=Resources(**resources))
    return render_spec(job, settings or Settings())


def test_default_pods_fit_a_two_cpu_node_and_cores_stay_task_slots() -> None:
    spec = _spec()
    for role in ("driver", "executor"):
        pod = spec[role]
        assert (pod["cores"], pod["coreRequest"], pod["memory"], pod["memoryOverhead"]) == (1, "500m", "1g", "512m")
    # driver + executor + the operator's controller and webhook (100m each) on 2 CPUs
    requested = 2 * 0.5 + 2 * 0.1
    assert requested <= 0.75 * 2
    k = KubernetesSettings()
    assert (k.driver_core_request, k.executor_core_request) == ("500m", "500m")


def test_job_resources_win_over_the_sizing_settings() -> None:
    settings = Settings(
        kubernetes=KubernetesSettings(
            driver_core_request="250m",
            executor_core_request="0.75",
            driver_memory="768m",
            executor_memory="2g",
            driver_memory_overhead=None,
            executor_memory_overhead="1g",
        )
    )
    spec = _spec(settings)
    assert (spec["driver"]["coreRequest"], spec["driver"]["memory"]) == ("250m", "768m")
    assert "memoryOverhead" not in spec["driver"]  # None: Spark's own default
    assert (spec["executor"]["coreRequest"], spec["executor"]["memory"], spec["executor"]["memoryOverhead"]) == (
        "0.75",
        "2g",
        "1g",
    )
    spec = _spec(
        settings,
        driver_cores=2,
        driver_core_request="2",
        driver_memory="4g",
        executor_cores=4,
        executor_core_request="1500m",
        executor_memory_overhead="2g",
    )
    assert (spec["driver"]["cores"], spec["driver"]["coreRequest"], spec["driver"]["memory"]) == (2, "2", "4g")
    assert (spec["executor"]["cores"], spec["executor"]["coreRequest"], spec["executor"]["memoryOverhead"]) == (
        4,
        "1500m",
        "2g",
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"driver_core_request": "half"},
        {"executor_core_request": "0"},
        {"driver_memory": "1GB"},
        {"executor_memory_overhead": "lots"},
    ],
)
def test_bad_sizing_is_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        KubernetesSettings(**bad)


def test_pvc_volumes_become_spark_conf_for_driver_and_executors() -> None:
    settings = Settings(
        kubernetes=KubernetesSettings(
            volumes=[
                {"name": "data", "claim_name": "lake-data", "mount_path": "/data"},
                {"name": "ref", "claim_name": "reference", "mount_path": "/ref", "read_only": True, "sub_path": "v2"},
            ]
        )
    )
    spec = _spec(settings)
    conf = {k: v for k, v in spec["sparkConf"].items() if ".volumes." in k}
    expected = {}
    for role in ("driver", "executor"):
        base = f"spark.kubernetes.{role}.volumes.persistentVolumeClaim"
        expected |= {
            f"{base}.data.mount.path": "/data",
            f"{base}.data.mount.readOnly": "false",
            f"{base}.data.options.claimName": "lake-data",
            f"{base}.ref.mount.path": "/ref",
            f"{base}.ref.mount.readOnly": "true",
            f"{base}.ref.options.claimName": "reference",
            f"{base}.ref.mount.subPath": "v2",
        }
    assert conf == expected
    # Not also in spec.volumes: the webhook would add a second volume of the same name.
    assert {v["name"] for v in spec["volumes"]} == {"spark-local-dir-1", "tmp"}
    for role in ("driver", "executor"):
        assert {m["name"] for m in spec[role]["volumeMounts"]} == {"spark-local-dir-1", "tmp"}


def test_pvc_volumes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LAKEHOUSE_KUBERNETES__VOLUMES", '[{"name": "data", "claim_name": "lake-data", "mount_path": "/data"}]'
    )
    (volume,) = Settings().kubernetes.volumes
    assert (volume.name, volume.claim_name, volume.mount_path, volume.read_only) == (
        "data",
        "lake-data",
        "/data",
        False,
    )


@pytest.mark.parametrize(
    ("volumes", "message"),
    [
        ([{"name": "tmp", "claim_name": "c", "mount_path": "/x"}], "used by the backend"),
        ([{"name": "spark-local-dir-2", "claim_name": "c", "mount_path": "/x"}], "used by the backend"),
        ([{"name": "data", "claim_name": "c", "mount_path": "data"}], "absolute path"),
        ([{"name": "data", "claim_name": "c", "mount_path": "/tmp"}], "absolute path"),
        ([{"name": "Data", "claim_name": "c", "mount_path": "/x"}], "DNS-1123"),
        (
            [
                {"name": "a", "claim_name": "c", "mount_path": "/x"},
                {"name": "a", "claim_name": "d", "mount_path": "/y"},
            ],
            "name must be distinct",
        ),
        (
            [
                {"name": "a", "claim_name": "c", "mount_path": "/x"},
                {"name": "b", "claim_name": "d", "mount_path": "/x"},
            ],
            "mount_path must be distinct",
        ),
        ([{"name": "a", "claim_name": "c", "mount_path": "/x", "host_path": "/srv"}], "host_path"),
    ],
)
def test_bad_volumes_are_refused(volumes: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KubernetesSettings(volumes=volumes)


# --------------------------------------------------------------------------- Spark UI


def _app(**driver_info: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "app"},
        "status": {"applicationState": {"state": "RUNNING"}, "driverInfo": driver_info},
    }


def test_spark_ui_is_a_port_forward_command_and_a_local_url_not_the_cluster_ip() -> None:
    report = AppReport(name="app", namespace="spark-jobs", job="bronze")
    report.observe(_app())
    assert report.spark_ui is None and "| Spark UI | (not reported) |" in report.markdown()
    report.observe(_app(webUIServiceName="app-ui-svc", webUIPort=4040, webUIAddress="10.0.0.61:4040"))
    assert report.spark_ui == "http://127.0.0.1:4040"
    assert report.spark_ui_port_forward == ("kubectl -n spark-jobs port-forward svc/app-ui-svc 4040:4040")
    assert report.spark_ui_cluster_address == "http://app-ui-svc.spark-jobs.svc:4040"
    row = next(line for line in report.markdown().splitlines() if "Spark UI" in line)
    assert row == (
        "| Spark UI | `kubectl -n spark-jobs port-forward svc/app-ui-svc 4040:4040`, "
        "then open http://127.0.0.1:4040 (in-cluster: "
        "http://app-ui-svc.spark-jobs.svc:4040) |"
    )
    assert "10.0.0.61" not in report.markdown()


def test_spark_ui_from_the_operators_ingress_or_the_url_template() -> None:
    report = AppReport(name="app", namespace="ns", job="bronze")
    report.observe(
        _app(webUIServiceName="app-ui-svc", webUIPort=4040, webUIIngressAddress="http://spark.example.test/ns/app")
    )
    assert (report.spark_ui, report.spark_ui_port_forward) == ("http://spark.example.test/ns/app", None)
    templated = AppReport(name="app", namespace="ns", job="bronze")
    templated.observe(
        _app(webUIServiceName="app-ui-svc", webUIPort=4040),
        ui_url_template="https://ui.example.test/{namespace}/{app}/",
    )
    assert templated.spark_ui_text() == "https://ui.example.test/ns/app/"
    assert KubernetesSettings(spark_ui_url="https://x/{app}").spark_ui_url == "https://x/{app}"
    with pytest.raises(ValidationError, match="only the placeholders"):
        KubernetesSettings(spark_ui_url="https://x/{pod}")
