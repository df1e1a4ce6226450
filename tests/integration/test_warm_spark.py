"""The warm local Spark (lakehouse/backends/warm.py, spark_jobs/warm_server.py), real processes.

Each test gets a server of its own (a conf key only it sets makes its own server key) and stops
it, or kills it, at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from lakehouse.backends.warm import WarmBackend, WarmServer, stop_all
from lakehouse.errors import SparkJobError, SparkJobTimeout
from lakehouse.jobs import SparkJob
from lakehouse.settings import REPO_ROOT, Settings
from tests.integration.support import OVERRIDES, show_conf_args, shown_conf

pytestmark = [pytest.mark.spark, pytest.mark.timeout(600)]


def _settings(conf: dict[str, str] | None = None, **spark: Any) -> Settings:
    own = {"spark.lakehouse.test.server": uuid.uuid4().hex, **(conf or {})}  # this test's own server
    return Settings(spark={"mode": "warm", "master": "local[2]", "conf": own, **spark})


@pytest.fixture
def warm() -> Iterator[WarmBackend]:
    backend = WarmBackend(_settings())
    yield backend
    _teardown(WarmServer(backend))


def _teardown(server: WarmServer) -> None:
    status = server.ping()
    server.stop(timeout=30)
    if status is not None and psutil.pid_exists(status["pid"]):
        os.kill(status["pid"], signal.SIGKILL)


def _diag(*args: str, timeout: float | None = None) -> SparkJob:
    return SparkJob(name="diag", entrypoint="spark_jobs.diagnostics", args=args, timeout_seconds=timeout)


def _quiet(line: str) -> None:
    return None


@pytest.fixture
def warm_alone(tmp_path: Path) -> Iterator[WarmBackend]:
    """A warm backend with a socket directory of its own (short: a socket path is limited)."""
    backend = WarmBackend(_settings(warm_dir=tempfile.mkdtemp(prefix="lh-w-")))
    yield backend
    _teardown(WarmServer(backend))
    shutil.rmtree(backend.settings.spark.warm_dir or "", ignore_errors=True)


def test_first_use_starts_the_server_later_runs_reuse_it(warm_alone: WarmBackend) -> None:
    warm = warm_alone
    server = WarmServer(warm)
    assert server.ping() is None
    lines: list[str] = []
    first = warm.run(_diag("--rows", "1234"), log=lines.append)
    assert first.metrics[0]["rows_read"] == 1234
    assert "diagnostics: counted 1234 rows" in lines
    # its temporary files are in a directory of its own beside the socket
    tmp = server.socket.with_suffix(".tmp")
    assert f"diagnostics: temporary dirs: java {tmp}, spark {tmp}, python {tmp}" in lines
    pid = server.ping()["pid"]  # type: ignore[index]
    second = warm.run(_diag("--rows", "99"), log=_quiet)
    assert second.metrics[0]["rows_read"] == 99
    status = server.ping()
    assert status is not None and status["pid"] == pid and status["runs"] == 2
    # its log is in the project's .lakehouse/, the socket private to the user
    assert server.log.is_relative_to(REPO_ROOT / ".lakehouse") and server.log.exists()
    assert oct(server.socket.parent.stat().st_mode & 0o777) == "0o700"
    with pytest.raises(SparkJobError) as err:  # an exit code comes back as it does from spark-submit
        warm.run(_diag("--exit-code", "3"), log=_quiet)
    assert err.value.exit_code == 3 and "failing on purpose" in "\n".join(err.value.log_tail)
    # `make down`: the servers of its socket directory, here this test's one
    assert stop_all(warm.settings) == 1
    assert server.ping() is None and not server.socket.exists() and not tmp.exists()


def test_the_settings_spark_conf_wins_over_the_preset_in_every_run() -> None:
    """The server's command carries the settings' conf; each run's session keeps it (the preset
    fills only what the launcher left unset)."""
    settings = _settings(OVERRIDES, warm_dir=tempfile.mkdtemp(prefix="lh-w-"))
    backend = WarmBackend(settings)
    try:
        for _ in range(2):  # the first run and a later one on the same server
            lines: list[str] = []
            backend.run(_diag("--rows", "1", *show_conf_args(*OVERRIDES)), log=lines.append)
            assert shown_conf(lines) == OVERRIDES
    finally:
        _teardown(WarmServer(backend))
        shutil.rmtree(settings.spark.warm_dir or "", ignore_errors=True)


def test_concurrent_runs_keep_their_own_session(warm: WarmBackend, tmp_path: Path) -> None:
    """Two runs (bronze and silver) at once on two roots: each silver table's commits carry its
    own run's id (the commit metadata is session conf, set by each run while the other runs)."""
    from lakehouse.datagen import GenConfig, generate

    day = dt.date(2026, 3, 1)
    roots = {}
    for name in ("a", "b"):
        roots[name] = tmp_path / name
        generate(roots[name] / "landing", GenConfig(start=day, days=1, events_per_day=400, orders_per_day=80))
    errors: list[BaseException] = []

    def bronze(name: str) -> None:
        args = ("--root", str(roots[name]), "--start", day.isoformat(), "--end", day.isoformat(), "--run-id", name)
        job = SparkJob(name="medallion", entrypoint="spark_jobs.medallion", args=(*args, "--layers", "bronze,silver"))
        try:
            warm.run(job, log=_quiet)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bronze, args=(n,)) for n in roots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == []
    for name, root in roots.items():
        for source in ("orders", "users", "events"):
            log = root / "warehouse" / "silver" / source / "_delta_log"
            commits = [
                json.loads(line)["commitInfo"]
                for f in sorted(log.glob("*.json"))
                for line in f.read_text().splitlines()
                if "commitInfo" in line
            ]
            assert commits and all(json.loads(c["userMetadata"])["run_id"] == name for c in commits), (name, source)


