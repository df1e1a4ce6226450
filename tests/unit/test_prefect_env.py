"""Flows the lakehouse command calls itself run without flow-run heartbeats; deployments and a
frequency the user set keep theirs."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.flow_engine import FlowRunEngine

from lakehouse.prefect_env import HEARTBEAT_ENV, direct_run


@flow
def probe() -> None:
    return None


def _heartbeat_seconds() -> int | None:
    """What the flow engine reads to decide whether to start its heartbeat thread."""
    return FlowRunEngine(flow=probe).heartbeat_seconds


def test_a_direct_run_sends_no_heartbeats_and_the_setting_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HEARTBEAT_ENV, raising=False)
    before = _heartbeat_seconds()
    assert before is not None and before >= 30  # Prefect's default: on
    with direct_run():
        assert _heartbeat_seconds() is None
    assert _heartbeat_seconds() == before


def test_a_frequency_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    monkeypatch.delenv(HEARTBEAT_ENV, raising=False)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 45}), direct_run():  # a profile's value
        assert _heartbeat_seconds() == 45
    # the environment read when the process started: kept even at Prefect's default value
    monkeypatch.setenv(HEARTBEAT_ENV, "180")
    with direct_run():
        assert _heartbeat_seconds() == 180
