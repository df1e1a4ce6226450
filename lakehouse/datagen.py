"""Deterministic sample data: N days of landing files for orders, users and events.

Realistic shape with the usual dirt: about 1% exact duplicate lines, late events (an event of
the previous day landing today), rows with a null key and malformed lines; users get later
updates of existing users, orders later status updates. The same seed always writes the same
bytes. A manifest records exactly what was written, per day and source, so tests can check the
pipeline against it.

Layout: ``<landing>/<source>/date=YYYY-MM-DD/part-00000.json`` (JSON lines) and
``<landing>/_manifest.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SOURCES = ("users", "orders", "events")
ORDER_STATUSES = ("pending", "completed", "cancelled", "refunded")
EVENT_TYPES = ("page_view", "add_to_cart", "checkout", "purchase")
COUNTRIES = ("US", "DE", "FR", "GB", "BR", "IN", "JP", "CA")


@dataclass
class GenConfig:
    """Sizes and dirt rates of the generated data."""

    start: dt.date
    days: int = 3
    seed: int = 42
    events_per_day: int = 2000
    orders_per_day: int = 400
    users_initial: int = 200
    users_new_per_day: int = 20
    user_update_rate: float = 0.05
    order_update_rate: float = 0.10
    duplicate_rate: float = 0.01
    null_key_rate: float = 0.004
    malformed_rate: float = 0.004
    late_rate: float = 0.02
    files_per_day: int = 1


@dataclass
class SourceDay:
    """What one landing file set (source, day) holds; lines = valid + null_keys + malformed."""

    lines: int = 0
    valid: int = 0
    new_keys: int = 0
    updates: int = 0
    duplicates: int = 0
    null_keys: int = 0
    malformed: int = 0
    late: int = 0


@dataclass
class Manifest:
    """Exactly what :func:`generate` wrote."""

    config: dict[str, Any]
    days: dict[str, dict[str, SourceDay]] = field(default_factory=dict)

    def total(self, source: str, what: str) -> int:
        """Sum of ``what`` over all days for ``source``."""
        return sum(getattr(d[source], what) for d in self.days.values())

    def to_json(self) -> str:
        """Serialise."""
        return json.dumps(
            {"config": self.config, "days": {d: {s: asdict(v) for s, v in sd.items()} for d, sd in self.days.items()}},
            indent=2,
            sort_keys=True,
            default=str,
        )

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read a manifest written by :func:`generate`."""
        raw = json.loads(path.read_text())
        return cls(
            config=raw["config"],
            days={d: {s: SourceDay(**v) for s, v in sd.items()} for d, sd in raw["days"].items()},
        )


