"""The freshness flow on real Spark and Prefect: a source that went silent is noticed, a breach
is reported once (not at every check), its end is reported, and a source that never had data is
breached from the first check. Messages go through a real custom-webhook block to a receiver on
127.0.0.1; the state is the real Prefect Variable."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from tests.e2e.support import ORDER, contracts_with, latest_run_name, write_orders
from tests.fixtures.webhook import WebhookReceiver

pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]


def _write(spark: SparkSession, root: Path, table: str, key: str, column: str, at: dt.datetime) -> None:
    rows = [(f"{table}-{uuid.uuid4().hex[:6]}", at.replace(tzinfo=None))]
    spark.createDataFrame(rows, f"{key} string, {column} timestamp").write.format("delta").mode("append").save(
        str(root / "warehouse" / "silver" / table)
    )


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Any:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from lakehouse.settings import get_settings

    receiver = WebhookReceiver()
    name = f"sla-{uuid.uuid4().hex[:8]}"
    CustomWebhookNotificationBlock(
        name=name, url=receiver.url, json_data={"subject": "{{ subject }}", "body": "{{ body }}"}
    ).save(name)
    monkeypatch.setenv("LAKEHOUSE_NOTIFICATIONS__BLOCK", f"custom-webhook/{name}")
    get_settings.cache_clear()
    yield receiver
    receiver.close()
    get_settings.cache_clear()


def test_silence_is_noticed_reported_once_and_its_end_reported(
    spark: SparkSession, tmp_path: Path, use_root: Any, webhook: WebhookReceiver
) -> None:
    from prefect.variables import Variable

    from flows.freshness import freshness
    from lakehouse.sla import STATE_VARIABLE

    Variable.set(STATE_VARIABLE, {}, overwrite=True)
    now = dt.datetime.now(dt.UTC)
    # the shipped contracts: orders 48 hours (updated_at), users 7 days (updated_at), events 48
    # hours (event_time). orders went silent 3 days ago; users stopped 8 days ago and will come
    # back; events never had a row.
    _write(spark, tmp_path, "orders", "order_id", "updated_at", now - dt.timedelta(days=3))
    _write(spark, tmp_path, "users", "user_id", "updated_at", now - dt.timedelta(days=8))
    use_root(tmp_path)

    first = {r["table"]: r for r in freshness()}
    assert {t: (r["breached"], r["reported"]) for t, r in first.items()} == {
        "orders": (True, "breached"),
        "users": (True, "breached"),
        "events": (True, "breached"),
    }
    assert first["events"]["newest"] is None
    assert latest_run_name("freshness") == "freshness all"
    assert 3 * 86400 - 120 < first["orders"]["age_seconds"] < 3 * 86400 + 600
    assert first["orders"]["limit_seconds"] == 48 * 3600

    second = {r["table"]: r for r in freshness()}  # nothing changed: nothing reported again
    assert {t: (r["breached"], r["reported"]) for t, r in second.items()} == {
        "orders": (True, ""),
        "users": (True, ""),
        "events": (True, ""),
    }

    _write(spark, tmp_path, "users", "user_id", "updated_at", dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    third = {r["table"]: r for r in freshness()}
    assert {t: (r["breached"], r["reported"]) for t, r in third.items()} == {
        "orders": (True, ""),
        "users": (False, "recovered"),
        "events": (True, ""),
    }

    subjects = sorted(m["subject"] for m in webhook.snapshot())
    assert subjects == [
        "Freshness SLA breached: events",
        "Freshness SLA breached: orders",
        "Freshness SLA breached: users",
        "Freshness SLA recovered: users",
    ]
    body = next(m["body"] for m in webhook.snapshot() if m["subject"] == "Freshness SLA breached: events")
    assert "it has no rows at all" in body
    state = Variable.get(STATE_VARIABLE)
    assert state["users"]["breached_since"] is None
    assert state["orders"]["breached_since"] is not None and state["events"]["breached_since"] is not None


def test_sla_fail_stops_the_batch_before_anything_commits(
    spark: SparkSession, tmp_path: Path, use_root: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sla.action: fail`` with a batch that leaves orders stale: the run fails (exit 65, naming
    sla.freshness) and silver/orders gets no commit at all."""
    from flows.medallion import medallion
    from lakehouse.errors import CONTRACT_VIOLATION_EXIT, SparkJobError

    contracts = contracts_with(tmp_path / "contracts", "orders", lambda doc: doc["sla"].update(action="fail"))
    root = tmp_path / "lake"
    write_orders(root, [ORDER])  # updated 2026-02-01: months old
    monkeypatch.setenv("LAKEHOUSE_CONTRACTS_DIR", str(contracts))
    use_root(root)

    state = medallion(start_date=dt.date(2026, 2, 1), layers=["bronze", "silver"], dbt_marts=False, return_state=True)
    assert state.is_failed()
    with pytest.raises(SparkJobError) as err:
        state.result()
    assert err.value.exit_code == CONTRACT_VIOLATION_EXIT
    assert "orders: sla.freshness" in str(err.value)
    assert not (root / "warehouse" / "silver" / "orders" / "_delta_log").exists()  # nothing committed
    bronze = spark.read.format("delta").load(str(root / "warehouse" / "bronze" / "orders"))
    assert bronze.count() == 1  # bronze keeps the raw line: a rerun after the fix promotes it
