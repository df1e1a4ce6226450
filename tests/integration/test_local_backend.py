"""The local backend against real spark-submit runs."""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from lakehouse import cds
from lakehouse.backends.local import LocalBackend
from lakehouse.errors import SparkJobError, SparkJobTimeout
from lakehouse.jobs import SparkJob
from lakehouse.pipeline import show_tables_job
from lakehouse.settings import Settings
from tests.integration.support import OVERRIDES, show_conf_args, shown_conf

pytestmark = pytest.mark.spark


def _procs_with(tag: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(tag in part for part in (p.info["cmdline"] or [])):
                found.append(p)
        except psutil.Error:
            continue
    return found


def _wait_gone(tag: str, seconds: float = 15.0) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while (left := _procs_with(tag)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def test_success_streams_log_and_metrics() -> None:
    lines: list[str] = []
    result = LocalBackend(Settings()).run(
        SparkJob(name="diag-ok", entrypoint="spark_jobs.diagnostics", args=("--rows", "4321")),
        log=lines.append,
    )
    assert result.state == "COMPLETED" and result.exit_code == 0
    assert "diagnostics: counted 4321 rows" in lines
    assert result.metrics[0]["rows_read"] == 4321
    assert not any(line.startswith("LAKEHOUSE_METRICS") for line in lines)
    # make setup built the class-data archive; the driver JVM started from it
    archive = cds.archive_path()
    assert archive.is_file(), f"`make setup` builds {archive}"
    assert f"diagnostics: driver class-data archive: {archive}" in lines


def test_the_settings_spark_conf_wins_over_the_preset_in_the_driver() -> None:
    """spark-submit passes the settings' conf; the job's session keeps it, and the preset fills
    only the keys the launcher left unset (before, it overrode every key it has)."""
    lines: list[str] = []
    settings = Settings(spark={"mode": "submit", "conf": OVERRIDES})
    keys = (*OVERRIDES, "spark.sql.adaptive.skewJoin.enabled")
    LocalBackend(settings).run(
        SparkJob(name="diag-conf", entrypoint="spark_jobs.diagnostics", args=("--rows", "1", *show_conf_args(*keys))),
        log=lines.append,
    )
    assert shown_conf(lines) == {**OVERRIDES, "spark.sql.adaptive.skewJoin.enabled": "true"}


def test_class_data_sharing_off_starts_the_driver_without_the_archive() -> None:
    lines: list[str] = []
    off = Settings(spark={"class_data_sharing": False})
    LocalBackend(off).run(
        SparkJob(name="diag-no-cds", entrypoint="spark_jobs.diagnostics", args=("--rows", "1")),
        log=lines.append,
    )
    assert "diagnostics: driver class-data archive: none" in lines


def test_failure_raises_with_exit_code_and_log_tail() -> None:
    with pytest.raises(SparkJobError) as err:
        LocalBackend(Settings()).run(
            SparkJob(name="diag-fail", entrypoint="spark_jobs.diagnostics", args=("--exit-code", "3")),
            log=lambda _: None,
        )
    assert err.value.exit_code == 3 and err.value.state == "FAILED"
    assert "diagnostics: failing on purpose with exit code 3" in err.value.log_tail
    assert "exit code 3" in str(err.value) and "failing on purpose" in str(err.value)


def test_timeout_kills_the_whole_process_group() -> None:
    tag = f"timeout-{uuid.uuid4().hex}"
    job = SparkJob(
        name="diag-timeout",
        entrypoint="spark_jobs.diagnostics",
        args=("--sleep", "600", "--tag", tag),
        timeout_seconds=40,
    )
    seen: list[int] = []

    def log(line: str) -> None:
        if "sleeping" in line:
            seen.extend(p.pid for p in _procs_with(tag))

    started = time.monotonic()
    with pytest.raises(SparkJobTimeout) as err:
        LocalBackend(Settings()).run(job, log=log)
    assert err.value.state == "TIMEOUT"
    assert time.monotonic() - started < 40 + 30
    assert len(seen) >= 2  # the launcher JVM and the Python driver were running
    assert _wait_gone(tag) == []


def test_interrupted_caller_stops_the_job() -> None:
    """Cancellation path: whatever interrupts the caller (Prefect cancellation, a task timeout,
    Ctrl-C) propagates out of the backend only after the job's process group is gone."""
    tag = f"cancel-{uuid.uuid4().hex}"
    job = SparkJob(name="diag-cancel", entrypoint="spark_jobs.diagnostics", args=("--sleep", "600", "--tag", tag))

    class Cancelled(BaseException):
        pass

    def log(line: str) -> None:
        if "sleeping" in line:
            raise Cancelled

    with pytest.raises(Cancelled):
        LocalBackend(Settings()).run(job, log=log)
    assert _wait_gone(tag) == []


def test_a_killed_driver_leaves_no_temporary_files() -> None:
    """Every run has a private temporary directory (the JVM's, Spark's local dir, the Python
    driver's): what a JVM killed by SIGKILL cannot delete goes with it, not into /tmp."""
    tag = f"kill9-{uuid.uuid4().hex}"
    job = SparkJob(name="diag-kill9", entrypoint="spark_jobs.diagnostics", args=("--sleep", "600", "--tag", tag))
    dirs: list[str] = []
    held: list[str] = []

    def log(line: str) -> None:
        if line.startswith("diagnostics: temporary dirs: "):
            dirs.extend(re.findall(r"(?:java|spark|python) ([^\s,]+)", line))
        if "sleeping" in line:
            held.extend(p.name for p in Path(dirs[0]).iterdir())
            (launcher, *_) = _procs_with(tag)
            os.killpg(os.getpgid(launcher.pid), signal.SIGKILL)

    with pytest.raises(SparkJobError) as err:
        LocalBackend(Settings()).run(job, log=log)
    assert err.value.exit_code == -signal.SIGKILL
    assert len(dirs) == 3 and len(set(dirs)) == 1, dirs
    private = Path(dirs[0])
    assert private.name.startswith("lakehouse-spark-") and private.parent == Path(tempfile.gettempdir())
    # the driver wrote there (its block manager, Spark's own temp dir) ...
    assert any(name.startswith("blockmgr-") for name in held) and any(n.startswith("spark-") for n in held), held
    # ... and it is gone although the JVM never ran its shutdown hooks
    assert not private.exists()
    assert _wait_gone(tag) == []


def test_in_process_run_uses_the_live_session_and_leaves_it_running(spark: Any, tmp_path: Path) -> None:
    """After an in-process dbt build the flow process runs Spark: a short job runs there."""
    users = str(tmp_path / "warehouse" / "silver" / "users")
    spark.createDataFrame([("u1",)], "user_id string").write.format("delta").save(users)
    spark.createDataFrame([("u2",), ("u3",)], "user_id string").write.format("delta").mode("append").save(users)
    settings = Settings(storage={"root": str(tmp_path)})
    lines: list[str] = []
    result = LocalBackend(settings).run_in_process(show_tables_job(settings), log=lines.append)
    assert result.state == "COMPLETED" and result.exit_code == 0
    assert [line.split()[:3] for line in lines if line.startswith("silver.users")] == [["silver.users", "3", "1"]]
    assert "time travel silver/users: version 0 has 1 rows, version 1 has 3 rows; 2 rows differ from version 0" in lines
    assert spark.range(5).count() == 5  # the caller's session was not stopped

    diag = LocalBackend(settings).run_in_process(
        SparkJob(name="diag-here", entrypoint="spark_jobs.diagnostics", args=("--rows", "77")), log=lines.append
    )
    assert diag.metrics[0]["rows_read"] == 77
    assert "diagnostics: counted 77 rows" in lines and not any(x.startswith("LAKEHOUSE_METRICS") for x in lines)


def test_in_process_failure_raises_with_exit_code_and_log_tail(spark: Any) -> None:
    with pytest.raises(SparkJobError) as err:
        LocalBackend(Settings()).run_in_process(
            SparkJob(name="diag-fail-here", entrypoint="spark_jobs.diagnostics", args=("--exit-code", "4")),
            log=lambda _: None,
        )
    assert err.value.exit_code == 4 and err.value.state == "FAILED"
    assert "diagnostics: failing on purpose with exit code 4" in err.value.log_tail
    assert spark.range(2).count() == 2
