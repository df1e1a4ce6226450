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
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating .venv from requirements.lock"
  [ -x .venv/bin/python ] || "$UV" venv --quiet --python python3 .venv
  UV_CACHE_DIR="$LAKEHOUSE_CACHE_DIR/uv-cache" "$UV" pip sync --quiet --python .venv/bin/python --require-hashes requirements.lock
  UV_CACHE_DIR="$LAKEHOUSE_CACHE_DIR/uv-cache" "$UV" pip install --quiet --python .venv/bin/python --no-deps --config-settings editable_mode=compat -e .
  echo "$want" > "$stamp"
fi

.venv/bin/python -m lakehouse.jars ensure
# The driver JVM's class-data archive (lakehouse/cds.py): built once per Java/Spark/jar set by
# two small medallion runs (~40 s); only a speed-up, so a failure warns instead of stopping set-up.
.venv/bin/python -m lakehouse.cds ensure \
  || say "warning: no class-data archive (see above); local Spark jobs start without one"
