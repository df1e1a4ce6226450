"""Bronze job: landing JSON lines -> bronze Delta tables (append-only, ingestion metadata).

Idempotent: only landing files not yet in bronze are read (per landing date and file name), and
the append is an idempotent Delta write (txnAppId = the batch's content hash), so a retried or
concurrent run of the same batch commits nothing. ``--full-refresh`` re-reads the range and
replaces those landing dates.

Usage: spark-submit spark_jobs/bronze.py --root R --start D --end D [--sources orders,users]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import sys
import time
from collections.abc import Sequence

from pyspark.sql import SparkSession

from spark_jobs import storage as io
from spark_jobs.cli import landing_dir, landing_root, parse_batch, table_path
from spark_jobs.report import Report, lineage_output
from spark_jobs.session import for_each_table, run_job
from spark_jobs.transforms.bronze import parse_landing

PARTITION = "_landing_date"


def batch_id(source_name: str, files: Sequence[tuple[str, io.LandingFile]]) -> str:
    """Content hash of a landing batch: source, dates, file names and sizes."""
    h = hashlib.sha256(source_name.encode())
    for date, f in sorted(files, key=lambda x: (x[0], x[1].name)):
        h.update(f"|{date}/{f.name}:{f.size}".encode())
    return h.hexdigest()[:16]


def ingest(spark: SparkSession, args: argparse.Namespace, name: str, report: Report) -> None:
    """Ingest the landing dates ``args.dates`` of the source ``name`` into its bronze table."""
    started = time.monotonic()
    contract = args.contracts[name]
    path = table_path(args.root, "bronze", name)
    landed, ignored = [], []
    for d in args.dates:
        files, others = io.list_landing(spark, landing_dir(args.root, name, d))
        landed += [(d.isoformat(), f) for f in files]
        ignored += [f"date={d.isoformat()}/{n}" for n in others]
    if ignored:
        print(
            f"[bronze] {name}: not read, not JSON lines ({', '.join(io.LANDING_SUFFIXES)}): " + ", ".join(ignored),
            flush=True,
        )
    if args.full_refresh or not io.is_delta(spark, path):
        seen: set[tuple[str, str]] = set()
    else:
        seen = {
            (r[0].isoformat(), r[1])
            for r in io.read_delta(spark, path, io.sql_in(PARTITION, [d for d, _ in landed]))
            .select(PARTITION, "_source_file")
            .distinct()
            .collect()
        }
    new = [(d, f) for d, f in landed if (d, f.name) not in seen]
    previous = io.last_commit(spark, path)
    before = previous["version"]
    if new:
        bid = batch_id(name, new)
        rows = parse_landing(
            io.read_lines(spark, [f for _, f in new]),
            contract,
            batch_id=bid,
            ingested_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
        )
        if args.full_refresh:
            dates = [d.isoformat() for d in args.dates]
            io.replace_where(rows, path, io.sql_in(PARTITION, dates), partition_by=[PARTITION])
        else:
            io.append(
                rows,
                path,
                partition_by=[PARTITION],
                merge_schema=True,
                txn_app_id=f"lakehouse-bronze-{name}-{bid}",
                txn_version=0,
            )
    commit = io.last_commit(spark, path) if new else previous  # nothing new: nothing committed
    written = int(commit["metrics"].get("numOutputRows", 0)) if commit["version"] != before else 0
    # Read back only the partitions just written (the batch id alone would scan the table).
    malformed = (
        io.read_delta(
            spark, path, f"{io.sql_in(PARTITION, {d for d, _ in new})} AND _batch_id = '{bid}' AND _malformed"
        ).count()
        if new and written
        else 0
    )
    report.table(
        "bronze",
        name,
        started,
        files_landed=len(landed),
        files_new=len(new),
        files_ignored=ignored,
        rows_read=written,
        rows_written=written,
        malformed=malformed,
        version=commit["version"],
        inputs=[{"table": f"landing/{name}", "path": landing_root(args.root, name)}],
        outputs=[
            lineage_output(spark, f"bronze/{name}", path, commit["version"], committed=commit["version"] != before)
        ],
    )


def run(spark: SparkSession, args: argparse.Namespace) -> Report:
    """Ingest the landing dates ``args.dates`` of ``args.sources`` into bronze."""
    report = Report("bronze")
    for_each_table(
        spark, list(args.contracts), lambda session, name: ingest(session, args, name, report), args.parallelism
    )
    report.order(list(args.contracts))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint: parse arguments, run, print metrics; exceptions exit non-zero."""
    args = parse_batch("bronze", __doc__ or "", argv)
    run_job("lakehouse-bronze", lambda spark: run(spark, args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
