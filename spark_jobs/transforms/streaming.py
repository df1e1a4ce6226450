"""Streaming transforms: Kafka records -> parsed events and dead letters; the windowed aggregate.

Pure ``DataFrame -> DataFrame`` functions, valid on batch and streaming DataFrames alike (the
streaming job applies them to each micro-batch, tests to small inline DataFrames).

Parsing uses an explicit schema. Every field is first read as a string (a JSON number keeps its
literal text), then cast with ``try_cast`` to its declared type, so each failure has a precise
reason: the value is not a JSON object, a required field is missing, or a field does not have its
declared type. A record is valid when it has none of these; every other record becomes a dead
letter with its raw key and value, the error text, the names of the rules it broke and its Kafka
coordinates.

Given the events data contract, :func:`parse_kafka_events` also applies the contract's per-row
rules (compiled by :mod:`spark_jobs.transforms.quality`, the same expressions the batch silver
build uses): a record whose most severe broken rule has the action ``drop``, ``quarantine`` or
``fail`` becomes a dead letter too (a stream has no batch to hold back, so ``fail`` dead-letters
the record instead of stopping the stream); ``warn`` keeps it in bronze and counts it. Structural
failures are named as the contract names them: ``malformed_json``, ``<field>.required``,
``<field>.type``.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from spark_jobs.contract import Contract
from spark_jobs.transforms import quality

EVENT_FIELDS: tuple[tuple[str, str], ...] = (
    ("event_id", "string"),
    ("user_id", "string"),
    ("event_type", "string"),
    ("amount", "decimal(10,2)"),
    ("event_time", "timestamp"),
)
"""The event schema (the reference design's events): name and Spark SQL type."""

REQUIRED_FIELDS: tuple[str, ...] = ("event_id", "user_id", "event_type", "event_time")
"""Fields a valid event must carry (``amount`` is null for events that are not purchases)."""

_CORRUPT = "_corrupt_record"

KAFKA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_kafka_key", "string"),
    ("_kafka_topic", "string"),
    ("_kafka_partition", "int"),
    ("_kafka_offset", "bigint"),
    ("_kafka_timestamp", "timestamp"),
)
"""Kafka coordinates kept on every bronze row and dead letter."""

BATCH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_ingested_at", "timestamp"),
    ("_batch_id", "bigint"),
)
"""Ingestion metadata: when and in which micro-batch a row was written."""

BRONZE_COLUMNS: tuple[tuple[str, str], ...] = (*EVENT_FIELDS, *KAFKA_COLUMNS, *BATCH_COLUMNS)
"""Columns of the bronze table, in order."""

BRONZE_STATS_COLUMNS: tuple[str, ...] = (
    "event_time",
    "event_type",
    "_kafka_partition",
    "_kafka_offset",
    "_kafka_timestamp",
    "_ingested_at",
    "_batch_id",
)
"""Bronze columns Delta keeps min/max statistics of (``delta.dataSkippingStatsColumns``): the
ones time-range, type and Kafka-coordinate queries filter on. Random ids (event_id, user_id) give
no data skipping, and their statistics cost a quarter of the Parquet write."""

DEAD_LETTER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("value", "string"),
    ("error", "string"),
    ("rules", "array<string>"),
    ("action", "string"),
    *KAFKA_COLUMNS,
    *BATCH_COLUMNS,
)
"""Columns of the dead-letter table, in order: the raw value, the error, the broken rules, the
action that sent the record there, the coordinates."""

DEAD_ACTIONS = ("drop", "quarantine", "fail")
"""Contract actions that keep a record out of bronze (into the dead-letter table)."""

GOLD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("window_start", "timestamp"),
    ("window_end", "timestamp"),
    ("event_type", "string"),
    ("event_count", "bigint"),
    ("amount_sum", "decimal(20,2)"),
)
"""Columns of the windowed aggregate."""


def ddl(columns: tuple[tuple[str, str], ...]) -> str:
    """Render ``columns`` as a Spark DDL schema string (``name type, ...``)."""
    return ", ".join(f"`{name}` {kind}" for name, kind in columns)


