"""The streaming flows: ``streaming`` keeps the Kafka -> bronze stream running,
``streaming-monitor`` reports its lag and fails when it lags or stalls.

``streaming`` (the streaming deployment): on Kubernetes it makes sure the long-running
SparkApplication runs with the current spec (created / unchanged / updated / relaunched); locally
it runs the same job to an end: availableNow (catch up, then stop) or processingTime for a
bounded number of seconds. The job itself is exactly-once (see ``spark_jobs/streaming.py``), so
overlapping or repeated runs never duplicate a record.

``streaming-monitor`` (for a schedule): per partition, lag = Kafka end offset - offset committed
in the stream's checkpoint, the last batch time and rows per second, as the ``streaming-lag``
table artifact; the run fails (so notifications fire) when the thresholds in
``LAKEHOUSE_STREAMING__MAX_LAG`` / ``__MAX_STALENESS_SECONDS`` are passed.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from lakehouse.errors import StreamUnhealthyError
from lakehouse.settings import get_settings
from lakehouse.streaming import streaming_job
from tasks.artifacts import publish_summary, summary_rows
from tasks.kafka import (
    ensure_events_topic,
    ensure_stream_running,
    publish_stream_status,
    stream_status,
)
from tasks.lineage import record_spark_lineage
from tasks.notify import ALERT_HOOKS
from tasks.quality import publish_quality, quality_rows
from tasks.spark import run_spark_job


def run_name() -> str:
    """``streaming <backend> <trigger>`` (its name in the UI)."""
    settings = get_settings()
    if settings.backend == "kubernetes":
        return "streaming kubernetes ensure"
    trigger = flow_run.get_parameters().get("trigger") or settings.streaming.local_trigger
    return f"streaming local {trigger}"


def monitor_run_name() -> str:
    """``streaming-monitor <query>`` (its name in the UI)."""
    return f"streaming-monitor {get_settings().streaming.query_name}"


@flow(name="streaming", flow_run_name=run_name, persist_result=True, **ALERT_HOOKS)
def streaming(
    trigger: Literal["available-now", "processing-time"] | None = None,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Make sure the stream runs.

    Args:
        trigger: Local runs only: ``available-now`` or ``processing-time`` (default: the
            ``streaming.local_trigger`` setting).
        max_seconds: Local processing-time runs only: how long to run (default: the
            ``streaming.local_max_seconds`` setting).

    Returns:
        ``backend`` and, on Kubernetes, ``action`` (created / unchanged / updated / relaunched);
        locally ``rows``: rows read and written per table.
    """
    logger = get_run_logger()
    settings = get_settings()
    ensure_events_topic()
    if settings.backend == "kubernetes":
        job = streaming_job(settings, continuous=True)
        action = ensure_stream_running(job)
        return {"backend": settings.backend, "job": job.name, "action": action}
    job = streaming_job(settings, trigger=trigger, max_seconds=max_seconds)
    logger.info("running %s locally: %s", job.name, " ".join(job.args))
    result = run_spark_job(job)
    record_spark_lineage(job.name, result)
    rows = summary_rows([result])
    publish_summary(
        "streaming-summary",
        rows,
        f"Streaming run ({trigger or settings.streaming.local_trigger}) of topic "
        f"{settings.kafka.topic} on the local backend",
    )
    publish_quality(
        quality_rows(result.metrics), f"Events contract rule outcomes of the stream (topic {settings.kafka.topic})"
    )
    return {"backend": settings.backend, "job": job.name, "rows": rows}


@flow(name="streaming-monitor", flow_run_name=monitor_run_name, persist_result=True, **ALERT_HOOKS)
def streaming_monitor() -> list[dict[str, Any]]:
    """Report the stream's lag per partition; fail when it passes the thresholds.

    Returns:
        The artifact's rows (one per partition and a total).

    Raises:
        StreamUnhealthyError: Lag or staleness past the thresholds in the settings.
    """
    status = stream_status()
    publish_stream_status(status)
    logger = get_run_logger()
    logger.info(
        "stream %s: total lag %d, last batch %s at %s, %s rows/s",
        status.topic,
        status.total_lag,
        status.last_batch_id,
        status.last_batch_time,
        status.rows_per_second,
    )
    if not status.healthy:
        raise StreamUnhealthyError("; ".join(status.problems))
    return status.rows()
