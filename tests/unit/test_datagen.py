"""The generator is deterministic and its manifest says exactly what it wrote."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from lakehouse.datagen import GenConfig, Manifest, generate
from tests import expected

START = dt.date(2026, 1, 1)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.json")):
        h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    cfg = GenConfig(start=START, days=2, events_per_day=300, orders_per_day=50, users_initial=30)
    generate(tmp_path / "a", cfg)
    generate(tmp_path / "b", cfg)
    generate(tmp_path / "c", GenConfig(**{**cfg.__dict__, "seed": 7}))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_manifest_matches_files(tmp_path: Path) -> None:
    cfg = GenConfig(start=START, days=3, events_per_day=1500, orders_per_day=300, users_initial=100)
    manifest = generate(tmp_path, cfg)
    assert Manifest.load(tmp_path / "_manifest.json").days == manifest.days
    dates = [START + dt.timedelta(days=i) for i in range(3)]
    for source in ("orders", "users", "events"):
        for d in dates:
            stats = manifest.days[d.isoformat()][source]
            lines = expected.landing_lines(tmp_path, source, [d])
            assert len(lines) == stats.lines == stats.valid + stats.null_keys + stats.malformed
            reasons = expected.rejected(tmp_path, source, [d])
            key = {"orders": "order_id", "users": "user_id", "events": "event_id"}[source]
            assert reasons.get(f"{key}.required", 0) == stats.null_keys
            assert reasons.get("malformed_json", 0) == stats.malformed
        # every new key appears once in silver; updates and duplicates collapse into it
        assert len(expected.latest_rows(tmp_path, source, dates)) == manifest.total(source, "new_keys")
    # the dirt is really there
    assert manifest.total("events", "duplicates") > 0
    assert manifest.total("events", "late") > 0
    assert manifest.total("users", "updates") > 0
    assert manifest.total("orders", "updates") > 0
    assert sum(manifest.total(s, "malformed") + manifest.total(s, "null_keys") for s in ("orders", "events")) > 0
