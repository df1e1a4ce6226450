"""The medallion flow end to end: real Spark jobs on the warm local Spark (the default; one test
runs spark-submit), real Delta tables, Prefect's harness.

Expected values come from the generator's manifest and from tests/expected.py, which recomputes
silver and gold from the landing files in plain Python.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from lakehouse.datagen import GenConfig, Manifest, generate
from tests.e2e.support import ORDER, contracts_with, field, write_orders
from tests.medallion_tables import check_tables

pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

START = dt.date(2026, 1, 1)
DATES = [START + dt.timedelta(days=i) for i in range(3)]
SOURCES = ("orders", "users", "events")
KEYS = {"orders": "order_id", "users": "user_id", "events": "event_id"}
CFG = dict(events_per_day=1500, orders_per_day=300, users_initial=150)


def _table(spark: SparkSession, root: Path, layer: str, name: str, version: int | None = None):
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(str(root / "warehouse" / layer / name))


def _snapshot(spark: SparkSession, root: Path, drop_lineage: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for layer, names in (
        ("bronze", SOURCES),
        ("silver", (*SOURCES, "users_history")),
        ("quarantine", SOURCES),
        ("gold", ("hourly_stats", "daily_revenue", "daily_revenue_by_country")),
    ):
        for name in names:
            df = _table(spark, root, layer, name)
            if drop_lineage:
                df = df.drop("_ingested_at", "_batch_id", "run_id", "quarantined_at")
            out[f"{layer}.{name}"] = sorted(
                (tuple(r) for r in df.collect()), key=lambda t: [(v is None, str(v)) for v in t]
            )
    return out


def _run(**params: Any) -> list[dict[str, Any]]:
    from flows.medallion import medallion

    return medallion(**params)


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """Three generated days, landed once and copied into each test's root."""
    base = tmp_path_factory.mktemp("landing")
    manifest = generate(base / "landing", GenConfig(start=START, days=3, **CFG))
    return base / "landing", manifest


def _fresh_root(tmp_path: Path, landing: Path) -> Path:
    import shutil

    root = tmp_path / "lake"
    shutil.copytree(landing, root / "landing")
    return root


@pytest.fixture(scope="module")
def first_run(
    spark: SparkSession,
    tmp_path_factory: pytest.TempPathFactory,
    landed: tuple[Path, Manifest],
    prefect_harness: None,
) -> dict[str, Any]:
    """One flow run over the three days (one fused job), shared by the tests below: its root,
    summary and table snapshots taken right after it (later tests may rerun on that root)."""
    from lakehouse.settings import get_settings

    root = _fresh_root(tmp_path_factory.mktemp("first"), landed[0])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKEHOUSE_STORAGE__ROOT", str(root))
        get_settings.cache_clear()
        summary = _run(start_date=START, end_date=DATES[-1])
    get_settings.cache_clear()
    return {
        "root": root,
        "summary": summary,
        "snapshot": _snapshot(spark, root),
        "content": _snapshot(spark, root, drop_lineage=True),
        "bronze_files": {s: _table(spark, root, "bronze", s).inputFiles() for s in SOURCES},
    }


def test_flow_end_to_end_matches_manifest_and_independent_figures(
    spark: SparkSession, first_run: dict[str, Any], landed: tuple[Path, Manifest]
) -> None:
    manifest = landed[1]
    root, summary = first_run["root"], first_run["summary"]

    check_tables(spark, root, manifest, summary, DATES)

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
    keys = {a.key for a in artifact}
    assert "medallion-summary" in keys