def test_timeout_cancels_that_run_only(warm: WarmBackend) -> None:
    warm.run(_diag(), log=_quiet)  # started and warm
    outcome: dict[str, Any] = {}

    def slow() -> None:
        try:
            warm.run(_diag("--busy", "300", timeout=8), log=_quiet)
        except BaseException as exc:
            outcome["error"] = exc

    started = time.monotonic()
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(2)
    other = warm.run(_diag("--rows", "77"), log=_quiet)  # runs beside it, untouched
    t.join(120)
    assert other.metrics[0]["rows_read"] == 77
    assert isinstance(outcome.get("error"), SparkJobTimeout), outcome
    assert "timed out" in str(outcome["error"])
    assert time.monotonic() - started < 60  # not the 300 s of its Spark job
    status = WarmServer(warm).ping()
    assert status is not None and status["active"] == []  # the server is still up, idle


def test_a_killed_client_cancels_its_run(warm: WarmBackend) -> None:
    """The flow process dies mid-run (a cancelled or crashed flow run): its Spark work stops."""
    server = WarmServer(warm)
    warm.run(_diag(), log=_quiet)
    code = (
        "import sys; from lakehouse.backends.warm import WarmBackend; from lakehouse.jobs import SparkJob; "
        "from lakehouse.settings import Settings; s = Settings.model_validate_json(sys.argv[1]); "
        "WarmBackend(s).run(SparkJob(name='diag', entrypoint='spark_jobs.diagnostics', args=('--busy', '300')), "
        "log=lambda line: print(line, flush=True))"
    )
    client = subprocess.Popen(
        [sys.executable, "-c", code, warm.settings.model_dump_json()], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    try:
        assert client.stdout is not None
        for line in client.stdout:
            if "a Spark job of 300s" in line:
                break
        status = server.ping()
        assert status is not None and len(status["active"]) == 1
        client.kill()
        client.wait(30)
        deadline = time.monotonic() + 60
        while (status := server.ping()) is not None and status["active"] and time.monotonic() < deadline:
            time.sleep(1)
        assert status is not None and status["active"] == []
    finally:
        if client.poll() is None:
            client.kill()


def test_a_server_killed_mid_run_fails_that_run_and_the_next_starts_a_new_one(warm: WarmBackend) -> None:
    server = WarmServer(warm)
    warm.run(_diag(), log=_quiet)
    pid = server.ping()["pid"]  # type: ignore[index]

    def kill_when_busy(line: str) -> None:
        if "a Spark job of" in line:
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(SparkJobError, match="stopped during the run") as err:
        warm.run(_diag("--busy", "300"), log=kill_when_busy)
    assert "the next run starts a new one" in str(err.value)
    again = warm.run(_diag("--rows", "5"), log=_quiet)
    assert again.metrics[0]["rows_read"] == 5
    status = server.ping()
    assert status is not None and status["pid"] != pid


def test_the_server_stops_after_its_idle_time() -> None:
    backend = WarmBackend(_settings(warm_idle_seconds=3))
    server = WarmServer(backend)
    try:
        backend.run(_diag(), log=_quiet)
        pid = server.ping()["pid"]  # type: ignore[index]
        deadline = time.monotonic() + 60
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the idle server is still running"
            time.sleep(0.5)
        assert server.ping() is None and not server.socket.exists()
        assert "idle for 3s: stopping" in server.log.read_text()
    finally:
        _teardown(server)


def test_a_run_the_server_closed_before_taking_it_goes_to_a_new_server(warm_alone: WarmBackend) -> None:
    """A server stopping (idle, `make down`) between the health check and the request: the run
    never started there, so it is submitted to a new server instead of failing. The stopping
    server is stood in for by a socket that answers the health check, then closes the run's
    connection unanswered and goes away (the timing cannot be had from a real one on demand)."""
    import socket as sockets

    server = WarmServer(warm_alone)
    listener = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    listener.bind(str(server.socket))
    listener.listen(4)
    seen: list[str] = []

    def stopping_server() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn, conn.makefile("rwb") as stream:
                op = json.loads(stream.readline())["op"]
                seen.append(op)
                if op == "ping":
                    stream.write(json.dumps({"ok": True, "pid": os.getpid(), "runs": 0, "active": []}).encode() + b"\n")
                    stream.flush()
                else:  # gone before the run's connection closes, as a stopping server is
                    listener.close()
                    server.socket.unlink()

    thread = threading.Thread(target=stopping_server, daemon=True)
    thread.start()
    lines: list[str] = []
    result = warm_alone.run(_diag("--rows", "321"), log=lines.append)
    thread.join(10)
    assert seen == ["ping", "run"]
    assert result.metrics[0]["rows_read"] == 321
    assert any("stopped before taking the run" in line for line in lines), lines
    status = server.ping()  # the run went to a real server started for it
    assert status is not None and status["pid"] != os.getpid() and status["runs"] == 1


def test_a_spark_connect_client_runs_sql_here_holds_the_server_and_needs_the_token(tmp_path: Path) -> None:
    """dbt's warm target: the server's Spark Connect endpoint answers SQL with the token only;
    while a client holds it the idle stop waits, a second client waits for the first (one
    catalog), and once released the server stops for idleness as before."""
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    from lakehouse.backends.warm import spark_connect
    from lakehouse.dbt import _ConnectBuilder
    from spark_jobs.conf import INTERPRETED_CONF

    backend = WarmBackend(_settings(warm_idle_seconds=3))
    settings = backend.settings
    server = WarmServer(backend)
    order: list[str] = []
    try:
        with spark_connect(settings, _quiet) as (url, token):
            assert url.startswith("sc://localhost:")
            good = ConnectSession.builder.remote(f"{url}/;token={token}").create()
            try:
                assert good.sql("select 40 + 2 as x").collect()[0]["x"] == 42
                good.sql(f"create table lh_t (a int) using delta location '{tmp_path / 't'}'").collect()
                good.sql("insert into lh_t values (1), (2), (3)").collect()
            finally:
                good.stop()
            # written through the server's catalog, with Delta: the log is on disk
            assert len(list((tmp_path / "t" / "_delta_log").glob("*.json"))) == 2
            # dbt's session on a small lakehouse: built with the session conf dbt_env hands it
            os.environ["DBT_LAKEHOUSE_SESSION_CONF"] = json.dumps(INTERPRETED_CONF)
            try:
                dbt_session = _ConnectBuilder().config("spark.remote", f"{url}/;token={token}").getOrCreate()
            finally:
                del os.environ["DBT_LAKEHOUSE_SESSION_CONF"]
            try:
                assert {k: dbt_session.conf.get(k) for k in INTERPRETED_CONF} == INTERPRETED_CONF
                assert dbt_session.sql(f"select sum(a) as s from delta.`{tmp_path / 't'}`").collect()[0]["s"] == 6
            finally:
                dbt_session.stop()
            bad = ConnectSession.builder.remote(f"{url}/;token=not-the-token").create()
            try:
                with pytest.raises(Exception, match=r"UNAUTHENTICATED|authentication"):
                    bad.sql("select 1").collect()
            finally:
                bad.stop()

            def second_client() -> None:
                with spark_connect(settings, lambda line: order.append(line)):
                    order.append("second in")

            waiter = threading.Thread(target=second_client, daemon=True)
            waiter.start()
            time.sleep(8)  # well past the idle time: the lease keeps it up, the second waits
            status = server.ping()
            assert status is not None and status["leases"] == 1
            assert "second in" not in order and any("waiting for another" in line for line in order)
            order.append("first out")
        waiter.join(60)
        assert order[-2:] == ["first out", "second in"]
        pid = server.ping()["pid"]  # type: ignore[index]
        deadline = time.monotonic() + 60
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the released server did not stop for idleness"
            time.sleep(0.5)
    finally:
        _teardown(server)


def _wait_warm_up_over(server: WarmServer, timeout: float = 540) -> str:
    """Wait until the server's warm-up has ended; return its log line."""
    deadline = time.monotonic() + timeout
    while (status := server.ping()) is not None and status["warming"]:
        assert time.monotonic() < deadline, "the warm-up did not end"
        time.sleep(0.5)
    assert status is not None, "the server died during its warm-up"
    lines = [line for line in server.log.read_text().splitlines() if line.startswith("warm-up ")]
    assert lines, "no warm-up line in the server's log"
    return lines[-1]


def test_a_new_server_warms_up_on_sample_data_and_deletes_it(warm_alone: WarmBackend) -> None:
    """With nothing to do, a new server runs the medallion job over the two sample days (its
    warm-up), then deletes their scratch directory; the warm-up is no run of anybody's."""
    # a whole warm-up: 56 s on 2 idle cores, 168 s and more beside the rest of `make test`
    server = WarmServer(warm_alone)
    scratch = server.socket.with_suffix(".warm-up")
    server.ensure(_quiet)
    assert server.ping()["warming"] is True  # type: ignore[index]
    assert (scratch / "plan.json").is_file() and (scratch / "lake" / "landing").is_dir()
    line = _wait_warm_up_over(server)
    assert line.startswith("warm-up done: 2 run(s) in"), line
    assert not scratch.exists()
    status = server.ping()
    assert status is not None and status["runs"] == 0 and status["active"] == []
    assert warm_alone.run(_diag("--rows", "12"), log=_quiet).metrics[0]["rows_read"] == 12


def test_a_run_that_starts_during_the_warm_up_stops_it(warm_alone: WarmBackend) -> None:
    """Real work never shares the new driver with the warm-up: the first run cancels it (its
    Spark jobs by their tag, not the run's), and its scratch directory still goes."""
    server = WarmServer(warm_alone)
    server.ensure(_quiet)
    assert server.ping()["warming"] is True  # type: ignore[index]
    result = warm_alone.run(_diag("--rows", "4321"), log=_quiet)
    assert result.metrics[0]["rows_read"] == 4321
    line = _wait_warm_up_over(server, timeout=60)  # cancelled: far sooner than a whole warm-up
    assert line.startswith("warm-up given way to real work: 0 run(s)"), line
    assert not server.socket.with_suffix(".warm-up").exists()


def test_without_warm_up_a_new_server_only_serves(tmp_path: Path) -> None:
    backend = WarmBackend(_settings(warm_up=False, warm_dir=tempfile.mkdtemp(prefix="lh-w-")))
    server = WarmServer(backend)
    try:
        server.ensure(_quiet)
        assert server.ping()["warming"] is False  # type: ignore[index]
        assert not server.socket.with_suffix(".warm-up").exists()
        assert "warm-up" not in server.log.read_text()
    finally:
        _teardown(server)
        shutil.rmtree(backend.settings.spark.warm_dir or "", ignore_errors=True)


def _touch_later(path: Path) -> tuple[int, int]:
    """Move ``path``'s modification time a second on; return its times before."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    return st.st_atime_ns, st.st_mtime_ns


def test_edited_job_code_runs_on_the_same_server_and_its_own_code_restarts_it(tmp_path: Path) -> None:
    """A data engineer edits a transform between two runs: the second run runs the edit, on the
    same warm driver. An edit of the server's own code (here spark_jobs/conf.py) restarts the
    server at the next run, once nothing runs on it."""
    backend = WarmBackend(_settings(warm_up=False, warm_dir=tempfile.mkdtemp(prefix="lh-w-")))
    server = WarmServer(backend)
    name = f"_probe_{uuid.uuid4().hex[:8]}"
    probe = REPO_ROOT / "spark_jobs" / f"{name}.py"
    job = SparkJob(name="probe", entrypoint=f"spark_jobs.{name}")
    own = REPO_ROOT / "spark_jobs" / "conf.py"
    source = (
        "def main(argv):\n"
        "    from spark_jobs.session import running_session\n"
        "    print({!r}, running_session().range({}).count())\n"
    )
    times = None
    try:
        probe.write_text(source.format("probe v1", 3))
        lines: list[str] = []
        backend.run(job, log=lines.append)
        assert "probe v1 3" in lines
        pid = server.ping()["pid"]  # type: ignore[index]

        probe.write_text(source.format("probe v2, edited", 5))
        lines.clear()
        backend.run(job, log=lines.append)
        assert "probe v2, edited 5" in lines and "probe v1 3" not in lines
        assert any(x.startswith("[warm] job code changed since the last run") and f"{name}.py" in x for x in lines)
        status = server.ping()
        assert status is not None and status["pid"] == pid and status["stale"] == []

        times = _touch_later(own)
        assert server.ping()["stale"] == ["conf.py"]  # type: ignore[index]
        lines.clear()
        backend.run(job, log=lines.append)
        assert "the warm local Spark's own code changed (spark_jobs/conf.py): restarting it" in lines
        assert "probe v2, edited 5" in lines
        status = server.ping()
        assert status is not None and status["pid"] != pid and status["stale"] == []
        with contextlib.suppress(psutil.NoSuchProcess):  # the old one stops: Spark's stop, then exit
            psutil.Process(pid).wait(timeout=60)
    finally:
        if times is not None:
            os.utime(own, ns=times)
        probe.unlink(missing_ok=True)
        _teardown(server)
        shutil.rmtree(backend.settings.spark.warm_dir or "", ignore_errors=True)


def test_a_jvm_fatal_error_retires_the_server_and_the_retry_gets_a_new_one(warm: WarmBackend) -> None:
    """A run that hits an error after which the JVM is not to be trusted (here a real
    OutOfMemoryError of the driver) fails with that error. The server takes no new run: it ends
    the run it has (another client's), then stops; the retry waits for that and gets a new JVM."""
    server = WarmServer(warm)
    warm.run(_diag("--rows", "3"), log=_quiet)
    pid = server.ping()["pid"]  # type: ignore[index]
    busy_started = threading.Event()
    busy: list[Any] = []

    def other_client() -> None:
        def line(text: str) -> None:
            if "diagnostics: sleeping" in text:  # its Spark work done: it holds no task slot
                busy_started.set()

        busy.append(warm.run(_diag("--sleep", "40"), log=line))

    other = threading.Thread(target=other_client)
    other.start()
    try:
        assert busy_started.wait(120), "the other run did not start"
        lines: list[str] = []
        with pytest.raises(SparkJobError, match="exit code 1") as err:
            warm.run(_diag("--exhaust-heap"), log=lines.append)
        assert any(": java.lang.OutOfMemoryError: Java heap space" in line for line in lines), lines[-20:]
        assert "[warm] the driver JVM hit java.lang.OutOfMemoryError" in "\n".join(err.value.log_tail)
        status = server.ping()
        assert status is not None and status["pid"] == pid and len(status["active"]) == 1
        assert "java.lang.OutOfMemoryError" in status["retiring"]
        retry: list[str] = []
        again = warm.run(_diag("--rows", "5"), log=retry.append)
    finally:
        other.join(timeout=180)
    assert again.metrics[0]["rows_read"] == 5
    assert any("is retiring" in line for line in retry), retry
    assert busy and busy[0].exit_code == 0  # the run it had ended first, and well
    deadline = time.monotonic() + 60  # its socket went first; Spark's own stop may still run
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the retired server is still running"
        time.sleep(0.5)
    log = server.log.read_text()
    assert "hit java.lang.OutOfMemoryError" in log and "retired: stopping" in log
    status = server.ping()
    assert status is not None and status["pid"] != pid and status["retiring"] is None
