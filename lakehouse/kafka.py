"""Kafka admin and producer of the streaming ingest (confluent-kafka).

- :func:`ensure_topic` creates the events topic with its partitions and retention (idempotent).
- :func:`produce_events` sends sample events in the reference design's shape (event_id, user_id,
  event_type, amount, event_time) through an idempotent producer (``enable.idempotence``,
  ``acks=all``), keyed by event id, at a target rate or count, optionally with a share of
  malformed messages. It reports exactly what it sent, so tests compare against that.
- :func:`end_offsets` reads each partition's end offset (the monitor's lag = end offset minus the
  offset committed in the stream's checkpoint).

No pyspark, no prefect: flows, tasks, the CLI and tests call these.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # public, not re-exported
    AdminClient,
    NewTopic,
    OffsetSpec,
)

from lakehouse.errors import ConfigError, LakehouseError
from lakehouse.settings import KafkaSettings

EVENT_TYPES = ("page_view", "add_to_cart", "checkout", "purchase")
EVENT_TYPE_WEIGHTS = (60, 20, 10, 10)
MALFORMED_KINDS = (
    "truncated",
    "not-json",
    "json-array",
    "missing-field",
    "bad-amount",
    "bad-timestamp",
    "unknown-type",
    "negative-amount",
    "nested-user",
)
"""How :func:`produce_events` spoils a message: cut JSON, plain text, a JSON array, a required
field missing, a non-numeric amount, an unreadable event_time (structural failures), an
event_type outside the contract's allowed values, a negative amount, a user_id given as a JSON
array instead of a string (contract rules)."""

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 10,
    "batch.size": 1_000_000,
    "compression.type": "none",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "message.timeout.ms": 60_000,
    # Only failures come back as delivery reports: success is "flush() left nothing behind".
    "delivery.report.only.error": True,
}
"""Producer configuration: idempotent (no duplicates from retries, per-partition order kept),
acknowledged by all in-sync replicas, batched for throughput."""


class KafkaClientError(LakehouseError):
    """A Kafka admin request or a produce failed."""


class KafkaTopicError(KafkaClientError):
    """The topic does not exist or does not have the expected shape."""


Cluster = str | KafkaSettings
"""Where a client connects: the bootstrap servers of a PLAINTEXT cluster, or the Kafka settings
(servers, security protocol, SASL credentials and CA file)."""


def security_config(settings: KafkaSettings) -> dict[str, Any]:
    """The librdkafka security properties of ``settings`` (protocol, SASL, trusted CA).

    Raises:
        ConfigError: ``ssl_ca_location`` names no readable file.
    """
    conf: dict[str, Any] = {"security.protocol": settings.security_protocol}
    if settings.uses_sasl:
        assert settings.sasl_password is not None  # the settings validate it
        conf.update(
            {
                "sasl.mechanism": settings.sasl_mechanism,
                "sasl.username": settings.sasl_username,
                "sasl.password": settings.sasl_password.get_secret_value(),
            }
        )
    if settings.uses_tls and settings.ssl_ca_location:
        if not Path(settings.ssl_ca_location).is_file():
            raise ConfigError(
                f"kafka.ssl_ca_location {settings.ssl_ca_location} is not a file "
                "(LAKEHOUSE_KAFKA__SSL_CA_LOCATION: the PEM file of the brokers' CA)"
            )
        conf["ssl.ca.location"] = settings.ssl_ca_location
    return conf


def client_config(cluster: Cluster, **overrides: Any) -> dict[str, Any]:
    """A confluent-kafka configuration for ``cluster`` with ``overrides``."""
    if isinstance(cluster, str):
        return {"bootstrap.servers": cluster, **overrides}
    return {"bootstrap.servers": cluster.bootstrap_servers, **security_config(cluster), **overrides}


def settings_config(settings: KafkaSettings) -> dict[str, Any]:
    """The client configuration of the configured cluster."""
    return client_config(settings)


def _servers(cluster: Cluster) -> str:
    return cluster if isinstance(cluster, str) else cluster.bootstrap_servers


class _Errors:
    """What librdkafka reports in the background, as ``error_cb`` and as ``logger`` (instead of
    its own lines on standard error): an admin request that times out because the credentials,
    the certificate or the protocol were refused says why only there."""

    def __init__(self) -> None:
        self.seen: collections.deque[tuple[int | None, str]] = collections.deque(maxlen=50)
        """The latest reports: error code (None for a log line) and text."""

    def __call__(self, err: KafkaError) -> None:
        self.seen.append((err.code(), err.str()))

    def log(self, level: int, fmt: str, *args: Any) -> None:
        """The ``logger`` interface: keep the line."""
        self.seen.append((None, fmt % args if args else fmt))

    def diagnose(self, cluster: Cluster, *, refusals_only: bool = False) -> str | None:
        """What to fix, naming the setting, when a refusal was seen; None otherwise.

        A refused login or certificate is final; a connection closed at the first request
        (another protocol?) is a guess, made only when ``refusals_only`` is false."""
        servers = _servers(cluster)
        for code, text in self.seen:
            if code == KafkaError._AUTHENTICATION or "SASL authentication" in text:
                who = (
                    "" if isinstance(cluster, str) else f" of user {cluster.sasl_username!r} ({cluster.sasl_mechanism})"
                )
                return (
                    f"Kafka at {servers} refused the SASL credentials{who}: check "
                    f"LAKEHOUSE_KAFKA__SASL_USERNAME and LAKEHOUSE_KAFKA__SASL_PASSWORD ({text})"
                )
        for code, text in self.seen:
            if code == KafkaError._SSL or "certificate verify failed" in text:
                ca = (
                    "the system trust store"
                    if isinstance(cluster, str) or not cluster.ssl_ca_location
                    else cluster.ssl_ca_location
                )
                return (
                    f"the TLS certificate of Kafka at {servers} is not trusted by {ca}, or the "
                    f"TLS handshake failed: check LAKEHOUSE_KAFKA__SSL_CA_LOCATION and "
                    f"LAKEHOUSE_KAFKA__SECURITY_PROTOCOL ({text})"
                )
        if refusals_only:
            return None
        for _, text in self.seen:
            if "APIVERSION_QUERY" in text:  # closed at the first request: another protocol
                protocol = "PLAINTEXT" if isinstance(cluster, str) else cluster.security_protocol
                return (
                    f"Kafka at {servers} closed the connection at the first request: the "
                    f"listener may expect another security protocol than {protocol} (check "
                    f"LAKEHOUSE_KAFKA__SECURITY_PROTOCOL and LAKEHOUSE_KAFKA__BOOTSTRAP_SERVERS; "
                    f"{text})"
                )
        return None


def _admin(cluster: Cluster) -> tuple[AdminClient, _Errors]:
    errors = _Errors()
    return AdminClient(client_config(cluster, error_cb=errors, logger=errors)), errors


def _metadata(cluster: Cluster, admin: AdminClient, errors: _Errors, timeout: float, topic: str | None = None) -> Any:
    """``admin.list_topics`` within ``timeout``, in short requests so that a refused login or
    certificate ends it at once (it would only time out), naming the setting to fix."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return admin.list_topics(topic=topic, timeout=max(min(left, 1.0), 0.1))
        except KafkaException as exc:
            admin.poll(0)  # serves the error and log callbacks queued meanwhile
            why = errors.diagnose(cluster, refusals_only=left > 1.0)
            if why is not None:
                raise KafkaClientError(why) from exc
            if left <= 1.0:
                raise KafkaClientError(
                    f"Kafka at {_servers(cluster)} did not answer within {timeout:g}s (check "
                    f"kafka.bootstrap_servers, LAKEHOUSE_KAFKA__BOOTSTRAP_SERVERS): {exc}"
                ) from exc


