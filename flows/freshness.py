"""The freshness flow: every contract's SLA checked from the tables' own data, on a schedule.

Silver checks freshness only when a batch arrives; a source that stops sending is noticed here
(deployment ``freshness/hourly``). Each check compares the newest ``sla.freshness_column`` of
``silver/<source>`` with now; a breach is reported once when it starts
(``lakehouse.sla.breached``) and once when it ends (``lakehouse.sla.recovered``), with the state
in between kept in the Prefect Variable ``lakehouse-sla-state`` (see ``lakehouse.sla``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from lakehouse import sla
from lakehouse.pipeline import freshness_job
from lakehouse.settings import get_settings
from tasks.notify import ALERT_HOOKS
from tasks.quality import track_sla
from tasks.spark import run_spark_job


def run_name() -> str:
    """``freshness <sources>`` (its name in the UI)."""
    return f"freshness {','.join(flow_run.get_parameters().get('sources') or ['all'])}"


@flow(name="freshness", flow_run_name=run_name, persist_result=True, **ALERT_HOOKS)
def freshness(sources: list[str] | None = None) -> list[dict[str, Any]]:
    """Check the freshness SLA of every source (or of ``sources``) whether or not data arrived.

    Returns:
        One row per source: table, newest value, age and limit in seconds, breached, and the
        transition this check reported (``breached``, ``recovered`` or empty).
    """
    logger = get_run_logger()
    run_id = str(flow_run.get_id() or "local")
    result = run_spark_job(freshness_job(get_settings(), sources))
    checks = sla.checks_from_metrics(result.metrics)
    changes = dict((table, kind) for kind, table in track_sla(result.metrics, run_id))
    rows = [
        {
            "table": c.table,
            "newest": c.newest,
            "age_seconds": c.age_seconds,
            "limit_seconds": c.limit_seconds,
            "breached": c.breached,
            "reported": changes.get(c.table, ""),
        }
        for c in checks
    ]
    create_table_artifact(
        key="freshness",
        table=rows,
        description=f"Freshness SLAs, run {run_id}: {sum(c.breached for c in checks)} of {len(rows)} breached",
    )
    logger.info(
        "freshness: %d of %d source(s) breached; reported: %s",
        sum(c.breached for c in checks),
        len(rows),
        changes or "nothing new",
    )
    return rows
