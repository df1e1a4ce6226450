"""Run a SparkJob on the configured backend as a Prefect task."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from lakehouse.backends import JobResult, get_backend
from lakehouse.errors import SparkJobError, is_retryable
from lakehouse.jobs import SparkJob
from lakehouse.settings import get_settings


def _retry_unless_config_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry Spark failures, not invalid specs or contract files (driver exit 78), contract
    violations (exit 65; both locally and on Kubernetes) or permanent start failures such as an
    invalid image name: they fail the same way every time (``lakehouse.errors.is_retryable``)."""
    try:
        state.result()
    except Exception as exc:
        return is_retryable(exc)
    return True


@task(
    name="spark-job",
    task_run_name="{job.name}",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.2,
    retry_condition_fn=_retry_unless_config_error,
    cache_policy=NO_CACHE,
    persist_result=True,
)
def run_spark_job(job: SparkJob) -> JobResult:
    """Run ``job`` to the end on the configured backend, streaming its driver log into the run
    log; raise :class:`~lakehouse.errors.SparkJobError` (exit code, log tail) on failure.

    The backend enforces the job's timeout and stops the job on cancellation.
    """
    logger = get_run_logger()
    backend = get_backend(get_settings())
    try:
        result = backend.run(job, log=logger.info)
    except SparkJobError as exc:
        logger.error("%s", exc)
        if exc.metrics:  # e.g. the quality results behind a contract violation
            from tasks.quality import publish_quality, quality_rows

            publish_quality(quality_rows(exc.metrics), f"Rule outcomes of the failed job {job.name}")
        raise
    logger.info("job %s %s in %.1fs", job.name, result.state, result.duration_s)
    return result
