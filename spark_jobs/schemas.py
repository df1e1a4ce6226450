"""Spark schemas derived from the data contracts (contracts/<source>.yaml)."""

from __future__ import annotations

from pyspark.sql.types import StringType, StructField, StructType

from spark_jobs.contract import Contract

CORRUPT_COLUMN = "_corrupt_record"


def raw_schema(contract: Contract) -> StructType:
    """Every declared column as a string (bronze keeps raw values) plus the corrupt-record slot."""
    return StructType(
        [StructField(c, StringType()) for c in contract.columns] + [StructField(CORRUPT_COLUMN, StringType())]
    )
