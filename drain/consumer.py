"""The Kafka side of the drain: a consumer positioned from the warehouse's offsets.

Partitions are assigned by the drain itself (no group rebalancing): each partition of each topic
starts at the next offset stored in `raw.kafka_offsets`, or at the beginning of the log when the
warehouse has none. Topic metadata is re-read while the drain runs so that partitions added to a
topic are picked up. Kafka's committed offsets of the group are written only after the warehouse
commit, for lag monitoring; they are never read back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from drain.stats import Position
from tickhouse import kafka

log = logging.getLogger(__name__)



def consumer_config(bootstrap_servers: str, group: str) -> dict[str, Any]:
    return kafka.consumer_config(
        bootstrap_servers,
        group,
        **{
            "client.id": f"{group}-drain",
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            # fetch in large chunks: the drain reads backlogs, not single messages
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            "fetch.wait.max.ms": 100,
            "socket.keepalive.enable": True,
        },
    )


class KafkaSource:
    """Consumes the given topics from explicit start offsets; tracks which partitions are drained."""

    def __init__(
        self,
        bootstrap_servers: str,
        group: str,
        topics: Iterable[str],
        start_offsets: Mapping[Position, int],
        consumer: Consumer | None = None,
    ) -> None:
        self.topics = tuple(topics)
        self._start = dict(start_offsets)
        self._consumer = consumer or Consumer(consumer_config(bootstrap_servers, group))
        self.assigned: dict[Position, int] = {}  # position -> offset it started from (or -2)
        self.at_end: set[Position] = set()
        # partitions read up to the high watermark of their first fetch in this run: a steady
        # stream would otherwise never let every partition report end-of-log at the same time
        self.reached: set[Position] = set()
        self.missing_topics: set[str] = set()
        self._last_refresh = 0.0

    def refresh_partitions(self, timeout: float = 10.0) -> list[Position]:
        """Assign partitions not assigned yet (new topics' or added ones); returns them."""
        new: list[TopicPartition] = []
        for topic in self.topics:
            metadata = self._consumer.list_topics(topic, timeout=timeout)
            info = metadata.topics.get(topic)
            if info is None or info.error is not None or not info.partitions:
                if topic not in self.missing_topics:
                    log.warning("topic %s does not exist (yet); nothing to drain from it", topic)
                self.missing_topics.add(topic)
                continue
            self.missing_topics.discard(topic)
            for partition in sorted(info.partitions):
                position = (topic, partition)
                if position in self.assigned:
                    continue
                offset = self._start.get(position, OFFSET_BEGINNING)
                self.assigned[position] = offset
                new.append(TopicPartition(topic, partition, offset))
        if new:
            self._consumer.incremental_assign(new)
            log.info(
                "assigned %s",
                ", ".join(
                    f"{tp.topic}[{tp.partition}]@"
                    f"{tp.offset if tp.offset >= 0 else 'beginning'}"
                    for tp in new
                ),
            )
        self._last_refresh = time.monotonic()
        return [(tp.topic, tp.partition) for tp in new]

    def stop(self, position: Position) -> None:
        """Fetch nothing more from `position` in this run and count it as drained."""
        topic, partition = position
        try:
            self._consumer.pause([TopicPartition(topic, partition)])
        except KafkaException as err:  # its messages are skipped anyway
            log.warning("could not pause %s[%s]: %s", topic, partition, err)
        self.at_end.add(position)

    def refresh_due(self, every: float) -> bool:
        return time.monotonic() - self._last_refresh >= every

    def consume(self, max_messages: int, timeout: float) -> list[Message]:
        return self._consumer.consume(num_messages=max_messages, timeout=timeout)

    def caught_up(self) -> bool:
        """Every assigned partition has reported end-of-log since its last message, or has been
        read up to the end it had when this run first fetched from it."""
        if not self.assigned:
            return False
        if not self.reached:
            return len(self.at_end) >= len(self.assigned)
        return len(self.at_end | self.reached) >= len(self.assigned)

    def end_of_first_fetch(self, topic: str, partition: int) -> int | None:
        """The partition's high watermark as the broker reported it with the last fetch (no round
        trip); called at a partition's first message of a run, that is the end this run drains to."""
        _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                          cached=True)
        return int(high) if high >= 0 else None

    def reach(self, position: Position) -> None:
        """`position` was read up to its end of this run: fetch nothing more from it."""
        topic, partition = position
        try:
            self._consumer.pause([TopicPartition(topic, partition)])
        except KafkaException as err:  # its later messages are loaded with this run's, that is all
            log.warning("could not pause %s[%s]: %s", topic, partition, err)
        self.reached.add(position)

    @staticmethod
    def is_end_of_partition(error: KafkaError) -> bool:
        return error.code() == KafkaError._PARTITION_EOF

    def watermarks(self, timeout: float = 10.0) -> dict[Position, tuple[int, int]]:
        """(low, high) per assigned partition, as of the last fetch when there was one.

        The fetches the drain made already carry the high watermark, so only partitions never
        fetched cost a round trip to the broker (about 100 ms each).
        """
        marks: dict[Position, tuple[int, int]] = {}
        for topic, partition in self.assigned:
            tp = TopicPartition(topic, partition)
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if low < 0 or high < 0:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
            marks[(topic, partition)] = (int(low), int(high))
        return marks

    def commit(self, next_offsets: Mapping[Position, int]) -> None:
        """Record the drained positions in Kafka (monitoring only; failures are logged)."""
        if not next_offsets:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as err:
            log.warning("committing offsets to Kafka (for lag monitoring only) failed: %s", err)

    def close(self) -> None:
        self._consumer.close()


def log_starts(bootstrap_servers: str, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """The first offset the broker holds, per partition of `topic` (its low watermarks)."""
    return {p: low for p, (low, _high) in kafka.watermarks(bootstrap_servers, topic, timeout).items()}
