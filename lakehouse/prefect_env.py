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

Also here: the command starts that temporary server itself, before it imports its flows
(:func:`command_api_server`), dbt's many Prefect clients share one TLS context
(:func:`share_client_tls_context`) and prefect-dbt's node threads take Prefect's settings as they
are instead of building them again per node (:func:`share_settings_with_dbt_nodes`); both called
by ``tasks.dbt.run_dbt``, so deployments' runs too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
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


def _with_live_settings(serialize: Any) -> Any:
    """``serialize`` (Prefect's ``serialize_context``) with the settings context as the live
    objects instead of their dump (see :func:`share_settings_with_dbt_nodes`)."""

    def serialize_context(*args: Any, **kwargs: Any) -> dict[str, Any]:
        from prefect.context import SettingsContext

        context: dict[str, Any] = serialize(*args, **kwargs)
        live = SettingsContext.get()
        if live is not None and context.get("settings_context"):
            context["settings_context"] = {"profile": live.profile, "settings": live.settings}
        return context

    serialize_context.lakehouse_live_settings = True  # type: ignore[attr-defined]
    serialize_context.__wrapped__ = serialize  # type: ignore[attr-defined]
    return serialize_context


def share_settings_with_dbt_nodes() -> None:
    """Let prefect-dbt's node threads take Prefect's settings as they are, without building them
    again three times per dbt node; idempotent.

    prefect-dbt serializes the run's context once per dbt command and hydrates it in the thread
    of each node's task run (its tracker, then Prefect's task engine, and its log callback for
    events without a node). Hydrating the settings context builds Prefect's whole ``Settings``
    model again from a dict, which with pydantic-settings re-reads the environment, ``.env``,
    ``prefect.toml`` and ``pyproject.toml`` for every nested settings model: 37 ms of CPU each,
    measured, about three per node (prefect-dbt's share of a demo's dbt step, on cores Spark is
    using). The node threads are threads of this process, so the context carries the live
    ``Profile`` and ``Settings`` instead (pydantic takes a model instance as it is): the same
    values a thread of Prefect's own thread-pool task runner sees (it copies the caller's
    context). Nothing changes when prefect-dbt no longer imports ``serialize_context`` by name.
    """
    from prefect_dbt.core import runner

    serialize = getattr(runner, "serialize_context", None)
    if serialize is not None and not getattr(serialize, "lakehouse_live_settings", False):
        setattr(runner, "serialize_context", _with_live_settings(serialize))  # noqa: B010 (a module attribute, on purpose)


class _CommandServer:
    """Prefect's temporary API server for one ``lakehouse`` command, started by the command
    itself: the same server process Prefect starts on a flow's first API call when no API is
    configured (``uvicorn`` serving ``prefect.server.api.server:create_app`` with the ephemeral
    flags, on a free loopback port, over the database of ``PREFECT_HOME``), started earlier."""

    def __init__(self) -> None:
        import prefect
        from prefect.settings import get_current_settings

        self.app_dir = str(prefect.__module_path__.parent)
        self.env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True),
        }
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.ready = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--app-dir", self.app_dir),
                *("--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1"),
                *("--port", str(self.port), "--log-level", "error", "--lifespan", "on"),
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
        )

    def wait(self, timeout: float) -> None:
        """Until the server answers its health check."""
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while not self.ready:
                assert self.process is not None
                code = self.process.poll()
                if code is not None:  # 3: another process took the free port in between
                    raise RuntimeError(
                        f"Prefect's temporary API server on port {self.port} exited with code {code} while starting"
                    )
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"Prefect's temporary API server did not answer within {timeout:g}s")
                with contextlib.suppress(httpx.TransportError):
                    self.ready = client.get(f"{self.api_url}/health").status_code == 200
                if not self.ready:
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_COMMAND_SERVER: list[_CommandServer] = []


@contextlib.contextmanager
def command_api_server() -> Iterator[None]:
    """Flow runs inside go to a temporary Prefect API server that starts now, when no Prefect API
    is configured (``PREFECT_API_URL`` in the environment or the profile); with one, nothing
    changes. Call :func:`wait_for_api` before the first flow run.

    Prefect would start the same server itself on the first flow's first API call, after the
    command has imported its flows and Prefect's server module (2.8 s of CPU in this process,
    for the class that starts the server) and then waited for the server's own start (about
    4 s). Started here, before the flows are imported, the server starts while the command
    imports them, and this process never imports Prefect's server. At the end, the flow runs'
    remaining logs and events are sent, then the server stops."""
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    if get_current_settings().api.url:
        yield
        return
    server = _CommandServer()
    server.start()
    print(f"starting Prefect's temporary API server on {server.api_url} for this command's flow runs", file=sys.stderr)
    _COMMAND_SERVER.append(server)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}), _for_every_thread():
            try:
                yield
            finally:
                if server.ready:
                    _send_pending_logs_and_events()
    finally:
        _COMMAND_SERVER.remove(server)
        server.stop()


@contextlib.contextmanager
def _for_every_thread() -> Iterator[None]:
    """The current settings also for threads that did not copy this thread's context (dbt runs
    its nodes in threads of its own, and prefect-dbt's callbacks talk to the API from there):
    without this, such a thread saw no API URL and Prefect started a second temporary server for
    it, in the middle of the dbt step. Prefect's own test harness does the same, with the same
    private helper; without it (another Prefect version) nothing is changed."""
    import prefect.context

    replace = getattr(prefect.context, "_temporary_global_settings_context", None)
    if replace is None:
        yield
        return
    with replace(prefect.context.get_settings_context()):
        yield


def wait_for_api() -> None:
    """Wait for the server of :func:`command_api_server` to answer (nothing without one)."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    for server in _COMMAND_SERVER:
        server.wait(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))


def _send_pending_logs_and_events() -> None:
    """What Prefect's workers still hold, sent before the server stops (as Prefect's own test
    harness does before it stops its server)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(RuntimeError):  # a worker that never started
        APILogWorker.instance().drain()
    EventsWorker.drain_all()
