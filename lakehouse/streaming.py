"""The Kafka streaming ingest from the control plane's side: its SparkJob, and its health.

- :func:`streaming_job` is the one description of the streaming job (``spark_jobs.streaming``):
  continuous (processingTime, no end: the long-running app on a cluster) or a bounded local run
  (availableNow, or processingTime for a number of seconds).
- :func:`read_checkpoint` reads the committed progress of the stream's bronze query from its
  Structured Streaming checkpoint, with plain file reads (no Spark): ``offsets/<batch>`` holds a
  batch's end offsets per partition and its start time, ``commits/<batch>`` exists once the batch
  is done (its modification time is when it finished).
- :func:`stream_status` turns Kafka's end offsets and that progress into per-partition lag, last
  batch time, rows per second and the threshold breaches the monitor flow fails on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from lakehouse import objectstore
from lakehouse.backends.base import LogSink
from lakehouse.errors import ConfigError
from lakehouse.jobs import SparkJob
from lakehouse.settings import Settings

LocalTrigger = Literal["available-now", "processing-time"]
EnsureAction = Literal["created", "unchanged", "updated", "relaunched"]

STOP_MARGIN_SECONDS = 300.0
"""A bounded local run's job timeout = its duration + this (start-up, last batch, shutdown)."""

_BATCH_FILE = re.compile(r"^\d+$")


# -- the job ------------------------------------------------------------------------------------


def checkpoint_dir(settings: Settings) -> str:
    """Checkpoint root of the stream: ``<storage.checkpoints>/<streaming.query_name>``."""
    return "/".join([settings.storage.checkpoints.rstrip("/"), settings.streaming.query_name])


def bronze_checkpoint_dir(settings: Settings) -> str:
    """Checkpoint of the Kafka -> bronze query (the one whose offsets the monitor reads)."""
    return checkpoint_dir(settings) + "/bronze"


def table_paths(settings: Settings) -> dict[str, str]:
    """Paths of the stream's tables: ``bronze``, ``dead_letter``, ``gold`` and ``late`` (the
    closed windows gold missed events of, ``<gold>_late``)."""
    st, s = settings.storage, settings.streaming
    return {
        "bronze": st.table("bronze", s.bronze_table),
        "dead_letter": st.table("quarantine", s.dead_letter_table),
        "gold": st.table("gold", s.gold_table),
        "late": st.table("gold", f"{s.gold_table}_late"),
    }


def kafka_security_args(settings: Settings) -> list[str]:
    """The stream driver's Kafka security arguments (none for PLAINTEXT). The SASL password is
    not among them: the driver reads it from ``LAKEHOUSE_KAFKA__SASL_PASSWORD`` (the job's
    ``secret_env``)."""
    k = settings.kafka
    if k.security_protocol == "PLAINTEXT":
        return []
    args = ["--kafka-security-protocol", k.security_protocol]
    if k.uses_sasl:
        args += ["--kafka-sasl-mechanism", k.sasl_mechanism, "--kafka-sasl-username", str(k.sasl_username)]
    if k.ssl_ca_location:
        args += ["--kafka-ssl-ca-location", k.ssl_ca_location]
    return args


