"""Follow one SparkApplication with the Kubernetes watch API, in a background thread.

The watcher starts from a known resourceVersion and keeps the newest one it has seen (from
events and bookmarks). When the server ends a watch (its timeout) it resumes from there; when
the stream drops (connection reset, read timeout, proxy cut) it reconnects from there; when the
server answers 410 Gone (that version is too old) it re-lists the app and resumes from the list's
version. Each state of the app it sees is put on ``events`` for the caller, which waits on the
queue with its own deadlines (no fixed-interval polling anywhere).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from dataclasses import dataclass
from typing import Any, Literal

import urllib3
from kubernetes import client

from lakehouse.k8s.client import SparkApplications, api_error, iter_json_lines
from lakehouse.k8s.errors import KubernetesAccessError, KubernetesApiError

_log = logging.getLogger(__name__)

BACKOFF_START_S = 0.2
BACKOFF_MAX_S = 5.0


@dataclass(frozen=True)
class AppEvent:
    """One observation of the app.

    Attributes:
        type: ``ADDED``/``MODIFIED``/``DELETED`` from the watch, ``LISTED`` from a re-list,
            ``GONE`` when a re-list finds no app, ``ERROR`` when the watcher gave up.
        obj: The app (empty for GONE/ERROR).
        error: The error that stopped the watcher (ERROR only).
    """

    type: Literal["ADDED", "MODIFIED", "DELETED", "LISTED", "GONE", "ERROR"]
    obj: dict[str, Any]
    error: Exception | None = None


class AppWatcher:
    """Watches the app ``name`` from ``resource_version`` until stopped or the app is gone."""

    def __init__(
        self,
        apps: SparkApplications,
        name: str,
        resource_version: str,
        *,
        watch_timeout_s: int = 60,
    ) -> None:
        self.apps = apps
        self.name = name
        self.resource_version: str | None = resource_version
        self.watch_timeout_s = watch_timeout_s
        self.events: queue.Queue[AppEvent] = queue.Queue()
        self.reconnects = 0
        """Streams that dropped and were reopened from the kept resourceVersion."""
        self.relists = 0
        """Re-lists after 410 Gone."""
        self._stop = threading.Event()
        self._resp: Any = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def start(self) -> AppWatcher:
        """Start the watch thread."""
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching: cut the open stream and join the thread."""
        self._stop.set()
        self._cut()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def drop_stream(self) -> None:
        """Cut the open stream as a network failure would (the watcher reconnects)."""
        self._cut()

    def _cut(self) -> None:
        with self._lock:
            resp = self._resp
        if resp is None:
            return
        # Shut the socket down (close() could block on the SSL lock held by the reader).
        sock = getattr(getattr(resp, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _relist(self) -> bool:
        """Re-list the app; False (after reporting GONE) when it no longer exists."""
        items, rv = self.apps.list(field_selector=f"metadata.name={self.name}")
        self.relists += 1
        self.resource_version = rv
        if not items:
            self.events.put(AppEvent("GONE", {}))
            return False
        self.events.put(AppEvent("LISTED", items[0]))
        return True

    def _run(self) -> None:
        backoff = BACKOFF_START_S
        while not self._stop.is_set():
            try:
                if self.resource_version is None and not self._relist():
                    return
                assert self.resource_version is not None
                try:
                    resp = self.apps.watch(self.name, self.resource_version, self.watch_timeout_s)
                except client.ApiException as exc:
                    if exc.status == 410:
                        self.resource_version = None
                        continue
                    raise api_error(f"watch SparkApplication {self.apps.namespace}/{self.name}", exc) from None
                with self._lock:
                    self._resp = resp
                try:
                    # stop() sets the flag, then cuts what it finds in _resp: either it found
                    # this stream, or the flag is already visible here.
                    if self._stop.is_set() or self._consume(resp):
                        return
                finally:
                    with self._lock:
                        self._resp = None
                    resp.close()
                    resp.release_conn()
                backoff = BACKOFF_START_S  # a clean end (server timeout): resume at once
            except KubernetesAccessError as exc:
                self.events.put(AppEvent("ERROR", {}, exc))
                return
            except (urllib3.exceptions.HTTPError, OSError, KubernetesApiError, ValueError) as exc:
                if self._stop.is_set():
                    return
                self.reconnects += 1
                _log.debug(
                    "watch of %s dropped (%r); reconnecting from resourceVersion %s",
                    self.name,
                    exc,
                    self.resource_version,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _consume(self, resp: Any) -> bool:
        """Read one watch stream; True when the app is gone (nothing more to watch)."""
        for event in iter_json_lines(resp):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    self.resource_version = None  # too old: re-list
                    return False
                raise KubernetesApiError(
                    f"watch SparkApplication {self.apps.namespace}/{self.name}",
                    int(obj.get("code") or 0),
                    str(obj.get("reason", "")),
                    str(obj.get("message", "")),
                )
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = str(rv)
            if kind == "BOOKMARK":
                continue
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self.events.put(AppEvent(kind, obj))
                if kind == "DELETED":
                    return True
            if self._stop.is_set():
                return True
        return False


def next_event(events: queue.Queue[AppEvent], timeout: float) -> AppEvent | None:
    """The next event, or None after ``timeout`` seconds (short waits keep the caller responsive
    to its deadlines and to asynchronous exceptions such as Prefect's timeouts)."""
    try:
        return events.get(timeout=max(0.0, timeout))
    except queue.Empty:
        return None
