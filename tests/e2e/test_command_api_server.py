"""The lakehouse command starts Prefect's temporary API server itself, before it imports its
flows: the flow runs inside land in the Prefect home's database with their logs, and the server
is gone when the command ends. With a Prefect API configured, no server is started. Real
servers on fresh Prefect homes, in processes of their own (Prefect's client-side workers are
process-wide)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psutil
import pytest

from tests.e2e.support import run_prefect_script

pytestmark = pytest.mark.e2e

SCRIPT = """
import json, sys, threading
from lakehouse.prefect_env import apply, command_api_server, wait_for_api, _COMMAND_SERVER
apply()  # what the lakehouse command does before Prefect loads
from prefect import flow, get_run_logger
from prefect.settings import get_current_settings

@flow(name="probe-command-server")
def probe() -> int:
    get_run_logger().info("a line the probe logged")
    return 42

out = {}
with command_api_server():
    out["url"] = get_current_settings().api.url
    seen = []  # what a thread that did not copy this context sees (dbt's node threads are such)
    thread = threading.Thread(target=lambda: seen.append(get_current_settings().api.url))
    thread.start()
    thread.join()
    out["thread_url"] = seen[0]
    out["pid"] = _COMMAND_SERVER[0].process.pid if _COMMAND_SERVER else None
    if "--run" in sys.argv:
        wait_for_api()
        out["result"] = probe()
print(json.dumps(out))
"""


def _run(home: Path, *args: str, **env: str) -> dict[str, object]:
    return run_prefect_script(SCRIPT, home, *args, **env)


def test_the_flow_runs_go_to_the_commands_own_server_with_their_logs_and_it_stops(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = _run(home, "--run")
    assert out["result"] == 42
    assert str(out["url"]).startswith("http://127.0.0.1:") and str(out["url"]).endswith("/api")
    assert out["thread_url"] == out["url"]  # no second temporary server for another thread
    assert isinstance(out["pid"], int) and not psutil.pid_exists(out["pid"])  # stopped with the command
    with sqlite3.connect(home / "prefect.db") as db:
        runs = db.execute(
            "select r.id, r.state_type from flow_run r join flow f on f.id = r.flow_id where f.name = ?",
            ("probe-command-server",),
        ).fetchall()
        assert [state for _, state in runs] == ["COMPLETED"]
        logged = [m for (m,) in db.execute("select message from log where flow_run_id = ?", (runs[0][0],))]
    assert "a line the probe logged" in logged  # sent before the server stopped


def test_a_configured_api_is_used_as_it_is(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    out = _run(home, PREFECT_API_URL="http://127.0.0.1:9/api")  # nothing is asked of it here
    assert out == {"url": "http://127.0.0.1:9/api", "thread_url": "http://127.0.0.1:9/api", "pid": None}
    assert not (home / "prefect.db").exists()
