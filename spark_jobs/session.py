"""SparkSession construction with the tuning preset and Delta Lake enabled."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

from pyspark import SparkConf
from pyspark.sql import SparkSession

from spark_jobs.conf import default_conf
from spark_jobs.report import Report

T = TypeVar("T")
R = TypeVar("R")

RUN_SESSION: contextvars.ContextVar[SparkSession | None] = contextvars.ContextVar("run_session", default=None)
"""The session of the run on this thread when a long-running server runs jobs
(spark_jobs/warm_server.py): :func:`job_session` uses it and leaves it to its owner."""


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


def running_session() -> SparkSession | None:
    """The SparkSession this process already runs, if any (a notebook's, a test's, or the one
    dbt's local target starts inside the flow process)."""
    session = SparkSession._instantiatedSession
    if session is None or session.sparkContext._jsc is None:
        return None
    return session


@contextmanager
def job_session(app_name: str) -> Iterator[SparkSession]:
    """The session of an entrypoint: the one this process already runs (used as it is and left
    running: its owner stops it), else a new one, stopped at the end whatever happened."""
    existing = RUN_SESSION.get() or running_session()
    spark = existing or build_session(app_name)
    try:
        yield spark
    finally:
        if existing is None:
            spark.stop()


def run_job(app_name: str, run: Callable[[SparkSession], Report | Sequence[Report]]) -> list[Report]:
    """The body of every entrypoint: get the session (:func:`job_session`), run, print each
    report's metrics line (the line every backend reads); return the reports.

    An exception propagates, so the driver exits non-zero with its traceback in the log.
    """
    with job_session(app_name) as spark:
        out = run(spark)
        reports = [out] if isinstance(out, Report) else list(out)
        for report in reports:
            report.emit()
    return reports


def for_each_table(
    spark: SparkSession, items: Sequence[T], fn: Callable[[SparkSession, T], R], parallelism: int = 1
) -> list[R]:
    """``[fn(session, item) for item in items]``, up to ``parallelism`` items at a time.

    The tables of a layer are independent, and on small batches each one's work is mostly
    latency (driver round trips, Delta log reads and commits), so running them side by side
    shortens a run. Each concurrent item gets a session of its own (``newSession``: shared
    SparkContext, cache and Delta log cache; its own SQL conf), made active on its thread, so
    per-write conf such as the commit metadata of one table never reaches another's commit.
    Every item runs to its end; then the first failure (in ``items`` order) is raised.
    """
    if parallelism <= 1 or len(items) <= 1:
        return [fn(spark, item) for item in items]
    sc = spark.sparkContext
    jvm = sc._jvm
    assert jvm is not None
    tags = sc.getJobTags()  # a run's tags (warm server) reach its tables' threads too

    def work(item: T) -> R:
        session = spark.newSession()
        jvm.org.apache.spark.sql.SparkSession.setActiveSession(session._jsparkSession)
        for tag in tags:
            sc.addJobTag(tag)
        if tags:
            sc.setInterruptOnCancel(True)
        try:
            return fn(session, item)
        finally:
            for tag in tags:
                sc.removeJobTag(tag)
            jvm.org.apache.spark.sql.SparkSession.clearActiveSession()

    with ThreadPoolExecutor(max_workers=min(parallelism, len(items)), thread_name_prefix="table") as pool:
        # each in a copy of the caller's context: a warm server's run-scoped variables follow
        futures = [pool.submit(contextvars.copy_context().run, work, item) for item in items]
        wait(futures)
    return [f.result() for f in futures]
