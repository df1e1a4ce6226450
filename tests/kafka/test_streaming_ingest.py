"""The stream on the real broker: Kafka -> bronze / dead letters / gold windows, exactly as
produced, and the monitor's lag (0 after catch-up, the true lag when behind).

The stream runs as the real job (spark-submit, availableNow, several micro-batches); the test
reads the Delta tables with the in-process session and compares them with what the producer
reports it sent, and with the windows recomputed in plain Python.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.backends.local import LocalBackend
from lakehouse.kafka import produce_events, spoil
from lakehouse.settings import Settings
from lakehouse.streaming import (
    bronze_checkpoint_dir,
    read_checkpoint,
    read_stream_status,
    stream_status,
    streaming_job,
    table_paths,
)
from lakehouse.testing.kafka_broker import KafkaBroker
from tests.kafka.streaming_support import (
    BASE,
    ERRORS,
    RULES,
    expected_windows,
    gold_rows,
    iso,
    read_table,
    settings_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.spark, pytest.mark.timeout(900)]

N = 3000
LATE = 500


def _kafka_ends(broker: KafkaBroker, topic: str, partitions: int) -> dict[int, int]:
    """End offsets read with a plain consumer (independently of lakehouse.kafka)."""
    c = Consumer(broker.client_config(**{"group.id": f"probe-{uuid.uuid4().hex}"}))
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def _stream_status_cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """``lakehouse stream-status`` with ``settings`` in the environment: exit code, out, err."""
    from lakehouse.cli import main
    from lakehouse.settings import get_settings

    env = {
        "LAKEHOUSE_STORAGE__ROOT": settings.storage.root,
        "LAKEHOUSE_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "LAKEHOUSE_KAFKA__TOPIC": settings.kafka.topic,
        "LAKEHOUSE_STREAMING__MAX_LAG": str(settings.streaming.max_lag),
        "LAKEHOUSE_STREAMING__MAX_STALENESS_SECONDS": str(settings.streaming.max_staleness_seconds),
    }
    capsys.readouterr()
    with monkeypatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        try:
            code = main(["stream-status"])
        finally:
            get_settings.cache_clear()
    out = capsys.readouterr()
    return code, out.out, out.err


def test_stream_lands_exactly_what_was_produced_and_monitor_reports_lag(
    spark: SparkSession,
    kafka_broker: KafkaBroker,
    kafka_topic_factory: Callable[..., str],
    lake_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = kafka_topic_factory("events", partitions=3)
    settings = settings_for(
        lake_root,
        kafka_broker.bootstrap_servers,
        topic,
        max_offsets_per_trigger=1000,
        max_lag=LATE - 1,
        max_staleness_seconds=600,
    )
    # Event times 1.3 s apart: 65 minutes of events, so windows close behind the watermark.
    sent = produce_events(
        kafka_broker.bootstrap_servers,
        topic,
        count=N,
        malformed_share=0.04,
        seed=11,
        id_prefix="ing",
        event_time=lambda i: BASE + dt.timedelta(seconds=1.3 * i),
        record=True,
    )
    assert sent.messages is not None and sent.sent == N
    valid = [m for m in sent.messages if m.valid]
    bad = [m for m in sent.messages if not m.valid]
    assert len(bad) == sent.malformed == 120
    assert {m.malformed for m in bad} == set(ERRORS)

    # Before the first run: everything is lag, and no batch was ever committed.
    before = read_stream_status(settings)
    assert before.total_lag == N and before.last_batch_id is None
    assert not before.healthy and any("never committed" in p for p in before.problems)
    # the CLI says so with its own exit code (3, not the 1 of a failed job)
    code, out, err = _stream_status_cli(settings, monkeypatch, capsys)
    assert code == 3 and "UNHEALTHY" in err and "never committed" in err, (code, err)
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["0", "1", "2", "total"]

    lines: list[str] = []
    result = LocalBackend(settings).run(streaming_job(settings, trigger="available-now"), log=lines.append)
    metrics = {m["layer"]: m for m in result.metrics}
    assert metrics["bronze"]["rows_read"] == N
    assert metrics["bronze"]["rows_written"] == len(valid)
    assert metrics["bronze"]["batches"] >= 3  # maxOffsetsPerTrigger=1000 split the backlog
    assert metrics["quarantine"]["rows_written"] == len(bad)
    # quality/metrics: one row per rule and micro-batch; summed, the failures of each rule are
    # the messages spoiled in a way that breaks it (computed from what the producer sent)
    want = Counter(r for m in bad for r in RULES[m.malformed or ""])
    table = spark.read.format("delta").load(settings.storage.table("quality", "metrics"))
    summed = {
        r["rule"]: (r["evaluated"], r["failed"])
        for r in table.groupBy("rule")
        .agg(F.sum("evaluated").alias("evaluated"), F.sum("failed").alias("failed"))
        .collect()
    }
    assert {rule: failed for rule, (_, failed) in summed.items() if failed} == dict(want)
    assert {evaluated for evaluated, _ in summed.values()} == {N}
    assert {r["action"] for r in metrics["bronze"]["quality"] if r["failed"]} == {"quarantine"}

    # Bronze: exactly the valid events, each once, typed, with their Kafka coordinates.
    bronze = read_table(
        spark,
        settings,
        "bronze",
        "event_id",
        "user_id",
        "event_type",
        F.col("amount").cast("string"),
        iso("event_time"),
        "_kafka_key",
        "_kafka_topic",
        "_kafka_partition",
        "_kafka_offset",
        "_kafka_timestamp",
    )
    assert len(bronze) == len(valid)
    assert sorted(r[:6] for r in bronze) == sorted(
        (
            m.key,
            m.event["user_id"],
            m.event["event_type"],
            None if m.event["amount"] is None else f"{m.event['amount']:.2f}",
            m.event["event_time"],
            m.key,
        )
        for m in valid
    )
    assert {r[6] for r in bronze} == {topic}
    # statistics only on the columns queries filter by (not on the random ids)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{table_paths(settings)['bronze']}`")
    props = detail.first()["properties"]  # type: ignore[index]
    assert props["delta.dataSkippingStatsColumns"] == (
        "event_time,event_type,_kafka_partition,_kafka_offset,_kafka_timestamp,_ingested_at,_batch_id"
    )
    assert {r[7] for r in bronze} == {0, 1, 2}
    assert len({(r[7], r[8]) for r in bronze}) == len(bronze)
    assert all(r[9] is not None for r in bronze)

    # Dead letters: exactly the malformed messages, with their raw value and the right error.
    dead = read_table(
        spark,
        settings,
        "dead_letter",
        "_kafka_key",
        "value",
        "error",
        "_kafka_topic",
        "_kafka_partition",
        "_kafka_offset",
    )
    assert sorted(r[:3] for r in dead) == sorted(
        (m.key, spoil(m.event, m.malformed or "").decode(), ERRORS[m.malformed or ""]) for m in bad
    )
    # Together, bronze and dead letters cover every offset of the topic exactly once.
    ends = _kafka_ends(kafka_broker, topic, 3)
    coords = sorted([(r[7], r[8]) for r in bronze] + [(r[4], r[5]) for r in dead])
    assert coords == sorted((p, o) for p in range(3) for o in range(ends[p]))

    # Gold: the closed windows, equal to the sums computed here in plain Python.
    expected = expected_windows(sent.messages)
    assert len(expected) >= 4 * 8
    assert gold_rows(spark, settings) == expected

    # Monitor after catch-up: lag 0 on every partition, a recent batch, a rate.
    caught_up = read_stream_status(settings)
    assert [(p.partition, p.end_offset, p.committed_offset, p.lag) for p in caught_up.partitions] == [
        (p, ends[p], ends[p], 0) for p in range(3)
    ]
    assert caught_up.healthy and caught_up.total_lag == 0
    code, out, err = _stream_status_cli(settings, monkeypatch, capsys)
    assert code == 0 and "UNHEALTHY" not in err, (code, err)
    assert [line.split()[:4] for line in out.splitlines()[1:4]] == [
        [str(p), str(ends[p]), str(ends[p]), "0"] for p in range(3)
    ]
    assert caught_up.last_batch_id is not None and caught_up.rows_per_second
    assert caught_up.staleness_seconds is not None and caught_up.staleness_seconds < 600

    # Behind: LATE new messages are exactly the lag, per partition as Kafka counts them.
    later = produce_events(
        kafka_broker.bootstrap_servers,
        topic,
        count=LATE,
        seed=12,
        id_prefix="late",
        event_time=lambda i: BASE + dt.timedelta(hours=2, seconds=i),
        record=True,
    )
    assert later.delivered == LATE
    ends_after = _kafka_ends(kafka_broker, topic, 3)
    behind = read_stream_status(settings)
    assert {p.partition: p.lag for p in behind.partitions} == {p: ends_after[p] - ends[p] for p in range(3)}
    assert behind.total_lag == LATE
    assert behind.problems == (f"lag {LATE} messages is above the threshold of {LATE - 1}",)
    # Stalled: the same lag with the last batch older than the staleness threshold.
    assert behind.last_batch_time is not None
    stale = stream_status(
        topic,
        {p.partition: p.end_offset for p in behind.partitions},
        read_checkpoint(bronze_checkpoint_dir(settings), topic),
        max_lag=10 * LATE,
        max_staleness_seconds=600,
        now=behind.last_batch_time + dt.timedelta(seconds=601),
    )
    assert len(stale.problems) == 1 and "601s ago" in stale.problems[0]

    # A restart picks up exactly the new messages: nothing lost, nothing twice.
    LocalBackend(settings).run(streaming_job(settings, trigger="available-now"), log=lines.append)
    keys = [r[0] for r in read_table(spark, settings, "bronze", "event_id")]
    assert sorted(keys) == sorted(m.key for m in [*valid, *(later.messages or [])])
    assert read_stream_status(settings).total_lag == 0
