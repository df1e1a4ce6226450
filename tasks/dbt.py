"""Run a dbt command through prefect-dbt's ``PrefectDbtRunner``.

Called inside a flow run, the runner turns every dbt node it executes (model, test, unit test,
source freshness check) into a Prefect task run of its own, with the node's log lines, and each
model into a Prefect asset. This helper is deliberately not a task itself: wrapping the runner
in a task would only nest those per-node tasks one level deeper.

A node that errors or fails makes :func:`run_dbt` raise :class:`~lakehouse.dbt.DbtError` naming
every failed node, which fails the calling flow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prefect.logging import get_run_logger

from lakehouse.dbt import DbtError, DbtSettings, artifacts_dir, command_args
from lakehouse.prefect_env import share_client_tls_context, share_settings_with_dbt_nodes
from lakehouse.settings import Settings

_FAILED = {"error", "fail", "runtime error"}


def _status(result: Any) -> str:
    status = getattr(result, "status", "")
    return str(getattr(status, "value", status))


def node_rows(res: Any, command: Sequence[str]) -> list[dict[str, Any]]:
    """One row per executed dbt node: id, type, name, status, seconds, message, rows affected.

    A result without a node (``run-operation``) is named after the operation.
    """
    results = getattr(getattr(res, "result", None), "results", None) or []
    rows = []
    for r in results:
        node = getattr(r, "node", None)
        response = getattr(r, "adapter_response", None)
        response = response if isinstance(response, dict) else {}
        rows.append(
            {
                "unique_id": getattr(node, "unique_id", None),
                "resource_type": str(getattr(getattr(node, "resource_type", None), "value", "")) or command[0],
                "name": getattr(node, "name", None) or " ".join(command[1:2]),
                "status": _status(r),
                "seconds": round(float(getattr(r, "execution_time", 0.0) or 0.0), 2),
                "failures": getattr(r, "failures", None),
                "message": getattr(r, "message", None) or ("see the dbt log above" if node is None else None),
                "rows_affected": response.get("rows_affected"),
                "relation": _relation(node),
                "depends_on": list(getattr(getattr(node, "depends_on", None), "nodes", None) or []),
                "columns": [
                    {"name": name, "type": getattr(col, "data_type", None)}
                    for name, col in (getattr(node, "columns", None) or {}).items()
                ],
            }
        )
    return rows


def _relation(node: Any) -> str | None:
    """``schema.table`` of a node that is a relation (quotes dropped); None otherwise."""
    name = getattr(node, "relation_name", None)
    return str(name).replace("`", "").replace('"', "") if name else None


def with_upstream(rows: list[dict[str, Any]], manifest: Any) -> list[dict[str, Any]]:
    """Add to each row the relations (``schema.table``) its node reads: the sources and models
    it depends on, looked up in the dbt ``manifest`` (its lineage)."""
    if manifest is None:
        return rows
    found = {**getattr(manifest, "sources", {}), **getattr(manifest, "nodes", {})}
    for row in rows:
        relations = (_relation(found.get(uid)) for uid in row.get("depends_on") or [])
        row["upstream"] = sorted({r for r in relations if r})
    return rows


def run_dbt(
    command: Sequence[str],
    settings: Settings,
    dbt: DbtSettings,
    project_vars: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Invoke ``dbt <command>`` (project, profiles, target path and vars added) through
    ``PrefectDbtRunner`` and return :func:`node_rows`.

    Run it inside :func:`lakehouse.dbt.dbt_environment`.

    Raises:
        DbtError: dbt could not run (bad project, no connection), or a node errored or failed;
            the message names every failed node with its status and message.
    """
    from prefect_dbt import PrefectDbtRunner, PrefectDbtSettings  # heavy: only when dbt runs

    share_client_tls_context()  # prefect-dbt makes three Prefect clients per node
    share_settings_with_dbt_nodes()  # ... and builds its settings anew three times per node
    logger = get_run_logger()
    args = command_args(command, settings, dbt, project_vars)
    runner = PrefectDbtRunner(
        settings=PrefectDbtSettings(
            project_dir=dbt.project_dir,
            profiles_dir=dbt.resolved_profiles_dir(),
            target_path=artifacts_dir(settings, dbt) / "target",
        ),
        raise_on_failure=False,
    )
    logger.info("dbt %s (target %s)", " ".join(command), dbt.resolved_target(settings))
    try:
        res = runner.invoke(args)
    except ValueError as exc:  # the runner's wrapping of a dbt crash (res.exception)
        raise DbtError(command, f"could not run: {exc}") from exc
    rows = with_upstream(node_rows(res, command), getattr(runner, "manifest", None))
    failed = [r for r in rows if r["status"] in _FAILED]
    if failed or not res.success:
        lines = [
            f"{r['resource_type']} {r['name']} ({r['unique_id'] or 'no node'}): {r['status']}: {r['message']}"
            for r in failed
        ]
        detail = "\n".join(f"  {line}" for line in lines) or f"  {res.exception or 'no result'}"
        raise DbtError(command, f"failed ({len(failed)} node(s)):\n{detail}", failures=lines)
    logger.info("dbt %s: %d node(s) ok", " ".join(command), len(rows))
    return rows