def streaming_job(
    settings: Settings,
    *,
    continuous: bool = False,
    trigger: LocalTrigger | None = None,
    max_seconds: float | None = None,
    with_gold: bool = True,
) -> SparkJob:
    """The SparkJob of the Kafka -> bronze (+ dead letters, gold windows) stream.

    Args:
        settings: Project settings (Kafka, storage and streaming sections).
        continuous: The long-running form for a cluster: processingTime trigger, no end, marked
            ``streaming`` (restartPolicy Always). Overrides ``trigger`` and ``max_seconds``.
        trigger: Trigger of a bounded run (default ``streaming.local_trigger``).
        max_seconds: Duration of a processing-time run (default ``streaming.local_max_seconds``).
        with_gold: Also run the windowed gold query.
    """
    s = settings.streaming
    paths = table_paths(settings)
    args = [
        "--bootstrap-servers",
        settings.kafka.bootstrap_servers,
        "--topic",
        settings.kafka.topic,
        "--bronze",
        paths["bronze"],
        "--dead-letter",
        paths["dead_letter"],
        "--gold",
        paths["gold"],
        "--late",
        paths["late"],
        "--checkpoint",
        checkpoint_dir(settings),
        "--query-name",
        s.query_name,
        "--interval",
        s.processing_time,
        "--max-offsets-per-trigger",
        str(s.max_offsets_per_trigger or 0),
        "--min-partitions",
        str(s.min_partitions),
        "--starting-offsets",
        s.starting_offsets,
        "--window",
        s.window,
        "--watermark",
        s.watermark,
        "--metrics",
        settings.storage.table("quality", "metrics"),
    ]
    args += kafka_security_args(settings)
    secret_env = ("LAKEHOUSE_KAFKA__SASL_PASSWORD",) if settings.kafka.uses_sasl else ()
    if settings.contracts_dir:
        args += ["--contracts-dir", settings.contracts_dir]
    if not with_gold:
        args.append("--no-gold")
    name = re.sub(r"[^a-z0-9-]+", "-", s.query_name.lower()).strip("-")[:40].strip("-")
    if continuous:
        return SparkJob(
            name=name,
            entrypoint="spark_jobs.streaming",
            conf=dict(s.spark_conf),
            java_options=tuple(s.java_options),
            args=(*args, "--trigger", "processing-time"),
            streaming=True,
            secret_env=secret_env,
        )
    chosen = trigger or s.local_trigger
    if chosen not in ("available-now", "processing-time"):
        raise ConfigError(f"unknown trigger {chosen!r}; valid triggers: available-now, processing-time")
    if chosen == "processing-time":
        seconds = max_seconds if max_seconds is not None else s.local_max_seconds
        if seconds <= 0:
            raise ConfigError(f"max_seconds must be > 0 for a local processing-time run, got {seconds}")
        args += ["--trigger", chosen, "--max-seconds", f"{seconds:g}"]
        timeout = seconds + STOP_MARGIN_SECONDS
    else:
        args += ["--trigger", chosen]
        timeout = settings.spark.job_timeout_seconds
    return SparkJob(
        name=name,
        entrypoint="spark_jobs.streaming",
        conf=dict(s.spark_conf),
        args=tuple(args),
        java_options=tuple(s.java_options),
        timeout_seconds=timeout,
        secret_env=secret_env,
    )


@runtime_checkable
class LongRunningBackend(Protocol):
    """A backend that keeps a streaming SparkJob running (the Kubernetes backend)."""

    def ensure_running(self, job: SparkJob, *, log: LogSink = ...) -> str:
        """Create, leave alone, update or relaunch the app of ``job``; return what it did:
        ``created``, ``unchanged``, ``updated`` or ``relaunched``."""
        ...


def ensure_running(backend: object, job: SparkJob, *, log: LogSink | None = None) -> str:
    """Make sure ``job`` runs on ``backend``; the backend must keep long-running apps.

    Raises:
        ConfigError: The backend cannot keep a stream running (the local backend runs a job to
            its end: use a bounded local run instead).
    """
    if not job.streaming:
        raise ConfigError(f"job {job.name!r} is not a streaming job (streaming=False)")
    if not isinstance(backend, LongRunningBackend):
        raise ConfigError(
            f"the {getattr(backend, 'name', type(backend).__name__)} backend cannot keep a stream "
            "running (no ensure_running); valid: the kubernetes backend"
        )
    if log is None:
        return backend.ensure_running(job)
    return backend.ensure_running(job, log=log)


# -- checkpoint ---------------------------------------------------------------------------------


class _Dir(Protocol):
    def names(self, sub: str) -> list[str]: ...
    def read(self, sub: str) -> str: ...
    def mtime(self, sub: str) -> dt.datetime: ...


