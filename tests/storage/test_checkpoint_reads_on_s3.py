"""The stream's checkpoint read from a bucket again and again, as the monitor does: every read
sees the batches committed since the last one (fsspec reuses its file systems, s3fs caches
their listings). Real SeaweedFS S3 gateway (tests/fixtures/s3.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lakehouse.streaming import read_checkpoint
from lakehouse.testing.s3_server import S3Server

pytestmark = [pytest.mark.s3]

TOPIC = "events"


def _put(client: Any, path: str, body: str) -> None:
    bucket, key = path.split("/", 1)
    client.put_object(Bucket=bucket, Key=key, Body=body.encode())


def _batch(client: Any, base: str, n: int, offset: int) -> None:
    """Offsets and commit files of micro-batch ``n`` as Spark writes them (one partition),
    written by another client than the reader's, as the stream's driver is."""
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": 1767225600000 + n * 1000, "conf": {}}
    _put(client, f"{base}/offsets/{n}", "v1\n" + json.dumps(meta) + "\n" + json.dumps({TOPIC: {"0": offset}}) + "\n")
    _put(client, f"{base}/commits/{n}", 'v1\n{"nextBatchWatermarkMs":0}\n')


def test_each_read_sees_the_batches_committed_since_the_last(s3_server: S3Server) -> None:
    bucket = "checkpoint-reads"
    s3_server.create_bucket(bucket, exist_ok=True)
    client = s3_server.client()
    base = f"{bucket}/stream/_checkpoints/bronze"
    _put(client, f"{base}/sources/0/0", "v1\n" + json.dumps({TOPIC: {"0": 0}}) + "\n")
    _batch(client, base, 0, 100)
    options = s3_server.storage_options()
    first = read_checkpoint(f"s3a://{base}", TOPIC, storage_options=options)
    assert [b.batch_id for b in first.batches] == [0]
    _batch(client, base, 1, 250)
    again = read_checkpoint(f"s3a://{base}", TOPIC, storage_options=options)
    assert [b.batch_id for b in again.batches] == [0, 1]
    assert again.last is not None and again.last.end_offsets == {0: 250}
