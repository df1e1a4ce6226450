"""Crash the streaming job on purpose: ``kill -9`` its whole spark-submit process group at random
points while it processes, restart it, and check that nothing was lost or duplicated.

Used by the exactly-once test (``tests/kafka/test_streaming_exactly_once.py``, 5 kills) and the
soak script (``bench/soak_streaming.py``, 20 kills). Plain stdlib + the local backend's command
line; nothing here imports pyspark or prefect.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lakehouse.backends.local import LocalBackend, private_tmp
from lakehouse.errors import LakehouseError
from lakehouse.jobs import SparkJob
from lakehouse.kafka import SentMessage

BATCH_LINE = re.compile(r"^\[streaming\] batch (\d+): (\d+) records")
"""The line the streaming job prints after each bronze micro-batch."""


class ChaosError(LakehouseError):
    """The streaming process did not behave as the chaos run expected."""


class StreamProcess:
    """The streaming job under spark-submit, in its own process group, output read line by line.

    Args:
        backend: Renders the job's command line and environment.
        job: The streaming SparkJob.
        log: Receives every output line (e.g. ``print`` or a logger).
    """

    def __init__(self, backend: LocalBackend, job: SparkJob, log: Callable[[str], None] | None = None) -> None:
        self.backend, self.job, self.log = backend, job, log
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._tmp = contextlib.ExitStack()  # its private temporary directory, removed by kill9

    def start(self) -> StreamProcess:
        """Launch spark-submit (a new session: its pid is the process group id)."""
        tmp = self._tmp.enter_context(private_tmp())
        self.proc = subprocess.Popen(
            self.backend.command(self.job, tmp_dir=tmp),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.backend.environment(self.job, tmp_dir=tmp),
            cwd=self.backend.project_root,
            start_new_session=True,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True, name="stream-output")
        self._reader.start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            self.tail.append(line)
            if self.log is not None:
                self.log(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Wait for an output line matching ``pattern``.

        Raises:
            ChaosError: The process ended, or no such line came within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChaosError(f"no line matching {pattern.pattern!r} within {timeout:.0f}s")
            try:
                line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait() if self.proc is not None else None
                raise ChaosError(
                    f"the streaming job exited (code {code}) before "
                    f"{pattern.pattern!r} appeared; last lines:\n" + "\n".join(self.tail)
                )
            match = pattern.search(line)
            if match:
                return match

    def kill9(self, timeout: float = 30.0) -> None:
        """SIGKILL the whole process group and wait until no member is left."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            if time.monotonic() > deadline:
                raise ChaosError(f"process group {self.proc.pid} survived SIGKILL")
            time.sleep(0.1)
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._tmp.close()  # what the killed JVM could not delete itself


@dataclass(frozen=True)
class Kill:
    """One crash: the cycle, the first batch the run committed, and when it was killed."""

    cycle: int
    first_batch: int
    delay_s: float
    run_s: float


def kill_cycles(
    backend: LocalBackend,
    job: SparkJob,
    *,
    cycles: int,
    rng: random.Random,
    delay: tuple[float, float] = (0.0, 4.0),
    batch_timeout: float = 300.0,
    log: Callable[[str], None] | None = None,
) -> list[Kill]:
    """Run ``job`` ``cycles`` times; each time wait for its first micro-batch, wait a random
    ``delay`` more (so the kill lands anywhere: in a batch, between its two appends, between
    batches, while committing), then ``kill -9`` its process group.
    """
    kills = []
    for cycle in range(1, cycles + 1):
        started = time.monotonic()
        proc = StreamProcess(backend, job, log).start()
        try:
            first = proc.wait_for(BATCH_LINE, batch_timeout)
            pause = rng.uniform(*delay)
            time.sleep(pause)
        finally:
            proc.kill9()
        kills.append(Kill(cycle, int(first.group(1)), round(pause, 2), round(time.monotonic() - started, 1)))
    return kills


def exactly_once_problems(
    sent: Iterable[SentMessage], bronze_keys: Iterable[str], dead_letter_keys: Iterable[str]
) -> list[str]:
    """Compare what was produced with what landed: every valid event in bronze exactly once,
    every malformed message in the dead-letter table exactly once, nothing else.

    Returns:
        Human-readable problems; empty when exactly-once holds.
    """
    valid = {m.key for m in sent if m.valid}
    bad = {m.key for m in sent if not m.valid}
    problems = []
    for name, expected, got in (
        ("bronze", valid, Counter(bronze_keys)),
        ("dead-letter", bad, Counter(dead_letter_keys)),
    ):
        lost = expected - set(got)
        dups = {k: n for k, n in got.items() if n > 1}
        extra = set(got) - expected
        if lost:
            problems.append(f"{name}: {len(lost)} key(s) lost, e.g. {sorted(lost)[:5]}")
        if dups:
            some = sorted(dups.items())[:5]
            problems.append(f"{name}: {len(dups)} key(s) duplicated, e.g. {some}")
        if extra:
            problems.append(f"{name}: {len(extra)} unexpected key(s), e.g. {sorted(extra)[:5]}")
    return problems
