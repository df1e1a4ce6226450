"""Inspect job: every Delta table's path, row count and version, and a time-travel read.

Usage: spark-submit spark_jobs/show_tables.py --root R [--time-travel silver/users]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from spark_jobs import storage as io
from spark_jobs.session import job_session

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


def run(spark: SparkSession, root: str, time_travel: str) -> None:
    """Print the table summary and the time-travel comparison."""
    print(f"{'table':32} {'rows':>10} {'version':>8}  path", flush=True)
    for layer, table in list_tables(spark, root):
        path = f"{root.rstrip('/')}/warehouse/{layer}/{table}"
        if not io.is_delta(spark, path):
            continue
        count = io.read_delta(spark, path).count()
        version = io.last_commit(spark, path)["version"]
        print(f"{layer + '.' + table:32} {count:>10} {version:>8}  {path}", flush=True)
    path = f"{root.rstrip('/')}/warehouse/{time_travel}"
    if io.is_delta(spark, path):
        latest = io.last_commit(spark, path)["version"]
        v0 = spark.read.format("delta").option("versionAsOf", 0).load(path)
        now = io.read_delta(spark, path)
        changed = now.exceptAll(v0).count()
        print(
            f"time travel {time_travel}: version 0 has {v0.count()} rows, version {latest} has "
            f"{now.count()} rows; {changed} rows differ from version 0", flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint."""
    p = argparse.ArgumentParser(prog="show_tables", description=__doc__)
    p.add_argument("--root", required=True)
    p.add_argument("--time-travel", default="silver/users", help="layer/table to compare with v0")
    args = p.parse_args(argv)
    with job_session("lakehouse-show-tables") as spark:
        run(spark, args.root, args.time_travel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
