"""Local backend: renders a SparkJob to a ``spark-submit`` command (the one in the pyspark wheel)
and runs it, streaming the driver's output line by line.

The job runs in its own process group. On failure the typed error carries the exit code and the
last lines of the log; on timeout, cancellation or any interruption of the caller the whole
group (launcher JVM, Python driver, Python workers) is terminated, then killed.

:meth:`LocalBackend.run_in_process` runs a short job in the Spark this process already runs
instead (the one dbt's local target starts inside a flow run), with no JVM start at all.

Every launched Spark gets a temporary directory of its own (:func:`private_tmp`: the JVM's
``java.io.tmpdir``, Spark's local dirs and the Python side's ``TMPDIR``), removed when it ends:
what a killed JVM cannot delete itself (block-manager and ``spark-*`` directories, the native
libraries it unpacks) never piles up in the machine's temporary directory.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import importlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lakehouse import cds, jars, objectstore
from lakehouse.backends.base import JobOutput, JobResult, LogSink, parse_metrics
from lakehouse.errors import ConfigError, SparkJobError, SparkJobTimeout
from lakehouse.jobs import C1_ONLY, SparkJob
from lakehouse.settings import REPO_ROOT, Settings, credentials
from spark_jobs.conf import default_conf

STREAMING_ENTRYPOINTS = ("spark_jobs.streaming",)
"""Long-running jobs: never on the warm Spark, and on the tiered JIT unless ``spark.jit=c1``."""


def jit_options(settings: Settings, *, long_running: bool = False) -> list[str]:
    """The JIT options of a local driver JVM (``spark.jit``; ``auto``: C1 only while the
    lakehouse is small, unless the JVM is ``long_running``)."""
    mode = settings.spark.jit
    if mode == "auto":
        from lakehouse.pipeline import small_lakehouse

        mode = "c1" if not long_running and small_lakehouse(settings, with_landing=True) else "tiered"
    return list(C1_ONLY) if mode == "c1" else []


_PR_SET_PDEATHSIG = 1
_KILL_GRACE_S = 10.0


def live_spark_session() -> Any | None:
    """The SparkSession running in this process, if any, found without importing pyspark (only
    a process that already imported it can have one: e.g. after an in-process dbt build)."""
    module = sys.modules.get("pyspark.sql")
    cls = getattr(module, "SparkSession", None) if module is not None else None
    session = getattr(cls, "_instantiatedSession", None) if cls is not None else None
    if session is None or getattr(getattr(session, "_sc", None), "_jsc", None) is None:
        return None
    return session


class _Lines:
    """A text stream that hands every complete line to ``sink``."""

    def __init__(self, sink: Callable[[str], None]) -> None:
        self.sink = sink
        self.buffer = ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.sink(line)
        return len(text)

    def flush(self) -> None:
        return None

    def close(self) -> None:
        if self.buffer:
            self.sink(self.buffer)
            self.buffer = ""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the launcher if the process that started it goes away."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


@contextlib.contextmanager
def private_tmp() -> Iterator[Path]:
    """A new private temporary directory for one Spark process, removed with all it holds."""
    path = Path(tempfile.mkdtemp(prefix="lakehouse-spark-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


CONNECT_CLIENT_ENV = (
    "SPARK_CONNECT_MODE_ENABLED",
    "SPARK_REMOTE",
    "SPARK_LOCAL_REMOTE",
    "SPARK_API_MODE",
    "SPARK_CONNECT_AUTHENTICATE_TOKEN",
)
"""Variables that would make a pyspark driver a Spark Connect client (or hand it a token)."""


class LocalBackend:
    """Runs SparkJobs with spark-submit in local mode."""

    name = "local"

    def __init__(
        self, settings: Settings, project_root: Path = REPO_ROOT, *, java_options: list[str] | None = None
    ) -> None:
        """``java_options``: extra driver JVM options; default: the class-data archive
        (:mod:`lakehouse.cds`) when it is enabled and built."""
        self.settings = settings
        self.project_root = project_root
        self.java_options = cds.java_options(settings) if java_options is None else list(java_options)

    def command(self, job: SparkJob, *, tmp_dir: Path | None = None) -> list[str]:
        """Render ``job`` into the spark-submit command line; with ``tmp_dir``, the driver JVM's
        temporary files (``java.io.tmpdir``) go there (Spark's local dirs: :meth:`environment`)."""
        s = self.settings.spark
        submit = jars.spark_home() / "bin" / "spark-submit"
        log4j = self.project_root / "spark_jobs" / "log4j2.properties"
        local = {
            # Local runs talk to nothing but loopback.
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.driver.extraJavaOptions": " ".join(
                [
                    f"-Dlog4j2.configurationFile=file:{log4j}",
                    f"-Dlakehouse.log.level={s.log_level}",
                    *self.java_options,
                    *jit_options(self.settings, long_running=job.entrypoint in STREAMING_ENTRYPOINTS),
                    *s.java_options,
                    *([f"-Djava.io.tmpdir={tmp_dir}"] if tmp_dir is not None else []),
                    *job.java_options,
                ]
            ),
        }
        if tmp_dir is not None:  # Hadoop's own temporary files (S3A's upload buffers) go there too
            local["spark.hadoop.hadoop.tmp.dir"] = str(tmp_dir)
        conf = {**default_conf(s.cores), **objectstore.job_conf(self.settings), **local, **s.conf, **job.conf}
        all_jars = [str(p) for p in jars.job_jars(self.settings.storage.root)] + list(job.jars)
        cmd = [
            str(submit),
            "--master",
            s.master,
            "--name",
            job.name,
            # Local mode has a single JVM: size it from the local settings, not the cluster spec.
            "--driver-memory",
            s.driver_memory,
        ]
        if all_jars:
            cmd += ["--jars", ",".join(all_jars)]
        for key in sorted(conf):
            cmd += ["--conf", f"{key}={conf[key]}"]
        cmd.append(str(job.main_path(self.project_root)))
        cmd += list(job.args)
        return cmd

    def environment(self, job: SparkJob | None = None, *, tmp_dir: Path | None = None) -> dict[str, str]:
        """Environment of the launcher: this interpreter runs the Python driver and workers;
        the credentials ``job`` reads (``secret_env``, and the object store's keys on s3a://
        storage) come from the settings, never its arguments. With ``tmp_dir``, ``TMPDIR``
        (the launcher's and the Python side's temporary files) and ``SPARK_LOCAL_DIRS`` (block
        manager, shuffle and spill files; an environment variable, not ``spark.local.dir``,
        which makes Spark warn in every run) are there, unless the settings or the job give
        ``spark.local.dir`` themselves.

        Raises:
            ConfigError: ``job`` needs a credential the settings do not have.
        """
        # a driver is never a Spark Connect client, whatever a client in this process left set
        # (pyspark's builder marks the whole process once it made a Connect session)
        env = {k: v for k, v in os.environ.items() if k not in CONNECT_CLIENT_ENV}
        if job is not None:
            known = {c.env: c.value.get_secret_value() for c in credentials(self.settings) if c.value is not None}
            known.update(objectstore.credential_env(self.settings))  # settings, or this environment
            for name in (*job.secret_env, *objectstore.secret_env(self.settings)):
                value = known.get(name)
                if value is None:
                    raise ConfigError(f"job {job.name} needs the credential {name}, which is not set")
                env[name] = value
        env["SPARK_HOME"] = str(jars.spark_home())
        env["PYSPARK_PYTHON"] = sys.executable
        env["PYSPARK_DRIVER_PYTHON"] = sys.executable
        env["PYTHONUNBUFFERED"] = "1"
        env["SPARK_LOCAL_IP"] = "127.0.0.1"
        env["LAKEHOUSE_SPARK_LOG_LEVEL"] = self.settings.spark.log_level
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(self.project_root) + (os.pathsep + path if path else "")
        if tmp_dir is not None:
            env["TMPDIR"] = str(tmp_dir)
            if "spark.local.dir" not in {**self.settings.spark.conf, **(job.conf if job else {})}:
                env["SPARK_LOCAL_DIRS"] = str(tmp_dir)
        return env

    def run(self, job: SparkJob, *, log: LogSink) -> JobResult:
        """Run ``job`` to the end; see the module docstring for failure handling."""
        timeout = job.timeout_seconds or self.settings.spark.job_timeout_seconds
        with private_tmp() as tmp:
            return self._run(job, tmp, timeout, log)

    def _run(self, job: SparkJob, tmp: Path, timeout: float, log: LogSink) -> JobResult:
        output = JobOutput(self.settings, job, self.name, log)
        cmd = self.command(job, tmp_dir=tmp)
        log(f"spark-submit {job.entrypoint} {' '.join(job.args)}")
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.environment(job, tmp_dir=tmp),
            cwd=self.project_root,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            text=True,
            errors="replace",
            bufsize=1,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                lines.put(raw.rstrip("\n"))
            lines.put(None)

        reader = threading.Thread(target=pump, name=f"spark-log-{job.name}", daemon=True)
        reader.start()
        try:
            eof = False
            while not eof:
                remaining = timeout - (time.monotonic() - start)
                if remaining <= 0:
                    self._stop(proc)
                    raise SparkJobTimeout(
                        job.name,
                        f"ran past its timeout of {timeout:g}s and was stopped",
                        exit_code=proc.returncode,
                        state="TIMEOUT",
                        log_tail=list(output.tail),
                    )
                try:
                    line = lines.get(timeout=min(remaining, 1.0))
                except queue.Empty:
                    continue
                if line is None:
                    eof = True
                    continue
                output.feed(line)
            code = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
        except BaseException:
            # Timeout, Prefect cancellation, KeyboardInterrupt, crash of the caller: no strays.
            self._stop(proc)
            raise
        finally:
            reader.join(timeout=5)
        return output.result(code, time.monotonic() - start)

    def run_in_process(self, job: SparkJob, *, log: LogSink) -> JobResult:
        """Run ``job``'s entrypoint here, in the SparkSession this process already runs.

        For a short job after an in-process dbt build (the demo's table listing): its Spark is
        warm, so the job pays no JVM start. The job gets that session's static conf (memory,
        jars), not its own; no timeout is enforced and there is no process to kill, so
        :meth:`run` stays the way to run pipeline jobs.

        Raises:
            SparkJobError: No Spark runs in this process, or the job failed (its exit code, 1
                for an exception, and the last lines it printed).
        """
        if live_spark_session() is None:
            raise SparkJobError(job.name, "cannot run in this process: no SparkSession runs here", state="FAILED")
        tail: collections.deque[str] = collections.deque(maxlen=self.settings.spark.log_tail_lines)
        metrics: list[dict[str, Any]] = []
        real_stdout = sys.stdout

        def line(text: str) -> None:
            found = parse_metrics(text)
            if found is not None:
                metrics.extend(found)
                return
            tail.append(text)
            with contextlib.redirect_stdout(real_stdout):  # a sink that prints must not loop back
                log(text)

        log(f"in-process {job.entrypoint} {' '.join(job.args)}")
        start = time.monotonic()
        out = _Lines(line)
        try:
            with contextlib.redirect_stdout(out):
                code = importlib.import_module(job.entrypoint).main(list(job.args))
        except SystemExit as exc:  # argparse refusing the arguments
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception as exc:
            out.close()
            raise SparkJobError(
                job.name, f"failed: {exc}", exit_code=1, state="FAILED", log_tail=list(tail), metrics=metrics
            ) from exc
        out.close()
        if code:
            raise SparkJobError(
                job.name,
                f"failed with exit code {code}",
                exit_code=code,
                state="FAILED",
                log_tail=list(tail),
                metrics=metrics,
            )
        return JobResult(
            job=job.name,
            backend=self.name,
            state="COMPLETED",
            exit_code=0,
            duration_s=round(time.monotonic() - start, 3),
            metrics=metrics,
            log_tail=list(tail),
        )

    @staticmethod
    def _stop(proc: subprocess.Popen[str]) -> None:
        """Terminate the job's whole process group; kill it if it does not exit in time."""
        for sig, grace in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
            # The launcher is gone; make sure nothing else of the group survives it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break
