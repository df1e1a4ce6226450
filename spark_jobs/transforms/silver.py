"""Silver: typed, deduplicated rows shaped by the contract, and quarantine rows.

Row rules come from :mod:`spark_jobs.transforms.quality`; this module casts the rows that pass,
derives the partition date, keeps the latest version per key, and shapes quarantined rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs.contract import Contract

LINEAGE_COLUMNS = ("_ingested_at", "_source_file", "_batch_id", "_landing_date")


def typed(valid: DataFrame, contract: Contract, extra_columns: Sequence[str] = ()) -> DataFrame:
    """Cast the declared columns, add allowed undeclared columns (as strings, read from the raw
    line), derive the partition date, keep the lineage columns."""
    cols = [F.col(f.name).try_cast(f.spark_type).alias(f.name) for f in contract.fields]
    cols += [F.get_json_object("_raw", f"$.{c}").alias(c) for c in extra_columns]
    out = valid.select(*cols, *LINEAGE_COLUMNS)
    if contract.partition:
        out = out.withColumn(contract.partition.column, F.to_date(F.col(contract.partition.from_)))
    return out


def duplicate_copies(df: DataFrame, contract: Contract) -> DataFrame:
    """Mark exact repeats of a version (same key and ``order_by``) beyond the first: ``_dup``."""
    w = Window.partitionBy(contract.primary_key, contract.order_by).orderBy(
        F.col("_landing_date"), F.col("_source_file"), F.col("_raw")
    )
    return df.withColumn("_dup", F.row_number().over(w) > 1)


VERSIONS = "_versions"
"""The column :func:`latest_per_key` adds with ``count_versions``."""


def latest_per_key(df: DataFrame, contract: Contract, *, count_versions: bool = False) -> DataFrame:
    """Keep one row per key: greatest ``order_by``, then the most recently landed line.

    ``count_versions``: each kept row also says how many rows of ``df`` its key had
    (:data:`VERSIONS`), counted in the same window (no pass of its own): their sum is the number
    of rows of ``df``."""
    key = Window.partitionBy(contract.primary_key)
    w = key.orderBy(
        F.col(contract.order_by).desc_nulls_last(),
        F.col("_landing_date").desc(),
        F.col("_ingested_at").desc(),
        F.col("_source_file").desc(),
    )
    if count_versions:
        df = df.withColumn(VERSIONS, F.count(F.lit(1)).over(key))
    return df.withColumn("_rn", F.row_number().over(w)).where("_rn = 1").drop("_rn")


HISTORY_COLUMNS = ("valid_from", "valid_to", "is_current")


def history_of(versions: DataFrame, existing: DataFrame | None, contract: Contract) -> DataFrame:
    """The whole SCD2 history of the keys in ``versions``: their existing rows (``existing``,
    the history table) plus the new versions, one row per (key, ``order_by``), with
    ``valid_from`` = the version's ``order_by``, ``valid_to`` = the next version's and
    ``is_current`` for the open one.

    A version already in history wins over a new copy of it (as SCD1 replaces a row only by a
    strictly newer one), so a rerun or an overlapping backfill leaves history as it was; an
    out-of-order version (older than the current one) slots in between its neighbours.
    Every version is kept, also one that repeats its predecessor's values.
    """
    key, order = contract.primary_key, contract.order_by
    rows = versions.where(F.col(order).isNotNull()).select(*contract.columns).withColumn("_known", F.lit(False))
    if existing is not None:
        keys = rows.select(key).distinct()
        known = existing.join(keys, key, "left_semi").select(*contract.columns).withColumn("_known", F.lit(True))
        rows = known.unionByName(rows)
    first = Window.partitionBy(key, order).orderBy(F.col("_known").desc())
    rows = rows.withColumn("_rn", F.row_number().over(first)).where("_rn = 1").drop("_rn", "_known")
    nxt = F.lead(order).over(Window.partitionBy(key).orderBy(order))
    return (
        rows.withColumn("valid_from", F.col(order))
        .withColumn("valid_to", nxt)
        .withColumn("is_current", F.col("valid_to").isNull())
    )


def quarantine_rows(rejected: DataFrame, contract: Contract, run_id: str) -> DataFrame:
    """Shape rejected rows for ``quarantine/<table>``: failed rule names, readable reason, raw
    line, lineage, run id and time."""
    return rejected.select(
        F.lit(contract.name).alias("table"),
        F.col(contract.primary_key).alias("record_key"),
        F.col("_failed_rules").alias("failed_rules"),
        F.col("_reason").alias("reason"),
        F.col("_raw").alias("raw"),
        *LINEAGE_COLUMNS,
        F.lit(run_id).alias("run_id"),
        F.current_timestamp().alias("quarantined_at"),
    )
