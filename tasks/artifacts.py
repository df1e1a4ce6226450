"""Prefect artifacts built from job metrics."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast
from uuid import UUID

from prefect.artifacts import create_table_artifact

from lakehouse.backends import JobResult

SUMMARY_COLUMNS = ("layer", "table", "rows_read", "rows_written", "version", "duration_s")


def summary_rows(results: Iterable[JobResult]) -> list[dict[str, Any]]:
    """One row per layer and table: rows read/written, Delta version, duration."""
    rows = []
    for result in results:
        for m in result.metrics:
            rows.append({c: m.get(c) for c in SUMMARY_COLUMNS})
    return rows


def publish_summary(key: str, rows: list[dict[str, Any]], description: str) -> UUID:
    """Publish ``rows`` as a table artifact under ``key``."""
    # called from sync code: the id itself (the coroutine half of its type is for async callers)
    return cast(UUID, create_table_artifact(key=key, table=rows, description=description))
