"""Data-quality results of a run: a Prefect table artifact, and SLA breaches notified (once per
breach, and when it ends)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from prefect.artifacts import create_table_artifact

from lakehouse import sla
from tasks.notify import in_deployment, logger, notify

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


def track_sla(metrics: Iterable[dict[str, Any]], run: str, *, now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """The freshness outcomes in ``metrics`` against the last known state (the Prefect Variable
    ``lakehouse-sla-state``, see ``lakehouse.sla``): one ``lakehouse.sla.breached`` event and
    message when a table's breach starts, one ``lakehouse.sla.recovered`` when it ends, nothing
    while it lasts. Returns the transitions, ``(kind, table)``. A broken notification channel is
    logged, not raised (the data may be fine)."""
    from prefect.variables import Variable

    checks = sla.checks_from_metrics(metrics)
    if not checks:
        return []
    now = now or dt.datetime.now(dt.UTC)
    stored = Variable.get(sla.STATE_VARIABLE, default=None)
    state: dict[str, Any] = stored if isinstance(stored, dict) else {}
    new, changes = sla.transitions(state, checks, now)
    Variable.set(sla.STATE_VARIABLE, new, overwrite=True)
    out: list[tuple[str, str]] = []
    deployed = in_deployment()  # then the automation lakehouse-sla-alerts sends the message
    for kind, c in changes:
        subject, body = sla.describe(kind, c, run, (state.get(c.table) or {}).get("breached_since"))
        try:
            notify(
                sla.BREACHED if kind == "breached" else sla.RECOVERED,
                subject,
                body,
                resource=f"lakehouse.table.{c.table}",
                payload={
                    "newest": c.newest,
                    "age_seconds": c.age_seconds,
                    "limit_seconds": c.limit_seconds,
                    "action": c.action,
                    "run": run,
                },
                message=not deployed,
            )
        except Exception:  # a broken channel must not fail a run whose data is fine
            logger.exception("could not send the SLA notification for %s", c.table)
        out.append((kind, c.table))
    for c in checks:
        if c.breached and all(t != c.table for _, t in out):
            logger.info(
                "freshness SLA of %s still breached (since %s): not reported again",
                c.table,
                new[c.table].get("breached_since"),
            )
    return out