# -- admin -------------------------------------------------------------------------------------


def ensure_topic(
    cluster: Cluster,
    topic: str,
    *,
    partitions: int,
    retention_ms: int,
    timeout: float = 15.0,
) -> Literal["created", "exists"]:
    """Create ``topic`` with ``partitions`` and ``retention.ms`` unless it exists.

    Replication factor 1 on a single broker; the cluster's default (-1) elsewhere. Waits until
    every partition has a leader.

    Args:
        cluster: The bootstrap servers of a PLAINTEXT cluster, or the Kafka settings.
        topic: The topic.
        partitions: Partitions it must have at least.
        retention_ms: Its ``retention.ms`` when created.
        timeout: Seconds each request may take.

    Returns:
        ``created`` or ``exists``.

    Raises:
        KafkaClientError: The cluster did not answer within ``timeout``, or refused the
            credentials or the TLS handshake (the message names the setting to fix).
        KafkaTopicError: The topic exists with fewer partitions than asked for, or could not be
            created in time.
    """
    admin, errors = _admin(cluster)  # the admin must outlive its futures
    md = _metadata(cluster, admin, errors, timeout)
    replication = 1 if len(md.brokers) == 1 else -1
    new = NewTopic(
        topic,
        num_partitions=partitions,
        replication_factor=replication,
        config={"retention.ms": str(retention_ms), "cleanup.policy": "delete"},
    )
    futures = admin.create_topics([new], operation_timeout=timeout, request_timeout=timeout)
    outcome: Literal["created", "exists"] = "created"
    try:
        futures[topic].result(timeout=timeout)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise KafkaTopicError(f"could not create topic {topic!r}: {exc}") from exc
        outcome = "exists"
    deadline = time.monotonic() + timeout
    while True:
        wait = max(deadline - time.monotonic(), 0.5)
        t = admin.list_topics(topic=topic, timeout=wait).topics.get(topic)
        if t is not None and t.error is None and t.partitions and all(p.leader >= 0 for p in t.partitions.values()):
            if len(t.partitions) < partitions:
                raise KafkaTopicError(
                    f"topic {topic!r} exists with {len(t.partitions)} partitions, expected at least {partitions}"
                )
            return outcome
        if time.monotonic() > deadline:
            raise KafkaTopicError(f"topic {topic!r} has no leader for every partition after {timeout:.0f} s")
        time.sleep(0.1)


