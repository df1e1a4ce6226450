"""Exactly-once under failure: ``kill -9`` the streaming job's whole process group at random
points, 3 times, while a producer keeps sending; restart each time; then catch up.

No key may be lost or duplicated in bronze or in the dead-letter table, and the gold windows
must still equal the sums recomputed in plain Python. Kills land after the run's first
micro-batch plus a random 0-4 s, so they hit batches mid-write, between the bronze and the
dead-letter append, between batches and during commits. ``bench/soak_streaming.py`` does the
same 20 times, and tests/storage/test_streaming_on_s3.py twice more with the checkpoint in a bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.streaming import read_stream_status
from lakehouse.testing.kafka_broker import KafkaBroker
from tests.kafka.streaming_support import kill_9_while_producing, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.spark, pytest.mark.timeout(900)]

KILLS = 3


def test_kill_9_three_times_while_producing_loses_and_duplicates_nothing(
    spark: SparkSession,
    kafka_broker: KafkaBroker,
    kafka_topic_factory: Callable[..., str],
    lake_root: Path,
) -> None:
    topic = kafka_topic_factory("chaos", partitions=3)
    settings = settings_for(
        lake_root, kafka_broker.bootstrap_servers, topic, max_offsets_per_trigger=400, processing_time="1 second"
    )
    sent = kill_9_while_producing(spark, settings, kills=KILLS, seed=3, prefix="chaos")
    assert sent.sent > 3_000 and sent.malformed > 50
    assert read_stream_status(settings).total_lag == 0
