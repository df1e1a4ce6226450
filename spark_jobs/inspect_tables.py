"""Look at the lakehouse's Delta tables: a summary of all, one table's history, a SQL query.

Usage:
    spark-submit spark_jobs/inspect_tables.py tables --root R
    spark-submit spark_jobs/inspect_tables.py history --root R --table silver/events [--limit 20]
    spark-submit spark_jobs/inspect_tables.py sql --root R --query "select ..." [--limit 50]

In a query, ``layer.table`` (e.g. ``silver.events``) names the Delta table under
``<root>/warehouse/layer/table``; it is rewritten to ``delta.`<path>``` before Spark parses the
query, so no catalog is created or changed.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from spark_jobs import storage as io
from spark_jobs.cli import CONFIG_ERROR_EXIT
from spark_jobs.session import job_session
from spark_jobs.show_tables import list_tables

# the metrics worth a column in a history line, by operation (Delta's operationMetrics names)
HISTORY_METRICS = (
    "numOutputRows",
    "numTargetRowsInserted",
    "numTargetRowsUpdated",
    "numTargetRowsDeleted",
    "numDeletedRows",
    "numRemovedFiles",
    "numAddedFiles",
    "numRestoredFiles",
)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")


def tables(spark: SparkSession, root: str) -> list[dict[str, Any]]:
    """Every Delta table: rows, version, files, size and its last commit (time, operation)."""
    print(f"{'table':32} {'rows':>10} {'version':>8} {'files':>6} {'size':>10}  last commit", flush=True)
    out = []
    for layer, table in list_tables(spark, root):
        path = f"{root.rstrip('/')}/warehouse/{layer}/{table}"
        if not io.is_delta(spark, path):
            continue
        detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
        last = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()
        assert detail is not None and last is not None
        row = {
            "table": f"{layer}.{table}",
            "rows": io.read_delta(spark, path).count(),
            "version": int(last["version"]),
            "files": int(detail["numFiles"]),
            "bytes": int(detail["sizeInBytes"]),
            "committed": last["timestamp"],
            "operation": last["operation"],
        }
        print(
            f"{row['table']:32} {row['rows']:>10} {row['version']:>8} {row['files']:>6} "
            f"{_size(row['bytes']):>10}  {row['committed']:%Y-%m-%d %H:%M:%S} {row['operation']}",
            flush=True,
        )
        out.append(row)
    if not out:
        print(f"no Delta table under {root.rstrip('/')}/warehouse", flush=True)
    return out


def table_path(spark: SparkSession, root: str, table: str) -> str:
    """The path of ``table`` (layer/name or layer.name); ValueError naming the tables there if none."""
    layer, _, name = table.replace(".", "/", 1).partition("/")
    path = f"{root.rstrip('/')}/warehouse/{layer}/{name}"
    if not name or not io.is_delta(spark, path):
        known = ", ".join(f"{t[0]}/{t[1]}" for t in list_tables(spark, root)) or "none"
        raise ValueError(f"no Delta table {table!r} under {root.rstrip('/')}/warehouse (tables: {known})")
    return path


def history(spark: SparkSession, root: str, table: str, limit: int = 20) -> list[dict[str, Any]]:
    """The last ``limit`` commits of ``table``: version, time, operation, row/file metrics, the run."""
    path = table_path(spark, root, table)
    rows = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT {int(limit)}").collect()
    print(f"{'version':>7}  {'committed (UTC)':19}  {'operation':18} metrics / commit metadata", flush=True)
    out = []
    for r in rows:
        metrics = {k: v for k, v in (r["operationMetrics"] or {}).items() if k in HISTORY_METRICS}
        out.append(
            {
                "version": int(r["version"]),
                "committed": r["timestamp"],
                "operation": r["operation"],
                "metrics": metrics,
                "user_metadata": r["userMetadata"],
            }
        )
        text = " ".join(f"{k}={v}" for k, v in metrics.items())
        if r["userMetadata"]:
            text += f"  {r['userMetadata']}"
        print(f"{r['version']:>7}  {r['timestamp']:%Y-%m-%d %H:%M:%S}  {r['operation']:18} {text}", flush=True)
    return out


def resolve_names(spark: SparkSession, root: str, query: str) -> str:
    """``query`` with every ``layer.table`` of an existing table replaced by ``delta.`<path>```."""
    known = {
        f"{layer}.{table}": f"{root.rstrip('/')}/warehouse/{layer}/{table}" for layer, table in list_tables(spark, root)
    }
    if not known:
        return query
    pattern = re.compile(
        r"(?<![\w.`])(" + "|".join(re.escape(k) for k in sorted(known, key=len, reverse=True)) + r")(?![\w`])",
        re.IGNORECASE,
    )
    return pattern.sub(lambda m: f"delta.`{known[m.group(1).lower()]}`", query)


def sql(spark: SparkSession, root: str, query: str, limit: int = 50) -> list[tuple[Any, ...]]:
    """Run ``query`` over the tables and print up to ``limit`` rows (and the total when more)."""
    df = spark.sql(resolve_names(spark, root, query))
    rows = df.limit(limit + 1).collect()
    columns = df.columns
    cells = [[("NULL" if v is None else str(v)) for v in r] for r in rows[:limit]]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), flush=True)
    print("  ".join("-" * w for w in widths), flush=True)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)), flush=True)
    shown = f"{len(cells)} row(s)" if len(rows) <= limit else f"first {limit} rows (--limit to see more)"
    print(shown, flush=True)
    return [tuple(r) for r in rows[:limit]]


def main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint."""
    p = argparse.ArgumentParser(
        prog="inspect_tables", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("command", choices=("tables", "history", "sql"))
    p.add_argument("--root", required=True)
    p.add_argument("--table", help="layer/name (history)")
    p.add_argument("--query", help="Spark SQL (sql)")
    p.add_argument("--limit", type=int, default=None, help="rows to print (history: 20, sql: 50)")
    args = p.parse_args(argv)
    with job_session(f"lakehouse-{args.command}") as spark:
        try:
            if args.command == "tables":
                tables(spark, args.root)
            elif args.command == "history":
                history(spark, args.root, args.table, args.limit or 20)
            else:
                sql(spark, args.root, args.query, args.limit or 50)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return CONFIG_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
