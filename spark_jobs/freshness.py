"""Freshness job: every contract's freshness SLA, checked from the silver tables' own data.

Usage: spark-submit spark_jobs/freshness.py --root R [--sources orders,users] [--contracts-dir D]

Silver checks the SLA of the sources a run promotes; this job checks them whether or not
anything arrived, so a source that went silent is noticed (the scheduled ``freshness`` flow).
Per source with ``sla.freshness``: the newest ``sla.freshness_column`` of ``silver/<source>``
against now, as an ``sla.freshness`` metric (a table with no rows, or none at all, is breached).
Nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import SparkSession

from spark_jobs.cli import CONFIG_ERROR_EXIT, _names
from spark_jobs.contract import DEFAULT_CONTRACTS_DIR, ContractError, load_contracts
from spark_jobs.report import Report
from spark_jobs.session import run_job
from spark_jobs.silver import freshness_metric, newest_value


def run(spark: SparkSession, args: argparse.Namespace) -> Report:
    report = Report("freshness")
    for contract in args.contracts.values():
        if contract.sla.freshness_seconds is None or contract.sla.freshness_column is None:
            continue
        started = time.monotonic()
        path = f"{args.root.rstrip('/')}/warehouse/silver/{contract.name}"
        metric = freshness_metric(contract, newest_value(spark, contract, path))
        state = "BREACHED" if metric["failed"] else "ok"
        print(
            f"[freshness] {contract.name}: newest {metric['newest']}, age {metric['age_seconds']}s, "
            f"limit {metric['limit_seconds']:g}s: {state}",
            flush=True,
        )
        report.table("silver", contract.name, started, rows_read=0, rows_written=0, quality=[metric])
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint: check, print one line per source and the metrics; exit 78 on a bad contract."""
    p = argparse.ArgumentParser(prog="freshness", description=__doc__)
    p.add_argument("--root", required=True, help="Lakehouse root (local path or s3a:// URI).")
    p.add_argument("--sources", type=_names, default=None, help="Comma-separated sources (default: all).")
    p.add_argument("--contracts-dir", type=Path, default=DEFAULT_CONTRACTS_DIR, help="Directory of the contracts.")
    args = p.parse_args(argv)
    try:
        contracts = load_contracts(args.contracts_dir)
    except ContractError as exc:
        print(f"freshness: error: {exc}", file=sys.stderr, flush=True)
        return CONFIG_ERROR_EXIT
    unknown = sorted(set(args.sources or []) - set(contracts))
    if unknown:
        p.error(f"unknown source(s) {unknown}; valid sources: {', '.join(contracts)}")
    args.contracts = {n: c for n, c in contracts.items() if not args.sources or n in args.sources}
    run_job("lakehouse-freshness", lambda spark: run(spark, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
