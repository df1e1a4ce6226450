"""Events later than the stream's watermark, produced late on purpose, on the real broker and
Spark: bronze keeps every one, the windowed gold does not count them (append mode), and the
late-events table names each closed window they missed with how many events and how much amount,
computed here in plain Python from what was produced."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from lakehouse.backends.local import LocalBackend
from lakehouse.kafka import SentMessage, produce_events
from lakehouse.streaming import streaming_job
from lakehouse.testing.kafka_broker import KafkaBroker
from tests.kafka.streaming_support import (
    BASE,
    EPOCH,
    WINDOW,
    expected_windows,
    gold_rows,
    iso,
    parse_time,
    read_table,
    settings_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.spark, pytest.mark.timeout(900)]


def _windows_of(messages: list[SentMessage]) -> dict[tuple[str, str], tuple[int, Decimal]]:
    """(window start ISO, event_type) -> (events, sum of the known amounts) of ``messages``."""
    groups: dict[tuple[str, str], list[Decimal]] = defaultdict(list)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for m in messages:
        t = parse_time(m.event["event_time"])
        start = EPOCH + ((t - EPOCH) // WINDOW) * WINDOW
        key = (start.strftime("%Y-%m-%dT%H:%M:%S.000Z"), m.event["event_type"])
        counts[key] += 1
        if m.event["amount"] is not None:
            groups[key].append(Decimal(str(m.event["amount"])))
    return {k: (n, sum(groups[k], Decimal("0.00"))) for k, n in counts.items()}


def test_late_events_are_kept_counted_and_their_missed_windows_named(
    spark: SparkSession,
    kafka_broker: KafkaBroker,
    kafka_topic_factory: Callable[..., str],
    lake_root: Path,
) -> None:
    topic = kafka_topic_factory("late", partitions=2)
    settings = settings_for(lake_root, kafka_broker.bootstrap_servers, topic)
    servers = kafka_broker.bootstrap_servers

    def produce(count: int, prefix: str, at: Callable[[int], dt.datetime]) -> list[SentMessage]:
        sent = produce_events(
            servers, topic, count=count, seed=len(prefix), id_prefix=prefix, record=True, event_time=at
        )
        assert sent.messages is not None and sent.sent == count
        return sent.messages

    def run() -> dict[str, dict]:
        result = LocalBackend(settings).run(streaming_job(settings, trigger="available-now"), log=lambda _: None)
        return {m["layer"]: m for m in result.metrics}

    # an hour of events, 6 s apart: the watermark ends at 00:50, windows up to it are written
    on_time = produce(600, "on", lambda i: BASE + dt.timedelta(seconds=6 * i))
    first = run()
    assert first["gold"]["late_events"] == 0 and first["gold"]["windows_missed"] == 0
    gold_before = gold_rows(spark, settings)
    assert gold_before == expected_windows(on_time)

    # now events for windows gold has already written (00:02-00:04, 00:21-00:23), for a window
    # before anything else (23:30 the day before: never written at all), and some on time
    late = produce(25, "late-a", lambda i: BASE + dt.timedelta(minutes=2, seconds=5 * i))
    late += produce(15, "late-b", lambda i: BASE + dt.timedelta(minutes=21, seconds=7 * i))
    late += produce(5, "late-c", lambda i: BASE - dt.timedelta(minutes=30) + dt.timedelta(seconds=i))
    fresh = produce(20, "fresh", lambda i: BASE + dt.timedelta(minutes=60, seconds=3 * i))
    second = run()

    # bronze keeps every event, late or not
    bronze_ids = sorted(r[0] for r in read_table(spark, settings, "bronze", "event_id"))
    assert bronze_ids == sorted(m.event["event_id"] for m in on_time + late + fresh)
    # gold did not count the late ones: it is what the on-time events alone make (the windows
    # written before unchanged, the ones the fresh events closed added)
    gold_after = gold_rows(spark, settings)
    assert gold_after == expected_windows(on_time + fresh)
    assert set(gold_before) < set(gold_after)
    # and the late-events table names exactly what they missed
    want = _windows_of(late)
    emitted = {(r[0], r[2]) for r in gold_before}
    got = read_table(
        spark, settings, "late", iso("window_start"), "event_type", "late_events", "late_amount", "window_emitted"
    )
    assert sorted(got) == sorted((w, t, n, amount, (w, t) in emitted) for (w, t), (n, amount) in want.items())
    assert any(not emitted_ for *_, emitted_ in got)  # the 23:30 window was never written
    assert second["gold"]["late_events"] == len(late) == 45
    assert second["gold"]["windows_missed"] == len(want)
