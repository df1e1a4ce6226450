"""Data-quality results of a run: a Prefect table artifact, and SLA breaches notified."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prefect.artifacts import create_table_artifact

from tasks.notify import logger, notify

QUALITY_COLUMNS = ("table", "rule", "action", "evaluated", "passed", "failed")


def quality_rows(metrics: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per table and rule from the jobs' metrics (silver reports ``quality``)."""
    rows = []
    for m in metrics:
        for q in m.get("quality") or []:
            rows.append({"table": m["table"], **{c: q.get(c) for c in QUALITY_COLUMNS[1:]}})
    return rows


def publish_quality(rows: list[dict[str, Any]], description: str) -> None:
    """Publish the rule outcomes as the ``data-quality`` table artifact (if there are any)."""
    if rows:
        create_table_artifact(key="data-quality", table=rows, description=description)


def notify_sla_breaches(metrics: Iterable[dict[str, Any]], run: str) -> list[str]:
    """Send one notification per table whose freshness SLA is breached; return those tables."""
    breached = []
    for m in metrics:
        for q in m.get("quality") or []:
            if q.get("rule") == "sla.freshness" and q.get("failed"):
                breached.append(m["table"])
                try:
                    notify(
                        "lakehouse.sla.breached",
                        f"Freshness SLA breached: {m['table']}",
                        f"{m['table']}: newest row {q.get('newest')} is {q.get('age_seconds')}s old; "
                        f"the SLA allows {q.get('limit_seconds')}s (run {run}).",
                        resource=f"lakehouse.table.{m['table']}",
                        payload={k: q.get(k) for k in ("newest", "age_seconds", "limit_seconds", "action")},
                    )
                except Exception:  # a broken channel must not fail a run whose data is fine
                    logger.exception("could not send the SLA notification for %s", m["table"])
    return breached
