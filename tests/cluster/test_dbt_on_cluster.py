"""The dbt marts on the cluster: the Spark Connect server of spark-operator/dbt/ runs as the
operator's workload, and the medallion deployment's dbt step runs through prefect-dbt in the
flow-run pod against it (dbt's ``cluster`` target, ``LAKEHOUSE_DBT__SPARK_REMOTE`` from the
worker's settings ConfigMap).

The server is a SparkApplication (restartPolicy Always) of the project's Spark image, not the
SparkConnect resource of operator 2.5: that resource starts Spark's own Connect server class,
which brings neither the Hive catalog on a PVC that dbt names tables in nor the project's
Delta conf, and it is still v1alpha1. The marts are checked against the figures tests/expected.py
computes from the landing files in plain Python, as the local dbt test does.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lakehouse.datagen import GenConfig, generate
from tests import expected
from tests.cluster.conftest import NS, Apps, ClusterPrefect, chown_for_pods, wait_until
from tests.fixtures.cluster import REPO_ROOT, RealCluster

pytestmark = [pytest.mark.cluster, pytest.mark.dbt, pytest.mark.spark, pytest.mark.timeout(2400)]

START = dt.date(2026, 1, 1)
DATES = [START + dt.timedelta(days=i) for i in range(2)]
CFG = dict(events_per_day=240, orders_per_day=60, users_initial=40, users_new_per_day=5)
SERVER = "lakehouse-spark-connect"
MODELS = {
    "stg_orders",
    "stg_users",
    "stg_events",
    "fct_daily_revenue",
    "dim_users",
    "fct_hourly_events",
    "fct_daily_revenue_by_country",
}


@pytest.fixture(scope="module")
def connect_server(real_cluster: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """spark-operator/dbt-local applied (the image tag built here set with kustomize edit); up
    once its driver says the Connect endpoint listens. Deleted afterwards."""
    kustomize = subprocess.run(
        [str(REPO_ROOT / "scripts/kustomize.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    work = tmp_path_factory.mktemp("dbt-k8s")
    shutil.copytree(REPO_ROOT / "spark-operator", work / "spark-operator")
    overlay = work / "spark-operator" / "dbt-local"
    image = real_cluster.env["LAKEHOUSE_KUBERNETES__IMAGE"]
    subprocess.run([kustomize, "edit", "set", "image", f"lakehouse-spark={image}"], cwd=overlay, check=True)
    manifests = subprocess.run([kustomize, "build", str(overlay)], capture_output=True, text=True, check=True).stdout
    real_cluster.kubectl("apply", "-f", "-", stdin=manifests)
    apps = Apps(real_cluster)

    def listening() -> bool:
        app = apps.app(SERVER) or {}
        if app.get("status", {}).get("applicationState", {}).get("state") != "RUNNING":
            return False
        log = real_cluster.kubectl("-n", NS, "logs", f"{SERVER}-driver", check=False)
        return "Spark Connect server up" in log

    wait_until("the Spark Connect server up", listening, 420, every=3)
    try:
        yield {"app": apps.app(SERVER)}
    finally:
        real_cluster.kubectl(
            "delete", "--wait=true", "--timeout=180s", "-f", "-", stdin=manifests, check=False, timeout=240
        )


@pytest.fixture(scope="module")
def marts_run(real_cluster: RealCluster, connect_server: dict[str, Any]) -> dict[str, Any]:
    root = real_cluster.data_dir / "lake"
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    generate(root / "landing", GenConfig(start=START, days=len(DATES), **CFG))
    chown_for_pods(root)
    prefect = ClusterPrefect(real_cluster)
    prefect.deploy("daily", "medallion/daily")
    # dbt_marts defaults to the pipeline.dbt_marts setting (true): the dbt step runs
    flow_run_id = prefect.run("medallion/daily", start_date=str(DATES[0]), end_date=str(DATES[-1]))
    final = prefect.wait_final(flow_run_id, 1800)
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with prefect.client() as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[uuid.UUID(flow_run_id)])
            )
        )
        tasks = {}
        for child in children:
            for task in client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [child.id]})):
                tasks[task.name] = task.state.type.value if task.state else None
    logs = prefect.logs(flow_run_id) + [m for c in children for m in prefect.logs(str(c.id))]
    return {"id": flow_run_id, "final": final, "root": root, "children": children, "tasks": tasks, "logs": logs}


def _mart(spark: Any, root: Path, name: str) -> list[Any]:
    rows: list[Any] = spark.read.format("delta").load(str(root / "warehouse" / "gold" / name)).collect()
    return rows


def test_dbt_build_runs_on_the_connect_server_and_the_marts_are_right(spark: Any, marts_run: dict[str, Any]) -> None:
    final = marts_run["final"]
    assert final.state.is_completed(), (final.state, marts_run["logs"][-30:])
    # the dbt subflow ran dbt as a Spark Connect client of the server (target cluster)
    assert any(m.startswith("dbt build") and m.endswith("(target cluster)") for m in marts_run["logs"]), marts_run[
        "logs"
    ][-30:]
    root: Path = marts_run["root"]
    landing = root / "landing"
    daily = {
        r.date_day: (r.total_orders, r.unique_customers, r.total_revenue, r.avg_order_value)
        for r in _mart(spark, root, "fct_daily_revenue")
    }
    assert sorted(daily) == DATES
    assert daily == expected.daily_revenue(expected.latest_rows(landing, "orders", DATES))
    hourly = {
        (r.event_hour, r.event_type): (r.event_count, r.total_amount) for r in _mart(spark, root, "fct_hourly_events")
    }
    assert hourly == expected.hourly_stats(expected.latest_rows(landing, "events", DATES))
    users: dict[str, tuple[str, str, int, Decimal]] = {
        r.user_id: (r.email, r.country, r.total_orders, r.lifetime_revenue) for r in _mart(spark, root, "dim_users")
    }
    assert users == expected.dim_users(landing, DATES)
    by_country = {
        (r.date_day, r.country): (r.total_orders, r.total_revenue)
        for r in _mart(spark, root, "fct_daily_revenue_by_country")
    }
    assert by_country == expected.revenue_by_country_at_order_time(landing, DATES)


def test_every_model_is_a_prefect_task(marts_run: dict[str, Any]) -> None:
    tasks = marts_run["tasks"]
    assert {f"model {m}" for m in MODELS} <= set(tasks), sorted(tasks)
    assert all(tasks[f"model {m}"] == "COMPLETED" for m in MODELS), tasks
    assert "test unique_fct_daily_revenue_date_day" in tasks
