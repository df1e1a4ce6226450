"""Streaming benchmark: Kafka -> bronze Delta, exactly-once, on this machine.

Two measurements against a real single-node broker on loopback (started here, own data dir):

1. Sustained ingest rate. ``BENCH_MESSAGES`` events are produced up front, then the streaming
   job catches up with the availableNow trigger in micro-batches of at most
   ``BENCH_MAX_OFFSETS`` records; a comma-separated list runs the job once per value, each from
   a fresh checkpoint and tables over the same backlog (the goal is judged on the best
   setting, every run is reported). Rate = records / (end of the last committed micro-batch -
   start of the first), both read from the stream's checkpoint: every micro-batch overhead
   (offset planning, the idempotent Delta appends, the commit log) is inside, JVM start-up is
   not. The sustained rate leaves out the first micro-batch, which also carries the JIT
   warm-up of a freshly started JVM: records after it / (end of the last - end of the first).
2. End-to-end latency. The job runs with the processingTime trigger (``BENCH_TRIGGER``) while
   the producer sends ``BENCH_LATENCY_RATE`` messages/s for ``BENCH_LATENCY_SECONDS``. For each
   row: latency = commit time of the Delta version that made it visible (commitInfo.timestamp)
   minus its Kafka timestamp (set by the producer when it sent the message); p50/p99/max.

Results, with message size, partitions, trigger, machine (cores, memory, load) and versions, go
to ``bench/results/streaming.json``. Run with ``make bench-streaming``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lakehouse import jars, versions  # noqa: E402
from lakehouse.backends.local import LocalBackend  # noqa: E402
from lakehouse.kafka import ProduceStats, ensure_topic, produce_events  # noqa: E402
from lakehouse.settings import (  # noqa: E402
    KafkaSettings,
    Settings,
    SparkSettings,
    StorageSettings,
    StreamingSettings,
)
from lakehouse.streaming import (  # noqa: E402
    CheckpointProgress,
    bronze_checkpoint_dir,
    read_checkpoint,
    read_stream_status,
    streaming_job,
    table_paths,
)
from lakehouse.testing.kafka_broker import KafkaBroker  # noqa: E402

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "6000000"))
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "3"))
MAX_OFFSETS = [int(v) for v in os.environ.get("BENCH_MAX_OFFSETS", "1000000,2000000").split(",")]
TRIGGER = os.environ.get("BENCH_TRIGGER", "2 seconds")
LATENCY_RATE = float(os.environ.get("BENCH_LATENCY_RATE", "2000"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "60"))
LATENCY_MAX_OFFSETS = int(os.environ.get("BENCH_LATENCY_MAX_OFFSETS", "100000"))
DRIVER_MEMORY = os.environ.get("BENCH_DRIVER_MEMORY", "4g")
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "results" / "streaming.json"))


def say(msg: str) -> None:
    print(f"[bench-streaming] {msg}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, load and versions of this machine."""
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    import confluent_kafka

    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": model,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": (java.stderr.splitlines() or [""])[0],
        "spark": versions.SPARK_VERSION,
        "delta": versions.DELTA_VERSION,
        "kafka_broker": versions.KAFKA_VERSION,
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
    }


def settings_for(root: Path, servers: str, topic: str, max_offsets: int) -> Settings:
    return Settings(
        storage=StorageSettings(root=str(root)),
        kafka=KafkaSettings(bootstrap_servers=servers, topic=topic),
        spark=SparkSettings(driver_memory=DRIVER_MEMORY),
        streaming=StreamingSettings(
            max_offsets_per_trigger=max_offsets, processing_time=TRIGGER, topic_partitions=PARTITIONS
        ),
    )


