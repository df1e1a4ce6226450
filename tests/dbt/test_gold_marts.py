"""The gold marts built by dbt on Spark + Delta, run by the dbt-build flow (prefect-dbt's runner).

Silver comes from the real medallion flow (the warm local Spark) on generated data; dbt then runs
with its default target there, ``warm``: dbt-spark's session method as a Spark Connect client of
that same warm Spark, whose in-memory catalog each invocation fills from the storage. The marts
are read back through that catalog (a Spark Connect session of the test's own). One root serves
the whole module: build (3 days) -> incremental run after a 4th day -> a late cancellation -> a
failing test. (The local target, an in-process Spark with a Derby metastore, is run by
tests/storage/test_medallion_on_s3.py.)

Expected figures come from tests/expected.py, which recomputes silver and the aggregates from
the landing files in plain Python; the Delta history is read from the _delta_log JSON files.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lakehouse.datagen import GenConfig, generate
from tests import expected, marts
from tests.e2e.support import latest_run_name

# Each stage runs real Spark jobs and a real dbt build on a machine shared with other work:
# generous, still finite, bounds per test (setup included).
pytestmark = [pytest.mark.dbt, pytest.mark.spark, pytest.mark.usefixtures("prefect_harness"), pytest.mark.timeout(2400)]

START = dt.date(2026, 1, 1)
DAY = dt.timedelta(days=1)
INITIAL = [START + i * DAY for i in range(3)]
FOURTH = START + 3 * DAY
LATE = START + 4 * DAY
# Small data; no status updates of earlier orders in the generated days, so the 4th day's data
# holds orders of that day only (the late-change path has its own stage below).
CFG = dict(events_per_day=240, orders_per_day=60, users_initial=40, users_new_per_day=5, order_update_rate=0.0)
MART_DIR = ("warehouse", "gold")


# -- helpers ---------------------------------------------------------------------------------------


@contextmanager
def _spark() -> Iterator[Any]:
    """A Spark Connect session of the warm Spark dbt ran on (the test reads through the very same
    catalog), released at the end."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    from lakehouse.backends.warm import spark_connect
    from lakehouse.settings import get_settings

    with spark_connect(get_settings(), print) as (url, token):
        session = ConnectSession.builder.remote(f"{url}/;token={token}").create()
        try:
            yield session
        finally:
            session.stop()


def _medallion(start: dt.date, end: dt.date, layers: tuple[str, ...] = ("bronze", "silver")) -> Any:
    from flows.medallion import medallion

    state = medallion(start_date=start, end_date=end, layers=list(layers), return_state=True)
    assert state.is_completed(), state.message
    return state


RUNS: dict[str, Any] = {}
"""Flow run ids of the stages (for the lineage test)."""


def _dbt_build(**params: Any) -> Any:
    from flows.dbt_build import dbt_build

    return dbt_build(return_state=True, **params)


