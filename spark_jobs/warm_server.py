"""A long-running local Spark that jobs are submitted to (the warm path of the local backend).

Started by ``lakehouse.backends.warm`` with the same spark-submit command as any job (Delta, the
jars, the tuning preset, the class-data archive), it keeps one driver JVM and runs every job's
entrypoint (``spark_jobs.<module>.main(argv)``) in it, so a run pays no JVM start, no cold JIT
and reads Delta logs the cache already holds. The jobs' code is unchanged: each run gets a
session of its own (``newSession``: its own SQL conf, temporary views and commit metadata),
handed to :func:`spark_jobs.session.job_session` through a context variable, and its printed
lines go back to the client that submitted it, not to this server's log.

Protocol: JSON lines over a Unix socket, one request per connection.

- ``{"op": "ping"}`` -> ``{"ok": true, "pid": ..., "runs": ..., "active": [...], "leases": ..., "warming": ...,
  "stale": [...], "retiring": null or "why"}``
- ``{"op": "run", "entrypoint": "spark_jobs.bronze", "args": [...], "tag": "...", "timeout": s}``
  -> ``{"started": true}`` once the run is taken, ``{"line": "..."}`` per printed line, then
  ``{"exit": code, "error": "..."}``. A connection closed before ``started`` ran nothing (the
  server was stopping), so the client may submit again to a new server.
- ``{"op": "cancel", "tag": "..."}`` -> ``{"ok": true, "cancelled": bool}``
- ``{"op": "connect"}`` -> ``{"ok": true, "port": ..., "token": ...}``: the Spark Connect endpoint
  of this driver (started on first ask, loopback only, a random token per server), for a client
  that runs SQL here itself (dbt's ``warm`` target). The connection is then a lease: held open by
  the client for as long as it uses the endpoint, it keeps the idle stop away.
- ``{"op": "memory"}`` -> ``{"ok": true, "heap_used_after_gc": bytes, "heap_max": bytes}``: the
  driver's heap after a full collection (what the runs left behind; the benchmark's question).
- ``{"op": "stop"}`` -> ``{"ok": true}``, then the server stops.

A run is cancelled (``cancel``, its ``timeout``, or its client going away) through Spark's job
tags: every Spark job of the run carries the run's tag and is cancelled, again and again until
the run's code gives up, without touching the other runs. The server stops itself after
``--idle-seconds`` with no run, no connection and no lease.

Job code is read again when it changes: before each run the server compares the files of the
``spark_jobs`` package with those its job modules were imported from, and after an edit it
forgets the job modules, so the run imports them anew (the JVM stays warm; the run's first line
names the changed files). Runs already going keep the code they started with. The server's own
modules (this one and what it imported at its start: ``session``, ``conf``, ``report``) cannot
be replaced under it: ``ping`` lists such changed files as ``stale``, and the client restarts an
idle stale server before its next run.

A run that fails on an error after which the JVM is not to be trusted (a
``java.lang.VirtualMachineError`` other than a stack overflow: out of heap, out of code cache, an
internal error) retires the server: it takes no new run, says so in ``ping`` (``retiring``) and
stops once its runs and leases have ended, so that the retry or the next run gets a new JVM
instead of the damaged one.

With ``--warm-up PLAN`` a new server first runs the plan's jobs (small ones, on sample data in a
scratch directory it then deletes) so that the first real run finds Spark's and Delta's code
loaded, generated and compiled. The warm-up is not a run (``ping`` counts it in neither ``runs``
nor ``active``) and gives way: a run that starts cancels it.

Usage: spark-submit spark_jobs/warm_server.py --socket PATH [--idle-seconds S]
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import importlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spark_jobs.session import RUN_SESSION, build_session

WARMUP_TAG = "lakehouse-warm-up"
"""The job tag of the warm-up's Spark jobs."""

JVM_FATAL = re.compile(
    r"(?:^|: |Caused by: )(java\.lang\.(?:OutOfMemoryError|InternalError|UnknownError|VirtualMachineError))\b", re.M
)
"""A JVM error after which this driver is not to be trusted (``VirtualMachineError`` and its
subclasses but ``StackOverflowError``, which unwinds cleanly)."""


def jvm_fatal(lines: Sequence[str]) -> str | None:
    """The first JVM-fatal error named in a failed run's traceback lines (chained exceptions and
    the Java stack traces Py4J carries included), or None."""
    for line in lines:
        found = JVM_FATAL.search(line.strip())
        if found:
            return found.group(1)
    return None


