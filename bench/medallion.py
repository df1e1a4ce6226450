"""Medallion benchmark: rows/s per layer, flow overhead, incremental versus full rebuild.

Generates BENCH_EVENTS events (default 10,000,000) over BENCH_DAYS + 1 days (default 30 + 1),
then measures on fresh lakehouse roots sharing the same landing files:

1. full rebuild: the medallion flow over all days (Prefect, embedded server, started before any
   timing as a deployment's server is already running), once on the warm local Spark (the
   default, ``LAKEHOUSE_SPARK__MODE=warm``) and once with a spark-submit driver per job;
2. plain: the same entrypoint and arguments launched with spark-submit directly, no Prefect;
   the three run BENCH_PAIRS times each (default 2), in ABC CBA order, and each side's median
   counts;
3. incremental: the flow (warm) over the first BENCH_DAYS days (history), then over the last
   day only;
4. no-op rerun: that last day again (nothing new arrives): the fixed cost of a run (every table
   opened and checked for pending batches), the floor under any incremental run.

The flow is called as the ``lakehouse`` command calls it (``prefect_env.direct_run``: no flow-run
heartbeats). Writes bench/results/medallion.json and prints a table. Goals: flow / plain <= 1.03,
warm / spark-submit full rebuild <= 1.0 and incremental / full <= 0.10 (aim 0.05).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe  # noqa: E402
from lakehouse.datagen import GenConfig, generate  # noqa: E402

START = dt.date(2026, 1, 1)
# The comparison is the Spark pipeline with and without Prefect around it: the dbt marts (the gold
# step's second half, a different engine path) would be in one side only, so they are off here.
os.environ.setdefault("LAKEHOUSE_PIPELINE__DBT_MARTS", "false")
# 10M events in local mode: the driver JVM is the whole cluster, so it gets most of the memory.
# The shuffles keep the preset's partitions (2x cores, at least 4). Until session 35 this set 64
# shuffle partitions, but the preset overrode that in every driver (spark_jobs/session.py), so
# every recorded result ran on the preset's 4: keeping the preset keeps new runs comparable.
BENCH_SPARK = {
    "LAKEHOUSE_SPARK__DRIVER_MEMORY": os.environ.get("LAKEHOUSE_SPARK__DRIVER_MEMORY", "8g"),
    "LAKEHOUSE_SPARK__CONF": os.environ.get("LAKEHOUSE_SPARK__CONF", "{}"),
}
os.environ.update(BENCH_SPARK)


def _settings_env(root: Path, mode: str = "warm") -> None:
    from lakehouse.settings import get_settings

    os.environ["LAKEHOUSE_STORAGE__ROOT"] = str(root)
    os.environ["LAKEHOUSE_SPARK__MODE"] = mode
    get_settings.cache_clear()


def _fresh(base: Path, name: str, landing: Path) -> Path:
    root = base / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "landing").symlink_to(landing)
    return root


def _flow(root: Path, start: dt.date, end: dt.date, mode: str = "warm") -> tuple[float, list[dict[str, Any]]]:
    from flows.medallion import medallion
    from lakehouse.prefect_env import direct_run

    _settings_env(root, mode)
    t0 = time.perf_counter()
    with direct_run():
        rows = medallion(start_date=start, end_date=end)
    return time.perf_counter() - t0, rows


def _warm_server() -> Any:
    """The warm server of the benchmark's settings (its own: the conf above is its key)."""
    from lakehouse.backends.local import LocalBackend
    from lakehouse.backends.warm import WarmServer
    from lakehouse.settings import get_settings

    return WarmServer(LocalBackend(get_settings()))


def _prefect_api_up() -> float:
    """Start Prefect's temporary API server with a no-op flow run; return how long it took.

    Outside the timed runs: a deployment's flow runs talk to a server that is already up, and
    the one-off start (about 10 s) would otherwise land in whichever flow run is timed first.
    """
    from prefect import flow

    @flow(name="bench-prefect-api-up")
    def api_up() -> None:
        return None

    t0 = time.perf_counter()
    api_up()
    return time.perf_counter() - t0


