#!/usr/bin/env bash
# Re-lock the Python dependencies (pyproject.toml -> requirements.lock, with hashes, no index URLs).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
require_python
UV=$(uv_bin)
"$UV" pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
  --no-header --quiet -o requirements.lock
say "requirements.lock updated"
