"""Storage benchmark: the medallion flow on local disk versus an S3-compatible object store.

The same landing files (BENCH_STORAGE_EVENTS events over BENCH_STORAGE_DAYS days, default
1,000,000 over 3) are rebuilt from scratch by the medallion flow (dbt off, as in
bench/medallion.py) with the lakehouse root on local disk (A) and in a bucket of a SeaweedFS S3
gateway on loopback (B, lakehouse/testing/s3_server.py, authentication on), in ABAB order,
BENCH_STORAGE_PAIRS pairs (default 2): the host is shared, so only a side-by-side ratio means
something. Uploading the landing files to the bucket is not timed (in production they arrive
there). Writes bench/results/storage.json (medians, every run, the ratio, the server and its
settings, the machine) and prints a table.

Run: `make bench-storage` (or `.venv/bin/python bench/storage.py`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# the temporary API server starts once, outside the timed runs; give it time on a busy host
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from bench.machine import describe  # noqa: E402
from bench.medallion import BENCH_SPARK, START, _flow, _prefect_api_up, _rates  # noqa: E402
from lakehouse import versions  # noqa: E402
from lakehouse.datagen import GenConfig, generate  # noqa: E402
from lakehouse.testing.s3_server import S3Server  # noqa: E402

OBJECT_STORE_ENV = ("LAKEHOUSE_DEPLOY__OBJECT_STORE_ENDPOINT", "LAKEHOUSE_DEPLOY__OBJECT_STORE_REGION",
                    "LAKEHOUSE_DEPLOY__OBJECT_STORE_ACCESS_KEY_ID",
                    "LAKEHOUSE_DEPLOY__OBJECT_STORE_SECRET_ACCESS_KEY")


def _s3_root(s3: S3Server, landing: Path) -> str:
    """A fresh bucket holding the landing files; the object store in the environment."""
    import s3fs

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    fs = s3fs.S3FileSystem(**s3.storage_options())
    fs.put(str(landing) + "/", f"{bucket}/lake/landing/", recursive=True)
    os.environ.update(dict(zip(OBJECT_STORE_ENV, (s3.endpoint, s3.region, s3.access_key, s3.secret_key),
                               strict=True)))
    return f"s3a://{bucket}/lake"


def _disk_root(base: Path, landing: Path) -> Path:
    for key in OBJECT_STORE_ENV:
        os.environ.pop(key, None)
    root = base / "disk"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "landing").symlink_to(landing)
    return root


def main() -> int:
    events = int(os.environ.get("BENCH_STORAGE_EVENTS", "1000000"))
    days = int(os.environ.get("BENCH_STORAGE_DAYS", "3"))
    pairs = int(os.environ.get("BENCH_STORAGE_PAIRS", "2"))
    per_day = max(1, events // days)
    cfg = GenConfig(start=START, days=days, seed=11, events_per_day=per_day,
                    orders_per_day=max(1, per_day // 5), users_initial=max(200, per_day // 50),
                    users_new_per_day=max(20, per_day // 500), files_per_day=4)
    base = ROOT / ".lakehouse" / "bench"
    landing = base / f"landing-storage-{events}-{days}"
    if not (landing / "_manifest.json").exists():
        print(f"generating {events:,} events over {days} days ...", flush=True)
        shutil.rmtree(landing, ignore_errors=True)
        generate(landing, cfg)
    machine = describe()
    end = START + dt.timedelta(days=days - 1)
    runs: dict[str, list[float]] = {"disk": [], "s3": []}
    rows: dict[str, list[dict[str, Any]]] = {}
    with S3Server() as s3:
        print(f"S3 server (SeaweedFS {versions.SEAWEEDFS_VERSION}) at {s3.endpoint}, up in "
              f"{s3.startup_seconds:.1f}s", flush=True)
        api_s = _prefect_api_up()
        for i in range(pairs):
            for side in ("disk", "s3"):  # ABAB
                root: Path | str = _disk_root(base, landing) if side == "disk" else _s3_root(s3, landing)
                print(f"full rebuild {i + 1}/{pairs} on {side} ({root}) ...", flush=True)
                seconds, out = _flow(root, START, end)  # type: ignore[arg-type]
                runs[side].append(seconds)
                rows.setdefault(side, out)
                print(f"    {seconds:.1f}s", flush=True)
        server = {"weed_version": versions.SEAWEEDFS_VERSION, "command": " ".join(s3.argv),
                  "endpoint": "loopback", "region": s3.region, "auth": "on (identities file)"}
    disk_s, s3_s = statistics.median(runs["disk"]), statistics.median(runs["s3"])
    result = {
        "benchmark": "storage",
        "what": "medallion flow full rebuild (dbt off) on local disk vs an S3-compatible bucket, "
                "same landing files, ABAB",
        "events": events,
        "days": days,
        "machine": machine,
        "spark_settings": BENCH_SPARK,
        "prefect_api_start_s_excluded": round(api_s, 2),
        "s3_server": server,
        "disk_s": round(disk_s, 2),
        "s3_s": round(s3_s, 2),
        "disk_runs_s": [round(x, 2) for x in runs["disk"]],
        "s3_runs_s": [round(x, 2) for x in runs["s3"]],
        "s3_over_disk": round(s3_s / disk_s, 3),
        "layers_disk": _rates(rows["disk"]),
        "layers_s3": _rates(rows["s3"]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = ROOT / "bench" / "results" / "storage.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\ndisk {disk_s:.1f}s | s3 {s3_s:.1f}s | s3/disk {result['s3_over_disk']}")
    print(f"machine: {machine['cores']} cores, {machine['memory_gib']} GiB\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
