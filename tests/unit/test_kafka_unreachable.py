"""A Kafka cluster that does not answer: the error names the address and the setting to fix."""

from __future__ import annotations

import socket
import time

import pytest

from lakehouse.kafka import KafkaClientError, ensure_topic


def test_ensure_topic_names_the_unreachable_bootstrap_servers() -> None:
    with socket.socket() as s:  # a port on loopback nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(KafkaClientError) as err:
        ensure_topic(address, "events", partitions=3, retention_ms=60_000, timeout=3)
    assert time.monotonic() - started < 20
    assert address in str(err.value) and "LAKEHOUSE_KAFKA__BOOTSTRAP_SERVERS" in str(err.value)
