"""The contract every backend meets."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field

from lakehouse.jobs import METRICS_MARKER, SparkJob

LogSink = Callable[[str], None]
"""Receives the driver log, one line at a time, while the job runs."""


class JobResult(BaseModel):
    """What a finished job reports back."""

    job: str = Field(description="Job name.")
    backend: str = Field(description="Backend that ran it.")
    state: str = Field(description="Final state, e.g. COMPLETED.")
    exit_code: int | None = Field(default=None, description="Process exit code (local).")
    duration_s: float = Field(description="Wall time from submit to end.")
    metrics: list[dict[str, Any]] = Field(
        default_factory=list, description="Metrics the job printed (one dict per table)."
    )
    log_tail: list[str] = Field(default_factory=list, description="Last driver log lines.")


class Backend(Protocol):
    """Runs a SparkJob to the end, streaming its driver log to ``log``."""

    name: str

    def run(self, job: SparkJob, *, log: LogSink) -> JobResult:
        """Run ``job``; return on success, raise :class:`~lakehouse.errors.SparkJobError` else."""
        ...


def parse_metrics(line: str) -> list[dict[str, Any]] | None:
    """Return the metrics carried by a driver log line, or None if it carries none."""
    idx = line.find(METRICS_MARKER)
    if idx < 0:
        return None
    payload = json.loads(line[idx + len(METRICS_MARKER) :])
    return payload if isinstance(payload, list) else [payload]
