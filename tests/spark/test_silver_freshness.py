"""Silver's freshness SLA without a scan of silver: the newest value is carried in its commits.

Each silver run records the newest ``sla.freshness_column`` value of the table as it stands after
its commit; the next run takes it from the latest commit instead of reading the whole table, and
scans only when the latest commit is not a silver run's (a RESTORE, a write by anything else).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from spark_jobs import storage
from spark_jobs.contract import DEFAULT_CONTRACTS_DIR
from tests.contracts.test_battery import DAY, _land, _run, order

pytestmark = pytest.mark.spark


def _newest_metric(reports: list[Any]) -> str:
    (entry,) = [t for r in reports for t in r.tables if (t["layer"], t["table"]) == ("silver", "orders")]
    (metric,) = [m for m in entry["quality"] if m["rule"] == "sla.freshness"]
    return str(metric["newest"])


def _latest_metadata(spark: SparkSession, path: str) -> dict[str, Any]:
    meta = DeltaTable.forPath(spark, path).history(1).select("userMetadata").first()
    return json.loads(meta[0]) if meta and meta[0] else {}


def test_the_newest_value_is_recorded_read_back_and_rescanned_after_other_writes(
    spark: SparkSession, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    silver = str(root / "warehouse" / "silver" / "orders")
    stamps = ["2026-03-01T08:00:00Z", "2026-03-01T21:30:00Z", "2026-03-01T09:15:00Z"]
    _land(root, [json.dumps(order(f"a{i}", updated_at=t, created_at=t)) for i, t in enumerate(stamps)])
    first = _run(spark, root, DEFAULT_CONTRACTS_DIR, run_id="run-1")
    assert _newest_metric(first) == "2026-03-01 21:30:00"
    recorded = _latest_metadata(spark, silver)
    assert (recorded["newest"], recorded["newest_column"]) == ("2026-03-01 21:30:00", "updated_at")

    # A write by something else (no silver metadata): the next run must scan and find its row.
    later = dt.datetime(2026, 3, 2, 5, 0)
    row = spark.read.format("delta").load(silver).limit(1).collect()[0].asDict()
    row.update(order_id="manual", updated_at=later)
    spark.createDataFrame([row], spark.read.format("delta").load(silver).schema).write.format("delta").mode(
        "append"
    ).save(silver)
    next_day = DAY + dt.timedelta(days=1)
    _land(root, [json.dumps(order("b1", updated_at="2026-03-02T01:00:00Z"))], next_day)
    second = _run(spark, root, DEFAULT_CONTRACTS_DIR, run_id="run-2", day=next_day)
    assert _newest_metric(second) == "2026-03-02 05:00:00"

    # The latest commit is a silver run's: its recorded value is what the next run starts from.
    # Planting a value no row has shows it is read rather than recomputed from the table.
    with storage.commit_metadata(spark, [], newest="2030-01-01 00:00:00", newest_column="updated_at"):
        storage.mark_applied(spark, silver)
    third_day = DAY + dt.timedelta(days=2)
    _land(root, [json.dumps(order("c1", updated_at="2026-03-03T01:00:00Z"))], third_day)
    third = _run(spark, root, DEFAULT_CONTRACTS_DIR, run_id="run-3", day=third_day)
    assert _newest_metric(third) == "2030-01-01 00:00:00"

    # A RESTORE is not a silver run: the next run scans the restored table again.
    DeltaTable.forPath(spark, silver).restoreToVersion(0)
    fourth_day = DAY + dt.timedelta(days=3)
    _land(root, [json.dumps(order("d1", updated_at="2026-03-01T10:00:00Z"))], fourth_day)
    fourth = _run(spark, root, DEFAULT_CONTRACTS_DIR, run_id="run-4", day=fourth_day)
    assert _newest_metric(fourth) == "2026-03-01 21:30:00"
