"""Exactly-once under failure: ``kill -9`` the streaming job's whole process group at random
points, 3 times, while a producer keeps sending; restart each time; then catch up.

No key may be lost or duplicated in bronze or in the dead-letter table, and the gold windows
must still equal the sums recomputed in plain Python. Kills land after the run's first
micro-batch plus a random 0-4 s, so they hit batches mid-write, between the bronze and the
dead-letter append, between batches and during commits. ``bench/soak_streaming.py`` does the
same 20 times, and tests/storage/test_streaming_on_s3.py twice more with the checkpoint in a bucket.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.backends.local import LocalBackend
from lakehouse.kafka import ProduceStats, produce_events
from lakehouse.streaming import read_stream_status, streaming_job
from lakehouse.testing.kafka_broker import KafkaBroker
from lakehouse.testing.stream_chaos import exactly_once_problems, kill_cycles
from tests.kafka.streaming_support import (
    BASE,
    expected_windows,
    gold_rows,
    read_table,
    settings_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.spark, pytest.mark.timeout(900)]

KILLS = 3
RATE = 150.0


def test_kill_9_three_times_while_producing_loses_and_duplicates_nothing(
    spark: SparkSession,
    kafka_broker: KafkaBroker,
    kafka_topic_factory: Callable[..., str],
    lake_root: Path,
) -> None:
    topic = kafka_topic_factory("chaos", partitions=3)
    settings = settings_for(lake_root, kafka_broker.bootstrap_servers, topic,
                            max_offsets_per_trigger=400, processing_time="1 second")
    backend = LocalBackend(settings)
    rng = random.Random(20260101)

    stop = threading.Event()
    produced: list[ProduceStats] = []
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            produced.append(produce_events(
                kafka_broker.bootstrap_servers, topic, rate=RATE, stop=stop, seconds=600,
                malformed_share=0.03, seed=3, id_prefix="chaos", record=True,
                event_time=lambda i: BASE + dt.timedelta(milliseconds=100 * i),
            ))
        except BaseException as exc:  # surfaced by the main thread
            failures.append(exc)

    producer = threading.Thread(target=produce, name="chaos-producer", daemon=True)
    producer.start()
    try:
        kills = kill_cycles(
            backend,
            # Bronze only while crashing (the gold query would only slow each restart down);
            # the catch-up run below builds gold from bronze and must match exactly.
            streaming_job(settings, trigger="processing-time", max_seconds=600, with_gold=False),
            cycles=KILLS, rng=rng, delay=(0.0, 4.0),
        )
    finally:
        stop.set()
        producer.join(timeout=180)
    assert not failures, failures
    assert len(kills) == KILLS
    # Each restart resumed after what the previous runs committed (it made progress).
    assert [k.first_batch for k in kills] == sorted(k.first_batch for k in kills)
    sent = produced[0]
    assert sent.messages is not None and sent.sent > 3_000 and sent.malformed > 50

    # Catch up after the last crash with larger micro-batches: everything exactly once.
    catch_up = settings.model_copy(update={"streaming": settings.streaming.model_copy(
        update={"max_offsets_per_trigger": 20_000})})
    LocalBackend(catch_up).run(streaming_job(catch_up, trigger="available-now"), log=print)
    assert read_stream_status(settings).total_lag == 0

    bronze = [r[0] for r in read_table(spark, settings, "bronze", "event_id")]
    dead = [r[0] for r in read_table(spark, settings, "dead_letter", "_kafka_key")]
    assert exactly_once_problems(sent.messages, bronze, dead) == []
    assert len(bronze) + len(dead) == sent.sent
    assert gold_rows(spark, settings) == expected_windows(sent.messages)
