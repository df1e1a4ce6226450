"""Bronze: raw landing lines -> raw rows with ingestion metadata.

Bronze keeps everything: each landing line becomes one row with the raw line (``_raw``), the
declared columns as strings (or null when the line is not a JSON object), a ``_malformed`` flag
and the ingestion metadata. Nothing is dropped here; silver decides.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs.contract import Contract
from spark_jobs.schemas import CORRUPT_COLUMN, raw_schema

METADATA_COLUMNS = ("_raw", "_malformed", "_ingested_at", "_source_file", "_batch_id", "_landing_date")


def _is_malformed(parsed: Column, value: Column) -> Column:
    """Not a JSON object, or not UTF-8 text (a Latin-1 file, say, whose values would otherwise
    reach silver garbled)."""
    return (
        parsed.isNull()
        | parsed.getField(CORRUPT_COLUMN).isNotNull()
        | ~F.trim(value).startswith("{")
        | ~F.is_valid_utf8(value)
    )


def parse_landing(
    lines: DataFrame,
    contract: Contract,
    *,
    batch_id: str,
    ingested_at: dt.datetime,
) -> DataFrame:
    """Parse landing lines into bronze rows.

    Args:
        lines: Columns ``value`` (one landing line), ``_source_file`` and ``_landing_date``.
        contract: The contract of the source the lines belong to.
        batch_id: Identifier of this landing batch.
        ingested_at: Ingestion time recorded on every row.

    Returns:
        The declared columns (raw strings), ``_raw``, ``_malformed``, ``_ingested_at``,
        ``_source_file``, ``_batch_id`` and ``_landing_date``.
    """
    parsed = F.from_json(
        F.col("value"),
        raw_schema(contract),
        {"columnNameOfCorruptRecord": CORRUPT_COLUMN, "mode": "PERMISSIVE"},
    )
    return lines.withColumn("_parsed", parsed).select(
        *[F.col("_parsed").getField(c).alias(c) for c in contract.columns],
        F.col("value").alias("_raw"),
        _is_malformed(F.col("_parsed"), F.col("value")).alias("_malformed"),
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),
        F.col("_source_file"),
        F.lit(batch_id).alias("_batch_id"),
        F.col("_landing_date").cast("date").alias("_landing_date"),
    )
