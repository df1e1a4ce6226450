"""Class-data sharing (CDS) for local Spark jobs: start the driver JVM from an archive of the
classes a medallion run loads instead of loading and verifying them again on every job start.

Every local job is a fresh JVM that loads tens of thousands of Spark, Delta and Hadoop classes
before its first query; on 2 cores that is seconds of every run (measured: a job's first Delta
read came after 15.8 s without the archive, 11.2 s with it). ``python -m lakehouse.cds ensure``
(part of ``make setup``) builds the archive once: it runs the medallion job over two days of
generated sample data in a scratch directory, the second run with ``-XX:ArchiveClassesAtExit``,
and keeps the archive under the cache directory. The local backend then passes
``-XX:SharedArchiveFile`` to the driver JVM (``LAKEHOUSE_SPARK__CLASS_DATA_SHARING=false``
turns that off).

The archive is only valid for the JVM build and class path it was dumped with, so its file name
carries a key of the Java version, the Spark installation (its path: the wheel in ``.venv/``),
the Spark/Hadoop conf directories and every jar's size and modification time; anything else gets
a new archive (archives of other keys unused for a week are deleted when one is built). A JVM
that cannot use an archive says so in one warning line and runs without it: it is a speed-up,
never a condition for a job to run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lakehouse import jars, versions
from lakehouse.errors import LakehouseError, SetupError
from lakehouse.settings import Settings

TRAINING_START = dt.date(2026, 1, 1)
"""First of the two sample days the archive is built from (any date works)."""


def java_binary() -> str:
    """The ``java`` spark-submit starts: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise SetupError("java not found: install a Java 17 or 21 runtime (see `make setup`).")
    return found


@functools.lru_cache(maxsize=4)
def _java_version(binary: str) -> str:
    out = subprocess.run([binary, "-version"], capture_output=True, text=True, check=False, timeout=60)
    return (out.stdout + out.stderr).strip()


def archive_key() -> str:
    """Key of everything the archive's validity depends on (JVM build, class path, jars)."""
    binary = java_binary()
    home = jars.spark_home()
    parts = [
        os.path.realpath(binary),
        _java_version(binary),
        str(home),
        os.environ.get("SPARK_CONF_DIR", ""),
        os.environ.get("HADOOP_CONF_DIR", ""),
        os.environ.get("YARN_CONF_DIR", ""),
        versions.JARS_KEY,
    ]
    # the JVM checks each class-path jar's size and modification time against the archive: a
    # rebuilt .venv (same path, new files) needs a new archive too
    for jar in [*sorted((home / "jars").glob("*.jar")), *jars.resolved_jars()]:
        st = jar.stat()
        parts.append(f"{jar.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def archive_path() -> Path:
    """Where the archive for this JVM, Spark installation and jar set lives."""
    return jars.cache_dir() / "cds" / f"{versions.JARS_KEY}-{archive_key()}.jsa"


def java_options(settings: Settings) -> list[str]:
    """JVM options of a local driver: the archive when enabled and built, else nothing."""
    if not settings.spark.class_data_sharing:
        return []
    try:
        path = archive_path()
    except LakehouseError:
        return []
    return [f"-XX:SharedArchiveFile={path}"] if path.is_file() else []


def ensure(settings: Settings, *, log: Callable[[str], None] = print) -> Path | None:
    """Build the archive unless it exists or class-data sharing is off; return its path.

    Raises:
        SparkJobError: A training run failed (its exit code and log tail say why).
    """
    if not settings.spark.class_data_sharing:
        return None
    target = archive_path()
    if target.is_file():
        return target
    from lakehouse.backends.local import LocalBackend
    from lakehouse.datagen import GenConfig, generate
    from lakehouse.pipeline import medallion_jobs

    target.parent.mkdir(parents=True, exist_ok=True)
    _prune(target)
    log(f"==> building the class-data archive of local Spark jobs (once per Java/Spark/jars): {target}")
    with tempfile.TemporaryDirectory(prefix="lakehouse-cds-") as tmp:
        root = Path(tmp) / "lake"
        local = settings.model_copy(
            update={  # a scratch root; one fused job per run
                "storage": settings.storage.model_copy(update={"root": str(root)}),
                "pipeline": settings.pipeline.model_copy(update={"job_per_layer": False}),
            }
        )
        generate(
            root / "landing",
            GenConfig(start=TRAINING_START, days=2, seed=7, events_per_day=300, orders_per_day=60, users_initial=40),
        )
        dump = Path(tmp) / "archive.jsa"
        # the second run MERGEs into the tables the first created: the classes of every path
        runs: list[tuple[list[str], list[str]]] = [
            (["bronze", "silver"], []),
            (["bronze", "silver", "gold"], [f"-XX:ArchiveClassesAtExit={dump}"]),
        ]
        for i, (layers, options) in enumerate(runs):
            day = TRAINING_START + dt.timedelta(days=i)
            (job,) = medallion_jobs(layers, local, start=day, end=day, run_id=f"cds-training-{i}")
            result = LocalBackend(local, java_options=options).run(job, log=lambda _line: None)
            log(f"    training run {i + 1}/{len(runs)} ({', '.join(layers)}) done in {result.duration_s:.0f}s")
        if not dump.is_file():
            log("warning: the JVM wrote no class-data archive; local jobs start without one")
            return None
        tmp_target = target.with_suffix(".tmp")
        shutil.move(str(dump), tmp_target)
        tmp_target.rename(target)
    log(f"==> class-data archive ready: {target} ({target.stat().st_size // 2**20} MiB)")
    return target


def _prune(keep: Path, max_idle_s: float = 7 * 86400) -> None:
    """Delete the other archives nobody has read for ``max_idle_s`` (their clone or .venv is gone)."""
    now = time.time()
    for other in keep.parent.glob("*.jsa"):
        with contextlib.suppress(OSError):
            if other != keep and now - other.stat().st_atime > max_idle_s:
                other.unlink()


def main(argv: list[str] | None = None) -> int:
    """CLI: ``ensure`` builds the archive; ``path`` prints where it is (or would be)."""
    from lakehouse.settings import get_settings

    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.cds", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["ensure", "path"])
    args = parser.parse_args(argv)
    try:
        if args.command == "path":
            print(archive_path())
            return 0
        ensure(get_settings(), log=lambda line: print(line, file=sys.stderr, flush=True))
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
