"""The maintenance flows through spark-submit under Prefect's harness."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from lakehouse.errors import ConfigError

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
        spark.createDataFrame(part, SCHEMA).repartition(3).write.format("delta").mode("append") \
            .partitionBy("event_date").save(str(path))
        rows += part
    use_root(tmp_path)
    metrics = maintenance(tables=["silver/events"])
    opt = next(m for m in metrics if m.get("operation") == "OPTIMIZE")
    assert opt["files_before"] == 12 and opt["files_after"] == 1 and opt["zorder_by"] == ["user_id", "event_type"]
    hist = next(m for m in metrics if m.get("operation") == "HISTORY")
    assert [c["operation"] for c in hist["commits"][:2]] == ["VACUUM END", "VACUUM START"]
    assert sorted(tuple(r) for r in spark.read.format("delta").load(str(path)).collect()) == sorted(rows)

    restore_table(table="silver/events", version=1)
    assert spark.read.format("delta").load(str(path)).count() == 20
