"""Storage benchmark: the medallion flow and the stream on local disk versus an S3-compatible
object store.

Medallion: the same landing files (BENCH_STORAGE_EVENTS events over BENCH_STORAGE_DAYS days, default
1,000,000 over 3) are rebuilt from scratch by the medallion flow (dbt off, as in
bench/medallion.py) with the lakehouse root on local disk (A) and in a bucket of a SeaweedFS S3
gateway on loopback (B, lakehouse/testing/s3_server.py, authentication on), in ABAB order,
BENCH_STORAGE_PAIRS pairs (default 2): the host is shared, so only a side-by-side ratio means
something. Uploading the landing files to the bucket is not timed (in production they arrive
there).

Streaming: BENCH_STORAGE_STREAM_MESSAGES events (default 1,000,000) are produced once to a
topic of a real broker on loopback (3 partitions); the streaming job then catches up on the whole
backlog with the availableNow trigger (maxOffsetsPerTrigger BENCH_STORAGE_STREAM_MAX_OFFSETS,
default 500,000), from a fresh checkpoint and fresh tables each time: bronze, dead letters, gold
and the checkpoint on local disk (A) or in a fresh bucket (B), ABAB, BENCH_STORAGE_PAIRS pairs.
The rate comes from the checkpoint (records / first batch start to last commit, as in
bench/streaming.py), read from wherever the checkpoint is.

BENCH_STORAGE_PARTS (default ``medallion,streaming``) picks the parts; each rewrites its own
section of bench/results/storage.json (medians, every run, the ratio, the server and its
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

OBJECT_STORE_ENV = (
    "LAKEHOUSE_DEPLOY__OBJECT_STORE_ENDPOINT",
    "LAKEHOUSE_DEPLOY__OBJECT_STORE_REGION",
    "LAKEHOUSE_DEPLOY__OBJECT_STORE_ACCESS_KEY_ID",
    "LAKEHOUSE_DEPLOY__OBJECT_STORE_SECRET_ACCESS_KEY",
)


def _bucket_root(s3: S3Server) -> str:
    """A fresh bucket; the object store in the environment (the settings of every run read it)."""
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    os.environ.update(dict(zip(OBJECT_STORE_ENV, (s3.endpoint, s3.region, s3.access_key, s3.secret_key), strict=True)))
    return f"s3a://{bucket}/lake"


def _s3_root(s3: S3Server, landing: Path) -> str:
    """A fresh bucket holding the landing files; the object store in the environment."""
    import s3fs

    root = _bucket_root(s3)
    fs = s3fs.S3FileSystem(**s3.storage_options())
    fs.put(str(landing) + "/", root.removeprefix("s3a://") + "/landing/", recursive=True)
    return root


def _disk_root(base: Path, landing: Path | None) -> Path:
    for key in OBJECT_STORE_ENV:
        os.environ.pop(key, None)
    root = base / "disk"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if landing is not None:
        (root / "landing").symlink_to(landing)
    return root


def _server(s3: S3Server) -> dict[str, Any]:
    return {
        "weed_version": versions.SEAWEEDFS_VERSION,
        "command": " ".join(s3.argv),
        "endpoint": "loopback",
        "region": s3.region,
        "auth": "on (identities file)",
    }


def streaming(s3: S3Server, base: Path, pairs: int) -> dict[str, Any]:
    """The stream's catch-up over one backlog, disk vs bucket, ABAB (see the module doc)."""
    from bench.streaming import checkpoint_rates
    from lakehouse import objectstore
    from lakehouse.backends.local import LocalBackend
    from lakehouse.kafka import ensure_topic, produce_events
    from lakehouse.settings import KafkaSettings, Settings, SparkSettings, StorageSettings, StreamingSettings
    from lakehouse.streaming import bronze_checkpoint_dir, read_checkpoint, streaming_job
    from lakehouse.testing.kafka_broker import KafkaBroker

    messages = int(os.environ.get("BENCH_STORAGE_STREAM_MESSAGES", "1000000"))
    max_offsets = int(os.environ.get("BENCH_STORAGE_STREAM_MAX_OFFSETS", "500000"))
    driver_memory = os.environ.get("BENCH_DRIVER_MEMORY", "4g")
    topic, partitions = "bench-storage", 3
    runs: dict[str, list[dict[str, Any]]] = {"disk": [], "s3": []}
    shutil.rmtree(base / "kafka-storage", ignore_errors=True)
    os.environ.setdefault("KAFKA_HEAP_OPTS", "-Xms512m -Xmx1g")
    with KafkaBroker(data_dir=base / "kafka-storage") as broker:
        servers = broker.bootstrap_servers
        ensure_topic(servers, topic, partitions=partitions, retention_ms=-1)
        print(f"producing {messages:,} events to {topic} ...", flush=True)
        sent = produce_events(servers, topic, count=messages, seed=3, id_prefix="storage", on_progress=lambda _: None)
        for i in range(pairs):
            for side in ("disk", "s3"):  # ABAB
                root = str(_disk_root(base, None)) if side == "disk" else _bucket_root(s3)
                settings = Settings(
                    storage=StorageSettings(root=root),
                    kafka=KafkaSettings(bootstrap_servers=servers, topic=topic),
                    spark=SparkSettings(driver_memory=driver_memory),
                    streaming=StreamingSettings(max_offsets_per_trigger=max_offsets, topic_partitions=partitions),
                )
                print(f"stream catch-up {i + 1}/{pairs} on {side} ({root}) ...", flush=True)
                began = time.monotonic()
                result = LocalBackend(settings).run(
                    streaming_job(settings, trigger="available-now"),
                    log=lambda line: print(f"    {line}", flush=True) if "[streaming]" in line else None,
                )
                wall = time.monotonic() - began
                options = objectstore.fsspec_options(settings) if side == "s3" else None
                progress = read_checkpoint(bronze_checkpoint_dir(settings), topic, keep=10_000, storage_options=options)
                rates = checkpoint_rates(progress)
                bronze = next(m for m in result.metrics if m["layer"] == "bronze")
                assert rates["records"] == messages == bronze["rows_written"], (side, rates, bronze)
                runs[side].append(
                    {
                        "ingest_rate_msgs_per_s": rates["ingest_rate_msgs_per_s"],
                        "ingest_seconds": rates["ingest_seconds"],
                        "micro_batches": len(progress.batches),
                        "job_wall_seconds": round(wall, 1),
                    }
                )
                print(f"    {rates['ingest_rate_msgs_per_s']:,} msg/s, job {wall:.1f}s", flush=True)
    disk = statistics.median(r["ingest_rate_msgs_per_s"] for r in runs["disk"])
    bucket = statistics.median(r["ingest_rate_msgs_per_s"] for r in runs["s3"])
    return {
        "what": "streaming job catch-up (availableNow) over one Kafka backlog; bronze, dead "
        "letters, gold and checkpoint on local disk vs an S3-compatible bucket, ABAB",
        "messages": messages,
        "message_bytes_avg": round(sent.bytes / sent.sent, 1),
        "partitions": partitions,
        "max_offsets_per_trigger": max_offsets,
        "driver_memory": driver_memory,
        "disk_rate_msgs_per_s": round(disk),
        "s3_rate_msgs_per_s": round(bucket),
        "s3_over_disk_rate": round(bucket / disk, 3),
        # the whole job: JVM start, the catch-up, gold, and the checkpoint and log reads
        "s3_over_disk_job_wall": round(
            statistics.median(r["job_wall_seconds"] for r in runs["s3"])
            / statistics.median(r["job_wall_seconds"] for r in runs["disk"]),
            3,
        ),
        "disk_runs": runs["disk"],
        "s3_runs": runs["s3"],
    }


