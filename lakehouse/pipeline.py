"""The medallion jobs as SparkJob specs: the one place they are described."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lakehouse.errors import ConfigError
from lakehouse.jobs import SparkJob
from lakehouse.settings import Settings

Layer = Literal["bronze", "silver", "gold"]
LAYERS: tuple[Layer, ...] = ("bronze", "silver", "gold")
Source = Literal["orders", "users", "events"]
SOURCES: tuple[Source, ...] = ("orders", "users", "events")


def ordered_layers(layers: Sequence[str]) -> list[Layer]:
    """Validate ``layers`` and return them in pipeline order (bronze, silver, gold)."""
    unknown = sorted(set(layers) - set(LAYERS))
    if unknown or not layers:
        raise ConfigError(f"unknown layer(s) {unknown or list(layers)}; valid layers: {', '.join(LAYERS)}")
    return [layer for layer in LAYERS if layer in layers]


def check_sources(sources: Sequence[str] | None) -> tuple[Source, ...]:
    """Validate ``sources`` (default: every source) and return them in pipeline order."""
    if sources is None:
        return SOURCES
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown or not sources:
        raise ConfigError(f"unknown source(s) {unknown or list(sources)}; valid sources: {', '.join(SOURCES)}")
    return tuple(s for s in SOURCES if s in sources)


GOLD_TABLES = ("hourly_stats", "daily_revenue", "daily_revenue_by_country")
"""The Spark gold tables (spark_jobs/gold.py's TABLES; a unit test keeps the two equal)."""


@dataclass(frozen=True)
class TablePlan:
    """What a run limited to some tables (``--tables``) runs."""

    layers: list[Layer]
    sources: tuple[Source, ...] | None
    """Sources bronze and silver run for (None: every source)."""
    gold_tables: tuple[str, ...] | None
    """Gold tables rebuilt (None: every one)."""


def plan_tables(tables: Sequence[str] | None, layers: Sequence[str], sources: Sequence[str] | None) -> TablePlan:
    """The layers, sources and gold tables of a run limited to ``tables`` (``layer/name``; None:
    no limit). Bronze and silver run for every source named in either layer: they share one
    source list, so ``bronze/orders`` with ``silver/users`` runs both layers for both sources."""
    plan = ordered_layers(layers)
    if tables is None:
        return TablePlan(plan, check_sources(sources) if sources is not None else None, None)
    if sources is not None:
        raise ConfigError("give either tables or sources, not both (tables names the sources itself)")
    named: dict[str, list[str]] = {layer: [] for layer in LAYERS}
    bad = []
    for table in tables:
        layer, _, name = table.strip().replace(".", "/", 1).partition("/")
        valid = SOURCES if layer in ("bronze", "silver") else GOLD_TABLES if layer == "gold" else ()
        if name in valid:
            named[layer].append(name)
        else:
            bad.append(table)
    if bad or not tables:
        hint = " (silver/users_history is written with silver/users)" if any("users_history" in t for t in bad) else ""
        raise ConfigError(
            f"unknown table(s) {bad or list(tables)}{hint}; valid tables: "
            + ", ".join([f"bronze/{s}" for s in SOURCES] + [f"silver/{s}" for s in SOURCES])
            + ", "
            + ", ".join(f"gold/{t}" for t in GOLD_TABLES)
        )
    chosen = [layer for layer in plan if named[layer]]
    if not chosen:
        raise ConfigError(f"none of the tables {list(tables)} is in the layers {plan}")
    srcs = tuple(s for s in SOURCES if s in named["bronze"] + named["silver"])
    return TablePlan(chosen, srcs or None, tuple(t for t in GOLD_TABLES if t in named["gold"]) or None)


def layer_job(
    layer: Layer,
    settings: Settings,
    *,
    start: dt.date,
    end: dt.date,
    run_id: str,
    full_refresh: bool = False,
    sources: Sequence[str] = SOURCES,
    gold_tables: Sequence[str] | None = None,
) -> SparkJob:
    """The SparkJob of one medallion layer over the landing dates ``start``..``end``."""
    if start > end:
        raise ConfigError(f"start_date {start} is after end_date {end}")
    args = [
        "--root",
        settings.storage.root,
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--run-id",
        run_id,
        "--parallelism",
        str(settings.pipeline.table_parallelism),
        "--interpret-below-mb",
        f"{settings.spark.interpret_below_mb:g}",
    ]
    if layer != "gold":
        args += ["--sources", ",".join(sources)]
    if gold_tables:  # read by the gold layer only (alone or in the fused medallion job)
        args += ["--gold-tables", ",".join(gold_tables)]
    if settings.contracts_dir:
        args += ["--contracts-dir", settings.contracts_dir]
    if full_refresh:
        args.append("--full-refresh")
    return SparkJob(
        name=f"medallion-{layer}",
        entrypoint=f"spark_jobs.{layer}",
        args=tuple(args),
        timeout_seconds=settings.spark.job_timeout_seconds,
    )


def medallion_jobs(
    layers: Sequence[str],
    settings: Settings,
    *,
    start: dt.date,
    end: dt.date,
    run_id: str,
    full_refresh: bool = False,
    sources: Sequence[str] | None = None,
    tables: Sequence[str] | None = None,
) -> list[SparkJob]:
    """The jobs of one medallion run: one job running all ``layers`` in a single driver, or one
    job per layer when ``settings.pipeline.job_per_layer`` is set. ``sources`` limits bronze and
    silver to those sources (default: all); gold rebuilds all its tables for the range.
    ``tables`` (``layer/name``) instead runs only those tables' layers, sources and gold tables
    (:func:`plan_tables`)."""
    limit = plan_tables(tables, layers, sources)
    plan, chosen = limit.layers, limit.sources or SOURCES
    common: dict[str, Any] = dict(
        start=start, end=end, run_id=run_id, full_refresh=full_refresh, sources=chosen, gold_tables=limit.gold_tables
    )
    if settings.pipeline.job_per_layer:
        return [layer_job(layer, settings, **common) for layer in plan]
    job = layer_job("bronze", settings, **common)
    return [
        job.model_copy(
            update={
                "name": "medallion",
                "entrypoint": "spark_jobs.medallion",
                "args": (*job.args, "--layers", ",".join(plan)),
            }
        )
    ]


def show_tables_job(settings: Settings, *, table: str = "silver/users", as_of: str | None = None) -> SparkJob:
    """A job printing every table's path, row count and version, plus a time-travel read of
    ``table`` (layer/name) as of ``as_of`` (a version or a timestamp; default version 0)."""
    args = ["--root", settings.storage.root, "--time-travel", table]
    args += ["--interpret-below-mb", f"{settings.spark.interpret_below_mb:g}"]
    if as_of is not None:
        args += ["--as-of", as_of]
    return SparkJob(
        name="lakehouse-show-tables",
        entrypoint="spark_jobs.show_tables",
        args=tuple(args),
        timeout_seconds=settings.spark.job_timeout_seconds,
    )


def inspect_job(
    settings: Settings, command: str, *, table: str | None = None, query: str | None = None, limit: int | None = None
) -> SparkJob:
    """A job looking at the tables (``spark_jobs.inspect_tables``): ``tables`` (rows, version,
    files, size, last commit of each), ``history`` of ``table`` (layer/name), or ``sql`` ``query``."""
    if command not in ("tables", "history", "sql"):
        raise ConfigError(f"inspect command must be tables, history or sql; got {command!r}")
    args = [command, "--root", settings.storage.root]
    if command == "history":
        if not table or table.replace(".", "/", 1).count("/") != 1:
            raise ConfigError(f"a table is layer/name, e.g. silver/events; got {table!r}")
        args += ["--table", table]
    if command == "sql":
        if not (query or "").strip():
            raise ConfigError("the SQL query is empty")
        args += ["--query", str(query)]
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"limit must be at least 1; got {limit}")
        args += ["--limit", str(limit)]
    return SparkJob(
        name=f"lakehouse-{command}",
        entrypoint="spark_jobs.inspect_tables",
        args=tuple(args),
        timeout_seconds=settings.spark.job_timeout_seconds,
    )


