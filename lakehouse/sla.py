"""Freshness SLA state: one alert when a breach starts, one when it ends.

Silver checks the freshness of every source it promotes, and the scheduled ``freshness`` flow
checks every contract's source whether or not anything arrived (a source that went silent is
the failure a freshness SLA exists for). Both report ``sla.freshness`` metrics; this module turns
them into transitions against the last known state, kept in the Prefect Variable
``lakehouse-sla-state`` (``{table: {"breached_since": ISO time, "newest": ...}}``, visible in
the UI), so a breach that lasts for days is reported once, not at every check
(``tasks.quality.track_sla`` sends the events and messages).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

STATE_VARIABLE = "lakehouse-sla-state"
BREACHED = "lakehouse.sla.breached"
RECOVERED = "lakehouse.sla.recovered"

Transition = Literal["breached", "recovered"]


@dataclass(frozen=True)
class FreshnessCheck:
    """One ``sla.freshness`` outcome: the table, its newest ``freshness_column`` value (None: no
    rows at all), its age and the SLA's limit in seconds, and whether it is breached."""

    table: str
    breached: bool
    newest: str | None
    age_seconds: float | None
    limit_seconds: float | None
    action: str = "warn"


def checks_from_metrics(metrics: Iterable[Mapping[str, Any]]) -> list[FreshnessCheck]:
    """The freshness outcomes in the jobs' metrics (silver's and the freshness job's)."""
    out = []
    for m in metrics:
        for q in m.get("quality") or []:
            if q.get("rule") == "sla.freshness":
                newest = q.get("newest")
                out.append(
                    FreshnessCheck(
                        table=str(m["table"]),
                        breached=bool(q.get("failed")),
                        newest=None if newest in (None, "None") else str(newest),
                        age_seconds=q.get("age_seconds"),
                        limit_seconds=q.get("limit_seconds"),
                        action=str(q.get("action") or "warn"),
                    )
                )
    return out


def transitions(
    state: Mapping[str, Any], checks: Iterable[FreshnessCheck], now: dt.datetime
) -> tuple[dict[str, Any], list[tuple[Transition, FreshnessCheck]]]:
    """The next state and the transitions of ``checks`` against ``state``: ``breached`` for a
    table that was not breached before (or never seen), ``recovered`` for one that was and is
    not any more; nothing while a breach (or a healthy table) stays as it was. Tables not in
    ``checks`` keep their state."""
    new = {k: dict(v) for k, v in state.items()}
    changes: list[tuple[Transition, FreshnessCheck]] = []
    for c in checks:
        was = c.table in new and new[c.table].get("breached_since") is not None
        if c.breached and not was:
            new[c.table] = {"breached_since": now.isoformat(timespec="seconds"), "newest": c.newest}
            changes.append(("breached", c))
        elif not c.breached and was:
            new[c.table] = {"breached_since": None, "newest": c.newest}
            changes.append(("recovered", c))
        else:
            new.setdefault(c.table, {"breached_since": None})["newest"] = c.newest
    return new, changes


def describe(kind: Transition, c: FreshnessCheck, run: str, since: str | None = None) -> tuple[str, str]:
    """Subject and body of the message for one transition."""
    limit = f"{c.limit_seconds:g}s" if c.limit_seconds is not None else "?"
    if kind == "breached":
        what = (
            f"newest row {c.newest} is {c.age_seconds:g}s old"
            if c.newest is not None and c.age_seconds is not None
            else "it has no rows at all"
        )
        return (
            f"Freshness SLA breached: {c.table}",
            f"{c.table}: {what}; the SLA allows {limit} (run {run}). Reported once: the next "
            "message about it is its recovery.",
        )
    return (
        f"Freshness SLA recovered: {c.table}",
        f"{c.table}: newest row {c.newest} is {c.age_seconds:g}s old again within {limit}"
        + (f" (breached since {since})" if since else "")
        + f" (run {run}).",
    )
