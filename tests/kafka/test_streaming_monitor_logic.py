"""The monitor's checkpoint reading and lag arithmetic on a checkpoint laid out as Spark 4.1
writes it (offsets/, commits/, sources/0/0 with its leading NUL), without Spark or Kafka.
The same code runs against real checkpoints in test_streaming_ingest.py."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from lakehouse.errors import ConfigError
from lakehouse.jobs import SparkJob
from lakehouse.settings import Settings, StreamingSettings
from lakehouse.streaming import ensure_running, read_checkpoint, stream_status, streaming_job

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
TOPIC = "events"


def _batch(ck: Path, n: int, offsets: dict[str, int], start: dt.datetime, done: dt.datetime | None) -> None:
    meta = {
        "batchWatermarkMs": 0,
        "batchTimestampMs": int(start.timestamp() * 1000),
        "conf": {"spark.sql.shuffle.partitions": "4"},
    }
    (ck / "offsets" / str(n)).write_text(f"v1\n{json.dumps(meta)}\n{json.dumps({TOPIC: offsets})}")
    if done is not None:
        f = ck / "commits" / str(n)
        f.write_text('v1\n{"nextBatchWatermarkMs":0}')
        os.utime(f, (done.timestamp(), done.timestamp()))


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    ck = tmp_path / "bronze"
    for d in ("offsets", "commits", "sources/0"):
        (ck / d).mkdir(parents=True)
    (ck / "sources" / "0" / "0").write_bytes(b'\x00v1\n{"events":{"0":0,"1":0}}')
    (ck / "offsets" / ".1.tmp").write_text("partial")  # Spark's temp files are ignored
    _batch(ck, 0, {"0": 100, "1": 50}, T0, T0 + dt.timedelta(seconds=2))
    _batch(ck, 1, {"0": 300, "1": 150}, T0 + dt.timedelta(seconds=10), T0 + dt.timedelta(seconds=13))
    _batch(ck, 2, {"0": 400, "1": 200}, T0 + dt.timedelta(seconds=20), None)  # in flight
    return ck


def test_reads_committed_batches_only(checkpoint: Path) -> None:
    progress = read_checkpoint(str(checkpoint), TOPIC)
    assert progress.start_offsets == {0: 0, 1: 0}
    assert [b.batch_id for b in progress.batches] == [0, 1]
    last = progress.last
    assert last is not None and last.end_offsets == {0: 300, 1: 150}
    assert last.started_at == T0 + dt.timedelta(seconds=10)
    assert last.committed_at == T0 + dt.timedelta(seconds=13)


def test_lag_rate_and_thresholds(checkpoint: Path) -> None:
    progress = read_checkpoint(str(checkpoint), TOPIC)
    now = T0 + dt.timedelta(seconds=60)
    status = stream_status(TOPIC, {0: 410, 1: 150, 2: 7}, progress, max_lag=200, max_staleness_seconds=30, now=now)
    assert [(p.partition, p.committed_offset, p.lag) for p in status.partitions] == [
        (0, 300, 110),
        (1, 150, 0),
        (2, None, 7),
    ]
    # 450 records in 2 s + 3 s of batch time.
    assert status.rows_per_second == 90.0
    assert {p.partition: p.rows_per_second for p in status.partitions} == {0: 60.0, 1: 30.0, 2: 0.0}
    assert status.total_lag == 117 and status.staleness_seconds == 47.0
    assert status.problems == ("117 messages wait and the last batch finished 47s ago, above the threshold of 30s",)
    assert status.rows()[-1] == {
        "partition": "total",
        "end_offset": 567,
        "committed_offset": 450,
        "lag": 117,
        "last_batch_time": "2026-01-01T12:00:13+00:00",
        "rows_per_second": 90.0,
    }
    # Caught up and idle for long: healthy (an idle stream runs no batches).
    idle = stream_status(
        TOPIC, {0: 300, 1: 150}, progress, max_lag=0, max_staleness_seconds=30, now=now + dt.timedelta(hours=5)
    )
    assert idle.healthy and idle.total_lag == 0
    # Too much lag.
    lagging = stream_status(TOPIC, {0: 1300, 1: 150}, progress, max_lag=999, max_staleness_seconds=3600, now=now)
    assert lagging.problems == ("lag 1000 messages is above the threshold of 999",)


def test_missing_checkpoint_is_no_progress(tmp_path: Path) -> None:
    progress = read_checkpoint(str(tmp_path / "absent"), TOPIC)
    status = stream_status(TOPIC, {0: 5}, progress, max_lag=10, max_staleness_seconds=60)
    assert status.last_batch_id is None and status.total_lag == 5
    assert status.problems == (
        f"5 messages wait and the stream never committed a batch (checkpoint {tmp_path / 'absent'})",
    )


def test_job_spec_local_and_continuous() -> None:
    settings = Settings(streaming=StreamingSettings(max_offsets_per_trigger=1234, min_partitions=6))
    local = streaming_job(settings, trigger="processing-time", max_seconds=60)
    assert local.name == "events-stream" and not local.streaming
    assert local.timeout_seconds == 60 + 300
    args = list(local.args)
    assert args[args.index("--trigger") + 1] == "processing-time"
    assert args[args.index("--max-seconds") + 1] == "60"
    assert args[args.index("--max-offsets-per-trigger") + 1] == "1234"
    assert args[args.index("--min-partitions") + 1] == "6"
    assert local.conf == {"spark.databricks.delta.snapshotPartitions": "2"}
    assert local.java_options == ("-XX:+UseParallelGC",)
    cont = streaming_job(settings, continuous=True)
    assert cont.java_options == ("-XX:+UseParallelGC",)
    own = Settings(streaming=StreamingSettings(java_options=["-XX:+UseG1GC", "-Xss4m"]))
    assert streaming_job(own, continuous=True).java_options == ("-XX:+UseG1GC", "-Xss4m")
    assert cont.streaming and cont.timeout_seconds is None and "--max-seconds" not in cont.args
    assert "available-now" not in cont.args
    with pytest.raises(ConfigError, match="valid: the kubernetes backend"):
        ensure_running(object(), cont)
    with pytest.raises(ConfigError, match="not a streaming job"):
        ensure_running(object(), SparkJob(name="x", entrypoint="spark_jobs.streaming"))
