"""Medallion job: bronze, silver and gold in one Spark driver.

Runs the requested layers in order in one session, so a run pays one JVM (or driver pod) start
and one warm-up instead of one per layer. Each layer is exactly the code of its own entrypoint
(spark_jobs/bronze.py, silver.py, gold.py), equally idempotent, so a retry of the whole job
re-applies nothing that already landed.

Usage: spark-submit spark_jobs/medallion.py --root R --start D --end D [--layers bronze,silver,gold]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from spark_jobs import bronze, gold, silver
from spark_jobs.cli import batch_parser, check_batch
from spark_jobs.report import Report
from spark_jobs.session import run_job

LAYERS = {"bronze": bronze.run, "silver": silver.run, "gold": gold.run}


def _layers(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in LAYERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown layer(s) {unknown or value!r}; valid layers: {', '.join(LAYERS)}")
    return [name for name in LAYERS if name in names]


def run(spark: SparkSession, args: argparse.Namespace) -> list[Report]:
    """Run ``args.layers`` in pipeline order; return one report per layer. A contract violation
    in silver stops the run there: gold never sees the batch."""
    reports = []
    for layer in args.layers:
        reports.append(LAYERS[layer](spark, args))
        if reports[-1].violations:
            break
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint: parse arguments, run, print metrics; exceptions exit non-zero."""
    parser = batch_parser("medallion", __doc__ or "")
    parser.add_argument("--layers", type=_layers, default=list(LAYERS), help="Layers to run, in order.")
    args = check_batch(parser, parser.parse_args(argv))
    reports = run_job("lakehouse-medallion", lambda spark: run(spark, args), args)
    if reports[-1].violations:
        print(silver.violation_message(reports[-1]), file=sys.stderr, flush=True)
        return silver.CONTRACT_VIOLATION_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
