"""What `make setup` (scripts/setup.sh) leaves in the environment the suite runs in."""

from __future__ import annotations

import importlib.util
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _uncompiled(files: list[Path]) -> list[Path]:
    """Those of ``files`` with no bytecode where Python looks for it."""
    return [f for f in files if not Path(importlib.util.cache_from_source(str(f))).is_file()]


@pytest.mark.parametrize("package", ["prefect", "dbt", "pyspark", "kubernetes"])
def test_installed_packages_are_compiled_to_bytecode(package: str) -> None:
    """Every module of the package has its bytecode, also those no process imported (only
    set-up's compile writes those): a process then reads it instead of compiling from source,
    which it would do on every start where PYTHONDONTWRITEBYTECODE is set."""
    root = Path(sysconfig.get_paths()["purelib"]) / package
    files = sorted(root.rglob("*.py"))
    assert len(files) > 50, root
    missing = _uncompiled(files)
    # a module this Python cannot compile (written for a newer one) is left without
    assert len(missing) <= len(files) // 100, missing[:10]


def test_project_modules_are_compiled_to_bytecode() -> None:
    files = [f for d in ("lakehouse", "flows", "tasks", "spark_jobs") for f in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 30
    # a module added since the last set-up shows here: `make setup` (or `make test`) compiles it
    assert _uncompiled(files) == [], "not compiled since the last `make setup`"
