"""SparkSession construction with the tuning preset and Delta Lake enabled."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from spark_jobs.conf import INTERPRETED_CONF, default_conf
from spark_jobs.report import Report

T = TypeVar("T")
R = TypeVar("R")

RUN_SESSION: contextvars.ContextVar[SparkSession | None] = contextvars.ContextVar("run_session", default=None)
"""The session of the run on this thread when a long-running server runs jobs
(spark_jobs/warm_server.py): :func:`job_session` uses it and leaves it to its owner."""


RUN_CONF: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("run_conf", default=None)
"""SQL conf of the current run that every session of the run gets, also the table sessions of
:func:`for_each_table` (``newSession`` starts from the defaults, not from its parent's conf)."""


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
    if launched:
        # the launcher's conf is in its JVM (system properties): connect to it first, else the
        # SparkConf below is a Python-only, empty one and the preset overrides every key of it
        SparkContext._ensure_initialized()
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


MIB = 1024 * 1024


def lakehouse_bytes(spark: SparkSession, root: str, landing_dirs: Sequence[str], limit: int) -> int:
    """Bytes of the landing files in ``landing_dirs`` (a run's input) plus the files under
    ``<root>/warehouse`` (every table), counted until they reach ``limit``."""
    from spark_jobs.storage import list_landing

    total = 0
    for directory in landing_dirs:  # a backfill's many dates on an object store: no more listings than needed
        total += sum(f.size for f in list_landing(spark, directory)[0])
        if total >= limit:
            return total
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(root.rstrip("/") + "/warehouse")
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return total
    files = fs.listFiles(path, True)
    while total < limit and files.hasNext():
        total += int(files.next().getLen())
    return total


def run_conf(spark: SparkSession, root: str, limit_mb: float, landing_dirs: Sequence[str] = ()) -> dict[str, str]:
    """The run's own SQL conf: :data:`~spark_jobs.conf.INTERPRETED_CONF` when the lakehouse is
    small, i.e. its tables' files plus the run's landing input are below ``limit_mb`` MiB (0:
    never), else nothing."""
    if limit_mb <= 0:
        return {}
    limit = int(limit_mb * MIB)
    size = lakehouse_bytes(spark, root, landing_dirs, limit)
    if size >= limit:
        return {}
    print(
        f"[run] tables and input {size / MIB:.2f} MiB, below {limit_mb:g} MiB: queries run interpreted "
        "(no code generation)",
        flush=True,
    )
    return dict(INTERPRETED_CONF)


def batch_run_conf(spark: SparkSession, args: Any) -> dict[str, str]:
    """:func:`run_conf` of a batch run (``check_batch``'s args): its sources' landing dates."""
    from spark_jobs.cli import landing_dir

    dirs = [landing_dir(args.root, s, d) for s in args.sources for d in args.dates]
    return run_conf(spark, args.root, float(args.interpret_below_mb), dirs)


@contextmanager
def run_scope(spark: SparkSession, conf: Mapping[str, str]) -> Iterator[None]:
    """``conf`` on ``spark`` and on every session of the run (:data:`RUN_CONF`) for the block;
    the session's own values come back after it."""
    before = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    token = RUN_CONF.set(conf)
    try:
        yield
    finally:
        RUN_CONF.reset(token)
        for key, old in before.items():  # a session this run was handed goes back as it was
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def run_job(app_name: str, run: Callable[[SparkSession], Report | Sequence[Report]], args: Any = None) -> list[Report]:
    """The body of every entrypoint: get the session (:func:`job_session`), run, print each
    report's metrics line (the line every backend reads); return the reports. With a batch
    run's ``args``, the run's own conf (:func:`batch_run_conf`) applies to all its sessions.

    An exception propagates, so the driver exits non-zero with its traceback in the log.
    """
    with job_session(app_name) as spark:
        with run_scope(spark, batch_run_conf(spark, args) if args is not None else {}):
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
        for key, value in (RUN_CONF.get() or {}).items():
            session.conf.set(key, value)
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
