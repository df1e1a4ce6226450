"""The medallion flow: landing -> bronze -> silver -> gold, for one date or a range (backfill).

The gold step is the Spark gold job (hourly_stats, daily_revenue) and then, unless the run's
``dbt_marts`` parameter or ``LAKEHOUSE_PIPELINE__DBT_MARTS=false`` turns them off, the dbt marts
(the ``dbt-build`` flow as a subflow).

The requested layers run as one SparkJob over the whole date range (or one job per layer with
``LAKEHOUSE_PIPELINE__JOB_PER_LAYER=true``); inside, every landing date is applied idempotently
(bronze skips files already ingested, silver MERGEs only strictly newer rows and records the
batches it applied, gold replaces only the dates touched), so reruns and overlapping backfills
leave identical tables.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from lakehouse.pipeline import LAYERS, Layer, Source, medallion_jobs, plan_tables
from lakehouse.settings import get_settings
from tasks.artifacts import publish_summary, summary_rows
from tasks.lineage import record_spark_lineage
from tasks.notify import ALERT_HOOKS
from tasks.quality import publish_quality, quality_rows, track_sla
from tasks.spark import run_spark_job


def run_name() -> str:
    """``medallion <start>..<end>``: the dates a run covers, defaults resolved (its name in the UI)."""
    params = flow_run.get_parameters()
    start = params.get("start_date") or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    return f"medallion {start}..{params.get('end_date') or start}"


@flow(name="medallion", flow_run_name=run_name, persist_result=True, **ALERT_HOOKS)
def medallion(
    start_date: dt.date | None = None,
    end_date: dt.date | None = None,
    layers: list[Layer] = list(LAYERS),  # noqa: B006 - Prefect parameters need a literal default
    full_refresh: bool = False,
    dbt_marts: bool | None = None,
    sources: list[Source] | None = None,
    tables: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Run the medallion pipeline for the landing dates ``start_date``..``end_date``.

    Args:
        start_date: First landing date; defaults to yesterday (UTC).
        end_date: Last landing date, inclusive; defaults to ``start_date``.
        layers: Layers to run, any of bronze, silver, gold (run in that order).
        full_refresh: Rebuild the range from its inputs instead of applying what is new.
        dbt_marts: Build the dbt marts after the Spark gold tables (when gold runs); default:
            the ``pipeline.dbt_marts`` setting.
        sources: Run bronze and silver for these sources only (any of orders, users, events;
            default: all); gold rebuilds its tables for the range from silver either way.
        tables: Run only these tables (layer/name, e.g. silver/orders, gold/daily_revenue): their
            layers, bronze and silver for the sources named, the gold tables named. Not together
            with ``sources``.

    Returns:
        One summary row per layer and table (rows read/written, Delta version, duration).
    """
    logger = get_run_logger()
    settings = get_settings()
    start = start_date or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))
    end = end_date or start
    run_id = str(flow_run.get_id() or "local")
    # built up front: a bad parameter fails before any Spark work
    limit = plan_tables(tables, layers, sources)
    plan = limit.layers
    jobs = medallion_jobs(
        layers, settings, start=start, end=end, run_id=run_id, full_refresh=full_refresh, sources=sources, tables=tables
    )
    logger.info(
        "medallion %s..%s layers=%s sources=%s gold tables=%s full_refresh=%s backend=%s",
        start,
        end,
        plan,
        ",".join(limit.sources) if limit.sources else "all",
        ",".join(limit.gold_tables) if limit.gold_tables else "all",
        full_refresh,
        settings.backend,
    )
    marts_on = "gold" in plan and (settings.pipeline.dbt_marts if dbt_marts is None else dbt_marts)
    if marts_on:  # dbt and prefect-dbt load only when the marts are built, while the jobs run
        from lakehouse.dbt import get_dbt_settings, preload

        loading = preload(settings, get_dbt_settings())
    results = []
    for job in jobs:
        results.append(run_spark_job(job))
        record_spark_lineage(job.name, results[-1])
    rows = summary_rows(results)
    # The Spark half's outcomes go out as soon as it is done, before the dbt marts: a failing dbt
    # build still leaves the run's summary, rule outcomes and SLA state. (Also, on the local
    # SQLite server the dbt subflow's start right after the job's last state change often met a
    # database lock and waited 2 s for Prefect's retry; these writes come in between.)
    publish_summary(
        "medallion-summary",
        rows,
        f"Medallion run {start}..{end} ({', '.join(plan)}) on the {settings.backend} backend",
    )
    metrics = [m for r in results for m in r.metrics]
    publish_quality(quality_rows(metrics), f"Data-contract rule outcomes, run {run_id}")
    track_sla(metrics, run_id)
    if marts_on:
        loading.join()
        from flows.dbt_build import dbt_build

        # the gold step's second half: the dbt marts on the silver tables just written. Freshness
        # only means something for a run that reaches the present, not for a backfill.
        yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
        marts = dbt_build(full_refresh=full_refresh, freshness=end >= yesterday)
        logger.info("dbt marts: %d node(s) built or tested", len(marts))
    return rows