def _ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _malformed(rng: random.Random, good: str) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return good[: max(1, len(good) // 2)]  # truncated write
    if kind == 1:
        return "not json at all"
    return good.replace('":', '"', 1)  # broken syntax


class _Writer:
    """Accumulates one (source, day) file set and its manifest entry."""

    def __init__(self, cfg: GenConfig, rng: random.Random, key: str) -> None:
        self.cfg, self.rng, self.key = cfg, rng, key
        self.lines: list[str] = []
        self.stats = SourceDay()

    def add(self, row: dict[str, Any], *, new: bool, late: bool = False) -> bool:
        """Write ``row`` (or a dirty variant of it); True when the row was written valid."""
        rng, cfg = self.rng, self.cfg
        r = rng.random()
        if r < cfg.null_key_rate:
            bad = dict(row)
            bad[self.key] = None
            self.lines.append(json.dumps(bad))
            self.stats.null_keys += 1
            return False
        if r < cfg.null_key_rate + cfg.malformed_rate:
            self.lines.append(_malformed(rng, json.dumps(row)))
            self.stats.malformed += 1
            return False
        line = json.dumps(row)
        self.lines.append(line)
        self.stats.valid += 1
        self.stats.new_keys += int(new)
        self.stats.updates += int(not new)
        self.stats.late += int(late)
        if rng.random() < cfg.duplicate_rate:
            self.lines.append(line)
            self.stats.valid += 1
            self.stats.duplicates += 1
        return True

    def flush(self, directory: Path) -> SourceDay:
        self.rng.shuffle(self.lines)
        directory.mkdir(parents=True, exist_ok=True)
        n = max(1, self.cfg.files_per_day)
        chunk = -(-len(self.lines) // n) if self.lines else 0
        for i in range(n):
            part = self.lines[i * chunk : (i + 1) * chunk]
            (directory / f"part-{i:05d}.json").write_text("".join(x + "\n" for x in part))
        self.stats.lines = len(self.lines)
        return self.stats


def generate(landing: Path, cfg: GenConfig, progress: Callable[[str], None] | None = None) -> Manifest:
    """Write ``cfg.days`` days of landing files under ``landing`` and return the manifest.

    Args:
        landing: Landing root (``<storage.root>/landing``).
        cfg: Sizes, seed and dirt rates.
        progress: Called with one line per generated day.
    """
    rng = random.Random(cfg.seed)
    manifest = Manifest(config={k: str(v) if isinstance(v, dt.date) else v for k, v in asdict(cfg).items()})
    users: dict[str, dict[str, Any]] = {}
    open_orders: list[dict[str, Any]] = []
    next_user = next_order = next_event = 0
    for day_index in range(cfg.days):
        day = cfg.start + dt.timedelta(days=day_index)
        t0 = dt.datetime.combine(day, dt.time())

        def at(base: dt.datetime = t0) -> dt.datetime:
            return base + dt.timedelta(milliseconds=rng.randrange(86_400_000))

        # users: new ones, then updates of existing ones (later updated_at)
        uw = _Writer(cfg, rng, "user_id")
        for _ in range(cfg.users_initial if day_index == 0 else cfg.users_new_per_day):
            next_user += 1
            u = {
                "user_id": f"u{next_user:07d}",
                "email": f"user{next_user}@example.com",
                "country": rng.choice(COUNTRIES),
                "updated_at": _ts(at()),
            }
            if uw.add(u, new=True):  # a user whose first row was bad never exists
                users[u["user_id"]] = u
        if day_index:
            existing = sorted(users)
            for uid in rng.sample(existing, int(len(existing) * cfg.user_update_rate)):
                u = dict(
                    users[uid],
                    country=rng.choice(COUNTRIES),
                    updated_at=_ts(at()),
                    email=f"{uid}.{day_index}@example.com",
                )
                if uw.add(u, new=False):
                    users[uid] = u
        user_ids = sorted(users)

        # orders: status updates of earlier pending orders, then new orders
        ow = _Writer(cfg, rng, "order_id")
        still_open = []
        for o in open_orders:
            if rng.random() < cfg.order_update_rate:
                upd = dict(o, status=rng.choice(ORDER_STATUSES[1:]), updated_at=_ts(at()))
                ow.add(upd, new=False)
            else:
                still_open.append(o)
        open_orders = still_open
        for _ in range(cfg.orders_per_day):
            next_order += 1
            created = _ts(at())
            o = {
                "order_id": f"o{next_order:08d}",
                "user_id": rng.choice(user_ids),
                "amount": round(rng.randrange(100, 50_000) / 100, 2),
                "status": rng.choices(ORDER_STATUSES, weights=(50, 35, 10, 5))[0],
                "created_at": created,
                "updated_at": created,
            }
            if ow.add(o, new=True) and o["status"] == "pending":
                open_orders.append(o)

        # events: some arrive late (event_time on the previous day)
        ew = _Writer(cfg, rng, "event_id")
        for _ in range(cfg.events_per_day):
            next_event += 1
            late = rng.random() < cfg.late_rate
            etype = rng.choices(EVENT_TYPES, weights=(60, 20, 10, 10))[0]
            e = {
                "event_id": f"e{next_event:09d}",
                "user_id": rng.choice(user_ids),
                "event_type": etype,
                "amount": round(rng.randrange(100, 50_000) / 100, 2) if etype == "purchase" else None,
                "event_time": _ts(at(t0 - dt.timedelta(days=1)) if late else at()),
            }
            ew.add(e, new=True, late=late)

        stats = {}
        for name, w in (("users", uw), ("orders", ow), ("events", ew)):
            stats[name] = w.flush(landing / name / f"date={day.isoformat()}")
        manifest.days[day.isoformat()] = stats
        if progress:
            progress(f"{day}: " + ", ".join(f"{s} {v.lines} lines" for s, v in stats.items()))
    (landing / "_manifest.json").write_text(manifest.to_json())
    return manifest
