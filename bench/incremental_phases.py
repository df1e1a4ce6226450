"""Where one new day's time goes: per table and per phase, read from Spark's own event log.

Usage: python bench/incremental_phases.py     (``make bench-phases``)
       python bench/incremental_phases.py --from .lakehouse/bench/eventlog/STAMP   (again, from a
       run's event log and the runs.json kept beside it)

The medallion benchmark's incremental run (BENCH_EVENTS events, default 10M, over BENCH_DAYS + 1
days; ``make bench`` generates the data once) answers how long one new day takes. This one
answers where that time goes. A 30-day history is built once (kept under ``.lakehouse/bench``
and reused by later runs), then the medallion job of the new day runs on the warm local Spark
(as the flow submits it, without the flow around it) on fresh copies of the history, alternating:

- side by side: the tables of a layer at once (the default ``pipeline.table_parallelism``), as
  in ``make bench``;
- one at a time: ``table_parallelism=1``, so each table's work has a time window of its own.

The warm local Spark writes Spark's event log (uncompressed, under ``.lakehouse/bench``). From
the one-at-a-time runs, each Spark job goes to the table whose window holds its start, and to a
phase: Delta's own job descriptions name its steps (table state, file skipping, the MERGE's
passes); a job started by our code is named by the function that started it. Per table:

- ``spark_s``: time with at least one Spark job running;
- ``driver_s``: the rest of the table's wall time: Python, Py4J, query planning, Delta's commits
  and log reads, and any wait for a core;
- ``phases``: job wall time per phase (jobs of one table do not overlap: one thread each).

Writes bench/results/incremental_phases.json and prints the largest phases. Runs in the order
A B B A, BENCH_PAIRS times (default 1), after one untimed run (the server warms up); medians
per side.
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import json
import os
import shutil
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.medallion as medallion  # noqa: E402  (sets the benchmark's Spark settings)
from bench.machine import describe  # noqa: E402

BASE = ROOT / ".lakehouse" / "bench"
SIDES = {"side by side": None, "one at a time": "1"}
RUNS = "runs.json"
"""The timed runs and their tables' metrics, kept beside the event log (``--from`` reads both)."""


def _spark_conf(event_log: Path) -> dict[str, str]:
    conf = json.loads(medallion.BENCH_SPARK["LAKEHOUSE_SPARK__CONF"])
    return {
        **conf,
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": event_log.as_uri(),
        "spark.eventLog.compress": "false",
    }


def _configure(event_log: Path, parallelism: str | None) -> None:
    from lakehouse.settings import get_settings

    os.environ["LAKEHOUSE_SPARK__CONF"] = json.dumps(_spark_conf(event_log))
    if parallelism is None:
        os.environ.pop("LAKEHOUSE_PIPELINE__TABLE_PARALLELISM", None)
    else:
        os.environ["LAKEHOUSE_PIPELINE__TABLE_PARALLELISM"] = parallelism
    get_settings.cache_clear()


def _events(event_log: Path) -> list[dict[str, Any]]:
    """Every event of every application logged under ``event_log`` (rolled files included)."""
    found = []
    for path in sorted(event_log.rglob("*")):
        if not path.is_file() or path.name.startswith((".", "appstatus")) or path.name == RUNS:
            continue
        with path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                try:
                    event = json.loads(line)
                except ValueError:  # the last line of a log still being written
                    continue
                if isinstance(event, dict):
                    found.append(event)
    return found


