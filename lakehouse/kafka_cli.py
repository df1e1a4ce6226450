"""`lakehouse produce | stream | stream-status`: sample Kafka traffic, the stream, its health.

Registered on the main ``lakehouse`` parser by :func:`add_commands`.

Examples:
    lakehouse produce --count 100000 --malformed 0.01          # as fast as possible
    lakehouse produce --rate 2000 --seconds 60                 # steady traffic for a minute
    lakehouse stream                                           # catch up (availableNow), then stop
    lakehouse stream --trigger processing-time --max-seconds 120
    lakehouse stream-status                     # lag per partition; exit 3 if unhealthy
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from lakehouse.errors import ExitCode
from lakehouse.settings import Settings

PRODUCE_DESCRIPTION = """\
Send sample events to the events topic (LAKEHOUSE_KAFKA__*), creating the topic when it is
absent. The producer is idempotent; a share of malformed messages exercises the stream's dead
letters. Progress is printed while it runs.

examples:
  lakehouse produce --count 100000 --malformed 0.01    # as fast as possible
  lakehouse produce --rate 2000 --seconds 60           # steady traffic for a minute
"""


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {value!r}") from None
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {value!r}")
    return share


class _Progress:
    """A progress bar on stderr (rich, when stderr is a terminal), else a line every 2 s."""

    def __init__(self, total: int | None, seconds: float | None) -> None:
        self.total, self.seconds = total, seconds
        self._last = 0.0
        self._bar: Any = None
        self._task: Any = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("producing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>9.0f} msg/s"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("produce", total=total, rate=0.0)

    def __call__(self, stats: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=stats.sent, rate=stats.rate)
            return
        now = time.monotonic()
        if now - self._last < 2.0 and stats.sent != self.total:
            return
        self._last = now
        of = f"/{self.total}" if self.total is not None else ""
        pct = f" ({100 * stats.sent / self.total:.0f}%)" if self.total else ""
        print(
            f"  produced {stats.sent}{of}{pct}, {stats.malformed} malformed, "
            f"{stats.rate:,.0f} msg/s, {stats.seconds:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    """Create the topic if needed, then send sample events."""
    from lakehouse.kafka import ensure_topic, produce_events

    servers = args.bootstrap_servers or settings.kafka.bootstrap_servers
    cluster = settings.kafka.model_copy(update={"bootstrap_servers": servers})  # its security too
    topic = args.topic or settings.kafka.topic
    if args.count is None and args.seconds is None:
        print("error: give --count or --seconds (or both)", file=sys.stderr)
        return 2
    if not args.no_create_topic:
        outcome = ensure_topic(cluster, topic, partitions=args.partitions, retention_ms=args.retention_ms)
        print(f"topic {topic} at {servers}: {outcome}", file=sys.stderr)
    progress = _Progress(args.count, args.seconds)
    try:
        stats = produce_events(
            cluster,
            topic,
            count=args.count,
            rate=args.rate,
            seconds=args.seconds,
            malformed_share=args.malformed,
            seed=args.seed,
            id_prefix=args.id_prefix,
            on_progress=progress,
        )
    finally:
        progress.close()
    print(
        f"sent {stats.sent} messages ({stats.malformed} malformed, {stats.bytes / 1e6:.1f} MB) "
        f"to {topic} in {stats.seconds:.1f}s: {stats.rate:,.0f} msg/s, all acknowledged"
    )
    return 0


def cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    """Run the ``streaming`` flow (locally: a bounded run; on Kubernetes: ensure the app)."""
    from flows.streaming import streaming
    from lakehouse.prefect_env import direct_run

    with direct_run():
        out = streaming(trigger=args.trigger, max_seconds=args.max_seconds)
    for key, value in out.items():
        print(f"{key}: {value}")
    return 0


def cmd_stream_status(args: argparse.Namespace, settings: Settings) -> int:
    """Print the stream's lag per partition; exit 3 (STREAM_UNHEALTHY) when a threshold is passed."""
    from lakehouse.streaming import read_stream_status

    status = read_stream_status(settings)
    cols = ("partition", "end_offset", "committed_offset", "lag", "last_batch_time", "rows_per_second")
    print(" ".join(f"{c:>20}" for c in cols))
    for row in status.rows():
        print(" ".join(f"{'' if row[c] is None else row[c]!s:>20}" for c in cols))
    for problem in status.problems:
        print(f"UNHEALTHY: {problem}", file=sys.stderr)
    return ExitCode.OK if status.healthy else ExitCode.STREAM_UNHEALTHY


def add_commands(sub: Any) -> None:
    """Register ``produce``, ``stream`` and ``stream-status`` on the ``lakehouse`` parser."""
    p = sub.add_parser(
        "produce",
        help="send sample events to Kafka (idempotent producer)",
        description=PRODUCE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--count", type=int, help="messages to send")
    p.add_argument("--rate", type=float, help="target messages per second (default: max)")
    p.add_argument("--seconds", type=float, help="stop after this long")
    p.add_argument("--malformed", type=_share, default=0.0, help="share of malformed messages, 0..1 (default 0)")
    p.add_argument("--seed", type=int, help="seed of the event contents")
    p.add_argument("--id-prefix", help="event id prefix (default: random)")
    p.add_argument("--topic", help="topic (default: LAKEHOUSE_KAFKA__TOPIC)")
    p.add_argument("--bootstrap-servers", help="default: LAKEHOUSE_KAFKA__BOOTSTRAP_SERVERS")
    p.add_argument(
        "--partitions", type=int, default=None, help="partitions when creating the topic (default: streaming settings)"
    )
    p.add_argument(
        "--retention-ms",
        type=int,
        default=None,
        help="retention.ms when creating the topic (default: streaming settings)",
    )
    p.add_argument("--no-create-topic", action="store_true", help="fail if the topic is absent")
    p.set_defaults(fn=_with_topic_defaults(cmd_produce))
    s = sub.add_parser("stream", help="run the streaming flow (local: bounded run)")
    s.add_argument(
        "--trigger",
        choices=("available-now", "processing-time"),
        default=None,
        help="local trigger (default: LAKEHOUSE_STREAMING__LOCAL_TRIGGER)",
    )
    s.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="duration of a processing-time run (default: streaming settings)",
    )
    s.set_defaults(fn=cmd_stream)
    m = sub.add_parser("stream-status", help="lag per partition of the stream; exit 3 if unhealthy")
    m.set_defaults(fn=cmd_stream_status)


def _with_topic_defaults(fn: Any) -> Any:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        if args.partitions is None:
            args.partitions = settings.streaming.topic_partitions
        if args.retention_ms is None:
            args.retention_ms = settings.streaming.topic_retention_ms
        return int(fn(args, settings))

    return run
