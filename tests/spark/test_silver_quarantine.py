"""Quarantine is written when a batch quarantines rows, or when it may hold rows of the batch
from an earlier attempt; a batch that quarantines nothing costs it no commit otherwise."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_jobs import storage
from spark_jobs.contract import DEFAULT_CONTRACTS_DIR
from tests.contracts.test_battery import DAY, _land, _run, order

pytestmark = pytest.mark.spark

BAD = json.dumps(order("bad", amount=-5))  # amount.min: quarantined by contracts/orders.yaml


def _silver_entry(reports: list[Any]) -> dict[str, Any]:
    (entry,) = [t for r in reports for t in r.tables if (t["layer"], t["table"]) == ("silver", "orders")]
    return entry


def _version(spark: SparkSession, path: str) -> int:
    return int(DeltaTable.forPath(spark, path).history(1).select("version").first()[0])  # type: ignore[index]


def test_a_batch_without_rejects_leaves_quarantine_alone(spark: SparkSession, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    quarantine = str(root / "warehouse" / "quarantine" / "orders")
    _land(root, [json.dumps(order("a1")), BAD])
    first = _silver_entry(_run(spark, root, DEFAULT_CONTRACTS_DIR, run_id="run-1"))
    assert first["quarantined"] == 1
    assert _version(spark, quarantine) == 0

    day2 = DAY + dt.timedelta(days=1)
    _land(root, [json.dumps(order("b1")), json.dumps(order("b2"))], day2)
    second = _silver_entry(_run(spark, root, DEFAULT_CONTRACTS_DIR, run_id="run-2", day=day2))
    assert (second["good"], second["quarantined"]) == (2, 0)
    assert _version(spark, quarantine) == 0  # no commit
    assert "quarantine/orders" not in {o["table"] for o in second["outputs"]}

    day3 = DAY + dt.timedelta(days=2)
    _land(root, [json.dumps(order("c1")), BAD.replace('"bad"', '"bad3"')], day3)
    third = _silver_entry(_run(spark, root, DEFAULT_CONTRACTS_DIR, run_id="run-3", day=day3))
    assert third["quarantined"] == 1
    assert _version(spark, quarantine) == 1
    assert "quarantine/orders" in {o["table"] for o in third["outputs"]}
    keys = {r[0] for r in spark.read.format("delta").load(quarantine).select("record_key").collect()}
    assert keys == {"bad", "bad3"}


def test_rows_of_an_earlier_attempt_are_replaced_even_by_none(spark: SparkSession, tmp_path: Path) -> None:
    """An attempt that wrote a batch's quarantine rows but stopped before silver's commit leaves
    the batch pending; the next attempt, which quarantines nothing of it (here: the row the
    earlier attempt rejected is gone from the contract's view), must not keep that row."""
    root = tmp_path / "lake"
    quarantine = str(root / "warehouse" / "quarantine" / "orders")
    _land(root, [json.dumps(order("a1")), BAD])
    _run(spark, root, DEFAULT_CONTRACTS_DIR, run_id="run-1")

    day2 = DAY + dt.timedelta(days=1)
    _land(root, [json.dumps(order("b1"))], day2)
    _run(spark, root, DEFAULT_CONTRACTS_DIR, layers="bronze", run_id="run-2", day=day2)
    bronze = spark.read.format("delta").load(str(root / "warehouse" / "bronze" / "orders"))
    (batch,) = [r[0] for r in bronze.where(F.col("_landing_date") == day2).select("_batch_id").distinct().collect()]
    # the earlier attempt: its quarantine write of the batch, recorded as silver records it
    stale = spark.read.format("delta").load(quarantine).withColumn("record_key", F.lit("stale"))
    stale = stale.withColumn("_batch_id", F.lit(batch)).withColumn("_landing_date", F.lit(day2))
    with storage.commit_metadata(spark, [batch], run_id="crashed"):
        storage.replace_where(stale, quarantine, storage.sql_in("_batch_id", [batch]))
    assert {r[0] for r in spark.read.format("delta").load(quarantine).select("record_key").collect()} == {
        "bad",
        "stale",
    }

    again = _silver_entry(_run(spark, root, DEFAULT_CONTRACTS_DIR, layers="silver", run_id="run-2b", day=day2))
    assert (again["good"], again["quarantined"]) == (1, 0)
    keys = [r[0] for r in spark.read.format("delta").load(quarantine).select("record_key").collect()]
    assert keys == ["bad"]
    assert "quarantine/orders" in {o["table"] for o in again["outputs"]}