def ingest_rates(broker: KafkaBroker, root: Path) -> list[dict[str, Any]]:
    """Phase 1: produce MESSAGES, then catch up with availableNow once per MAX_OFFSETS value."""
    topic = "bench-ingest"
    servers = broker.bootstrap_servers
    ensure_topic(servers, topic, partitions=PARTITIONS, retention_ms=-1)
    say(f"producing {MESSAGES:,} events to {topic} ({PARTITIONS} partitions)")
    sent = produce_events(servers, topic, count=MESSAGES, seed=1, id_prefix="ingest", on_progress=lambda s: None)
    say(f"produced at {sent.rate:,.0f} msg/s, {sent.bytes / sent.sent:.0f} bytes/message")
    runs = []
    for max_offsets in MAX_OFFSETS:
        say(f"catching up with maxOffsetsPerTrigger={max_offsets:,}")
        run = ingest_rate(root / f"ingest-{max_offsets}", servers, topic, max_offsets, sent)
        say(
            f"maxOffsetsPerTrigger={max_offsets:,}: {run['ingest_rate_msgs_per_s']:,} msg/s over "
            f"the whole run, {run['sustained_rate_msgs_per_s'] or 0:,} msg/s after the first batch"
        )
        runs.append(run)
    return runs


def ingest_rate(root: Path, servers: str, topic: str, max_offsets: int, sent: ProduceStats) -> dict[str, Any]:
    """One catch-up over the whole backlog from a fresh checkpoint; rate from the checkpoint."""
    settings = settings_for(root, servers, topic, max_offsets)
    started = time.monotonic()
    result = LocalBackend(settings).run(
        streaming_job(settings, trigger="available-now"),
        log=lambda line: say(line) if "[streaming]" in line else None,
    )
    wall = time.monotonic() - started
    progress = read_checkpoint(bronze_checkpoint_dir(settings), topic, keep=10_000)
    rates = checkpoint_rates(progress)
    bronze = next(m for m in result.metrics if m["layer"] == "bronze")
    assert rates["records"] == MESSAGES == bronze["rows_written"], (rates, bronze)
    return {
        "messages": MESSAGES,
        "message_bytes_avg": round(sent.bytes / sent.sent, 1),
        "producer_rate_msgs_per_s": round(sent.rate),
        "trigger": "availableNow",
        "max_offsets_per_trigger": max_offsets,
        "micro_batches": len(progress.batches),
        "ingest_seconds": rates["ingest_seconds"],
        "ingest_rate_msgs_per_s": rates["ingest_rate_msgs_per_s"],
        "sustained_rate_msgs_per_s": rates["sustained_rate_msgs_per_s"],
        "ingest_mb_per_s": round(sent.bytes / rates["ingest_seconds"] / 1e6, 2),
        "best_batch_rate_msgs_per_s": rates["best_batch_rate_msgs_per_s"],
        "batches": rates["batches"],
        "job_wall_seconds_incl_startup_and_gold": round(wall, 1),
        "rows_in_bronze": bronze["rows_written"],
    }


def checkpoint_rates(progress: CheckpointProgress) -> dict[str, Any]:
    """Ingest rates of one catch-up, from its checkpoint: records / (end of the last committed
    micro-batch - start of the first); sustained: records after the first micro-batch / (end of
    the last - end of the first); per micro-batch records and seconds."""
    first, last = progress.batches[0], progress.batches[-1]
    span = (last.committed_at - first.started_at).total_seconds()
    records = sum(last.end_offsets.values()) - sum(progress.start_offsets.values())
    batches = []
    before = progress.start_offsets
    for b in progress.batches:
        batches.append(
            {
                "batch_id": b.batch_id,
                "records": sum(b.end_offsets.values()) - sum(before.values()),
                "seconds": round((b.committed_at - b.started_at).total_seconds(), 2),
            }
        )
        before = b.end_offsets
    best = max(batches, key=lambda x: x["records"] / x["seconds"] if x["seconds"] else 0.0)
    after_first = records - batches[0]["records"]
    sustained_span = (last.committed_at - first.committed_at).total_seconds()
    return {
        "records": records,
        "ingest_seconds": round(span, 2),
        "ingest_rate_msgs_per_s": round(records / span),
        "sustained_rate_msgs_per_s": (
            round(after_first / sustained_span) if len(batches) > 1 and sustained_span > 0 else None
        ),
        "best_batch_rate_msgs_per_s": round(best["records"] / best["seconds"]) if best["seconds"] else None,
        "batches": batches,
    }


