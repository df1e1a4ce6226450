"""The warm local path: batch jobs submitted to a long-running local Spark.

``LAKEHOUSE_SPARK__MODE=warm`` (the default) makes the local backend hand each batch job to the
server of ``spark_jobs/warm_server.py`` instead of starting a spark-submit driver for it
(``submit`` keeps one driver process per job). The server is
started on first use with the very command a job would get (Delta, the jars, the tuning preset,
the class-data archive), health-checked before each run, started again when it died (a run the
server closed before taking it goes to the new one), replaced after a run hit a JVM-fatal error
(out of heap or code cache: the server retires, see ``spark_jobs/warm_server.py``), and stops
by itself after ``spark.warm_idle_seconds`` without a run (``stop`` stops it now). One server
runs per distinct command, so a change of settings that changes the Spark conf gets a new one.

What stays on spark-submit: jobs that need a credential of their own (``secret_env``), extra
jars, conf or JVM options, and the stream (long-running; it has its own driver).

Files: the log under ``.lakehouse/spark-warm/<key>.log``; the socket and the start lock in a
private directory, ``spark.warm_dir`` or ``lakehouse-<uid>`` in the temporary directory (a Unix
socket path is limited to about 100 characters).

Usage: python -m lakehouse.backends.warm start|stop [--all]|status   (make up / make down)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lakehouse import objectstore
from lakehouse.backends.base import JobOutput, JobResult, LogSink
from lakehouse.backends.local import STREAMING_ENTRYPOINTS, LocalBackend
from lakehouse.errors import SparkJobError, SparkJobTimeout
from lakehouse.jobs import SparkJob
from lakehouse.settings import REPO_ROOT, Settings, get_settings

START_TIMEOUT_S = 180.0


class WarmServer:
    """One warm Spark server: where it listens and logs, how to start, ping and stop it."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.job = SparkJob(
            name="lakehouse-warm",
            entrypoint="spark_jobs.warm_server",
            args=("--idle-seconds", f"{backend.settings.spark.warm_idle_seconds:g}"),
        )
        command = backend.command(self.job)
        sockets = socket_dir(backend.settings)
        sockets.mkdir(mode=0o700, parents=True, exist_ok=True)
        identity = json.dumps(command)
        secrets = objectstore.credential_env(backend.settings)
        if secrets:  # other keys, another server: one started with old keys is never reused
            identity += _fingerprint(sockets, secrets)
        key = hashlib.sha256(identity.encode()).hexdigest()[:12]
        self.socket = sockets / f"warm-{key}.sock"
        self.lock = sockets / f"warm-{key}.lock"
        # its temporary files: emptied at each start (a killed JVM cannot clean up) and when it is stopped
        self.tmp = self.socket.with_suffix(".tmp")
        self.log = REPO_ROOT / ".lakehouse" / "spark-warm" / f"{key}.log"
        self.command = [*backend.command(self.job, tmp_dir=self.tmp), "--socket", str(self.socket)]

    # -- talking to it -----------------------------------------------------------------------

    def _connect(self, timeout: float | None = 5.0) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(str(self.socket))
        return sock

    def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send one request and return its one answer."""
        return _ask(self.socket, message, timeout)

    def ping(self) -> dict[str, Any] | None:
        """The server's status, or None when none answers on the socket."""
        try:
            return self.request({"op": "ping"})
        except (OSError, ValueError):
            return None

    def ensure(self, log: LogSink) -> dict[str, Any]:
        """The running server's status; start one first when none answers (one starter at a time)."""
        status = self.ping()
        if status is not None and not status.get("stale") and not status.get("retiring"):
            return status
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be starting it right now
            status = self.ping()
            if status is not None and status.get("retiring"):
                self._wait_retired(status, log)
                status = None
            if status is not None and status.get("stale"):
                status = self._restart_stale(status, log)
            if status is not None:
                return status
            return self._start(log)

    def _wait_retired(self, status: dict[str, Any], log: LogSink) -> None:
        """Wait for a server that a JVM-fatal error retired to stop (it takes no new run and
        stops once its own runs end); then a new one is to start.

        Raises:
            SparkJobError: It still runs after the job timeout.
        """
        log(
            f"the warm local Spark is retiring ({status['retiring']}); a new one starts once its "
            f"{len(status.get('active') or [])} run(s) have ended"
        )
        deadline = time.monotonic() + self.backend.settings.spark.job_timeout_seconds + 60
        while (current := self.ping()) is not None and current.get("retiring"):
            if time.monotonic() > deadline:
                raise SparkJobError(
                    self.job.name, f"the retiring warm local Spark {current['pid']} did not stop; see {self.log}"
                )
            time.sleep(0.5)
        while self.socket.exists() and time.monotonic() < deadline:  # its socket goes last
            time.sleep(0.2)

    def _restart_stale(self, status: dict[str, Any], log: LogSink) -> dict[str, Any] | None:
        """Stop a server whose own code changed on disk (it re-imports job modules itself, not its
        own) when nothing runs on it, and return None (a new one is to start); with runs or
        Spark Connect clients on it, keep using it and say so."""
        files = ", ".join(f"spark_jobs/{f}" for f in status["stale"])
        if status.get("active") or status.get("leases"):
            log(f"the warm local Spark runs older code of {files} (busy now; it restarts once idle, or `make down`)")
            return status
        log(f"the warm local Spark's own code changed ({files}): restarting it")
        self.stop()
        return None

    def _start(self, log: LogSink) -> dict[str, Any]:
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # a server that died leaves its socket behind
        shutil.rmtree(self.tmp, ignore_errors=True)  # and its temporary files
        self.tmp.mkdir(mode=0o700)
        log(f"starting the warm local Spark (log: {self.log}) ...")
        command = list(self.command)
        if self.backend.settings.spark.warm_up:
            command += ["--warm-up", str(self._warm_up_plan())]
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.backend.environment(self.job, tmp_dir=self.tmp),  # with the object store's keys on s3a://
                cwd=self.backend.project_root,
                start_new_session=True,  # outlives this process: that is the point
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            status = self.ping()
            if status is not None:
                log(f"warm local Spark {status['pid']} ready")
                return status
            if proc.poll() is not None:
                raise SparkJobError(
                    self.job.name,
                    f"the warm local Spark exited with code {proc.returncode} while starting; see {self.log}",
                    exit_code=proc.returncode,
                    log_tail=self.log_tail(),
                )
            time.sleep(0.5)
        proc.kill()
        raise SparkJobError(
            self.job.name, f"the warm local Spark did not start in {START_TIMEOUT_S:g}s; see {self.log}"
        )

    def _warm_up_plan(self) -> Path:
        """Write the new server's warm-up plan: the medallion job over two days of small sample
        data (the first day creates the tables, the second MERGEs into them: the code paths of
        every later run) in a scratch directory beside the socket, which the server deletes."""
        from lakehouse.datagen import GenConfig, generate
        from lakehouse.pipeline import LAYERS, medallion_jobs, small_lakehouse

        scratch = self.socket.with_suffix(".warm-up")
        shutil.rmtree(scratch, ignore_errors=True)  # one a server that died left behind
        settings = self.backend.settings
        local = settings.model_copy(
            update={
                "storage": settings.storage.model_copy(update={"root": str(scratch / "lake")}),
                "pipeline": settings.pipeline.model_copy(update={"job_per_layer": False}),
                # the way the real runs will go: interpreted only while the real lakehouse is small
                # (the sample data always is)
                "spark": settings.spark.model_copy(
                    update={"interpret_below_mb": settings.spark.interpret_below_mb if small_lakehouse(settings) else 0}
                ),
            }
        )
        # the two days before today, so that the contracts' freshness SLAs hold as they do for
        # a daily run (a breach with action fail would stop the warm-up after its first day)
        first = dt.date.today() - dt.timedelta(days=2)
        generate(
            scratch / "lake" / "landing",
            GenConfig(start=first, days=2, seed=7, events_per_day=300, orders_per_day=60, users_initial=40),
        )
        runs = []
        for i in range(2):
            day = first + dt.timedelta(days=i)
            (job,) = medallion_jobs(LAYERS, local, start=day, end=day, run_id=f"warm-up-{i + 1}")
            runs.append({"entrypoint": job.entrypoint, "args": list(job.args)})
        plan = scratch / "plan.json"
        plan.write_text(json.dumps({"scratch": str(scratch), "runs": runs}))
        return plan

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the server if one runs; True when one was stopped."""
        status = self.ping()
        if status is None:
            return False
        with contextlib.suppress(OSError, ValueError):
            self.request({"op": "stop"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.socket.exists():
            time.sleep(0.2)
        if not self.socket.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        return True

    def log_tail(self, lines: int = 40) -> list[str]:
        try:
            return self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []


def _ask(path: Path, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the server on ``path`` and return its one answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        with sock.makefile("rwb") as stream:
            stream.write((json.dumps(message) + "\n").encode())
            stream.flush()
            answer: dict[str, Any] = json.loads(stream.readline() or b"{}")
            return answer


def _fingerprint(private: Path, secrets: dict[str, str]) -> str:
    """An HMAC of ``secrets`` under a random key kept in ``private`` (mode 0600): it tells
    credentials apart without putting anything derived from them alone into a file name."""
    path = private / "fingerprint.key"
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(32))
    return hmac.new(path.read_bytes(), json.dumps(secrets, sort_keys=True).encode(), "sha256").hexdigest()


def socket_dir(settings: Settings) -> Path:
    """The private directory of warm-server sockets: ``spark.warm_dir``, or the user's own one."""
    if settings.spark.warm_dir:
        return Path(settings.spark.warm_dir)
    return Path(tempfile.gettempdir()) / f"lakehouse-{os.getuid()}"