class _LocalDir:
    """A checkpoint on a local (or mounted) filesystem."""

    def __init__(self, root: str) -> None:
        self.root = Path(root.removeprefix("file://").removeprefix("file:"))

    def names(self, sub: str) -> list[str]:
        d = self.root / sub
        return os.listdir(d) if d.is_dir() else []

    def read(self, sub: str) -> str:
        return (self.root / sub).read_text(errors="replace")

    def mtime(self, sub: str) -> dt.datetime:
        return dt.datetime.fromtimestamp((self.root / sub).stat().st_mtime, dt.UTC)


class _RemoteDir:
    """A checkpoint on an object store, read through fsspec (``s3a://`` is read as ``s3://``;
    the protocol's fsspec implementation, e.g. s3fs, must be installed)."""

    def __init__(self, root: str, options: dict[str, Any] | None = None) -> None:
        import fsspec

        url = re.sub(r"^s3a://", "s3://", root)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url, **(options or {}))
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"cannot read the checkpoint at {root}: {exc}") from exc

    def names(self, sub: str) -> list[str]:
        path = f"{self.root.rstrip('/')}/{sub}"
        # fsspec reuses file system instances and s3fs keeps their listings: without this, a
        # monitor reading the checkpoint again would see the batches of its first read forever
        self.fs.invalidate_cache(path)
        if not self.fs.isdir(path):
            return []
        return [str(p).rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]

    def read(self, sub: str) -> str:
        data = self.fs.cat_file(f"{self.root.rstrip('/')}/{sub}")
        return data.decode(errors="replace") if isinstance(data, bytes) else str(data)

    def mtime(self, sub: str) -> dt.datetime:
        t = self.fs.modified(f"{self.root.rstrip('/')}/{sub}")
        if not isinstance(t, dt.datetime):
            raise ConfigError(f"no modification time for {sub} under {self.root}")
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _open(root: str, options: dict[str, Any] | None = None) -> _Dir:
    if "://" in root and not root.startswith("file:"):
        return _RemoteDir(root, options)
    return _LocalDir(root)


@dataclass(frozen=True)
class CommittedBatch:
    """One committed micro-batch of the stream.

    Attributes:
        batch_id: Micro-batch id.
        end_offsets: Per partition, the offset after the batch's last record.
        started_at: When Spark planned the batch (``batchTimestampMs``).
        committed_at: When its commit file was written (the batch was done).
    """

    batch_id: int
    end_offsets: dict[int, int]
    started_at: dt.datetime
    committed_at: dt.datetime


@dataclass(frozen=True)
class CheckpointProgress:
    """What the checkpoint says: the initial offsets and the retained committed batches."""

    checkpoint: str
    start_offsets: dict[int, int] = field(default_factory=dict)
    batches: tuple[CommittedBatch, ...] = ()

    @property
    def last(self) -> CommittedBatch | None:
        """The latest committed batch, if any."""
        return self.batches[-1] if self.batches else None


def _offset_lines(text: str, topic: str) -> tuple[dict[str, Any], dict[int, int]]:
    """Parse an ``offsets/<n>`` file: its metadata line and ``topic``'s offsets."""
    lines = [ln for ln in text.lstrip("\x00").splitlines() if ln.strip()]
    if not lines or not re.fullmatch(r"v\d+", lines[0].strip()):
        raise ConfigError(f"not a Structured Streaming offsets file (first line {lines[:1]!r})")
    meta: dict[str, Any] = {}
    offsets: dict[int, int] = {}
    for line in lines[1:]:
        try:
            obj = json.loads(line)
        except ValueError:
            continue  # "-" marks a source without offsets
        if not isinstance(obj, dict):
            continue
        if "batchTimestampMs" in obj:
            meta = obj
        elif isinstance(obj.get(topic), dict):
            offsets = {int(p): int(o) for p, o in obj[topic].items()}
    return meta, offsets


