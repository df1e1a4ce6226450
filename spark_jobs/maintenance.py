"""Maintenance job: OPTIMIZE (with Z-ORDER), guarded VACUUM, RESTORE, and table history.

Commands, comma-separated and run in order in one driver (all take ``--root`` and
``--tables layer/name,...``):

- ``optimize``: compacts small files; Z-orders by the requested columns a table has (partition
  columns excluded, as Delta requires);
- ``vacuum``: removes files no version within the retention still needs; a retention under the
  168-hour default is refused unless ``--force`` (time travel and concurrent readers need them);
- ``restore``: brings one table back to ``--version`` or ``--timestamp``;
- ``history``: versions, operations, files and bytes.

Every subcommand reports per table (files and bytes before/after, versions) as job metrics.

Usage: spark-submit spark_jobs/maintenance.py optimize,vacuum,history --root R --tables silver/events
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from spark_jobs import storage as io
from spark_jobs.report import Report
from spark_jobs.session import run_job

DEFAULT_RETENTION_HOURS = 168.0
GUARD_EXIT = 64
"""Exit code when the vacuum guard refuses a retention (EX_USAGE)."""


class VacuumGuardError(ValueError):
    """A VACUUM retention below the safe default was asked for without ``--force``."""


def check_retention(hours: float, force: bool) -> None:
    """Refuse a retention below 168 hours unless forced."""
    if hours < 0:
        raise VacuumGuardError(f"retention must be >= 0 hours, got {hours:g}")
    if hours < DEFAULT_RETENTION_HOURS and not force:
        raise VacuumGuardError(
            f"refusing VACUUM with a retention of {hours:g} hours: below the {DEFAULT_RETENTION_HOURS:g}-hour "
            "default it deletes files that time travel, RESTORE and running readers still need; pass --force "
            "(force_vacuum=True) if that is really intended"
        )


def detail(spark: SparkSession, path: str) -> dict[str, Any]:
    """Files, bytes, version and partition columns of a Delta table."""
    row = DeltaTable.forPath(spark, path).detail().select("numFiles", "sizeInBytes", "partitionColumns").first()
    assert row is not None
    return {
        "files": int(row["numFiles"]),
        "bytes": int(row["sizeInBytes"]),
        "partition_columns": list(row["partitionColumns"]),
        "version": io.last_commit(spark, path)["version"],
    }


def optimize(spark: SparkSession, path: str, zorder: Sequence[str]) -> dict[str, Any]:
    """OPTIMIZE ``path``, Z-ordering by the columns of ``zorder`` the table has."""
    before = detail(spark, path)
    columns = set(spark.read.format("delta").load(path).columns) - set(before["partition_columns"])
    by = [c for c in zorder if c in columns]
    table = DeltaTable.forPath(spark, path).optimize()
    (table.executeZOrderBy(*by) if by else table.executeCompaction())
    after = detail(spark, path)
    return {
        "operation": "OPTIMIZE",
        "zorder_by": by,
        "files_before": before["files"],
        "files_after": after["files"],
        "bytes_before": before["bytes"],
        "bytes_after": after["bytes"],
        "version": after["version"],
    }


def vacuum(spark: SparkSession, path: str, hours: float, force: bool) -> dict[str, Any]:
    """VACUUM ``path`` keeping ``hours`` of history (guarded, see :func:`check_retention`)."""
    check_retention(hours, force)
    before = detail(spark, path)
    key = "spark.databricks.delta.retentionDurationCheck.enabled"
    if hours < DEFAULT_RETENTION_HOURS:
        spark.conf.set(key, "false")
    try:
        DeltaTable.forPath(spark, path).vacuum(hours)
    finally:
        spark.conf.unset(key)
    return {
        "operation": "VACUUM",
        "retention_hours": hours,
        "version": detail(spark, path)["version"],
        "files": before["files"],
    }


def restore(spark: SparkSession, path: str, version: int | None, timestamp: str | None) -> dict[str, Any]:
    """RESTORE ``path`` to ``version`` or ``timestamp`` (exactly one)."""
    if (version is None) == (timestamp is None):
        raise ValueError("restore needs exactly one of --version or --timestamp")
    table = DeltaTable.forPath(spark, path)
    before = io.last_commit(spark, path)["version"]
    if version is not None:
        table.restoreToVersion(version)
    else:
        table.restoreToTimestamp(str(timestamp))
    return {
        "operation": "RESTORE",
        "restored_to": version if version is not None else timestamp,
        "version_before": before,
        "version": io.last_commit(spark, path)["version"],
    }


def history(spark: SparkSession, path: str, limit: int = 20) -> dict[str, Any]:
    """The latest ``limit`` commits and the current size of ``path``."""
    rows = (
        DeltaTable.forPath(spark, path)
        .history(limit)
        .select("version", "timestamp", "operation", "operationMetrics")
        .collect()
    )
    d = detail(spark, path)
    commits = []
    for r in rows:
        m = r["operationMetrics"] or {}
        commits.append(
            {
                "version": int(r["version"]),
                "timestamp": str(r["timestamp"]),
                "operation": r["operation"],
                "files_added": m.get("numFiles") or m.get("numAddedFiles"),
                "bytes_added": m.get("numOutputBytes") or m.get("numAddedBytes"),
            }
        )
    return {
        "operation": "HISTORY",
        "version": d["version"],
        "files": d["files"],
        "bytes": d["bytes"],
        "commits": commits,
    }


def run(spark: SparkSession, args: argparse.Namespace) -> Report:
    """Apply each command, in order, to every table."""
    report = Report("maintenance")
    for command in args.commands:
        for table in args.tables:
            started = time.monotonic()
            layer, _, name = table.partition("/")
            path = "/".join([args.root.rstrip("/"), "warehouse", layer, name])
            if not io.is_delta(spark, path):
                raise FileNotFoundError(f"no Delta table {table} at {path}")
            if command == "optimize":
                result = optimize(spark, path, args.zorder)
            elif command == "vacuum":
                result = vacuum(spark, path, args.retention_hours, args.force)
            elif command == "restore":
                result = restore(spark, path, args.version, args.timestamp)
            else:
                result = history(spark, path)
            report.table(layer, name, started, rows_read=None, rows_written=0, **result)
    return report


COMMANDS = ("optimize", "vacuum", "restore", "history")


def _commands(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in COMMANDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown command(s) {unknown or value!r}; valid: {', '.join(COMMANDS)}")
    return names


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check arguments; the vacuum guard is checked before Spark starts."""
    p = argparse.ArgumentParser(
        prog="maintenance", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("commands", type=_commands, help=f"Comma-separated, run in order: {', '.join(COMMANDS)}")
    p.add_argument("--root", required=True)
    p.add_argument(
        "--tables",
        required=True,
        type=lambda v: [t.strip() for t in v.split(",") if t.strip()],
        help="Comma-separated layer/name, e.g. silver/events,silver/orders",
    )
    p.add_argument("--zorder", default="user_id,event_type", type=lambda v: [c for c in v.split(",") if c])
    p.add_argument("--retention-hours", type=float, default=DEFAULT_RETENTION_HOURS)
    p.add_argument("--force", action="store_true", help="Allow a VACUUM retention under 168 hours.")
    p.add_argument("--version", type=int)
    p.add_argument("--timestamp")
    args = p.parse_args(argv)
    bad = [t for t in args.tables if t.count("/") != 1]
    if bad:
        p.error(f"tables must be layer/name, got {bad}")
    if "restore" in args.commands and (len(args.tables) != 1 or (args.version is None) == (args.timestamp is None)):
        p.error("restore takes exactly one table and exactly one of --version or --timestamp")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint: exits 64 when the vacuum guard refuses, non-zero on any other failure."""
    args = parse(argv)
    if "vacuum" in args.commands:
        try:
            check_retention(args.retention_hours, args.force)
        except VacuumGuardError as exc:
            print(f"vacuum guard: {exc}", file=sys.stderr, flush=True)
            return GUARD_EXIT
    run_job("lakehouse-maintenance", lambda spark: run(spark, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