def stop_all(settings: Settings, timeout: float = 60.0) -> int:
    """Stop every warm server with a socket in ``socket_dir(settings)`` (any settings, any
    checkout); one still there after ``timeout`` is killed. Return how many were running."""
    stopped = 0
    for path in sorted(socket_dir(settings).glob("warm-*.sock")):
        try:
            pid = int(_ask(path, {"op": "ping"})["pid"])
            _ask(path, {"op": "stop"})
        except (OSError, ValueError, KeyError):
            continue  # a socket left by a server that died
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and path.exists():
            time.sleep(0.2)
        if path.exists():  # hung: its driver (the JVM) exits with it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            path.unlink(missing_ok=True)
        shutil.rmtree(path.with_suffix(".tmp"), ignore_errors=True)
        stopped += 1
    return stopped


@contextlib.contextmanager
def spark_connect(settings: Settings, log: LogSink) -> Iterator[tuple[str, str]]:
    """The warm Spark of ``settings`` as a Spark Connect endpoint: yields its URL (loopback) and
    token, for a client that runs its SQL there itself (dbt's ``warm`` target).

    The server (started if none runs) has one catalog for every client, so one client holds it
    at a time: a second one waits for the first to finish. While in this block the server does
    not stop for idleness (the connection it was asked on is held open as a lease).
    """
    server = WarmServer(LocalBackend(settings))
    server.log.parent.mkdir(parents=True, exist_ok=True)
    with open(server.lock.with_suffix(".connect-lock"), "w") as serial:
        try:
            fcntl.flock(serial, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("waiting for another Spark Connect client of the warm local Spark to finish (one catalog)")
            fcntl.flock(serial, fcntl.LOCK_EX)
        for attempt in (1, 2):
            server.ensure(log)
            try:
                sock = server._connect(timeout=60.0)
                stream = sock.makefile("rwb")
                stream.write(b'{"op": "connect"}\n')
                stream.flush()
                raw = stream.readline()
                if not raw:
                    raise ConnectionResetError("closed before answering")
                answer = json.loads(raw)
            except (OSError, ValueError) as exc:  # it stopped (idle, make down) right then
                if attempt == 2:
                    raise SparkJobError("lakehouse-warm", f"the warm local Spark refused Spark Connect: {exc}") from exc
                continue
            if not answer.get("ok"):
                sock.close()
                raise SparkJobError(
                    "lakehouse-warm", f"the warm local Spark could not start Spark Connect: {answer.get('error')}"
                )
            break
        with sock, stream:
            yield f"sc://localhost:{int(answer['port'])}", str(answer["token"])


def eligible(job: SparkJob) -> bool:
    """Whether ``job`` can run on the warm server (see the module docstring)."""
    return not (job.secret_env or job.jars or job.conf or job.java_options or job.entrypoint in STREAMING_ENTRYPOINTS)


class ServerGone(Exception):
    """The server closed a run's connection before taking the run: nothing ran."""


class WarmBackend(LocalBackend):
    """The local backend with batch jobs on the warm server (``spark.mode=warm``, the default)."""

    def run(self, job: SparkJob, *, log: LogSink) -> JobResult:
        if not eligible(job):
            return super().run(job, log=log)
        server = WarmServer(self)
        timeout = job.timeout_seconds or self.settings.spark.job_timeout_seconds
        tag = f"{job.name}-{uuid.uuid4().hex[:12]}"
        output = JobOutput(self.settings, job, self.name, log)
        log(f"warm {job.entrypoint} {' '.join(job.args)}")
        request = {"op": "run", "entrypoint": job.entrypoint, "args": list(job.args), "tag": tag, "timeout": timeout}
        start = time.monotonic()
        try:
            try:
                server.ensure(log)
                end = self._submit(server, request, output, timeout)
            except ServerGone:
                # it stopped (idle, make down) between the health check and the request: the run
                # never started, so it goes to a new server
                log("the warm local Spark stopped before taking the run; starting a new one")
                server.ensure(log)
                end = self._submit(server, request, output, timeout)
        except TimeoutError:
            self._cancel(server, tag)
            raise SparkJobTimeout(
                job.name, f"ran past its timeout of {timeout:g}s", state="TIMEOUT", log_tail=list(output.tail)
            ) from None
        except ServerGone:
            raise SparkJobError(
                job.name, f"the warm local Spark closed the run's connection twice (see {server.log})", state="FAILED"
            ) from None
        except BaseException:
            # Prefect cancellation, KeyboardInterrupt: the run's Spark jobs stop, the server stays
            self._cancel(server, tag)
            raise
        duration = time.monotonic() - start
        if end is None:
            raise SparkJobError(
                job.name,
                f"the warm local Spark stopped during the run (see {server.log}); the next run starts a new one",
                state="FAILED",
                log_tail=[*output.tail, *server.log_tail(10)],
                metrics=output.metrics,
            )
        code = int(end["exit"])
        if end.get("cancelled"):
            error_type = SparkJobTimeout if str(end.get("error", "")).startswith("timed out") else SparkJobError
            raise error_type(
                job.name,
                f"{end['error']} (after {duration:.1f}s)",
                exit_code=code,
                state="TIMEOUT" if error_type is SparkJobTimeout else "CANCELLED",
                log_tail=list(output.tail),
                metrics=output.metrics,
            )
        return output.result(code, duration)

    @staticmethod
    def _submit(
        server: WarmServer, request: dict[str, Any], output: JobOutput, timeout: float
    ) -> dict[str, Any] | None:
        """Send the run and feed its lines to ``output``; return its end message, or None when the
        server went away during the run.

        Raises:
            ServerGone: the server was not there or closed the connection before taking the run.
            TimeoutError: no word from the server for ``timeout`` + 60 s.
        """
        try:
            # the connection stays open both ways until the end: the server cancels the run when it closes
            sock = server._connect(timeout=None)
        except OSError as exc:
            raise ServerGone from exc
        started = False
        with sock, sock.makefile("rwb") as stream:
            try:
                stream.write((json.dumps(request) + "\n").encode())
                stream.flush()
                # a bound on top of the server's own timeout (which cancels the run's Spark jobs)
                sock.settimeout(timeout + 60)
                for raw in stream:
                    message = json.loads(raw)
                    if "line" in message:
                        output.feed(str(message["line"]))
                    elif "exit" in message:
                        return dict(message)
                    elif message.get("started"):
                        started = True
            except (BrokenPipeError, ConnectionResetError):
                pass
        if not started:
            raise ServerGone
        return None

    @staticmethod
    def _cancel(server: WarmServer, tag: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            server.request({"op": "cancel", "tag": tag})


def main(argv: list[str] | None = None) -> int:
    """``start``, ``stop`` or ``status`` of the warm local Spark of the current settings."""
    command = (argv if argv is not None else sys.argv[1:]) or ["status"]
    settings: Settings = get_settings()
    server = WarmServer(LocalBackend(settings))
    if command[0] == "start":
        status = server.ensure(lambda line: print(line, flush=True))
        print(f"warm local Spark {status['pid']} on {server.socket} (log {server.log})")
    elif command[0] == "stop" and command[1:] == ["--all"]:
        print(f"stopped {stop_all(settings)} warm local Spark(s)")
    elif command[0] == "stop":
        print("stopped" if server.stop() else "not running")
    elif command[0] == "status":
        found = server.ping()
        print(f"running: {found}" if found else "not running")
        return 0 if found else 3
    else:
        print(f"usage: python -m lakehouse.backends.warm start|stop|status (got {command[0]!r})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
