"""Stream the Spark driver's log (``pods/log?follow=true``) to a sink, in a background thread.

The follower is told which pod to follow (``status.driverInfo.podName`` and the execution
attempt) and follows a new pod when a rerun replaces the driver, even under the same name (a
new pod UID). Lines carry the kubelet's timestamps, so a stream that drops and is reopened does
not repeat lines already passed on. Waiting for a driver pod to appear or start is a short
backoff on GET pod (the log is opened only once the container runs or ran: the log of a pod
not yet on a node is an empty 200, which would otherwise be reopened at once, again and again);
each pod read is handed to ``on_pod`` (the backend looks there for a driver that cannot start).
The log itself is pushed by the server as it is written.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client

from lakehouse.k8s import pods
from lakehouse.k8s.client import CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S, iter_lines

_log = logging.getLogger(__name__)

RETRY_START_S = 0.25
RETRY_MAX_S = 2.0
READ_TIMEOUT_S = 600.0


def _timestamp_key(ts: str) -> tuple[str, int] | None:
    """Sortable key of an RFC3339(Nano) UTC timestamp, or None when ``ts`` is not one."""
    if len(ts) < 20 or ts[10] != "T" or not ts.endswith("Z"):
        return None
    seconds, _, frac = ts[:-1].partition(".")
    if not frac.isdigit() and frac:
        return None
    return seconds, int((frac or "0").ljust(9, "0")[:9])


class DriverLogFollower:
    """Follows the driver pod's log and passes each line to ``sink``."""

    def __init__(
        self,
        core: client.CoreV1Api,
        namespace: str,
        container: str,
        sink: Callable[[str], None],
        on_pod: Callable[[Any], None] | None = None,
    ) -> None:
        self.core = core
        self.namespace = namespace
        self.container = container
        self.sink = sink
        self.on_pod = on_pod
        self.pods: list[tuple[str, str]] = []
        """(pod name, uid) of every driver pod whose log was read, in order."""
        self.lines = 0
        self._target: tuple[str, int] | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._finishing = threading.Event()
        self._finished_uids: set[str] = set()
        self._uid: str | None = None
        self._last: tuple[str, int] | None = None
        self._same_ts = 0
        self._resp: Any = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="driver-log", daemon=True)

    def start(self) -> DriverLogFollower:
        """Start the follower thread."""
        self._thread.start()
        return self

    def follow(self, pod: str | None, generation: int) -> None:
        """Follow ``pod`` of execution attempt ``generation`` (None: no driver pod now)."""
        with self._cond:
            target = (pod, generation) if pod else None
            if target != self._target:
                self._target = target
                self._cond.notify_all()

    def finish(self, drain_s: float) -> None:
        """The app has ended: read what is left of the current log (at most ``drain_s``), stop."""
        self._finishing.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(drain_s)
        self.stop()

    def stop(self) -> None:
        """Stop now (cutting an open stream)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        with self._lock:
            resp = self._resp
        sock = getattr(getattr(resp, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    # ------------------------------------------------------------------ thread

    def _wait(self, seconds: float) -> None:
        with self._cond:
            if not self._stop.is_set():
                self._cond.wait(seconds)

    def _run(self) -> None:
        delay = RETRY_START_S
        while not self._stop.is_set():
            with self._cond:
                target = self._target
            if target is None:
                if self._finishing.is_set():
                    return
                self._wait(1.0)
                continue
            try:
                progressed = self._follow_once(target[0])
            except client.ApiException as exc:
                if exc.status in (401, 403):
                    _log.warning("cannot read the driver log of %s: %s %s", target[0], exc.status, exc.reason)
                    return
                progressed = False  # 404 no pod yet, 400 container not started: wait
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                _log.debug("driver log stream of %s dropped: %r", target[0], exc)
                progressed = True  # reconnect at once; dedupe skips what was seen
            if self._finishing.is_set() and not progressed:
                return
            if progressed:
                delay = RETRY_START_S
                continue
            self._wait(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _follow_once(self, name: str) -> bool:
        """Read the pod's log to its end; True when lines may still come (reconnect now)."""
        pod = self.core.read_namespaced_pod(
            name, self.namespace, _request_timeout=(CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S)
        )
        if self.on_pod is not None:
            try:
                self.on_pod(pod)
            except Exception:  # the callback must not stop the log
                _log.exception("driver pod callback failed")
        uid = str(pod.metadata.uid if pod.metadata else "")
        if uid in self._finished_uids:
            return False  # read to the end already; a rerun's new pod will get a new uid
        names = [c.name for c in (pod.spec.containers if pod.spec else None) or []]
        container = self.container if self.container in names or not names else names[0]
        if not pods.started(pod, container):
            return False  # not on a node yet, pulling, waiting for a Secret...: look again
        if uid != self._uid:
            self._uid, self._last, self._same_ts = uid, None, 0
            self.pods.append((name, uid))
        resp: Any = self.core.read_namespaced_pod_log(
            name,
            self.namespace,
            container=container,
            follow=True,
            timestamps=True,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        )
        with self._lock:
            self._resp = resp
        try:
            if self._stop.is_set():  # stop() missed this stream: do not block on it
                return False
            seen_at_last = 0
            for raw in iter_lines(resp):
                seen_at_last = self._emit(raw.decode("utf-8", errors="replace"), seen_at_last)
        finally:
            with self._lock:
                self._resp = None
            resp.close()
            resp.release_conn()
        if self._stop.is_set():
            return False
        if self._terminated(name, uid, container):
            self._finished_uids.add(uid)
            return False
        return True  # the stream ended but the container runs on: reconnect

    def _emit(self, line: str, seen_at_last: int) -> int:
        ts, _, text = line.partition(" ")
        key = _timestamp_key(ts)
        if key is None:
            text = line
        elif self._last is not None and key <= self._last:
            if key < self._last:
                return seen_at_last
            seen_at_last += 1
            if seen_at_last <= self._same_ts:
                return seen_at_last  # the same line, seen before the stream dropped
            self._same_ts += 1
        else:
            self._last, self._same_ts, seen_at_last = key, 1, 1
        self.lines += 1
        try:
            self.sink(text.rstrip("\r"))
        except Exception:  # a sink failure must not stop the log
            _log.exception("driver log sink failed")
        return seen_at_last

    def _terminated(self, name: str, uid: str, container: str) -> bool:
        try:
            pod = self.core.read_namespaced_pod(
                name, self.namespace, _request_timeout=(CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S)
            )
        except client.ApiException as exc:
            return bool(exc.status == 404)
        if pod.metadata is None or str(pod.metadata.uid) != uid:
            return True
        status = pod.status
        if status is not None and status.phase in ("Succeeded", "Failed"):
            return True
        for cs in (status.container_statuses or []) if status is not None else []:
            if cs.name == container and cs.state is not None and cs.state.terminated is not None:
                return True
        return False
