"""Maintenance flows: weekly OPTIMIZE + Z-ORDER and guarded VACUUM, and table restore."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from lakehouse.pipeline import BIG_TABLES, VACUUM_DEFAULT_HOURS, maintenance_job
from lakehouse.settings import get_settings
from tasks.notify import ALERT_HOOKS
from tasks.spark import run_spark_job


def _history_markdown(metrics: list[dict[str, Any]]) -> str:
    lines = ["| table | version | files | bytes | recent operations |", "| --- | --- | --- | --- | --- |"]
    for m in metrics:
        if m.get("operation") != "HISTORY":
            continue
        ops = ", ".join(f"v{c['version']} {c['operation']}" for c in m.get("commits", [])[:6])
        lines.append(f"| {m['layer']}.{m['table']} | {m['version']} | {m['files']} | {m['bytes']:,} | {ops} |")
    return "\n".join(lines)


def run_name() -> str:
    """``maintenance optimize,vacuum <tables>``: what a run does to which tables (its name in the UI)."""
    params = flow_run.get_parameters()
    done = [c for c in ("optimize", "vacuum") if params.get(c, True)] or ["history"]
    return f"maintenance {','.join(done)} {','.join(params.get('tables') or BIG_TABLES)}"


@flow(name="maintenance", flow_run_name=run_name, persist_result=True, **ALERT_HOOKS)
def maintenance(
    tables: list[str] = list(BIG_TABLES),  # noqa: B006 - Prefect parameters need a literal default
    optimize: bool = True,
    zorder_by: list[str] = ["user_id", "event_type"],  # noqa: B006
    vacuum: bool = True,
    vacuum_retention_hours: float = VACUUM_DEFAULT_HOURS,
    force_vacuum: bool = False,
) -> list[dict[str, Any]]:
    """Compact and Z-order the big tables, vacuum them, and publish their history.

    Args:
        tables: Tables as layer/name.
        optimize: Run OPTIMIZE (Z-ordered by ``zorder_by`` where the table has the columns).
        zorder_by: Z-order columns.
        vacuum: Run VACUUM.
        vacuum_retention_hours: History to keep; under 168 hours is refused unless forced.
        force_vacuum: Allow a retention under 168 hours.
    """
    commands = [c for c, on in (("optimize", optimize), ("vacuum", vacuum)) if on] + ["history"]
    job = maintenance_job(
        commands,
        get_settings(),
        tables=tables,
        zorder=zorder_by,
        vacuum_retention_hours=vacuum_retention_hours,
        force_vacuum=force_vacuum,
    )
    result = run_spark_job(job)
    for m in result.metrics:
        if m.get("operation") == "OPTIMIZE":
            get_run_logger().info(
                "%s.%s: %s -> %s files (z-order %s)",
                m["layer"],
                m["table"],
                m["files_before"],
                m["files_after"],
                m["zorder_by"],
            )
    create_markdown_artifact(
        key="table-history", markdown=_history_markdown(result.metrics), description="Delta history after maintenance"
    )
    return result.metrics


@flow(name="restore-table", flow_run_name="restore-table {table}", persist_result=True, **ALERT_HOOKS)
def restore_table(table: str, version: int | None = None, timestamp: str | None = None) -> list[dict[str, Any]]:
    """Restore ``table`` (layer/name) to a ``version`` or a ``timestamp`` (exactly one)."""
    from lakehouse.errors import ConfigError

    if (version is None) == (timestamp is None):
        raise ConfigError("restore_table needs exactly one of version or timestamp")
    job = maintenance_job(
        ["restore", "history"], get_settings(), tables=[table], restore_version=version, restore_timestamp=timestamp
    )
    result = run_spark_job(job)
    create_markdown_artifact(
        key="table-history",
        markdown=_history_markdown(result.metrics),
        description=f"Delta history of {table} after restore",
    )
    return result.metrics