def _plain(root: Path, start: dt.date, end: dt.date) -> float:
    from lakehouse.backends.local import LocalBackend, private_tmp
    from lakehouse.pipeline import LAYERS, medallion_jobs
    from lakehouse.settings import get_settings

    _settings_env(root, "submit")
    settings = get_settings()
    backend = LocalBackend(settings)
    (job,) = medallion_jobs(list(LAYERS), settings, start=start, end=end, run_id="plain")
    t0 = time.perf_counter()
    with private_tmp() as tmp:
        subprocess.run(
            backend.command(job, tmp_dir=tmp),
            env=backend.environment(tmp_dir=tmp),
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return time.perf_counter() - t0


def _rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows and wall time per layer: with every table of a layer side by side (the default table
    parallelism) its longest table, one after the other their sum."""
    from lakehouse.settings import get_settings

    out: dict[str, Any] = {}
    for layer in ("bronze", "silver", "gold"):
        mine = [r for r in rows if r["layer"] == layer]
        durations = [r["duration_s"] or 0 for r in mine]
        together = get_settings().pipeline.table_parallelism >= len(mine)
        seconds = max(durations, default=0) if together else sum(durations)
        n = sum((r["rows_read"] if r["rows_read"] is not None else r["rows_written"]) or 0 for r in mine)
        out[layer] = {"rows": n, "seconds": round(seconds, 2), "rows_per_s": round(n / seconds) if seconds else None}
    return out


def main() -> int:
    events = int(os.environ.get("BENCH_EVENTS", "10000000"))
    days = int(os.environ.get("BENCH_DAYS", "30"))
    per_day = max(1, events // (days + 1))
    cfg = GenConfig(
        start=START,
        days=days + 1,
        seed=7,
        events_per_day=per_day,
        orders_per_day=max(1, per_day // 5),
        users_initial=max(200, per_day // 50),
        users_new_per_day=max(20, per_day // 500),
        files_per_day=4,
    )
    base = ROOT / ".lakehouse" / "bench"
    landing = base / f"landing-{events}-{days}"
    marker = landing / "_manifest.json"
    machine = describe()
    if not marker.exists():
        print(f"generating {events:,} events over {days + 1} days ...", flush=True)
        t0 = time.perf_counter()
        shutil.rmtree(landing, ignore_errors=True)
        generate(landing, cfg, progress=lambda line: print("  " + line, flush=True))
        print(f"  generated in {time.perf_counter() - t0:.0f}s", flush=True)
    last = START + dt.timedelta(days=days)

    api_s = _prefect_api_up()
    print(f"Prefect's temporary API server up in {api_s:.1f}s (not part of any timed run)", flush=True)
    # Full rebuilds through the flow (warm, then spark-submit per job) and by plain spark-submit,
    # in the order ABC, CBA, ... so drift of the machine over time favours no side; each side's
    # figure is its median. The warm server starts before the first timing (`make up`), once.
    _settings_env(base / "probe")
    server = _warm_server()
    t0 = time.perf_counter()
    server.ensure(lambda line: None)
    server_start_s = time.perf_counter() - t0
    print(f"warm local Spark up in {server_start_s:.1f}s (not part of any timed run)", flush=True)
    pairs = int(os.environ.get("BENCH_PAIRS", "2"))
    runs: dict[str, list[float]] = {"warm": [], "submit": [], "plain": []}
    full_rows: list[dict[str, Any]] = []
    try:
        for i in range(pairs):
            order = ("warm", "submit", "plain") if i % 2 == 0 else ("plain", "submit", "warm")
            for side in order:
                how = {"warm": "flow, warm", "submit": "flow, spark-submit", "plain": "plain spark-submit"}[side]
                print(f"1-2/4 full rebuild {i + 1}/{pairs}, {how} ...", flush=True)
                if side == "plain":
                    seconds = _plain(_fresh(base, "plain", landing), START, last)
                else:
                    seconds, rows = _flow(_fresh(base, "full", landing), START, last, side)
                    if side == "warm":
                        full_rows = full_rows or rows
                runs[side].append(seconds)
                print(f"    {seconds:.1f}s", flush=True)
        full_s, submit_s, plain_s = (statistics.median(runs[k]) for k in ("warm", "submit", "plain"))
        print(f"3/4 history ({days} days), then one new day (warm) ...", flush=True)
        inc_root = _fresh(base, "incremental", landing)
        history_s, _ = _flow(inc_root, START, last - dt.timedelta(days=1))
        inc_s, inc_rows = _flow(inc_root, last, last)
        print(f"    history {history_s:.1f}s, new day {inc_s:.1f}s", flush=True)
        print("4/4 the same day again (nothing new) ...", flush=True)
        noop_s, _ = _flow(inc_root, last, last)
    finally:
        server.stop()

    result: dict[str, Any] = {
        "benchmark": "medallion",
        "events": events,
        "days": days + 1,
        "machine": machine,
        "spark_settings": BENCH_SPARK,
        "prefect_api_start_s_excluded": round(api_s, 2),
        "warm_server_start_s_excluded": round(server_start_s, 2),
        "order": "ABC CBA (flow warm, flow spark-submit, plain spark-submit) x BENCH_PAIRS; medians",
        "full_rebuild_s": round(full_s, 2),
        "full_rebuild_spark_submit_s": round(submit_s, 2),
        "plain_spark_submit_s": round(plain_s, 2),
        "full_rebuild_runs_s": [round(x, 2) for x in runs["warm"]],
        "full_rebuild_spark_submit_runs_s": [round(x, 2) for x in runs["submit"]],
        "plain_spark_submit_runs_s": [round(x, 2) for x in runs["plain"]],
        "warm_over_spark_submit": round(full_s / submit_s, 3),
        "warm_over_spark_submit_goal": 1.0,
        "flow_over_plain": round(submit_s / plain_s, 3),
        "flow_over_plain_goal": 1.03,
        "history_build_s": round(history_s, 2),
        "incremental_one_day_s": round(inc_s, 2),
        "incremental_over_full": round(inc_s / full_s, 3),
        "incremental_over_full_goal": 0.10,
        "incremental_over_full_aim": 0.05,
        "noop_rerun_s": round(noop_s, 2),
        "noop_rerun_over_full": round(noop_s / full_s, 3),
        "layers_full": _rates(full_rows),
        "layers_incremental": _rates(inc_rows),
    }
    manifest = json.loads(marker.read_text())
    result["landing_lines"] = sum(v["lines"] for d in manifest["days"].values() for v in d.values())
    out = ROOT / "bench" / "results" / "medallion.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'layer':8} {'rows':>12} {'seconds':>9} {'rows/s':>10}")
    for layer, v in result["layers_full"].items():
        print(f"{layer:8} {v['rows']:>12,} {v['seconds']:>9} {v['rows_per_s'] or '':>10}")
    print(
        f"\nfull rebuild warm {full_s:.1f}s | flow on spark-submit {submit_s:.1f}s | plain spark-submit "
        f"{plain_s:.1f}s | warm/spark-submit {result['warm_over_spark_submit']} (goal <= 1.0) | flow/plain "
        f"{result['flow_over_plain']} (goal <= 1.03)"
    )
    print(
        f"incremental day {inc_s:.1f}s | incremental/full {result['incremental_over_full']} (goal <= 0.10)"
        f" | no-op rerun {noop_s:.1f}s"
    )
    print(
        f"machine: {machine['cores']} cores, {machine['memory_gib']} GiB, load at start "
        f"{machine['load_average_at_start']}\nwrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
