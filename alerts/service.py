"""The alert service: a consumer group on the trades topic that evaluates the rules on every
trade and publishes CONTRACT §3 alerts (key = symbol) to the alerts topic.

State and restarts
------------------
Rule state is kept per trades partition (the symbols seen on it). Every `checkpoint_seconds`, on
rebalance and at shutdown the service flushes its producer (so every alert so far is on the
alerts topic), commits the consumed offsets and writes one checkpoint per partition (the state
of its symbols and the next offset) to a compacted Kafka topic (default `<alerts topic>.state`,
key `<group>|<trades topic>|<partition>`). Whichever instance is assigned the partition next:

1. restores the newest checkpoint and consumes from its offset; without a checkpoint it re-reads
   the last `replay_seconds` of the partition to rebuild state;
2. replays trades before the committed offset silently (their alerts were published already);
3. publishes alerts from the committed offset on, except those whose `alert_id` is already on
   the alerts topic (published after the last commit, before a crash). The id is a hash of
   (symbol, rule, trades topic, partition, offset), so a replay produces the same ids.

Rules run in event time, so the restored cooldowns hold across restarts.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client import Counter, Histogram

from alerts.config import RulesConfig
from alerts.notifiers import Dispatcher
from alerts.rules import Engine, Firing
from tickhouse.schemas import Alert, InvalidMessage, Trade, now_ms, parse_trade, to_json

log = logging.getLogger("tickhouse.alerts")

TRADES_EVALUATED = Counter(
    "tickhouse_alerts_trades_evaluated_total", "Trades evaluated by the rules (replays included)"
)
ALERTS = Counter("tickhouse_alerts_alerts_total", "Alerts published, by rule", ["rule"])
BAD_MESSAGES = Counter(
    "tickhouse_alerts_bad_messages_total", "Messages on the trades topic that are not valid trades"
)
SUPPRESSED = Counter(
    "tickhouse_alerts_suppressed_total",
    "Alerts not published after a restart: replayed before the committed offset, or already on the topic",
    ["reason"],
)
DELIVERY_ERRORS = Counter(
    "tickhouse_alerts_delivery_errors_total", "Alerts or checkpoints the producer failed to deliver"
)
LATENCY = Histogram(
    "tickhouse_alerts_latency_seconds",
    "From the trade's Kafka timestamp to the alert handed to the producer",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0),
)
BATCH_SECONDS = Histogram(
    "tickhouse_alerts_batch_seconds",
    "Processing time of one consumed batch",
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)

CHECKPOINT_VERSION = 1


def alert_id(symbol: str, rule: str, topic: str, partition: int, offset: int) -> str:
    """Deterministic id from the rule and the triggering trade's coordinates."""
    key = f"{symbol}\x1f{rule}\x1f{topic}\x1f{partition}\x1f{offset}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


@dataclass
class ServiceOptions:
    bootstrap_servers: str
    trades_topic: str
    alerts_topic: str
    state_topic: str
    rules: RulesConfig
    group: str = "tickhouse-alerts"
    from_beginning: bool = False
    max_seconds: float | None = None
    checkpoint_seconds: float = 2.0
    replay_seconds: float = 900.0
    dedupe_lookback_seconds: float = 600.0
    batch_size: int = 1000
    topic_partitions: int = 3  # for the alerts topic, when the service has to create it
    poll_timeout: float = 0.1
    environ: Mapping[str, str] | None = None
    consumer_config: dict[str, Any] = field(default_factory=dict)
    producer_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stats:
    trades: int = 0
    bad_messages: int = 0
    alerts: int = 0
    replayed_silently: int = 0
    duplicates_suppressed: int = 0
    checkpoints: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


