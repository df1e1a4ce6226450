"""Architecture rules that must hold (see ARCHITECTURE notes in the README)."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> set[str]:
    names: set[str] = set()
    for f in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
                if node.module == "lakehouse" or node.module.startswith("lakehouse."):
                    names.add(node.module)
    return names


def test_spark_jobs_never_import_the_orchestration_side() -> None:
    found = _imports("spark_jobs")
    assert not found & {"prefect", "kubernetes", "flows", "tasks", "prefect_kubernetes"}
    assert not {n for n in found if n.startswith("lakehouse")}


@pytest.mark.parametrize("package", ["flows", "tasks"])
def test_flows_and_tasks_never_import_pyspark(package: str) -> None:
    assert "pyspark" not in _imports(package) and "delta" not in _imports(package)


def test_importing_the_flow_loads_no_pyspark() -> None:
    code = "import sys, flows.medallion; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_entrypoint_modules_shadow_no_top_level_module() -> None:
    """spark-submit puts spark_jobs/ itself on sys.path: a module named like a stdlib or installed
    package (io.py, inspect.py, ...) would shadow it inside the driver."""
    clashes = []
    for f in (ROOT / "spark_jobs").glob("*.py"):
        name = f.stem
        if name == "__init__":
            continue
        if name in sys.stdlib_module_names:
            clashes.append(name)
            continue
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and Path(spec.origin).parent != ROOT / "spark_jobs":
            clashes.append(name)
    assert clashes == []
