"""Failed and stuck drivers against the real kube-apiserver, with the operator and the kubelet
played as v2.5.2 and a kubelet behave:

* a failed driver's exit code reaches the error (from the driver pod, else from the operator's
  "driver container failed with ExitCode: N, Reason: R"), so a data-contract ``fail`` (65) is
  not retried by the Prefect task while other failures are;
* a driver that cannot start (image not pullable, invalid image name, missing Secret, no node
  to run on) fails the job within ``driver_start_timeout_seconds`` with the pod's reason, and
  the app is deleted. The operator itself keeps such an app SUBMITTED (its driver pod stays
  Pending); what it does report (driver pod not found, a pod refused by the kubelet) fails the
  job with its errorMessage.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from lakehouse.errors import CONTRACT_VIOLATION_EXIT, is_contract_violation, is_retryable
from lakehouse.jobs import METRICS_MARKER
from lakehouse.k8s.errors import SparkApplicationFailed, SparkDriverStartFailed
from lakehouse.k8s.render import render_spec
from lakehouse.settings import get_settings
from tests.fixtures.k8s import K8sCluster
from tests.k8s.conftest import BackgroundRun, Harness, make_job
from tests.k8s.support import FakeKubelet, Operator

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]

QUALITY = [{"source": "orders", "rule": "amount_positive", "severity": "fail", "failed": 3}]


def _security(h: Harness) -> dict[str, Any]:
    spec = render_spec(make_job(), h.settings)["driver"]
    return {"pod_security": spec["podSecurityContext"], "security": spec["securityContext"]}


def _start(h: Harness, operator: Operator) -> tuple[BackgroundRun, str, str]:
    job = make_job()
    name = h.name(job)
    run = h.start(job)
    operator.wait_for(name)
    operator.submit(name)
    return run, name, f"{name}-driver"


# --------------------------------------------------------------------------- exit code


def test_contract_fail_exit_code_comes_from_the_driver_pod(
    harness: Harness, operator: Operator, kubelet: FakeKubelet, admin_api: client.ApiClient
) -> None:
    ns = operator.namespace
    run, name, pod = _start(harness, operator)
    kubelet.start_pod(ns, pod, **_security(harness))
    operator.running(name)
    kubelet.write(ns, pod, METRICS_MARKER + json.dumps(QUALITY), "contract rule amount_positive (fail): 3 rows")
    kubelet.finish(ns, pod, exit_code=CONTRACT_VIOLATION_EXIT)
    operator.driver_ended(name, client.CoreV1Api(admin_api))
    operator.failed(name)
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed)
    assert error.exit_code == 65 and is_contract_violation(error) and not is_retryable(error)
    assert error.error_message == "driver container failed with ExitCode: 65, Reason: Error"
    assert error.metrics == QUALITY  # the rule outcomes, for the task's quality artifact
    assert "failed with exit code 65" in str(error)


def test_exit_code_is_read_from_the_pod_when_the_operator_saw_no_container_status(
    harness: Harness, operator: Operator, kubelet: FakeKubelet
) -> None:
    """The operator looked at the pod before the kubelet reported the container's exit
    ("driver container status missing") and the app is final; the pod has the code."""
    ns = operator.namespace
    run, name, pod = _start(harness, operator)
    kubelet.start_pod(ns, pod, **_security(harness))
    operator.running(name)
    operator._update(
        name,
        lambda app, st: st.update(
            applicationState={"state": "FAILING", "errorMessage": "driver container status missing"}
        ),
    )
    kubelet.finish(ns, pod, exit_code=65)
    operator.failed(name)
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed)
    assert error.error_message == "driver container status missing"
    assert error.exit_code == 65 and is_contract_violation(error)


def test_exit_code_falls_back_to_the_operators_message_when_the_pod_is_gone(
    harness: Harness, operator: Operator, kubelet: FakeKubelet
) -> None:
    ns = operator.namespace
    run, name, pod = _start(harness, operator)
    kubelet.start_pod(ns, pod, **_security(harness))
    operator.running(name)
    kubelet.finish(ns, pod, exit_code=65)
    operator.failing(name, exit_code=65)
    kubelet.core.delete_namespaced_pod(pod, ns, grace_period_seconds=0)
    operator.failed(name)
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed)
    assert error.exit_code == 65 and is_contract_violation(error)


def test_other_exit_codes_stay_retryable(
    harness: Harness, operator: Operator, kubelet: FakeKubelet, admin_api: client.ApiClient
) -> None:
    ns = operator.namespace
    run, name, pod = _start(harness, operator)
    kubelet.start_pod(ns, pod, **_security(harness))
    operator.running(name)
    kubelet.finish(ns, pod, exit_code=137)
    operator.driver_ended(name, client.CoreV1Api(admin_api))
    operator.failed(name)
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed)
    assert error.exit_code == 137 and not is_contract_violation(error) and is_retryable(error)


class _FailingOperator(threading.Thread):
    """Fails every app whose arguments carry ``marker``: the driver pod exits ``exit_code``."""

    def __init__(
        self, operator: Operator, kubelet: FakeKubelet, core: client.CoreV1Api, marker: str, exit_code: int
    ) -> None:
        super().__init__(name="failing-operator", daemon=True)
        self.operator, self.kubelet, self.core = operator, kubelet, core
        self.marker, self.exit_code = marker, exit_code
        self.seen: list[str] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        op, ns = self.operator, self.operator.namespace
        while not self.stop.is_set():
            try:
                for app in op.objects.list_namespaced_custom_object(*op._args)["items"]:
                    name = app["metadata"]["name"]
                    if self.marker not in app["spec"]["arguments"] or name in self.seen:
                        continue
                    self.seen.append(name)
                    pod = f"{name}-driver"
                    op.submit(name)
                    driver = app["spec"]["driver"]
                    self.kubelet.start_pod(
                        ns, pod, pod_security=driver["podSecurityContext"], security=driver["securityContext"]
                    )
                    op.running(name)
                    self.kubelet.write(ns, pod, METRICS_MARKER + json.dumps(QUALITY))
                    self.kubelet.finish(ns, pod, exit_code=self.exit_code)
                    op.driver_ended(name, self.core)
                    op.failed(name)
            except BaseException as exc:
                self.errors.append(exc)
                return
            self.stop.wait(0.05)


@pytest.fixture
def task_env(
    k8s_cluster: K8sCluster, namespace: str, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The Prefect task's settings: the Kubernetes backend on the test namespace."""
    marker = f"s3a://lake/retry-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig_path))
    monkeypatch.setenv("LAKEHOUSE_BACKEND", "kubernetes")
    monkeypatch.setenv("LAKEHOUSE_KUBERNETES__NAMESPACE", namespace)
    monkeypatch.setenv("LAKEHOUSE_KUBERNETES__LOG_DRAIN_SECONDS", "2")
    monkeypatch.setenv("LAKEHOUSE_SPARK__JOB_TIMEOUT_SECONDS", "60")
    get_settings.cache_clear()
    yield marker
    get_settings.cache_clear()


