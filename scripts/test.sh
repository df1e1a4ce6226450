#!/usr/bin/env bash
# The whole suite, as `make test` runs it: two pytest sessions side by side.
#   - the `cluster` tier (the real single-node cluster: mostly waiting on pods, image pulls,
#     back-offs and polls) in the background, its output in .lakehouse/test-cluster-tier.log and
#     printed after it ends. What only it and the S3 tests need (SeaweedFS's weed, the operator,
#     helm, CoreDNS and pause builds, the images) is built first in that background job, so on a
#     cold machine the rest starts about 10 minutes earlier and runs beside those builds (cached
#     by version: a warm machine only checks them);
#   - everything else in the foreground. Its S3 tests come after half of it; their fixture waits
#     for a weed build still running (scripts/seaweedfs.sh install takes the build's lock).
# Each session starts its own services (free loopback ports, temporary directories), so they
# share nothing but the machine; on 2 cores this takes the run from about the sum of the two
# tiers to about the longer one. Exit status: non-zero when either session failed.
#
# With arguments (make test PYTEST_ARGS='...'), everything is built first and one session runs
# exactly as asked.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
PY=.venv/bin/python

# weed (the S3 tests, the cluster's object store), then what the cluster tier alone needs
build_tools() {
  scripts/seaweedfs.sh install >/dev/null \
    && scripts/cluster-tools.sh >/dev/null \
    && scripts/images.sh pause spark operator prefect
}

if [ $# -gt 0 ]; then
  build_tools
  exec "$PY" -m pytest "$@"
fi

mkdir -p .lakehouse
log=.lakehouse/test-cluster-tier.log
# its own process group, so a stop reaches the whole session (its fixture tears the cluster
# down on SIGTERM) or the build running before it; a failed build ends the tier with the build's
# error in its log. The cache plugin is off there, the foreground session keeps it.
setsid bash -c "$(declare -f build_tools); build_tools && exec \"\$0\" -m pytest -m cluster -p no:cacheprovider" "$PY" \
  >"$log" 2>&1 &
cluster_pid=$!
rest_pid=
# SIGTERM (or Ctrl-C) stops both sessions: each tears down what it started
# (tests/fixtures/sigterm.py), and this script waits for that
stop_tiers() {
  # also after a Ctrl-C, which reached the rest's pytest too (tests/fixtures/sigterm.py gives it
  # back the SIGINT a background job starts without): a test may swallow that KeyboardInterrupt,
  # SIGTERM makes the session stop after it
  [ -z "$rest_pid" ] || kill -TERM "$rest_pid" 2>/dev/null || true
  # the cluster tier: its pytest alone once it runs (the session stops what it started; a
  # signal to the whole group would also end its Prefect server under the test running), the
  # whole group while it still builds
  if tr '\0' ' ' <"/proc/$cluster_pid/cmdline" 2>/dev/null | grep -q -- ' -m pytest '; then
    kill -TERM "$cluster_pid" 2>/dev/null || true
  else
    kill -TERM -- "-$cluster_pid" 2>/dev/null || true
  fi
  [ -z "$rest_pid" ] || wait "$rest_pid" 2>/dev/null || true
  wait "$cluster_pid" 2>/dev/null || true
}
trap 'stop_tiers; exit 130' INT TERM
say "cluster tier (its builds, then its tests) running beside the rest (pid $cluster_pid): tail -f $log"

set +e
# in the background and waited for, so that a signal to this script is handled at once (bash
# runs a trap only after the foreground command it waits on has ended)
"$PY" -m pytest -m "not cluster" &
rest_pid=$!
wait "$rest_pid"
rest=$?
rest_pid=
say "waiting for the cluster tier"
wait "$cluster_pid"
cluster=$?
set -e
trap - INT TERM

say "cluster tier output (pytest -m cluster, $log):"
cat "$log"
say "not cluster: exit $rest; cluster: exit $cluster"
[ "$rest" -eq 0 ] && [ "$cluster" -eq 0 ]
