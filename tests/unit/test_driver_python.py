"""spark_jobs/ runs in the Spark image's own Python, 3.10 (Dockerfile, target spark), so it must
parse with the 3.10 grammar and use nothing the 3.10 standard library lacks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SPARK_JOBS = Path(__file__).resolve().parents[2] / "spark_jobs"
# Standard-library names added in 3.11 that driver code could plausibly reach for.
NEW_IN_311 = {
    ("datetime", "UTC"),
    ("typing", "Self"),
    ("typing", "LiteralString"),
    ("typing", "Never"),
    ("typing", "NotRequired"),
    ("typing", "Required"),
    ("typing", "assert_never"),
    ("enum", "StrEnum"),
    ("asyncio", "TaskGroup"),
    ("asyncio", "timeout"),
}
NEW_MODULES_311 = {"tomllib", "wsgiref.types"}
NEW_BUILTINS_311 = {"ExceptionGroup", "BaseExceptionGroup"}


def _modules(tree: ast.Module) -> dict[str, str]:
    """Local name -> module for ``import m`` / ``import m as x``."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out[alias.asname or alias.name] = alias.name
    return out


def _uses(source: str) -> list[str]:
    tree = ast.parse(source, feature_version=(3, 10))
    found = []
    mods = _modules(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [f"{node.module}.{a.name}" for a in node.names if (node.module, a.name) in NEW_IN_311]
            found += [node.module] if node.module in NEW_MODULES_311 else []
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name in NEW_MODULES_311]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = mods.get(node.value.id)
            if module and (module, node.attr) in NEW_IN_311:
                found.append(f"{module}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in NEW_BUILTINS_311:
            found.append(node.id)
    return found


@pytest.mark.parametrize("path", sorted(SPARK_JOBS.rglob("*.py")), ids=lambda p: str(p.relative_to(SPARK_JOBS)))
def test_driver_code_runs_on_python_310(path: Path) -> None:
    assert _uses(path.read_text()) == [], f"{path}: uses Python 3.11-only names"


def test_the_check_catches_311_only_code() -> None:
    assert _uses("import datetime as dt\nnow = dt.datetime.now(dt.UTC)\n") == ["datetime.UTC"]
    assert _uses("from typing import Self\n") == ["typing.Self"]
    assert _uses("import tomllib\n") == ["tomllib"]
    with pytest.raises(SyntaxError):
        _uses("try:\n    pass\nexcept* ValueError:\n    pass\n")
