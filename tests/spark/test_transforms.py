"""Pure transforms on tiny inline DataFrames with exact expected rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from spark_jobs.contract import RULE_NAMES, load_contracts
from spark_jobs.transforms import bronze, gold, quality, silver

pytestmark = pytest.mark.spark
CONTRACTS = load_contracts()
ORDERS, USERS, EVENTS = CONTRACTS["orders"], CONTRACTS["users"], CONTRACTS["events"]
T0 = dt.datetime(2026, 1, 1, 0, 0)
D1 = dt.date(2026, 1, 1)


def _lines(spark: SparkSession, *values: str, day: dt.date = D1):
    return spark.createDataFrame(
        [(v, "part-0.json", day) for v in values], "value string, _source_file string, _landing_date date"
    )


def test_bronze_keeps_every_line_raw_and_flags_malformed(spark: SparkSession) -> None:
    lines = _lines(
        spark,
        '{"user_id": "u1", "email": "a@x", "country": "DE", "updated_at": "2026-01-01T00:00:00Z"}',
        '{"user_id": "u2", "email": "b@x"',
        "not json",
        "[1, 2]",
        '{"user_id": null, "email": "c@x"}',
    )
    out = bronze.parse_landing(lines, USERS, batch_id="b1", ingested_at=T0)
    assert out.columns == [*USERS.columns, *bronze.METADATA_COLUMNS]
    expected = spark.createDataFrame(
        [
            ("u1", "a@x", "DE", "2026-01-01T00:00:00Z", False),
            (None, None, None, None, True),
            (None, None, None, None, True),
            (None, None, None, None, True),
            (None, "c@x", None, None, False),
        ],
        "user_id string, email string, country string, updated_at string, _malformed boolean",
    )
    assertDataFrameEqual(out.select(*USERS.columns, "_malformed"), expected)
    meta = out.select("_batch_id", "_landing_date", "_ingested_at", "_source_file").distinct().collect()
    assert [tuple(r) for r in meta] == [("b1", D1, T0, "part-0.json")]
    assert sorted(r._raw for r in out.collect()) == sorted(r.value for r in lines.collect())


def test_contract_rules_name_every_failed_rule(spark: SparkSession) -> None:
    rows = bronze.parse_landing(
        _lines(
            spark,
            '{"order_id": "o1", "user_id": "u1", "amount": 10.5, "status": "completed", '
            '"created_at": "2026-01-01T10:00:00Z", "updated_at": "2026-01-01T10:00:00Z"}',
            '{"order_id": "o2", "user_id": "u1", "amount": "ten", "status": "pending", '
            '"created_at": "2026-01-01T10:00:00Z", "updated_at": "2026-01-01T10:00:00Z"}',
            '{"order_id": "o3", "user_id": "u1", "amount": 1, "status": "pending", '
            '"created_at": "yesterday", "updated_at": "2026-01-01T10:00:00Z"}',
            '{"order_id": "  ", "amount": 1}',
            '{"order_id": null}',
            "{broken",
        ),
        ORDERS,
        batch_id="b",
        ingested_at=T0,
    )
    out = quality.evaluate(rows, quality.row_rules(ORDERS)).select("order_id", "_failed_rules", "_action")
    missing = ["order_id.required", "user_id.required", "status.required", "created_at.required", "updated_at.required"]
    expected = spark.createDataFrame(
        [
            ("o1", [], None),
            ("o2", ["amount.type"], "quarantine"),
            ("o3", ["created_at.type"], "quarantine"),
            ("  ", missing, "quarantine"),
            (None, [*missing[:2], "amount.required", *missing[2:]], "quarantine"),
            (None, ["malformed_json"], "quarantine"),
        ],
        "order_id string, _failed_rules array<string>, _action string",
    )
    assertDataFrameEqual(out, expected)


def test_rule_names_are_the_catalogue_the_readme_lists(spark: SparkSession) -> None:
    """Every rule name the shipped contracts compile to (plus schema drift and malformed lines)
    is one entry of ``RULE_NAMES``, the catalogue the README's table is rendered from,
    and every entry is produced by some contract."""
    import re

    from tests.kafka.streaming_support import RULES as DEAD_LETTER_RULES

    names = {r.name for c in CONTRACTS.values() for r in quality.row_rules(c)}
    names |= {r.name for r in quality.row_rules(EVENTS, drifted_batches=["b"], new_columns=["coupon"])}
    names |= {quality.MALFORMED} | {n for rules in DEAD_LETTER_RULES.values() for n in rules}
    columns = {c for contract in CONTRACTS.values() for c in contract.columns}
    patterns = {
        entry: re.compile("^" + re.escape(entry).replace(re.escape("<column>"), f"({'|'.join(columns)})") + "$")
        for entry in RULE_NAMES
    }
    matched = {name: [e for e, p in patterns.items() if p.match(name)] for name in sorted(names)}
    assert {n: m for n, m in matched.items() if len(m) != 1} == {}
    assert {m[0] for m in matched.values()} == set(RULE_NAMES)


def test_silver_types_partition_and_latest_per_key(spark: SparkSession) -> None:
    def line(eid: str, t: str, amount: str = "null") -> str:
        return (
            f'{{"event_id": "{eid}", "user_id": "u1", "event_type": "purchase", '
            f'"amount": {amount}, "event_time": "{t}"}}'
        )

    raw = _lines(
        spark,
        line("e1", "2026-01-01T10:00:00Z", "5.25"),
        line("e1", "2026-01-01T10:00:00Z", "5.25"),
        line("e2", "2025-12-31T23:59:59Z"),
        line("e3", "2026-01-01T01:00:00Z", "1"),
        line("e3", "2026-01-01T02:00:00Z", "2"),
    )
    parsed = bronze.parse_landing(raw, EVENTS, batch_id="b", ingested_at=T0)
    valid = quality.evaluate(parsed, quality.row_rules(EVENTS)).where("_action IS NULL")
    out = silver.latest_per_key(silver.typed(valid, EVENTS), EVENTS)
    expected = spark.createDataFrame(
        [
            ("e1", Decimal("5.25"), dt.datetime(2026, 1, 1, 10), D1),
            ("e2", None, dt.datetime(2025, 12, 31, 23, 59, 59), dt.date(2025, 12, 31)),
            ("e3", Decimal("2.00"), dt.datetime(2026, 1, 1, 2), D1),
        ],
        "event_id string, amount decimal(10,2), event_time timestamp, event_date date",
    )
    assertDataFrameEqual(out.select("event_id", "amount", "event_time", "event_date"), expected)
    assert dict(out.dtypes)["amount"] == "decimal(10,2)"
    assert silver.VERSIONS not in out.columns
    # the same rows, each kept one saying how many rows its key had: 2 + 1 + 2 = the 5 lines
    counted = silver.latest_per_key(silver.typed(valid, EVENTS), EVENTS, count_versions=True)
    assert sorted((r.event_id, r[silver.VERSIONS]) for r in counted.collect()) == [("e1", 2), ("e2", 1), ("e3", 2)]


def test_gold_aggregates(spark: SparkSession) -> None:
    events = spark.createDataFrame(
        [
            ("e1", "purchase", Decimal("2.50"), dt.datetime(2026, 1, 1, 10, 5)),
            ("e2", "purchase", Decimal("1.25"), dt.datetime(2026, 1, 1, 10, 55)),
            ("e3", "page_view", None, dt.datetime(2026, 1, 1, 10, 30)),
            ("e4", "purchase", Decimal("4.00"), dt.datetime(2026, 1, 1, 11, 0)),
        ],
        "event_id string, event_type string, amount decimal(10,2), event_time timestamp",
    )
    assertDataFrameEqual(
        gold.hourly_stats(events),
        spark.createDataFrame(
            [
                (dt.datetime(2026, 1, 1, 10), "purchase", 2, Decimal("3.75")),
                (dt.datetime(2026, 1, 1, 10), "page_view", 1, Decimal("0.00")),
                (dt.datetime(2026, 1, 1, 11), "purchase", 1, Decimal("4.00")),
            ],
            "hour timestamp, event_type string, event_count long, total_amount decimal(20,2)",
        ),
    )
    orders = spark.createDataFrame(
        [
            ("o1", "u1", Decimal("10.00"), "completed", dt.datetime(2026, 1, 1, 9)),
            ("o2", "u1", Decimal("20.01"), "pending", dt.datetime(2026, 1, 1, 12)),
            ("o3", "u2", Decimal("99.00"), "cancelled", dt.datetime(2026, 1, 1, 13)),
            ("o4", "u3", Decimal("5.00"), "refunded", dt.datetime(2026, 1, 2, 1)),
        ],
        "order_id string, user_id string, amount decimal(10,2), status string, created_at timestamp",
    )
    assertDataFrameEqual(
        gold.daily_revenue(orders),
        spark.createDataFrame(
            [
                (D1, 2, 1, Decimal("30.01"), Decimal("15.01")),  # 15.005 rounds half up
                (dt.date(2026, 1, 2), 1, 1, Decimal("5.00"), Decimal("5.00")),
            ],
            "date_day date, total_orders long, unique_customers long, total_revenue decimal(20,2), "
            "avg_order_value decimal(12,2)",
        ),
    )
    users = spark.createDataFrame([("u1", "DE"), ("u2", "FR")], "user_id string, country string")
    assertDataFrameEqual(
        gold.daily_revenue_by_country(orders, users),
        spark.createDataFrame(
            [(D1, "DE", 2, Decimal("30.01")), (dt.date(2026, 1, 2), "unknown", 1, Decimal("5.00"))],
            "date_day date, country string, total_orders long, total_revenue decimal(20,2)",
        ),
    )
    plan = gold.daily_revenue_by_country(orders, users)._jdf.queryExecution().executedPlan().toString()
    assert "BroadcastHashJoin" in plan or "BroadcastExchange" in plan
