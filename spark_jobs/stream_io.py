"""Streaming sources and sinks of the Kafka ingest: the Kafka source, Delta stream source,
empty-table creation and trigger selection.

The batch I/O helpers live in :mod:`spark_jobs.storage`; this module holds only what is specific
to Structured Streaming, so every read and write of the streaming job is visible in two places.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.readwriter import DataStreamWriter

Trigger = Literal["available-now", "processing-time"]
TRIGGERS: tuple[Trigger, ...] = ("available-now", "processing-time")


def read_kafka(
    spark: SparkSession,
    *,
    bootstrap_servers: str,
    topic: str,
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
    min_partitions: int | None = None,
    options: Mapping[str, str] | None = None,
) -> DataFrame:
    """A streaming DataFrame of the records of ``topic`` (Spark's Kafka source).

    ``failOnDataLoss`` stays true: offsets that expired from Kafka before the stream read them
    stop the query instead of being skipped silently. ``startingOffsets`` applies only to a
    brand-new checkpoint; a restart resumes from the offsets in its checkpoint.

    Args:
        spark: The session.
        bootstrap_servers: Kafka bootstrap servers.
        topic: Topic to subscribe to.
        starting_offsets: ``earliest`` or ``latest`` (or a JSON offsets spec).
        max_offsets_per_trigger: Upper bound of records per micro-batch; None for no bound.
        min_partitions: Spark tasks per micro-batch at least: Kafka offset ranges are split so
            that every core gets work (None: one task per Kafka partition).
        options: Further source options (``kafka.*`` client settings, e.g. security).
    """
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", starting_offsets)
        .option("failOnDataLoss", "true")
        .option("includeHeaders", "false")
    )
    if max_offsets_per_trigger is not None:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    if min_partitions is not None:
        reader = reader.option("minPartitions", str(min_partitions))
    for key, value in (options or {}).items():
        reader = reader.option(key, value)
    return reader.load()


LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}
"""The Kafka client's JAAS login module of each SASL mechanism."""


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def security_options(
    protocol: str,
    *,
    mechanism: str | None = None,
    username: str | None = None,
    password: str | None = None,
    ca_location: str | None = None,
) -> dict[str, str]:
    """The Kafka source options (``kafka.*``) of a security protocol: SASL login (JAAS) and the
    trusted CA as a PEM trust store. Kafka's client hides ``sasl.jaas.config`` in its logs and
    Spark redacts it in plans; the caller must not print the result.

    Raises:
        ValueError: A SASL protocol without mechanism, user name or password, or an unknown
            mechanism or protocol.
    """
    if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
        raise ValueError(
            f"unknown Kafka security protocol {protocol!r}; valid: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"
        )
    out = {"kafka.security.protocol": protocol}
    if protocol.startswith("SASL_"):
        if mechanism not in LOGIN_MODULES:
            raise ValueError(f"unknown SASL mechanism {mechanism!r}; valid: {', '.join(LOGIN_MODULES)}")
        if not username or not password:
            raise ValueError(f"{protocol} needs a user name and a password")
        out["kafka.sasl.mechanism"] = mechanism
        out["kafka.sasl.jaas.config"] = (
            f"{LOGIN_MODULES[mechanism]} required username={_jaas_quote(username)} password={_jaas_quote(password)};"
        )
    if protocol.endswith("SSL") and ca_location:
        out["kafka.ssl.truststore.type"] = "PEM"
        out["kafka.ssl.truststore.location"] = ca_location
    return out


def read_delta_stream(spark: SparkSession, path: str) -> DataFrame:
    """A streaming DataFrame of the rows appended to the Delta table at ``path``."""
    return spark.readStream.format("delta").load(path)


def ensure_table(spark: SparkSession, path: str, schema_ddl: str, properties: Mapping[str, str] | None = None) -> None:
    """Create an empty Delta table with ``schema_ddl`` (and table ``properties``) at ``path``
    unless one exists.

    Tables exist (with their schema) before any stream reads or appends to them, so a reader or
    a downstream stream never meets a missing path. An existing table is left as it is.
    """
    if DeltaTable.isDeltaTable(spark, path):
        return
    builder = (
        DeltaTable.createIfNotExists(spark).location(path).addColumns(spark.createDataFrame([], schema_ddl).schema)
    )
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    builder.execute()


def with_trigger(writer: DataStreamWriter, trigger: Trigger, interval: str) -> DataStreamWriter:
    """Apply ``trigger``: availableNow (all that is available, then stop) or processingTime."""
    if trigger == "available-now":
        return writer.trigger(availableNow=True)
    if trigger == "processing-time":
        return writer.trigger(processingTime=interval)
    raise ValueError(f"unknown trigger {trigger!r}; valid triggers: {', '.join(TRIGGERS)}")
