"""Maintenance on real Delta tables: OPTIMIZE + Z-ORDER, the VACUUM guard, RESTORE, history."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from spark_jobs import maintenance

pytestmark = pytest.mark.spark
SCHEMA = "event_id string, user_id string, event_type string, event_date date"


def _many_small_files(spark: SparkSession, path: str, batches: int = 6) -> list[tuple]:
    rows = []
    for b in range(batches):
        part = [(f"e{b}-{i}", f"u{i % 7}", ("view", "buy")[i % 2], dt.date(2026, 1, 1 + b % 2)) for i in range(20)]
        spark.createDataFrame(part, SCHEMA).repartition(2).write.format("delta").mode("append").partitionBy(
            "event_date"
        ).save(path)
        rows += part
    return sorted(rows)


def _content(spark: SparkSession, path: str) -> list[tuple]:
    return sorted(tuple(r) for r in spark.read.format("delta").load(path).collect())


def test_optimize_zorders_fewer_files_same_content(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "events")
    rows = _many_small_files(spark, path)
    before = maintenance.detail(spark, path)["files"]
    out = maintenance.optimize(spark, path, ["user_id", "event_type", "event_date"])
    assert out["zorder_by"] == ["user_id", "event_type"]  # the partition column is left out
    assert out["files_before"] == before and out["files_after"] < before
    assert out["files_after"] == 2  # one per partition
    assert _content(spark, path) == rows
    assert maintenance.history(spark, path)["commits"][0]["operation"] == "OPTIMIZE"


@pytest.mark.parametrize("hours", [0, 1, 167.9])
def test_vacuum_guard_refuses_short_retention(spark: SparkSession, tmp_path: Path, hours: float) -> None:
    path = str(tmp_path / "t")
    _many_small_files(spark, path, batches=1)
    with pytest.raises(maintenance.VacuumGuardError, match="refusing VACUUM with a retention of"):
        maintenance.vacuum(spark, path, hours, force=False)
    assert (
        maintenance.main(["vacuum", "--root", str(tmp_path), "--tables", "x/t", "--retention-hours", str(hours)])
        == maintenance.GUARD_EXIT
    )


def test_forced_vacuum_removes_unreferenced_files_and_breaks_old_versions(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "events")
    rows = _many_small_files(spark, path, batches=3)
    maintenance.optimize(spark, path, [])
    on_disk = len(list(Path(path).rglob("*.parquet")))
    maintenance.vacuum(spark, path, 0, force=True)
    assert len(list(Path(path).rglob("*.parquet"))) < on_disk
    assert _content(spark, path) == rows
    with pytest.raises(Exception):  # noqa: B017 - the pre-OPTIMIZE files are gone
        spark.read.format("delta").option("versionAsOf", 0).load(path).collect()


def test_restore_to_version_and_timestamp(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    spark.createDataFrame([("a", "u", "view", dt.date(2026, 1, 1))], SCHEMA).write.format("delta").save(path)
    v0 = _content(spark, path)
    time.sleep(1.1)
    ts = maintenance.history(spark, path)["commits"][0]["timestamp"]
    spark.createDataFrame([("b", "u", "buy", dt.date(2026, 1, 1))], SCHEMA).write.format("delta").mode(
        "overwrite"
    ).save(path)
    assert _content(spark, path) != v0
    out = maintenance.restore(spark, path, 0, None)
    assert (out["restored_to"], out["version"]) == (0, 2)
    assert _content(spark, path) == v0
    spark.createDataFrame([("c", "u", "buy", dt.date(2026, 1, 1))], SCHEMA).write.format("delta").mode(
        "overwrite"
    ).save(path)
    maintenance.restore(spark, path, None, ts)
    assert _content(spark, path) == v0
