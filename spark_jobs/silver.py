"""Silver job: bronze -> contract-conforming, typed, deduplicated Delta tables (MERGE upserts).

For each source, the bronze batches of the landing dates in range that silver has not applied
yet are checked against the source's data contract (contracts/<source>.yaml):

- per-row rules (required, type, min/max, allowed values, pattern, malformed lines, schema
  drift) compiled to Spark expressions, each with its action: ``warn`` keeps and counts the
  row, ``drop`` leaves it out and counts it, ``quarantine`` writes it to ``quarantine/<source>``
  with the failed rule names, a readable reason, the run id and time, ``fail`` stops the batch;
- dataset rules: exact duplicate versions (uniqueness), row count, freshness SLA;
- every rule's outcome (evaluated, passed, failed) is appended to ``quality/metrics`` (one
  append for all the sources of a run).

Rows that pass are cast to the contract's types, reduced to the latest version per key, and
MERGEd into silver (SCD type 1). A contract with ``history`` also keeps every version in
``silver/<name>_history`` (SCD type 2: ``valid_from``, ``valid_to``, ``is_current``), merged in
the same run and recorded with the same batches. A ``fail`` outcome promotes nothing of that source's batches,
records the metrics, lets the other sources finish, then exits with code 65 naming the rules,
so the gold layer never runs on that data.

Idempotent: each write records the bronze batches it applied in its Delta commit info, so a
rerun finds nothing pending and commits nothing; ``--full-refresh`` rebuilds the range.

Usage: spark-submit spark_jobs/silver.py --root R --start D --end D [--sources ...] [--run-id ID]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs import storage as io
from spark_jobs.cli import parse_batch, table_path
from spark_jobs.contract import Contract
from spark_jobs.report import Report, lineage_output
from spark_jobs.session import for_each_table, run_job
from spark_jobs.transforms import quality
from spark_jobs.transforms.silver import (
    VERSIONS,
    duplicate_copies,
    history_of,
    latest_per_key,
    quarantine_rows,
    typed,
)

CONTRACT_VIOLATION_EXIT = 65  # equals lakehouse.errors.CONTRACT_VIOLATION_EXIT
"""Exit code of a batch stopped by a ``fail`` rule (EX_DATAERR): not worth a retry."""


class ContractViolation(Exception):
    """A ``fail`` rule stopped the promotion of one or more sources."""


def _uniqueness_action(contract: Contract) -> str:
    for q in contract.quality:
        if q.type == "uniqueness" and contract.primary_key in q.columns:
            return q.resolved_action
    return "drop"


def _metric(rule: str, action: str, evaluated: int, failed: int, **extra: Any) -> dict[str, Any]:
    return {
        "rule": rule,
        "action": action,
        "evaluated": evaluated,
        "passed": evaluated - failed,
        "failed": failed,
        **extra,
    }


class _Outcomes:
    """The rule outcomes of a silver run's sources, collected as each source finishes and then
    appended to quality/metrics in one commit for the whole layer (one append instead of one per
    source, which on a small batch cost more than the rows they wrote)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: list[tuple[str, list[str], list[dict[str, Any]], dict[str, Any]]] = []

    def add(self, table: str, batches: Sequence[str], metrics: list[dict[str, Any]], entry: dict[str, Any]) -> None:
        """``metrics`` of ``table`` over ``batches``; ``entry`` is its report entry, whose outputs
        get the quality/metrics version once written."""
        with self._lock:
            self._found.append((table, list(batches), metrics, entry))

    def write(self, spark: SparkSession, args: argparse.Namespace) -> None:
        """Append every collected outcome (nothing when there are none); idempotent per run and
        set of (table, batches): a rerun that finds the same work pending appends nothing."""
        if not self._found:
            return
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        found = sorted(self._found, key=lambda f: f[0])
        rows = [
            (args.run_id, table, m["rule"], m["action"], m["evaluated"], m["passed"], m["failed"], batches, now)
            for table, batches, metrics, _ in found
            for m in metrics
        ]
        df = spark.createDataFrame(rows, quality.METRICS_SCHEMA)
        parts = [args.run_id] + [f"{table}:{','.join(batches)}" for table, batches, _, _ in found]
        key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
        path = table_path(args.root, "quality", "metrics")
        io.append(df, path, txn_app_id=f"lakehouse-quality-{key}", txn_version=0)
        output = lineage_output(spark, "quality/metrics", path, io.last_commit(spark, path)["version"], committed=True)
        for _, _, _, entry in found:
            entry.setdefault("outputs", []).append(output)


