"""The Kafka stream with its tables and checkpoint on an S3-compatible object store.

``kill -9`` of the whole job while a producer keeps sending, twice, then a catch-up: every
offset lands exactly once in bronze or the dead-letter table (both in the bucket), the gold
windows equal the sums recomputed in plain Python, and the monitor reads the checkpoint from the
bucket (through s3fs, with the settings' endpoint and keys) and reports lag 0. The same checks as
tests/kafka/test_streaming_exactly_once.py on disk, with fewer kills: what S3 changes is where the
checkpoint and the Delta logs live, and two crashes already restart from an S3 checkpoint twice.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections.abc import Callable

import pytest
from pydantic import SecretStr
from pyspark.sql import SparkSession

from lakehouse.backends.local import LocalBackend
from lakehouse.kafka import ProduceStats, produce_events
from lakehouse.settings import DeploySettings, KafkaSettings, Settings, StorageSettings, StreamingSettings
from lakehouse.streaming import bronze_checkpoint_dir, read_stream_status, streaming_job
from lakehouse.testing.kafka_broker import KafkaBroker
from lakehouse.testing.s3_server import S3Server
from lakehouse.testing.stream_chaos import exactly_once_problems, kill_cycles
from tests.kafka.streaming_support import BASE, expected_windows, gold_rows, read_table

pytestmark = [pytest.mark.s3, pytest.mark.kafka, pytest.mark.spark, pytest.mark.timeout(900)]

KILLS = 2
RATE = 150.0


def test_stream_on_s3_survives_kill_9_exactly_once_and_the_monitor_reads_its_checkpoint(
    spark: SparkSession, s3_server: S3Server, kafka_broker: KafkaBroker,
    kafka_topic_factory: Callable[..., str],
) -> None:
    bucket = f"stream-{uuid.uuid4().hex[:8]}"
    s3_server.create_bucket(bucket)
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
    for key, value in {"endpoint": s3_server.endpoint, "endpoint.region": s3_server.region,
                       "path.style.access": "true", "access.key": s3_server.access_key,
                       "secret.key": s3_server.secret_key}.items():
        hadoop.set(f"fs.s3a.bucket.{bucket}.{key}", value)
    topic = kafka_topic_factory("s3chaos", partitions=3)
    settings = Settings(
        storage=StorageSettings(root=f"s3a://{bucket}/lake"),
        kafka=KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers, topic=topic),
        streaming=StreamingSettings(max_offsets_per_trigger=400, processing_time="1 second"),
        deploy=DeploySettings(object_store_endpoint=s3_server.endpoint, object_store_region=s3_server.region,
                              object_store_access_key_id=SecretStr(s3_server.access_key),
                              object_store_secret_access_key=SecretStr(s3_server.secret_key)),
    )
    assert bronze_checkpoint_dir(settings).startswith(f"s3a://{bucket}/")
    backend = LocalBackend(settings)
    stop = threading.Event()
    produced: list[ProduceStats] = []
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            produced.append(produce_events(
                kafka_broker.bootstrap_servers, topic, rate=RATE, stop=stop, seconds=600,
                malformed_share=0.03, seed=5, id_prefix="s3chaos", record=True,
                event_time=lambda i: BASE + dt.timedelta(milliseconds=100 * i),
            ))
        except BaseException as exc:  # surfaced by the main thread
            failures.append(exc)

    producer = threading.Thread(target=produce, name="s3-chaos-producer", daemon=True)
    producer.start()
    try:
        kills = kill_cycles(
            backend, streaming_job(settings, trigger="processing-time", max_seconds=600, with_gold=False),
            cycles=KILLS, rng=random.Random(20261204), delay=(0.0, 4.0),
        )
    finally:
        stop.set()
        producer.join(timeout=180)
    assert not failures, failures
    assert len(kills) == KILLS
    assert [k.first_batch for k in kills] == sorted(k.first_batch for k in kills)
    sent = produced[0]
    assert sent.messages is not None and sent.malformed > 0

    catch_up = settings.model_copy(update={"streaming": settings.streaming.model_copy(
        update={"max_offsets_per_trigger": 20_000})})
    LocalBackend(catch_up).run(streaming_job(catch_up, trigger="available-now"), log=print)
    # the monitor: Kafka's end offsets against the checkpoint read from the bucket
    status = read_stream_status(settings)
    assert status.checkpoint.startswith(f"s3a://{bucket}/")
    assert status.last_batch_id is not None and status.total_lag == 0, status.problems
    assert sum(p.end_offset for p in status.partitions) == sent.sent

    bronze = [r[0] for r in read_table(spark, settings, "bronze", "event_id")]
    dead = [r[0] for r in read_table(spark, settings, "dead_letter", "_kafka_key")]
    assert exactly_once_problems(sent.messages, bronze, dead) == []
    assert len(bronze) + len(dead) == sent.sent
    assert gold_rows(spark, settings) == expected_windows(sent.messages)