RUN_SINK: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar("run_sink", default=None)
"""Where the printed lines of the run on this thread go (None: the server's own log)."""


class _Router:
    """``sys.stdout`` of the server: a run's lines to its client, the rest to the real stream."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.buffers: dict[int, str] = {}
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        sink = RUN_SINK.get()
        if sink is None:
            return int(self.real.write(text))
        key = id(sink)
        with self.lock:
            buffered = self.buffers.pop(key, "") + text
            *lines, rest = buffered.split("\n")
            if rest:
                self.buffers[key] = rest
        for line in lines:
            sink(line)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def finish(self, sink: Callable[[str], None]) -> None:
        with self.lock:
            rest = self.buffers.pop(id(sink), "")
        if rest:
            sink(rest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class JobCode:
    """The job modules of ``package`` in this process, kept in step with their source files.

    The modules imported when this is made are the server's own (its code and what that
    imported): they are never re-imported. Every other module of the package is a job module."""

    def __init__(self, package: str = "spark_jobs", also_own: Sequence[str] = ()) -> None:
        self.package = package
        self.root = Path(str(sys.modules[package].__file__)).parent
        self.own = {n for n in sys.modules if n == package or n.startswith(f"{package}.")} | set(also_own)
        self.seen = self._stamps()
        self.lock = threading.Lock()

    def _stamps(self) -> dict[str, tuple[int, int]]:
        """(modification time, size) of every source file of the package, by relative path."""
        found = {}
        for path in self.root.rglob("*.py"):
            with contextlib.suppress(FileNotFoundError):  # removed while listed
                st = path.stat()
                found[path.relative_to(self.root).as_posix()] = (st.st_mtime_ns, st.st_size)
        return found

    def module_of(self, relative: str) -> str:
        """The module name of a source file (``transforms/silver.py`` -> ``spark_jobs.transforms.silver``)."""
        parts = relative.removesuffix(".py").split("/")
        return ".".join([self.package, *(parts[:-1] if parts[-1] == "__init__" else parts)])

    def _changed(self, now: dict[str, tuple[int, int]]) -> list[str]:
        return sorted(f for f in now.keys() | self.seen.keys() if now.get(f) != self.seen.get(f))

    def stale(self) -> list[str]:
        """The changed files of the server's own modules (this process cannot take them in)."""
        with self.lock:
            return [f for f in self._changed(self._stamps()) if self.module_of(f) in self.own]

    def refresh(self) -> list[str]:
        """When a job module's file changed (or one was added or removed) since the job modules
        were imported, forget all of them, so the next import reads the files again; return the
        changed files of job modules ([] when none: nothing is forgotten)."""
        with self.lock:
            now = self._stamps()
            changed = [f for f in self._changed(now) if self.module_of(f) not in self.own]
            if not changed:
                return []
            for name in [n for n in sys.modules if n.startswith(f"{self.package}.") and n not in self.own]:
                del sys.modules[name]
                parent, _, child = name.rpartition(".")
                # ``from spark_jobs import storage`` takes the package's attribute when it has one
                if parent in sys.modules and getattr(sys.modules[parent], child, None) is not None:
                    with contextlib.suppress(AttributeError):
                        delattr(sys.modules[parent], child)
            importlib.invalidate_caches()
            for f in changed:
                # a cached bytecode file is trusted by the second and size of its source: an
                # edit within the same second that keeps the size would import the old code
                with contextlib.suppress(OSError):
                    os.unlink(importlib.util.cache_from_source(str(self.root / f)))
                if f in now:
                    self.seen[f] = now[f]
                else:
                    self.seen.pop(f, None)
            return changed