def _raw_schema(extra: tuple[str, ...] = ()) -> StructType:
    names = [name for name, _ in EVENT_FIELDS] + [n for n in extra if n not in dict(EVENT_FIELDS)]
    return StructType([StructField(name, StringType()) for name in names] + [StructField(_CORRUPT, StringType())])


def _not_object(raw: Column, value: Column) -> Column:
    return value.isNull() | raw.isNull() | raw.getField(_CORRUPT).isNotNull() | ~F.ltrim(value).startswith("{")


def _missing(raw: Column, field: str) -> Column:
    """True when the required ``field`` is absent (or null) in the parsed record."""
    return raw.getField(field).isNull()


def _mistyped(raw: Column, field: str) -> Column:
    """True when ``field`` is present but its text does not cast to its declared type."""
    return raw.getField(field).isNotNull() & F.col(f"_typed_{field}").isNull()


def _structural_rules(raw: Column, value: Column) -> Column:
    """Names of the structural rules a record breaks (empty array when it parses)."""
    names = [F.when(_missing(raw, f), F.lit(f"{f}.required")) for f in REQUIRED_FIELDS] + [
        F.when(_mistyped(raw, name), F.lit(f"{name}.type")) for name, kind in EVENT_FIELDS if kind != "string"
    ]
    return F.when(_not_object(raw, value), F.array(F.lit(quality.MALFORMED))).otherwise(
        F.filter(F.array(*names), lambda x: x.isNotNull())
    )


def _error(raw: Column, value: Column) -> Column:
    """The first reason a record is invalid, or null when it is valid."""
    not_object = _not_object(raw, value)
    missing = F.concat_ws(", ", *[F.when(_missing(raw, f), F.lit(f)) for f in REQUIRED_FIELDS])
    bad_types = F.concat_ws(
        "; ",
        *[
            F.when(
                _mistyped(raw, name),
                F.concat(
                    F.lit(f"{name}: cannot read '"),
                    F.substring(raw.getField(name), 1, 80),
                    F.lit(f"' as {kind}"),
                ),
            )
            for name, kind in EVENT_FIELDS
            if kind != "string"
        ],
    )
    return (
        F.when(not_object, F.lit("not a JSON object"))
        .when(missing != "", F.concat(F.lit("missing required field(s): "), missing))
        .when(bad_types != "", bad_types)
    )


def contract_rules(
    contract: Contract, value: Column | None = None, typed: dict[str, Column] | None = None
) -> list[quality.RowRule]:
    """The per-row rules of ``contract`` a record is judged by: the batch path's rules, and a
    string column given a JSON array or object breaks ``<column>.type`` as it does there.

    Args:
        contract: The events data contract.
        value: The record's value as text (default the ``value`` column).
        typed: Column name -> the value already cast to its declared type (reused by the rules).
    """
    line = value if value is not None else F.col("value")
    return quality.row_rules(contract, (), typed=typed) + quality.shape_rules(contract, line)


