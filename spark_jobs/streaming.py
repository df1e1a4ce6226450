"""Streaming job: Kafka events -> bronze Delta (+ dead letters), bronze -> 5-minute gold windows.

Two streaming queries, each with its own checkpoint under ``--checkpoint``:

``bronze`` (``<checkpoint>/bronze``)
    Kafka source -> :func:`~spark_jobs.transforms.streaming.parse_kafka_events` (explicit schema
    + the events data contract's per-row rules) -> one ``foreachBatch`` that appends the valid
    events to the bronze table, the dead letters to the dead-letter table and, with
    ``--metrics``, one row per contract rule to ``quality/metrics``.

``gold`` (``<checkpoint>/gold``)
    Bronze Delta table as a streaming source -> 5-minute windows per event_type with a 10-minute
    watermark -> append-mode Delta sink (each window written once, when the watermark passed it).

Exactly-once, and why one ``foreachBatch`` with idempotent writes: Spark writes a micro-batch's
offset range to ``offsets/<batch>`` before running it and ``commits/<batch>`` after; a restart
re-runs an uncommitted batch with exactly the same offsets and batch id. Both Delta appends of a
batch carry ``txnAppId`` = the query id (persisted in the checkpoint, so stable across restarts
and new for a new checkpoint) and ``txnVersion`` = the batch id; Delta commits each at most once
and skips a replayed one (the metrics rows of a batch too). A crash before, between or after the
appends therefore ends with each record in exactly one table exactly once. One query reads and
parses each record once and keeps one set of offsets for both tables; two sinks would read Kafka
twice and could drift apart. The gold query reads bronze through the Delta source and writes
through the Delta sink, which are exactly-once with their checkpoint by themselves.

Triggers: ``available-now`` processes everything available (in micro-batches of at most
``--max-offsets-per-trigger`` records), then the gold query does the same, then the job exits.
``processing-time`` runs both queries every ``--interval`` until ``--max-seconds`` (then stops
them after their current batch) or forever when no limit is given (a cluster's long-running app).

Usage: spark-submit spark_jobs/streaming.py --bootstrap-servers H:P --topic events
    --bronze B --dead-letter Q --gold G --checkpoint C [--trigger available-now]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.util import inheritable_thread_target

from spark_jobs import storage
from spark_jobs import stream_io as sio
from spark_jobs.cli import CONFIG_ERROR_EXIT
from spark_jobs.contract import DEFAULT_CONTRACTS_DIR, Contract, ContractError, load_contract
from spark_jobs.report import Report, lineage_output
from spark_jobs.session import run_job
from spark_jobs.transforms import quality
from spark_jobs.transforms import streaming as tx

_QUERY_ID_WAIT_S = 120.0
_STOP_WAIT_S = 120.0


def _kv(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, val


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the job's arguments."""
    p = argparse.ArgumentParser(
        prog="streaming", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bootstrap-servers", required=True, help="Kafka bootstrap servers.")
    p.add_argument("--topic", required=True, help="Topic of the JSON events.")
    p.add_argument("--bronze", required=True, help="Path of the bronze table (valid events).")
    p.add_argument("--dead-letter", required=True, help="Path of the dead-letter table.")
    p.add_argument("--gold", required=True, help="Path of the windowed aggregate table.")
    p.add_argument(
        "--late",
        default=None,
        help="Path of the late-events table (closed windows gold missed events of); default: <gold>_late.",
    )
    p.add_argument(
        "--late-check-seconds",
        type=float,
        default=300.0,
        help="processing-time: how often the late events are reconciled.",
    )
    p.add_argument("--checkpoint", required=True, help="Checkpoint root of this stream.")
    p.add_argument(
        "--contracts-dir",
        type=Path,
        default=DEFAULT_CONTRACTS_DIR,
        help="Directory of the data contracts; the events contract (--contract) applies.",
    )
    p.add_argument(
        "--contract", default="events", help="Name of the contract (<contracts-dir>/<name>.yaml) the events must meet."
    )
    p.add_argument(
        "--no-contract", action="store_true", help="Check the structure only (explicit schema), no contract rules."
    )
    p.add_argument(
        "--metrics", default=None, help="Path of the quality/metrics table; one row per rule and micro-batch."
    )
    p.add_argument("--query-name", default="events_stream", help="Base name of the queries.")
    p.add_argument("--trigger", choices=sio.TRIGGERS, default="available-now")
    p.add_argument("--interval", default="10 seconds", help="processingTime trigger interval.")
    p.add_argument(
        "--max-offsets-per-trigger", type=int, default=0, help="Records per micro-batch at most (0: no bound)."
    )
    p.add_argument(
        "--min-partitions",
        type=int,
        default=0,
        help="Spark tasks per micro-batch at least (Kafka's offset ranges are split); 0: Spark's default parallelism.",
    )
    p.add_argument("--starting-offsets", default="earliest", help="Where a new checkpoint starts: earliest or latest.")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=0.0,
        help="processing-time: stop gracefully after this long (0: run until killed).",
    )
    p.add_argument("--window", default="5 minutes", help="Window of the aggregate.")
    p.add_argument("--watermark", default="10 minutes", help="Watermark delay on event_time.")
    p.add_argument("--no-gold", action="store_true", help="Run only the bronze query.")
    p.add_argument(
        "--kafka-security-protocol",
        default="PLAINTEXT",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        help="How the Kafka source talks to the brokers.",
    )
    p.add_argument(
        "--kafka-sasl-mechanism",
        default="SCRAM-SHA-512",
        choices=tuple(sio.LOGIN_MODULES),
        help="SASL mechanism of the SASL_* protocols.",
    )
    p.add_argument("--kafka-sasl-username", default=None, help="SASL user name.")
    p.add_argument(
        "--kafka-ssl-ca-location", default=None, help="PEM file of the CA(s) that signed the brokers' certificates."
    )
    p.add_argument(
        "--kafka-option",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Extra Kafka source option (repeatable), e.g. kafka.ssl.endpoint.identification.algorithm=.",
    )
    args = p.parse_args(argv)
    args.late = args.late or f"{args.gold.rstrip('/')}_late"
    if args.max_offsets_per_trigger < 0 or args.max_seconds < 0 or args.min_partitions < 0:
        p.error("--max-offsets-per-trigger, --min-partitions and --max-seconds must not be negative")
    return args