def freshness_job(settings: Settings, sources: Sequence[str] | None = None) -> SparkJob:
    """The job checking every contract's freshness SLA from silver's own data (the ``freshness``
    flow's; ``sources`` limits it)."""
    args = ["--root", settings.storage.root]
    if sources:
        args += ["--sources", ",".join(sources)]
    if settings.contracts_dir:
        args += ["--contracts-dir", settings.contracts_dir]
    return SparkJob(
        name="freshness",
        entrypoint="spark_jobs.freshness",
        args=tuple(args),
        timeout_seconds=settings.spark.job_timeout_seconds,
    )


BIG_TABLES = ("bronze/events", "silver/events", "silver/orders")
"""Tables maintenance compacts and Z-orders by default."""
VACUUM_DEFAULT_HOURS = 168.0


def maintenance_job(
    commands: Sequence[str],
    settings: Settings,
    *,
    tables: Sequence[str] = BIG_TABLES,
    zorder: Sequence[str] = ("user_id", "event_type"),
    vacuum_retention_hours: float = VACUUM_DEFAULT_HOURS,
    force_vacuum: bool = False,
    restore_version: int | None = None,
    restore_timestamp: str | None = None,
) -> SparkJob:
    """The maintenance SparkJob. The vacuum guard is checked here, before anything is submitted:
    a retention under 168 hours is refused unless ``force_vacuum``."""
    if "vacuum" in commands and vacuum_retention_hours < VACUUM_DEFAULT_HOURS and not force_vacuum:
        raise ConfigError(
            f"refusing VACUUM with a retention of {vacuum_retention_hours:g} hours (default and minimum "
            f"without force: {VACUUM_DEFAULT_HOURS:g}): time travel and restore need those files; set "
            "force_vacuum=True to override"
        )
    layers = ("bronze", "silver", "gold", "quarantine", "quality")
    bad = [t for t in tables if t.count("/") != 1 or t.split("/")[0] not in layers]
    if bad or not tables:
        raise ConfigError(f"tables must be layer/name with layer one of {', '.join(layers)}; got {bad or tables}")
    args = [
        ",".join(commands),
        "--root",
        settings.storage.root,
        "--tables",
        ",".join(tables),
        "--zorder",
        ",".join(zorder),
        "--retention-hours",
        f"{vacuum_retention_hours:g}",
    ]
    if force_vacuum:
        args.append("--force")
    if restore_version is not None:
        args += ["--version", str(restore_version)]
    if restore_timestamp is not None:
        args += ["--timestamp", restore_timestamp]
    return SparkJob(
        name="lakehouse-maintenance",
        entrypoint="spark_jobs.maintenance",
        args=tuple(args),
        timeout_seconds=settings.spark.job_timeout_seconds,
    )


def small_lakehouse(settings: Settings, *, with_landing: bool = False) -> bool:
    """True when the tables' files on a local root (``with_landing``: plus the landing files)
    add up to less than ``spark.interpret_below_mb`` MiB: dbt's queries then run interpreted, as
    the jobs' do on a small lakehouse (:data:`spark_jobs.conf.INTERPRETED_CONF`), a new warm Spark
    warms up that way, and (with the landing files, which the next runs read) a local driver JVM
    starts on C1 (``spark.jit=auto``). An ``s3a://`` root is never counted as small (the jobs
    count it themselves)."""
    limit = settings.spark.interpret_below_mb * 1024 * 1024
    root = settings.storage.root
    if limit <= 0 or ("://" in root and not root.startswith("file://")):
        return False
    total = 0
    places = [settings.storage.warehouse, *([settings.storage.landing] if with_landing else [])]
    for place in places:
        for directory, _dirs, files in os.walk(place.removeprefix("file://")):
            for name in files:
                with contextlib.suppress(OSError):  # a file a concurrent job just replaced
                    total += os.stat(os.path.join(directory, name)).st_size
                if total >= limit:
                    return False
    return True
