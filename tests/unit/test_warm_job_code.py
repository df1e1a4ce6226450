"""The warm server's job code follows its files (spark_jobs.warm_server.JobCode), on a package of
its own: an edited job module is imported again, the server's own modules are reported stale."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from spark_jobs.warm_server import JobCode


def _write(path: Path, text: str) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a later time whatever the clock's step


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)  # as a user's server writes it
    root = tmp_path / "lh_probe_pkg"
    (root / "sub").mkdir(parents=True)
    _write(root / "__init__.py", "")
    _write(root / "own.py", "NAME = 'own v1'\n")
    _write(root / "sub" / "__init__.py", "")
    _write(root / "sub" / "helper.py", "def value():\n    return 'helper v1'\n")
    _write(root / "job.py", "from lh_probe_pkg.sub.helper import value\n\ndef main():\n    return value()\n")
    sys.path.insert(0, str(tmp_path))
    try:
        yield root
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "lh_probe_pkg" or n.startswith("lh_probe_pkg.")]:
            del sys.modules[name]


def _job() -> str:
    return str(importlib.import_module("lh_probe_pkg.job").main())


def test_an_edited_job_module_is_imported_again_and_its_users_with_it(package: Path) -> None:
    importlib.import_module("lh_probe_pkg.own")  # imported before: the server's own module
    code = JobCode("lh_probe_pkg")
    assert code.module_of("sub/helper.py") == "lh_probe_pkg.sub.helper"
    assert code.module_of("sub/__init__.py") == "lh_probe_pkg.sub"
    assert _job() == "helper v1"
    assert code.refresh() == [] and _job() == "helper v1"  # nothing changed: nothing forgotten
    job_module = sys.modules["lh_probe_pkg.job"]

    _write(package / "sub" / "helper.py", "def value():\n    return 'helper v2, edited'\n")
    assert code.refresh() == ["sub/helper.py"]
    # the job that imported the helper by name is imported again too, so it sees the new helper
    assert _job() == "helper v2, edited" and sys.modules["lh_probe_pkg.job"] is not job_module
    from lh_probe_pkg import job  # the package's attribute is the new module, not the old one

    assert job is sys.modules["lh_probe_pkg.job"]
    assert code.refresh() == []

    # an edit that keeps the size, within the second of the cached bytecode, is read too
    helper = package / "sub" / "helper.py"
    stamp = helper.stat().st_mtime_ns
    helper.write_text("def value():\n    return 'helper v3, edited'\n")
    os.utime(helper, ns=(stamp + 1000, stamp + 1000))
    assert code.refresh() == ["sub/helper.py"] and _job() == "helper v3, edited"

    (package / "extra.py").write_text("X = 1\n")  # an added file counts as a change
    assert code.refresh() == ["extra.py"]
    (package / "extra.py").unlink()
    assert code.refresh() == ["extra.py"] and code.stale() == []


def test_an_edited_own_module_is_stale_and_stays_as_it_was(package: Path) -> None:
    own = importlib.import_module("lh_probe_pkg.own")
    code = JobCode("lh_probe_pkg", also_own=["lh_probe_pkg.sub.helper"])
    assert _job() == "helper v1"
    _write(package / "own.py", "NAME = 'own v2, edited'\n")
    _write(package / "sub" / "helper.py", "def value():\n    return 'helper v2'\n")
    assert code.stale() == ["own.py", "sub/helper.py"]
    assert code.refresh() == []  # only own modules changed: nothing is forgotten
    assert sys.modules["lh_probe_pkg.own"] is own and own.NAME == "own v1"
    assert code.stale() == ["own.py", "sub/helper.py"]  # still: only a new process takes them in