def _commit_times(table: str) -> dict[str, int]:
    """Data file name -> commit timestamp (ms) of the Delta version that added it."""
    out: dict[str, int] = {}
    for f in sorted(Path(table, "_delta_log").glob("*.json")):
        adds, ts = [], None
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "commitInfo" in action:
                ts = int(action["commitInfo"]["timestamp"])
            elif "add" in action:
                adds.append(action["add"]["path"])
        for path in adds:
            out[path.rsplit("/", 1)[-1]] = ts or 0
    return out


def latency(broker: KafkaBroker, root: Path) -> dict[str, Any]:
    """Phase 2: steady traffic while the stream runs with the processingTime trigger."""
    import threading

    from pyspark.sql import functions as F

    from spark_jobs.session import build_session

    topic = "bench-latency"
    servers = broker.bootstrap_servers
    ensure_topic(servers, topic, partitions=PARTITIONS, retention_ms=-1)
    settings = settings_for(root / "latency", servers, topic, LATENCY_MAX_OFFSETS)
    # The job stops by itself after max_seconds; the measured traffic starts once the stream
    # committed a warm-up batch and ends well before that.
    warmup_limit = 300.0
    run_seconds = warmup_limit + LATENCY_SECONDS + 60
    job = streaming_job(settings, trigger="processing-time", max_seconds=run_seconds)
    done: list[Any] = []
    runner = threading.Thread(
        target=lambda: done.append(LocalBackend(settings).run(job, log=lambda _: None)), daemon=True
    )
    produce_events(servers, topic, count=1000, seed=3, id_prefix="warm")
    runner.start()
    began = time.monotonic()
    checkpoint = bronze_checkpoint_dir(settings)
    while not read_checkpoint(checkpoint, topic).batches:
        if time.monotonic() - began > warmup_limit or not runner.is_alive():
            raise RuntimeError("the stream did not commit its warm-up batch")
        time.sleep(0.5)
    say(
        f"stream up after {time.monotonic() - began:.0f}s (trigger {TRIGGER}); producing "
        f"{LATENCY_RATE:,.0f} msg/s for {LATENCY_SECONDS:.0f}s"
    )
    sent = produce_events(servers, topic, rate=LATENCY_RATE, seconds=LATENCY_SECONDS, seed=2, id_prefix="lat")
    # Let the stream drain what was just sent, then wait for the job's graceful stop.
    drain = time.monotonic() + 120
    while read_stream_status(settings).total_lag and time.monotonic() < drain:
        time.sleep(1)
    runner.join(timeout=run_seconds + 600)
    if not done:
        raise RuntimeError("the latency run did not finish")
    status = read_stream_status(settings)
    bronze = table_paths(settings)["bronze"]
    commits = _commit_times(bronze)
    spark = build_session(
        "bench-latency",
        {
            "spark.jars": ",".join(str(p) for p in jars.resolved_jars()),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
        },
        master="local[2]",
    )
    try:
        files = spark.createDataFrame(list(commits.items()), "file string, commit_ms bigint")
        rows = (
            spark.read.format("delta")
            .load(bronze)
            .where(F.col("event_id").startswith("lat-"))
            .select(
                F.col("_metadata.file_name").alias("file"), (F.unix_micros("_kafka_timestamp") / 1000).alias("kafka_ms")
            )
            .join(files, "file")
            .select((F.col("commit_ms") - F.col("kafka_ms")).alias("ms"))
        )
        stats = rows.agg(
            F.count("*").alias("n"),
            F.percentile("ms", 0.5).alias("p50"),
            F.percentile("ms", 0.99).alias("p99"),
            F.max("ms").alias("max"),
        ).first()
    finally:
        spark.stop()
    assert stats is not None
    return {
        "trigger": f"processingTime {TRIGGER}",
        "max_offsets_per_trigger": LATENCY_MAX_OFFSETS,
        "target_rate_msgs_per_s": LATENCY_RATE,
        "achieved_produce_rate_msgs_per_s": round(sent.rate),
        "seconds": LATENCY_SECONDS,
        "messages": sent.sent,
        "rows_measured": int(stats["n"]),
        "latency_ms_p50": round(float(stats["p50"])),
        "latency_ms_p99": round(float(stats["p99"])),
        "latency_ms_max": round(float(stats["max"])),
        "lag_at_end": status.total_lag,
    }


