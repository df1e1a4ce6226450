"""The alert hooks: one message per failed top-level run, none from a subflow, and a broken
notification channel never turns into a failure of its own."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.states import Crashed, Failed

import tasks.notify as notify_module
import tasks.quality as quality_module

FLOW = SimpleNamespace(name="medallion")


def _run(parent: uuid.UUID | None = None) -> Any:
    return SimpleNamespace(
        id=uuid.uuid4(), name="brave-otter", parameters={"start_date": "2026-01-01"}, parent_task_run_id=parent
    )


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    calls: list[tuple[str, str, str]] = []

    def record(event: str, subject: str, body: str, **_: Any) -> bool:
        calls.append((event, subject, body))
        return True

    monkeypatch.setattr(notify_module, "notify", record)
    monkeypatch.setattr(quality_module, "notify", record)
    return calls


def test_a_failed_run_sends_one_message_naming_run_and_reason(sent: list[tuple[str, str, str]]) -> None:
    run = _run()
    notify_module.notify_flow_failure(FLOW, run, Failed(message="silver exited with code 65"))
    notify_module.notify_flow_failure(FLOW, run, Crashed(message="worker lost"))
    assert [(e, s) for e, s, _ in sent] == [
        ("lakehouse.flow.failed", "Flow run medallion/brave-otter failed"),
        ("lakehouse.flow.failed", "Flow run medallion/brave-otter crashed"),
    ]
    assert "silver exited with code 65" in sent[0][2] and "2026-01-01" in sent[0][2]


def test_a_deployed_run_leaves_the_message_to_the_automation(sent: list[tuple[str, str, str]]) -> None:
    """lakehouse-flow-run-failed (lakehouse blocks) reports it from Prefect's state event."""
    run = _run()
    run.deployment_id = uuid.uuid4()
    notify_module.notify_flow_failure(FLOW, run, Failed(message="silver exited with code 65"))
    assert sent == []


def test_a_subflow_leaves_the_message_to_its_parent(sent: list[tuple[str, str, str]]) -> None:
    notify_module.notify_flow_failure(
        SimpleNamespace(name="dbt-build"), _run(parent=uuid.uuid4()), Failed(message="test not_null_stg_orders failed")
    )
    assert sent == []


def test_a_broken_channel_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any, **__: Any) -> bool:
        raise ConnectionError("webhook unreachable")

    from prefect.variables import Variable

    store: dict[str, Any] = {}  # the SLA state variable, without a Prefect API in this tier
    monkeypatch.setattr(Variable, "get", classmethod(lambda cls, name, default=None: store.get(name, default)))
    monkeypatch.setattr(
        Variable, "set", classmethod(lambda cls, name, value, overwrite=False: store.update({name: value}))
    )
    monkeypatch.setattr(notify_module, "notify", broken)
    monkeypatch.setattr(quality_module, "notify", broken)
    notify_module.notify_flow_failure(FLOW, _run(), Failed(message="boom"))
    metrics = [
        {
            "table": "events",
            "quality": [{"rule": "sla.freshness", "failed": 1, "newest": "x", "age_seconds": 9, "limit_seconds": 1}],
        },
        {
            "table": "orders",
            "quality": [{"rule": "sla.freshness", "failed": 0, "newest": "y", "age_seconds": 0, "limit_seconds": 1}],
        },
    ]
    assert quality_module.track_sla(metrics, "run-1") == [("breached", "events")]
    assert store["lakehouse-sla-state"]["events"]["breached_since"] is not None
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], ConnectionError)]
    assert [r.getMessage() for r in logged] == [
        "could not send the notification for Flow run medallion/brave-otter failed",
        "could not send the SLA notification for events",
    ]
