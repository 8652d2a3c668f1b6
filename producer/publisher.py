"""Publishing to Kafka without losing anything: idempotent producer, bounded queue, on-disk spool.

Messages go to librdkafka's in-memory queue, which is bounded (`max_queue_messages`) and retried by
librdkafka itself while the broker is away (idempotence keeps retries exactly-once and in order).
When that queue stays full without any delivery progress for `stall_seconds`, the broker is taken
to be unreachable and every further message is appended to the on-disk spool, in order. Once the
queue drains again the spool is replayed, oldest first, before new messages are accepted directly.
A spooled message leaves the spool file only once the broker has acknowledged it: the spool is
sent in chunks of `SPOOL_CHUNK`, and the spool's confirmed offset moves past a chunk (fsync'd) only
when nothing is left in librdkafka's queue, so a SIGKILL while the spool drains loses nothing (it
resends at most the chunk in flight). At shutdown whatever the broker did not acknowledge within
the flush timeout is purged from the queue and written to the front of the spool, so the next run
sends it first.

Messages on the trades topic (`trades_topic`) are stamped with the producer's identity
(producer/identity.py) before they are first handed over, so a resend carries the same identity.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from producer.errors import ProducerError
from producer.identity import ProducerIdentity, identity_path, identity_tail, stamp
from producer.metrics import ProducerMetrics, ProducerStats
from producer.spool import Record, Spool
from tickhouse import kafka

log = logging.getLogger(__name__)

_PURGED = frozenset({KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
# Kafka refused this client (logins and ACLs): resending cannot help until someone grants
# the rights, so the messages are kept in the spool and the publisher stops and says why.
_REFUSED = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
    }
)
# Errors caused by the message itself: resending cannot help, so these are logged, not spooled.
_CONTENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)
_POLL_EVERY = 512  # serve delivery reports once per this many produce() calls
# The spool is sent in chunks; each is confirmed (every message acknowledged) before the spool's
# confirmed offset moves past it, so a kill resends at most one chunk.
SPOOL_CHUNK = 2_000
_CONFIRM_WAIT_S = 0.2


class PublisherError(ProducerError, RuntimeError):
    """The Kafka producer hit a fatal error; the process must stop."""


def producer_config(
    bootstrap_servers: str,
    *,
    max_queue_messages: int = 100_000,
    max_queue_kbytes: int = 262_144,
    linger_ms: int = 5,
    compression: str = "lz4",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The producer settings Tickhouse relies on (ordering, no loss, no duplicates)."""
    if not 0 <= linger_ms <= 5:
        raise ValueError(f"linger_ms={linger_ms}: must be between 0 and 5")
    if compression not in {"lz4", "zstd"}:
        raise ValueError(f"compression={compression!r}: use lz4 or zstd")
    return kafka.producer_config(
        bootstrap_servers,
        "tickhouse-producer",
        **{
            "compression.type": compression,
            "linger.ms": linger_ms,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": max_queue_messages,
            "queue.buffering.max.kbytes": max_queue_kbytes,
            # 0 = no local timeout: while the broker is away librdkafka keeps retrying in order,
            # and the spool takes over once its queue is full. Nothing "times out" into the void.
            "message.timeout.ms": 0,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 2_000,
            **(extra or {}),
        },
    )


