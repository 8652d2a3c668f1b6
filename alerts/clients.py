"""Kafka plumbing of the alert service: client configurations, the topics it needs, and reading a
topic up to its current end (checkpoints, alerts already published)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from alerts.errors import TopicReadError

log = logging.getLogger("tickhouse.alerts")

# Small requests must not wait for the previous one's TCP ACK (Nagle + delayed ACK = up to 40 ms).
LOW_LATENCY = {"socket.nagle.disable": True}


def trades_consumer(bootstrap: str, group: str, from_beginning: bool, extra: dict[str, Any]) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            # the broker answers a fetch as soon as one message is there, or after 10 ms
            "fetch.wait.max.ms": 10,
            "fetch.min.bytes": 1,
            "client.id": f"tickhouse-alerts-{uuid.uuid4().hex[:8]}",
            # A killed instance keeps its partitions until its session expires: the default
            # 45 s would silence alerts that long. 10 s (heartbeats every 2 s) is the trade-off
            # between a quick hand-over and false expiry on a busy 2-core machine.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            **LOW_LATENCY,
            **extra,
        }
    )


def alerts_producer(bootstrap: str, extra: dict[str, Any]) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 0,  # alerts are few; send each at once
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "none",
            **LOW_LATENCY,
            **extra,
        }
    )


def state_producer(bootstrap: str, extra: dict[str, Any]) -> Producer:
    """The checkpoint writer's own producer: its batches never queue in front of an alert."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "enable.idempotence": True,  # records of a round stay in order before their manifest
            "acks": "all",
            "compression.type": "lz4",
            **extra,
        }
    )


def ensure_topics(bootstrap: str, compacted: list[str], plain: dict[str, int]) -> None:
    """Create the compacted topics (one partition) and the plain ones (name -> partitions) that
    do not exist yet."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=10).topics
    wanted = [
        NewTopic(
            name,
            num_partitions=1,
            replication_factor=1,
            config={
                "cleanup.policy": "compact",
                "segment.ms": "60000",
                "min.cleanable.dirty.ratio": "0.1",
                "delete.retention.ms": "3600000",
            },
        )
        for name in compacted
        if name not in existing
    ]
    wanted += [
        NewTopic(name, num_partitions=partitions, replication_factor=1)
        for name, partitions in plain.items()
        if name not in existing
    ]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted).items():
        try:
            future.result()
        except KafkaException as err:
            if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        log.info("created topic %s", topic)


def read_topic(
    bootstrap: str, topic: str, since_ms: int | None = None, timeout: float = 60.0
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every message of `topic` (from `since_ms`, by timestamp) up to its current
    end, in order within each partition; TopicReadError when it cannot get there in `timeout`."""
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"tickhouse-alerts-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    try:
        meta = reader.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return []
        start: list[TopicPartition] = []
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            ends[p] = high
            start.append(TopicPartition(topic, p, since_ms if since_ms is not None else low))
        if not start:
            return []
        if since_ms is not None:
            start = reader.offsets_for_times(start, timeout=10)
            start = [tp for tp in start if tp.offset >= 0]  # -1: nothing that recent
            if not start:
                return []
        reader.assign(start)
        done = {tp.partition for tp in start if tp.offset >= ends[tp.partition]}
        out: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        while len(done) < len(start) and time.monotonic() < deadline:
            for msg in reader.consume(5000, 0.2):
                if msg.error() is not None:
                    continue
                out.append((msg.key(), msg.value()))
                partition = cast(int, msg.partition())
                if cast(int, msg.offset()) + 1 >= ends[partition]:
                    done.add(partition)
        if len(done) < len(start):
            raise TopicReadError(f"could not read {topic} to its end within {timeout:.0f} s")
        return out
    finally:
        reader.close()