def main() -> int:
    info = machine()
    say(f"machine: {info['cores']} cores, {info['memory_gib']} GiB, load {info['load_average_at_start']}")
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        root = Path(tmp)
        broker = KafkaBroker(
            data_dir=root / "kafka",
            jvm_performance_opts="-XX:+UseG1GC -XX:MaxGCPauseMillis=20",
        )
        os.environ.setdefault("KAFKA_HEAP_OPTS", "-Xms512m -Xmx1g")
        with broker:
            runs = ingest_rates(broker, root)
            lat = latency(broker, root)
            say(f"latency: p50 {lat['latency_ms_p50']} ms, p99 {lat['latency_ms_p99']} ms")
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    goal = 100_000
    ingest = max(runs, key=lambda r: r["ingest_rate_msgs_per_s"])
    result = {
        "benchmark": "streaming",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "goal_msgs_per_s": goal,
        "goal_met": ingest["ingest_rate_msgs_per_s"] >= goal,
        "partitions": PARTITIONS,
        "message_bytes_avg": ingest["message_bytes_avg"],
        "ingest": ingest,
        "ingest_by_max_offsets_per_trigger": [
            {
                k: r[k]
                for k in (
                    "trigger",
                    "max_offsets_per_trigger",
                    "micro_batches",
                    "ingest_seconds",
                    "ingest_rate_msgs_per_s",
                    "sustained_rate_msgs_per_s",
                    "best_batch_rate_msgs_per_s",
                )
            }
            for r in runs
        ],
        "latency": lat,
        "machine": info,
        "notes": [
            "Everything shares 2 cores: the Kafka broker, the producer, the Spark driver "
            "(local[*], executor threads in the driver JVM) and the gold query; on this "
            "workplace also other sessions' jobs (see the load averages). The ingest is "
            "CPU-bound: reading the records from Kafka, JSON parsing and typing, the contract "
            "rules, the batch's in-memory copy and the Parquet encoding with statistics.",
            "The first micro-batch of a freshly started JVM runs at about half the speed of the "
            "later ones (JIT compilation); sustained_rate_msgs_per_s leaves it out.",
            "Each micro-batch also pays a fixed cost of about 2 s here (a micro-batch of a few "
            "records takes that long): Spark job scheduling, the Kafka fetch, the idempotent "
            "Delta appends (each reads the table's transactions from its snapshot, then commits) "
            "and the checkpoint's offsets/commits files. It bounds the latency from below and is "
            "why larger batches (maxOffsetsPerTrigger) raise the ingest rate: "
            "ingest_by_max_offsets_per_trigger has one whole catch-up per setting, each from a "
            "fresh checkpoint over the same backlog; goal_met is judged on the best setting's "
            "whole-run rate (first micro-batch and its JIT warm-up included).",
            "On a cluster the job is the same on the Kubernetes backend, where executors and "
            "Kafka partitions scale out.",
        ],
        "setup": {
            "spark_master": "local[*]",
            "driver_memory": DRIVER_MEMORY,
            "broker": "single-node KRaft on 127.0.0.1, same machine",
            "producer": "confluent-kafka, enable.idempotence, acks=all, linger.ms=10, no compression",
            "sink": "foreachBatch: idempotent Delta appends (txnAppId=query id, "
            "txnVersion=batch id) to bronze (while the batch is counted), dead letters "
            "and quality/metrics (after the count), side by side; gold windows from "
            "bronze (Delta source/sink)",
            "driver_java_options": " ".join(StreamingSettings().java_options),
            "min_partitions": "0 (Spark's default parallelism: 4 tasks per micro-batch here)",
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    say(f"wrote {OUT}")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