def end_offsets(cluster: Cluster, topic: str, *, timeout: float = 15.0) -> dict[int, int]:
    """Each partition's end offset (the offset the next message will get).

    Raises:
        KafkaTopicError: The topic does not exist.
        KafkaClientError: The broker did not answer in time, or refused the credentials or
            the TLS handshake.
    """
    admin, errors = _admin(cluster)
    t = _metadata(cluster, admin, errors, timeout, topic).topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise KafkaTopicError(
            f"topic {topic!r} does not exist at {_servers(cluster)}"
            + (f" ({t.error})" if t is not None and t.error is not None else "")
        )
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    request = {TopicPartition(topic, p): latest for p in sorted(t.partitions)}
    futures = admin.list_offsets(request, request_timeout=timeout)
    out: dict[int, int] = {}
    for tp, fut in futures.items():
        try:
            out[tp.partition] = int(fut.result(timeout=timeout).offset)
        except KafkaException as exc:
            raise KafkaClientError(f"end offset of {topic}[{tp.partition}]: {exc}") from exc
    return dict(sorted(out.items()))


# -- events ------------------------------------------------------------------------------------


def format_time(t: dt.datetime) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-01-01T00:00:00.000Z`` (the datagen format)."""
    if t.tzinfo is not None:
        t = t.astimezone(dt.UTC).replace(tzinfo=None)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def make_event(event_id: str, rng: random.Random, event_time: dt.datetime | str) -> dict[str, Any]:
    """One event in the reference design's shape; purchases carry an amount, others null.

    Args:
        event_id: The event id (also the message key).
        rng: Source of the event's contents.
        event_time: The event time, or its text already formatted by :func:`format_time`.
    """
    etype = rng.choices(EVENT_TYPES, weights=EVENT_TYPE_WEIGHTS)[0]
    amount = round(rng.randrange(100, 50_000) / 100, 2) if etype == "purchase" else None
    return {
        "event_id": event_id,
        "user_id": f"u{rng.randrange(1, 10_000):07d}",
        "event_type": etype,
        "amount": amount,
        "event_time": event_time if isinstance(event_time, str) else format_time(event_time),
    }


def spoil(event: dict[str, Any], kind: str) -> bytes:
    """The malformed message of ``kind`` (one of :data:`MALFORMED_KINDS`) made from ``event``."""
    good = json.dumps(event)
    if kind == "truncated":
        return good[: max(1, len(good) // 2)].encode()
    if kind == "not-json":
        return f"event {event['event_id']} could not be serialised".encode()
    if kind == "json-array":
        return json.dumps([event["event_id"], event["event_type"]]).encode()
    if kind == "missing-field":
        return json.dumps({k: v for k, v in event.items() if k != "event_time"}).encode()
    if kind == "bad-amount":
        return json.dumps({**event, "amount": "twelve euros"}).encode()
    if kind == "bad-timestamp":
        return json.dumps({**event, "event_time": "yesterday at noon"}).encode()
    if kind == "unknown-type":
        return json.dumps({**event, "event_type": "teleport"}).encode()
    if kind == "negative-amount":
        return json.dumps({**event, "event_type": "purchase", "amount": -5.0}).encode()
    if kind == "nested-user":
        return json.dumps({**event, "user_id": ["u0000001", "u0000002"]}).encode()
    raise ConfigError(f"unknown malformed kind {kind!r}; valid kinds: {', '.join(MALFORMED_KINDS)}")


@dataclass(frozen=True)
class SentMessage:
    """One message :func:`produce_events` sent: its key, and the event or how it was spoiled."""

    key: str
    event: dict[str, Any]
    malformed: str | None = None

    @property
    def valid(self) -> bool:
        """True when the message is a well-formed event."""
        return self.malformed is None


@dataclass
class ProduceStats:
    """Progress and outcome of :func:`produce_events`."""

    target: int | None
    sent: int = 0
    malformed: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    first_error: str | None = None
    messages: list[SentMessage] | None = field(default=None, repr=False)

    @property
    def rate(self) -> float:
        """Messages per second so far."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def delivered(self) -> int:
        """Messages acknowledged by the broker (valid once :func:`produce_events` returned)."""
        return self.sent - self.failed


