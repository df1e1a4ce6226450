"""The gold marts: the dbt project (``dbt/``) on Spark + Delta, as a Prefect flow.

(Not ``flows/dbt.py``: Prefect puts a flow file's directory on ``sys.path`` when it loads a
deployment's entrypoint, and a module named ``dbt`` there would shadow the dbt package.)

``dbt_build`` checks the sources' freshness, then runs ``dbt build`` (models, data tests and
unit tests in DAG order); the project's on-run-start hook registers the silver tables in the
catalog first. Every dbt node is a Prefect
task run of its own; a node that errors or fails fails the flow with an error naming it. Called
from another flow (the medallion flow's gold step) it is a subflow.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from lakehouse.dbt import catalog_in_step, dbt_environment, get_dbt_settings, missing_silver_tables
from lakehouse.errors import ConfigError
from lakehouse.settings import get_settings
from tasks.artifacts import publish_summary
from tasks.dbt import run_dbt
from tasks.lineage import record_dbt_lineage
from tasks.notify import ALERT_HOOKS

SUMMARY_COLUMNS = (
    "command",
    "resource_type",
    "name",
    "status",
    "seconds",
    "rows_affected",
    "message",
)


def run_name() -> str:
    """``dbt-build <selection>``: what a run builds (its name in the UI)."""
    params = flow_run.get_parameters()
    refresh = " full-refresh" if params.get("full_refresh") else ""
    return f"dbt-build {' '.join(params.get('select') or ['all'])}{refresh}"


@flow(name="dbt-build", flow_run_name=run_name, **ALERT_HOOKS)
def dbt_build(
    select: list[str] | None = None,
    full_refresh: bool = False,
    freshness: bool = True,
    project_vars: dict[str, Any] | None = None,
    unit_tests: bool | None = None,
) -> list[dict[str, Any]]:
    """Build the gold marts with dbt.

    Args:
        select: dbt node selection (``--select``); default: the whole project.
        full_refresh: Rebuild the incremental marts from scratch (``--full-refresh``).
        freshness: Run ``dbt source freshness`` before the build (stale silver fails the flow
            past the error threshold, warns past the warn threshold).
        project_vars: Extra dbt vars (``--vars``), e.g. ``{"enable_failing_test": true}``.
        unit_tests: Run the dbt unit tests too; default: the ``dbt.unit_tests`` setting (off:
            production builds leave them to development and CI, as dbt recommends).

    Returns:
        One row per dbt node run: command, type, name, status, seconds, rows affected, message.

    Raises:
        ConfigError: A silver table the sources need does not exist yet.
        DbtError: A model, test or freshness check errored or failed (named in the message).
    """
    logger = get_run_logger()
    settings, dbt = get_settings(), get_dbt_settings()
    missing = missing_silver_tables(settings, dbt)
    if missing:
        raise ConfigError(
            f"dbt needs the silver tables {missing} under {settings.storage.warehouse}/silver; "
            "run the medallion flow's silver layer first."
        )
    selection = ["--select", *select] if select else []
    rows: list[dict[str, Any]] = []
    build = ["build", *selection, *(["--full-refresh"] if full_refresh else [])]
    if not (dbt.unit_tests if unit_tests is None else unit_tests):
        build += ["--exclude-resource-type", "unit_test"]
    with dbt_environment(settings, dbt):
        if not freshness:
            rows += [{"command": "build", **r} for r in run_dbt(build, settings, dbt, project_vars)]
        else:
            # Freshness first: nothing is built on stale silver. Its on-run-start hook brings the
            # catalog in step with the storage; the build right after it skips that hook.
            rows += [
                {"command": "source freshness", **r}
                for r in run_dbt(["source", "freshness"], settings, dbt, project_vars)
            ]
            with catalog_in_step():
                rows += [{"command": "build", **r} for r in run_dbt(build, settings, dbt, project_vars)]
    record_dbt_lineage(rows)
    summary = [{c: r.get(c) for c in SUMMARY_COLUMNS} for r in rows]
    publish_summary(
        "dbt-build-summary",
        summary,
        f"dbt build of the gold marts (target {dbt.resolved_target(settings)}, {len(rows)} nodes)",
    )
    logger.info("dbt build: %d node(s) ok", len(rows))
    return summary
