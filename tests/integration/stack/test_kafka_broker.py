"""The local Kafka broker is real: messages round-trip, a consumer group commits and resumes."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from ops.stack import kafka_broker
from tickhouse.config import Settings
from tickhouse.kafka import client_config


def _consume(consumer: Consumer, count: int, timeout: float = 30.0) -> list[bytes]:
    import time

    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
            continue
        values.append(msg.value())
    return values


def test_contract_topics_exist_with_configured_partitions(settings: Settings) -> None:
    counts = kafka_broker.topic_partitions(settings)
    assert set(counts) == {"market.trades", "market.quotes", "market.alerts", "market.candles"} or set(
        counts
    ) == set(settings.topics)
    assert all(n >= settings.topic_partitions >= 3 for n in counts.values()), counts


def test_consumer_group_commits_and_resumes(settings: Settings, unique_topic: str) -> None:
    producer = Producer({**client_config(settings.kafka_bootstrap_servers), "enable.idempotence": True})
    sent = [f"message-{i}".encode() for i in range(100)]
    for i, value in enumerate(sent):
        producer.produce(unique_topic, value=value, key=str(i % 7).encode())
    assert producer.flush(30) == 0

    group = f"group-{unique_topic}"
    config = {
        **client_config(settings.kafka_bootstrap_servers),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    first = Consumer(config)
    first.subscribe([unique_topic])
    got_first = _consume(first, 40)
    assert len(got_first) >= 40
    first.commit(asynchronous=False)
    committed = first.committed([TopicPartition(unique_topic, p) for p in range(3)], timeout=10)
    first.close()
    assert sum(tp.offset for tp in committed if tp.offset >= 0) == len(got_first)

    second = Consumer(config)
    second.subscribe([unique_topic])
    got_second = _consume(second, len(sent) - len(got_first))
    second.close()
    # the group resumed exactly where it committed: together, every message once
    assert sorted(got_first + got_second) == sorted(sent)
