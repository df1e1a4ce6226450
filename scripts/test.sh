#!/usr/bin/env bash
# The whole suite, as `make test` runs it: two pytest sessions side by side.
#   - the `cluster` tier (the real single-node cluster: mostly waiting on pods, image pulls,
#     back-offs and polls) in the background, its output in .lakehouse/test-cluster-tier.log and
#     printed after it ends;
#   - everything else in the foreground.
# Each session starts its own services (free loopback ports, temporary directories), so they
# share nothing but the machine; on 2 cores this takes the run from about the sum of the two
# tiers to about the longer one. Exit status: non-zero when either session failed.
#
# With arguments (make test PYTEST_ARGS='...'), one session runs exactly as asked.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
PY=.venv/bin/python

if [ $# -gt 0 ]; then
  exec "$PY" -m pytest "$@"
fi

mkdir -p .lakehouse
log=.lakehouse/test-cluster-tier.log
# its own process group, so a stop reaches the whole session (its fixture tears the cluster
# down on SIGTERM); the cache plugin is off there, the foreground session keeps it
setsid "$PY" -m pytest -m cluster -p no:cacheprovider >"$log" 2>&1 &
cluster_pid=$!
stop_cluster_tier() {
  kill -TERM -- "-$cluster_pid" 2>/dev/null || true
  wait "$cluster_pid" 2>/dev/null || true
}
trap 'stop_cluster_tier; exit 130' INT TERM
say "cluster tier running beside the rest (pid $cluster_pid): tail -f $log"

set +e
"$PY" -m pytest -m "not cluster"
rest=$?
say "waiting for the cluster tier"
wait "$cluster_pid"
cluster=$?
set -e
trap - INT TERM

say "cluster tier output (pytest -m cluster, $log):"
cat "$log"
say "not cluster: exit $rest; cluster: exit $cluster"
[ "$rest" -eq 0 ] && [ "$cluster" -eq 0 ]
