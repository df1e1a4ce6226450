"""Point the ``lakehouse`` command's flow runs at the project's Prefect home and defaults.

``prefect.toml`` in the repo root sets Prefect's defaults for whatever starts there (the
``prefect`` CLI, flows imported in a script or a notebook, the tests). The ``lakehouse`` command
runs from any directory, where that file is not read, so its entry point calls :func:`apply`
before Prefect loads: the same values, with the home as an absolute path. Environment variables
the user set win, as they do over ``prefect.toml``.

- ``PREFECT_HOME``: ``.lakehouse/prefect`` of the project, the database ``make ui`` serves, so a
  run started with the README's commands shows in the UI.
- Results persist, under ``<storage.root>/prefect-results`` (``LAKEHOUSE_RESULTS_DIR``
  overrides); a configured default result storage block wins over this.
"""

from __future__ import annotations

import os

from lakehouse.settings import REPO_ROOT, get_settings

PREFECT_HOME = REPO_ROOT / ".lakehouse" / "prefect"


def apply() -> None:
    """Set the Prefect defaults of a ``lakehouse`` command run (idempotent; call before Prefect loads)."""
    settings = get_settings()
    os.environ.setdefault("PREFECT_HOME", str(PREFECT_HOME))
    os.environ.setdefault("PREFECT_RESULTS_PERSIST_BY_DEFAULT", "true")
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", settings.resolved_results_dir())
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # see prefect.toml: the temporary API server's first start also creates the database
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
