"""The streaming transforms on small inline DataFrames in the Kafka source's shape: exact rows."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakehouse.kafka import MALFORMED_KINDS, make_event, spoil
from spark_jobs.contract import DEFAULT_CONTRACTS_DIR, load_contract
from spark_jobs.transforms import streaming as tx
from tests.kafka.streaming_support import ERRORS, RULES

pytestmark = pytest.mark.spark

T0 = dt.datetime(2026, 1, 1, 0, 0)
KAFKA_SCHEMA = "key binary, value binary, topic string, partition int, offset bigint, timestamp timestamp"


def _records(spark: SparkSession, values: list[tuple[str, bytes | None]]) -> DataFrame:
    rows = [(k.encode(), v, "events", i % 3, i, T0) for i, (k, v) in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def _iso(col: str) -> F.Column:
    return F.date_format(col, "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'")


def test_parse_splits_valid_events_and_dead_letters_with_exact_errors(spark: SparkSession) -> None:
    rng = random.Random(7)
    good = {
        "event_id": "e1",
        "user_id": "u1",
        "event_type": "purchase",
        "amount": 12.5,
        "event_time": "2026-01-01T00:00:01.250Z",
    }
    no_amount = {
        "event_id": "e2",
        "user_id": "u2",
        "event_type": "page_view",
        "amount": None,
        "event_time": "2026-01-01T00:04:59.999Z",
    }
    base = make_event("x", rng, T0)
    bracket = {**no_amount, "event_id": "e3", "user_id": "[u3]"}  # a string that starts with "["
    values: list[tuple[str, bytes | None]] = [
        ("e1", json.dumps(good).encode()),
        ("e2", json.dumps(no_amount).encode()),
        ("e3", json.dumps(bracket).encode()),
    ]
    values += [(f"bad-{kind}", spoil({**base, "event_id": f"bad-{kind}"}, kind)) for kind in MALFORMED_KINDS]
    values += [("null-value", None), ("null-id", json.dumps({**good, "event_id": None}).encode())]
    contract = load_contract(DEFAULT_CONTRACTS_DIR / "events.yaml")
    parsed = tx.parse_kafka_events(_records(spark, values), contract)

    bronze = tx.valid_events(parsed, batch_id=7, ingested_at=F.lit(T0))
    assert bronze.dtypes == list(tx.BRONZE_COLUMNS)
    got = sorted(
        tuple(r)
        for r in bronze.select(
            "event_id",
            "user_id",
            "event_type",
            "amount",
            _iso("event_time"),
            "_kafka_key",
            "_kafka_topic",
            "_kafka_partition",
            "_kafka_offset",
            "_batch_id",
        ).collect()
    )
    assert got == [
        ("e1", "u1", "purchase", Decimal("12.50"), "2026-01-01T00:00:01.250Z", "e1", "events", 0, 0, 7),
        ("e2", "u2", "page_view", None, "2026-01-01T00:04:59.999Z", "e2", "events", 1, 1, 7),
        ("e3", "[u3]", "page_view", None, "2026-01-01T00:04:59.999Z", "e3", "events", 2, 2, 7),
    ]

    # a conforming event carries no error, no broken rule and no action
    verdicts = {
        r["_kafka_key"]: (r["error"], r["rules"], r["action"])
        for r in parsed.where(F.col("_kafka_key").isin("e1", "e2", "e3")).collect()
    }
    assert verdicts == {"e1": (None, [], None), "e2": (None, [], None), "e3": (None, [], None)}

    dead = tx.dead_letters(parsed, batch_id=7, ingested_at=F.lit(T0))
    assert [n for n, _ in dead.dtypes] == [n for n, _ in tx.DEAD_LETTER_COLUMNS]
    errors = {r["_kafka_key"]: (r["error"], r["value"], r["rules"], r["action"]) for r in dead.collect()}
    raw = {k: v.decode() if v is not None else None for k, v in values}
    # written out here, not taken from the code under test
    assert errors == {
        "bad-truncated": ("not a JSON object", raw["bad-truncated"], ["malformed_json"], "quarantine"),
        "bad-not-json": ("not a JSON object", raw["bad-not-json"], ["malformed_json"], "quarantine"),
        "bad-json-array": ("not a JSON object", raw["bad-json-array"], ["malformed_json"], "quarantine"),
        "bad-missing-field": (
            "missing required field(s): event_time",
            raw["bad-missing-field"],
            ["event_time.required"],
            "quarantine",
        ),
        "bad-bad-amount": (
            "amount: cannot read 'twelve euros' as decimal(10,2)",
            raw["bad-bad-amount"],
            ["amount.type"],
            "quarantine",
        ),
        "bad-bad-timestamp": (
            "event_time: cannot read 'yesterday at noon' as timestamp",
            raw["bad-bad-timestamp"],
            ["event_time.type"],
            "quarantine",
        ),
        "bad-unknown-type": (
            'event_type="teleport" is not one of [page_view, add_to_cart, checkout, purchase]',
            raw["bad-unknown-type"],
            ["event_type.allowed_values"],
            "quarantine",
        ),
        "bad-negative-amount": (
            "amount=-5.0 is below the minimum 0",
            raw["bad-negative-amount"],
            ["amount.min"],
            "quarantine",
        ),
        "bad-nested-user": (
            'user_id=["u0000001","u0000002"] is not a string (a JSON array or object)',
            raw["bad-nested-user"],
            ["user_id.type"],
            "quarantine",
        ),
        "null-value": ("not a JSON object", None, ["malformed_json"], "quarantine"),
        "null-id": ("missing required field(s): event_id", raw["null-id"], ["event_id.required"], "quarantine"),
    }
    # the ingest tests' table of expectations agrees with this one
    assert {k: (errors[f"bad-{k}"][0], errors[f"bad-{k}"][2]) for k in MALFORMED_KINDS} == {
        k: (ERRORS[k], RULES[k]) for k in MALFORMED_KINDS
    }


def test_warn_rules_keep_the_event_and_report_the_rule(spark: SparkSession) -> None:
    contract = load_contract(DEFAULT_CONTRACTS_DIR / "events.yaml")
    lenient = contract.model_copy(
        update={
            "fields": tuple(
                f.model_copy(update={"on_violation": "warn"}) if f.name == "amount" else f for f in contract.fields
            )
        }
    )
    event = {
        "event_id": "w1",
        "user_id": "u1",
        "event_type": "purchase",
        "amount": -1,
        "event_time": "2026-01-01T00:00:01.250Z",
    }
    records = _records(spark, [("w1", json.dumps(event).encode())])
    kept = tx.parse_kafka_events(records, lenient).select("event_id", "amount", "error", "rules", "action").collect()
    assert [tuple(r) for r in kept] == [("w1", Decimal("-1.00"), None, ["amount.min"], "warn")]
    strict = tx.parse_kafka_events(records, contract).select("error", "rules", "action").collect()
    assert [tuple(r) for r in strict] == [("amount=-1 is below the minimum 0", ["amount.min"], "quarantine")]
    # structure only (no contract): the negative amount is a valid event
    bare = tx.parse_kafka_events(records).select("error", "rules", "action").collect()
    assert [tuple(r) for r in bare] == [(None, [], None)]


def test_windowed_counts_per_type_and_window(spark: SparkSession) -> None:
    rows = [
        (T0 + dt.timedelta(minutes=1), "purchase", Decimal("1.10")),
        (T0 + dt.timedelta(minutes=4, seconds=59), "purchase", Decimal("2.20")),
        (T0 + dt.timedelta(minutes=5), "purchase", None),
        (T0 + dt.timedelta(minutes=2), "page_view", None),
    ]
    events = spark.createDataFrame(rows, "event_time timestamp, event_type string, amount decimal(10,2)")
    out = tx.windowed_counts(events)
    assert [n for n, _ in out.dtypes] == [n for n, _ in tx.GOLD_COLUMNS]
    got = sorted(
        tuple(r)
        for r in out.select(
            _iso("window_start"), _iso("window_end"), "event_type", "event_count", "amount_sum"
        ).collect()
    )
    assert got == [
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:05:00.000Z", "page_view", 1, None),
        ("2026-01-01T00:00:00.000Z", "2026-01-01T00:05:00.000Z", "purchase", 2, Decimal("3.30")),
        ("2026-01-01T00:05:00.000Z", "2026-01-01T00:10:00.000Z", "purchase", 1, None),
    ]


def test_batch_writes_run_side_by_side_with_the_callers_job_properties(
    spark: SparkSession,
) -> None:
    import threading

    from spark_jobs.streaming import run_side_by_side

    sc = spark.sparkContext
    sc.setLocalProperty("lakehouse.test.batch", "b7")
    spark.addTag("lakehouse-test-batch")
    both_started = threading.Barrier(2, timeout=30)  # fails unless the two run at once
    seen: list[str | None] = []
    ran: list[str] = []

    def write(name: str, fail: bool = False) -> None:
        both_started.wait()
        tagged = "lakehouse-test-batch" in spark.getTags()
        seen.append(f"{sc.getLocalProperty('lakehouse.test.batch')} tagged={tagged}")
        ran.append(name)
        if fail:
            raise RuntimeError(f"{name} failed")

    try:
        run_side_by_side(spark, [lambda: write("bronze"), lambda: write("metrics")])
        assert sorted(ran) == ["bronze", "metrics"] and seen == ["b7 tagged=True"] * 2
        ran.clear()
        both_started.reset()
        with pytest.raises(RuntimeError, match="dead letters failed"):
            run_side_by_side(spark, [lambda: write("dead letters", fail=True), lambda: write("bronze")])
        assert sorted(ran) == ["bronze", "dead letters"]  # the other write still finished
    finally:
        sc.setLocalProperty("lakehouse.test.batch", None)  # type: ignore[arg-type]
        spark.removeTag("lakehouse-test-batch")


def test_batch_writer_splits_each_batch_once_even_when_replayed(spark: SparkSession, tmp_path: Path) -> None:
    """The foreachBatch function on inline batches: a mixed batch, a batch of dead letters only,
    a replay of it and one more bad batch; row ids in each table, the metrics rows and bronze's
    commits, exactly."""
    from delta.tables import DeltaTable

    from spark_jobs import stream_io as sio
    from spark_jobs.streaming import BronzeBatchWriter
    from spark_jobs.transforms import quality

    rng = random.Random(3)
    contract = load_contract(DEFAULT_CONTRACTS_DIR / "events.yaml")
    paths = {name: str(tmp_path / name) for name in ("bronze", "dead", "metrics")}
    sio.ensure_table(spark, paths["bronze"], tx.ddl(tx.BRONZE_COLUMNS))
    sio.ensure_table(spark, paths["dead"], tx.ddl(tx.DEAD_LETTER_COLUMNS))
    sio.ensure_table(spark, paths["metrics"], quality.METRICS_SCHEMA)
    writer = BronzeBatchWriter(paths["bronze"], paths["dead"], contract, paths["metrics"])
    writer.set_query_id("q1")

    def event(i: str) -> tuple[str, bytes]:
        return i, json.dumps(make_event(i, rng, T0)).encode()

    mixed = [event("g1"), ("b1", b"{not json"), event("g2"), ("b2", None)]
    only_bad = [("b3", b"[]"), ("b4", b"")]
    writer(_records(spark, mixed), 0)
    writer(_records(spark, only_bad), 1)
    writer(_records(spark, only_bad), 1)  # a restart re-runs batch 1: Delta skips its appends
    writer(_records(spark, [("b5", b"{}")]), 2)

    def ids(path: str, col: str) -> list[str]:
        return sorted(r[0] for r in spark.read.format("delta").load(path).select(col).collect())

    assert ids(paths["bronze"], "event_id") == ["g1", "g2"]
    assert ids(paths["dead"], "_kafka_key") == ["b1", "b2", "b3", "b4", "b5"]
    metrics = spark.read.format("delta").load(paths["metrics"])
    assert metrics.count() == 3 * len(writer.rule_actions)  # one row per rule per batch
    assert sorted(r[0] for r in metrics.groupBy("evaluated").count().collect()) == [1, 2, 4]
    # bronze is appended while a batch is counted, so the first batch without valid records
    # commits an empty append; after it bronze waits for the count and batch 2 adds no commit
    history = {
        r[0]: int(r[1].get("numOutputRows", -1))
        for r in DeltaTable.forPath(spark, paths["bronze"]).history().select("version", "operationMetrics").collect()
    }
    assert history == {0: -1, 1: 2, 2: 0}
    assert (writer.batches, writer.valid, writer.invalid) == (4, 2, 7)  # what each call saw