def _merged(spark: SparkSession, path: str) -> tuple[int, int, int | None]:
    """(rows inserted, rows updated, version) of the table's last commit (a MERGE or the append
    that created it)."""
    commit = io.last_commit(spark, path)
    m = commit["metrics"]
    return (
        int(m.get("numTargetRowsInserted", m.get("numOutputRows", 0))),
        int(m.get("numTargetRowsUpdated", 0)),
        commit["version"],
    )


def promote(
    spark: SparkSession, args: argparse.Namespace, contract: Contract, report: Report, outcomes: _Outcomes
) -> list[str]:
    """Promote one source's pending bronze batches; return the ``fail`` rules that stopped it.
    Its rule outcomes go to ``outcomes`` (written for the whole layer by :func:`run`)."""
    started = time.monotonic()
    name = contract.name
    bronze_path = table_path(args.root, "bronze", name)
    silver_path = table_path(args.root, "silver", name)
    quarantine_path = table_path(args.root, "quarantine", name)
    in_range = io.sql_in("_landing_date", [d.isoformat() for d in args.dates])
    if not io.is_delta(spark, bronze_path):
        report.table("silver", name, started, rows_read=0, rows_written=0, note="no bronze table")
        return []
    history_path = table_path(args.root, "silver", contract.history_table) if contract.history_table else None
    bronze = io.read_delta(spark, bronze_path, in_range)
    batches = io.distinct_values(bronze, "_batch_id")
    applied, silver_version, silver_latest = io.applied_state(spark, silver_path)
    history_version = None
    if history_path:  # a batch is done once both tables have it (merging it again changes nothing)
        history_applied, history_version, _ = io.applied_state(spark, history_path)
        applied &= history_applied
    pending = batches if args.full_refresh else sorted(set(batches) - applied)
    if not pending:
        report.table("silver", name, started, rows_read=0, rows_written=0, batches=0, version=silver_version)
        return []
    rows = bronze.where(io.sql_in("_batch_id", pending))

    # schema drift: undeclared columns (new or renamed) and declared ones that never appear
    undeclared = quality.undeclared_columns(rows, contract)
    allow_new = contract.evolution.new_columns == "allow"
    drifted = sorted({b for bs, _ in undeclared.values() for b in bs}) if not allow_new else []
    rules = quality.row_rules(contract, drifted, list(undeclared)) + quality.shape_rules(contract)

    evaluated = quality.evaluate(rows, rules).persist(StorageLevel.MEMORY_AND_DISK)
    cached = [evaluated]
    try:
        counts = quality.profile(evaluated, rules, contract)
        total = counts["_rows"]
        by_action: dict[str | None, int] = {a: counts[f"action:{a}"] for a in ("warn", "drop", "quarantine", "fail")}
        by_action[None] = total - sum(by_action.values())
        missing = {c: counts[f"missing:{c}"] for c in contract.columns if counts[f"missing:{c}"]}
        conforming = duplicate_copies(
            evaluated.where(F.col("_action").isNull() | (F.col("_action") == "warn")), contract
        )
        dup_action = _uniqueness_action(contract)
        extra = list(undeclared) if allow_new else []
        versions = typed(conforming.where(~F.col("_dup")), contract, extra)
        good: DataFrame | None = None
        batch_newest = None
        if any(r.action == "fail" and counts[r.name] for r in rules):
            # the batch stops whatever else: its duplicates are counted, nothing is merged
            dups = conforming.where("_dup").count()
        else:
            # The rows to merge: read by the SLA, the MERGE's partition list and its two passes.
            # One pass over them gives the batch's newest value and how many versions they keep
            # (one per key and order_by), so the duplicate copies need no pass of their own.
            good = latest_per_key(versions, contract, count_versions=True).persist(StorageLevel.MEMORY_AND_DISK)
            cached.append(good)
            kept, batch_newest = _kept_and_newest(good, contract)
            dups = by_action.get(None, 0) + by_action.get("warn", 0) - kept
            good = good.drop(VERSIONS)
        good_rows = by_action.get(None, 0) + by_action.get("warn", 0) - dups

        metrics = [_metric(quality.MALFORMED, "quarantine", total, counts[quality.MALFORMED])]
        metrics += [_metric(r.name, r.action, total, counts[r.name]) for r in rules]
        metrics.append(_metric(f"{contract.primary_key}.unique", dup_action, total, dups))
        for col, (_, carrying) in undeclared.items():
            metrics.append(_metric(f"schema.new_column:{col}", "warn" if allow_new else "quarantine", total, carrying))
        metrics += [_metric(f"schema.missing_column:{c}", "warn", total, n) for c, n in missing.items()]
        for q in contract.quality:
            if q.type == "row_count":
                bad = (q.min is not None and good_rows < q.min) or (q.max is not None and good_rows > q.max)
                metrics.append(_metric("row_count", q.resolved_action, 1, int(bad), rows=good_rows))

        failures = [m["rule"] for m in metrics if m["action"] == "fail" and m["failed"]]  # uniqueness too
        quarantined = by_action.get("quarantine", 0) + (dups if dup_action == "quarantine" else 0)
        dropped = by_action.get("drop", 0) + (dups if dup_action in ("drop", "warn") else 0)
        inserted = updated = 0
        q_written = False
        history: dict[str, Any] = {}
        # the versions the history reads above found (nothing of this source was written since)
        version = before = silver_version
        h_version = h_before = history_version
        if not failures:
            to_quarantine = evaluated.where(F.col("_action") == "quarantine")
            if dup_action == "quarantine":
                dup_rows = (
                    conforming.where("_dup")
                    .withColumn("_failed_rules", F.array(F.lit(f"{contract.primary_key}.unique")))
                    .withColumn(
                        "_reason",
                        F.format_string(
                            "duplicate: %s=%s with %s=%s was already kept",
                            F.lit(contract.primary_key),
                            F.col(contract.primary_key),
                            F.lit(contract.order_by),
                            F.col(contract.order_by),
                        ),
                    )
                )
                to_quarantine = to_quarantine.unionByName(dup_rows.drop("_dup"))
            # the SLA as silver would stand after this batch, decided before anything commits
            # (so that sla.action: fail stops the batch rather than reporting it afterwards)
            fresh = _freshness(spark, contract, silver_path, batch_newest, recorded_newest(contract, silver_latest))
            metrics += fresh
            failures += [m["rule"] for m in fresh if m["action"] == "fail" and m["failed"]]
        if not failures:
            assert good is not None  # computed above unless a fail rule stopped the batch
            # Silver's newest value once this commit lands, for the next run to read from here.
            # Exact when the SLA's column is the one a MERGE orders versions by (a row is only
            # replaced by a newer one) and nothing is deleted; otherwise the next run scans.
            exact = contract.sla.freshness_column == contract.order_by and not args.full_refresh
            newest = (
                {"newest": fresh[0]["newest"], "newest_column": contract.sla.freshness_column}
                if exact and fresh and fresh[0]["newest"] != "None"
                else {}
            )
            q_written = quarantined > 0 or _quarantine_holds(spark, quarantine_path, pending, args.full_refresh)
            with io.commit_metadata(spark, pending, run_id=args.run_id, **newest):
                if args.full_refresh:
                    io.delete_where(spark, silver_path, in_range)
                replaced = in_range if args.full_refresh else io.sql_in("_batch_id", pending)
                if q_written:
                    io.replace_where(quarantine_rows(to_quarantine, contract, args.run_id), quarantine_path, replaced)
                io.merge_latest(
                    spark,
                    good,
                    silver_path,
                    key=contract.primary_key,
                    order_by=contract.order_by,
                    partition_by=contract.partition.column if contract.partition else None,
                    evolve_schema=bool(extra),
                )
                if history_path:
                    existing = io.read_delta(spark, history_path) if io.is_delta(spark, history_path) else None
                    io.merge_history(
                        spark, history_of(versions, existing, contract), history_path, key=contract.primary_key
                    )
            if history_path:
                h_inserted, h_updated, h_version = _merged(spark, history_path)
                history = {"history_inserted": h_inserted, "history_updated": h_updated, "history_version": h_version}
            inserted, updated, version = _merged(spark, silver_path)
    finally:
        for df in cached:
            df.unpersist()
    q_version = io.last_commit(spark, quarantine_path)["version"] if q_written else None
    outputs = [lineage_output(spark, f"silver/{name}", silver_path, version, committed=version != before)]
    if history_path:
        outputs.append(
            lineage_output(
                spark, f"silver/{contract.history_table}", history_path, h_version, committed=h_version != h_before
            )
        )
    if q_written:
        outputs.append(lineage_output(spark, f"quarantine/{name}", quarantine_path, q_version, committed=True))
    entry = report.table(
        "silver",
        name,
        started,
        rows_read=total,
        good=good_rows if not failures else 0,
        quarantined=quarantined,
        dropped=dropped,
        warned=by_action.get("warn", 0),
        blocked=total if failures else 0,
        rows_written=inserted + updated,
        inserted=inserted,
        updated=updated,
        batches=len(pending),
        version=version,
        failed_rules=failures,
        undeclared_columns=sorted(undeclared),
        missing_columns=sorted(missing),
        quality=metrics,
        **history,
        inputs=[{"table": f"bronze/{name}", "path": bronze_path}],
        outputs=outputs,
    )
    outcomes.add(name, pending, metrics, entry)
    return failures


