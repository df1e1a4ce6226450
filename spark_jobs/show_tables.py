"""Inspect job: every Delta table's path, row count and version, and a time-travel read.

Usage: spark-submit spark_jobs/show_tables.py --root R [--time-travel silver/users] [--as-of V|TS]

The time-travel read compares ``--time-travel`` as of ``--as-of`` (a version number, or a
timestamp such as ``2026-01-02T10:00:00Z``: Delta's ``timestampAsOf``, the version committed at
or before it) with its latest version; without ``--as-of``, with version 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from spark_jobs import storage as io
from spark_jobs.session import job_session, run_conf, run_scope

LAYERS = ("bronze", "silver", "gold", "quarantine")


def list_tables(spark: SparkSession, root: str) -> list[tuple[str, str]]:
    """(layer, table) of every Delta table under ``<root>/warehouse``."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    out = []
    for layer in LAYERS:
        path = jvm.org.apache.hadoop.fs.Path(f"{root.rstrip('/')}/warehouse/{layer}")
        fs = path.getFileSystem(conf)
        if fs.exists(path):
            out += [(layer, s.getPath().getName()) for s in fs.listStatus(path) if s.isDirectory()]
    return sorted(out, key=lambda t: (LAYERS.index(t[0]), t[1]))


def run(spark: SparkSession, root: str, time_travel: str, as_of: str | None = None) -> None:
    """Print the table summary and the time-travel comparison."""
    print(f"{'table':32} {'rows':>10} {'version':>8}  path", flush=True)
    for layer, table in list_tables(spark, root):
        path = f"{root.rstrip('/')}/warehouse/{layer}/{table}"
        if not io.is_delta(spark, path):
            continue
        count = io.read_delta(spark, path).count()
        print(f"{layer + '.' + table:32} {count:>10} {io.log_version(spark, path):>8}  {path}", flush=True)
    path = f"{root.rstrip('/')}/warehouse/{time_travel}"
    if io.is_delta(spark, path):
        print(time_travel_line(spark, path, time_travel, as_of), flush=True)


def version_as_of(spark: SparkSession, path: str, timestamp: str) -> int | None:
    """The version ``timestampAsOf`` reads: the last one committed at or before ``timestamp``."""
    history = spark.sql(f"DESCRIBE HISTORY delta.`{path}`")
    row = history.where(F.col("timestamp") <= F.lit(timestamp).cast("timestamp")).agg(F.max("version")).first()
    return None if row is None or row[0] is None else int(row[0])


def time_travel_line(spark: SparkSession, path: str, name: str, as_of: str | None) -> str:
    """``name`` as of ``as_of`` (version or timestamp; default version 0) against its latest."""
    latest = io.log_version(spark, path)
    reader = spark.read.format("delta")
    if as_of is None or as_of.isdigit():
        version: int | None = int(as_of or 0)
        then = reader.option("versionAsOf", version).load(path)
        label = f"version {version}"
    else:
        then = reader.option("timestampAsOf", as_of).load(path)
        version = version_as_of(spark, path, as_of)
        label = f"as of {as_of}: version {version}"
    now = io.read_delta(spark, path)
    changed = now.exceptAll(then).count()
    return (
        f"time travel {name}: {label} has {then.count()} rows, version {latest} has "
        f"{now.count()} rows; {changed} rows differ from version {version}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint."""
    p = argparse.ArgumentParser(prog="show_tables", description=__doc__)
    p.add_argument("--root", required=True)
    p.add_argument("--time-travel", default="silver/users", help="layer/table of the time-travel read")
    p.add_argument("--as-of", help="version number or timestamp of the time-travel read (default: version 0)")
    p.add_argument(
        "--interpret-below-mb",
        type=float,
        default=0.0,
        help="Run the queries interpreted when the tables' files are smaller than this many MiB (0: never).",
    )
    args = p.parse_args(argv)
    with (
        job_session("lakehouse-show-tables") as spark,
        run_scope(spark, run_conf(spark, args.root, args.interpret_below_mb)),
    ):
        run(spark, args.root, args.time_travel, args.as_of)
    return 0


if __name__ == "__main__":
    sys.exit(main())
