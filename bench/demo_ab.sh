#!/usr/bin/env bash
# `make demo` end to end, side by side in one run (ABAB..., DEMO_AB_ROUNDS rounds, default 2), a new warm server each
# time (`make down` first). Sides (arguments; default all three):
#   submit       spark-submit, one driver per job
#   warm         the warm local Spark (the default), with its warm-up
#   warm-no-up   the warm local Spark without its warm-up (LAKEHOUSE_SPARK__WARM_UP=false)
#   rev=REV      the warm side on commit REV (a git worktree of it under $TMPDIR, sharing this
#                checkout's .venv), e.g. `rev=HEAD~1 rev=HEAD` to compare a change with its parent;
#                every rev= side runs in a worktree, so each has a Prefect database of its own
# A side may add settings after a '+', comma-separated: warm+LAKEHOUSE_DBT__THREADS=1 is the
# warm side with one dbt thread (its runs are reported under that whole name). A value may hold
# commas (JSON) but no spaces: warm+LAKEHOUSE_SPARK__JAVA_OPTIONS='["-Da=1","-Db=2"]'.
# Writes bench/results/demo.json with the machine it ran on (DEMO_AB_OUT overrides the path).
set -euo pipefail
cd "$(dirname "$0")/.."
sides=()
for side in "$@"; do  # rev=REV named by its commit, so the results say what ran
  if [[ $side == rev=* ]]; then
    base=${side%%+*}
    commit=$(git rev-parse --short "${base#rev=}")
    side="rev=$commit${side:${#base}}"
  fi
  sides+=("$side")
done
[ ${#sides[@]} -gt 0 ] || sides=(submit warm warm-no-up)
rounds=${DEMO_AB_ROUNDS:-2}
out=${DEMO_AB_OUT:-bench/results/demo.json}
runs=()
trees=()
cleanup() {
  for t in "${trees[@]}"; do git worktree remove --force "$t" >/dev/null 2>&1 || rm -rf "$t"; done
  git worktree prune
}
trap cleanup EXIT
# a worktree per rev= side, each with one untimed demo first (its class-data archive, Prefect database)
declare -A tree
for side in "${sides[@]}"; do
  base=${side%%+*}
  [[ $base == rev=* ]] || continue
  commit=${base#rev=}
  [ -z "${tree[$base]:-}" ] || continue
  t="${TMPDIR:-/tmp}/lakehouse-demo-ab-$commit"
  rm -rf "$t" && git worktree prune && git worktree add --detach --quiet "$t" "$commit"
  trees+=("$t")
  ln -s "$PWD/.venv" "$t/.venv"
  tree[$base]=$t
  make down >/dev/null 2>&1
  setup_log="$PWD/.lakehouse/bench-demo-setup-$commit.log"
  (cd "$t" && make demo >"$setup_log" 2>&1)
done
for i in $(seq "$rounds"); do
  for side in "${sides[@]}"; do
    base=${side%%+*}
    case $base in
      submit) env=(LAKEHOUSE_SPARK__MODE=submit) ;;
      warm) env=(LAKEHOUSE_SPARK__MODE=warm LAKEHOUSE_SPARK__WARM_UP=true) ;;
      warm-no-up) env=(LAKEHOUSE_SPARK__MODE=warm LAKEHOUSE_SPARK__WARM_UP=false) ;;
      rev=*) env=(LAKEHOUSE_SPARK__MODE=warm LAKEHOUSE_SPARK__WARM_UP=true) ;;
      *) echo "unknown side: $base" >&2; exit 2 ;;
    esac
    if [ "$base" != "$side" ]; then
      # split at the commas that start the next NAME=: a JSON value may hold commas itself
      mapfile -t extra < <(sed -E 's/,([A-Z_][A-Z0-9_]*=)/\n\1/g' <<<"${side#*+}")
      env+=("${extra[@]}")
    fi
    make down >/dev/null 2>&1
    s=$(date +%s.%N)
    log="$PWD/.lakehouse/bench-demo-${side//[^A-Za-z0-9_=-]/_}-$i.log"
    (cd "${tree[$base]:-.}" && env "${env[@]}" make demo >"$log" 2>&1)
    e=$(date +%s.%N)
    runs+=("$side=$(.venv/bin/python -c "print(round($e - $s, 1))")")
    echo "${runs[-1]}"
  done
done
make down >/dev/null 2>&1
.venv/bin/python - "$out" "${sides[*]}" "${runs[@]}" <<'PY'
import json, statistics, sys
from bench.machine import describe
out_path, sides = sys.argv[1], sys.argv[2].split()
runs = {side: [] for side in sides}
for item in sys.argv[3:]:
    side, seconds = item.rsplit("=", 1)
    runs[side].append(float(seconds))
out = {"benchmark": "make demo", "order": f"ABAB ({', '.join(sides)}), make down before each", "machine": describe(),
       "runs_s": runs, "median_s": {m: round(statistics.median(v), 1) for m, v in runs.items()}, "goal_s": 90}
open(out_path, "w").write(json.dumps(out, indent=1) + "\n")
print(out["median_s"])
PY
