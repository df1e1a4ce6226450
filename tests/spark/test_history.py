"""SCD type 2: silver/users_history, written by the real silver job on real Delta tables.

The landing days hold out-of-order versions (older ``updated_at`` landing after a newer one),
a duplicate of a version with other values, and a version that repeats its predecessor. The
expected history is written out by hand below; every way of loading the days (one at a time,
one backfill, reruns, an overlapping full refresh) must give exactly those rows, and the open
version of each user must be the SCD1 row of silver/users.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from spark_jobs import medallion
from spark_jobs.cli import batch_parser, check_batch
from spark_jobs.contract import load_contracts
from spark_jobs.transforms.silver import history_of

pytestmark = [pytest.mark.spark]

D1, D2, D3 = dt.date(2026, 5, 1), dt.date(2026, 5, 2), dt.date(2026, 5, 3)


def _ts(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 5, day, hour)


def user(uid: str, at: dt.datetime, country: str, email: str | None = None) -> str:
    return json.dumps(
        {
            "user_id": uid,
            "email": email or f"{uid}.{country}@example.com",
            "country": country,
            "updated_at": at.isoformat() + "Z",
        }
    )


LANDED = {
    D1: [user("u1", _ts(1, 9), "DE"), user("u2", _ts(1, 10), "FR")],
    # u1 moves to US; a second copy of u1's day-1 version with another email (the first kept wins)
    D2: [
        user("u1", _ts(2, 12), "US"),
        user("u1", _ts(1, 9), "DE", email="copy@example.com"),
        user("u3", _ts(2, 8), "NL"),
    ],
    # out of order: u1 lived in GB between its DE and US versions, reported a day late;
    # u2 sends a version identical to its first but for the time (kept: a version is a version)
    D3: [user("u1", _ts(1, 18), "GB"), user("u2", _ts(3, 7), "FR"), user("u3", _ts(3, 1), "BE")],
}

# (user_id, country, email, valid_from, valid_to, is_current)
EXPECTED = {
    ("u1", "DE", "u1.DE@example.com", _ts(1, 9), _ts(1, 18), False),
    ("u1", "GB", "u1.GB@example.com", _ts(1, 18), _ts(2, 12), False),
    ("u1", "US", "u1.US@example.com", _ts(2, 12), None, True),
    ("u2", "FR", "u2.FR@example.com", _ts(1, 10), _ts(3, 7), False),
    ("u2", "FR", "u2.FR@example.com", _ts(3, 7), None, True),
    ("u3", "NL", "u3.NL@example.com", _ts(2, 8), _ts(3, 1), False),
    ("u3", "BE", "u3.BE@example.com", _ts(3, 1), None, True),
}
EXPECTED_AFTER_D2 = {
    ("u1", "DE", "u1.DE@example.com", _ts(1, 9), _ts(2, 12), False),
    ("u1", "US", "u1.US@example.com", _ts(2, 12), None, True),
    ("u2", "FR", "u2.FR@example.com", _ts(1, 10), None, True),
    ("u3", "NL", "u3.NL@example.com", _ts(2, 8), None, True),
}


def _land(root: Path) -> None:
    for day, lines in LANDED.items():
        folder = root / "landing" / "users" / f"date={day.isoformat()}"
        folder.mkdir(parents=True)
        (folder / "part-00000.json").write_text("".join(line + "\n" for line in lines))


def _run(spark: SparkSession, root: Path, start: dt.date, end: dt.date, *extra: str) -> dict[str, Any]:
    """Bronze + silver of users; silver's metrics of the users table."""
    p = batch_parser("m", "")
    p.add_argument("--layers", type=lambda v: v.split(","))
    argv = [
        "--root",
        str(root),
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--sources",
        "users",
        "--layers",
        "bronze,silver",
        *extra,
    ]
    reports = medallion.run(spark, check_batch(p, p.parse_args(argv)))
    return next(t for r in reports for t in r.tables if t["layer"] == "silver" and t["table"] == "users")


def _history(spark: SparkSession, root: Path) -> set[tuple[Any, ...]]:
    rows = spark.read.format("delta").load(str(root / "warehouse" / "silver" / "users_history")).collect()
    got = [(r.user_id, r.country, r.email, r.valid_from, r.valid_to, r.is_current) for r in rows]
    assert len(got) == len(set(got)), "a version appears twice"
    return set(got)


def _versions(spark: SparkSession, root: Path) -> int:
    path = str(root / "warehouse" / "silver" / "users_history")
    return int(spark.sql(f"DESCRIBE HISTORY delta.`{path}`").agg({"version": "max"}).first()[0])


def _current_equals_scd1(spark: SparkSession, root: Path) -> None:
    scd1 = spark.read.format("delta").load(str(root / "warehouse" / "silver" / "users"))
    want = {(r.user_id, r.country, r.email, r.updated_at) for r in scd1.collect()}
    got = {(u, c, e, f) for u, c, e, f, _, cur in _history(spark, root) if cur}
    assert got == want


def test_day_by_day_with_out_of_order_and_duplicate_versions(spark: SparkSession, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _land(root)
    _run(spark, root, D1, D1)
    _run(spark, root, D2, D2)
    assert _history(spark, root) == EXPECTED_AFTER_D2
    users = _run(spark, root, D3, D3)
    assert _history(spark, root) == EXPECTED
    _current_equals_scd1(spark, root)
    # day 3: three new versions; u1's GB slots in before US and closes DE, u2's and u3's close
    assert (users["history_inserted"], users["history_updated"]) == (3, 3)

    # a rerun finds nothing pending and commits nothing; an overlapping full refresh of days
    # 2-3 merges the same versions again and changes no row
    version = _versions(spark, root)
    _run(spark, root, D1, D3)
    assert _versions(spark, root) == version
    users = _run(spark, root, D2, D3, "--full-refresh")
    assert _history(spark, root) == EXPECTED
    assert (users["history_inserted"], users["history_updated"]) == (0, 0)
    _current_equals_scd1(spark, root)


def test_one_backfill_gives_the_same_history(spark: SparkSession, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    _land(root)
    _run(spark, root, D1, D3)
    assert _history(spark, root) == EXPECTED
    _current_equals_scd1(spark, root)


def test_history_of_keeps_the_known_version_and_recomputes_the_intervals(spark: SparkSession) -> None:
    contract = load_contracts()["users"]
    cols = "user_id string, email string, country string, updated_at timestamp"
    existing = spark.createDataFrame(
        [
            ("u1", "a@x.io", "DE", _ts(1, 9), _ts(1, 9), None, True),
            ("u9", "z@x.io", "PL", _ts(1, 9), _ts(1, 9), None, True),
        ],
        cols + ", valid_from timestamp, valid_to timestamp, is_current boolean",
    )
    batch = spark.createDataFrame(
        [
            ("u1", "late@x.io", "GB", _ts(1, 6)),  # older than the known version: slots in before it
            ("u1", "copy@x.io", "FR", _ts(1, 9)),  # a copy of the known version: the known one wins
            ("u2", "b@x.io", None, _ts(2, 1)),
        ],
        cols,
    )
    got = {tuple(r) for r in history_of(batch, existing, contract).collect()}
    assert got == {
        ("u1", "late@x.io", "GB", _ts(1, 6), _ts(1, 6), _ts(1, 9), False),
        ("u1", "a@x.io", "DE", _ts(1, 9), _ts(1, 9), None, True),
        ("u2", "b@x.io", None, _ts(2, 1), _ts(2, 1), None, True),
    }  # u9 is not in the batch: not part of the merge