ProgressFn = Callable[[ProduceStats], None]


def produce_events(
    cluster: Cluster,
    topic: str,
    *,
    count: int | None = None,
    rate: float | None = None,
    seconds: float | None = None,
    malformed_share: float = 0.0,
    seed: int | None = None,
    id_prefix: str | None = None,
    event_time: Callable[[int], dt.datetime] | None = None,
    record: bool = False,
    stop: threading.Event | None = None,
    on_progress: ProgressFn | None = None,
    progress_interval: float = 0.5,
    config: dict[str, Any] | None = None,
    flush_timeout: float = 120.0,
) -> ProduceStats:
    """Send sample events to ``topic`` through an idempotent producer, keyed by event id.

    Stops after ``count`` messages, after ``seconds``, or when ``stop`` is set, whichever comes
    first (at least one of them is required). Then waits until every message is acknowledged.

    Args:
        cluster: The bootstrap servers of a PLAINTEXT cluster, or the Kafka settings.
        topic: Destination topic (must exist).
        count: Messages to send.
        rate: Target messages per second (None: as fast as possible).
        seconds: Stop sending after this long.
        malformed_share: Share of messages (0..1) sent malformed, cycling through
            :data:`MALFORMED_KINDS`; still keyed by their event id.
        seed: Seed of the event contents (None: random).
        id_prefix: Prefix of the event ids (default: a random one, so runs never collide);
            ids are ``<prefix>-<sequence:09d>``.
        event_time: Event time of message ``i`` (default: the current UTC time).
        record: Keep every :class:`SentMessage` in ``stats.messages`` (tests; memory grows).
        stop: Set it to stop sending early (from another thread).
        on_progress: Called every ``progress_interval`` seconds and once at the end.
        progress_interval: Seconds between progress calls.
        config: Producer configuration overriding :data:`PRODUCER_DEFAULTS`.
        flush_timeout: Seconds to wait for the last acknowledgements.

    Returns:
        What was sent (and, with ``record``, every message).

    Raises:
        ConfigError: Nothing bounds the run, or a parameter is out of range.
        KafkaClientError: A message was not acknowledged.
    """
    if count is None and seconds is None and stop is None:
        raise ConfigError("produce_events needs count, seconds or stop: it would never end")
    if count is not None and count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    if rate is not None and rate <= 0:
        raise ConfigError(f"rate must be > 0 messages/s, got {rate}")
    if not 0.0 <= malformed_share <= 1.0:
        raise ConfigError(f"malformed_share must be within 0..1, got {malformed_share}")
    rng = random.Random(seed)
    prefix = id_prefix or uuid.uuid4().hex[:8]
    stats = ProduceStats(target=count, messages=[] if record else None)
    errors = _Errors()
    conf = client_config(cluster, **{**PRODUCER_DEFAULTS, "error_cb": errors, "logger": errors, **(config or {})})
    lock = threading.Lock()

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            with lock:
                stats.failed += 1
                stats.first_error = stats.first_error or str(err)

    conf["on_delivery"] = on_delivery
    producer = Producer(conf)
    started = time.monotonic()
    last_progress = started
    chunk = 1 if rate is not None and rate < 200 else 200
    malformed_every = 1.0 / malformed_share if malformed_share > 0 else 0.0
    next_malformed = malformed_every / 2 if malformed_every else float("inf")
    seq = 0
    now_text = ""
    try:
        while count is None or seq < count:
            elapsed = time.monotonic() - started
            if (seconds is not None and elapsed >= seconds) or (stop is not None and stop.is_set()):
                break
            if rate is not None and seq >= rate * elapsed:
                time.sleep(min(0.005, max(0.0, (seq - rate * elapsed) / rate)))
                continue
            if event_time is None:
                now_text = format_time(dt.datetime.now(dt.UTC))
            n = chunk if count is None else min(chunk, count - seq)
            if rate is not None:  # never run ahead of the target rate by more than a message
                n = max(1, min(n, int(rate * elapsed) - seq + 1))
            for _ in range(n):
                key = f"{prefix}-{seq:09d}"
                ev = make_event(key, rng, event_time(seq) if event_time else now_text)
                kind: str | None = None
                if seq + 1 >= next_malformed:
                    kind = MALFORMED_KINDS[stats.malformed % len(MALFORMED_KINDS)]
                    next_malformed += malformed_every
                    value = spoil(ev, kind)
                    stats.malformed += 1
                else:
                    value = json.dumps(ev, separators=(",", ":")).encode()
                _send(producer, topic, key.encode(), value)
                stats.sent += 1
                stats.bytes += len(value)
                if stats.messages is not None:
                    stats.messages.append(SentMessage(key, ev, kind))
                seq += 1
            producer.poll(0)
            now = time.monotonic()
            if on_progress is not None and now - last_progress >= progress_interval:
                stats.seconds = now - started
                on_progress(stats)
                last_progress = now
    finally:
        left = producer.flush(flush_timeout)
        stats.seconds = time.monotonic() - started
    if on_progress is not None:
        on_progress(stats)
    why = errors.diagnose(cluster)
    if left:
        raise KafkaClientError(
            f"{left} message(s) to {topic!r} not acknowledged after {flush_timeout:.0f} s" + (f": {why}" if why else "")
        )
    if stats.failed:
        raise KafkaClientError(
            f"{stats.failed} of {stats.sent} message(s) to {topic!r} failed: {why or stats.first_error}"
        )
    return stats


def _send(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    """Produce one message, waiting for room when the local queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.05)
