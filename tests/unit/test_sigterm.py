"""SIGTERM to a test session tears it down as Ctrl-C does (tests/fixtures/sigterm.py): a real
pytest process, stopped mid-test, must run its session fixture's teardown and stop the child
process that fixture started (as the Prefect harness and warm Spark servers are)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

SERVICE = textwrap.dedent(
    """
    import os, subprocess, time
    from pathlib import Path

    import pytest

    @pytest.fixture(scope="session")
    def service():
        child = subprocess.Popen(["sleep", "300"])
        Path(os.environ["CHILD_PID"]).write_text(str(child.pid))
        yield
        child.terminate()
        child.wait(10)
        Path(os.environ["TORN_DOWN"]).write_text("yes")
    """
)
"""A session fixture that starts a child process and stops it in its teardown."""

AFTER = textwrap.dedent(
    """
    def test_after_the_stop(service):
        Path(os.environ["REACHED"]).write_text("yes")
    """
)
"""The test that must not run once the session is stopped (last in the file: pytest runs in order)."""

INNER = (
    SERVICE
    + textwrap.dedent(
        """
    def test_runs_until_stopped(service):
        Path(os.environ["READY"]).write_text("ready")
        try:
            time.sleep(120)
        except KeyboardInterrupt:
            if os.environ.get("SWALLOW"):
                pass  # as a flow engine that catches BaseException may do
            else:
                raise
    """
    )
    + AFTER
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose (its parent has not reaped it yet)
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat


def _run_and_terminate(
    tmp_path: Path,
    plugin: bool,
    signals: int = 1,
    swallow: bool = False,
    inner: str = INNER,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], int, dict[str, Path]]:
    (tmp_path / "test_inner.py").write_text(inner)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    files = {k: tmp_path / k.lower() for k in ("READY", "TORN_DOWN", "CHILD_PID", "REACHED")}
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **{k: str(v) for k, v in files.items()}, **(extra_env or {})}
    env.pop("SWALLOW", None)
    if swallow:
        env["SWALLOW"] = "1"
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_inner.py"]
    if plugin:
        args[3:3] = ["-p", "tests.fixtures.sigterm"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not files["READY"].exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the inner test never started"
            time.sleep(0.1)
        for _ in range(signals):  # e.g. one to the process group and one from scripts/test.sh
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=90)
    finally:  # a failed check above leaves nothing running
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            if files["CHILD_PID"].exists() and _alive(pid := int(files["CHILD_PID"].read_text())):
                os.kill(pid, signal.SIGKILL)
    child = int(files["CHILD_PID"].read_text())
    return subprocess.CompletedProcess(args, proc.returncode, out), child, files


def _assert_stopped_after_its_teardown(
    done: subprocess.CompletedProcess[str], child: int, files: dict[str, Path]
) -> None:
    """The session ended as interrupted, ran no further test, and its teardown stopped its child."""
    assert done.returncode == 2, done.stdout  # pytest's "interrupted"
    assert "SIGTERM" in done.stdout
    assert not files["REACHED"].exists(), done.stdout
    assert files["TORN_DOWN"].read_text() == "yes", done.stdout
    assert not _alive(child)


@pytest.mark.parametrize("swallow", [False, True], ids=["interrupted", "interrupt-swallowed"])
def test_sigterm_stops_the_session_runs_its_teardown_and_stops_what_it_started(tmp_path: Path, swallow: bool) -> None:
    """Two SIGTERMs back to back (the second is the same stop): no further test runs, the
    session's teardown runs to its end, also when the test swallowed the interrupt."""
    done, child, files = _run_and_terminate(tmp_path, plugin=True, signals=2, swallow=swallow)
    _assert_stopped_after_its_teardown(done, child, files)


def test_without_the_plugin_sigterm_leaves_the_child_behind(tmp_path: Path) -> None:
    """The failure the plugin exists for (so the test above can tell it apart)."""
    done, child, files = _run_and_terminate(tmp_path, plugin=False)
    try:
        assert done.returncode == -signal.SIGTERM
        assert not files["TORN_DOWN"].exists()
        assert _alive(child)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


IN_A_FLOW = (
    SERVICE
    + textwrap.dedent(
        """
    from prefect import flow, task

    @task
    def wait():
        Path(os.environ["READY"]).write_text("ready")
        time.sleep(float(os.environ["TASK_SECONDS"]))

    @flow
    def waiting():
        wait.submit().result()

    def test_runs_until_stopped(service):
        waiting()
    """
    )
    + AFTER
)


@pytest.mark.e2e
def test_one_sigterm_while_a_flow_runs_in_the_session_stops_it_once_its_task_ends(
    tmp_path: Path, prefect_harness: None
) -> None:
    """While a flow runs in the process, Prefect's engine holds SIGTERM: the flow run crashes, its
    task runner waits for the task running in its thread, and then the engine hands the signal
    on to the handler it replaced. So one SIGTERM still stops the session, with its teardown and
    no further test, but only once that task has ended. Pins the hand-over
    (prefect.utilities.engine.capture_sigterm) across Prefect upgrades."""
    from prefect.settings import PREFECT_API_URL

    task_s = 8.0
    env = {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "TASK_SECONDS": str(task_s)}
    done, child, files = _run_and_terminate(tmp_path, plugin=True, signals=1, inner=IN_A_FLOW, extra_env=env)
    _assert_stopped_after_its_teardown(done, child, files)


INTERRUPT_MAIN = textwrap.dedent(
    """
    import _thread, threading, time

    import pytest

    def test_interrupt_main_reaches_the_main_thread():
        threading.Timer(0.2, _thread.interrupt_main).start()
        with pytest.raises(KeyboardInterrupt):
            time.sleep(3)
    """
)


def test_a_session_started_with_sigint_ignored_gets_keyboard_interrupt_back(tmp_path: Path) -> None:
    """A background job of a script (scripts/test.sh) starts with SIGINT ignored; without the
    plugin, ``_thread.interrupt_main()`` (a cancellation's way into the main thread) does nothing."""
    (tmp_path / "test_inner.py").write_text(INTERRUPT_MAIN)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def run(*plugin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, "test_inner.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )

    with_plugin = run("-p", "tests.fixtures.sigterm")
    assert with_plugin.returncode == 0, with_plugin.stdout
    without = run()
    assert without.returncode == 1, without.stdout  # the sleep ran out: no interrupt arrived