def main() -> int:
    events = int(os.environ.get("BENCH_STORAGE_EVENTS", "1000000"))
    days = int(os.environ.get("BENCH_STORAGE_DAYS", "3"))
    pairs = int(os.environ.get("BENCH_STORAGE_PAIRS", "2"))
    parts = {p.strip() for p in os.environ.get("BENCH_STORAGE_PARTS", "medallion,streaming").split(",")}
    unknown = parts - {"medallion", "streaming"}
    if unknown:
        print(f"error: BENCH_STORAGE_PARTS has unknown part(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    base = ROOT / ".lakehouse" / "bench"
    out = ROOT / "bench" / "results" / "storage.json"
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    machine = describe()
    with S3Server() as s3:
        print(
            f"S3 server (SeaweedFS {versions.SEAWEEDFS_VERSION}) at {s3.endpoint}, up in {s3.startup_seconds:.1f}s",
            flush=True,
        )
        if "medallion" in parts:
            result.update(medallion(s3, base, events, days, pairs), machine=machine)
            print(
                f"\nmedallion: disk {result['disk_s']:.1f}s | s3 {result['s3_s']:.1f}s | "
                f"s3/disk {result['s3_over_disk']}",
                flush=True,
            )
        if "streaming" in parts:
            stream = streaming(s3, base, pairs)
            result["streaming"] = {
                **stream,
                "s3_server": _server(s3),
                "machine": machine,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            print(
                f"\nstreaming: disk {stream['disk_rate_msgs_per_s']:,} msg/s | s3 "
                f"{stream['s3_rate_msgs_per_s']:,} msg/s | s3/disk {stream['s3_over_disk_rate']}",
                flush=True,
            )
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"machine: {machine['cores']} cores, {machine['memory_gib']} GiB\nwrote {out}")
    return 0


def medallion(s3: S3Server, base: Path, events: int, days: int, pairs: int) -> dict[str, Any]:
    """The medallion flow's full rebuild, disk vs bucket, ABAB (see the module doc)."""
    per_day = max(1, events // days)
    cfg = GenConfig(
        start=START,
        days=days,
        seed=11,
        events_per_day=per_day,
        orders_per_day=max(1, per_day // 5),
        users_initial=max(200, per_day // 50),
        users_new_per_day=max(20, per_day // 500),
        files_per_day=4,
    )
    landing = base / f"landing-storage-{events}-{days}"
    if not (landing / "_manifest.json").exists():
        print(f"generating {events:,} events over {days} days ...", flush=True)
        shutil.rmtree(landing, ignore_errors=True)
        generate(landing, cfg)
    end = START + dt.timedelta(days=days - 1)
    runs: dict[str, list[float]] = {"disk": [], "s3": []}
    rows: dict[str, list[dict[str, Any]]] = {}
    api_s = _prefect_api_up()
    for i in range(pairs):
        for side in ("disk", "s3"):  # ABAB
            root: Path | str = _disk_root(base, landing) if side == "disk" else _s3_root(s3, landing)
            print(f"full rebuild {i + 1}/{pairs} on {side} ({root}) ...", flush=True)
            seconds, out = _flow(root, START, end)  # type: ignore[arg-type]
            runs[side].append(seconds)
            rows.setdefault(side, out)
            print(f"    {seconds:.1f}s", flush=True)
    disk_s, s3_s = statistics.median(runs["disk"]), statistics.median(runs["s3"])
    return {
        "benchmark": "storage",
        "what": "medallion flow full rebuild (dbt off) on local disk vs an S3-compatible bucket, "
        "same landing files, ABAB",
        "events": events,
        "days": days,
        "spark_settings": BENCH_SPARK,
        "prefect_api_start_s_excluded": round(api_s, 2),
        "s3_server": _server(s3),
        "disk_s": round(disk_s, 2),
        "s3_s": round(s3_s, 2),
        "disk_runs_s": [round(x, 2) for x in runs["disk"]],
        "s3_runs_s": [round(x, 2) for x in runs["s3"]],
        "s3_over_disk": round(s3_s / disk_s, 3),
        "layers_disk": _rates(rows["disk"]),
        "layers_s3": _rates(rows["s3"]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":
    sys.exit(main())
