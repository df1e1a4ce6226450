#!/usr/bin/env bash
# Set-up: checks the toolchain, builds .venv from the lock file, resolves the pinned JVM jars.
# Idempotent and fast when nothing changed.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

require_python
require_java
require_maven

UV=$(uv_bin)
stamp=.venv/.lakehouse-lock.sha
want=$(cat requirements-dev.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating .venv from requirements-dev.lock (the runtime pins plus the dev tools)"
  [ -x .venv/bin/python ] || "$UV" venv --quiet --python python3 .venv
  UV_CACHE_DIR="$LAKEHOUSE_CACHE_DIR/uv-cache" "$UV" pip sync --quiet --python .venv/bin/python --require-hashes requirements-dev.lock
  UV_CACHE_DIR="$LAKEHOUSE_CACHE_DIR/uv-cache" "$UV" pip install --quiet --python .venv/bin/python --no-deps --config-settings editable_mode=compat -e .
  echo "$want" > "$stamp"
fi

# Compiled bytecode for the installed packages, once per lock file, and for the project's own
# modules (only those changed since). Where PYTHONDONTWRITEBYTECODE is set (as in CI), Python
# never writes it on import, so every process compiled every module it imported from source:
# importing prefect, the flows, dbt and the Connect client took 7.3 s from source, 3.6 s from
# bytecode (2 cores; bench/results/demo_bytecode.json has the demo's ABAB). A file this Python
# cannot compile (a package's module for a newer Python, never imported here) is skipped.
bytecode=.venv/.lakehouse-bytecode.sha
if [ "$(cat "$bytecode" 2>/dev/null)" != "$want" ]; then
  say "compiling the installed packages to bytecode (once per lock file)"
  .venv/bin/python -m compileall -q -j 0 .venv/lib/python3*/site-packages >/dev/null 2>&1 || true
  echo "$want" > "$bytecode"
fi
.venv/bin/python -m compileall -q -j 0 lakehouse flows tasks spark_jobs tests bench >/dev/null 2>&1 || true

.venv/bin/python -m lakehouse.jars ensure
# The driver JVM's class-data archive (lakehouse/cds.py): built once per Java/Spark/jar set by
# two small medallion runs (~40 s); only a speed-up, so a failure warns instead of stopping set-up.
.venv/bin/python -m lakehouse.cds ensure \
  || say "warning: no class-data archive (see above); local Spark jobs start without one"

# Prefect's local database (PREFECT_HOME, .lakehouse/prefect under make): created or migrated once
# per Prefect version, so the first flow run's temporary API server does not spend its start-up
# time creating tables (~14 s on 2 cores).
prefect_home="${PREFECT_HOME:-$REPO_ROOT/.lakehouse/prefect}"
prefect_version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("prefect"))')
if [ "$(cat "$prefect_home/.lakehouse-db-version" 2>/dev/null)" != "$prefect_version" ]; then
  say "preparing Prefect's database in $prefect_home (Prefect $prefect_version)"
  mkdir -p "$prefect_home"
  PREFECT_HOME="$prefect_home" PREFECT_SERVER_ANALYTICS_ENABLED=false \
    .venv/bin/prefect --no-prompt server database upgrade -y >/dev/null
  echo "$prefect_version" > "$prefect_home/.lakehouse-db-version"
fi
