"""The README's own commands record their runs where `make ui` looks.

A user runs ``.venv/bin/lakehouse medallion ...`` from any directory with no ``PREFECT_*``
variable set, then ``make ui``: the run must be in that server's database. Both are the real
commands (the CLI's flow run on its temporary API server, then ``prefect server start`` through
make), so a run recorded in Prefect's default home (``~/.prefect``) fails this test.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import _kill_group, free_port

pytestmark = [pytest.mark.spark, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 1, 1)


def _api(port: int, path: str, body: dict[str, Any] | None = None, method: str = "POST", attempts: int = 6) -> Any:
    """One API call. A 503 is the server's "retry later" (SQLite was locked by one of its own
    services' writes): retried a second later, as Prefect's client does, up to ``attempts`` times."""
    data = json.dumps(body).encode() if body is not None else None
    for attempt in range(1, attempts + 1):
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or attempt == attempts:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def _wait_healthy(port: int, server: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"make ui exited with {server.returncode}"
        try:
            _api(port, "/health", method="GET")
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"make ui's server did not answer on port {port} within {timeout:.0f}s")


def test_a_run_started_with_the_cli_shows_in_make_ui(tmp_path: Path) -> None:
    # a user's shell: no Prefect variable (make test exports PREFECT_HOME), another directory
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["LAKEHOUSE_STORAGE__ROOT"] = str(tmp_path / "lake")
    lakehouse = str(Path(sys.executable).parent / "lakehouse")
    subprocess.run(
        [
            lakehouse,
            "generate",
            "--start",
            DAY.isoformat(),
            "--days",
            "1",
            "--events-per-day",
            "40",
            "--orders-per-day",
            "10",
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    started = dt.datetime.now(dt.UTC)
    run = subprocess.run(
        [lakehouse, "medallion", "--start", DAY.isoformat(), "--layers", "bronze", "--no-dbt-marts"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"flow run recorded in {REPO / '.lakehouse' / 'prefect'}" in run.stdout

    port = free_port()
    server = subprocess.Popen(
        ["make", "-s", "-C", str(REPO), "ui", f"UI_PORT={port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    found: list[dict[str, Any]] = []
    try:
        _wait_healthy(port, server)
        found = _api(
            port,
            "/flow_runs/filter",
            {
                "flow_runs": {
                    "name": {"any_": [f"medallion {DAY}..{DAY}"]},
                    "start_time": {"after_": started.isoformat()},
                }
            },
        )
        assert [(r["name"], r["state"]["type"]) for r in found] == [(f"medallion {DAY}..{DAY}", "COMPLETED")]
        assert _api(port, f"/flows/{found[0]['flow_id']}", method="GET")["name"] == "medallion"
    finally:
        for r in found:  # leave the project's database as the user had it
            _api(port, f"/flow_runs/{r['id']}", method="DELETE")
        _kill_group(server)