class AlertService:
    def __init__(self, options: ServiceOptions, dispatcher: Dispatcher | None = None) -> None:
        self.options = options
        self.engine = Engine(options.rules)
        self.dispatcher = (
            dispatcher
            if dispatcher is not None
            else Dispatcher.from_config(options.rules.notifiers, options.environ)
        )
        self.stats = Stats()
        self._stop = threading.Event()
        self._checkpoint_requested = threading.Event()
        self._abandon = False  # tests: leave like a crash, without commit or checkpoint
        self._positions: dict[int, int] = {}  # partition -> next offset to consume
        self._checkpointed: dict[int, int] = {}  # partition -> offset of its last checkpoint
        self._live_from: dict[int, int] = {}  # partition -> first offset whose alerts are published
        self._published: set[str] = set()  # ids already on the alerts topic past the commit
        self._last_checkpoint = time.monotonic()
        self._error_logged: dict[int, float] = {}
        self.assigned: set[int] = set()
        self.ready = threading.Event()  # set once partitions are assigned and restored
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None

    # --- public control ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def crash(self) -> None:
        """Stop without committing or checkpointing (what a killed process leaves behind)."""
        self._abandon = True
        self._stop.set()

    def request_checkpoint(self) -> None:
        self._checkpoint_requested.set()

    # --- setup -------------------------------------------------------------------------------

    def _kafka_common(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.options.bootstrap_servers}

    def ensure_topics(self) -> None:
        """Create the compacted state topic (and the alerts topic) if missing."""
        admin = AdminClient(self._kafka_common())
        existing = admin.list_topics(timeout=10).topics
        wanted = []
        if self.options.state_topic not in existing:
            wanted.append(
                NewTopic(
                    self.options.state_topic,
                    num_partitions=1,
                    replication_factor=1,
                    config={
                        "cleanup.policy": "compact",
                        "segment.ms": "60000",
                        "min.cleanable.dirty.ratio": "0.1",
                    },
                )
            )
        if self.options.alerts_topic not in existing:
            wanted.append(
                NewTopic(
                    self.options.alerts_topic,
                    num_partitions=self.options.topic_partitions,
                    replication_factor=1,
                )
            )
        for topic, future in admin.create_topics(wanted).items() if wanted else []:
            try:
                future.result()
            except KafkaException as err:
                if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            log.info("created topic %s", topic)

    def _make_clients(self) -> tuple[Consumer, Producer]:
        consumer = Consumer(
            {
                **self._kafka_common(),
                "group.id": self.options.group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest" if self.options.from_beginning else "latest",
                "fetch.wait.max.ms": 10,
                "fetch.min.bytes": 1,
                "client.id": f"tickhouse-alerts-{uuid.uuid4().hex[:8]}",
                # A killed instance keeps its partitions until its session expires: the default
                # 45 s would silence alerts that long. 10 s (heartbeats every 2 s) is the trade-off
                # between a quick hand-over and false expiry on a busy 2-core machine.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
                **self.options.consumer_config,
            }
        )
        producer = Producer(
            {
                **self._kafka_common(),
                "linger.ms": 0,  # alerts are few; send each at once
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": "none",
                **self.options.producer_config,
            }
        )
        return consumer, producer

    # --- main loop -----------------------------------------------------------------------------

    def run(self) -> Stats:
        """Consume until `stop()` (or `max_seconds`); returns the counters."""
        self.ensure_topics()
        consumer, producer = self._make_clients()
        gc.freeze()  # keep the start-up objects out of the collector's scans on the hot path
        self._consumer, self._producer = consumer, producer
        self.dispatcher.start()
        consumer.subscribe(
            [self.options.trades_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        deadline = time.monotonic() + self.options.max_seconds if self.options.max_seconds else None
        batch_rest = self.options.batch_size - 1
        poll_timeout = self.options.poll_timeout
        try:
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                # poll() returns on the first message; consume(timeout=0) then takes what is already
                # fetched. consume() with a timeout would wait for a full batch and add latency.
                first = consumer.poll(poll_timeout)
                if first is not None:
                    rest = consumer.consume(batch_rest, 0) if batch_rest > 0 else []
                    self._process(first, rest)
                producer.poll(0)
                self._maybe_checkpoint(producer)
        finally:
            self._shutdown(consumer, producer)
        return self.stats

    def _maybe_checkpoint(self, producer: Producer) -> None:
        """Checkpoint when due, but without blocking the hot path on in-flight alerts: while the
        producer still has messages out, try again on the next loop (for at most a second)."""
        now = time.monotonic()
        overdue = now - self._last_checkpoint - self.options.checkpoint_seconds
        if overdue < 0 and not self._checkpoint_requested.is_set():
            return
        if len(producer) and overdue < 1.0:
            return
        self._checkpoint_requested.clear()
        self._commit_and_checkpoint(set(self.assigned), synchronous=False)

    def _shutdown(self, consumer: Consumer, producer: Producer) -> None:
        try:
            if not self._abandon:
                self._commit_and_checkpoint(set(self.assigned), synchronous=True)
            self.assigned.clear()  # the revoke callback during close() has nothing left to do
            consumer.close()
        finally:
            if not self._abandon:
                producer.flush(10)
            self.dispatcher.stop()
            self.ready.clear()

    def _process(self, first: Message, rest: list[Message]) -> None:
        started = time.perf_counter()
        now = now_ms()
        engine = self.engine
        positions = self._positions
        live_from = self._live_from
        bad = 0
        count = 0
        for msg in (first, *rest) if rest else (first,):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    self._log_consumer_error(err)
                continue
            partition = cast(int, msg.partition())
            offset = cast(int, msg.offset())
            positions[partition] = offset + 1
            try:
                trade = parse_trade(msg.value(), now)
            except InvalidMessage as reason:
                bad += 1
                log.debug("skipping bad message %s/%d@%d: %s", msg.topic(), partition, offset, reason)
                continue
            count += 1
            firings = engine.evaluate(
                trade.symbol, float(trade.price), float(trade.volume), trade.ts, partition
            )
            if firings:
                if offset < live_from.get(partition, 0):
                    self.stats.replayed_silently += len(firings)
                    SUPPRESSED.labels("replayed").inc(len(firings))
                else:
                    self._publish(firings, msg, partition, offset, trade)
        self.stats.trades += count
        TRADES_EVALUATED.inc(count)
        if bad:
            self.stats.bad_messages += bad
            BAD_MESSAGES.inc(bad)
        BATCH_SECONDS.observe(time.perf_counter() - started)

    def _log_consumer_error(self, err: KafkaError) -> None:
        """Transient consumer errors (e.g. the topic does not exist yet), once a minute each."""
        now = time.monotonic()
        code = err.code()
        if now - self._error_logged.get(code, -1e9) >= 60:
            self._error_logged[code] = now
            log.warning("consumer: %s (retrying; logged once a minute)", err.str())

    def _publish(
        self,
        firings: list[Firing] | tuple[Firing, ...],
        msg: Message,
        partition: int,
        offset: int,
        trade: Trade,
    ) -> None:
        assert self._producer is not None
        topic = self.options.trades_topic
        kafka_ts = msg.timestamp()[1]
        for firing in firings:
            ident = alert_id(firing.symbol, firing.rule, topic, partition, offset)
            if ident in self._published:
                self.stats.duplicates_suppressed += 1
                SUPPRESSED.labels("already_published").inc()
                continue
            details = dict(firing.details)
            details["trade"] = {
                "symbol": trade.symbol,
                "price": trade.price,
                "volume": trade.volume,
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "kafka_ts": kafka_ts,
            }
            detected = now_ms()
            alert = Alert(
                alert_id=ident,
                symbol=firing.symbol,
                rule=firing.rule,
                severity=firing.severity,
                message=firing.message,
                trade_ts=trade.ts,
                detected_ts=detected,
                details=details,
            )
            self._producer.produce(
                self.options.alerts_topic,
                key=firing.symbol.encode(),
                value=to_json(alert),
                on_delivery=self._on_delivery,
            )
            self.stats.alerts += 1
            self.stats.by_rule[firing.rule] = self.stats.by_rule.get(firing.rule, 0) + 1
            ALERTS.labels(firing.rule).inc()
            if kafka_ts > 0:
                LATENCY.observe(max(0, detected - kafka_ts) / 1000.0)
            log.info("alert %s %s %s: %s", alert.alert_id, firing.symbol, firing.rule, firing.message)
            self.dispatcher.submit(alert)
        self._producer.poll(0)

    @staticmethod
    def _on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            DELIVERY_ERRORS.inc()
            log.error("could not deliver to %s: %s", msg.topic(), err)

    # --- checkpoints -------------------------------------------------------------------------

    def _checkpoint_key(self, partition: int) -> str:
        return f"{self.options.group}|{self.options.trades_topic}|{partition}"

    def _commit_and_checkpoint(self, partitions: set[int], synchronous: bool) -> None:
        """Flush alerts, commit offsets, write checkpoints — in that order, so a checkpoint's
        offset never runs ahead of the alerts on the topic."""
        self._last_checkpoint = time.monotonic()
        if self._abandon or not partitions:
            return
        consumer, producer = self._consumer, self._producer
        assert consumer is not None and producer is not None
        changed = sorted(
            p for p in partitions if p in self._positions and self._positions[p] != self._checkpointed.get(p)
        )
        if not changed:
            return  # nothing consumed since the last checkpoint: it still holds
        remaining = producer.flush(10)
        if remaining:
            log.warning("%d alerts not yet delivered; not committing this round", remaining)
            return
        offsets = [TopicPartition(self.options.trades_topic, p, self._positions[p]) for p in changed]
        try:
            if synchronous:
                consumer.commit(offsets=offsets, asynchronous=False)
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as err:
            log.warning("offset commit failed: %s", err)
        written = now_ms()
        for p in changed:
            payload = {
                "version": CHECKPOINT_VERSION,
                "group": self.options.group,
                "topic": self.options.trades_topic,
                "partition": p,
                "next_offset": self._positions[p],
                "written_ms": written,
                "symbols": self.engine.snapshot({p}),
            }
            producer.produce(
                self.options.state_topic,
                key=self._checkpoint_key(p).encode(),
                value=json.dumps(payload, separators=(",", ":")).encode(),
                on_delivery=self._on_delivery,
            )
            self._checkpointed[p] = self._positions[p]
            self.stats.checkpoints += 1
        if synchronous:
            producer.flush(10)
        else:
            producer.poll(0)

    def _read_checkpoints(self, partitions: set[int]) -> dict[int, dict[str, Any]]:
        wanted = {self._checkpoint_key(p).encode(): p for p in partitions}
        found: dict[int, dict[str, Any]] = {}
        for key, value in self._read_topic(self.options.state_topic, None):
            partition = wanted.get(key or b"")
            if partition is None:
                continue
            if value is None:
                found.pop(partition, None)
                continue
            try:
                data = json.loads(value)
            except ValueError:
                log.warning("ignoring unreadable checkpoint for partition %d", partition)
                continue
            if data.get("version") == CHECKPOINT_VERSION:
                found[partition] = data
        return found

    def _read_topic(self, topic: str, since_ms: int | None) -> list[tuple[bytes | None, bytes | None]]:
        """(key, value) of every message of `topic` (from `since_ms`, by timestamp) up to its
        current end."""
        reader = Consumer(
            {
                **self._kafka_common(),
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
            deadline = time.monotonic() + 30
            while len(done) < len(start) and time.monotonic() < deadline:
                for msg in reader.consume(500, 0.2):
                    if msg.error() is not None:
                        continue
                    out.append((msg.key(), msg.value()))
                    partition = cast(int, msg.partition())
                    if cast(int, msg.offset()) + 1 >= ends[partition]:
                        done.add(partition)
            return out
        finally:
            reader.close()

    def _collect_published(self, live_from: dict[int, int], since_ms: int) -> set[str]:
        """Ids of alerts already on the alerts topic that fired at or after `live_from`."""
        ids: set[str] = set()
        for _key, value in self._read_topic(self.options.alerts_topic, since_ms):
            if value is None:
                continue
            try:
                data = json.loads(value)
                trade = data["details"]["trade"]
            except (ValueError, KeyError, TypeError):
                continue
            if trade.get("topic") != self.options.trades_topic:
                continue
            partition = trade.get("partition")
            if partition in live_from and trade.get("offset", -1) >= live_from[partition]:
                ids.add(str(data.get("alert_id")))
        return ids

    # --- rebalance -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self._restore(consumer, partitions)
        except Exception:
            log.exception("restoring state failed; starting these partitions with empty state")
            consumer.assign(partitions)
        self.ready.set()

    def _restore(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions}
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        checkpoints = self._read_checkpoints(numbers)
        now = now_ms()
        assign: list[TopicPartition] = []
        oldest_checkpoint = now
        for tp in partitions:
            p = tp.partition
            done = committed.get(p, -1)
            checkpoint = checkpoints.get(p)
            _low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, p), timeout=10)
            # a checkpoint or commit beyond the end of the log belongs to an older incarnation of
            # the topic (deleted and re-created): following it would silence every alert
            if checkpoint is not None and int(checkpoint["next_offset"]) > high:
                log.warning(
                    "partition %d: ignoring checkpoint at offset %s beyond the log end %d "
                    "(was the topic re-created?)",
                    p,
                    checkpoint["next_offset"],
                    high,
                )
                checkpoint = None
            if done > high:
                log.warning("partition %d: ignoring committed offset %d beyond the log end", p, done)
                done = -1
            if checkpoint is not None:
                self.engine.restore(checkpoint["symbols"])
                start = int(checkpoint["next_offset"])
                live = max(done, start)
                oldest_checkpoint = min(oldest_checkpoint, int(checkpoint["written_ms"]))
                how = f"checkpoint at offset {start}"
            elif done >= 0:
                since = TopicPartition(tp.topic, p, now - int(self.options.replay_seconds * 1000))
                found = consumer.offsets_for_times([since], timeout=10)[0].offset
                start = done if found < 0 else min(found, done)
                live = done
                oldest_checkpoint = min(
                    oldest_checkpoint, now - int(self.options.dedupe_lookback_seconds * 1000)
                )
                how = f"no checkpoint; re-reading from offset {start}"
            else:
                start = OFFSET_BEGINNING if self.options.from_beginning else OFFSET_END
                live = 0
                how = "no checkpoint, no committed offset; " + (
                    "from the beginning" if self.options.from_beginning else "from the end"
                )
                if self.options.from_beginning:
                    oldest_checkpoint = min(
                        oldest_checkpoint, now - int(self.options.dedupe_lookback_seconds * 1000)
                    )
            self._live_from[p] = live
            self.assigned.add(p)
            assign.append(TopicPartition(tp.topic, p, start))
            log.info(
                "partition %d: %s, alerts published from offset %s",
                p,
                how,
                live if live else "start",
            )
        # alerts published after the last commit, before a crash: found by id, not sent again
        margin = 60_000
        published = self._collect_published(
            {p: self._live_from[p] for p in numbers}, oldest_checkpoint - margin
        )
        self._published |= published
        if published:
            log.info(
                "%d alerts already on %s will not be re-sent",
                len(published),
                self.options.alerts_topic,
            )
        consumer.assign(assign)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions} & self.assigned
        if numbers and not self._abandon:
            self._commit_and_checkpoint(numbers, synchronous=True)
        self._forget(numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget({tp.partition for tp in partitions})

    def _forget(self, numbers: set[int]) -> None:
        self.engine.drop(numbers)
        for p in numbers:
            self._positions.pop(p, None)
            self._checkpointed.pop(p, None)
            self._live_from.pop(p, None)
        self.assigned -= numbers