def read_checkpoint(
    checkpoint: str, topic: str, *, keep: int = 100, storage_options: dict[str, Any] | None = None
) -> CheckpointProgress:
    """Read the committed batches of the Kafka query checkpointed at ``checkpoint``.

    Only batches with a commit file count (a batch with offsets but no commit is in flight or was
    interrupted, and will be re-run with the same offsets). A missing checkpoint reads as no
    progress.

    Args:
        checkpoint: The query's checkpoint directory (local path, ``file:`` or object-store URI).
        topic: The Kafka topic the query reads.
        keep: Read at most this many latest committed batches.
        storage_options: fsspec options of an object-store checkpoint (endpoint, keys):
            :func:`lakehouse.objectstore.fsspec_options`.
    """
    d = _open(checkpoint, storage_options)
    committed = sorted(int(n) for n in d.names("commits") if _BATCH_FILE.match(n))
    planned = {int(n) for n in d.names("offsets") if _BATCH_FILE.match(n)}
    batches = []
    for bid in [b for b in committed if b in planned][-keep:]:
        meta, offsets = _offset_lines(d.read(f"offsets/{bid}"), topic)
        started = dt.datetime.fromtimestamp(int(meta.get("batchTimestampMs", 0)) / 1000, dt.UTC)
        batches.append(CommittedBatch(bid, offsets, started, d.mtime(f"commits/{bid}")))
    start: dict[int, int] = {}
    if "0" in d.names("sources/0"):
        for line in d.read("sources/0/0").lstrip("\x00").splitlines()[1:]:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get(topic), dict):
                start = {int(p): int(o) for p, o in obj[topic].items()}
    return CheckpointProgress(checkpoint, start, tuple(batches))


# -- status -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionStatus:
    """The stream's position in one Kafka partition."""

    partition: int
    end_offset: int
    committed_offset: int | None
    lag: int
    rows_per_second: float | None


@dataclass(frozen=True)
class StreamStatus:
    """Health of the stream at ``checked_at``.

    Attributes:
        topic: The Kafka topic.
        checkpoint: The bronze query's checkpoint.
        checked_at: When the status was taken.
        partitions: Per partition: end offset, committed offset, lag, rows per second.
        last_batch_id: Latest committed micro-batch, None before the first.
        last_batch_time: When it finished.
        rows_per_second: Records processed per second of batch time over the recent batches.
        problems: Threshold breaches; empty when healthy.
    """

    topic: str
    checkpoint: str
    checked_at: dt.datetime
    partitions: tuple[PartitionStatus, ...]
    last_batch_id: int | None
    last_batch_time: dt.datetime | None
    rows_per_second: float | None
    problems: tuple[str, ...] = ()

    @property
    def total_lag(self) -> int:
        """Messages in Kafka the stream has not committed yet."""
        return sum(p.lag for p in self.partitions)

    @property
    def staleness_seconds(self) -> float | None:
        """Seconds since the last committed batch finished (None before the first)."""
        if self.last_batch_time is None:
            return None
        return max(0.0, (self.checked_at - self.last_batch_time).total_seconds())

    @property
    def healthy(self) -> bool:
        """True when no threshold is passed."""
        return not self.problems

    def rows(self) -> list[dict[str, Any]]:
        """One table row per partition plus a total row (for a Prefect table artifact)."""
        last = self.last_batch_time.isoformat(timespec="seconds") if self.last_batch_time else None
        out: list[dict[str, Any]] = [
            {
                "partition": p.partition,
                "end_offset": p.end_offset,
                "committed_offset": p.committed_offset,
                "lag": p.lag,
                "last_batch_time": last,
                "rows_per_second": p.rows_per_second,
            }
            for p in self.partitions
        ]
        out.append(
            {
                "partition": "total",
                "end_offset": sum(p.end_offset for p in self.partitions),
                "committed_offset": sum(p.committed_offset or 0 for p in self.partitions),
                "lag": self.total_lag,
                "last_batch_time": last,
                "rows_per_second": self.rows_per_second,
            }
        )
        return out


