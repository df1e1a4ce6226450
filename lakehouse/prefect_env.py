"""Point Prefect at the project's local defaults before any flow runs.

Prefect reads its own settings from ``PREFECT_*`` variables. Unless the user set them, results
persist under ``<storage.root>/prefect-results`` (``LAKEHOUSE_RESULTS_DIR`` overrides). A configured
default result storage block (``PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK``) wins over this.
"""

from __future__ import annotations

import os

from lakehouse.settings import get_settings


def apply() -> None:
    """Set Prefect's result persistence defaults from the lakehouse settings (idempotent)."""
    settings = get_settings()
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", settings.resolved_results_dir())
    # The embedded server's telemetry heartbeat only adds noise (and sqlite lock errors) locally.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A flow run outside a deployment starts Prefect's temporary API server; its first start on
    # a new PREFECT_HOME also creates the database (about 14 s on 2 cores), and Prefect's 20 s
    # default made a fresh machine's first `make demo` fail. `make setup` prepares the database;
    # this leaves room for a loaded machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