@pytest.mark.parametrize(("exit_code", "apps"), [(65, 1), (1, 3)])
def test_the_task_retries_other_failures_but_not_a_contract_fail(
    task_env: str,
    operator: Operator,
    kubelet: FakeKubelet,
    admin_api: client.ApiClient,
    exit_code: int,
    apps: int,
) -> None:
    """run_spark_job (retries=2) on the Kubernetes backend: exit 65 ends after one app; exit 1
    is tried three times, each attempt a new app."""
    from prefect import flow

    from tasks.spark import run_spark_job

    job = make_job(args=("--root", task_env))

    @flow(name="retry-check")
    def once() -> Any:
        return run_spark_job.with_options(retry_delay_seconds=0)(job)

    auto = _FailingOperator(operator, kubelet, client.CoreV1Api(admin_api), task_env, exit_code)
    auto.start()
    try:
        state = once(return_state=True)
    finally:
        auto.stop.set()
        auto.join(10)
    assert not auto.errors, auto.errors
    assert state.is_failed()
    with pytest.raises(SparkApplicationFailed) as failed:
        state.result()
    assert failed.value.exit_code == exit_code
    assert len(auto.seen) == apps, auto.seen
    attempts = sorted(operator.get(n)["metadata"]["labels"]["lakehouse.io/attempt"] for n in auto.seen)
    assert attempts == [str(i) for i in range(1, apps + 1)]


# --------------------------------------------------------------------------- driver start


def test_image_pull_backoff_fails_after_the_start_timeout_and_deletes_the_app(
    admin_api: client.ApiClient, namespace: str, operator: Operator, kubelet: FakeKubelet
) -> None:
    h = Harness(admin_api, namespace, driver_start_timeout_seconds=2.0)
    run, name, pod = _start(h, operator)
    started = time.monotonic()
    kubelet.start_waiting_pod(
        namespace,
        pod,
        "ErrImagePull",
        'failed to pull image "registry.invalid/spark:x": dial tcp: lookup registry.invalid: no such host',
        **_security(h),
    )
    run.wait_for_line("is not starting: ErrImagePull")
    kubelet.set_waiting(namespace, pod, "ImagePullBackOff", 'Back-off pulling image "registry.invalid/spark:x"')
    error = run.wait_error()
    assert 2.0 <= time.monotonic() - started < 15
    assert isinstance(error, SparkDriverStartFailed) and isinstance(error, SparkApplicationFailed)
    assert (error.reason, error.pod, error.permanent) == ("ImagePullBackOff", pod, False)
    assert error.state == "SUBMITTED"  # as the operator leaves an app whose pod is Pending
    assert 'Back-off pulling image "registry.invalid/spark:x"' in str(error)
    assert is_retryable(error)  # a registry may come back, a tag may be pushed
    assert not operator.exists(name)  # deleted, 404 confirmed
    report = h.reports[0]
    assert report.outcome == "failed"
    assert [c.state for c in report.timeline][-2:] == ["DRIVER NOT STARTING: ImagePullBackOff", "DELETED"]