class Publisher:
    """Single-threaded publisher: call `publish` and `service` from the same thread.

    Delivery reports: librdkafka is asked for failure reports only
    (`delivery.report.only.error`), because a Python callback per acknowledged message costs
    about a third of the throughput. Every failure is reported and handled (spooled to be sent
    again, or logged when the message itself is at fault); a message that leaves librdkafka's
    queue without a failure report was acknowledged by the broker (acks=all). So
    acknowledged = handed to librdkafka - still in its queue - failed. The produce latency
    histogram samples that: the time at which every 512th message was handed over, observed when
    the acknowledged count passes it.

    With `trades_topic`, every message published to it gets the producer's identity
    (`producer_id`, `producer_seq`; `self.identity`, kept beside the spool) appended to its JSON
    object before it is first handed over or spooled.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        spool_path: Path,
        stats: ProducerStats | None = None,
        metrics: ProducerMetrics | None = None,
        max_queue_messages: int = 100_000,
        stall_seconds: float = 2.0,
        linger_ms: int = 5,
        compression: str = "lz4",
        extra_config: dict[str, Any] | None = None,
        trades_topic: str | None = None,
    ) -> None:
        self.stats = stats if stats is not None else ProducerStats()
        self._latency = metrics.produce_latency if metrics is not None else None
        self._max_queue = max_queue_messages
        self._stall_seconds = stall_seconds
        self._producer = Producer(
            producer_config(
                bootstrap_servers,
                max_queue_messages=max_queue_messages,
                linger_ms=linger_ms,
                compression=compression,
                extra={
                    "error_cb": self._on_error,
                    "on_delivery": self._on_delivery,
                    "delivery.report.only.error": True,
                    **(extra_config or {}),
                },
            )
        )
        self._produce = self._producer.produce
        self._spool = Spool(spool_path)
        # created after the spool: the spool's lock guards the identity file too
        self._trades_topic = trades_topic
        self.identity = ProducerIdentity(identity_path(spool_path)) if trades_topic is not None else None
        self._spooling = self._spool.depth > 0
        if self._spooling:
            log.info("spool %s holds %d messages from an earlier run; sending them first",
                     spool_path, self._spool.depth)
        self.stats.spool_depth = self._spool.depth
        self._closing = False
        self._rescued: list[Record] = []
        self._unhanded: list[Record] = []  # read from the spool, not yet accepted by librdkafka
        self._fatal: KafkaError | None = None
        self._refused: tuple[str, KafkaError] | None = None
        self._since_poll = 0
        self._handed = 0  # messages given to librdkafka (published directly or from the spool)
        self._failed = 0  # failure reports received
        self._acked = 0
        self._checkpoints: deque[tuple[int, float]] = deque(maxlen=4096)
        self._last_progress = time.monotonic()

    # --- hot path ---------------------------------------------------------------------------

    def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Queue one message (key = symbol). Never blocks for long, never drops it."""
        identity = self.identity
        if identity is not None and topic == self._trades_topic:
            value = stamp(value, identity_tail(identity.producer_id, identity.take(1)))
        if self._spooling:
            self._spool.append(topic, key, value)
            self.stats.spooled += 1
            self.stats.spool_depth = self._spool.depth
        else:
            try:
                self._produce(topic, value, key)
            except BufferError:
                self._queue_full(topic, key, value)
            else:
                self._handed += 1
        self.stats.published += 1
        self._since_poll += 1
        if self._since_poll >= _POLL_EVERY:
            self.service(0)

    def publish_batch(self, topic: str, batch: Sequence[tuple[int, bytes, bytes]]) -> None:
        """`publish` for each (ts, key, value) of `batch`, in order, in one tight loop."""
        if self._spooling:
            for _ts, key, value in batch:
                self.publish(topic, key, value)
            return
        produce = self._produce
        poll = self._producer.poll
        handed = 0
        identity = self.identity if topic == self._trades_topic else None
        if identity is not None:
            first_seq = identity.take(len(batch))
            id_prefix = b',"producer_id":"%s","producer_seq":' % identity.producer_id.encode("ascii")
        for index, (_ts, key, value) in enumerate(batch):
            if identity is not None and value.endswith(b"}"):
                value = value[:-1] + id_prefix + b"%d}" % (first_seq + index)
            try:
                produce(topic, value, key)
            except BufferError:
                self._handed += handed
                self.stats.published += handed + 1
                handed = 0
                self._queue_full(topic, key, value)
                if self._spooling:  # the broker is away: the rest goes to the spool, in order
                    for _ts2, key2, value2 in batch[index + 1 :]:
                        self.publish(topic, key2, value2)
                    return
                continue
            handed += 1
            if not index & 511:
                poll(0)
        self._handed += handed
        self.stats.published += handed
        self.service(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:  # only with delivery.report.only.error overridden
            return
        self._failed += 1
        record: Record = (msg.topic() or "", msg.key(), msg.value() or b"")
        if err.code() in _PURGED:
            self._rescued.append(record)
            return
        self.stats.delivery_errors += 1
        if err.fatal():
            self._fatal = err
        if err.code() in _REFUSED:
            self._refused = (record[0], err)
            self._rescued.append(record)
        elif err.code() in _CONTENT_ERRORS:
            log.error("delivery failed permanently (%s) for %s key=%r value=%r", err, record[0],
                      record[1], record[2][:200])
        else:
            # Keep it: sent again from the spool (its order against messages produced after it
            # is not guaranteed, but it is not lost).
            log.warning("delivery failed (%s) for %s key=%r; kept in the spool", err, record[0],
                        record[1])
            self._rescued.append(record)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
            log.error("Kafka producer fatal error: %s", err)
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("Kafka broker unreachable (%s); queueing, then spooling to %s",
                        err, self._spool.path)
        else:
            log.debug("Kafka client error: %s", err)

    def _account(self) -> bool:
        """Update the acknowledged count and latency samples; True if it moved."""
        now = time.monotonic()
        queued = len(self._producer)
        acked = max(self._handed - queued - self._failed, self._acked)
        checkpoints = self._checkpoints
        if not checkpoints or checkpoints[-1][0] != self._handed:
            checkpoints.append((self._handed, now))
        progressed = acked != self._acked
        if progressed:
            self._acked = acked
            self.stats.delivered = acked
            self._last_progress = now
            while checkpoints and checkpoints[0][0] <= acked:
                _count, handed_at = checkpoints.popleft()
                if self._latency is not None and _count > 0:
                    self._latency.observe(now - handed_at)
        self.stats.queue_depth = queued
        return progressed

    def _queue_full(self, topic: str, key: bytes, value: bytes) -> None:
        """The in-memory queue is full: wait for deliveries, or spool if the broker is stalled."""
        while True:
            self._producer.poll(0.05)
            self._account()
            try:
                self._produce(topic, value, key)
            except BufferError:
                pass
            else:
                self._handed += 1
                return
            if time.monotonic() - self._last_progress >= self._stall_seconds:
                log.warning("Kafka queue full and no acknowledgement for %.1fs: spooling to %s",
                            self._stall_seconds, self._spool.path)
                self._spooling = True
                self._spool.append(topic, key, value)
                self.stats.spooled += 1
                self.stats.spool_depth = self._spool.depth
                return

    # --- housekeeping -----------------------------------------------------------------------

    def service(self, timeout: float = 0.0) -> None:
        """Serve failure reports, account acknowledgements, and move spooled messages back."""
        self._since_poll = 0
        self._producer.poll(timeout)
        self._account()
        if self._fatal is not None:
            raise PublisherError(f"Kafka producer fatal error: {self._fatal}")
        if self._rescued and not self._closing:
            self.stats.spooled += len(self._rescued)
            self._spool.append_many(self._rescued)
            self._rescued.clear()
            self._spooling = True
        if self._refused is not None:
            topic, err = self._refused
            raise PublisherError(
                f"Kafka refused to take messages for {topic} ({err}): this process's Kafka login "
                "(KAFKA_USERNAME) may not write there; grant it the ACLs (docs/operations.md: Kafka "
                f"principals and ACLs). The messages are kept in the spool {self._spool.path}"
            )
        if self._spooling:
            self._drain_spool()
        self.stats.spool_depth = self._spool.depth

    def _drain_spool(self) -> None:
        """Send the spool in chunks; each chunk is confirmed before the next is read."""
        while True:
            if self._unhanded and not self._hand_unhanded():
                return
            if self._spool.uncommitted and not self._confirm_chunk():
                return
            if self._spool.depth == 0:
                break
            room = min(self._max_queue // 2 - len(self._producer), SPOOL_CHUNK)
            if room <= 0:
                return
            self._unhanded = self._spool.read(room)
        self._spooling = False
        log.info("spool drained; publishing directly again")

    def _hand_unhanded(self) -> bool:
        for index, (topic, key, value) in enumerate(self._unhanded):
            try:
                self._produce(topic, value, key)
            except BufferError:
                # rare, since the room was checked; the rest stays in memory (and in the file)
                self._unhanded = self._unhanded[index:]
                return False
            self._handed += 1
            self.stats.unspooled += 1
        self._unhanded = []
        return True

    def _confirm_chunk(self) -> bool:
        """True once every message handed to librdkafka is acknowledged (or failed and back in the
        spool): then the spool's confirmed offset moves past the chunk, on disk."""
        wait = _CONFIRM_WAIT_S if time.monotonic() - self._last_progress < self._stall_seconds else 0.0
        if self._producer.flush(wait) > 0:
            self._account()
            return False
        self._account()
        if self._rescued:
            # failed ones go back to the end of the spool; commit() syncs them before the offset
            self.stats.spooled += len(self._rescued)
            self._spool.append_many(self._rescued)
            self._rescued.clear()
        if self._fatal is not None:
            return False
        self._spool.commit()
        return True

    def flush(self, timeout: float = 30.0) -> int:
        """Wait up to `timeout` s for everything queued (and spooled) to be acknowledged."""
        deadline = time.monotonic() + timeout
        while True:
            self.service(0)
            remaining = (len(self._producer) + self._spool.depth + len(self._rescued)
                         + len(self._unhanded) + int(self._spool.uncommitted))
            if remaining == 0 or time.monotonic() >= deadline:
                return remaining
            self._producer.flush(min(0.05, max(deadline - time.monotonic(), 0)))

    def close(self, timeout: float = 10.0) -> int:
        """Flush, then keep whatever was not acknowledged in the spool. Returns how many."""
        try:
            self.flush(timeout)
        except PublisherError:
            log.exception("flushing at shutdown failed")
        self._closing = True
        if len(self._producer) > 0:
            self._producer.purge(in_queue=True, in_flight=True, blocking=True)
            self._producer.poll(0)
            self._producer.flush(0)
        self._account()
        rescued, unhanded = self._rescued, self._unhanded
        self._rescued, self._unhanded = [], []
        # what was read from the spool and acknowledged is dropped; what was purged is in `rescued`
        leftover = rescued + unhanded + self._spool.unread()
        self._spool.rewrite(leftover)
        self._spool.close()
        self.stats.spool_depth = self._spool.depth
        self.stats.queue_depth = 0
        if leftover:
            log.warning("%d messages not acknowledged by Kafka kept in %s; they are sent first "
                        "on the next start", len(leftover), self._spool.path)
        return len(leftover)

    @property
    def refused(self) -> bool:
        """Whether Kafka refused this client (authentication or ACLs): a failure, not an outage."""
        return self._refused is not None

    @property
    def spooling(self) -> bool:
        return self._spooling

    def in_flight(self) -> int:
        return len(self._producer)


def prepare_topics(bootstrap_servers: str, topics: list[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created.

    An unreachable broker is not an error here: the publisher queues and spools until it is back.
    """
    specs = {topic: kafka.TopicSpec(partitions) for topic in dict.fromkeys(topics)}
    try:
        created = kafka.ensure_topics(bootstrap_servers, specs, timeout=5)
    except kafka.KafkaTopicError as err:
        log.warning("%s; publishing anyway (queued, then spooled, until the broker has them)", err)
        return []
    for topic in created:
        log.info("created Kafka topic %s (%d partitions)", topic, partitions)
    return created
