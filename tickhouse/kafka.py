"""Kafka plumbing for every service: client configurations, the topics, watermarks and lag.

Every client Tickhouse makes starts from the configurations here (bootstrap servers, a client id,
no auto-commit for consumers, idempotent `acks=all` producers); a service adds what its job needs on
top (the producer's batching, the drain's large fetches, the alert service's low latency), so a
setting means the same everywhere and is written once. Topics are created by `ensure_topics` only,
whoever needs them (the local stack, the producer, the alert service).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic  # type: ignore[attr-defined]

from tickhouse.config import kafka_client_settings
from tickhouse.errors import TickhouseError

# Every producer of ours: idempotent and acknowledged by every in-sync replica, so retries neither
# reorder nor duplicate a message, and an acknowledged message is not lost.
RELIABLE = {"enable.idempotence": True, "acks": "all"}
# Small requests must not wait for the previous one's TCP ACK (Nagle + delayed ACK = up to 40 ms).
LOW_LATENCY = {"socket.nagle.disable": True}
# librdkafka's own log lines: warnings and worse (a broker that is down is reported by our code)
QUIET = {"log_level": 4}
# A compacted topic keeps the newest record per key (the alert service's checkpoints).
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.ms": "60000",
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": "3600000",
}


class KafkaTopicError(TickhouseError):
    """A topic could not be created, grown or read; the message names the topic and the broker."""


class TopicReadError(KafkaTopicError):
    """A topic could not be read to its end in time (the broker is slow or unreachable)."""


def client_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """The base of every client configuration: the brokers and this process's Kafka identity
    (security protocol, SASL mechanism, username and password; a local-stack login connects at
    the broker's login listener: `config.kafka_client_settings`), so no caller repeats them;
    `overrides` are librdkafka settings and win (a test's other principal)."""
    config = {"bootstrap.servers": bootstrap_servers, **kafka_client_settings(bootstrap_servers), **overrides}
    # an override without a login (PLAINTEXT) keeps the address it was given: the login listener
    # takes logins only
    if config.get("security.protocol", "PLAINTEXT") == "PLAINTEXT" and "bootstrap.servers" not in overrides:
        config["bootstrap.servers"] = bootstrap_servers
    return config


def producer_config(bootstrap_servers: str, client_id: str, **overrides: Any) -> dict[str, Any]:
    """An idempotent, acks=all producer's configuration; `overrides` are librdkafka settings."""
    return client_config(bootstrap_servers, **{"client.id": client_id, **RELIABLE, **overrides})


def consumer_config(bootstrap_servers: str, group: str, **overrides: Any) -> dict[str, Any]:
    """A consumer that commits only when told to (the services decide when an offset is done)."""
    return client_config(
        bootstrap_servers, **{"group.id": group, "enable.auto.commit": False, **overrides}
    )


def producer(bootstrap_servers: str, client_id: str, **overrides: Any) -> Producer:
    return Producer(producer_config(bootstrap_servers, client_id, **overrides))


def consumer(bootstrap_servers: str, group: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(bootstrap_servers, group, **overrides))


def admin(bootstrap_servers: str, **overrides: Any) -> AdminClient:
    return AdminClient(client_config(bootstrap_servers, **{**QUIET, **overrides}))


def probe_group() -> str:
    """A consumer group of its own for a client that only reads metadata or watermarks."""
    return f"tickhouse-probe-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """How a topic is created: its partitions, copies (-1: the cluster's default.replication.factor)
    and topic-level settings (e.g. COMPACTED)."""

    partitions: int = 1
    config: Mapping[str, str] = field(default_factory=dict)
    replication: int = -1


def broker_answers(bootstrap_servers: str, timeout: float = 2.0) -> bool:
    """Whether a broker answers a metadata request within `timeout` seconds."""
    try:
        return bool(admin(bootstrap_servers).list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


def ensure_topics(
    bootstrap_servers: str,
    topics: Mapping[str, TopicSpec],
    *,
    grow: bool = False,
    timeout: float = 10.0,
) -> list[str]:
    """Create the topics that do not exist yet (with the replication of their spec); returns the
    ones created.

    With `grow`, a topic with fewer partitions than its spec gets more (never fewer: Kafka cannot
    shrink a topic). Raises KafkaTopicError naming the topic when the broker refuses or does not
    answer; a topic someone else created meanwhile is fine.
    """
    client = admin(bootstrap_servers)
    try:
        existing = client.list_topics(timeout=timeout).topics
    except KafkaException as err:
        raise KafkaTopicError(
            f"cannot list the topics on {bootstrap_servers} ({err}); is the broker running?"
        ) from err
    missing = [
        NewTopic(
            name,
            num_partitions=spec.partitions,
            replication_factor=spec.replication,
            config=dict(spec.config),
        )
        for name, spec in topics.items()
        if name not in existing
    ]
    created: list[str] = []
    if missing:
        for name, future in client.create_topics(missing, request_timeout=timeout).items():
            try:
                future.result(timeout)
                created.append(name)
            except KafkaException as err:
                if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaTopicError(f"could not create topic {name}: {err}") from err
    more = [
        NewPartitions(name, spec.partitions)
        for name, spec in topics.items()
        if grow and name in existing and len(existing[name].partitions) < spec.partitions
    ]
    if more:
        for name, future in client.create_partitions(more, request_timeout=timeout).items():
            try:
                future.result(timeout)
            except KafkaException as err:
                raise KafkaTopicError(f"could not add partitions to {name}: {err}") from err
    return created


def partition_counts(bootstrap_servers: str, topics: Iterable[str], timeout: float = 5.0) -> dict[str, int]:
    """Partitions per topic (0 for a topic that does not exist)."""
    existing = admin(bootstrap_servers).list_topics(timeout=timeout).topics
    return {t: len(existing[t].partitions) if t in existing else 0 for t in topics}


def watermarks(
    bootstrap_servers: str, topic: str, timeout: float = 10.0
) -> dict[int, tuple[int, int]]:
    """(low, high) offsets per partition of `topic`: the first offset the broker holds and one past
    the last. Raises KafkaTopicError when the topic does not exist."""
    reader = consumer(bootstrap_servers, probe_group(), **QUIET)
    try:
        info = reader.list_topics(topic, timeout=timeout).topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise KafkaTopicError(f"topic {topic!r} does not exist on {bootstrap_servers}")
        marks: dict[int, tuple[int, int]] = {}
        for partition in sorted(info.partitions):
            low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            marks[partition] = (int(low), int(high))
        return marks
    finally:
        reader.close()


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far a consumer group is behind the end of one partition."""

    topic: str
    partition: int
    end_offset: int
    committed: int | None  # None: the group never committed on this partition

    @property
    def lag(self) -> int:
        return self.end_offset - (self.committed if self.committed is not None else 0)


def group_lag(
    bootstrap_servers: str, group: str, topics: Iterable[str], timeout: float = 5.0
) -> list[PartitionLag]:
    """Per-partition lag of `group`'s committed offsets behind each topic's end (topics that do not
    exist are left out)."""
    reader = consumer(bootstrap_servers, group, log_level=3)
    try:
        metadata = reader.list_topics(timeout=timeout)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in metadata.topics
            for p in sorted(metadata.topics[topic].partitions)
        ]
        committed = {
            (tp.topic, tp.partition): tp.offset for tp in reader.committed(partitions, timeout=timeout)
        }
        out = []
        for tp in partitions:
            _, high = reader.get_watermark_offsets(tp, timeout=timeout)
            offset = committed.get((tp.topic, tp.partition), -1001)
            out.append(PartitionLag(tp.topic, tp.partition, high, offset if offset >= 0 else None))
        return out
    finally:
        reader.close()


def read_topic(
    bootstrap_servers: str, topic: str, since_ms: int | None = None, timeout: float = 60.0
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every message of `topic` (from `since_ms`, by timestamp) up to its current
    end, in order within each partition; [] when the topic does not exist. Raises TopicReadError
    when it cannot get to the end within `timeout` seconds."""
    reader = consumer(bootstrap_servers, probe_group(), **{"enable.partition.eof": False})
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
