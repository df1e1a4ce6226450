"""Helpers of the flow tests: contracts with one change, a day of hand-written order lines, a
Prefect script in a process of its own."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from spark_jobs.contract import DEFAULT_CONTRACTS_DIR

ORDER = {
    "order_id": "o1",
    "user_id": "u1",
    "amount": 5,
    "status": "completed",
    "created_at": "2026-02-01T10:00:00Z",
    "updated_at": "2026-02-01T10:00:00Z",
}
"""A valid order line of 2026-02-01; tests vary it."""


def contracts_with(target: Path, source: str, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the shipped contracts in ``target`` with ``change`` applied to the document of
    ``<source>.yaml``."""
    shutil.copytree(DEFAULT_CONTRACTS_DIR, target)
    path = target / f"{source}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))
    return target


def field(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The schema entry of column ``name`` in a contract document."""
    return next(f for f in doc["schema"] if f["name"] == name)


def write_orders(root: Path, rows: list[dict[str, Any]], day: str = "2026-02-01") -> None:
    """One landing file of ``rows`` (JSON lines) for ``day`` under ``root``."""
    folder = root / "landing" / "orders" / f"date={day}"
    folder.mkdir(parents=True)
    (folder / "part-00000.json").write_text("".join(json.dumps(r) + "\n" for r in rows))


def latest_run_name(flow_name: str) -> str:
    """The name of the newest run of the flow ``flow_name`` in the test harness's API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        (latest,) = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), sort=FlowRunSort.START_TIME_DESC, limit=1
        )
    return str(latest.name)


def run_prefect_script(script: str, home: Path, *args: str, **env: str) -> dict[str, Any]:
    """Run ``script`` in a new Python process on the Prefect home ``home`` (no other ``PREFECT_*``
    setting of this process, ``env`` added; from ``home``, where no prefect.toml is read) and
    return the JSON object its last line prints. Prefect's client-side workers are process-wide:
    a test of a server of its own runs in a process of its own."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**keep, "PREFECT_HOME": str(home), **env},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out
