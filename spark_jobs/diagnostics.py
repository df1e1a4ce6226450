"""Diagnostics job: proves a backend end to end (Spark starts, logs flow back, exit codes and
timeouts are honoured) without touching any table.

Usage: spark-submit spark_jobs/diagnostics.py [--rows N] [--busy S] [--sleep S] [--exit-code CODE]
       [--fail-attempts N --attempts-file PATH] [--exhaust-heap] [--show-conf KEY ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence

from pyspark.sql import SparkSession

from spark_jobs.report import Report
from spark_jobs.session import job_session


def class_data_archives(spark: SparkSession) -> list[str] | None:
    """The class-data archives the driver JVM has mapped besides the JDK's own (``None`` when
    the JVM's memory map cannot be read, e.g. not on Linux)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    pid = jvm.java.lang.ProcessHandle.current().pid()
    java_home = str(jvm.java.lang.System.getProperty("java.home"))
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if line.rstrip().endswith(".jsa")}
    except OSError:
        return None
    return sorted(p for p in paths if not p.startswith(java_home))


def main(argv: Sequence[str] | None = None) -> int:
    """Count ``--rows`` rows in Spark, sleep ``--sleep`` seconds, exit with ``--exit-code``."""
    p = argparse.ArgumentParser(prog="diagnostics", description=__doc__)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--exit-code", type=int, default=0)
    p.add_argument(
        "--busy",
        type=float,
        default=0.0,
        help="Run a Spark job whose tasks take this many seconds (something to cancel or time out).",
    )
    p.add_argument("--tag", default="", help="Free text, e.g. to find the job's processes.")
    p.add_argument(
        "--show-conf",
        action="append",
        default=[],
        metavar="KEY",
        help="Print the value the job's session has for this Spark conf key (repeatable).",
    )
    p.add_argument(
        "--fail-attempts",
        type=int,
        default=0,
        help="A transient failure: the first N attempts (counted in --attempts-file) exit 1.",
    )
    p.add_argument("--attempts-file", help="File the attempts are counted in (one line each).")
    p.add_argument(
        "--exhaust-heap",
        action="store_true",
        help="Ask the driver JVM for a 16 GiB array: a real java.lang.OutOfMemoryError (a JVM-fatal "
        "error, after which the warm local Spark retires) without filling the heap first.",
    )
    args = p.parse_args(argv)
    if args.fail_attempts and not args.attempts_file:
        p.error("--fail-attempts needs --attempts-file")
    started = time.monotonic()
    with job_session("lakehouse-diagnostics") as spark:
        n = spark.range(args.rows).count()
        print(f"diagnostics: counted {n} rows", flush=True)
        for key in args.show_conf:
            print(f"diagnostics: conf {key}={spark.conf.get(key, None)}", flush=True)
        archives = class_data_archives(spark)
        shown = "unknown" if archives is None else ", ".join(archives) or "none"
        print(f"diagnostics: driver class-data archive: {shown}", flush=True)
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        java_tmp = jvm.java.lang.System.getProperty("java.io.tmpdir")
        # the local dirs Spark resolved (SPARK_LOCAL_DIRS, else spark.local.dir, else java.io.tmpdir)
        conf = spark.sparkContext._jsc.sc().conf()
        local_dir = ",".join(jvm.org.apache.spark.util.Utils.getConfiguredLocalDirs(conf))
        print(
            f"diagnostics: temporary dirs: java {java_tmp}, spark {local_dir}, python {tempfile.gettempdir()}",
            flush=True,
        )
        if args.busy:
            print(f"diagnostics: a Spark job of {args.busy:g}s", flush=True)
            seconds = args.busy

            def slow(x: int) -> int:
                time.sleep(seconds)
                return x

            spark.sparkContext.parallelize(range(2), 2).map(slow).count()
        if args.exhaust_heap:
            print("diagnostics: asking the driver JVM for a 16 GiB array", flush=True)
            # through reflection, so that the error comes back as the call's (Py4JJavaError)
            jvm.java.lang.reflect.Array.newInstance(jvm.java.lang.Long.TYPE, 2**31 - 16)
            raise RuntimeError("the driver's heap holds 16 GiB: --exhaust-heap needs a smaller one")
        report = Report("diagnostics")
        report.table("diagnostics", "range", started, rows_read=n, rows_written=0)
        report.emit()
        if args.sleep:
            print(f"diagnostics: sleeping {args.sleep:g}s", flush=True)
            time.sleep(args.sleep)
    if args.attempts_file:
        with open(args.attempts_file, "a+", encoding="utf-8") as attempts:
            attempts.write(f"{time.time()}\n")
            attempts.seek(0)
            attempt = len(attempts.read().splitlines())
        if attempt <= args.fail_attempts:
            print(f"diagnostics: transient failure, attempt {attempt} of {args.fail_attempts} failing", flush=True)
            return 1
    if args.exit_code:
        print(f"diagnostics: failing on purpose with exit code {args.exit_code}", flush=True)
    return int(args.exit_code)


if __name__ == "__main__":
    sys.exit(main())
