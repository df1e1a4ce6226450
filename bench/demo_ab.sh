#!/usr/bin/env bash
# `make demo` end to end, spark-submit vs the warm local Spark (a new server each time: `make
# down` first), ABAB, 2 rounds. Writes bench/results/demo.json with the machine it ran on.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=()
for i in 1 2; do
  for mode in submit warm; do
    make down >/dev/null 2>&1
    s=$(date +%s.%N)
    LAKEHOUSE_SPARK__MODE=$mode make demo >".lakehouse/bench-demo-$mode-$i.log" 2>&1
    e=$(date +%s.%N)
    runs+=("$mode=$(.venv/bin/python -c "print(round($e - $s, 1))")")
    echo "${runs[-1]}"
  done
done
make down >/dev/null 2>&1
.venv/bin/python - "${runs[@]}" <<'PY'
import json, statistics, sys
from bench.machine import describe
runs = {"submit": [], "warm": []}
for item in sys.argv[1:]:
    mode, seconds = item.split("=")
    runs[mode].append(float(seconds))
out = {"benchmark": "make demo", "order": "ABAB (submit, warm), make down before each", "machine": describe(),
       "runs_s": runs, "median_s": {m: round(statistics.median(v), 1) for m, v in runs.items()}, "goal_s": 90}
open("bench/results/demo.json", "w").write(json.dumps(out, indent=1) + "\n")
print(out["median_s"])
PY
