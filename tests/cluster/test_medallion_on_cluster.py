"""The medallion flow, unchanged, as real SparkApplications on the real cluster.

Prefect's test harness runs the flow in this process with ``backend=kubernetes`` and the
credentials of a KubernetesCredentials block holding the Prefect worker's ServiceAccount token;
the real Spark operator submits each job, the real scheduler and kubelet run the driver and
executor pods from the image built from the Dockerfile, and the Delta tables land in a bucket of
the cluster's object store (SeaweedFS behind the Service storage/lakehouse-s3, authentication
on): the pods read the landing files and write the tables through S3A, with the key pair from
the Secret spark-jobs/lakehouse-credentials as secretKeyRefs. The tables are checked with the
same independent figures as the local end-to-end test (the generator's manifest and
tests/expected.py, plain Python over a local copy of the landing files), read back from the
bucket through the store's door on the host.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from lakehouse.datagen import GenConfig, Manifest, generate
from lakehouse.k8s.render import FLOW_RUN_LABEL, TASK_RUN_LABEL
from lakehouse.settings import get_settings
from tests.cluster.conftest import NS, Apps
from tests.fixtures.cluster import RealCluster
from tests.fixtures.s3 import new_bucket
from tests.medallion_tables import SOURCES, check_tables, delta_versions

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.timeout(1800)]

START = dt.date(2026, 1, 1)
DATES = [START, START + dt.timedelta(days=1)]
CFG = dict(events_per_day=400, orders_per_day=80, users_initial=60)


@pytest.fixture(scope="module")
def medallion_runs(
    real_cluster: RealCluster, prefect_harness: None, spark: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Two runs of the flow over the same two days on the cluster, on a fresh bucket: their
    states, the apps they created, the Delta versions after each, the manifest of the landed
    data."""
    import s3fs
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from flows.medallion import medallion

    store = real_cluster.s3()
    bucket = new_bucket(store, spark, "cluster")
    landing = tmp_path_factory.mktemp("cluster-landing") / "landing"
    manifest = generate(landing, GenConfig(start=START, days=len(DATES), **CFG))
    fs = s3fs.S3FileSystem(**store.storage_options())
    fs.put(str(landing) + "/", f"{bucket}/lake/landing/", recursive=True)
    root = f"s3a://{bucket}/lake"
    block = f"cluster-worker-{uuid.uuid4().hex[:6]}"
    KubernetesCredentials(
        cluster_config=KubernetesClusterConfig.from_file(real_cluster.worker_kubeconfig, context_name="lakehouse-test")
    ).save(block, overwrite=True)
    out: dict[str, Any] = {
        "root": root,
        "landing": landing,
        "manifest": manifest,
        "keys": (store.access_key, store.secret_key),
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in real_cluster.env.items():
            mp.setenv(key, value)
        mp.delenv("KUBECONFIG")  # the block's credentials, not a kubeconfig
        mp.setenv("LAKEHOUSE_KUBERNETES__CREDENTIALS_BLOCK", block)
        for key, value in real_cluster.s3_settings(root).items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        for run in ("first", "second"):
            state = medallion(start_date=DATES[0], end_date=DATES[-1], dbt_marts=False, return_state=True)
            flow_run_id = str(state.state_details.flow_run_id)
            out[run] = {
                "state": state,
                "flow_run_id": flow_run_id,
                "apps": Apps(real_cluster).apps(f"{FLOW_RUN_LABEL}={flow_run_id}"),
                "versions": delta_versions(root, fs),
            }
    get_settings.cache_clear()
    return out


def test_tables_match_the_manifest_and_independent_figures(spark: Any, medallion_runs: dict[str, Any]) -> None:
    first = medallion_runs["first"]
    assert first["state"].is_completed(), first["state"]
    summary = first["state"].result()
    manifest: Manifest = medallion_runs["manifest"]

    check_tables(spark, medallion_runs["root"], manifest, summary, DATES, landing=medallion_runs["landing"])


def test_jobs_ran_as_spark_applications_with_driver_and_executor_pods(medallion_runs: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    first = medallion_runs["first"]
    assert first["apps"], "the flow created no SparkApplication"
    for app in first["apps"]:
        status = app["status"]
        assert status["applicationState"]["state"] == "COMPLETED", status
        assert status["driverInfo"]["podName"].endswith("-driver")
        # an executor pod ran the job's tasks (in cluster mode the driver runs none); the
        # operator records each executor pod it saw (their state once the driver deleted them
        # at the end varies, so only their existence is asserted)
        assert status.get("executorState"), status
        assert app["metadata"]["labels"][FLOW_RUN_LABEL] == first["flow_run_id"]
    keys = [f"spark-app-{a['metadata']['name']}" for a in first["apps"]]
    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    assert sorted(a.key for a in artifacts) == sorted(keys)
    # the object store's key pair reached the pods as secretKeyRefs only
    for app in first["apps"]:
        assert set(app["spec"]["driver"]["envSecretKeyRefs"]) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    stored = json.dumps(first["apps"]) + "".join(a.data for a in artifacts)
    leaked = any(key in stored for key in medallion_runs["keys"])
    assert not leaked, "a key of the object store is in a SparkApplication or an artifact"
    for artifact in artifacts:
        assert "| final state | COMPLETED |" in artifact.data
        # a UI link a person can open: the port-forward command, not a ClusterIP
        assert f"kubectl -n {NS} port-forward svc/" in artifact.data, artifact.data


def test_driver_log_reaches_the_run_log_live(medallion_runs: dict[str, Any]) -> None:
    """Driver lines are in the task's run log, and they arrived while the app was running (the
    first one well before the driver terminated), not as one dump at the end."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    app = medallion_runs["first"]["apps"][0]
    task_run_id = uuid.UUID(app["metadata"]["labels"][TASK_RUN_LABEL])
    with get_client(sync_client=True) as prefect:
        logs = prefect.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_run_id])))
    # the job's progress lines, printed by the driver as each table is written
    progress = [log for log in logs if log.message.startswith("[bronze] bronze.")]
    assert {p.message.split(":")[0] for p in progress} == {f"[bronze] bronze.{s}" for s in SOURCES}, [
        log.message for log in logs
    ][:40]
    ended = dt.datetime.fromisoformat(app["status"]["terminationTime"].replace("Z", "+00:00"))
    first_line = min(log.timestamp for log in progress)
    assert (ended - first_line).total_seconds() > 5, (first_line, ended)


def test_second_run_commits_nothing(medallion_runs: dict[str, Any]) -> None:
    second = medallion_runs["second"]
    assert second["state"].is_completed(), second["state"]
    assert second["apps"] and {a["metadata"]["name"] for a in second["apps"]}.isdisjoint(
        {a["metadata"]["name"] for a in medallion_runs["first"]["apps"]}
    )  # new apps, new run
    assert second["versions"] == medallion_runs["first"]["versions"]
    assert {"bronze.events", "silver.orders", "gold.daily_revenue"} <= set(second["versions"])
