"""The contract every backend meets."""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field

from lakehouse.diagnosis import Diagnoser
from lakehouse.errors import SparkJobError
from lakehouse.jobs import METRICS_MARKER, SparkJob
from lakehouse.settings import Settings

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


class JobOutput:
    """A job's output as a backend reads it, line by line: the metrics lines collected, every
    other line logged, kept in the tail and fed to the diagnoser; :meth:`result` turns the exit
    code into the job's result or its error."""

    def __init__(self, settings: Settings, job: SparkJob, backend: str, log: LogSink) -> None:

        self.job, self.backend, self.log = job, backend, log
        self.tail: collections.deque[str] = collections.deque(maxlen=settings.spark.log_tail_lines)
        self.metrics: list[dict[str, Any]] = []
        self.diagnoser = Diagnoser(settings)

    def feed(self, line: str) -> None:
        try:
            found = parse_metrics(line)
        except ValueError:  # a metrics line cut short: kept as an ordinary line
            found = None
        if found is not None:
            self.metrics.extend(found)
            return
        self.tail.append(line)
        self.diagnoser.feed(line)
        self.log(line)

    def result(self, code: int, duration: float) -> JobResult:
        """The job's result for exit code 0.

        Raises:
            SparkJobError: Any other exit code, explained by the diagnoser when it knows the cause.
        """
        if code != 0:
            error = SparkJobError(
                self.job.name,
                self.diagnoser.explain(f"failed with exit code {code}"),
                exit_code=code,
                state="FAILED",
                log_tail=list(self.tail),
                metrics=self.metrics,
            )
            error.permanent = self.diagnoser.cause is not None and self.diagnoser.cause.permanent
            raise error
        return JobResult(
            job=self.job.name,
            backend=self.backend,
            state="COMPLETED",
            exit_code=code,
            duration_s=round(duration, 3),
            metrics=self.metrics,
            log_tail=list(self.tail),
        )
