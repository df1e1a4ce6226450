"""Gold job: aggregates over silver, rewritten only for the dates a run touched.

A gold table is recomputed for the dates of the silver rows that came from bronze batches it has
not applied yet (late events included: a late event lands today but touches its own day). Those
dates are rewritten with replaceWhere; other dates are never rewritten and the table is never
overwritten whole. Each write records the batches it applied, so a rerun commits nothing.
``--full-refresh`` recomputes every date touched by the landing dates in range.

SCD1 note: ``daily_revenue_by_country`` attributes orders to the user's current country at the
time their date is (re)computed; a later country change does not rewrite older dates. The dbt
mart ``fct_daily_revenue_by_country`` gives the country at order time (silver/users_history).

Usage: spark-submit spark_jobs/gold.py --root R --start D --end D [--run-id ID]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from spark_jobs import storage as io
from spark_jobs.cli import parse_batch, table_path
from spark_jobs.report import Report, lineage_output
from spark_jobs.session import for_each_table, run_job
from spark_jobs.transforms import gold


@dataclass(frozen=True)
class GoldTable:
    """A gold table: the silver table it derives from and how to build it for some dates."""

    name: str
    silver: str
    silver_date: str
    gold_date: str
    build: Callable[[SparkSession, str, str], DataFrame]
    """(spark, root, silver date predicate) -> rows for exactly those dates."""
    also_reads: tuple[str, ...] = ()
    """Other silver tables ``build`` reads (its lineage)."""

    def inputs(self, root: str) -> list[dict[str, str]]:
        """The silver tables this table is built from, with their paths (its lineage)."""
        return [
            {"table": f"silver/{name}", "path": table_path(root, "silver", name)}
            for name in (self.silver, *self.also_reads)
        ]


def _silver(spark: SparkSession, root: str, table: str, where: str | None = None) -> DataFrame:
    return io.read_delta(spark, table_path(root, "silver", table), where)


def _users(spark: SparkSession, root: str) -> DataFrame:
    """The users dimension; empty (every order under country ``unknown``) before it exists."""
    path = table_path(root, "silver", "users")
    if io.is_delta(spark, path):
        return io.read_delta(spark, path)
    return spark.createDataFrame([], "user_id string, country string")


TABLES = (
    GoldTable(
        "hourly_stats",
        "events",
        "event_date",
        "CAST(hour AS DATE)",
        lambda s, root, where: gold.hourly_stats(_silver(s, root, "events", where)),
    ),
    GoldTable(
        "daily_revenue",
        "orders",
        "order_date",
        "date_day",
        lambda s, root, where: gold.daily_revenue(_silver(s, root, "orders", where)),
    ),
    GoldTable(
        "daily_revenue_by_country",
        "orders",
        "order_date",
        "date_day",
        lambda s, root, where: gold.daily_revenue_by_country(_silver(s, root, "orders", where), _users(s, root)),
        also_reads=("users",),
    ),
)


def refresh(spark: SparkSession, args: argparse.Namespace, table: GoldTable, report: Report) -> None:
    """Recompute ``table`` for the dates its pending silver rows touch."""
    started = time.monotonic()
    path = table_path(args.root, "gold", table.name)
    silver_path = table_path(args.root, "silver", table.silver)
    if not io.is_delta(spark, silver_path):
        report.table("gold", table.name, started, dates=[], rows_written=0, note=f"no silver.{table.silver}")
        return
    slice_ = io.read_delta(spark, silver_path, io.sql_in("_landing_date", [d.isoformat() for d in args.dates]))
    # One pass over the slice: which (batch, date) pairs it holds; few of them (a batch is a day).
    pairs = [
        (r[0], r[1])
        for r in slice_.select("_batch_id", table.silver_date).distinct().collect()
        if r[0] is not None and r[1] is not None
    ]
    applied, version, _ = io.applied_state(spark, path)
    if args.full_refresh:
        applied = set()
    pending = sorted({b for b, _ in pairs} - applied)
    dates = sorted({d.isoformat() for b, d in pairs if b not in applied})
    if not dates:
        report.table("gold", table.name, started, dates=[], rows_written=0, version=version)
        return
    rows = table.build(spark, args.root, io.sql_in(table.silver_date, dates))
    with io.commit_metadata(spark, pending, run_id=args.run_id):
        io.replace_where(rows, path, io.sql_in(table.gold_date, dates))
    commit = io.last_commit(spark, path)
    report.table(
        "gold",
        table.name,
        started,
        dates=dates,
        rows_written=int(commit["metrics"].get("numOutputRows", 0)),
        version=commit["version"],
        inputs=table.inputs(args.root),
        outputs=[lineage_output(spark, f"gold/{table.name}", path, commit["version"], committed=True)],
    )


def run(spark: SparkSession, args: argparse.Namespace) -> Report:
    """Recompute every gold table for the dates touched by pending silver rows."""
    report = Report("gold")
    wanted = getattr(args, "gold_tables", None)
    unknown = sorted(set(wanted or ()) - {t.name for t in TABLES})
    if unknown:
        raise ValueError(f"unknown gold table(s) {unknown}; valid: {', '.join(t.name for t in TABLES)}")
    tables = [t for t in TABLES if not wanted or t.name in wanted]
    for_each_table(spark, tables, lambda session, table: refresh(session, args, table, report), args.parallelism)
    report.order([t.name for t in tables])
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint: parse arguments, run, print metrics; exceptions exit non-zero."""
    args = parse_batch("gold", __doc__ or "", argv)
    run_job("lakehouse-gold", lambda spark: run(spark, args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
