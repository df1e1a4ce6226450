"""Expected pipeline outcomes computed from the landing files in plain Python.

Deliberately independent of spark_jobs: it re-reads the JSON lines the generator wrote and
applies the documented rules (reject malformed lines, null/blank keys and uncastable values;
keep the latest row per key; gold aggregates) with the standard library only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

KEYS = {"orders": ("order_id", "updated_at"), "users": ("user_id", "updated_at"), "events": ("event_id", "event_time")}
DECIMALS = {"orders": ("amount",), "events": ("amount",), "users": ()}
TIMESTAMPS = {"orders": ("created_at", "updated_at"), "users": ("updated_at",), "events": ("event_time",)}


def _ts(v: str) -> dt.datetime:
    return dt.datetime.fromisoformat(v.replace("Z", "+00:00")).replace(tzinfo=None)


def classify(source: str, line: str) -> tuple[str | None, dict[str, Any] | None]:
    """(first failed contract rule or None, parsed row): ``malformed_json``, ``<key>.required``,
    ``<column>.type``."""
    key, _ = KEYS[source]
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return "malformed_json", None
    if not isinstance(row, dict) or not line.lstrip().startswith("{"):
        return "malformed_json", None
    if row.get(key) is None or str(row.get(key)).strip() == "":
        return f"{key}.required", row
    for col in DECIMALS[source]:
        if row.get(col) is not None:
            try:
                Decimal(str(row[col]))
            except ArithmeticError:
                return f"{col}.type", row
    for col in TIMESTAMPS[source]:
        if row.get(col) is not None:
            try:
                _ts(str(row[col]))
            except ValueError:
                return f"{col}.type", row
    return None, row


def landing_lines(landing: Path, source: str, dates: list[dt.date]) -> list[tuple[dt.date, str]]:
    """Every line of ``source`` for ``dates`` with its landing date."""
    out = []
    for d in dates:
        for f in sorted((landing / source / f"date={d.isoformat()}").glob("*.json")):
            out += [(d, line) for line in f.read_text().splitlines()]
    return out


def latest_rows(landing: Path, source: str, dates: list[dt.date]) -> dict[str, dict[str, Any]]:
    """Silver as expected: latest valid row per key (ties: later landing date)."""
    key, order = KEYS[source]
    best: dict[str, tuple[tuple[dt.datetime, dt.date], dict[str, Any]]] = {}
    for d, line in landing_lines(landing, source, dates):
        reason, row = classify(source, line)
        if reason is not None or row is None:
            continue
        rank = (_ts(row[order]), d)
        if row[key] not in best or rank > best[row[key]][0]:
            best[row[key]] = (rank, row)
    return {k: v for k, (_, v) in best.items()}


def rejected(landing: Path, source: str, dates: list[dt.date]) -> dict[str, int]:
    """Count of rejected lines per reason."""
    counts: dict[str, int] = defaultdict(int)
    for _, line in landing_lines(landing, source, dates):
        reason, _ = classify(source, line)
        if reason:
            counts[reason] += 1
    return dict(counts)


def _money(v: Any) -> Decimal:
    return Decimal(str(v)).quantize(Decimal("0.01"))


def hourly_stats(events: dict[str, dict[str, Any]]) -> dict[tuple[dt.datetime, str], tuple[int, Decimal]]:
    """(hour, event_type) -> (event_count, total_amount)."""
    acc: dict[tuple[dt.datetime, str], list[Any]] = defaultdict(lambda: [0, Decimal("0.00")])
    for e in events.values():
        hour = _ts(e["event_time"]).replace(minute=0, second=0, microsecond=0)
        a = acc[(hour, e["event_type"])]
        a[0] += 1
        if e.get("amount") is not None:
            a[1] += _money(e["amount"])
    return {k: (v[0], v[1]) for k, v in acc.items()}


def daily_revenue(orders: dict[str, dict[str, Any]]) -> dict[dt.date, tuple[int, int, Decimal, Decimal]]:
    """date_day -> (total_orders, unique_customers, total_revenue, avg_order_value)."""
    by_day: dict[dt.date, list[dict[str, Any]]] = defaultdict(list)
    for o in orders.values():
        if o["status"] != "cancelled":
            by_day[_ts(o["created_at"]).date()].append(o)
    out = {}
    for day, rows in by_day.items():
        total = sum((_money(o["amount"]) for o in rows), Decimal("0.00"))
        avg = (total / len(rows)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        out[day] = (len(rows), len({o["user_id"] for o in rows}), total, avg)
    return out


def dim_users(landing: Path, dates: list[dt.date]) -> dict[str, tuple[str, str, int, Decimal]]:
    """The dbt mart dim_users: per user (latest row) email, country, non-cancelled orders and
    their revenue."""
    users = latest_rows(landing, "users", dates)
    orders = latest_rows(landing, "orders", dates)
    stats: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal("0.00")])
    for o in orders.values():
        if o["status"] != "cancelled":
            stats[o["user_id"]][0] += 1
            stats[o["user_id"]][1] += Decimal(str(o["amount"])).quantize(Decimal("0.01"))
    return {uid: (u["email"], u["country"], stats[uid][0], stats[uid][1]) for uid, u in users.items()}


def user_versions(landing: Path, dates: list[dt.date]) -> dict[str, list[tuple[dt.datetime, dict[str, Any]]]]:
    """silver/users_history as expected: per user every valid version (by ``updated_at``; of
    two copies of one version the first landed wins), oldest first."""
    seen: dict[str, dict[dt.datetime, dict[str, Any]]] = defaultdict(dict)
    for _, line in landing_lines(landing, "users", dates):
        reason, row = classify("users", line)
        if reason is None and row is not None:
            seen[row["user_id"]].setdefault(_ts(row["updated_at"]), row)
    return {uid: sorted(v.items(), key=lambda kv: kv[0]) for uid, v in seen.items()}


def country_at(history: list[tuple[dt.datetime, dict[str, Any]]], at: dt.datetime) -> str:
    """The country of the version valid at ``at`` (before the first: the first; none: unknown)."""
    valid = [row for since, row in history if since <= at] or [row for _, row in history[:1]]
    return str(valid[-1]["country"]) if valid else "unknown"


def revenue_by_country_at_order_time(
    landing: Path, dates: list[dt.date]
) -> dict[tuple[dt.date, str], tuple[int, Decimal]]:
    """The dbt mart fct_daily_revenue_by_country: orders not cancelled, per day and the country of
    the user's version valid when ordered (before the first version: the first; no user: unknown)."""
    versions = user_versions(landing, dates)
    out: dict[tuple[dt.date, str], list[Any]] = defaultdict(lambda: [0, Decimal("0.00")])
    for o in latest_rows(landing, "orders", dates).values():
        if o["status"] == "cancelled":
            continue
        at = _ts(o["created_at"])
        cell = out[(at.date(), country_at(versions.get(o["user_id"], []), at))]
        cell[0] += 1
        cell[1] += _money(o["amount"])
    return {k: (n, total) for k, (n, total) in out.items()}