def test_invalid_image_name_fails_at_once_and_is_not_retried(
    harness: Harness, operator: Operator, kubelet: FakeKubelet
) -> None:
    ns = operator.namespace
    assert harness.settings.kubernetes.driver_start_timeout_seconds == 180
    run, name, pod = _start(harness, operator)
    started = time.monotonic()
    kubelet.start_waiting_pod(
        ns,
        pod,
        "InvalidImageName",
        'Failed to apply default image tag "Lakehouse-Spark:latest": couldn\'t parse image name',
        **_security(harness),
    )
    error = run.wait_error()
    assert time.monotonic() - started < 10
    assert isinstance(error, SparkDriverStartFailed)
    assert (error.reason, error.permanent) == ("InvalidImageName", True)
    assert "couldn't parse image name" in str(error)
    assert not is_retryable(error)
    assert not operator.exists(name)


def test_missing_secret_fails_after_the_start_timeout_with_the_kubelets_message(
    admin_api: client.ApiClient, namespace: str, operator: Operator, kubelet: FakeKubelet
) -> None:
    h = Harness(
        admin_api,
        namespace,
        driver_start_timeout_seconds=1.5,
        env_secret_refs={"AWS_ACCESS_KEY_ID": "s3-credentials:access-key"},
    )
    run, name, pod = _start(h, operator)
    kubelet.start_waiting_pod(
        namespace, pod, "CreateContainerConfigError", 'secret "s3-credentials" not found', **_security(h)
    )
    error = run.wait_error()
    assert isinstance(error, SparkDriverStartFailed)
    assert error.reason == "CreateContainerConfigError"
    assert error.pod_message == 'secret "s3-credentials" not found'
    assert f'pod {namespace}/{pod} is CreateContainerConfigError (secret "s3-credentials" not found)' in str(error)
    assert not operator.exists(name)


def test_a_driver_that_starts_within_the_timeout_runs_on(
    admin_api: client.ApiClient, namespace: str, operator: Operator, kubelet: FakeKubelet
) -> None:
    h = Harness(admin_api, namespace, driver_start_timeout_seconds=3.0)
    run, name, pod = _start(h, operator)
    kubelet.start_waiting_pod(
        namespace, pod, "CreateContainerConfigError", 'secret "s3-credentials" not found', **_security(h)
    )
    run.wait_for_line("is not starting: CreateContainerConfigError")
    time.sleep(1.0)
    kubelet.set_running(namespace, pod)  # the Secret was created in time
    operator.running(name)
    kubelet.write(namespace, pod, "driver started after all")
    run.wait_for_line("driver started after all")
    time.sleep(3.0)  # past the start timeout: the driver runs, nothing fails
    assert not run.done
    kubelet.finish(namespace, pod)
    operator.succeeding(name)
    operator.completed(name)
    assert run.wait().state == "COMPLETED"


def test_unschedulable_driver_fails_after_the_start_timeout(
    admin_api: client.ApiClient, namespace: str, operator: Operator, kubelet: FakeKubelet
) -> None:
    h = Harness(admin_api, namespace, driver_start_timeout_seconds=1.5)
    run, name, pod = _start(h, operator)
    kubelet.create_unschedulable_pod(
        namespace,
        pod,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes "
        "are available: 1 No preemption victims found for incoming pod.",
        **_security(h),
    )
    error = run.wait_error()
    assert isinstance(error, SparkDriverStartFailed)
    assert error.reason == "Unschedulable"
    assert "1 Insufficient cpu" in str(error)
    assert not operator.exists(name)


def test_operator_reported_missing_driver_pod_fails_with_its_message(
    harness: Harness, operator: Operator, admin_api: client.ApiClient
) -> None:
    """No driver pod after the operator's grace period: FAILING "driver pod not found"."""
    run, name, _ = _start(harness, operator)
    operator.driver_ended(name, client.CoreV1Api(admin_api))
    operator.failed(name)
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed)
    assert not isinstance(error, SparkDriverStartFailed)
    assert (error.error_message, error.exit_code) == ("driver pod not found", None)
    assert "driver pod not found" in str(error)


def test_pod_refused_by_the_kubelet_fails_with_the_pods_reason(
    harness: Harness, operator: Operator, kubelet: FakeKubelet, admin_api: client.ApiClient
) -> None:
    """The kubelet refuses the pod (OutOfcpu): phase Failed, no container status; the operator
    writes "driver container status missing", the backend adds the pod's reason."""
    ns = operator.namespace
    run, name, pod = _start(harness, operator)
    kubelet.start_pod(ns, pod, **_security(harness))
    kubelet.reject(ns, pod, "OutOfcpu", "Pod was rejected: Node didn't have enough resource: cpu")
    operator.driver_ended(name, client.CoreV1Api(admin_api))
    operator.failed(name)
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed)
    assert (error.error_message, error.exit_code) == ("driver container status missing", None)
    assert "driver pod OutOfcpu: Pod was rejected: Node didn't have enough resource: cpu" in str(error)
