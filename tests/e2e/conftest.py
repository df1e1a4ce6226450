"""Lakehouse roots for flow runs (Prefect's test harness: tests/conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lakehouse.settings import get_settings


@pytest.fixture
def use_root(monkeypatch: pytest.MonkeyPatch):
    """Point the settings (and every job launched) at a given lakehouse root."""

    def _use(root: Path) -> None:
        monkeypatch.setenv("LAKEHOUSE_STORAGE__ROOT", str(root))
        get_settings.cache_clear()

    yield _use
    get_settings.cache_clear()
    os.environ.pop("LAKEHOUSE_STORAGE__ROOT", None)