PASSWORD_ENV = "LAKEHOUSE_KAFKA__SASL_PASSWORD"
"""Where the driver reads the SASL password from."""

_KAFKA_METRICS_NPE = 'because the return value of "scala.Option.get()" is null'
MAX_RECOVERY_RESTARTS = 3


def is_kafka_metrics_npe(exc: BaseException) -> bool:
    """True for the Kafka source's progress-metrics NullPointerException of Spark 4.1.1.

    After a restart, Spark re-runs an interrupted micro-batch from its offsets log without asking
    the Kafka source for the latest offsets; reporting that batch's progress then fails in
    ``KafkaMicroBatchStream.metrics`` (SPARK-55271, fixed after 4.1.1). The batch itself ran and
    was committed before the failure, so restarting the query in place simply continues.
    """
    return _KAFKA_METRICS_NPE in str(exc)


class BronzeBatchWriter:
    """The ``foreachBatch`` function of the bronze query (see the module docstring).

    The query id is handed over by :meth:`set_query_id` right after the query started; a batch
    waits for it, so every write of the query carries it as its ``txnAppId``.
    """

    def __init__(
        self,
        bronze: str,
        dead_letter: str,
        contract: Contract | None = None,
        metrics: str | None = None,
        table: str = "events_stream",
    ) -> None:
        self.bronze = bronze
        self.dead_letter = dead_letter
        self.contract = contract
        self.metrics = metrics
        self.table = table
        self.rule_actions = _rule_actions(contract)
        self._query_id: str | None = None
        self._ready = threading.Event()
        self._expect_valid = True  # see __call__: bronze is appended while the batch is counted
        self.batches = 0
        self.records = 0
        self.valid = 0
        self.invalid = 0
        self.seconds = 0.0
        self.failed: dict[str, int] = dict.fromkeys(self.rule_actions, 0)
        self.by_action: dict[str, int] = {}

    def set_query_id(self, query_id: str) -> None:
        """Record the id of the started query (the idempotency key of its writes)."""
        self._query_id = query_id
        self._ready.set()

    def app_id(self) -> str:
        """The ``txnAppId`` of this query's writes."""
        if not self._ready.wait(_QUERY_ID_WAIT_S) or self._query_id is None:
            raise RuntimeError("the bronze query id was not set: cannot write idempotently")
        return f"lakehouse-stream-{self._query_id}"

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        app_id = self.app_id()
        ingested_at = F.lit(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).cast("timestamp")
        # The batch is parsed once and kept in memory for the count and the appends. Only a
        # dead letter keeps its raw value, so the cache drops it from the valid records.
        parsed = (
            tx.parse_kafka_events(batch, self.contract)
            .withColumn("value", F.when(F.col("error").isNotNull(), F.col("value")))
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        counts: dict[str, int] = {}
        early = self._expect_valid

        def bronze() -> None:
            storage.append(
                tx.valid_events(parsed, batch_id=batch_id, ingested_at=ingested_at),
                self.bronze,
                txn_app_id=app_id,
                txn_version=batch_id,
            )

        def count_then_rest() -> None:
            counts.update(self._count(parsed))
            rest: list[Callable[[], None]] = []
            if counts["valid"] and not early:
                rest.append(bronze)
            if counts["invalid"]:
                rest.append(
                    lambda: storage.append(
                        tx.dead_letters(parsed, batch_id=batch_id, ingested_at=ingested_at),
                        self.dead_letter,
                        txn_app_id=app_id,
                        txn_version=batch_id,
                    )
                )
            if self.metrics and counts["valid"] + counts["invalid"]:
                rest.append(
                    lambda: self._write_metrics(
                        batch.sparkSession,
                        app_id,
                        batch_id,
                        counts["valid"] + counts["invalid"],
                        {r: counts[f"rule:{r}"] for r in self.rule_actions},
                    )
                )
            run_side_by_side(batch.sparkSession, rest)

        try:
            # The batch's appends are independent: each is committed or skipped on its own (see
            # the module docstring), so they run side by side and the batch pays a commit's
            # fixed latency about once. The dead letters and the metrics need the count; bronze
            # is appended while the batch is counted (both read the one cached parse: whichever
            # job reaches a partition first computes it), so no core waits for the count's last
            # task. After a batch without valid records bronze waits for the count instead: an
            # append of nothing would still commit an empty file.
            run_side_by_side(batch.sparkSession, [count_then_rest, bronze] if early else [count_then_rest])
        finally:
            parsed.unpersist()
        self._expect_valid = counts["valid"] > 0
        took = time.monotonic() - started
        valid, invalid = counts["valid"], counts["invalid"]
        failed = {r: counts[f"rule:{r}"] for r in self.rule_actions}
        self.batches += 1
        self.records += valid + invalid
        self.valid += valid
        self.invalid += invalid
        self.seconds += took
        for r, n in failed.items():
            self.failed[r] += n
        for key, n in counts.items():
            if key.startswith("action:") and n:
                self.by_action[key[7:]] = self.by_action.get(key[7:], 0) + int(n)
        rate = (valid + invalid) / took if took > 0 else 0.0
        print(
            f"[streaming] batch {batch_id}: {valid + invalid} records, {valid} valid, "
            f"{invalid} dead letters in {took:.2f}s ({rate:.0f} records/s)",
            flush=True,
        )

    def _count(self, parsed: DataFrame) -> dict[str, int]:
        """One pass over the parsed batch: valid and invalid records, records per broken rule
        (``rule:<name>``) and per action (``action:<action>``)."""
        broke = F.size("rules") > 0  # false for the usual record: the rule tests are skipped
        row = parsed.agg(
            F.count_if(F.col("error").isNull()).alias("valid"),
            F.count_if(F.col("error").isNotNull()).alias("invalid"),
            *[F.count_if(broke & F.array_contains("rules", r)).alias(f"rule:{r}") for r in self.rule_actions],
            *[F.count_if(F.col("action") == a).alias(f"action:{a}") for a in ("warn", *tx.DEAD_ACTIONS)],
        ).first()
        return {k: int(v or 0) for k, v in (row.asDict() if row is not None else {}).items()}

    def _write_metrics(
        self,
        spark: SparkSession,
        app_id: str,
        batch_id: int,
        evaluated: int,
        failed: dict[str, int],
    ) -> None:
        """One ``quality/metrics`` row per rule for this micro-batch (exactly once, as the data)."""
        assert self.metrics is not None
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        rows = [
            (app_id, self.table, rule, self.rule_actions[rule], evaluated, evaluated - n, n, [str(batch_id)], now)
            for rule, n in failed.items()
        ]
        df = spark.createDataFrame(rows, quality.METRICS_SCHEMA)
        storage.append(df, self.metrics, txn_app_id=f"{app_id}-metrics", txn_version=batch_id)

    def quality(self) -> list[dict[str, Any]]:
        """Per rule over this run: action, evaluated, passed, failed (the flow's artifact rows)."""
        return [
            {
                "rule": r,
                "action": a,
                "evaluated": self.records,
                "passed": self.records - self.failed[r],
                "failed": self.failed[r],
            }
            for r, a in self.rule_actions.items()
        ]


def run_side_by_side(spark: SparkSession, tasks: Sequence[Callable[[], None]]) -> None:
    """Run ``tasks`` at once on threads that inherit the caller's Spark job properties and
    ``spark``'s job tags (so a stopping query still cancels their jobs); wait for all, then raise
    the first failure."""
    if len(tasks) <= 1:
        for task in tasks:
            task()
        return
    inherit = inheritable_thread_target(spark)
    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="stream-write") as pool:
        futures = [pool.submit(inherit(task)) for task in tasks]
        wait(futures)
    for f in futures:
        f.result()


