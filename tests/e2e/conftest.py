"""Prefect's test harness (a temporary server) and lakehouse roots for flow runs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse.settings import get_settings


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def use_root(monkeypatch: pytest.MonkeyPatch):
    """Point the settings (and every job launched) at a given lakehouse root."""

    def _use(root: Path) -> None:
        monkeypatch.setenv("LAKEHOUSE_STORAGE__ROOT", str(root))
        get_settings.cache_clear()

    yield _use
    get_settings.cache_clear()
    os.environ.pop("LAKEHOUSE_STORAGE__ROOT", None)