def parse_kafka_events(records: DataFrame, contract: Contract | None = None) -> DataFrame:
    """Parse Kafka records into typed event columns, coordinates and the verdict columns.

    Args:
        records: Rows in the Kafka source's shape: ``key`` and ``value`` (binary), ``topic``,
            ``partition``, ``offset`` and ``timestamp``.
        contract: The events data contract whose per-row rules apply too (None: structure only).

    Returns:
        The event fields (typed; null where invalid), ``value`` (the raw value as text),
        ``error`` (null for a record that goes to bronze), ``rules`` (every rule the record
        breaks, warn rules included), ``action`` (``quarantine`` for a structural failure, else
        the most severe action of its broken contract rules, null when it breaks none), and the
        Kafka columns of :data:`KAFKA_COLUMNS`.
    """
    value = F.col("value").cast("string")
    extra = tuple(contract.columns) if contract is not None else ()
    raw = F.from_json(value, _raw_schema(extra), {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT})
    staged = records.select(
        value.alias("value"),
        raw.alias("_raw"),
        F.col("key").cast("string").alias("_kafka_key"),
        F.col("topic").alias("_kafka_topic"),
        F.col("partition").cast("int").alias("_kafka_partition"),
        F.col("offset").cast("bigint").alias("_kafka_offset"),
        F.col("timestamp").cast("timestamp").alias("_kafka_timestamp"),
    )
    typed = staged.select(
        "*",
        *[F.col("_raw").getField(name).try_cast(kind).alias(f"_typed_{name}") for name, kind in EVENT_FIELDS],
    )
    raw_col, value_col = F.col("_raw"), F.col("value")
    not_object = _not_object(raw_col, value_col)
    # A cheap test first: a well-formed record with every required field and type in order that
    # passes every contract rule (the usual record) gets a null error, no rules and no action
    # without building the error text and rule arrays, which are computed for the rest only.
    clean = ~not_object
    for f in REQUIRED_FIELDS:
        clean = clean & ~_missing(raw_col, f)
    for name, kind in EVENT_FIELDS:
        if kind != "string":
            clean = clean & ~_mistyped(raw_col, name)
    structural = _error(raw_col, value_col)
    broken = _structural_rules(raw_col, value_col)
    if contract is None:
        judged = typed
        failed_rules: Column = F.array().cast("array<string>")
        action: Column = F.lit(None).cast("string")
        reason: Column = F.lit(None).cast("string")
    else:  # the contract's rules read the raw text of each declared column, as in the batch path
        judged = typed.select(
            "*",
            *[raw_col.getField(c).alias(c) for c in contract.columns],
            not_object.alias("_malformed"),
        )
        # reuse the stream's typed columns where the contract declares the same type
        kinds = dict(EVENT_FIELDS)
        typed_cols = {
            f.name: F.col(f"_typed_{f.name}")
            for f in contract.fields
            if kinds.get(f.name) == f.spark_type and f.spark_type != "string"
        }
        v = quality.verdict(contract_rules(contract, value_col, typed_cols), F.col("_malformed"))
        clean = clean & v.passes
        failed_rules, action, reason = v.failed_rules, v.action, v.reason
    dead = structural.isNotNull() | action.isin(*DEAD_ACTIONS)
    return judged.select(
        *[F.col(f"_typed_{name}").alias(name) for name, _ in EVENT_FIELDS],
        "value",
        F.when(~clean, F.when(structural.isNotNull(), structural).when(dead, reason)).alias("error"),
        F.when(clean, F.array().cast("array<string>"))
        .otherwise(F.array_distinct(F.concat(broken, failed_rules)))
        .alias("rules"),
        F.when(~clean, F.when(structural.isNotNull(), F.lit("quarantine")).otherwise(action)).alias("action"),
        *[name for name, _ in KAFKA_COLUMNS],
    )


def valid_events(parsed: DataFrame, *, batch_id: int, ingested_at: Column | None = None) -> DataFrame:
    """Bronze rows: the valid events of ``parsed`` with coordinates and batch metadata.

    Args:
        parsed: Output of :func:`parse_kafka_events`.
        batch_id: The streaming micro-batch id.
        ingested_at: Ingestion time column (default: the current timestamp).
    """
    return parsed.where(F.col("error").isNull()).select(
        *[name for name, _ in EVENT_FIELDS],
        *[name for name, _ in KAFKA_COLUMNS],
        (ingested_at if ingested_at is not None else F.current_timestamp()).alias("_ingested_at"),
        F.lit(batch_id).cast("bigint").alias("_batch_id"),
    )


def dead_letters(parsed: DataFrame, *, batch_id: int, ingested_at: Column | None = None) -> DataFrame:
    """Dead letters: the raw value and error of every invalid record, with its coordinates.

    Args:
        parsed: Output of :func:`parse_kafka_events`.
        batch_id: The streaming micro-batch id.
        ingested_at: Ingestion time column (default: the current timestamp).
    """
    return parsed.where(F.col("error").isNotNull()).select(
        "value",
        "error",
        "rules",
        "action",
        *[name for name, _ in KAFKA_COLUMNS],
        (ingested_at if ingested_at is not None else F.current_timestamp()).alias("_ingested_at"),
        F.lit(batch_id).cast("bigint").alias("_batch_id"),
    )