def _task_run_states(flow_run_id: Any) -> dict[str, str]:
    """Name -> state type of every task run of the flow run (read back from the Prefect API)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=flow_runs)
    return {r.name: r.state.type.value for r in runs if r.state is not None}


def _commits(table: Path) -> list[dict[str, Any]]:
    """commitInfo of every Delta commit of ``table``, oldest first (read from the log files)."""
    out = []
    for f in sorted((table / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                out.append(action["commitInfo"])
    return out


def _snapshot(landing: Path, dates: list[dt.date]) -> dict[str, Any]:
    with _spark() as spark:
        return marts.snapshot(spark, landing, dates)


# -- stages (module-scoped: one lakehouse root) ------------------------------------------------------


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, spark: Any) -> Iterator[Path]:
    """A lakehouse root with 4 generated days of landing data and silver built for the first 3.

    This process runs a classic Spark of its own (``spark``), as the rest of the suite does and a
    notebook would: dbt's Spark Connect session to the warm server must be made all the same
    (pyspark's own builder refuses that, SESSION_ALREADY_EXIST)."""
    from lakehouse.dbt import get_dbt_settings
    from lakehouse.settings import get_settings

    root = tmp_path_factory.mktemp("dbt") / "lake"
    generate(root / "landing", GenConfig(start=START, days=4, **CFG))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKEHOUSE_STORAGE__ROOT", str(root))
        get_settings.cache_clear()
        get_dbt_settings.cache_clear()
        # every layer, Spark gold included: the lineage test follows the graph through all of them
        RUNS["medallion"] = _medallion(INITIAL[0], INITIAL[-1], ("bronze", "silver", "gold")).state_details.flow_run_id
        yield root
    get_settings.cache_clear()
    get_dbt_settings.cache_clear()


@pytest.fixture(scope="module")
def first_build(lake: Path) -> dict[str, Any]:
    """``dbt build`` (with source freshness, and the unit tests, which pipeline runs leave out)
    over the 3 initial days."""
    state = _dbt_build(unit_tests=True)
    assert state.is_completed(), state.message
    flow_run_id = state.state_details.flow_run_id
    return {
        "state": state,
        "rows": state.result(),
        "tasks": set(_task_run_states(flow_run_id)),
        "landing": lake / "landing",
        **_snapshot(lake / "landing", INITIAL),
    }


@pytest.fixture(scope="module")
def fourth_day(lake: Path, first_build: dict[str, Any]) -> dict[str, Any]:
    """Silver for the 4th day, then an incremental ``dbt build`` with source freshness, as a
    pipeline run of a recent day does it."""
    from lakehouse.backends.local import LocalBackend
    from lakehouse.backends.warm import WarmServer
    from lakehouse.settings import get_settings

    _medallion(FOURTH, FOURTH)
    # The warm Spark stops (idle, `make down`) before this build: it runs on a new server whose
    # in-memory catalog starts empty. The catalog macro, run by the freshness check (the build
    # right after it skips it), registers the marts from the storage, so the build stays
    # incremental (test_incremental_run_touches_only_the_new_day checks the MERGE).
    server = WarmServer(LocalBackend(get_settings()))
    before = server.ping()
    assert before is not None and server.stop()
    state = _dbt_build()
    assert state.is_completed(), state.message
    after = server.ping()
    assert after is not None and after["pid"] != before["pid"]
    dates = [*INITIAL, FOURTH]
    commits = _commits(lake.joinpath(*MART_DIR, "fct_daily_revenue"))
    return {"rows": state.result(), "commits": commits, **_snapshot(lake / "landing", dates)}


# -- tests ---------------------------------------------------------------------------------------


def test_build_marts_equal_independent_figures(first_build: dict[str, Any]) -> None:
    got, want = first_build["got"], first_build["want"]
    assert sorted(got["daily"]) == INITIAL
    assert got["daily"] == want["daily"]
    assert got["hourly"] == want["hourly"]
    assert got["users"] == want["users"]
    assert got["by_country"] == want["by_country"]
    # the data holds users who moved after ordering, so this differs from the current country
    landing = first_build["landing"]
    versions = expected.user_versions(landing, INITIAL)
    users = expected.latest_rows(landing, "users", INITIAL)
    moved = [
        o
        for o in expected.latest_rows(landing, "orders", INITIAL).values()
        if o["status"] != "cancelled"
        and users[o["user_id"]]["country"] != expected.country_at(versions[o["user_id"]], expected._ts(o["created_at"]))
    ]
    assert moved, "no order of a user who moved afterwards: the test data no longer tells SCD2 from SCD1"


def test_build_runs_every_node_as_its_own_prefect_task(first_build: dict[str, Any]) -> None:
    rows = first_build["rows"]
    by_type: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        assert r["status"] in {"success", "pass", "warn"}, r
        by_type[r["resource_type"]].add(r["name"])
    models = {
        "stg_orders",
        "stg_users",
        "stg_events",
        "fct_daily_revenue",
        "dim_users",
        "fct_hourly_events",
        "fct_daily_revenue_by_country",
    }
    assert by_type["model"] == models
    assert {
        "fct_daily_revenue_counts_sums_and_rounds_half_up",
        "fct_daily_revenue_incremental_run_recomputes_only_changed_days",
        "fct_hourly_events_counts_and_sums_per_hour_and_type",
    } <= by_type["unit_test"]
    assert {
        "unique_fct_daily_revenue_date_day",
        "accepted_values_stg_orders_status__pending__completed__refunded",
        "relationships_stg_orders_user_id__user_id__ref_stg_users_",
        "assert_revenue_matches_staged_orders",
    } <= by_type["test"]
    assert by_type["source"] == {"orders", "users", "events"}  # source freshness
    tasks = first_build["tasks"]
    assert {f"model {m}" for m in models} <= tasks
    assert "test unique_fct_daily_revenue_date_day" in tasks
    assert latest_run_name("dbt-build") == "dbt-build all"
    assert "unit_test fct_daily_revenue_counts_sums_and_rounds_half_up" in tasks


SOURCES = ("orders", "users", "events")


def _expected_lineage(lake: Path) -> dict[str, set[str]]:
    """asset -> its upstream assets, as the pipeline really reads them: written here from the
    jobs (spark_jobs/bronze, silver, gold) and the models' refs (dbt/models), not from the
    lineage code. Quarantine tables count where the run wrote one."""

    def t(name: str) -> str:
        return f"spark://{name}"

    graph: dict[str, set[str]] = {}
    for s in SOURCES:
        graph[t(f"bronze/{s}")] = {(lake / "landing" / s).absolute().as_uri()}
        graph[t(f"silver/{s}")] = {t(f"bronze/{s}")}
        if (lake / "warehouse" / "quarantine" / s / "_delta_log").is_dir():
            graph[t(f"quarantine/{s}")] = {t(f"bronze/{s}")}
    graph[t("silver/users_history")] = {t("bronze/users")}
    graph[t("quality/metrics")] = {t(f"bronze/{s}") for s in SOURCES}  # silver's rule outcomes
    graph[t("gold/hourly_stats")] = {t("silver/events")}
    graph[t("gold/daily_revenue")] = {t("silver/orders")}
    graph[t("gold/daily_revenue_by_country")] = {t("silver/orders"), t("silver/users")}
    for s in SOURCES:  # dbt staging views
        graph[t(f"staging/stg_{s}")] = {t(f"silver/{s}")}
    graph[t("gold/fct_daily_revenue")] = {t("silver/orders"), t("staging/stg_orders")}
    graph[t("gold/dim_users")] = {t("staging/stg_users"), t("staging/stg_orders")}
    graph[t("gold/fct_daily_revenue_by_country")] = {t("staging/stg_orders"), t("silver/users_history")}
    graph[t("gold/fct_hourly_events")] = {t("staging/stg_events")}
    return graph


def _asset_events(flow_run_ids: list[Any]) -> list[Any]:
    """The asset materialization events of the flow runs, read back from the Prefect API."""
    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter

    flt = EventFilter(
        event=EventNameFilter(prefix=["prefect.asset.materialization."]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{i}" for i in flow_run_ids]),
    )
    with get_client(sync_client=True) as client:
        page = client.read_events(flt, limit=50)
        events = list(page.events)
        while page.next_page:
            page = client.read_events_page(str(page.next_page))
            events += page.events
    return events


def _openlineage_graph(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """asset key -> upstream keys of the COMPLETE events (datasets named as the assets are)."""

    def key(ds: dict[str, Any]) -> str:
        if ds["namespace"] == "file":
            return Path(ds["name"]).as_uri()
        return "spark://" + ds["name"].replace(".", "/", 1)

    graph: dict[str, set[str]] = defaultdict(set)
    for e in events:
        for out in e["outputs"]:
            graph[key(out)] |= {key(i) for i in e["inputs"]}
    return dict(graph)


def test_lineage_graph_reaches_prefect_assets_and_openlineage(lake: Path, first_build: dict[str, Any]) -> None:
    """One medallion run (every layer) and one dbt build: the Prefect assets and the OpenLineage
    events each draw landing -> bronze -> silver -> gold -> marts as the pipeline really reads."""
    import time

    want = _expected_lineage(lake)
    runs = [RUNS["medallion"], first_build["state"].state_details.flow_run_id]
    got: dict[str, set[str]] = {}
    deadline = time.monotonic() + 90  # events reach the server asynchronously
    while time.monotonic() < deadline:
        events = _asset_events(runs)
        got = defaultdict(set)
        for e in events:
            assert e.event == "prefect.asset.materialization.succeeded", (e.event, e.resource.id)
            got[e.resource.id] |= {r.id for r in e.related if r.role == "asset"}
        got = dict(got)
        if got == want:
            break
        time.sleep(2)
    assert got == want
    # each names the tool that built it, and a Spark table's metadata is the commit it made
    by = {e.resource.id: {r.id for r in e.related if r.role == "asset-materialized-by"} for e in events}
    dbt_models = {k for k in want if k.startswith("spark://staging/") or k.split("/")[-1].startswith(("fct_", "dim_"))}
    assert {k for k, tools in by.items() if tools == {"spark"}} == set(want) - dbt_models
    assert {k for k, tools in by.items() if tools == {"dbt"}} == dbt_models
    for e in events:
        if by[e.resource.id] == {"spark"}:
            layer_table = e.resource.id.removeprefix("spark://")
            assert isinstance(e.payload["delta_version"], int), e.payload
            assert str(e.payload["location"]).endswith(f"warehouse/{layer_table}"), e.payload

    # OpenLineage: the same graph from the file transport, each run a child of its flow run
    lines = (lake / "lineage" / "openlineage.jsonl").read_text().splitlines()
    parents = {str(r) for r in runs}
    ol = [json.loads(line) for line in lines]
    ol = [e for e in ol if e["run"]["facets"].get("parent", {}).get("run", {}).get("runId") in parents]
    complete = [e for e in ol if e["eventType"] == "COMPLETE"]
    assert sorted(e["eventType"] for e in ol) == sorted(["START", "COMPLETE"] * len(complete))
    assert _openlineage_graph(complete) == want
    assert {e["run"]["facets"]["parent"]["job"]["name"] for e in complete} == {"medallion", "dbt-build"}

    # facets of the Spark tables: Delta version, schema and row count as the tables stand
    with _spark() as spark:
        _check_table_facets(lake, complete, spark)


def _check_table_facets(lake: Path, complete: list[dict[str, Any]], spark: Any) -> None:
    for e in complete:
        for out in e["outputs"]:
            layer, name = out["name"].split(".")
            path = lake / "warehouse" / layer / name
            # (quarantine is replaced per batch; the sources' appends to quality/metrics interleave)
            if not e["job"]["name"].startswith("medallion.") or layer in ("quarantine", "quality"):
                continue
            versions = [int(f.stem) for f in (path / "_delta_log").glob("*.json")]
            assert out["facets"]["version"]["datasetVersion"] == str(max(versions)), out["name"]
            table = spark.read.format("delta").load(str(path))
            assert [f["name"] for f in out["facets"]["schema"]["fields"]] == table.columns, out["name"]
            if layer == "silver" and name in SOURCES:  # one MERGE into an empty table: every row
                assert out["outputFacets"]["outputStatistics"]["rowCount"] == table.count(), out["name"]


def test_incremental_run_touches_only_the_new_day(lake: Path, fourth_day: dict[str, Any]) -> None:
    got, want = fourth_day["got"], fourth_day["want"]
    assert got["daily"] == want["daily"]
    assert got["hourly"] == want["hourly"]
    assert got["users"] == want["users"]
    assert got["by_country"] == want["by_country"]
    assert sorted(got["daily"]) == [*INITIAL, FOURTH]

    last = fourth_day["commits"][-1]
    assert last["operation"] == "MERGE"
    metrics = {k: int(v) for k, v in last["operationMetrics"].items() if v.lstrip("-").isdigit()}
    assert metrics["numSourceRows"] == 1  # only the 4th day was recomputed ...
    assert metrics["numTargetRowsInserted"] == 1  # ... and written
    assert metrics["numTargetRowsUpdated"] == 0
    assert metrics["numTargetRowsDeleted"] == 0
    assert metrics["numTargetFilesRemoved"] == 0  # no earlier day's file rewritten
    # the mart's history: one table creation, then this merge
    operations = [c["operation"] for c in fourth_day["commits"]]
    assert operations == ["CREATE OR REPLACE TABLE AS SELECT", "MERGE"]


def test_unit_tests_run_only_when_asked(first_build: dict[str, Any], fourth_day: dict[str, Any]) -> None:
    """The fourth day's build is a pipeline's (the dbt.unit_tests setting, off): the data tests run,
    the unit tests do not; the first build asked for them."""
    first = {r["resource_type"] for r in first_build["rows"]}
    later = {r["resource_type"] for r in fourth_day["rows"]}
    assert {"unit_test", "test", "model"} <= first
    assert {"test", "model"} <= later and "unit_test" not in later


def test_late_cancellation_rewrites_only_its_own_day(lake: Path, fourth_day: dict[str, Any]) -> None:
    """A 5th landing day holding only a cancellation of a 1st-day order (plus a repeat of a user
    and of an event that changes nothing): the incremental run recomputes the 1st day alone."""
    landing = lake / "landing"
    seen = [*INITIAL, FOURTH]
    orders = expected.latest_rows(landing, "orders", seen)
    victim = min(
        o
        for o, row in orders.items()
        if row["status"] != "cancelled" and row["created_at"].startswith(START.isoformat())
    )
    cancel = dict(orders[victim], status="cancelled", updated_at=f"{LATE.isoformat()}T01:00:00.000Z")
    user = expected.latest_rows(landing, "users", seen)
    event = expected.latest_rows(landing, "events", seen)
    late_rows = {"orders": cancel, "users": user[min(user)], "events": event[min(event)]}
    for source, row in late_rows.items():
        d = landing / source / f"date={LATE.isoformat()}"
        d.mkdir(parents=True)
        (d / "part-00000.json").write_text(json.dumps(row) + "\n")
    _medallion(LATE, LATE)
    state = _dbt_build(freshness=False)
    assert state.is_completed(), state.message

    dates = [*INITIAL, FOURTH, LATE]
    want = expected.daily_revenue(expected.latest_rows(landing, "orders", dates))
    with _spark() as spark:
        assert marts.daily_revenue(spark) == want
    assert want[START] != fourth_day["want"]["daily"][START]  # the cancellation did change day 1
    last = _commits(lake.joinpath(*MART_DIR, "fct_daily_revenue"))[-1]
    m = last["operationMetrics"]
    assert last["operation"] == "MERGE"
    touched = (m["numSourceRows"], m["numTargetRowsUpdated"], m["numTargetRowsInserted"])
    assert touched == ("1", "1", "0")


def test_a_failing_dbt_test_fails_the_flow_and_names_the_test(lake: Path, first_build: dict[str, Any]) -> None:
    from lakehouse.dbt import DbtError

    state = _dbt_build(select=["assert_fails_on_purpose"], freshness=False, project_vars={"enable_failing_test": True})
    assert state.is_failed()
    assert "assert_fails_on_purpose" in (state.message or "")
    with pytest.raises(DbtError, match=r"test assert_fails_on_purpose .*: fail") as err:
        state.result()
    assert err.value.failures and "assert_fails_on_purpose" in err.value.failures[0]
    states = _task_run_states(state.state_details.flow_run_id)
    assert states.get("test assert_fails_on_purpose") == "FAILED"
