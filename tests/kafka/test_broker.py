"""The development/test Kafka broker really works: topics, idempotent produce, group consume."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # public, not re-exported
    ConfigResource,
    ResourceType,
)

from lakehouse.testing.kafka_broker import KafkaBroker

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]

KEYS = 30
PER_KEY = 20
TOTAL = KEYS * PER_KEY


def test_broker_runs_single_node_kraft_with_dev_settings(kafka_broker: KafkaBroker) -> None:
    assert kafka_broker.bootstrap_servers == f"127.0.0.1:{kafka_broker.port}"
    md = kafka_broker.admin().list_topics(timeout=10)
    assert list(md.brokers) == [1]
    assert md.controller_id == 1
    assert md.brokers[1].host == "127.0.0.1"
    assert md.brokers[1].port == kafka_broker.port

    resource = ConfigResource(ResourceType.BROKER, "1")
    admin = kafka_broker.admin()  # kept alive until the future is done
    futures = admin.describe_configs([resource], request_timeout=10)
    configs = {k: v.value for k, v in futures[resource].result(timeout=10).items()}
    assert configs["process.roles"] == "broker,controller"
    assert configs["auto.create.topics.enable"] == "false"
    assert configs["num.partitions"] == "3"
    assert configs["offsets.topic.replication.factor"] == "1"
    assert configs["transaction.state.log.replication.factor"] == "1"
    assert configs["transaction.state.log.min.isr"] == "1"
    assert configs["group.initial.rebalance.delay.ms"] == "0"


def test_idempotent_keyed_produce_and_consume_exact(
    kafka_broker: KafkaBroker, kafka_topic_factory: Callable[..., str]
) -> None:
    topic = kafka_topic_factory("orders", partitions=3)
    md = kafka_broker.admin().list_topics(topic=topic, timeout=10)
    assert sorted(md.topics[topic].partitions) == [0, 1, 2]

    # Produce: idempotent, acks=all; every delivery report must be a success.
    producer = Producer(
        kafka_broker.client_config(
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 30000,
            }
        )
    )
    delivered: list[tuple[str, int, int]] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            key, partition, offset = msg.key(), msg.partition(), msg.offset()
            assert isinstance(key, bytes) and partition is not None and offset is not None
            delivered.append((key.decode(), partition, offset))

    for seq in range(PER_KEY):
        for k in range(KEYS):
            producer.produce(topic, key=f"key-{k:02d}", value=f"{seq}".encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still in the producer queue after 30 s"
    assert errors == []
    assert len(delivered) == TOTAL

    # The same key always lands on the same partition, and the keys spread over all three.
    partition_of: dict[str, set[int]] = defaultdict(set)
    for key, partition, _ in delivered:
        partition_of[key].add(partition)
    assert all(len(ps) == 1 for ps in partition_of.values())
    assert {next(iter(ps)) for ps in partition_of.values()} == {0, 1, 2}

    # The log holds exactly what was produced: no duplicates from retries.
    probe = Consumer(kafka_broker.client_config(**{"group.id": f"probe-{uuid.uuid4().hex}"}))
    try:
        ends = [probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(3)]
    finally:
        probe.close()
    assert sum(high - low for low, high in ends) == TOTAL

    # Consume back through a consumer group, bounded in time.
    consumer = Consumer(
        kafka_broker.client_config(
            **{
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
    )
    got: list[tuple[str, int, int]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(got) < TOTAL and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=1.0):
                assert msg.error() is None, msg.error()
                raw_key, value, part = msg.key(), msg.value(), msg.partition()
                assert isinstance(raw_key, bytes) and isinstance(value, bytes)
                assert part is not None
                got.append((raw_key.decode(), int(value), part))
        # Nothing more arrives after the expected count.
        extra = consumer.consume(num_messages=10, timeout=1.0)
        if got:
            consumer.commit(asynchronous=False)  # offsets land in __consumer_offsets (RF 1)
    finally:
        consumer.close()
    assert extra == []
    assert len(got) == TOTAL
    counts = Counter(key for key, _, _ in got)
    assert counts == {f"key-{k:02d}": PER_KEY for k in range(KEYS)}
    # Per key (one partition) the order is the produce order.
    by_key: dict[str, list[int]] = defaultdict(list)
    for key, seq, partition in got:
        assert partition in partition_of[key]
        by_key[key].append(seq)
    assert all(seqs == list(range(PER_KEY)) for seqs in by_key.values())


def test_topics_are_not_auto_created(kafka_broker: KafkaBroker) -> None:
    name = f"absent-{uuid.uuid4().hex[:12]}"
    # A producer asks the broker to create topics it writes to; the broker must refuse.
    producer = Producer(
        kafka_broker.client_config(**{"message.timeout.ms": 5000, "topic.metadata.propagation.max.ms": 1000})
    )
    errors: list[KafkaError | None] = []
    producer.produce(name, b"x", on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(20) == 0
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT)
    md = kafka_broker.admin().list_topics(timeout=10)
    assert name not in md.topics
