"""The lakehouse command's temporary Prefect server registers no block types at its start (it
would import every installed integration first); a block the command saves still registers its
own type, and a user's setting wins. Real temporary servers on fresh Prefect homes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.support import run_prefect_script

pytestmark = pytest.mark.e2e

SCRIPT = """
import json, sys
from lakehouse.prefect_env import apply
apply()  # what the lakehouse command does before Prefect loads
from prefect import flow
from prefect.blocks.system import Secret

@flow
def probe() -> int:
    return 42

out = {"result": probe()}
if "--save" in sys.argv:
    Secret(value="not-a-real-secret").save("probe", overwrite=True)
print(json.dumps(out))
"""


def _run(home: Path, *args: str, **env: str) -> dict[str, object]:
    return run_prefect_script(SCRIPT, home, *args, **env)


def _block_types(home: Path) -> set[str]:
    with sqlite3.connect(home / "prefect.db") as db:
        return {row[0] for row in db.execute("select slug from block_type")}


def test_the_commands_server_registers_no_block_types_and_a_saved_block_brings_its_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert _run(home)["result"] == 42
    assert _block_types(home) == set()  # Prefect's default would have registered dozens
    _run(home, "--save")
    assert "secret" in _block_types(home) and "kubernetes-credentials" not in _block_types(home)

    # the user's own setting wins: their server registers every installed integration's types
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    _run(theirs, PREFECT_SERVER_REGISTER_BLOCKS_ON_START="true", PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION="true")
    assert {"secret", "kubernetes-credentials", "dbt-cli-profile"} <= _block_types(theirs)
