"""Stream the Spark driver's log (``pods/log?follow=true``) to a sink, in a background thread.

The follower is told which pod to follow (``status.driverInfo.podName`` and the execution
attempt) and follows a new pod when a rerun replaces the driver, even under the same name (a
new pod UID). Lines carry the kubelet's timestamps, so a stream that drops and is reopened does
not repeat lines already passed on: the reopened stream replays the log from its start, and a
replayed line is one older than the newest line seen by more than :data:`REORDER_WINDOW_S`, or
one of the lines seen within that window (same timestamp, same text). Timestamps are not in file
order: containerd stamps each stream's line (stdout, stderr) before the two streams take turns
writing the log file, so a line may follow one stamped after it. Such a line is passed on, never
taken for a repeat (a Python driver's stdout, where the metrics lines go, and the JVM's log4j on
stderr race like this at the end of every job).

Waiting for a driver pod to appear or start is a short backoff on GET pod (the log is opened
only once the container runs or ran: the log of a pod not yet on a node is an empty 200, which
would otherwise be reopened at once, again and again); each pod read is handed to ``on_pod``
(the backend looks there for a driver that cannot start). The log itself is pushed by the
server as it is written.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import re
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
REORDER_WINDOW_S = 10.0
"""How far back a line's timestamp may be from the newest one before it (lines of the two
streams stamped and written in a different order), and so how much of the log a reopened stream
compares line by line with what was seen; older replayed lines are skipped by their timestamp."""

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


def _timestamp_ns(ts: str) -> int | None:
    """Nanoseconds since the epoch of an RFC3339(Nano) timestamp, or None when ``ts`` is not one."""
    m = _RFC3339.fullmatch(ts)
    if m is None:
        return None
    seconds, frac, zone = m.groups()
    try:
        when = dt.datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    return int(when.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


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
        self._newest: int | None = None
        """Newest timestamp (ns) passed on from the current pod."""
        self._recent: collections.Counter[tuple[int, str]] = collections.Counter()
        """(timestamp, text) of the current pod's lines within the reorder window of the newest."""
        self._recent_order: collections.deque[tuple[int, str]] = collections.deque()
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
            self._uid, self._newest = uid, None
            self._recent.clear()
            self._recent_order.clear()
            self.pods.append((name, uid))
        # what this stream replays of the pod's log (nothing on its first stream)
        replay = collections.Counter(self._recent)
        horizon = None if self._newest is None else self._newest - int(REORDER_WINDOW_S * 1e9)
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
            for raw in iter_lines(resp):
                self._emit(raw.decode("utf-8", errors="replace"), replay, horizon)
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

    def _emit(self, line: str, replay: collections.Counter[tuple[int, str]], horizon: int | None) -> None:
        """Pass ``line`` on unless it repeats one an earlier stream of this pod passed on:
        older than ``horizon`` (the newest timestamp seen, less the reorder window, when the
        stream opened), or one of the ``replay`` lines (consumed as they come back)."""
        ts, _, text = line.partition(" ")
        key = _timestamp_ns(ts)
        if key is None:
            text = line
        else:
            if horizon is not None and key < horizon:
                return
            seen = (key, text)
            if replay[seen] > 0:
                replay[seen] -= 1
                return
            self._remember(seen)
        self.lines += 1
        try:
            self.sink(text.rstrip("\r"))
        except Exception:  # a sink failure must not stop the log
            _log.exception("driver log sink failed")

    def _remember(self, seen: tuple[int, str]) -> None:
        """Keep ``seen`` among the recent lines; forget those now outside the reorder window."""
        self._newest = seen[0] if self._newest is None else max(self._newest, seen[0])
        self._recent[seen] += 1
        self._recent_order.append(seen)
        oldest = self._newest - int(REORDER_WINDOW_S * 1e9)
        while self._recent_order and self._recent_order[0][0] < oldest:
            gone = self._recent_order.popleft()
            self._recent[gone] -= 1
            if self._recent[gone] <= 0:
                del self._recent[gone]

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