def _rule_actions(contract: Contract | None) -> dict[str, str]:
    """Rule name -> action of every row rule the stream evaluates (structural ones included)."""
    out = {quality.MALFORMED: "quarantine"}
    out.update({f"{f}.required": "quarantine" for f in tx.REQUIRED_FIELDS})
    out.update({f"{n}.type": "quarantine" for n, kind in tx.EVENT_FIELDS if kind != "string"})
    if contract is not None:
        out.update({r.name: r.action for r in tx.contract_rules(contract)})
    return out


def start_bronze(spark: SparkSession, args: argparse.Namespace, writer: BronzeBatchWriter) -> StreamingQuery:
    """Start the Kafka -> bronze/dead-letter query."""
    source = sio.read_kafka(
        spark,
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        starting_offsets=args.starting_offsets,
        max_offsets_per_trigger=args.max_offsets_per_trigger or None,
        min_partitions=args.min_partitions or spark.sparkContext.defaultParallelism,
        options={**args.kafka_security, **dict(args.kafka_option)},
    )
    stream = (
        source.writeStream.queryName(f"{args.query_name}_bronze")
        .option("checkpointLocation", f"{args.checkpoint.rstrip('/')}/bronze")
        .foreachBatch(writer)
    )
    query = sio.with_trigger(stream, args.trigger, args.interval).start()
    writer.set_query_id(str(query.id))
    return query


