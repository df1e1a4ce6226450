"""The maintenance flows on the warm local Spark (the default) under Prefect's harness."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from lakehouse.errors import ConfigError
from tests.e2e.support import latest_run_name

pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]
SCHEMA = "event_id string, user_id string, event_type string, event_date date"


def test_vacuum_guard_refuses_zero_hours_before_submitting(tmp_path: Path, use_root: Any) -> None:
    from flows.maintenance import maintenance

    use_root(tmp_path)
    with pytest.raises(ConfigError, match="refusing VACUUM with a retention of 0 hours"):
        maintenance(tables=["silver/events"], vacuum_retention_hours=0)


def test_maintenance_compacts_and_restore_returns_earlier_content(
    spark: SparkSession, tmp_path: Path, use_root: Any
) -> None:
    from flows.maintenance import maintenance, restore_table

    path = tmp_path / "warehouse" / "silver" / "events"
    rows = []
    for b in range(4):
        part = [(f"e{b}-{i}", f"u{i % 5}", ("view", "buy")[i % 2], dt.date(2026, 1, 1)) for i in range(10)]
        spark.createDataFrame(part, SCHEMA).repartition(3).write.format("delta").mode("append").partitionBy(
            "event_date"
        ).save(str(path))
        rows += part
    use_root(tmp_path)
    metrics = maintenance(tables=["silver/events"])
    opt = next(m for m in metrics if m.get("operation") == "OPTIMIZE")
    assert opt["files_before"] == 12 and opt["files_after"] == 1 and opt["zorder_by"] == ["user_id", "event_type"]
    hist = next(m for m in metrics if m.get("operation") == "HISTORY")
    assert [c["operation"] for c in hist["commits"][:2]] == ["VACUUM END", "VACUUM START"]
    assert sorted(tuple(r) for r in spark.read.format("delta").load(str(path)).collect()) == sorted(rows)
    assert latest_run_name("maintenance") == "maintenance optimize,vacuum silver/events"

    restore_table(table="silver/events", version=1)
    assert spark.read.format("delta").load(str(path)).count() == 20
    assert latest_run_name("restore-table") == "restore-table silver/events"


def test_time_travel_and_restore_by_timestamp(
    spark: SparkSession, tmp_path: Path, use_root: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``lakehouse show-tables --as-of <timestamp>`` reads with timestampAsOf, and the
    restore-table flow restores to a timestamp: both land on the version committed at or before
    it, computed here from the commit timestamps in the table's own log files."""
    import json
    import time

    from flows.maintenance import restore_table
    from lakehouse.cli import main

    path = tmp_path / "warehouse" / "silver" / "events"
    for b in range(3):
        part = [(f"e{b}-{i}", f"u{i}", "view", dt.date(2026, 1, 1)) for i in range(10)]
        spark.createDataFrame(part, SCHEMA).write.format("delta").mode("append").save(str(path))
        time.sleep(1.5)
    commits = {}
    for log in sorted((path / "_delta_log").glob("*.json")):
        info = next(json.loads(line)["commitInfo"] for line in log.read_text().splitlines() if "commitInfo" in line)
        commits[int(log.stem)] = info["timestamp"] / 1000
    assert sorted(commits) == [0, 1, 2]
    between = dt.datetime.fromtimestamp((commits[1] + commits[2]) / 2, dt.UTC)  # after v1, before v2
    as_of = between.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    use_root(tmp_path)

    capsys.readouterr()
    assert main(["show-tables", "--table", "silver/events", "--as-of", as_of]) == 0
    out = capsys.readouterr().out
    assert (
        f"time travel silver/events: as of {as_of}: version 1 has 20 rows, version 2 has 30 rows; "
        "10 rows differ from version 1"
    ) in out, out

    restore_table(table="silver/events", timestamp=as_of)
    restored = spark.read.format("delta").load(str(path))
    assert sorted(r.event_id for r in restored.collect()) == sorted(f"e{b}-{i}" for b in range(2) for i in range(10))
    last = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()
    assert last is not None and last["operation"] == "RESTORE" and last["version"] == 3
