"""Test modules with their local drivers on C1 only against the JVM's default tiered JIT, side
by side: A B B A ... (how tests/conftest.py came to run the suite's drivers on C1 only).

Usage: python bench/test_jit.py MODULE [MODULE ...]   (BENCH_PAIRS pairs, default 1)

Each run is one pytest process over the modules, with LAKEHOUSE_SPARK__JIT set for the side
(every spark-submit driver and warm server the tests start, and the in-process session).
Wall time and two CPU times are recorded: ``cpu_s``, of the processes pytest waited for (its own
JVM, the spark-submit drivers; not the warm servers, which are detached from the test process),
and ``machine_cpu_s``, the whole machine's busy time from /proc/stat (everything, the warm
servers included: run it with nothing else going on). A failing run's whole pytest output is
kept in .lakehouse/test_jit-failed-N.log. Writes bench/results/test_jit.json.

The C1 side keeps the tiered default code cache (240 MiB; lakehouse.jobs.C1_ONLY).
`-XX:TieredStopAtLevel=1` alone shrinks it to 48 MiB, which a warm server fills during its
warm-up and first medallion run (sampled with `jcmd PID Compiler.codecache`: 39 MiB used 15 s
in, 67 MiB at most); then a job fails with "Out of space in CodeCache for method handle
intrinsic". That failed the medallion e2e module in 3 of 9 runs on C1 alone, and in none of 3
with the cache kept.

Status (measured before ``machine_cpu_s`` was recorded, so without the warm servers' CPU):
tests/kafka/test_streaming_ingest.py alone took 128.7 s of CPU tiered and 80.9 s on C1
only (one run each). Over tests/kafka/test_streaming_exactly_once.py plus
tests/e2e/test_medallion_flow.py, one pair (test_jit.json, C1 alone then): 342.1 s of CPU
tiered, 239.0 s on C1 only (wall 424.1 s against 400.0 s).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import describe  # noqa: E402

SIDES = {
    "tiered (JVM default)": "tiered",
    "C1 only": "c1",
}


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _run(modules: list[str], jit: str) -> dict[str, Any]:
    env = {**os.environ, "LAKEHOUSE_SPARK__JIT": jit}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy_s()
    started = time.monotonic()
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", *modules],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    machine_cpu = machine_busy_s() - busy
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0:
        kept = ROOT / ".lakehouse" / f"test_jit-failed-{int(time.time())}.log"
        kept.parent.mkdir(exist_ok=True)
        kept.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        raise SystemExit(f"pytest failed ({proc.returncode}): {summary}; its whole output: {kept}")
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "machine_cpu_s": round(machine_cpu, 1), "pytest": summary}


def main() -> int:
    modules = sys.argv[1:]
    if not modules:
        print(__doc__, file=sys.stderr)
        return 2
    pairs = int(os.environ.get("BENCH_PAIRS", "1"))
    machine = describe()
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in SIDES}
    order = list(SIDES)
    for i in range(pairs):
        for label in order if i % 2 == 0 else order[::-1]:
            result = _run(modules, SIDES[label])
            runs[label].append(result)
            print(f"{label}: {json.dumps(result)}", flush=True)
    out = {
        "benchmark": "test modules, tiered JIT against C1 only",
        "modules": modules,
        "order": "A B B A ... (BENCH_PAIRS pairs); medians",
        "machine": machine,
        "sides": SIDES,
        "median_wall_s": {k: statistics.median(r["wall_s"] for r in v) for k, v in runs.items()},
        "median_cpu_s": {k: statistics.median(r["cpu_s"] for r in v) for k, v in runs.items()},
        "median_machine_cpu_s": {k: statistics.median(r["machine_cpu_s"] for r in v) for k, v in runs.items()},
        "runs": runs,
    }
    path = ROOT / "bench" / "results" / "test_jit.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    medians = {"wall": out["median_wall_s"], "cpu": out["median_cpu_s"], "machine_cpu": out["median_machine_cpu_s"]}
    print(json.dumps(medians), f"\nwrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