def start_gold(spark: SparkSession, args: argparse.Namespace) -> StreamingQuery:
    """Start the bronze -> windowed gold query (append mode, watermark)."""
    windows = tx.windowed_counts(
        sio.read_delta_stream(spark, args.bronze).select("event_time", "event_type", "amount"),
        window=args.window,
        watermark=args.watermark,
    )
    stream = (
        windows.writeStream.queryName(f"{args.query_name}_gold")
        .format("delta")
        .outputMode("append")
        .option("checkpointLocation", f"{args.checkpoint.rstrip('/')}/gold")
    )
    return sio.with_trigger(stream, args.trigger, args.interval).start(args.gold)


def gold_watermark(query: StreamingQuery) -> dt.datetime | None:
    """The watermark of the gold query's last micro-batch (None before it made progress)."""
    progress: dict[str, Any] = query.lastProgress or {}
    value = (progress.get("eventTime") or {}).get("watermark")
    if not value:
        return None
    at = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return None if at.timestamp() <= 0 else at.astimezone(dt.timezone.utc).replace(tzinfo=None)


def reconcile_late(spark: SparkSession, args: argparse.Namespace, watermark: dt.datetime) -> tuple[int, int]:
    """Rewrite the late-events table for ``watermark``: per closed window and event type, the
    bronze events gold did not count. Returns (late events, windows missed)."""
    bronze = spark.read.format("delta").load(args.bronze)
    gold = spark.read.format("delta").load(args.gold)
    late = tx.missed_windows(bronze, gold, watermark, window=args.window).cache()
    try:
        late.write.format("delta").mode("overwrite").save(args.late)
        total = late.agg(F.sum("late_events")).first()[0] or 0  # type: ignore[index]
        windows = late.count()
    finally:
        late.unpersist()
    if total:
        print(
            f"[streaming] {total} late event(s) in {windows} closed window(s) gold did not count "
            f"(watermark {watermark:%Y-%m-%d %H:%M:%S}): kept in bronze, listed in {args.late}",
            flush=True,
        )
    return int(total), int(windows)


