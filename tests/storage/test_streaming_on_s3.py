"""The Kafka stream with its tables and checkpoint on an S3-compatible object store.

``kill -9`` of the whole job while a producer keeps sending, twice, then a catch-up: every
offset lands exactly once in bronze or the dead-letter table (both in the bucket), the gold
windows equal the sums recomputed in plain Python, and the monitor reads the checkpoint from the
bucket (through s3fs, with the settings' endpoint and keys) and reports lag 0. The same checks as
tests/kafka/test_streaming_exactly_once.py on disk, with fewer kills: what S3 changes is where the
checkpoint and the Delta logs live, and two crashes already restart from an S3 checkpoint twice.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pyspark.sql import SparkSession

from lakehouse.settings import KafkaSettings, Settings, StorageSettings, StreamingSettings
from lakehouse.streaming import bronze_checkpoint_dir, read_stream_status
from lakehouse.testing.kafka_broker import KafkaBroker
from lakehouse.testing.s3_server import S3Server
from tests.fixtures.s3 import new_bucket, object_store
from tests.kafka.streaming_support import kill_9_while_producing

pytestmark = [pytest.mark.s3, pytest.mark.kafka, pytest.mark.spark, pytest.mark.timeout(900)]

KILLS = 2


def test_stream_on_s3_survives_kill_9_exactly_once_and_the_monitor_reads_its_checkpoint(
    spark: SparkSession,
    s3_server: S3Server,
    kafka_broker: KafkaBroker,
    kafka_topic_factory: Callable[..., str],
) -> None:
    bucket = new_bucket(s3_server, spark, "stream")
    topic = kafka_topic_factory("s3chaos", partitions=3)
    settings = Settings(
        storage=StorageSettings(root=f"s3a://{bucket}/lake"),
        kafka=KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers, topic=topic),
        streaming=StreamingSettings(max_offsets_per_trigger=400, processing_time="1 second"),
        deploy=object_store(s3_server),
    )
    assert bronze_checkpoint_dir(settings).startswith(f"s3a://{bucket}/")
    sent = kill_9_while_producing(spark, settings, kills=KILLS, seed=5, prefix="s3chaos")
    # the monitor: Kafka's end offsets against the checkpoint read from the bucket
    status = read_stream_status(settings)
    assert status.checkpoint.startswith(f"s3a://{bucket}/")
    assert status.last_batch_id is not None and status.total_lag == 0, status.problems
    assert sum(p.end_offset for p in status.partitions) == sent.sent
