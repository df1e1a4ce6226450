"""silver's rule outcomes (quality/metrics): one append for all the sources of a run."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from lakehouse.datagen import GenConfig, generate
from spark_jobs import medallion, silver
from spark_jobs.cli import batch_parser, check_batch

pytestmark = pytest.mark.spark

SOURCES = ["orders", "users", "events"]


def _run(spark: SparkSession, root: Path, day: dt.date, run_id: str) -> list[Any]:
    p = batch_parser("m", "")
    p.add_argument("--layers", type=lambda v: v.split(","))
    argv = ["--root", str(root), "--start", day.isoformat(), "--end", day.isoformat(), "--run-id", run_id]
    args = check_batch(p, p.parse_args([*argv, "--layers", "bronze,silver", "--parallelism", "3"]))
    return medallion.run(spark, args)


def _commits(path: Path) -> list[dict[str, Any]]:
    """The commitInfo of every version of the Delta table at ``path``, read from its log files."""
    return [
        json.loads(line)["commitInfo"]
        for f in sorted((path / "_delta_log").glob("*.json"))
        for line in f.read_text().splitlines()
        if '"commitInfo"' in line
    ]


def test_one_append_holds_every_sources_outcomes_and_a_rerun_adds_none(spark: SparkSession, tmp_path: Path) -> None:
    day = dt.date.today() - dt.timedelta(days=1)  # within the contracts' freshness SLAs
    generate(tmp_path / "landing", GenConfig(start=day, days=1, events_per_day=200, orders_per_day=40))
    metrics = tmp_path / "warehouse" / "quality" / "metrics"
    _, report = _run(spark, tmp_path, day, "run-1")
    assert [c["operation"] for c in _commits(metrics)] == ["WRITE"]  # one commit: version 0
    rows = spark.read.format("delta").load(str(metrics)).collect()
    assert {r.table for r in rows} == set(SOURCES) and {r.run_id for r in rows} == {"run-1"}
    for entry in report.tables:  # every source's lineage names the version its outcomes are in
        (out,) = [o for o in entry["outputs"] if o["table"] == "quality/metrics"]
        assert (out["version"], out["committed"]) == (0, True), entry["table"]
        assert {r.rule for r in rows if r.table == entry["table"]} == {m["rule"] for m in entry["quality"]}
    _, again = _run(spark, tmp_path, day, "run-2")  # nothing pending: nothing appended
    assert len(_commits(metrics)) == 1
    assert all(e["batches"] == 0 for e in again.tables)


def test_a_crashed_source_keeps_the_outcomes_of_those_that_finished(
    spark: SparkSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = dt.date.today() - dt.timedelta(days=1)
    generate(tmp_path / "landing", GenConfig(start=day, days=1, events_per_day=200, orders_per_day=40))
    promote = silver.promote

    def crash_on_events(session: SparkSession, args: Any, contract: Any, *rest: Any) -> list[str]:
        if contract.name == "events":
            raise RuntimeError("events crashed on purpose")
        return promote(session, args, contract, *rest)

    monkeypatch.setattr(silver, "promote", crash_on_events)
    with pytest.raises(RuntimeError, match="events crashed on purpose"):
        _run(spark, tmp_path, day, "run-1")
    rows = spark.read.format("delta").load(str(tmp_path / "warehouse" / "quality" / "metrics")).collect()
    assert {r.table for r in rows} == {"orders", "users"}  # their silver commits happened: so did these
