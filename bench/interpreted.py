"""Interpreted against code-generated queries by the size of a run: where the crossover is.

``pipeline.interpret_below_mb`` runs a medallion run whose landing input is small without Spark's
code generation. This measures the threshold's two sides on the warm local Spark, hot (one
server for the whole benchmark, warmed by an untimed pair first), by day size: for each size in
BENCH_EVENTS (events per day, default 2000,20000,100000; orders a fifth of that), two days of
landing data, then per round a fresh root and the medallion job over the first day (creates the
tables) and over the second (MERGEs into them), submitted to the backend directly (the Spark
job is the question, not Prefect). Sides alternate codegen, interpreted, codegen, interpreted
(BENCH_ROUNDS pairs, default 2); each side's median counts. A cold server (the first runs of
``make demo``) is measured by bench/demo_ab.sh. Writes bench/results/interpreted.json.
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
DAYS = [START, START + dt.timedelta(days=1)]
SIDES = {"codegen": 0.0, "interpreted": 1e9}
# this benchmark's own warm server (a conf key no other one has), stopped at the end
os.environ["LAKEHOUSE_SPARK__CONF"] = json.dumps({"spark.lakehouse.bench.server": uuid.uuid4().hex})
os.environ["LAKEHOUSE_SPARK__MODE"] = "warm"


def _settings(root: Path, limit: float) -> Any:
    from lakehouse.settings import get_settings

    os.environ["LAKEHOUSE_STORAGE__ROOT"] = str(root)
    os.environ["LAKEHOUSE_PIPELINE__INTERPRET_BELOW_MB"] = f"{limit:g}"
    get_settings.cache_clear()
    return get_settings()


def _round(base: Path, landing: Path, side: str, tag: str) -> dict[str, float]:
    from lakehouse.backends import get_backend
    from lakehouse.pipeline import LAYERS, medallion_jobs

    root = base / f"{side}-{tag}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "landing").symlink_to(landing)
    settings = _settings(root, SIDES[side])
    backend = get_backend(settings)
    out = {}
    for key, day in (("first_day_s", DAYS[0]), ("next_day_s", DAYS[1])):
        (job,) = medallion_jobs(LAYERS, settings, start=day, end=day, run_id=f"bench-{side}-{tag}")
        t0 = time.perf_counter()
        result = backend.run(job, log=lambda line: None)
        out[key] = round(time.perf_counter() - t0, 2)
        assert result.state == "COMPLETED", result
    shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> int:
    from lakehouse.backends.local import LocalBackend
    from lakehouse.backends.warm import WarmServer

    sizes = [int(s) for s in os.environ.get("BENCH_EVENTS", "2000,20000,100000").split(",")]
    pairs = int(os.environ.get("BENCH_ROUNDS", "2"))
    base = Path(tempfile.mkdtemp(prefix="bench-interpreted-"))
    machine = describe()
    server = WarmServer(LocalBackend(_settings(base / "probe", 0)))
    server.ensure(lambda line: None)
    results: dict[str, Any] = {}
    try:
        for events in sizes:
            landing = base / f"landing-{events}"
            generate(landing, GenConfig(start=START, days=2, events_per_day=events, orders_per_day=events // 5))
            day_mib = round(sum(f.stat().st_size for f in landing.rglob(f"date={DAYS[0]}/*")) / 2**20, 2)
            if events == sizes[0]:
                for side in SIDES:  # untimed: the server's code paths warm, both sides
                    _round(base, landing, side, "warm-up")
            runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
            for n in range(pairs):
                for side in SIDES:
                    runs[side].append(_round(base, landing, side, str(n)))
                    print(f"  {events} events/day ({day_mib} MiB): {side} round {n}: {runs[side][-1]}", flush=True)
            medians = {
                side: {key: round(statistics.median(r[key] for r in rs), 2) for key in rs[0]}
                for side, rs in runs.items()
            }
            results[str(events)] = {"landing_mib_first_day": day_mib, "runs": runs, "median": medians}
            print(f"{events} events/day: {medians}", flush=True)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    out = {
        "benchmark": "medallion job, interpreted (no code generation) against code generation, by day size",
        "order": f"ABAB per size ({', '.join(SIDES)}), {pairs} pairs, one hot warm server",
        "machine": machine,
        "sizes": results,
    }
    path = ROOT / "bench" / "results" / "interpreted.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
