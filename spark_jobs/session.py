"""SparkSession construction with the tuning preset and Delta Lake enabled."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

from pyspark import SparkConf
from pyspark.sql import SparkSession

from spark_jobs.conf import default_conf
from spark_jobs.report import Report


def build_session(
    app_name: str,
    conf: Mapping[str, str] | None = None,
    *,
    master: str | None = None,
) -> SparkSession:
    """Build (or reuse) the SparkSession.

    Under spark-submit (or the Spark operator) the launcher already set master, jars and the
    job's own conf; the preset only fills keys the launcher left unset. In-process (tests,
    notebooks) pass ``master`` and ``spark.jars`` through ``conf``.

    Args:
        app_name: Spark application name.
        conf: Extra Spark conf; always wins over the preset and the launcher.
        master: Spark master URL when not started by a launcher.
    """
    explicit = dict(conf or {})
    launched = "PYSPARK_GATEWAY_PORT" in os.environ
    existing = SparkConf() if launched else None
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    for key, value in {**default_conf(), **explicit}.items():
        if key in explicit or existing is None or not existing.contains(key):
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("LAKEHOUSE_SPARK_LOG_LEVEL", "WARN"))
    return spark


def run_job(app_name: str, run: Callable[[SparkSession], Report | Sequence[Report]]) -> list[Report]:
    """The body of every entrypoint: build the session, run, print each report's metrics line
    (the line every backend reads), and stop the session whatever happened; return the reports.

    An exception propagates, so the driver exits non-zero with its traceback in the log.
    """
    spark = build_session(app_name)
    try:
        out = run(spark)
        reports = [out] if isinstance(out, Report) else list(out)
        for report in reports:
            report.emit()
    finally:
        spark.stop()
    return reports
