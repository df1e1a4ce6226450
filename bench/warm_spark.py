"""Warm local Spark versus spark-submit: the medallion flow on the demo's data, ABAB.

Per round and mode (``LAKEHOUSE_SPARK__MODE`` = submit, warm), on a fresh root with the demo's
landing data (3 days of 2,000 events and 400 orders a day):

1. demo day: the medallion flow over the first day (what `make demo` runs first);
2. next days: the flow over the other two days (incremental);
3. nothing to do: the flow over the same two days again (every table checked, nothing written).

The rounds alternate submit, warm, submit, warm (BENCH_ROUNDS pairs, default 2) and each side's
median counts; the warm server is started once before the first warm round (``make``-free first
use costs one driver start, reported on its own) and reused after. Then BENCH_MEMORY_RUNS
(default 100) no-op runs on the warm server, sampling the driver JVM's resident memory and its heap
right after a full collection, to show whether it grows with runs (cached plans, Delta logs);
those runs go to the backend directly.

The Prefect flow is timed end to end as the ``lakehouse`` command calls it (no flow-run
heartbeats: ``lakehouse.prefect_env.direct_run``; its temporary API server started before any
timing), with the dbt marts off: the same comparison for both modes. Writes bench/results/warm_spark.json.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe  # noqa: E402
from lakehouse.datagen import GenConfig, generate  # noqa: E402

START = dt.date(2026, 1, 1)
DAYS = [START + dt.timedelta(days=i) for i in range(3)]
os.environ.setdefault("LAKEHOUSE_PIPELINE__DBT_MARTS", "false")
# this benchmark's own warm server (a conf key no other one has), stopped at the end
os.environ["LAKEHOUSE_SPARK__CONF"] = json.dumps({"spark.lakehouse.bench.server": uuid.uuid4().hex})


def _use(root: Path, mode: str) -> None:
    from lakehouse.settings import get_settings

    os.environ["LAKEHOUSE_STORAGE__ROOT"] = str(root)
    os.environ["LAKEHOUSE_SPARK__MODE"] = mode
    get_settings.cache_clear()


def _flow(start: dt.date, end: dt.date) -> tuple[float, list[dict[str, Any]]]:
    from flows.medallion import medallion
    from lakehouse.prefect_env import direct_run

    t0 = time.perf_counter()
    with direct_run():  # as the lakehouse command calls it
        rows = medallion(start_date=start, end_date=end)
    return round(time.perf_counter() - t0, 2), rows


def _round(base: Path, landing: Path, mode: str, n: int) -> dict[str, float]:
    root = base / f"{mode}-{n}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "landing").symlink_to(landing)
    _use(root, mode)
    demo, _ = _flow(DAYS[0], DAYS[0])
    following, _ = _flow(DAYS[1], DAYS[2])
    noop, rows = _flow(DAYS[1], DAYS[2])
    assert all(r["rows_written"] == 0 for r in rows), rows
    out = {"demo_day_s": demo, "next_days_s": following, "nothing_to_do_s": noop}
    print(f"  {mode:6} round {n}: {out}", flush=True)
    return out


def _rss_mib(pid: int) -> float:
    """Resident memory of the driver JVM (the warm server's parent process) in MiB."""
    import psutil

    jvm = psutil.Process(pid).parent()
    assert jvm is not None
    return round(jvm.memory_info().rss / 2**20, 1)


def _heap_mib(server: Any) -> float:
    """The warm driver's heap in use right after a full collection, in MiB."""
    answer = server.request({"op": "memory"}, timeout=60)
    return round(float(answer["heap_used_after_gc"]) / 2**20, 1)


def main() -> int:
    from prefect import flow

    from lakehouse.backends import get_backend
    from lakehouse.backends.local import LocalBackend
    from lakehouse.backends.warm import WarmServer
    from lakehouse.pipeline import LAYERS, medallion_jobs
    from lakehouse.settings import get_settings

    pairs = int(os.environ.get("BENCH_ROUNDS", "2"))
    memory_runs = int(os.environ.get("BENCH_MEMORY_RUNS", "100"))
    base = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    landing = base / "landing"
    manifest = generate(landing, GenConfig(start=START, days=3, events_per_day=2000, orders_per_day=400))
    lines = {str(d): sum(v.lines for v in manifest.days[d].values()) for d in manifest.days}
    machine = describe()

    @flow
    def warm_up() -> None:
        return None

    warm_up()  # Prefect's temporary API server, outside every timing
    _use(base / "probe", "warm")
    server = WarmServer(LocalBackend(get_settings()))
    t0 = time.perf_counter()
    server.ensure(lambda line: None)
    server_start_s = round(time.perf_counter() - t0, 2)
    results: dict[str, list[dict[str, float]]] = {"submit": [], "warm": []}
    try:
        for n in range(pairs):
            for mode in ("submit", "warm"):
                results[mode].append(_round(base, landing, mode, n))
        # memory over many runs on the warm server: the no-op job of the last round's root,
        # submitted straight to the backend (the driver's memory is the question, not Prefect's)
        _use(base / f"warm-{pairs - 1}", "warm")
        status = server.ping()
        assert status is not None
        rss = [_rss_mib(status["pid"])]
        heap = [_heap_mib(server)]
        noop_times = []
        settings = get_settings()
        backend = get_backend(settings)
        (job,) = medallion_jobs(LAYERS, settings, start=DAYS[1], end=DAYS[2], run_id="bench")
        for i in range(memory_runs):
            t0 = time.perf_counter()
            backend.run(job, log=lambda line: None)
            seconds = round(time.perf_counter() - t0, 2)
            noop_times.append(seconds)
            if (i + 1) % 10 == 0:
                rss.append(_rss_mib(status["pid"]))
                heap.append(_heap_mib(server))
                print(
                    f"  memory: {i + 1} runs, driver RSS {rss[-1]} MiB, heap after GC {heap[-1]} MiB, "
                    f"last run {seconds}s",
                    flush=True,
                )
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)

    def median(mode: str, key: str) -> float:
        return round(statistics.median(r[key] for r in results[mode]), 2)

    keys = ("demo_day_s", "next_days_s", "nothing_to_do_s")
    report = {
        "benchmark": "warm_spark",
        "machine": machine,
        "landing_lines_per_day": lines,
        "order": "ABAB (submit, warm) x BENCH_ROUNDS; medians per side",
        "rounds": results,
        "warm_server_start_s": server_start_s,
        "median_s": {mode: {k: median(mode, k) for k in keys} for mode in results},
        "warm_over_submit": {k: round(median("warm", k) / median("submit", k), 3) for k in keys},
        "goals_s": {"demo_day_s": 15.0, "nothing_to_do_s": 3.0},
        "memory": {
            "runs": memory_runs,
            "driver_rss_mib_every_10_runs": rss,
            "driver_heap_after_gc_mib_every_10_runs": heap,
            "noop_run_s_first_last_10_median": [
                round(statistics.median(noop_times[:10]), 2),
                round(statistics.median(noop_times[-10:]), 2),
            ],
        },
    }
    out = ROOT / "bench" / "results" / "warm_spark.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["median_s"], indent=1))
    print(json.dumps(report["warm_over_submit"]), f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
