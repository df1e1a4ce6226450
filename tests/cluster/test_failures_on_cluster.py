"""Failure and bad input on the cluster, through the deployments as a user runs them.

Each case is a real fault of the real cluster: a Spark image tag that does not exist, a Secret
that does not exist, a flow-run image that does not exist, a Kafka address nothing answers on,
the operator's admission webhook scaled to zero. Each must end the Prefect run within a bounded
time, with an error naming the cause, and leave nothing running.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lakehouse.k8s.render import FLOW_RUN_LABEL, KIND_LABEL
from tests.cluster.conftest import Apps, ClusterPrefect, flow_run_pods, wait_until
from tests.fixtures.cluster import SCRIPT, RealCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

DAY = {"start_date": "2026-01-01", "end_date": "2026-01-01", "dbt_marts": False}


@pytest.fixture(scope="module")
def prefect(real_cluster: RealCluster) -> ClusterPrefect:
    p = ClusterPrefect(real_cluster)
    p.deploy("daily", "medallion/daily")
    p.deploy("ensure", "streaming/ensure")
    return p


def _run(
    prefect: ClusterPrefect, deployment: str, params: dict[str, Any], **job_variables: Any
) -> tuple[str, Any, str, float]:
    """Run ``deployment`` with job variables; (flow run id, final flow run, its messages, seconds)."""
    args = ["deployment", "run", deployment]
    for key, value in params.items():
        args += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    for key, value in job_variables.items():
        args += ["--job-variable", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    started = time.monotonic()
    out = prefect.cli(*args)
    flow_run_id = next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)
    final = prefect.wait_final(flow_run_id, 600)
    elapsed = time.monotonic() - started
    # the engine logs the exception that ended the run as its last line
    text = "\n".join([final.state.message or "", *prefect.wait_logs(flow_run_id, "Finished in state", timeout=30)])
    return flow_run_id, final, text, elapsed


def _nothing_left(real_cluster: RealCluster, flow_run_id: str) -> None:
    apps = Apps(real_cluster)
    for app in apps.apps(f"{FLOW_RUN_LABEL}={flow_run_id}"):
        assert apps.wait_gone(app["metadata"]["name"], timeout=120) == [], app["metadata"]["name"]
    # the flow-run pod ends too (its reaper sidecar stops once the flow's container has ended)
    wait_until(
        "the flow-run pod ended",
        lambda: all(p["status"]["phase"] in ("Succeeded", "Failed") for p in flow_run_pods(real_cluster, flow_run_id)),
        120,
    )


def test_missing_secret_fails_the_run_naming_it(real_cluster: RealCluster, prefect: ClusterPrefect) -> None:
    """A Secret the Spark pods need does not exist: the driver pod's reason reaches the run.
    (A Spark image that does not exist takes the same path; tests/cluster/test_app_lifecycle.py
    has both at the backend.)"""
    env = {
        "LAKEHOUSE_KUBERNETES__DRIVER_START_TIMEOUT_SECONDS": "15",
        "LAKEHOUSE_KUBERNETES__ENV_SECRET_REFS": '{"LAKEHOUSE_TOKEN": "no-such-secret:token"}',
    }
    flow_run_id, final, text, elapsed = _run(prefect, "medallion/daily", DAY, env=env)
    assert final.state.is_failed(), final.state
    assert "CreateContainerConfigError" in text and "no-such-secret" in text, text[-3000:]
    assert elapsed < 420, elapsed  # three attempts of the 15 s start timeout, not the job timeout
    _nothing_left(real_cluster, flow_run_id)


def test_flow_run_image_that_cannot_be_pulled_cancels_the_run_naming_it(
    real_cluster: RealCluster, prefect: ClusterPrefect
) -> None:
    """The flow-run pod itself cannot start: the worker would wait for ever on a Pending pod. Its
    observer logs the kubelet's reason in the run's log; the automation of ``lakehouse blocks``
    (lakehouse-flow-run-image-cannot-be-pulled) cancels the run and the worker deletes its Job."""
    image = "localhost/lakehouse-prefect:no-such-tag"
    flow_run_id, final, text, elapsed = _run(prefect, "medallion/daily", DAY, image=image)
    assert final.state.is_cancelled(), final.state
    assert "Image pull failed" in text and image in text, text[-3000:]
    # bounded by the worker's cancellation poll (15 s in k8s/worker) after the automation fired
    assert elapsed < 480, elapsed
    wait_until("the flow run's Job and pod deleted", lambda: not flow_run_pods(real_cluster, flow_run_id), 180)
    assert Apps(real_cluster).apps(f"{FLOW_RUN_LABEL}={flow_run_id}") == []


def test_unreachable_broker_fails_the_streaming_run_naming_the_address(
    real_cluster: RealCluster, prefect: ClusterPrefect
) -> None:
    address = "lakehouse-kafka-bootstrap.kafka.svc:9999"
    flow_run_id, final, text, elapsed = _run(
        prefect, "streaming/ensure", {}, env={"LAKEHOUSE_KAFKA__BOOTSTRAP_SERVERS": address}
    )
    assert final.state.is_failed(), final.state
    assert address in text and "LAKEHOUSE_KAFKA__BOOTSTRAP_SERVERS" in text, text[-3000:]
    assert elapsed < 300, elapsed
    # the stream was not started against a broker it cannot read
    assert Apps(real_cluster).apps(f"{KIND_LABEL}=streaming,{FLOW_RUN_LABEL}={flow_run_id}") == []


@pytest.fixture
def webhook_down(real_cluster: RealCluster) -> Iterator[None]:
    real_cluster.kubectl("-n", "spark-operator", "scale", "deployment/spark-operator-webhook", "--replicas=0")
    try:
        wait_until(
            "no webhook pod",
            lambda: (
                not json.loads(
                    real_cluster.kubectl(
                        "-n", "spark-operator", "get", "pods", "-l", "app.kubernetes.io/component=webhook", "-o", "json"
                    )
                )["items"]
            ),
            120,
            every=2,
        )
        yield
    finally:
        real_cluster.kubectl("-n", "spark-operator", "scale", "deployment/spark-operator-webhook", "--replicas=1")
        real_cluster.kubectl(
            "-n",
            "spark-operator",
            "rollout",
            "status",
            "deployment/spark-operator-webhook",
            "--timeout=180s",
            timeout=200,
        )

        def admits() -> bool:
            return (
                subprocess.run(
                    [str(SCRIPT), "webhook-admits"],
                    env=real_cluster.script_env,
                    capture_output=True,
                    timeout=60,
                    check=False,
                ).returncode
                == 0
            )

        wait_until("the webhook admitting SparkApplications again", admits, 180, every=3)


def test_operator_webhook_down_fails_the_run_naming_it(
    real_cluster: RealCluster, prefect: ClusterPrefect, webhook_down: None
) -> None:
    flow_run_id, final, text, elapsed = _run(prefect, "medallion/daily", DAY)
    assert final.state.is_failed(), final.state
    assert "webhook" in text, text[-3000:]
    assert elapsed < 300, elapsed
    assert Apps(real_cluster).apps(f"{FLOW_RUN_LABEL}={flow_run_id}") == []