def _stop_gracefully(queries: Sequence[StreamingQuery]) -> None:
    """Stop each query once its current batch is done (bounded wait), then raise its failure."""
    deadline = time.monotonic() + _STOP_WAIT_S
    for q in queries:
        while q.isActive and q.status.get("isTriggerActive") and time.monotonic() < deadline:
            time.sleep(0.2)
        q.stop()
    for q in queries:
        exc = q.exception()
        if exc is not None:
            raise exc


def run_continuous(
    queries: list[StreamingQuery],
    max_seconds: float,
    restart_bronze: Callable[[], StreamingQuery] | None = None,
    every: tuple[float, Callable[[], None]] | None = None,
) -> None:
    """Wait for the queries: until one fails, or for ``max_seconds`` (0: forever); call
    ``every[1]`` every ``every[0]`` seconds meanwhile (the late-events reconciliation).

    The bronze query (``queries[0]``) is restarted in place, a few times at most, after the
    Kafka metrics failure of its recovered batch (see :func:`is_kafka_metrics_npe`).
    """
    deadline = time.monotonic() + max_seconds if max_seconds else None
    restarts = 0
    next_tick = time.monotonic() + every[0] if every else None
    try:
        while True:
            if every and next_tick is not None and time.monotonic() >= next_tick:
                every[1]()
                next_tick = time.monotonic() + every[0]
            for i, q in enumerate(queries):
                if not q.isActive:
                    exc = q.exception()
                    if (
                        i == 0
                        and exc is not None
                        and restart_bronze is not None
                        and restarts < MAX_RECOVERY_RESTARTS
                        and is_kafka_metrics_npe(exc)
                    ):
                        restarts += 1
                        print(
                            "[streaming] restarting the bronze query after Spark's Kafka "
                            "metrics failure on its recovered batch (SPARK-55271)",
                            flush=True,
                        )
                        queries[0] = restart_bronze()
                        continue
                    if exc is not None:
                        raise exc
                    raise RuntimeError(f"streaming query {q.name} stopped unexpectedly")
            if deadline is not None and time.monotonic() >= deadline:
                break
            queries[0].awaitTermination(1)
    finally:
        _stop_gracefully(queries)