def _rates(progress: CheckpointProgress, window: int) -> tuple[dict[int, int], float]:
    """Rows per partition, and seconds of batch time, of the last ``window`` committed batches.

    A batch counts when the offsets before it are known (the previous retained batch, or the
    initial offsets for batch 0); its time runs from its start to its commit.
    """
    batches = list(progress.batches)
    rows: dict[int, int] = {}
    seconds = 0.0
    for i in range(max(0, len(batches) - window), len(batches)):
        b = batches[i]
        if i > 0:
            before = batches[i - 1].end_offsets
        elif b.batch_id == 0:
            before = progress.start_offsets
        else:
            continue
        for p, end in b.end_offsets.items():
            rows[p] = rows.get(p, 0) + max(0, end - before.get(p, 0))
        seconds += max(0.0, (b.committed_at - b.started_at).total_seconds())
    return rows, seconds


def stream_status(
    topic: str,
    end_offsets: dict[int, int],
    progress: CheckpointProgress,
    *,
    max_lag: int,
    max_staleness_seconds: float,
    rate_batches: int = 10,
    now: dt.datetime | None = None,
) -> StreamStatus:
    """Combine Kafka's end offsets with the checkpoint's progress.

    Lag per partition = end offset - offset committed in the checkpoint (a partition the stream
    has not committed yet counts from 0). The status has problems when the total lag passes
    ``max_lag``, or when messages are waiting and the last batch is older than
    ``max_staleness_seconds`` (a caught-up idle stream runs no batches and is not stale), or when
    messages are waiting and no batch was ever committed.
    """
    checked = now or dt.datetime.now(dt.UTC)
    last = progress.last
    committed = last.end_offsets if last else {}
    rows, seconds = _rates(progress, rate_batches)
    rate = round(sum(rows.values()) / seconds, 1) if seconds > 0 else None
    parts = []
    for p in sorted(set(end_offsets) | set(committed)):
        end = end_offsets.get(p, 0)
        done = committed.get(p)
        parts.append(
            PartitionStatus(
                p, end, done, max(0, end - (done or 0)), round(rows.get(p, 0) / seconds, 1) if seconds > 0 else None
            )
        )
    status = StreamStatus(
        topic,
        progress.checkpoint,
        checked,
        tuple(parts),
        last.batch_id if last else None,
        last.committed_at if last else None,
        rate,
    )
    problems = []
    lag = status.total_lag
    if lag > max_lag:
        problems.append(f"lag {lag} messages is above the threshold of {max_lag}")
    if lag > 0:
        stale = status.staleness_seconds
        if stale is None:
            problems.append(
                f"{lag} messages wait and the stream never committed a batch (checkpoint {progress.checkpoint})"
            )
        elif stale > max_staleness_seconds:
            problems.append(
                f"{lag} messages wait and the last batch finished {stale:.0f}s ago, "
                f"above the threshold of {max_staleness_seconds:g}s"
            )
    return dataclasses.replace(status, problems=tuple(problems))


def read_stream_status(
    settings: Settings,
    *,
    end_offsets_fn: Callable[[str, str], dict[int, int]] | None = None,
    now: dt.datetime | None = None,
) -> StreamStatus:
    """The stream's status from the configured Kafka cluster and checkpoint."""
    if end_offsets_fn is None:
        from lakehouse.kafka import end_offsets as kafka_end_offsets

        def end_offsets_fn(servers: str, topic: str) -> dict[int, int]:
            # the configured cluster's security settings too (SASL, TLS)
            return kafka_end_offsets(settings.kafka.model_copy(update={"bootstrap_servers": servers}), topic)

    s = settings.streaming
    ends = end_offsets_fn(settings.kafka.bootstrap_servers, settings.kafka.topic)
    progress = read_checkpoint(
        bronze_checkpoint_dir(settings),
        settings.kafka.topic,
        keep=max(s.rate_batches + 1, 2),
        storage_options=objectstore.fsspec_options(settings),
    )
    return stream_status(
        settings.kafka.topic,
        ends,
        progress,
        max_lag=s.max_lag,
        max_staleness_seconds=s.max_staleness_seconds,
        rate_batches=s.rate_batches,
        now=now,
    )
