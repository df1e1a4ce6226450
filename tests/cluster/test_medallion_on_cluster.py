"""The medallion flow, unchanged, as real SparkApplications on the real cluster.

Prefect's test harness runs the flow in this process with ``backend=kubernetes`` and the
credentials of a KubernetesCredentials block holding the Prefect worker's ServiceAccount token;
the real Spark operator submits each job, the real scheduler and kubelet run the driver and
executor pods from the image built from the Dockerfile, and the Delta tables land on the data
PVC. The tables are checked with the same independent figures as the local end-to-end test
(the generator's manifest and tests/expected.py, plain Python over the landing files).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lakehouse.datagen import GenConfig, Manifest, generate
from lakehouse.k8s.render import FLOW_RUN_LABEL, TASK_RUN_LABEL
from lakehouse.settings import get_settings
from tests import expected
from tests.cluster.conftest import NS, Apps, chown_for_pods, fresh_lake
from tests.fixtures.cluster import RealCluster

pytestmark = [pytest.mark.cluster, pytest.mark.spark, pytest.mark.timeout(1800)]

START = dt.date(2026, 1, 1)
DATES = [START, START + dt.timedelta(days=1)]
SOURCES = ("orders", "users", "events")
KEYS = {"orders": "order_id", "users": "user_id", "events": "event_id"}
CFG = dict(events_per_day=400, orders_per_day=80, users_initial=60)


def _table(spark: Any, root: Path, layer: str, name: str) -> Any:
    return spark.read.format("delta").load(str(root / "warehouse" / layer / name))


def _versions(root: Path) -> dict[str, int]:
    """Latest committed Delta version of every table under ``root`` (from its log files)."""
    out = {}
    for log in sorted((root / "warehouse").glob("*/*/_delta_log")):
        commits = [int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()]
        out[f"{log.parent.parent.name}.{log.parent.name}"] = max(commits)
    return out


@pytest.fixture(scope="module")
def medallion_runs(real_cluster: RealCluster, prefect_harness: None,
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs of the flow over the same two days on the cluster: their states, the apps they
    created, the Delta versions after each, the manifest of the landed data."""
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from flows.medallion import medallion

    host_root, pod_root = fresh_lake(real_cluster, "medallion")
    manifest = generate(host_root / "landing", GenConfig(start=START, days=len(DATES), **CFG))
    chown_for_pods(host_root)
    block = f"cluster-worker-{uuid.uuid4().hex[:6]}"
    KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(
        real_cluster.worker_kubeconfig, context_name="lakehouse-test")).save(block, overwrite=True)
    out: dict[str, Any] = {"root": host_root, "manifest": manifest}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in real_cluster.env.items():
            mp.setenv(key, value)
        mp.delenv("KUBECONFIG")  # the block's credentials, not a kubeconfig
        mp.setenv("LAKEHOUSE_KUBERNETES__CREDENTIALS_BLOCK", block)
        mp.setenv("LAKEHOUSE_STORAGE__ROOT", pod_root)
        get_settings.cache_clear()
        for run in ("first", "second"):
            state = medallion(start_date=DATES[0], end_date=DATES[-1], dbt_marts=False, return_state=True)
            flow_run_id = str(state.state_details.flow_run_id)
            out[run] = {"state": state, "flow_run_id": flow_run_id,
                        "apps": Apps(real_cluster).apps(f"{FLOW_RUN_LABEL}={flow_run_id}"),
                        "versions": _versions(host_root)}
    get_settings.cache_clear()
    return out


def test_tables_match_the_manifest_and_independent_figures(
    spark: Any, medallion_runs: dict[str, Any]
) -> None:
    first = medallion_runs["first"]
    assert first["state"].is_completed(), first["state"]
    summary = first["state"].result()
    root: Path = medallion_runs["root"]
    manifest: Manifest = medallion_runs["manifest"]
    landing = root / "landing"

    by_table = {f"{r['layer']}.{r['table']}": r for r in summary}
    for s in SOURCES:
        lines = manifest.total(s, "lines")
        assert _table(spark, root, "bronze", s).count() == lines == by_table[f"bronze.{s}"]["rows_written"]
        silver = _table(spark, root, "silver", s)
        exp = expected.latest_rows(landing, s, DATES)
        assert silver.count() == len(exp) == manifest.total(s, "new_keys")
        assert silver.select(KEYS[s]).distinct().count() == len(exp)
        q = {}
        if (root / "warehouse" / "quarantine" / s).exists():  # made on the first rejected row
            quarantine = _table(spark, root, "quarantine", s)
            q = {r[0]: r[1] for r in quarantine.groupBy(quarantine.failed_rules[0]).count().collect()}
        assert q == expected.rejected(landing, s, DATES)
    orders = {r.order_id: (r.status, r.amount) for r in _table(spark, root, "silver", "orders").collect()}
    exp_orders = expected.latest_rows(landing, "orders", DATES)
    assert orders == {
        k: (v["status"], Decimal(str(v["amount"])).quantize(Decimal("0.01"))) for k, v in exp_orders.items()
    }
    hourly = {(r.hour, r.event_type): (r.event_count, r.total_amount)
              for r in _table(spark, root, "gold", "hourly_stats").collect()}
    assert hourly == expected.hourly_stats(expected.latest_rows(landing, "events", DATES))
    revenue = {r.date_day: (r.total_orders, r.unique_customers, r.total_revenue, r.avg_order_value)
               for r in _table(spark, root, "gold", "daily_revenue").collect()}
    assert revenue == expected.daily_revenue(exp_orders)


def test_jobs_ran_as_spark_applications_with_driver_and_executor_pods(
    medallion_runs: dict[str, Any]
) -> None:
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
    assert {p.message.split(":")[0] for p in progress} == {f"[bronze] bronze.{s}" for s in SOURCES}, \
        [log.message for log in logs][:40]
    ended = dt.datetime.fromisoformat(app["status"]["terminationTime"].replace("Z", "+00:00"))
    first_line = min(log.timestamp for log in progress)
    assert (ended - first_line).total_seconds() > 5, (first_line, ended)


def test_second_run_commits_nothing(medallion_runs: dict[str, Any]) -> None:
    second = medallion_runs["second"]
    assert second["state"].is_completed(), second["state"]
    assert second["apps"] and {a["metadata"]["name"] for a in second["apps"]}.isdisjoint(
        {a["metadata"]["name"] for a in medallion_runs["first"]["apps"]})  # new apps, new run
    assert second["versions"] == medallion_runs["first"]["versions"]
    assert {"bronze.events", "silver.orders", "gold.daily_revenue"} <= set(second["versions"])

