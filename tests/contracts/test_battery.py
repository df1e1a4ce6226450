"""The bad-input battery: every kind of bad row lands somewhere named, and the counts add up.

Each case lands one day of orders (five good rows plus the bad ones), runs bronze and silver
in-process on real Delta tables under a contract, and checks: good + quarantined + dropped ==
input, the exact failed rules and reason of every quarantined row, and quality/metrics rows equal
to those counts.
"""

from __future__ import annotations

import datetime as dt
import gzip
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
        [
            json.dumps(order("t1", created_at="1900-01-01T00:00:00Z")),
            json.dumps(order("t2", updated_at="9999-12-31T23:59:59Z")),
            json.dumps(order("t3", created_at="1999-12-31T23:59:59Z", updated_at="1999-12-31T23:59:59Z")),
        ],
        good=5,
        quarantined={
            "t1": (
                ["created_at.plausible"],
                "created_at=1900-01-01T00:00:00Z is outside the plausible window [2000-01-01, now + 1 day]",
            ),
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
    spark: SparkSession,
    root: Path,
    contracts: Path,
    layers: str = "bronze,silver",
    run_id: str = "run-1",
    day: dt.date = DAY,
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
                day.isoformat(),
                "--end",
                day.isoformat(),
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


def _metric(spark: SparkSession, root: Path, run_id: str, rule: str) -> Any:
    """The quality/metrics row of ``rule`` in run ``run_id``."""
    return (
        spark.read.format("delta")
        .load(str(root / "warehouse/quality/metrics"))
        .where(f"run_id = '{run_id}' AND rule = '{rule}'")
        .first()
    )


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


def test_hostile_landing_files_every_line_accounted_for(spark: SparkSession, tmp_path: Path) -> None:
    """Encodings, line endings, an oversize line, special numbers, nesting, duplicate keys,
    timestamp forms, blank, empty and compressed files in one landing day: the run finishes,
    every line read is good or quarantined with a reason naming the problem, and a file of
    another format is reported, not skipped unnoticed."""
    root = tmp_path / "lake"
    folder = root / "landing" / "orders" / f"date={DAY.isoformat()}"
    folder.mkdir(parents=True)

    def line(oid: str, **over: Any) -> str:
        return json.dumps(order(oid, **over))

    files: dict[str, bytes] = {
        "bom.json": "\ufeff".encode() + f"{line('bom1')}\n{line('bom2')}\n".encode(),
        "latin1.json": (json.dumps(order("lat1", user_id="café"), ensure_ascii=False) + "\n").encode("latin-1"),
        "crlf.json": f"{line('crlf1')}\r\n{line('crlf2')}\r\n".encode(),
        "cr.json": f"{line('cr1')}\r{line('cr2')}\r".encode(),
        "big.json": (line("big1", user_id="u" * 2_000_000) + "\n").encode(),
        "numbers.json": "\n".join(
            [
                line("n1").replace('"amount": 10.5', '"amount": NaN'),
                line("n2").replace('"amount": 10.5', '"amount": Infinity'),
                line("n3", amount=1e308),
                line("n4", amount=-0.0),
                line("n5", amount="12.50"),
            ]
        ).encode()
        + b"\n",
        "nested.json": "\n".join(
            [
                line("x1", amount={"value": 5}),
                json.dumps(["not", "an", "object"]),
                "null",
                '"a string"',
                "42",
                line("x2", status=None),
                line("x3", user_id=["u1"]),
                line("x4", user_id={"id": "u1"}),
                line("x5", user_id="[vip] u1"),
            ]
        ).encode()
        + b"\n",
        "duplicate-keys.json": line("d1").replace('"order_id": "d1"', '"order_id": "d1", "order_id": "d2"').encode()
        + b"\n",
        "timestamps.json": "\n".join(
            [
                line("t1", created_at="2026-03-01 10:00:00"),
                line("t2", created_at="2026-03-01T12:00:00+02:00"),
                line("t3", created_at="2026-03-01"),
                line("t4", created_at="2026-03-01T10:00:00.123456789Z"),
                line("t5", created_at=1772359200),
                line("t6", created_at="03/01/2026"),
            ]
        ).encode()
        + b"\n",
        "empty.json": b"",
        "blank.json": f"\n   \n{line('b1')}\n\n".encode(),
        "gzipped.json.gz": gzip.compress(f"{line('gz1')}\n{line('gz2')}\n".encode()),
        "notes.txt": b"not a landing file\n",
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)

    bronze, silver = (r.tables[0] for r in _run(spark, root, _contracts(tmp_path, {})))
    assert bronze["files_landed"] == 12 and bronze["files_ignored"] == [f"date={DAY.isoformat()}/notes.txt"]
    good = {
        "bom1",
        "bom2",
        "crlf1",
        "crlf2",
        "cr1",
        "cr2",
        "big1",
        "n4",
        "n5",
        "d2",
        "t1",
        "t2",
        "t3",
        "t4",
        "b1",
        "gz1",
        "gz2",
        "x5",
    }
    quarantined_keys = {
        "lat1": (["malformed_json"], "line is not valid UTF-8 text"),
        "n1": (["amount.type"], 'amount="NaN" is not a valid decimal(10,2)'),
        "n2": (["amount.type"], 'amount="Infinity" is not a valid decimal(10,2)'),
        "n3": (["amount.type"], "amount=1.0E308 is not a valid decimal(10,2)"),
        "x1": (["amount.type"], 'amount={"value":5} is not a valid decimal(10,2)'),
        "x2": (["status.required"], "status is missing"),
        "x3": (["user_id.type"], 'user_id=["u1"] is not a string (a JSON array or object)'),
        "x4": (["user_id.type"], 'user_id={"id":"u1"} is not a string (a JSON array or object)'),
        "t5": (["created_at.type"], "created_at=1772359200 is not a valid timestamp"),
        "t6": (["created_at.type"], "created_at=03/01/2026 is not a valid timestamp"),
    }
    unkeyed = ['["not", "an", "object"]', "null", '"a string"', "42", "", "   ", ""]  # not objects, blank lines
    lines_read = (
        sum(
            len(d.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n").splitlines())
            for n, d in files.items()
            if n.endswith(".json")
        )
        + 2
    )  # + the two gzipped lines
    assert bronze["rows_read"] == silver["rows_read"] == lines_read == len(good) + len(quarantined_keys) + len(unkeyed)
    rows = spark.read.format("delta").load(str(root / "warehouse/silver/orders")).collect()
    assert {r.order_id for r in rows} == good
    assert (silver["good"], silver["quarantined"], silver["dropped"]) == (len(good), lines_read - len(good), 0)
    assert {r.order_id: r.created_at for r in rows if r.order_id in ("t1", "t2", "t3")} == {
        "t1": dt.datetime(2026, 3, 1, 10),
        "t2": dt.datetime(2026, 3, 1, 10),
        "t3": dt.datetime(2026, 3, 1),
    }
    q = spark.read.format("delta").load(str(root / "warehouse/quarantine/orders")).collect()
    assert {r.record_key: (r.failed_rules, r.reason) for r in q if r.record_key} == quarantined_keys
    assert sorted(r.raw.strip() for r in q if not r.record_key) == sorted(u.strip() for u in unkeyed)
    assert all(r.reason == "line is not a JSON object" for r in q if not r.record_key)
    assert {r._source_file for r in q if r.record_key in ("lat1", "n1", "x1", "t5")} == {
        "latin1.json",
        "numbers.json",
        "nested.json",
        "timestamps.json",
    }


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
    m = _metric(spark, root, "run-fail", "amount.min")
    assert (m.action, m.failed, m.evaluated) == ("fail", 1, 6)


def test_a_fail_uniqueness_rule_stops_the_batch_on_a_duplicate(spark: SparkSession, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    contracts = _contracts(tmp_path, {"quality": [{"type": "uniqueness", "columns": ["order_id"], "action": "fail"}]})
    _land(root, [*GOOD, GOOD[0], json.dumps(order("u1", amount=3))])  # g0 twice: one copy too many
    reports = _run(spark, root, contracts, layers="bronze,silver,gold", run_id="run-dup")
    assert [r.job for r in reports] == ["bronze", "silver"]  # gold never ran
    assert reports[1].violations == {"orders": ["order_id.unique"]}  # named once
    silver = next(t for t in reports[1].tables if t["table"] == "orders")
    assert (silver["rows_read"], silver["blocked"], silver["rows_written"]) == (7, 7, 0)
    assert not (root / "warehouse/silver/orders/_delta_log").exists()
    m = _metric(spark, root, "run-dup", "order_id.unique")
    assert (m.action, m.failed, m.evaluated) == ("fail", 1, 7)
