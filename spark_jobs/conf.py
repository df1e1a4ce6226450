"""The Spark conf preset: Delta Lake plus the tuning preset.

Plain Python (no pyspark import) so the backends can render it into a spark-submit command line
or a SparkApplication, while the driver applies the very same dict in-process.
"""

from __future__ import annotations

import os

DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.databricks.delta.properties.defaults.enableInCommitTimestamps": "true",
}
"""Delta Lake's extension and catalog, and in-commit timestamps on every table a job creates.

In-commit timestamps: each commit records its time in the log, and time travel by timestamp
(``timestampAsOf``, ``RESTORE ... TO TIMESTAMP AS OF``, ``DESCRIBE HISTORY``) reads it. Without
them Delta takes a commit's time from its log file's modification time, which object stores keep
in whole seconds and a copy of the table resets: on s3a a timestamp half a second after a commit
could resolve to the commit before it, or past the table's latest. A writer-only table feature:
readers are unaffected; other writers need a Delta release that knows it. ``false`` in
``LAKEHOUSE_SPARK__CONF`` (``LAKEHOUSE_KUBERNETES__SPARK_CONF``) turns it off for new tables;
tables that exist keep what they have."""


INTERPRETED_CONF: dict[str, str] = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}
"""Queries evaluated by Spark's interpreted operators and expressions: no Java source generated and
compiled (Janino) for each new query shape, and no generated classes for the JIT to compile. On a
small lakehouse that compiling costs more CPU than the compiled code saves (measured:
bench/results/demo.json, bench/results/interpreted.json); see ``spark.interpret_below_mb``."""


def tuning_preset(cores: int | None = None) -> dict[str, str]:
    """Return the tuning preset.

    Adaptive query execution with partition coalescing and skew-join handling, the Kryo
    serializer, and shuffle partitions sized to the cores (2x cores, at least 4), UTC sessions.
    Delta's snapshot state reconstruction gets the same partition count instead of its fixed
    default of 50: every table read, MERGE, replaceWhere and history lookup rebuilds a snapshot,
    and on a small cluster 50 tiny tasks each time dominate a job over small tables (measured:
    the demo's second medallion run went from 97 s to 61 s on 2 cores).

    Args:
        cores: Cores available to the job; defaults to this machine's CPU count.
    """
    n = max(1, cores or os.cpu_count() or 1)
    parts = str(max(4, 2 * n))
    return {
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.adaptive.skewJoin.enabled": "true",
        "spark.serializer": "org.apache.spark.serializer.KryoSerializer",
        "spark.sql.shuffle.partitions": parts,
        "spark.default.parallelism": parts,
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        "spark.databricks.delta.snapshotPartitions": parts,
    }


def default_conf(cores: int | None = None) -> dict[str, str]:
    """Return the Delta conf plus the tuning preset for ``cores`` cores."""
    return {**tuning_preset(cores), **DELTA_CONF}