def _quarantine_holds(spark: SparkSession, path: str, pending: Sequence[str], full_refresh: bool) -> bool:
    """Whether quarantine may hold rows of the ``pending`` batches that a write of them must
    replace, when the batches themselves quarantine nothing: on a full refresh, or when an
    earlier attempt wrote their quarantine rows but stopped before silver's commit (the
    quarantine commit records its batches as silver's does). Otherwise the write is skipped: it
    would replace nothing with nothing, and cost a Delta commit per source and run."""
    if not io.is_delta(spark, path):
        return False
    return full_refresh or bool(set(pending) & io.applied_state(spark, path).batches)


def _kept_and_newest(good: DataFrame, contract: Contract) -> tuple[int, dt.datetime | None]:
    """From one pass over the rows to merge (:func:`latest_per_key` with ``count_versions``):
    how many versions of their keys the batch holds, and their newest ``sla.freshness_column``
    value (None without an SLA column or a value)."""
    col = contract.sla.freshness_column
    aggs = [F.sum(VERSIONS)] + ([F.max(col)] if col else [])
    row = good.agg(*aggs).first()
    assert row is not None  # a global aggregate has one row
    return int(row[0] or 0), row[1] if col else None


def newest_value(
    spark: SparkSession,
    contract: Contract,
    silver_path: str,
    batch_newest: dt.datetime | None = None,
    recorded: dt.datetime | None = None,
) -> dt.datetime | None:
    """The newest ``sla.freshness_column`` value in silver, or ``batch_newest`` (that of the rows
    about to be merged) when newer; None when there is no row at all. ``recorded``: silver's
    newest value as its latest commit recorded it (see :func:`recorded_newest`), read instead of
    scanning silver."""
    col = contract.sla.freshness_column
    assert col is not None
    found = []
    if recorded is not None:
        found.append(recorded)
    elif io.is_delta(spark, silver_path):
        found.append(io.read_delta(spark, silver_path).agg(F.max(col)).first()[0])  # type: ignore[index]
    if batch_newest is not None:
        found.append(batch_newest)
    values = [v for v in found if v is not None]
    return max(values) if values else None


