"""Prefect on the cluster: the deployment runs in a flow-run pod, as it does in production.

``scripts/cluster.sh up`` runs a real ``prefect server`` on the node (the Service
prefect/prefect-server in front of it), makes the work pool with ``lakehouse blocks`` and starts
the Prefect worker Deployment of k8s/overlays/local from the ``prefect`` image. Here the
deployment ``medallion/daily`` is registered with ``prefect deploy`` from
deployments/prefect.yaml and run with ``prefect deployment run``: the worker starts a Job (the
pool's job template), whose pod submits the SparkApplications with its in-cluster
ServiceAccount. The tables are checked with the same independent figures as the local
end-to-end test; the summary rows come from the run's artifact in the Prefect API.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from lakehouse.datagen import GenConfig, generate
from lakehouse.k8s.render import FLOW_RUN_LABEL, SUBMITTER_POD_LABEL
from tests.cluster.conftest import FLOW_NS, Apps, ClusterPrefect, chown_for_pods, flow_run_pods, wait_until
from tests.fixtures.cluster import RealCluster
from tests.medallion_tables import check_tables

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.timeout(2400)]

START = dt.date(2026, 1, 1)
DATES = [START, START + dt.timedelta(days=1)]
CFG = dict(events_per_day=400, orders_per_day=80, users_initial=60)


@pytest.fixture(scope="module")
def cluster_prefect(real_cluster: RealCluster) -> ClusterPrefect:
    """medallion/daily deployed to the cluster's Prefect server with ``prefect deploy``, its
    schedule cleared (a test does not wait for 06:00)."""
    prefect = ClusterPrefect(real_cluster)
    prefect.deploy("daily", "medallion/daily")
    return prefect


@pytest.fixture(scope="module")
def lake(real_cluster: RealCluster) -> tuple[Path, Any]:
    """The lake of k8s/overlays/local (LAKEHOUSE_STORAGE__ROOT=/data/lake), with two days of
    landing files."""
    root = real_cluster.data_dir / "lake"
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    manifest = generate(root / "landing", GenConfig(start=START, days=len(DATES), **CFG))
    chown_for_pods(root)
    return root, manifest


@pytest.fixture(scope="module")
def daily_run(real_cluster: RealCluster, cluster_prefect: ClusterPrefect, lake: tuple[Path, Any]) -> dict[str, Any]:
    flow_run_id = cluster_prefect.run(
        "medallion/daily", start_date=str(DATES[0]), end_date=str(DATES[-1]), dbt_marts=False
    )
    pods = wait_until("the flow-run pod", lambda: flow_run_pods(real_cluster, flow_run_id), 300, every=2)
    final = cluster_prefect.wait_final(flow_run_id, 1500)
    apps = Apps(real_cluster).apps(f"{FLOW_RUN_LABEL}={flow_run_id}")
    return {"id": flow_run_id, "flow_run": final, "pods": pods, "apps": apps}


def test_deployment_run_completes_in_a_flow_run_pod_with_right_tables(
    spark: Any,
    real_cluster: RealCluster,
    cluster_prefect: ClusterPrefect,
    lake: tuple[Path, Any],
    daily_run: dict[str, Any],
) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    fr = daily_run["flow_run"]
    assert fr.state.is_completed(), (fr.state, cluster_prefect.logs(daily_run["id"])[-30:])
    # it ran in a pod of the worker's Job, from the prefect image, as the flow runs' ServiceAccount
    pod = daily_run["pods"][0]
    assert pod["spec"]["serviceAccountName"] == "prefect-worker"
    assert pod["spec"]["containers"][0]["image"] == real_cluster.env["LAKEHOUSE_CLUSTER_PREFECT_IMAGE"]
    assert [o["kind"] for o in pod["metadata"]["ownerReferences"]] == ["Job"]
    assert fr.infrastructure_pid and "prefect" in fr.infrastructure_pid  # <cluster>:<namespace>:<job>
    # the SparkApplications it submitted carry its flow run id and ran to COMPLETED
    assert daily_run["apps"], "the flow run submitted no SparkApplication"
    for app in daily_run["apps"]:
        assert app["status"]["applicationState"]["state"] == "COMPLETED", app["status"]
    assert any("SparkApplication spark-jobs/" in m and "submitted" in m for m in cluster_prefect.logs(daily_run["id"]))
    with cluster_prefect.client() as prefect:
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["medallion-summary"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(daily_run["id"])]),
            )
        )
    assert len(artifacts) == 1
    summary = json.loads(artifacts[0].data)
    root, manifest = lake
    check_tables(spark, root, manifest, summary, DATES)


def test_worker_runs_in_the_cluster_from_the_prefect_image(
    real_cluster: RealCluster, cluster_prefect: ClusterPrefect
) -> None:
    pods = json.loads(
        real_cluster.kubectl("-n", FLOW_NS, "get", "pods", "-l", "app.kubernetes.io/name=prefect-worker", "-o", "json")
    )["items"]
    assert pods and all(p["status"]["phase"] == "Running" for p in pods), pods
    assert pods[0]["spec"]["containers"][0]["image"] == real_cluster.env["LAKEHOUSE_CLUSTER_PREFECT_IMAGE"]
    with cluster_prefect.client() as prefect:
        workers = prefect.read_workers_for_work_pool("lakehouse-kubernetes")
    assert any(w.name.startswith("KubernetesWorker") for w in workers), workers


def _start_and_wait_for_running_app(
    real_cluster: RealCluster, prefect: ClusterPrefect
) -> tuple[str, str, dict[str, Any]]:
    """A medallion/daily run whose SparkApplication is RUNNING: (flow run id, pod name, app)."""
    flow_run_id = prefect.run("medallion/daily", start_date=str(DATES[0]), end_date=str(DATES[-1]), dbt_marts=False)
    apps = Apps(real_cluster)
    app = wait_until(
        "a RUNNING SparkApplication of the flow run",
        lambda: next(
            (
                a
                for a in apps.apps(f"{FLOW_RUN_LABEL}={flow_run_id}")
                if a.get("status", {}).get("applicationState", {}).get("state") == "RUNNING"
            ),
            None,
        ),
        600,
        every=1,
    )
    [pod] = flow_run_pods(real_cluster, flow_run_id)
    return flow_run_id, pod["metadata"]["name"], app


def test_killed_flow_run_is_crashed_and_its_app_reaped(
    real_cluster: RealCluster, cluster_prefect: ClusterPrefect, daily_run: dict[str, Any]
) -> None:
    """SIGKILL of every process of the flow run's container (as the OOM killer would): no code
    of the flow run can clean up. The worker's observer marks the run Crashed; the pod's reaper
    sidecar deletes the app, and the operator its driver and executor pods."""
    flow_run_id, pod, app = _start_and_wait_for_running_app(real_cluster, cluster_prefect)
    name = app["metadata"]["name"]
    assert app["metadata"]["labels"][SUBMITTER_POD_LABEL] == pod
    real_cluster.kubectl("-n", FLOW_NS, "exec", pod, "-c", "prefect-job", "--", "bash", "-c", "kill -9 -1")
    final = cluster_prefect.wait_final(flow_run_id, 180)
    assert final.state.is_crashed(), final.state
    assert Apps(real_cluster).wait_gone(name, timeout=120) == []
    reaper_log = real_cluster.kubectl("-n", FLOW_NS, "logs", pod, "-c", "spark-app-reaper")
    assert f"reaper: SparkApplication spark-jobs/{name} deleted" in reaper_log, reaper_log


def test_deleted_flow_run_pod_reschedules_the_run_and_deletes_its_app(
    real_cluster: RealCluster, cluster_prefect: ClusterPrefect, daily_run: dict[str, Any]
) -> None:
    """``kubectl delete pod`` (an eviction, a drain): SIGTERM. The app of that pod is deleted,
    Prefect puts the run back to Scheduled (the worker's choice for backoffLimit 0) and a new
    flow-run pod runs it again, with new apps, to Completed."""
    flow_run_id, pod, app = _start_and_wait_for_running_app(real_cluster, cluster_prefect)
    name = app["metadata"]["name"]
    real_cluster.kubectl("-n", FLOW_NS, "delete", "pod", pod, "--wait=false")
    assert Apps(real_cluster).wait_gone(name, timeout=120) == []
    final = cluster_prefect.wait_final(flow_run_id, 900)
    assert final.state.is_completed(), final.state
    with cluster_prefect.client() as prefect:
        history = [s.name for s in prefect.read_flow_run_states(uuid.UUID(flow_run_id))]
    assert "Rescheduled" in history or "AwaitingRetry" in history, history
    pods = {p["metadata"]["name"] for p in flow_run_pods(real_cluster, flow_run_id)}
    assert pod not in pods and pods, pods  # the second run's pod, the first one is gone
    # new apps: the same deterministic names (same flow run, job and attempt) as new objects
    second = Apps(real_cluster).apps(f"{FLOW_RUN_LABEL}={flow_run_id}")
    assert second and all(a["metadata"]["uid"] != app["metadata"]["uid"] for a in second)
    assert all(a["status"]["applicationState"]["state"] == "COMPLETED" for a in second)