def test_overlapping_backfills_equal_one_run(
    spark: SparkSession,
    tmp_path: Path,
    landed: tuple[Path, Manifest],
    first_run: dict[str, Any],
    use_root: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One run over three days (one fused job) equals overlapping backfills run as one job per
    layer: both job layouts, same tables."""
    landing, _ = landed
    two = _fresh_root(tmp_path / "two", landing)
    monkeypatch.setenv("LAKEHOUSE_PIPELINE__JOB_PER_LAYER", "true")
    use_root(two)
    _run(start_date=DATES[0], end_date=DATES[1])
    _run(start_date=DATES[1], end_date=DATES[2])
    _run(start_date=DATES[2], end_date=DATES[2], layers=["silver", "gold"])

    a, b = first_run["content"], _snapshot(spark, two, drop_lineage=True)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
    for s in SOURCES:
        silver = _table(spark, two, "silver", s)
        assert silver.count() == silver.select(KEYS[s]).distinct().count()


def test_the_spark_submit_path_writes_the_same_tables_and_reruns_as_nothing(
    spark: SparkSession, first_run: dict[str, Any], landed: tuple[Path, Manifest], tmp_path: Path
) -> None:
    """The tests of this module run on the warm local Spark (the default mode); with
    ``LAKEHOUSE_SPARK__MODE=submit`` (a spark-submit driver per job) the same flow gives the same
    tables (lineage columns aside), a rerun writes nothing, and the warm server gets no run."""
    from lakehouse.backends.local import LocalBackend
    from lakehouse.backends.warm import WarmServer
    from lakehouse.settings import get_settings

    warm = WarmServer(LocalBackend(get_settings()))
    before = warm.ping()
    # first_run went through the warm server of these settings (idle stop aside: 300 s here)
    assert before is not None and before["runs"] >= 1, before
    root = _fresh_root(tmp_path, landed[0])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAKEHOUSE_STORAGE__ROOT", str(root))
        mp.setenv("LAKEHOUSE_SPARK__MODE", "submit")
        get_settings.cache_clear()
        summary = _run(start_date=START, end_date=DATES[-1])
        again = _run(start_date=START, end_date=DATES[-1])
    get_settings.cache_clear()
    after = warm.ping()
    assert after is not None and after["runs"] == before["runs"]  # nothing went to the warm server
    check_tables(spark, root, landed[1], summary, DATES)
    assert _snapshot(spark, root, drop_lineage=True) == first_run["content"]
    assert [r["rows_written"] for r in again] == [0] * len(again)


def test_rerun_and_full_refresh_leave_identical_tables(
    spark: SparkSession, first_run: dict[str, Any], use_root: Any
) -> None:
    root = first_run["root"]
    use_root(root)
    summary = _run(start_date=START, end_date=DATES[-1])
    assert _snapshot(spark, root) == first_run["snapshot"]
    assert {s: _table(spark, root, "bronze", s).inputFiles() for s in SOURCES} == first_run["bronze_files"]
    assert all(r["rows_written"] == 0 for r in summary if r["layer"] in ("bronze", "silver"))

    # a full refresh of the middle day rebuilds it from its inputs: same content, new lineage
    _run(start_date=DATES[1], end_date=DATES[1], full_refresh=True)
    assert _snapshot(spark, root, drop_lineage=True) == first_run["content"]


def test_failing_job_fails_the_flow_naming_exit_code_and_log(tmp_path: Path, use_root: Any) -> None:
    from prefect import flow

    from lakehouse.errors import SparkJobError
    from lakehouse.jobs import SparkJob
    from tasks.spark import run_spark_job

    @flow
    def failing() -> None:
        run_spark_job.with_options(retries=0)(
            SparkJob(name="diag-fail", entrypoint="spark_jobs.diagnostics", args=("--exit-code", "7"))
        )

    state = failing(return_state=True)
    assert state.is_failed()
    with pytest.raises(SparkJobError) as err:
        state.result()
    assert err.value.exit_code == 7
    assert "failing on purpose with exit code 7" in str(err.value)


def test_transient_failure_is_retried_with_the_configured_backoff(tmp_path: Path) -> None:
    """run_spark_job's own retry policy (retries=2, exponential backoff factor 10 s, jitter 0.2) on
    a job whose first attempt fails: the run completes on attempt 2, after a delay inside the
    jitter band, read from the task run's real states."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    from lakehouse.jobs import SparkJob
    from tasks.spark import run_spark_job

    attempts = tmp_path / "attempts"
    job = SparkJob(
        name="diag-flaky",
        entrypoint="spark_jobs.diagnostics",
        args=("--rows", "10", "--fail-attempts", "1", "--attempts-file", str(attempts)),
    )

    @flow
    def flaky() -> int:
        return run_spark_job(job).metrics[0]["rows_read"]

    state = flaky(return_state=True)
    assert state.is_completed(), state
    assert state.result() == 10
    assert len(attempts.read_text().splitlines()) == 2
    with get_client(sync_client=True) as client:
        (task_run,) = [r for r in client.read_task_runs() if r.flow_run_id == state.state_details.flow_run_id]
        states = sorted(client.read_task_run_states(task_run.id), key=lambda s: s.timestamp)
    assert task_run.run_count == 2
    names = [s.name for s in states]
    assert names[-4:] == ["Running", "AwaitingRetry", "Retrying", "Completed"], names
    retry, rerun = states[-3], states[-2]
    planned = (retry.state_details.scheduled_time - retry.timestamp).total_seconds()
    assert 10 * 0.8 - 0.5 <= planned <= 10 * 1.2 + 0.5, planned  # first delay 10 s, jitter 0.2
    waited = (rerun.timestamp - retry.timestamp).total_seconds()
    assert planned - 0.5 <= waited <= planned + 10, (planned, waited)


def test_bad_parameters_fail_before_any_spark_work(use_root: Any, tmp_path: Path) -> None:
    from prefect.exceptions import ParameterTypeError

    from lakehouse.errors import ConfigError

    use_root(tmp_path)
    # the layer names are a Literal: Prefect rejects an unknown one before the flow body runs,
    # naming the parameter and the allowed values (the same check guards deployment runs)
    with pytest.raises(ParameterTypeError, match=r"layers\.0: Input should be 'bronze', 'silver' or 'gold'"):
        _run(start_date=START, layers=["platinum"])
    with pytest.raises(ConfigError, match="after end_date"):
        _run(start_date=DATES[2], end_date=DATES[0])
    assert not (tmp_path / "warehouse").exists()


def _latest_flow_run_task_runs(name: str) -> list[Any]:
    """The task runs called ``name`` of the newest flow run in the test harness's API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (latest,) = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
        return [r for r in client.read_task_runs() if r.flow_run_id == latest.id and r.name == name]


def test_contract_fail_rule_fails_the_cli_with_exit_65_naming_the_rule(
    spark: SparkSession,
    tmp_path: Path,
    use_root: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The driver's exit code 65 reaches the CLI: driver -> backend -> task -> flow -> CLI."""
    from prefect.client.orchestration import get_client

    from lakehouse.cli import main

    contracts = contracts_with(
        tmp_path / "contracts", "orders", lambda doc: field(doc, "amount").update(on_violation="fail")
    )
    root = tmp_path / "lake"
    write_orders(root, [ORDER, {**ORDER, "order_id": "o2", "amount": -3}])
    monkeypatch.setenv("LAKEHOUSE_CONTRACTS_DIR", str(contracts))
    use_root(root)

    capsys.readouterr()
    code = main(["medallion", "--start", "2026-02-01"])
    err = capsys.readouterr().err
    assert code == 65, err[-2000:]
    assert "orders: amount.min" in err and "contract violation" in err
    assert "exit code 65: a data-contract fail rule" in err
    assert not (root / "warehouse" / "gold").exists()
    assert (
        spark.read.format("delta").load(str(root / "warehouse/silver/orders")).count() == 0
        if (root / "warehouse/silver/orders").exists()
        else True
    )
    spark_runs = _latest_flow_run_task_runs("medallion")
    assert len(spark_runs) == 1 and spark_runs[0].run_count == 1  # a violation is not retried
    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_latest_artifacts()}
    assert "data-quality" in keys