class Server:
    def __init__(self, path: str, idle_seconds: float, warm_up: str | None = None) -> None:
        self.path = path
        self.idle_seconds = idle_seconds
        self.warm_up_plan = warm_up
        self.warming = threading.Event()  # set while the warm-up runs
        self.given_way = threading.Event()  # set once real work asked the warm-up to stop
        self.spark = build_session("lakehouse-warm")
        # this module runs as a script (``__main__``): its file is the server's own code too
        self.code = JobCode(also_own=["spark_jobs.warm_server"])
        self.runs = 0
        self.active: dict[str, threading.Event] = {}  # tag -> set when the run ended
        self.cancelled: set[str] = set()
        self.lock = threading.Lock()
        self.last_activity = time.monotonic()
        self.leases = 0  # open ``connect`` connections: Spark Connect clients at work
        self.connect: tuple[int, str] | None = None  # (port, token) once started
        self.stopping = threading.Event()
        self.retiring: str | None = None  # why, once a JVM-fatal error retired this server
        self.answering = 0  # runs ended whose end message is being sent
        self.router = _Router(sys.stdout)
        self.err_router = _Router(sys.stderr)
        sys.stdout, sys.stderr = self.router, self.err_router

    # -- runs ------------------------------------------------------------------------------------

    def run(self, request: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
        tag = str(request["tag"])
        entrypoint = str(request["entrypoint"])
        if not entrypoint.startswith("spark_jobs.") or entrypoint == __name__:
            send({"exit": 2, "error": f"not a job entrypoint: {entrypoint}"})
            return
        done = threading.Event()
        with self.lock:
            if self.retiring:  # closed before "started": the client goes to a new server
                return
            if tag in self.active:
                send({"exit": 2, "error": f"a run tagged {tag} is already running"})
                return
            self.active[tag] = done
            self.runs += 1
        send({"started": True})
        self.give_way()  # a real run never shares the driver with the warm-up
        timeout = float(request.get("timeout") or 0)
        timer = threading.Timer(timeout, self.cancel, args=(tag,)) if timeout > 0 else None

        def line(text: str) -> None:
            send({"line": text})

        changed = self.code.refresh()
        if changed:
            line(f"[warm] job code changed since the last run ({', '.join(changed)}): imported again")
        if timer is not None:
            timer.start()
        try:
            code, error = self.execute(tag, entrypoint, list(request.get("args") or []), line)
        finally:
            if timer is not None:
                timer.cancel()
            with self.lock:
                self.active.pop(tag, None)
                was_cancelled = tag in self.cancelled
                self.cancelled.discard(tag)
                self.last_activity = time.monotonic()
                self.answering += 1  # a retiring server stops only once its runs got their end
            done.set()
        try:
            if was_cancelled:
                reason = "timed out" if timer is not None and timer.finished.is_set() else "cancelled"
                send({"exit": code or 1, "error": f"{reason}: its Spark jobs were cancelled", "cancelled": True})
            else:
                send({"exit": code, "error": error})
        finally:
            with self.lock:
                self.answering -= 1

    def execute(self, tag: str, entrypoint: str, args: list[str], line: Callable[[str], None]) -> tuple[int, str]:
        """Run ``entrypoint.main(args)`` in a session of its own, its Spark jobs tagged ``tag`` and
        its printed lines sent to ``line``; return its exit code and error (empty when none)."""
        session = self.spark.newSession()
        jvm = self.spark.sparkContext._jvm
        assert jvm is not None
        code, error = 0, ""
        RUN_SINK.set(line)
        RUN_SESSION.set(session)
        jvm.org.apache.spark.sql.SparkSession.setActiveSession(session._jsparkSession)
        self.spark.sparkContext.addJobTag(tag)
        self.spark.sparkContext.setInterruptOnCancel(True)  # a cancelled task stops at once
        try:
            result = importlib.import_module(entrypoint).main(args)
            code = int(result or 0)
        except SystemExit as exc:  # argparse, or a driver's sys.exit(code)
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:  # the job failed: its traceback is its last lines
            code = 1
            lines = [part for text in traceback.format_exception(exc) for part in text.rstrip("\n").split("\n")]
            for part in lines:
                line(part)
            error = f"{type(exc).__name__}: {exc}"
            fatal = jvm_fatal(lines)
            if fatal:
                self.retire(f"run {tag} hit {fatal}")
                line(f"[warm] the driver JVM hit {fatal}: this server takes no new run and stops once its runs end")
        finally:
            self.router.finish(line)
            self.err_router.finish(line)
            self.spark.sparkContext.removeJobTag(tag)
            jvm.org.apache.spark.sql.SparkSession.clearActiveSession()
        return code, error

    def retire(self, why: str) -> None:
        """Take no new run and stop once the runs and leases going now have ended."""
        with self.lock:
            if self.retiring:
                return
            self.retiring = why
        print(f"retiring: {why}", file=self.err_router.real, flush=True)

    def warm_up(self, plan_path: str) -> None:
        """Run the warm-up plan (``--warm-up``): small jobs on sample data in a scratch directory,
        so that the first real run finds Spark's and Delta's code loaded, generated and compiled
        (a new driver's first run took 31 s where the same job takes 13 s on a used one). It
        gives way to real work: a run that starts cancels it. Whatever happens, the scratch
        directory is deleted, and a failure is only logged: the warm-up is a speed-up."""
        log = self.err_router.real
        started = time.monotonic()
        scratch = None
        outcome, done = "done", 0
        try:
            with open(plan_path) as f:
                plan = json.load(f)
            scratch = plan.get("scratch")
            lines: list[str] = []
            for step in plan.get("runs", []):
                if self.given_way.is_set() or self.stopping.is_set():
                    break
                lines.clear()
                code, error = self.execute(WARMUP_TAG, str(step["entrypoint"]), list(step["args"]), lines.append)
                if code and not (self.given_way.is_set() or self.stopping.is_set()):
                    print("\n".join(lines[-20:]), file=log, flush=True)
                    outcome = f"failed ({error or f'exit {code}'})"
                    break
                if not code:
                    done += 1
            if self.given_way.is_set() or self.stopping.is_set():
                outcome = "given way to real work" if self.given_way.is_set() else "stopped"
        except Exception as exc:  # a bad plan: log it; the server serves anyway
            outcome = f"failed ({type(exc).__name__}: {exc})"
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(plan_path)
            self.warming.clear()
        print(f"warm-up {outcome}: {done} run(s) in {time.monotonic() - started:.1f}s", file=log, flush=True)

    def give_way(self) -> None:
        """Cancel the warm-up's Spark jobs until it has ended (a run or a Spark Connect client
        has started: real work never shares the driver with it)."""
        with self.lock:
            if not self.warming.is_set() or self.given_way.is_set():
                return
            self.given_way.set()
        self._cancel_until(WARMUP_TAG, lambda: not self.warming.is_set())

    def cancel(self, tag: str) -> bool:
        """Cancel the Spark jobs of the run ``tag`` until it ends (its code may start more)."""
        with self.lock:
            done = self.active.get(tag)
            if done is None:
                return False
            self.cancelled.add(tag)
        self._cancel_until(tag, done.is_set)
        return True

    def _cancel_until(self, tag: str, ended: Callable[[], bool]) -> None:
        """Cancel the Spark jobs tagged ``tag`` now, then again and again (its code may start
        more) until ``ended()``."""

        def keep_cancelling() -> None:
            while not ended():
                self.spark.sparkContext.cancelJobsWithTag(tag)
                time.sleep(0.2)

        self.spark.sparkContext.cancelJobsWithTag(tag)
        threading.Thread(target=keep_cancelling, name=f"cancel-{tag}", daemon=True).start()

    # -- serving ---------------------------------------------------------------------------------

    def connect_endpoint(self) -> tuple[int, str]:
        """The port and token of this driver's Spark Connect service, started on first call.

        Loopback only, an ephemeral port, and a random pre-shared token that every client must
        present (the port is reachable by every local user; the token is only handed out over
        this server's private socket)."""
        with self.lock:
            if self.connect is None:
                sc = self.spark.sparkContext
                conf = sc._jsc.sc().conf()
                token = secrets.token_urlsafe(32)
                conf.set("spark.connect.grpc.binding.address", "127.0.0.1")
                conf.set("spark.connect.grpc.binding.port", "0")
                conf.set("spark.connect.authenticate.token", token)  # redacted in Spark's logs
                service = sc._jvm.org.apache.spark.sql.connect.service  # type: ignore[union-attr]
                service.SparkConnectService.start(sc._jsc.sc())
                port = int(getattr(service, "SparkConnectService$").__getattr__("MODULE$").localPort())
                self.connect = (port, token)
                print(f"Spark Connect on 127.0.0.1:{port}", file=self.err_router.real, flush=True)
            return self.connect

    def lease(self, conn: socket.socket, send: Callable[[dict[str, Any]], None]) -> None:
        """Answer ``connect`` and hold the connection as a lease until the client closes it."""
        self.give_way()
        port, token = self.connect_endpoint()
        with self.lock:
            self.leases += 1
        try:
            send({"ok": True, "port": port, "token": token})
            with contextlib.suppress(OSError):
                while conn.recv(1024):  # the client sends nothing; returns when it closes
                    pass
        finally:
            with self.lock:
                self.leases -= 1
                self.last_activity = time.monotonic()

    def heap_after_gc(self) -> dict[str, int]:
        """The driver JVM's heap in use right after a full collection, and its maximum."""
        jvm = self.spark.sparkContext._jvm
        assert jvm is not None
        bean = jvm.java.lang.management.ManagementFactory.getMemoryMXBean()
        bean.gc()
        heap = bean.getHeapMemoryUsage()
        return {"heap_used_after_gc": int(heap.getUsed()), "heap_max": int(heap.getMax())}

    def handle(self, conn: socket.socket) -> None:
        stream = conn.makefile("rwb", buffering=0)
        gone = threading.Event()
        write_lock = threading.Lock()

        def send(message: dict[str, Any]) -> None:
            if gone.is_set():
                return
            try:
                with write_lock:
                    stream.write((json.dumps(message, default=str) + "\n").encode())
            except OSError:
                gone.set()

        try:
            raw = stream.readline()
            if not raw:
                return
            request = json.loads(raw)
            op = request.get("op")
            if op == "ping":
                with self.lock:
                    send(
                        {
                            "ok": True,
                            "pid": os.getpid(),
                            "runs": self.runs,
                            "active": sorted(self.active),
                            "leases": self.leases,
                            "warming": self.warming.is_set(),
                            "stale": self.code.stale(),
                            "retiring": self.retiring,
                        }
                    )
            elif op == "run":
                self.last_activity = time.monotonic()
                watcher = threading.Thread(
                    target=self._cancel_when_gone, args=(conn, str(request["tag"]), gone), daemon=True
                )
                watcher.start()
                self.run(request, send)
            elif op == "cancel":
                send({"ok": True, "cancelled": self.cancel(str(request["tag"]))})
            elif op == "connect":
                self.lease(conn, send)
            elif op == "memory":
                send({"ok": True, **self.heap_after_gc()})
            elif op == "stop":
                send({"ok": True})
                self.stopping.set()
            else:
                send({"ok": False, "error": f"unknown op {op!r}"})
        except Exception as exc:  # a bad request: answer it, keep serving
            send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        finally:
            gone.set()
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes the watcher's recv
            with contextlib.suppress(OSError):
                stream.close()
                conn.close()

    def _cancel_when_gone(self, conn: socket.socket, tag: str, gone: threading.Event) -> None:
        """The client of a run closed its connection (it was killed, or gave up): cancel the run."""
        with contextlib.suppress(OSError):
            conn.recv(1)  # the client sends nothing more; this returns when either side closes
        if not gone.is_set():
            gone.set()
            self.cancel(tag)

    def serve(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        os.chmod(self.path, 0o600)
        listener.listen(16)
        listener.settimeout(0.5)
        print(f"warm Spark server {os.getpid()} listening on {self.path}", file=self.err_router.real, flush=True)
        if self.warm_up_plan:
            self.warming.set()
            threading.Thread(target=self.warm_up, args=(self.warm_up_plan,), name="warm-up", daemon=True).start()
        try:
            while not self.stopping.is_set():
                with self.lock:
                    idle = (
                        not self.active
                        and not self.leases
                        and not self.warming.is_set()
                        and time.monotonic() - self.last_activity > self.idle_seconds
                    )
                    retired = self.retiring is not None and not (self.active or self.answering or self.leases)
                if idle:
                    print(f"idle for {self.idle_seconds:g}s: stopping", file=self.err_router.real, flush=True)
                    break
                if retired:
                    print("retired: stopping", file=self.err_router.real, flush=True)
                    break
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with self.lock:  # a connection is activity: the idle stop never races a run's request
                    self.last_activity = time.monotonic()
                threading.Thread(target=self.handle, args=(conn,), daemon=True).start()
        finally:
            listener.close()
            if os.path.exists(self.path):
                os.unlink(self.path)
            if self.warming.is_set():
                self.spark.sparkContext.cancelJobsWithTag(WARMUP_TAG)
            if self.connect is not None:
                with contextlib.suppress(Exception):  # stopping anyway: Spark's own stop follows
                    service = self.spark.sparkContext._jvm.org.apache.spark.sql.connect.service  # type: ignore[union-attr]
                    cls = service.SparkConnectService
                    cls.stop(getattr(cls, "stop$default$1")(), getattr(cls, "stop$default$2")())
            self.spark.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="warm_server", description=__doc__)
    p.add_argument("--socket", required=True, help="Unix socket path to listen on.")
    p.add_argument("--idle-seconds", type=float, default=900.0, help="Stop after this long idle.")
    p.add_argument("--warm-up", default=None, help="JSON plan of warm-up runs (deleted with its scratch directory).")
    args = p.parse_args(argv)
    Server(args.socket, args.idle_seconds, args.warm_up).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
