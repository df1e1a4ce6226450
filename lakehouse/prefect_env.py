"""Point the ``lakehouse`` command's flow runs at the project's Prefect home and defaults.

``prefect.toml`` in the repo root sets Prefect's defaults for whatever starts there (the
``prefect`` CLI, flows imported in a script or a notebook, the tests). The ``lakehouse`` command
runs from any directory, where that file is not read, so its entry point calls :func:`apply`
before Prefect loads: the same values, with the home as an absolute path. Environment variables
the user set win, as they do over ``prefect.toml``.

- ``PREFECT_HOME``: ``.lakehouse/prefect`` of the project, the database ``make ui`` serves, so a
  run started with the README's commands shows in the UI.
- No flow-run heartbeats for flows the command calls itself (:func:`direct_run`).
- Results persist, under ``<storage.root>/prefect-results`` (``LAKEHOUSE_RESULTS_DIR``
  overrides); a configured default result storage block wins over this.
- The command's temporary API server skips registering block types at its start. To find out
  whether anything changed since the last registration, Prefect's server imports every
  installed integration (prefect-dbt, prefect-kubernetes, prefect-shell): 4.5 s of CPU before
  the first flow run can start, measured on 2 cores, on each `lakehouse` command. Its runs use
  no block type that is not already there: `lakehouse blocks` registers the types of the blocks
  it saves, and `make ui`'s server (not started by this command) registers them all as before.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
from collections.abc import Iterator
from typing import Any

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
    # no integration imports and block type registration at the temporary server's start (above)
    os.environ.setdefault("PREFECT_SERVER_REGISTER_BLOCKS_ON_START", "false")
    os.environ.setdefault("PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION", "false")


HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"


@contextlib.contextmanager
def direct_run() -> Iterator[None]:
    """Flow runs called in this process (the CLI, a benchmark) send no heartbeats.

    A heartbeat lets an automation notice a deployment's run whose process died and reschedule
    it. A flow called straight from a command has no deployment to reschedule, and its caller
    sees the process die. Prefect 3.9 sends them anyway and joins the heartbeat thread at the end
    of every flow and subflow run; the thread sleeps in one-second steps, so each run waited up to
    a second at its end for nothing (a trivial flow took 1.07 s, 0.98 s of it in that join). The
    setting cannot be unset from the environment (it parses numbers only), so it is set to None
    here for the calls inside. A frequency the user chose (in the environment, a profile or
    prefect.toml: anything but Prefect's default) is kept; deployment runs (started by a worker,
    not by this) keep theirs.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings
    from prefect.settings.models.flows import FlowsSettings

    default = FlowsSettings.model_fields["heartbeat_frequency"].default
    if os.environ.get(HEARTBEAT_ENV) or get_current_settings().flows.heartbeat_frequency != default:
        yield
        return
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


class _SharedVerifiedContexts:
    """Stands in for the ``ssl`` module inside Prefect's client module: a verifying context for a
    CA file is made once and shared by every client after it; everything else is ``ssl``'s own.

    Prefect 3.9 makes a new ``ssl.create_default_context(cafile=<CA bundle>)`` for every
    ``PrefectClient``/``SyncPrefectClient``, also for an ``http://`` API. Loading the bundle
    takes about 16 ms of CPU, and prefect-dbt makes three clients per dbt node (the node's task
    run engine twice, its tracker once): 177 contexts and about 2.8 s of the flow process's CPU
    in the demo's dbt step, measured on 2 cores. (An open Prefect pull request lets clients share
    a context.) httpx recommends sharing one context between clients; the verifying one is never
    changed after it is made. The unverified context of ``PREFECT_API_TLS_INSECURE_SKIP_VERIFY``
    (made without a CA file, then changed) is not shared."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._lock = threading.Lock()
        self._made: dict[str, Any] = {}

    def create_default_context(
        self, purpose: Any = None, *, cafile: str | None = None, capath: str | None = None, cadata: Any = None
    ) -> Any:
        purpose = purpose or self._real.Purpose.SERVER_AUTH
        if not cafile or capath or cadata or purpose != self._real.Purpose.SERVER_AUTH:
            return self._real.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
        with self._lock:
            if cafile not in self._made:
                self._made[cafile] = self._real.create_default_context(purpose, cafile=cafile)
            return self._made[cafile]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def share_client_tls_context() -> None:
    """Let every Prefect client of this process share its verifying TLS context (see
    :class:`_SharedVerifiedContexts`); idempotent. Nothing changes when Prefect's client module
    no longer makes its contexts through a module-level ``ssl``."""
    import prefect.client.orchestration as orchestration

    if getattr(orchestration, "ssl", None) is ssl:
        setattr(orchestration, "ssl", _SharedVerifiedContexts(ssl))  # noqa: B010 (a module attribute, on purpose)