def jobs_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spark jobs: id, start and end (Unix seconds), Delta's description, our call site, the
    first stage's name and the SQL query it ran for (the only names some jobs started through
    Py4J have: ``save at …``, ``count at …``)."""
    jobs: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.get("Event") == "SparkListenerJobStart":
            props = e.get("Properties") or {}
            stages = e.get("Stage Infos") or [{}]
            jobs[e["Job ID"]] = {
                "id": e["Job ID"],
                "start": e["Submission Time"] / 1000,
                "description": props.get("spark.job.description") or "",
                "call_site": props.get("callSite.short") or "",
                "stage": stages[0].get("Stage Name") or "",
                "execution": props.get("spark.sql.execution.id"),
            }
        elif e.get("Event") == "SparkListenerJobEnd" and e.get("Job ID") in jobs:
            jobs[e["Job ID"]]["end"] = e["Completion Time"] / 1000
    queries = {  # SQL execution id -> what started it ("save at …", "count at …")
        str(e["executionId"]): str(e.get("description") or "")
        for e in events
        if str(e.get("Event", "")).endswith("SparkListenerSQLExecutionStart")
    }
    for job in jobs.values():
        job["query"] = queries.get(str(job["execution"]), "")
    return [j for j in jobs.values() if "end" in j]


@functools.cache
def _functions(path: Path) -> list[tuple[int, int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.end_lineno or node.lineno, node.name)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def _function_at(call_site: str) -> str | None:
    """``spark_jobs/silver.py:promote`` for ``first at /…/spark_jobs/silver.py:328``."""
    where = call_site.rpartition(" at ")[2]
    file, _, line = where.rpartition(":")
    path = Path(file)
    if not line.isdigit() or path.suffix != ".py" or not path.is_file():
        return None
    try:
        rel = path.resolve().relative_to(ROOT)
    except ValueError:
        return None
    n = int(line)
    inside = [(start, name) for start, end, name in _functions(path) if start <= n <= end]
    return f"{rel}:{max(inside)[1]}" if inside else str(rel)


def _named(job: dict[str, Any]) -> str | None:
    """The step a Spark job belongs to: Delta's own step when Delta started it (its description
    says), else the function of ours that started it; None when it has neither (a query stage
    that Spark ran from a thread of its own)."""
    d = job["description"]
    if "Compute snapshot" in d:
        return "delta: table state (snapshot)"
    if "Filtering files for query" in d:
        return "delta: file listing and skipping"
    if "materialize source" in d:
        return "merge: copy of the source"
    if "scanning files for matches" in d:
        return "merge: find the files it touches"
    if "Deletion Vectors" in d:
        return "merge: deletion vectors"
    if "Writing modified data" in d or "only inserts" in d:
        return "merge: write rows"
    if "DELETE operation" in d:
        return "delta: delete (replaceWhere)"
    ours = _function_at(job["call_site"]) or _function_at(job["stage"])
    if ours:
        return ours
    if job["stage"].startswith("save at") or job["query"].startswith("save at"):
        return "write (append or replaceWhere)"
    if job["query"].startswith("count at"):
        return "count() from Python"
    return None


def phases(jobs: list[dict[str, Any]]) -> dict[int, str]:
    """Job id -> phase (:func:`_named`). A job without a name of its own (an adaptive query's
    stage, run from one of Spark's threads) takes the name of its query's other jobs (the same
    SQL execution), else its first stage's name."""
    by_query: dict[Any, str] = {}
    for job in sorted(jobs, key=lambda j: j["start"]):
        name = _named(job)
        if name and job["execution"] is not None:
            by_query.setdefault(job["execution"], name)
    return {job["id"]: _named(job) or by_query.get(job["execution"]) or job["stage"] or "other" for job in jobs}


def _busy(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of ``intervals``."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def breakdown(rows: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per table (``layer.table``) of a one-at-a-time run: wall, jobs, Spark busy time, driver
    time and job time per phase."""
    names = phases(jobs)
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        end = float(r["finished_at"])
        start = end - float(r["duration_s"])
        mine = [j for j in jobs if start <= j["start"] <= end]
        spark_s = _busy([(j["start"], min(j["end"], end)) for j in mine])
        spent: dict[str, float] = defaultdict(float)
        for j in mine:
            spent[names[j["id"]]] += j["end"] - j["start"]
        out[f"{r['layer']}.{r['table']}"] = {
            "wall_s": round(end - start, 2),
            "jobs": len(mine),
            "spark_s": round(spark_s, 2),
            "driver_s": round(end - start - spark_s, 2),
            "phases": {k: round(v, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])},
        }
    return out


def _median_tables(runs: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for table in runs[0]:
        each = [run[table] for run in runs if table in run]
        names = {p for t in each for p in t["phases"]}
        phases = {p: round(statistics.median(t["phases"].get(p, 0.0) for t in each), 2) for p in names}
        out[table] = {
            **{k: round(statistics.median(t[k] for t in each), 2) for k in ("wall_s", "jobs", "spark_s", "driver_s")},
            "phases": dict(sorted(phases.items(), key=lambda kv: -kv[1])),
        }
    return out


def _job(root: Path, day: dt.date, run_id: str) -> tuple[float, list[dict[str, Any]]]:
    """The medallion job over ``day`` on the warm local Spark, as the flow submits it (the flow's
    summary keeps fewer fields than a table's metrics: its end time is not among them)."""
    from lakehouse.backends import get_backend
    from lakehouse.pipeline import LAYERS, medallion_jobs
    from lakehouse.settings import get_settings

    medallion._settings_env(root)
    settings = get_settings()
    (job,) = medallion_jobs(list(LAYERS), settings, start=day, end=day, run_id=run_id)
    t0 = time.perf_counter()
    result = get_backend(settings).run(job, log=lambda line: None)
    seconds = time.perf_counter() - t0
    if result.state != "COMPLETED":
        raise RuntimeError(f"the medallion job ended {result.state}: " + "\n".join(result.log_tail[-20:]))
    return seconds, list(result.metrics)


def main() -> int:
    events = int(os.environ.get("BENCH_EVENTS", "10000000"))
    days = int(os.environ.get("BENCH_DAYS", "30"))
    pairs = int(os.environ.get("BENCH_PAIRS", "1"))
    a, b = SIDES
    if sys.argv[1:2] == ["--from"] and len(sys.argv) == 3:  # the breakdown of an earlier run again
        event_log = Path(sys.argv[2]).resolve()
        runs = json.loads((event_log / RUNS).read_text())
        order = [r["side"] for r in runs]
        return _report(event_log, runs, order, describe(), events, days)
    landing = BASE / f"landing-{events}-{days}"
    if not (landing / "_manifest.json").exists():
        print(f"no benchmark data at {landing}: run `make bench` once first", file=sys.stderr)
        return 2
    last = medallion.START + dt.timedelta(days=days)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    event_log = BASE / "eventlog" / stamp
    event_log.mkdir(parents=True)
    machine = describe()
    _configure(event_log, None)

    history = BASE / f"phases-history-{events}-{days}"
    done = history / ".complete"
    if not done.exists():
        print(f"building the {days}-day history once ({history}) ...", flush=True)
        root = medallion._fresh(BASE, history.name, landing)
        seconds, _ = medallion._flow(root, medallion.START, last - dt.timedelta(days=1))
        done.write_text(f"{seconds:.1f}\n")
        print(f"    {seconds:.1f}s", flush=True)

    order = [a, b, b, a] * pairs
    runs: list[dict[str, Any]] = []
    server = medallion._warm_server()  # one server: the table parallelism is not part of its key
    try:
        # an untimed run first: the server's JIT and caches warm up on this data, as a history
        # build warms them in `make bench` before its new day
        for i, side in enumerate([a, *order]):
            _configure(event_log, SIDES[side])
            root = BASE / "phases-run"
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(history, root, symlinks=True)
            print(f"run {i}/{len(order)}: the new day, tables {side}{' (warm-up)' if i == 0 else ''} ...", flush=True)
            seconds, rows = _job(root, last, f"phases-{stamp}-{i}")
            print(f"    {seconds:.1f}s", flush=True)
            if i:
                runs.append({"side": side, "seconds": round(seconds, 2), "rows": rows})
    finally:
        server.stop()  # closes the event log
    (event_log / RUNS).write_text(json.dumps(runs, default=str) + "\n")
    return _report(event_log, runs, order, machine, events, days)


def _report(
    event_log: Path, runs: list[dict[str, Any]], order: list[str], machine: dict[str, Any], events: int, days: int
) -> int:
    """Break the runs down, write the result file and print its summary."""
    a, b = SIDES
    jobs = jobs_of(_events(event_log))
    sequential = [breakdown(r["rows"], jobs) for r in runs if r["side"] == "one at a time"]
    tables = _median_tables(sequential)
    totals: dict[str, float] = defaultdict(float)
    for t in tables.values():
        for p, s in t["phases"].items():
            totals[p] += s
    result: dict[str, Any] = {
        "benchmark": "incremental_phases",
        "what": "one new day over a 30-day history (medallion flow, warm local Spark): where its time goes",
        "events": events,
        "days": days + 1,
        "machine": machine,
        "spark_settings": {
            **medallion.BENCH_SPARK,
            "event_log": f"{event_log.relative_to(ROOT)} (spark.eventLog.*, uncompressed)",
        },
        "order": " ".join("A" if s == a else "B" for s in order) + f" (A: tables {a}, B: tables {b})",
        "day_s": {s: round(statistics.median(r["seconds"] for r in runs if r["side"] == s), 2) for s in SIDES},
        "runs_s": [{"side": r["side"], "seconds": r["seconds"]} for r in runs],
        "one_at_a_time": {
            "tables": tables,
            "wall_s": round(sum(t["wall_s"] for t in tables.values()), 2),
            "spark_s": round(sum(t["spark_s"] for t in tables.values()), 2),
            "driver_s": round(sum(t["driver_s"] for t in tables.values()), 2),
            "jobs": sum(t["jobs"] for t in tables.values()),
            "phases": {p: round(s, 2) for p, s in sorted(totals.items(), key=lambda kv: -kv[1])},
        },
    }
    out = ROOT / "bench" / "results" / "incremental_phases.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(BASE / "phases-run", ignore_errors=True)
    seq = result["one_at_a_time"]
    day = result["day_s"]
    print(f"\nnew day: {day[a]}s with the tables {a}, {day[b]}s {b}")
    print(f"one at a time: {seq['wall_s']}s in the tables = {seq['spark_s']}s with Spark jobs running")
    print(f"  + {seq['driver_s']}s without ({seq['jobs']} jobs)")
    print(f"{'table':<30} {'wall s':>7} {'jobs':>5} {'spark s':>8} {'driver s':>9}  largest phase")
    for name, t in tables.items():
        top = next(iter(t["phases"].items()), ("", 0.0))
        print(f"{name:<30} {t['wall_s']:>7} {t['jobs']:>5} {t['spark_s']:>8} {t['driver_s']:>9}  {top[0]} {top[1]}s")
    print("largest phases over all tables (job wall s):")
    for p, s in list(seq["phases"].items())[:12]:
        print(f"  {s:>7}  {p}")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
