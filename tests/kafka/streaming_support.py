"""Helpers of the streaming tests: settings for a test root and topic, reading the stream's tables,
and the windowed aggregate recomputed in plain Python (independently of Spark)."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from lakehouse.backends.local import LocalBackend
from lakehouse.kafka import ProduceStats, SentMessage, produce_events
from lakehouse.settings import KafkaSettings, Settings, StorageSettings, StreamingSettings
from lakehouse.streaming import streaming_job, table_paths
from lakehouse.testing.stream_chaos import exactly_once_problems, kill_cycles

ISO = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
BASE = dt.datetime(2026, 1, 1, 0, 0, 0)
EPOCH = dt.datetime(1970, 1, 1)
WINDOW = dt.timedelta(minutes=5)
WATERMARK = dt.timedelta(minutes=10)

ERRORS = {
    "truncated": "not a JSON object",
    "not-json": "not a JSON object",
    "json-array": "not a JSON object",
    "missing-field": "missing required field(s): event_time",
    "bad-amount": "amount: cannot read 'twelve euros' as decimal(10,2)",
    "bad-timestamp": "event_time: cannot read 'yesterday at noon' as timestamp",
    "unknown-type": 'event_type="teleport" is not one of [page_view, add_to_cart, checkout, purchase]',
    "negative-amount": "amount=-5.0 is below the minimum 0",
    "nested-user": 'user_id=["u0000001","u0000002"] is not a string (a JSON array or object)',
}
"""The error the stream must record for each kind of malformed message (the last three break rules
of contracts/events.yaml, whose texts the contract compiler writes)."""

RULES = {
    "truncated": ["malformed_json"],
    "not-json": ["malformed_json"],
    "json-array": ["malformed_json"],
    "missing-field": ["event_time.required"],
    "bad-amount": ["amount.type"],
    "bad-timestamp": ["event_time.type"],
    "unknown-type": ["event_type.allowed_values"],
    "negative-amount": ["amount.min"],
    "nested-user": ["user_id.type"],
}
"""The rule names the dead letter of each kind of malformed message carries."""


def settings_for(root: Path | str, bootstrap_servers: str, topic: str, **streaming: Any) -> Settings:
    """Settings pointing at a test root, the test broker and a test topic."""
    return Settings(
        storage=StorageSettings(root=str(root)),
        kafka=KafkaSettings(bootstrap_servers=bootstrap_servers, topic=topic),
        streaming=StreamingSettings(**streaming),
    )


def iso(col: str) -> Column:
    """A timestamp column as ISO text in UTC (sessions run in UTC)."""
    return F.date_format(col, ISO)


def read_table(spark: SparkSession, settings: Settings, which: str, *cols: str | Column) -> list[tuple[Any, ...]]:
    """Rows of the stream's ``bronze``, ``dead_letter`` or ``gold`` table (selected columns)."""
    df = spark.read.format("delta").load(table_paths(settings)[which])
    return [tuple(r) for r in (df.select(*cols) if cols else df).collect()]


def parse_time(text: str) -> dt.datetime:
    """``2026-01-01T00:00:01.300Z`` -> naive UTC datetime."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def expected_windows(
    sent: Iterable[SentMessage],
) -> list[tuple[str, str, str, int, Decimal | None]]:
    """The gold rows the stream must have appended: 5-minute windows per event_type, count and
    sum(amount), for the windows the final watermark (latest valid event_time - 10 minutes)
    has passed. Assumes no event arrived later than the watermark (true for the tests' data)."""
    valid = [m.event for m in sent if m.valid]
    if not valid:
        return []
    watermark = max(parse_time(e["event_time"]) for e in valid) - WATERMARK
    groups: dict[tuple[dt.datetime, str], list[Decimal | None]] = defaultdict(list)
    for e in valid:
        t = parse_time(e["event_time"])
        start = EPOCH + ((t - EPOCH) // WINDOW) * WINDOW  # Spark aligns windows to the epoch
        amount = Decimal(str(e["amount"])) if e["amount"] is not None else None
        groups[(start, e["event_type"])].append(amount)
    out = []
    for (start, etype), amounts in groups.items():
        end = start + WINDOW
        if end > watermark:
            continue
        known = [a for a in amounts if a is not None]
        total = sum(known, Decimal("0.00")) if known else None
        out.append((_iso(start), _iso(end), etype, len(amounts), total))
    return sorted(out)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def gold_rows(spark: SparkSession, settings: Settings) -> list[tuple[Any, ...]]:
    """The gold table as sorted (window_start, window_end, event_type, count, sum) tuples."""
    return sorted(
        read_table(
            spark, settings, "gold", iso("window_start"), iso("window_end"), "event_type", "event_count", "amount_sum"
        )
    )


def kill_9_while_producing(
    spark: SparkSession, settings: Settings, *, kills: int, seed: int, prefix: str, rate: float = 150.0
) -> ProduceStats:
    """``kill -9`` the stream ``kills`` times at random points while a producer keeps sending,
    then catch up; assert that every message landed exactly once in bronze or the dead-letter
    table and that gold equals the windows recomputed here. Returns what was sent.

    The stream runs bronze only while crashing (the gold query would only slow each restart
    down); the catch-up run builds gold from bronze and must match exactly.
    """
    topic = settings.kafka.topic
    stop = threading.Event()
    produced: list[ProduceStats] = []
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            produced.append(
                produce_events(
                    settings.kafka,
                    topic,
                    rate=rate,
                    stop=stop,
                    seconds=600,
                    malformed_share=0.03,
                    seed=seed,
                    id_prefix=prefix,
                    record=True,
                    event_time=lambda i: BASE + dt.timedelta(milliseconds=100 * i),
                )
            )
        except BaseException as exc:  # surfaced by the main thread
            failures.append(exc)

    producer = threading.Thread(target=produce, name=f"{prefix}-producer", daemon=True)
    producer.start()
    try:
        done = kill_cycles(
            LocalBackend(settings),
            streaming_job(settings, trigger="processing-time", max_seconds=600, with_gold=False),
            cycles=kills,
            rng=random.Random(seed),
            delay=(0.0, 4.0),
        )
    finally:
        stop.set()
        producer.join(timeout=180)
    assert not failures, failures
    assert len(done) == kills
    # Each restart resumed after what the previous runs committed (it made progress).
    assert [k.first_batch for k in done] == sorted(k.first_batch for k in done)
    sent = produced[0]
    assert sent.messages is not None and sent.malformed > 0

    # Catch up after the last crash with larger micro-batches: everything exactly once.
    catch_up = settings.model_copy(
        update={"streaming": settings.streaming.model_copy(update={"max_offsets_per_trigger": 20_000})}
    )
    LocalBackend(catch_up).run(streaming_job(catch_up, trigger="available-now"), log=print)
    bronze = [r[0] for r in read_table(spark, settings, "bronze", "event_id")]
    dead = [r[0] for r in read_table(spark, settings, "dead_letter", "_kafka_key")]
    assert exactly_once_problems(sent.messages, bronze, dead) == []
    assert len(bronze) + len(dead) == sent.sent
    assert gold_rows(spark, settings) == expected_windows(sent.messages)
    return sent