def recorded_newest(contract: Contract, latest: dict[str, Any]) -> dt.datetime | None:
    """Silver's newest ``sla.freshness_column`` value as recorded by the silver run that wrote
    the table's current state (``latest``: its latest commit's metadata), or None when that
    commit is not such a run's (a RESTORE, an OPTIMIZE, an older run): silver is scanned then.

    A MERGE only adds rows or replaces them with newer ones (by ``order_by``), so when that is the
    SLA's column the newest value after it is the newest of the value before it and the batch's:
    a run needs no scan of the whole table for it (silver records it only then)."""
    value = latest.get("newest")
    if not contract.sla.freshness_column or latest.get("newest_column") != contract.sla.freshness_column:
        return None
    try:
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def freshness_metric(contract: Contract, newest: dt.datetime | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """The ``sla.freshness`` metric: ``newest`` versus now (no row at all is a breach)."""
    limit = contract.sla.freshness_seconds
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    age = (now - newest).total_seconds() if newest else None
    breached = age is None or (limit is not None and age > limit)
    return _metric(
        "sla.freshness",
        contract.sla.action,
        1,
        int(breached),
        newest=str(newest),
        age_seconds=round(age, 1) if age is not None else None,
        limit_seconds=limit,
    )


def _freshness(
    spark: SparkSession,
    contract: Contract,
    silver_path: str,
    batch_newest: dt.datetime | None,
    recorded: dt.datetime | None,
) -> list[dict[str, Any]]:
    """The freshness SLA as silver will stand once a batch whose newest value is
    ``batch_newest`` is merged ([] without an SLA)."""
    if contract.sla.freshness_seconds is None or contract.sla.freshness_column is None:
        return []
    return [freshness_metric(contract, newest_value(spark, contract, silver_path, batch_newest, recorded))]


def run(spark: SparkSession, args: argparse.Namespace) -> Report:
    """Promote every source; raise :class:`ContractViolation` after all of them if any failed."""
    report = Report("silver")
    contracts = list(args.contracts.values())
    outcomes = _Outcomes()
    try:
        found = for_each_table(
            spark, contracts, lambda session, c: promote(session, args, c, report, outcomes), args.parallelism
        )
    except BaseException:
        # the outcomes of the sources that finished are kept; the crash is the error to report
        with contextlib.suppress(Exception):
            outcomes.write(spark, args)
        raise
    outcomes.write(spark, args)
    report.order(list(args.contracts))
    report.violations = {c.name: rules for c, rules in zip(contracts, found, strict=True) if rules}
    return report


def violation_message(report: Report) -> str:
    """One line naming every source and rule that stopped a promotion."""
    parts = [f"{t}: {', '.join(rules)}" for t, rules in report.violations.items()]
    return (
        "contract violation (action fail), nothing of these batches reached silver and gold "
        "did not run: " + "; ".join(parts)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint: parse arguments, run, print metrics; exit 65 on a contract violation."""
    args = parse_batch("silver", __doc__ or "", argv)
    (report,) = run_job("lakehouse-silver", lambda spark: run(spark, args), args)
    if report.violations:
        print(violation_message(report), file=sys.stderr, flush=True)
        return CONTRACT_VIOLATION_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
