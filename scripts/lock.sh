#!/usr/bin/env bash
# Re-lock the Python dependencies, with hashes and no index URLs:
#   requirements.lock      pyproject.toml's dependencies: what the images install
#   requirements-dev.lock  the same pins plus the dev extra (pytest, ruff, mypy): what .venv gets
# Versions already in a lock are kept unless pyproject.toml needs another (uv reads the output
# file as preferences); the dev lock is constrained by the runtime one, so both agree.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
require_python
UV=$(uv_bin)
"$UV" pip compile pyproject.toml --generate-hashes --python-version 3.11 \
  --no-header --quiet -o requirements.lock
"$UV" pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
  --no-header --quiet -c requirements.lock -o requirements-dev.lock
say "requirements.lock and requirements-dev.lock updated"
