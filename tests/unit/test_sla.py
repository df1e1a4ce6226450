"""Freshness SLA transitions: one alert when a breach starts, one when it ends, none in between."""

from __future__ import annotations

import datetime as dt

from lakehouse.sla import FreshnessCheck, checks_from_metrics, describe, transitions

T0 = dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.UTC)


def _check(table: str, breached: bool, newest: str | None = "2026-02-27 10:00:00") -> FreshnessCheck:
    return FreshnessCheck(table, breached, newest, None if newest is None else 158400.0, 172800.0)


def test_a_breach_is_reported_when_it_starts_and_when_it_ends_only() -> None:
    state: dict = {}
    kinds = []
    for hour, breached in enumerate([False, True, True, True, False, False, True]):
        state, changes = transitions(state, [_check("orders", breached)], T0 + dt.timedelta(hours=hour))
        kinds.append([k for k, _ in changes])
    assert kinds == [[], ["breached"], [], [], ["recovered"], [], ["breached"]]
    assert state["orders"]["breached_since"] == (T0 + dt.timedelta(hours=6)).isoformat(timespec="seconds")


def test_a_table_never_seen_and_breached_is_reported_and_others_keep_their_state() -> None:
    state = {"users": {"breached_since": "2026-02-28T06:00:00+00:00", "newest": None}}
    new, changes = transitions(state, [_check("events", True, newest=None)], T0)
    assert [(k, c.table) for k, c in changes] == [("breached", "events")]
    assert new["users"] == state["users"]  # not checked this time: unchanged
    assert new["events"] == {"breached_since": "2026-03-01T06:00:00+00:00", "newest": None}
    assert state == {"users": {"breached_since": "2026-02-28T06:00:00+00:00", "newest": None}}  # not mutated


def test_checks_come_from_the_jobs_freshness_metrics() -> None:
    metrics = [
        {
            "table": "orders",
            "quality": [
                {"rule": "amount.min", "failed": 3},
                {
                    "rule": "sla.freshness",
                    "action": "fail",
                    "failed": 1,
                    "newest": "2026-02-01 00:00:00",
                    "age_seconds": 9.5,
                    "limit_seconds": 5,
                },
            ],
        },
        {
            "table": "events",
            "quality": [
                {"rule": "sla.freshness", "failed": 1, "newest": "None", "age_seconds": None, "limit_seconds": 5}
            ],
        },
        {"table": "users"},
    ]
    assert checks_from_metrics(metrics) == [
        FreshnessCheck("orders", True, "2026-02-01 00:00:00", 9.5, 5, "fail"),
        FreshnessCheck("events", True, None, None, 5, "warn"),
    ]


def test_messages_say_what_is_stale_and_that_it_is_reported_once() -> None:
    subject, body = describe("breached", _check("orders", True), "run-7")
    assert subject == "Freshness SLA breached: orders"
    assert "newest row 2026-02-27 10:00:00 is 158400s old; the SLA allows 172800s (run run-7)" in body
    assert "Reported once" in body
    _, empty = describe("breached", _check("events", True, newest=None), "run-7")
    assert "it has no rows at all" in empty
    subject, body = describe("recovered", _check("orders", False), "run-8", since="2026-02-28T06:00:00+00:00")
    assert subject == "Freshness SLA recovered: orders" and "breached since 2026-02-28T06:00:00+00:00" in body
