"""The bad-input battery: every kind of bad row lands somewhere named, and the counts add up.

Each case lands one day of orders (five good rows plus the bad ones), runs bronze and silver
in-process on real Delta tables under a contract, and checks: good + quarantined + dropped ==
input, the exact failed rules and reason of every quarantined row, and quality/metrics rows equal
to those counts.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from spark_jobs import medallion
from spark_jobs.cli import batch_parser, check_batch
from spark_jobs.contract import DEFAULT_CONTRACTS_DIR

pytestmark = [pytest.mark.contracts, pytest.mark.spark]
DAY = dt.date(2026, 3, 1)


def order(oid: str, **over: Any) -> dict[str, Any]:
    row = {
        "order_id": oid,
        "user_id": "u1",
        "amount": 10.5,
        "status": "completed",
        "created_at": "2026-03-01T10:00:00Z",
        "updated_at": "2026-03-01T10:00:00Z",
    }
    row.update(over)
    return row


GOOD = [json.dumps(order(f"g{i}", amount=10 + i)) for i in range(5)]


@dataclass
class Case:
    name: str
    lines: list[str]
    good: int
    quarantined: dict[str, tuple[list[str], str]] = field(default_factory=dict)
    """record key (or raw line when no key) -> (failed rules, reason substring)"""
    dropped: int = 0
    contract: dict[str, Any] = field(default_factory=dict)
    """overrides applied to contracts/orders.yaml: {"field:amount": {...}} or top-level keys"""


CASES = [
    Case(
        "malformed_json",
        ['{"order_id": "m1", "amount": ', "not json"],
        good=5,
        quarantined={
            '{"order_id": "m1", "amount": ': (["malformed_json"], "not a JSON object"),
            "not json": (["malformed_json"], "not a JSON object"),
        },
    ),
    Case(
        "null_required",
        [json.dumps(order("n1", user_id=None))],
        good=5,
        quarantined={"n1": (["user_id.required"], "user_id is missing")},
    ),
    Case(
        "out_of_range",
        [json.dumps(order("r1", amount=-5)), json.dumps(order("r2", amount=200000))],
        good=5,
        quarantined={
            "r1": (["amount.min"], "amount=-5 is below the minimum 0"),
            "r2": (["amount.max"], "amount=200000 is above the maximum 100000"),
        },
    ),
    Case(
        "out_of_range_dropped",
        [json.dumps(order("r1", amount=-5))],
        good=5,
        dropped=1,
        contract={"field:amount": {"on_violation": "drop"}},
    ),
    Case(
        "status_not_allowed",
        [json.dumps(order("s1", status="shipped"))],
        good=5,
        quarantined={
            "s1": (
                ["status.allowed_values"],
                'status="shipped" is not one of [pending, completed, cancelled, refunded]',
            )
        },
    ),
    Case("duplicate_key", [GOOD[0], GOOD[1]], good=5, dropped=2),
    Case(
        "duplicate_key_quarantined",
        [GOOD[0]],
        good=5,
        quarantined={"g0": (["order_id.unique"], "duplicate: order_id=g0")},
        contract={"quality": [{"type": "uniqueness", "columns": ["order_id"], "action": "quarantine"}]},
    ),
    Case(
        "wrong_type",
        [json.dumps(order("w1", amount="ten")), json.dumps(order("w2", created_at="yesterday"))],
        good=5,
        quarantined={
            "w1": (["amount.type"], "amount=ten is not a valid decimal(10,2)"),
            "w2": (["created_at.type"], "created_at=yesterday is not a valid timestamp"),
        },
    ),
    Case(
        "implausible_timestamps",
        [json.dumps(order("t1", created_at="1900-01-01T00:00:00Z")),
         json.dumps(order("t2", updated_at="9999-12-31T23:59:59Z")),
         json.dumps(order("t3", created_at="1999-12-31T23:59:59Z", updated_at="1999-12-31T23:59:59Z"))],
        good=5,
        quarantined={
            "t1": (["created_at.plausible"],
                   "created_at=1900-01-01T00:00:00Z is outside the plausible window [2000-01-01, now + 1 day]"),
            "t2": (["updated_at.plausible"], "updated_at=9999-12-31T23:59:59Z is outside the plausible window"),
            "t3": (["created_at.plausible", "updated_at.plausible"], "created_at=1999-12-31T23:59:59Z is outside"),
        },
    ),
    Case(
        "new_column",
        [json.dumps({**order("c1"), "coupon": "X"})],
        good=0,
        quarantined={
            k: (["schema.new_columns"], "undeclared column(s) coupon") for k in ["g0", "g1", "g2", "g3", "g4", "c1"]
        },
    ),
    Case(
        "renamed_column",
        [json.dumps({k if k != "amount" else "order_amount": v for k, v in order("x1").items()})],
        good=0,
        quarantined={
            **{
                k: (["schema.new_columns"], "undeclared column(s) order_amount") for k in ["g0", "g1", "g2", "g3", "g4"]
            },
            "x1": (["amount.required", "schema.new_columns"], "amount is missing"),
        },
    ),
]


def _contracts(tmp: Path, overrides: dict[str, Any]) -> Path:
    out = tmp / "contracts"
    shutil.copytree(DEFAULT_CONTRACTS_DIR, out)
    doc = yaml.safe_load((out / "orders.yaml").read_text())
    for key, value in overrides.items():
        if key.startswith("field:"):
            next(f for f in doc["schema"] if f["name"] == key[6:]).update(value)
        else:
            doc[key] = value
    doc.pop("sla", None)  # freshness is tested separately; historical dates would breach it
    (out / "orders.yaml").write_text(yaml.safe_dump(doc))
    return out


def _run(
    spark: SparkSession, root: Path, contracts: Path, layers: str = "bronze,silver", run_id: str = "run-1"
) -> list[Any]:
    p = batch_parser("m", "")
    p.add_argument("--layers", type=lambda v: v.split(","))
    args = check_batch(
        p,
        p.parse_args(
            [
                "--root",
                str(root),
                "--start",
                DAY.isoformat(),
                "--end",
                DAY.isoformat(),
                "--contracts-dir",
                str(contracts),
                "--sources",
                "orders",
                "--layers",
                layers,
                "--run-id",
                run_id,
            ]
        ),
    )
    return medallion.run(spark, args)


def _land(root: Path, lines: list[str], day: dt.date = DAY) -> None:
    d = root / "landing" / "orders" / f"date={day.isoformat()}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "part-00000.json").write_text("".join(line + "\n" for line in lines))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(spark: SparkSession, tmp_path: Path, case: Case) -> None:
    root = tmp_path / "lake"
    lines = GOOD + case.lines
    _land(root, lines)
    reports = _run(spark, root, _contracts(tmp_path, case.contract))
    silver = next(t for t in reports[1].tables if t["table"] == "orders")

    q = (
        spark.read.format("delta").load(str(root / "warehouse/quarantine/orders"))
        if (root / "warehouse/quarantine/orders").exists()
        else None
    )
    got = {}
    for r in q.collect() if q is not None else []:
        got[r.record_key if r.record_key is not None else r.raw] = (list(r.failed_rules), r.reason, r.run_id)
    assert set(got) == set(case.quarantined)
    for key, (rules, reason) in case.quarantined.items():
        assert got[key][0] == rules, key
        assert reason in got[key][1], (key, got[key][1])
        assert got[key][2] == "run-1"

    n_silver = spark.read.format("delta").load(str(root / "warehouse/silver/orders")).count()
    assert (silver["good"], silver["quarantined"], silver["dropped"]) == (
        case.good,
        len(case.quarantined),
        case.dropped,
    )
    assert silver["good"] + silver["quarantined"] + silver["dropped"] == len(lines) == silver["rows_read"]
    assert n_silver == case.good

    metrics = {
        r.rule: r
        for r in spark.read.format("delta")
        .load(str(root / "warehouse/quality/metrics"))
        .where("table = 'orders' AND run_id = 'run-1'")
        .collect()
    }
    for r in metrics.values():
        assert r.evaluated == (len(lines) if r.rule != "row_count" else 1)
        assert r.passed + r.failed == r.evaluated
    per_rule: dict[str, int] = {}
    for rules, _ in case.quarantined.values():
        for rule in rules:
            per_rule[rule] = per_rule.get(rule, 0) + 1
    for rule, n in per_rule.items():
        if rule == "schema.new_columns":
            continue  # the rule covers the whole batch; the per-column drift metric counts rows
        assert metrics[rule].failed == n, rule
    assert metrics["order_id.unique"].failed == (case.dropped if case.name.startswith("duplicate") else 0) + (
        1 if case.name == "duplicate_key_quarantined" else 0
    )
    if case.name == "new_column":
        assert metrics["schema.new_column:coupon"].failed == 1
    if case.name == "renamed_column":
        assert metrics["schema.missing_column:amount"].failed == 1
        assert metrics["schema.new_column:order_amount"].failed == 1


def test_file_names_with_spaces_and_non_ascii_are_ingested_once(spark: SparkSession, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    folder = root / "landing" / "orders" / f"date={DAY.isoformat()}"
    folder.mkdir(parents=True)
    names = ["orders march.json", "bestellungen-für-märz.json", "a+b%20c.json"]
    for i, name in enumerate(names):
        (folder / name).write_text(json.dumps(order(f"f{i}")) + "\n")
    contracts = _contracts(tmp_path, {})
    first = _run(spark, root, contracts)[0].tables[0]
    assert (first["files_new"], first["rows_written"]) == (3, 3)
    bronze = spark.read.format("delta").load(str(root / "warehouse/bronze/orders"))
    assert sorted(r._source_file for r in bronze.collect()) == sorted(names)
    again = _run(spark, root, contracts, run_id="run-2")[0].tables[0]
    assert (again["files_landed"], again["files_new"], again["rows_written"]) == (3, 0, 0)
    assert spark.read.format("delta").load(str(root / "warehouse/bronze/orders")).count() == 3


def test_new_column_is_merged_when_the_contract_allows_it(spark: SparkSession, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _land(root, [*GOOD, json.dumps({**order("c1"), "coupon": "SPRING"})])
    reports = _run(spark, root, _contracts(tmp_path, {"evolution": {"new_columns": "allow"}}))
    silver = reports[1].tables[0]
    assert (silver["good"], silver["quarantined"], silver["undeclared_columns"]) == (6, 0, ["coupon"])
    rows = {
        r.order_id: r.coupon for r in spark.read.format("delta").load(str(root / "warehouse/silver/orders")).collect()
    }
    assert rows == {**{f"g{i}": None for i in range(5)}, "c1": "SPRING"}


def test_fail_rule_stops_the_batch_and_keeps_gold_untouched(spark: SparkSession, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    contracts = _contracts(tmp_path, {"field:amount": {"on_violation": "fail"}})
    earlier = DAY - dt.timedelta(days=1)
    _land(
        root, [json.dumps(order("e1", created_at="2026-02-28T09:00:00Z", updated_at="2026-02-28T09:00:00Z"))], earlier
    )
    p = batch_parser("m", "")
    p.add_argument("--layers", type=lambda v: v.split(","))
    ok = check_batch(
        p,
        p.parse_args(
            [
                "--root",
                str(root),
                "--start",
                earlier.isoformat(),
                "--end",
                earlier.isoformat(),
                "--contracts-dir",
                str(contracts),
                "--sources",
                "orders",
                "--layers",
                "bronze,silver,gold",
            ]
        ),
    )
    medallion.run(spark, ok)
    gold_before = sorted(
        tuple(r) for r in spark.read.format("delta").load(str(root / "warehouse/gold/daily_revenue")).collect()
    )
    silver_before = spark.read.format("delta").load(str(root / "warehouse/silver/orders")).count()

    _land(root, [*GOOD, json.dumps(order("f1", amount=-1))])
    reports = _run(spark, root, contracts, layers="bronze,silver,gold", run_id="run-fail")
    assert [r.job for r in reports] == ["bronze", "silver"]  # gold never ran
    assert reports[1].violations == {"orders": ["amount.min"]}
    assert spark.read.format("delta").load(str(root / "warehouse/silver/orders")).count() == silver_before
    gold_after = sorted(
        tuple(r) for r in spark.read.format("delta").load(str(root / "warehouse/gold/daily_revenue")).collect()
    )
    assert gold_after == gold_before
    m = (
        spark.read.format("delta")
        .load(str(root / "warehouse/quality/metrics"))
        .where("run_id = 'run-fail' AND rule = 'amount.min'")
        .first()
    )
    assert (m.action, m.failed, m.evaluated) == ("fail", 1, 6)