def windowed_counts(events: DataFrame, *, window: str = "5 minutes", watermark: str = "10 minutes") -> DataFrame:
    """Count and sum(amount) per ``event_type`` in tumbling ``window`` windows of event_time.

    With a ``watermark`` delay on ``event_time``, a streaming query in append mode emits each
    window once, after the watermark passed its end; events arriving later than that for it are
    dropped.

    Args:
        events: Rows with ``event_time``, ``event_type`` and ``amount``.
        window: Window duration, e.g. ``5 minutes``.
        watermark: Watermark delay, e.g. ``10 minutes``.

    Returns:
        Columns of :data:`GOLD_COLUMNS`.
    """
    return (
        events.withWatermark("event_time", watermark)
        .groupBy(F.window("event_time", window).alias("w"), "event_type")
        .agg(F.count(F.lit(1)).alias("event_count"), F.sum("amount").alias("amount_sum"))
        .select(
            F.col("w.start").alias("window_start"),
            F.col("w.end").alias("window_end"),
            "event_type",
            "event_count",
            F.col("amount_sum").cast("decimal(20,2)").alias("amount_sum"),
        )
    )


LATE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("window_start", "timestamp"),
    ("window_end", "timestamp"),
    ("event_type", "string"),
    ("late_events", "bigint"),
    ("late_amount", "decimal(20,2)"),
    ("window_emitted", "boolean"),
    ("watermark", "timestamp"),
    ("checked_at", "timestamp"),
)
"""Schema of the late-events table: per closed window and event type, the bronze events the
windowed gold did not count because they arrived after the watermark had passed the window."""


def missed_windows(
    bronze: DataFrame, gold: DataFrame, watermark: dt.datetime, *, window: str = "5 minutes"
) -> DataFrame:
    """The closed windows (end <= ``watermark``) whose bronze events outnumber what gold counted.

    Gold (append mode) writes a window once, when the watermark passes its end, and drops events
    arriving for it later; bronze keeps every event. Per window and event type, bronze's count
    minus gold's is the number of events that came too late for it (``window_emitted`` false:
    all of them did, so gold has no row for it at all).

    Returns:
        Columns of :data:`LATE_COLUMNS`.
    """
    closed = F.lit(watermark).cast("timestamp")
    kept = (
        bronze.where(F.col("event_time").isNotNull())
        .groupBy(F.window("event_time", window).alias("w"), "event_type")
        .agg(F.count(F.lit(1)).alias("bronze_count"), F.sum("amount").alias("bronze_amount"))
        .select(
            F.col("w.start").alias("window_start"),
            F.col("w.end").alias("window_end"),
            "event_type",
            "bronze_count",
            "bronze_amount",
        )
        .where(F.col("window_end") <= closed)
    )
    counted = gold.select(
        "window_start", "event_type", F.col("event_count").alias("gold_count"), F.col("amount_sum").alias("gold_amount")
    )
    joined = kept.join(counted, ["window_start", "event_type"], "left")
    return joined.where(F.col("bronze_count") > F.coalesce(F.col("gold_count"), F.lit(0))).select(
        "window_start",
        "window_end",
        "event_type",
        (F.col("bronze_count") - F.coalesce(F.col("gold_count"), F.lit(0))).cast("bigint").alias("late_events"),
        (F.coalesce(F.col("bronze_amount"), F.lit(0)) - F.coalesce(F.col("gold_amount"), F.lit(0)))
        .cast("decimal(20,2)")
        .alias("late_amount"),
        F.col("gold_count").isNotNull().alias("window_emitted"),
        closed.alias("watermark"),
        F.current_timestamp().alias("checked_at"),
    )
