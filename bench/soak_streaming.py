"""Soak: ``kill -9`` the streaming job 20 times (by default) at random points while a producer
keeps sending, restart it each time, catch up, and check exactly-once.

The longer sibling of ``tests/kafka/test_streaming_exactly_once.py`` (5 kills). Unlike the test,
the gold query runs during the crashes too. Real broker on loopback (started here), real
spark-submit; bounded: the producer stops with the last crash, the whole run with --timeout.

    .venv/bin/python bench/soak_streaming.py                   # 20 kills
    .venv/bin/python bench/soak_streaming.py --kills 10 --rate 500 --seed 7

Exit code 0 when nothing was lost or duplicated (bronze, dead letters; gold windows unique and
equal to the sums of bronze), 1 otherwise. A summary goes to bench/results/soak_streaming.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe  # noqa: E402
from lakehouse import jars  # noqa: E402
from lakehouse.backends.local import LocalBackend  # noqa: E402
from lakehouse.kafka import ProduceStats, ensure_topic, produce_events  # noqa: E402
from lakehouse.settings import KafkaSettings, Settings, StorageSettings, StreamingSettings  # noqa: E402
from lakehouse.streaming import read_stream_status, streaming_job, table_paths  # noqa: E402
from lakehouse.testing.kafka_broker import KafkaBroker  # noqa: E402
from lakehouse.testing.stream_chaos import exactly_once_problems, kill_cycles  # noqa: E402


def say(msg: str) -> None:
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


def _timeout(_sig: int, _frame: Any) -> None:
    raise TimeoutError("the soak run passed its --timeout")


def _terminated(sig: int, _frame: Any) -> None:
    raise SystemExit(128 + sig)  # unwinds: the running job, the broker and the temp dir go


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--rate", type=float, default=200.0, help="produced messages per second")
    p.add_argument("--malformed", type=float, default=0.03, help="share of malformed messages")
    p.add_argument("--max-offsets", type=int, default=500, help="maxOffsetsPerTrigger while crashing")
    p.add_argument("--seed", type=int, default=20260101)
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds for the whole run")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak_streaming.json"))
    args = p.parse_args(argv)
    signal.signal(signal.SIGALRM, _timeout)
    signal.signal(signal.SIGTERM, _terminated)
    signal.alarm(int(args.timeout))
    rng = random.Random(args.seed)
    machine = describe()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="soak-streaming-") as tmp, KafkaBroker() as broker:
        topic = "soak"
        ensure_topic(broker.bootstrap_servers, topic, partitions=3, retention_ms=-1)
        settings = Settings(
            storage=StorageSettings(root=str(Path(tmp) / "lake")),
            kafka=KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic=topic),
            streaming=StreamingSettings(max_offsets_per_trigger=args.max_offsets, processing_time="1 second"),
        )
        stop = threading.Event()
        produced: list[ProduceStats] = []
        base = dt.datetime(2026, 1, 1)

        def produce() -> None:
            produced.append(
                produce_events(
                    broker.bootstrap_servers,
                    topic,
                    rate=args.rate,
                    stop=stop,
                    seconds=args.timeout,
                    malformed_share=args.malformed,
                    seed=args.seed,
                    id_prefix="soak",
                    record=True,
                    event_time=lambda i: base + dt.timedelta(milliseconds=100 * i),
                )
            )

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        try:
            kills = kill_cycles(
                LocalBackend(settings),
                streaming_job(settings, trigger="processing-time", max_seconds=args.timeout),
                cycles=args.kills,
                rng=rng,
                delay=(0.0, 6.0),
                log=lambda line: say(line) if line.startswith("[streaming]") else None,
            )
        finally:
            stop.set()
            producer.join(timeout=300)
        for k in kills:
            say(f"kill {k.cycle}: after batch {k.first_batch} + {k.delay_s}s ({k.run_s}s run)")
        sent = produced[0]
        assert sent.messages is not None
        say(f"produced {sent.sent} messages ({sent.malformed} malformed); catching up")
        catch_up = settings.model_copy(
            update={"streaming": settings.streaming.model_copy(update={"max_offsets_per_trigger": 50_000})}
        )
        LocalBackend(catch_up).run(
            streaming_job(catch_up, trigger="available-now"),
            log=lambda line: say(line) if "[streaming]" in line else None,
        )
        lag = read_stream_status(settings).total_lag

        from spark_jobs.session import build_session

        spark = build_session(
            "soak-check",
            {
                "spark.jars": ",".join(str(x) for x in jars.resolved_jars()),
                "spark.driver.host": "127.0.0.1",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.ui.enabled": "false",
            },
            master="local[2]",
        )
        try:
            paths = table_paths(settings)
            bronze_df = spark.read.format("delta").load(paths["bronze"])
            bronze = [r[0] for r in bronze_df.select("event_id").collect()]
            dead = [r[0] for r in spark.read.format("delta").load(paths["dead_letter"]).select("_kafka_key").collect()]
            problems = exactly_once_problems(sent.messages, bronze, dead)
            if lag:
                problems.append(f"lag {lag} after the catch-up")
            gold = spark.read.format("delta").load(paths["gold"])
            dup_windows = gold.groupBy("window_start", "event_type").count().where("count > 1").count()
            if dup_windows:
                problems.append(f"gold: {dup_windows} window(s) written more than once")
            # Each gold window equals the count/sum of its bronze rows.
            from spark_jobs.transforms.streaming import windowed_counts

            recomputed = windowed_counts(bronze_df.select("event_time", "event_type", "amount"))
            mismatch = (
                gold.join(recomputed, ["window_start", "event_type"], "left")
                .where(
                    (gold.event_count != recomputed.event_count) | ~gold.amount_sum.eqNullSafe(recomputed.amount_sum)
                )
                .count()
            )
            if mismatch:
                problems.append(f"gold: {mismatch} window(s) differ from bronze")
            gold_rows = gold.count()
        finally:
            spark.stop()
    summary = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "kills": [k.__dict__ for k in kills],
        "messages": sent.sent,
        "malformed": sent.malformed,
        "bronze_rows": len(bronze),
        "dead_letters": len(dead),
        "gold_windows": gold_rows,
        "seconds": round(time.monotonic() - started, 1),
        "problems": problems,
        "exactly_once": not problems,
        "settings": {
            "kills": args.kills,
            "rate": args.rate,
            "malformed": args.malformed,
            "max_offsets": args.max_offsets,
            "seed": args.seed,
            "partitions": 3,
            "trigger": "processingTime 1 second",
        },
        "machine": machine,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    for problem in problems:
        say(f"PROBLEM: {problem}")
    say(
        f"{len(kills)} kills, {sent.sent} messages: "
        + ("exactly once" if not problems else f"{len(problems)} problem(s)")
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
