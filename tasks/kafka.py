"""Prefect tasks of the streaming ingest: the topic, keeping the stream running, its health."""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from lakehouse.backends import get_backend
from lakehouse.jobs import SparkJob
from lakehouse.kafka import ensure_topic
from lakehouse.settings import get_settings
from lakehouse.streaming import StreamStatus, ensure_running, read_stream_status


@task(name="ensure-topic", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE, timeout_seconds=120)
def ensure_events_topic() -> str:
    """Create the events topic (partitions and retention from the settings) unless it exists;
    return ``created`` or ``exists``."""
    settings = get_settings()
    outcome = ensure_topic(
        settings.kafka,
        settings.kafka.topic,
        partitions=settings.streaming.topic_partitions,
        retention_ms=settings.streaming.topic_retention_ms,
    )
    get_run_logger().info("topic %s: %s", settings.kafka.topic, outcome)
    return outcome


@task(
    name="ensure-stream-running",
    task_run_name="{job.name}",
    retries=2,
    retry_delay_seconds=10,
    cache_policy=NO_CACHE,
    timeout_seconds=600,
)
def ensure_stream_running(job: SparkJob) -> str:
    """Keep the long-running streaming app of ``job`` on the configured (Kubernetes) backend:
    create it, leave an identical running one alone, update a changed one, relaunch an ended
    one. Returns what was done (created / unchanged / updated / relaunched)."""
    logger = get_run_logger()
    outcome = ensure_running(get_backend(get_settings()), job, log=logger.info)
    logger.info("streaming app %s: %s", job.name, outcome)
    return outcome


@task(name="stream-status", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE, timeout_seconds=120)
def stream_status() -> StreamStatus:
    """Lag per partition, last batch time and rows per second of the stream."""
    return read_stream_status(get_settings())


@task(name="publish-stream-status", cache_policy=NO_CACHE)
def publish_stream_status(status: StreamStatus) -> UUID:
    """Publish ``status`` as the ``streaming-lag`` table artifact."""
    state = "healthy" if status.healthy else "UNHEALTHY: " + "; ".join(status.problems)
    rows: list[dict[str, Any]] = status.rows()
    artifact = create_table_artifact(
        key="streaming-lag",
        table=rows,
        description=(
            f"Stream {status.checkpoint} on topic {status.topic} at "
            f"{status.checked_at.isoformat(timespec='seconds')}: total lag {status.total_lag}, "
            f"last batch {status.last_batch_id} ({state})"
        ),
    )
    return cast(UUID, artifact)  # a sync call: the id (the coroutine half is for async callers)