def test_warn_rule_keeps_the_row_and_counts_it_in_metrics_and_artifact(
    spark: SparkSession,
    tmp_path: Path,
    use_root: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``warn`` rule lets the breaking row through to silver, untouched, and counts it: in
    quality/metrics (action warn) and in the run's data-quality artifact; nothing is quarantined."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.medallion import medallion

    contracts = contracts_with(
        tmp_path / "contracts", "orders", lambda doc: field(doc, "amount").update(on_violation="warn")
    )
    root = tmp_path / "lake"
    write_orders(
        root, [ORDER, {**ORDER, "order_id": "o2", "amount": -3}, {**ORDER, "order_id": "o3", "amount": 250000}]
    )
    monkeypatch.setenv("LAKEHOUSE_CONTRACTS_DIR", str(contracts))
    use_root(root)

    state = medallion(start_date=dt.date(2026, 2, 1), layers=["bronze", "silver"], dbt_marts=False, return_state=True)
    assert state.is_completed(), state
    silver_rows = {
        r["order_id"]: r["amount"]
        for r in spark.read.format("delta").load(str(root / "warehouse/silver/orders")).collect()
    }
    assert silver_rows == {"o1": Decimal("5.00"), "o2": Decimal("-3.00"), "o3": Decimal("250000.00")}
    assert (
        not (root / "warehouse/quarantine/orders").exists()
        or spark.read.format("delta").load(str(root / "warehouse/quarantine/orders")).count() == 0
    )
    metrics = {
        (r["rule"], r["action"]): (r["evaluated"], r["failed"])
        for r in spark.read.format("delta")
        .load(str(root / "warehouse/quality/metrics"))
        .where("`table` = 'orders'")
        .collect()
    }
    assert metrics[("amount.min", "warn")] == (3, 1)
    assert metrics[("amount.max", "warn")] == (3, 1)
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["data-quality"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    shown = {(r["table"], r["rule"]): (r["action"], r["failed"]) for r in json.loads(artifact.data)}
    assert shown[("orders", "amount.min")] == ("warn", 1)
    assert shown[("orders", "amount.max")] == ("warn", 1)


def test_invalid_contract_file_fails_the_cli_with_exit_78_naming_file_and_key(
    tmp_path: Path,
    use_root: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A contract file the driver cannot load is a configuration error: exit 78 from the driver,
    kept to the CLI, and not retried (it would fail the same way)."""
    from lakehouse.cli import main
    from lakehouse.datagen import GenConfig, generate

    contracts = contracts_with(
        tmp_path / "contracts", "users", lambda doc: field(doc, "country").update(type="varchar")
    )
    doc = yaml.safe_load((contracts / "users.yaml").read_text())
    root = tmp_path / "lake"
    generate(
        root / "landing",
        GenConfig(start=dt.date(2026, 2, 1), days=1, events_per_day=20, orders_per_day=5, users_initial=5),
    )
    monkeypatch.setenv("LAKEHOUSE_CONTRACTS_DIR", str(contracts))
    use_root(root)

    capsys.readouterr()
    code = main(["medallion", "--start", "2026-02-01", "--no-dbt-marts"])
    err = capsys.readouterr().err
    assert code == 78, err[-2000:]
    index = [f["name"] for f in doc["schema"]].index("country")
    assert "users.yaml" in err and f"schema.{index}.type: unknown type 'varchar'" in err, err[-2000:]
    assert "exit code 78: an invalid setting, contract file" in err
    assert not (root / "warehouse").exists()  # nothing was written
    spark_runs = _latest_flow_run_task_runs("medallion")
    assert len(spark_runs) == 1 and spark_runs[0].run_count == 1  # not retried


def test_dbt_marts_parameter_overrides_the_setting(tmp_path: Path, use_root) -> None:
    """``dbt_marts=True`` builds the marts although the setting is off (the suite's default):
    on a root without silver tables the dbt-build subflow refuses with its own error, which
    only happens when the subflow was called."""
    from flows.medallion import medallion
    from lakehouse.errors import ConfigError
    from lakehouse.settings import get_settings

    use_root(tmp_path / "lake")
    assert get_settings().pipeline.dbt_marts is False
    state = medallion(start_date=dt.date(2026, 3, 1), layers=["gold"], dbt_marts=True, return_state=True)
    assert state.is_failed()
    with pytest.raises(ConfigError, match="dbt needs the silver tables"):
        state.result()