def _table_name(path: str) -> str:
    """``layer/name`` of a table at ``<root>/warehouse/<layer>/<name>``."""
    return "/".join(path.rstrip("/").rsplit("/", 2)[-2:])


def _topic_uri(bootstrap_servers: str, topic: str) -> str:
    """``kafka://<first bootstrap server>/<topic>``: the topic's name in lineage."""
    return f"kafka://{bootstrap_servers.split(',')[0].strip()}/{topic}"


def _lineage(spark: SparkSession, path: str, version: int | None, before: int | None) -> dict[str, Any]:
    return lineage_output(spark, _table_name(path), path, version, committed=version is not None and version != before)


def _delta_written(spark: SparkSession, path: str, after: int | None) -> tuple[int | None, int]:
    """Latest version of ``path`` and the rows its commits after version ``after`` wrote."""
    if not storage.is_delta(spark, path):
        return None, 0
    rows = 0
    latest: int | None = None
    history = DeltaTable.forPath(spark, path).history().select("version", "operationMetrics")
    for r in history.collect():
        version = int(r[0])
        latest = version if latest is None else max(latest, version)
        if after is None or version > after:
            rows += int((r[1] or {}).get("numOutputRows", 0))
    return latest, rows


def run(spark: SparkSession, args: argparse.Namespace, contract: Contract | None = None) -> Report:
    """Run the stream as ``args`` say, enforcing ``contract``; return the metrics report."""
    report = Report("streaming")
    started = time.monotonic()
    # A micro-batch's cache lives for one batch: compressing it costs more than it saves.
    spark.conf.set("spark.sql.inMemoryColumnarStorage.compressed", "false")
    sio.ensure_table(
        spark,
        args.bronze,
        tx.ddl(tx.BRONZE_COLUMNS),
        {"delta.dataSkippingStatsColumns": ",".join(tx.BRONZE_STATS_COLUMNS)},
    )
    sio.ensure_table(spark, args.dead_letter, tx.ddl(tx.DEAD_LETTER_COLUMNS))
    gold_before = None if args.no_gold else storage.last_commit(spark, args.gold)["version"]
    before = {path: storage.last_commit(spark, path)["version"] for path in (args.bronze, args.dead_letter)}
    if args.metrics:
        sio.ensure_table(spark, args.metrics, quality.METRICS_SCHEMA)
    writer = BronzeBatchWriter(
        args.bronze, args.dead_letter, contract, args.metrics, table=args.bronze.rstrip("/").rsplit("/", 1)[-1]
    )
    late: tuple[int, int] | None = None
    print(
        f"[streaming] {args.topic} -> {args.bronze} (+ dead letters, gold) "
        f"trigger={args.trigger} interval={args.interval} "
        f"maxOffsetsPerTrigger={args.max_offsets_per_trigger or 'none'}",
        flush=True,
    )
    if args.trigger == "available-now":
        for restarts in range(MAX_RECOVERY_RESTARTS + 1):
            try:
                start_bronze(spark, args, writer).awaitTermination()
                break
            except StreamingQueryException as exc:
                if restarts == MAX_RECOVERY_RESTARTS or not is_kafka_metrics_npe(exc):
                    raise
                print(
                    "[streaming] restarting the bronze query after Spark's Kafka metrics "
                    "failure on its recovered batch (SPARK-55271)",
                    flush=True,
                )
        if not args.no_gold:
            gold_query = start_gold(spark, args)
            gold_query.awaitTermination()
            watermark = gold_watermark(gold_query)
            if watermark is not None:
                late = reconcile_late(spark, args, watermark)
    else:
        queries = [start_bronze(spark, args, writer)]
        if not args.no_gold:
            queries.append(start_gold(spark, args))

        def check_late() -> None:
            nonlocal late
            at = gold_watermark(queries[1]) if len(queries) > 1 else None
            if at is None:
                return
            try:
                late = reconcile_late(spark, args, at)
            except Exception as exc:  # the ingest goes on; the next check tries again
                print(f"[streaming] WARNING: could not reconcile the late events: {exc}", flush=True)

        run_continuous(
            queries,
            args.max_seconds,
            restart_bronze=lambda: start_bronze(spark, args, writer),
            every=(args.late_check_seconds, check_late) if not args.no_gold else None,
        )
        check_late()
    seconds = time.monotonic() - started
    values: dict[str, Any] = {
        "batches": writer.batches,
        "rows_read": writer.records,
        "rows_written": writer.valid,
        "dead_letters": writer.invalid,
        "batch_seconds": round(writer.seconds, 3),
        "records_per_second": round(writer.records / writer.seconds, 1) if writer.seconds else 0.0,
        "version": storage.last_commit(spark, args.bronze)["version"],
        "actions": dict(sorted(writer.by_action.items())),
        "contract": f"{contract.name} v{contract.version}" if contract is not None else None,
        "quality": writer.quality(),
    }
    topic = [{"table": f"kafka/{args.topic}", "path": _topic_uri(args.bootstrap_servers, args.topic)}]
    report.table(
        "bronze",
        args.bronze.rstrip("/").rsplit("/", 1)[-1],
        started,
        **values,
        inputs=topic,
        outputs=[_lineage(spark, args.bronze, values["version"], before[args.bronze])],
    )
    dead_version = storage.last_commit(spark, args.dead_letter)["version"]
    report.table(
        "quarantine",
        args.dead_letter.rstrip("/").rsplit("/", 1)[-1],
        started,
        rows_read=writer.invalid,
        rows_written=writer.invalid,
        version=dead_version,
        inputs=topic,
        outputs=[_lineage(spark, args.dead_letter, dead_version, before[args.dead_letter])],
    )
    if not args.no_gold:
        version, rows = _delta_written(spark, args.gold, gold_before)
        report.table(
            "gold",
            args.gold.rstrip("/").rsplit("/", 1)[-1],
            started,
            rows_read=None,
            rows_written=rows,
            version=version,
            late_events=late[0] if late else 0,
            windows_missed=late[1] if late else 0,
            inputs=[{"table": _table_name(args.bronze), "path": args.bronze}],
            outputs=[_lineage(spark, args.gold, version, gold_before)],
        )
    print(f"[streaming] done in {seconds:.1f}s: {writer.records} records in {writer.batches} batches", flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Entrypoint: parse arguments, run the stream, print metrics; failures exit non-zero."""
    args = parse_args(argv)
    contract = None
    if not args.no_contract:
        try:  # a bad contract fails before Spark starts, naming the file and the field
            contract = load_contract(args.contracts_dir / f"{args.contract}.yaml")
        except ContractError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return CONFIG_ERROR_EXIT
    try:  # the SASL password comes from the environment (a secretKeyRef on a cluster), never argv
        args.kafka_security = sio.security_options(
            args.kafka_security_protocol,
            mechanism=args.kafka_sasl_mechanism,
            username=args.kafka_sasl_username,
            password=os.environ.get(PASSWORD_ENV),
            ca_location=args.kafka_ssl_ca_location,
        )
    except ValueError as exc:
        print(f"error: Kafka security: {exc} (the password is read from {PASSWORD_ENV})", file=sys.stderr, flush=True)
        return CONFIG_ERROR_EXIT
    if args.kafka_ssl_ca_location and not os.path.isfile(args.kafka_ssl_ca_location):
        print(
            f"error: the Kafka CA file {args.kafka_ssl_ca_location} does not exist (LAKEHOUSE_KAFKA__SSL_CA_LOCATION)",
            file=sys.stderr,
            flush=True,
        )
        return CONFIG_ERROR_EXIT
    run_job(f"lakehouse-{args.query_name.replace('_', '-')}", lambda spark: run(spark, args, contract))
    return 0


if __name__ == "__main__":
    sys.exit(main())
