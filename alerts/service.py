"""The alert service: a consumer group on the trades topic that evaluates the rules on every
trade and publishes docs/interfaces/kafka-messages.md alerts (key = symbol) to the alerts topic.

State and restarts
------------------
Rule state is kept per symbol and checkpointed to a compacted Kafka topic (default
`<alerts topic>.state`, see `alerts/checkpoints.py`): one record per symbol, a manifest per trades
partition. Consumed offsets are committed up to the first trade whose alert is not yet acknowledged
by the broker. Whichever instance is assigned a partition next:

1. restores the newest checkpoint and consumes from its manifest's offset (skipping, per symbol, the
   trades its record already covers); without a checkpoint it re-reads the last `replay_seconds` of
   the partition to rebuild state;
2. replays trades before the committed offset silently (their alerts were published already);
3. publishes alerts from the committed offset on, except those whose `alert_id` is already on
   the alerts topic (published after the last commit, before a crash). The id is a hash of
   (symbol, rule, trades topic, partition, offset), so a replay produces the same ids.

Rules run in event time, so the restored cooldowns hold across restarts. Event time is bounded: a
trade dated more than `max_ahead_seconds` after its Kafka timestamp (which docs/interfaces/kafka-messages.md
allows, up to a day) is left out of the rules — counted in `tickhouse_alerts_future_trades_total` and logged —
so it cannot move their clock into the future; the drain still loads it.

Each trade is evaluated with what its conditions let it update (tickhouse.trade_conditions, the
table the bars use; alerts/rules.py says which rule takes which prints). A trade carrying a code
the table does not list is evaluated as regular and counted in
`tickhouse_alerts_unknown_condition_prints_total`.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

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

from alerts import checkpoints, clients, metrics
from alerts.config import RulesConfig
from alerts.errors import AlertsError
from alerts.rules import Engine, Firing
from tickhouse import kafka
from tickhouse.schemas import Alert, InvalidMessage, now_ms, parse_trade_fields, to_json
from tickhouse.trade_conditions import default_table

log = logging.getLogger("tickhouse.alerts")


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
    # event time may run at most this far ahead of the trade's Kafka timestamp (clock skew)
    max_ahead_seconds: float = 5.0
    # memory bounds: symbols idle this long (event time) are forgotten, and at most this many kept
    evict_idle_seconds: float = 7 * 86_400.0
    max_symbols: int = 50_000
    # checkpoint work between two consumed batches (the rest waits for the next gap)
    checkpoint_slice_seconds: float = 0.001
    evict_every_seconds: float = 30.0
    consumer_config: dict[str, Any] = field(default_factory=dict)
    producer_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stats:
    trades: int = 0
    bad_messages: int = 0
    alerts: int = 0
    replayed_silently: int = 0
    duplicates_suppressed: int = 0
    future_trades: int = 0
    unknown_condition_prints: int = 0  # trades with a condition code the table does not list
    by_rule: dict[str, int] = field(default_factory=dict)


class AlertService:
    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self.engine = Engine(options.rules)
        self.stats = Stats()
        self._stop = threading.Event()
        self._abandon = False  # tests: leave like a crash, without commit or checkpoint
        self._positions: dict[int, int] = {}  # partition -> next offset to consume
        self._committed: dict[int, int] = {}  # partition -> offset last committed
        self._live_from: dict[int, int] = {}  # partition -> first offset whose alerts are published
        self._skip: dict[int, dict[str, int]] = {}  # partition -> symbol -> offset its state covers
        self._inflight: dict[int, dict[int, int]] = {}  # partition -> trade offset -> alerts in flight
        self._resend: list[tuple[bytes, bytes, int, int]] = []  # alerts to produce again
        self._published: set[str] = set()  # ids already on the alerts topic past the commit
        self._error_logged: dict[int, float] = {}
        self._future_logged = 0.0
        self.assigned: set[int] = set()
        self.ready = threading.Event()  # set once partitions are assigned and restored
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._checkpointer: checkpoints.Checkpointer | None = None
        self._gc_timer = metrics.GcTimer()

    # --- public control ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def crash(self) -> None:
        """Stop without committing or checkpointing (what a killed process leaves behind)."""
        self._abandon = True
        self._stop.set()

    # --- main loop -----------------------------------------------------------------------------

    def run(self) -> Stats:
        """Consume until `stop()` (or `max_seconds`); returns the counters."""
        opts = self.options
        kafka.ensure_topics(
            opts.bootstrap_servers,
            {
                opts.state_topic: kafka.TopicSpec(1, kafka.COMPACTED),
                opts.alerts_topic: kafka.TopicSpec(opts.topic_partitions),
            },
        )
        consumer = clients.trades_consumer(
            opts.bootstrap_servers,
            opts.group,
            opts.from_beginning,
            {"on_commit": self._on_commit, **opts.consumer_config},
        )
        producer = clients.alerts_producer(opts.bootstrap_servers, opts.producer_config)
        state_producer = clients.state_producer(opts.bootstrap_servers, opts.producer_config)
        self._consumer, self._producer = consumer, producer
        self._checkpointer = checkpoints.Checkpointer(
            state_producer,
            opts.state_topic,
            opts.group,
            opts.trades_topic,
            self.engine,
            self._positions,
            self._delivered_upto,
            lambda: producer.flush(1.0),
        )
        # start-up objects (modules, the rules) are never garbage: keep them out of every scan
        gc.collect()
        gc.freeze()
        self._gc_timer.install()
        consumer.subscribe(
            [opts.trades_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        deadline = time.monotonic() + opts.max_seconds if opts.max_seconds else None
        batch_rest = opts.batch_size - 1
        poll_timeout = opts.poll_timeout
        checkpointer = self._checkpointer
        slice_seconds = opts.checkpoint_slice_seconds
        next_tick = time.monotonic() + opts.checkpoint_seconds
        next_evict = time.monotonic() + opts.evict_every_seconds
        hurry = False  # checkpoint records left to write right now: do not wait in poll()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                # poll() returns on the first message; consume(timeout=0) then takes what is already
                # fetched. consume() with a timeout would wait for a full batch and add latency.
                first = consumer.poll(0 if hurry else (0.005 if checkpointer.busy else poll_timeout))
                if first is not None:
                    rest = consumer.consume(batch_rest, 0) if batch_rest > 0 else []
                    self._process(first, rest)
                if len(producer):  # alerts on their way: serve their delivery reports
                    producer.poll(0)
                if len(state_producer):
                    state_producer.poll(0)
                if self._resend:
                    self._send_again()
                if now >= next_tick:
                    next_tick = now + opts.checkpoint_seconds
                    # idle symbols now and then; beyond --max-symbols (new symbols keep coming) at once
                    if now >= next_evict or len(self.engine.states) > opts.max_symbols:
                        next_evict = now + opts.evict_every_seconds
                        self._evict()
                    self._tick()
                hurry = checkpointer.busy and checkpointer.work(time.perf_counter() + slice_seconds)
        finally:
            self._shutdown(consumer, producer, state_producer)
        return self.stats

    def _tick(self) -> None:
        """Every `checkpoint_seconds`: commit what is published, start a checkpoint round."""
        assert self._checkpointer is not None
        self._commit(synchronous=False)
        metrics.SYMBOLS.set(len(self.engine.states))
        self._checkpointer.begin(self.assigned)
        for p in [p for p, skip in self._skip.items() if self._positions.get(p, -1) > max(skip.values())]:
            del self._skip[p]

    def _evict(self) -> None:
        engine = self.engine
        if engine.states:
            newest = max(state.clock for state in engine.states.values())
            gone = engine.evict(
                newest - int(self.options.evict_idle_seconds * 1000), self.options.max_symbols
            )
            if gone:
                metrics.EVICTED.inc(gone)
                log.info("forgot %d idle symbols (%d kept)", gone, len(engine.states))
        metrics.SYMBOLS.set(len(engine.states))

    def _shutdown(self, consumer: Consumer, producer: Producer, state_producer: Producer) -> None:
        try:
            if not self._abandon:
                self._finish(set(self.assigned))
            self.assigned.clear()  # the revoke callback during close() has nothing left to do
            consumer.close()
        finally:
            if not self._abandon:
                producer.flush(10)
                state_producer.flush(10)
            self._gc_timer.remove()
            gc.unfreeze()
            self.ready.clear()

    def _process(self, first: Message, rest: list[Message]) -> None:
        started = time.perf_counter()
        now = now_ms()
        ahead = int(self.options.max_ahead_seconds * 1000)
        engine = self.engine
        evaluate = engine.evaluate
        positions = self._positions
        live_from = self._live_from
        skips = self._skip
        parse_fields = parse_trade_fields
        eligibility_of = default_table().eligibility
        bad = 0
        count = 0
        unknown = 0
        for msg in (first, *rest) if rest else (first,):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    self._log_consumer_error(err)
                continue
            partition: int = msg.partition()  # type: ignore[assignment]
            offset: int = msg.offset()  # type: ignore[assignment]
            positions[partition] = offset + 1
            try:
                symbol, price, volume, ts, conditions = parse_fields(msg.value(), now)
            except InvalidMessage as reason:
                bad += 1
                log.debug("skipping bad message %s/%d@%d: %s", msg.topic(), partition, offset, reason)
                continue
            # Event time is bounded by the message's own Kafka timestamp (the wall clock if that is
            # later), so a replay decides the same way. A trade past the bound cannot be placed on
            # the rules' clock (it would move it, up to a day ahead): it is left out of them.
            kafka_ts = msg.timestamp()[1]
            if ts > (kafka_ts if 0 < kafka_ts < now else now) + ahead:
                self._from_the_future(symbol, ts, kafka_ts if 0 < kafka_ts < now else now)
                continue
            if skips and symbol in skips.get(partition, ()) and offset < skips[partition][symbol]:
                continue  # restored: this symbol's state covers the trade already
            count += 1
            eligibility = eligibility_of(conditions)
            if eligibility.unknown_codes:
                unknown += 1
            firings = evaluate(symbol, price, volume, ts, partition, eligibility)
            if firings:
                if offset < live_from.get(partition, 0):
                    self.stats.replayed_silently += len(firings)
                    metrics.SUPPRESSED.labels("replayed").inc(len(firings))
                else:
                    self._publish(firings, msg, partition, offset, (symbol, price, volume, ts), started)
        self.stats.trades += count
        metrics.TRADES_EVALUATED.inc(count)
        if unknown:
            self.stats.unknown_condition_prints += unknown
            metrics.UNKNOWN_CONDITION_PRINTS.inc(unknown)
        if bad:
            self.stats.bad_messages += bad
            metrics.BAD_MESSAGES.inc(bad)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    def _from_the_future(self, symbol: str, ts: int, reference: int) -> None:
        """Count (and now and then log) a trade dated past its Kafka timestamp + max_ahead."""
        self.stats.future_trades += 1
        metrics.FUTURE_TRADES.inc()
        now = time.monotonic()
        if now - self._future_logged >= 60:
            self._future_logged = now
            log.warning(
                "%s: trade dated %.1f s after its Kafka timestamp, more than --max-ahead-seconds %g: "
                "not evaluated by the rules (a producer clock running ahead?; logged once a minute)",
                symbol,
                (ts - reference) / 1000,
                self.options.max_ahead_seconds,
            )

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
        trade: tuple[str, float, float, int],
        received: float,
    ) -> None:
        symbol, price, volume, ts = trade
        topic = self.options.trades_topic
        kafka_ts = msg.timestamp()[1]
        for firing in firings:
            ident = alert_id(firing.symbol, firing.rule, topic, partition, offset)
            if ident in self._published:
                self.stats.duplicates_suppressed += 1
                metrics.SUPPRESSED.labels("already_published").inc()
                continue
            details = dict(firing.details)
            details["trade"] = {
                "symbol": symbol,
                "price": price,
                "volume": volume,
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
                trade_ts=ts,
                detected_ts=detected,
                details=details,
            )
            self._send(firing.symbol.encode(), to_json(alert), partition, offset)
            self.stats.alerts += 1
            self.stats.by_rule[firing.rule] = self.stats.by_rule.get(firing.rule, 0) + 1
            metrics.ALERTS.labels(firing.rule).inc()
            if kafka_ts > 0:
                metrics.LATENCY.observe(max(0, detected - kafka_ts) / 1000.0)
            metrics.PROCESSING.observe(time.perf_counter() - received)
            log.info("alert %s %s %s: %s", alert.alert_id, firing.symbol, firing.rule, firing.message)

    def _send(self, key: bytes, value: bytes, partition: int, offset: int) -> None:
        """Produce one alert; until the broker acknowledges it, the commit stays before its trade."""
        assert self._producer is not None
        inflight = self._inflight.setdefault(partition, {})
        inflight[offset] = inflight.get(offset, 0) + 1
        on_delivery = functools.partial(self._alert_delivered, key, value, partition, offset)
        while True:
            try:
                self._producer.produce(
                    self.options.alerts_topic, key=key, value=value, on_delivery=on_delivery
                )
                return
            except BufferError:  # the queue is full: let it drain
                self._producer.poll(0.05)

    def _alert_delivered(
        self, key: bytes, value: bytes, partition: int, offset: int, err: KafkaError | None, msg: Message
    ) -> None:
        if err is not None:
            metrics.DELIVERY_ERRORS.inc()
            if err.fatal():
                raise KafkaException(err)
            log.error("could not deliver an alert to %s (sending it again): %s", msg.topic(), err)
            self._resend.append((key, value, partition, offset))
            return
        inflight = self._inflight.get(partition)
        if inflight is None:
            return
        left = inflight.get(offset, 0) - 1
        if left > 0:
            inflight[offset] = left
        else:
            inflight.pop(offset, None)

    def _send_again(self) -> None:
        """Produce the alerts whose delivery failed (still in flight: the commit waits for them)."""
        assert self._producer is not None
        resend, self._resend = self._resend, []
        for key, value, partition, offset in resend:
            on_delivery = functools.partial(self._alert_delivered, key, value, partition, offset)
            try:
                self._producer.produce(
                    self.options.alerts_topic, key=key, value=value, on_delivery=on_delivery
                )
            except BufferError:
                self._resend.append((key, value, partition, offset))

    def _delivered_upto(self, partition: int) -> int:
        """Every alert of the partition's trades before this offset is on the alerts topic."""
        position = self._positions.get(partition, 0)
        inflight = self._inflight.get(partition)
        return min(min(inflight), position) if inflight else position

    # --- commits and checkpoints ---------------------------------------------------------------

    def _commit(self, synchronous: bool, partitions: set[int] | None = None) -> None:
        """Commit, per partition, up to the first trade whose alert is not yet acknowledged."""
        if self._abandon:
            return
        consumer = self._consumer
        assert consumer is not None
        offsets = []
        for p in self.assigned if partitions is None else partitions:
            if p not in self._positions:
                continue
            upto = self._delivered_upto(p)
            if upto != self._committed.get(p):
                offsets.append(TopicPartition(self.options.trades_topic, p, upto))
        if not offsets:
            return
        try:
            if synchronous:
                consumer.commit(offsets=offsets, asynchronous=False)
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as err:
            log.warning("offset commit failed: %s", err)
            return
        for tp in offsets:
            self._committed[tp.partition] = tp.offset

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """An asynchronous commit that failed (its group's coordinator moved to another broker, say)
        is made again at the next tick: without this, a partition with no new trades would keep
        its old committed offset until the next trade."""
        for tp in partitions:
            if (err is not None or tp.error is not None) and tp.topic == self.options.trades_topic:
                if self._committed.get(tp.partition) == tp.offset:
                    del self._committed[tp.partition]
                log.warning("offset commit of partition %d failed: %s; retrying", tp.partition,
                            err or tp.error)

    def _finish(self, partitions: set[int]) -> None:
        """Everything of `partitions` durable: alerts, offsets, a checkpoint (revoke, shutdown)."""
        if self._abandon or not partitions:
            return
        assert self._producer is not None and self._checkpointer is not None
        remaining = self._producer.flush(10)
        if remaining:
            log.warning("%d alerts not yet delivered; committing only what is", remaining)
        self._commit(synchronous=True, partitions=partitions)
        self._checkpointer.complete(partitions)

    # --- rebalance -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            self._restore(consumer, partitions)
        except Exception:
            log.exception("restoring state failed; starting these partitions with empty state")
            # whatever the restore had set up for them is partial: forget it, then own the
            # partitions from their committed offsets (their alerts are published, so a trade
            # replayed since the last commit may alert again: at least once on this path), and
            # keep committing them
            numbers = {tp.partition for tp in partitions}
            self._forget(numbers)
            self.assigned |= numbers
            consumer.assign(partitions)
        metrics.PARTITIONS.set(len(self.assigned))
        self.ready.set()

    def _restore(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        opts = self.options
        numbers = {tp.partition for tp in partitions}
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        try:
            found = checkpoints.read(
                opts.bootstrap_servers, opts.state_topic, opts.group, opts.trades_topic, numbers
            )
        except (AlertsError, kafka.TopicReadError) as err:
            log.warning("could not read the checkpoints (%s); rebuilding state from the topic", err)
            found = {}
        now = now_ms()
        assign: list[TopicPartition] = []
        oldest_checkpoint = now
        for tp in partitions:
            p = tp.partition
            done = committed.get(p, -1)
            checkpoint = found.get(p)
            _low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, p), timeout=10)
            # a checkpoint or commit beyond the end of the log belongs to an older incarnation of
            # the topic (deleted and re-created): following it would silence every alert
            if checkpoint is not None and checkpoint.next_offset > high:
                log.warning(
                    "partition %d: ignoring checkpoint at offset %d beyond the log end %d "
                    "(was the topic re-created?)",
                    p,
                    checkpoint.next_offset,
                    high,
                )
                checkpoint = None
            if done > high:
                log.warning("partition %d: ignoring committed offset %d beyond the log end", p, done)
                done = -1
            if checkpoint is not None:
                self.engine.restore(checkpoint.states)
                start = checkpoint.next_offset
                ahead = {s: y for s, y in checkpoint.covers.items() if y > start}
                if ahead:
                    self._skip[p] = ahead
                assert self._checkpointer is not None
                self._checkpointer.restored(p, start)
                live = max(done, start)
                oldest_checkpoint = min(oldest_checkpoint, checkpoint.written_ms)
                how = f"checkpoint at offset {start} ({len(checkpoint.states)} symbols)"
            elif done >= 0:
                since = TopicPartition(tp.topic, p, now - int(opts.replay_seconds * 1000))
                found_offset = consumer.offsets_for_times([since], timeout=10)[0].offset
                start = done if found_offset < 0 else min(found_offset, done)
                live = done
                oldest_checkpoint = min(oldest_checkpoint, now - int(opts.dedupe_lookback_seconds * 1000))
                how = f"no checkpoint; re-reading from offset {start}"
            else:
                start = OFFSET_BEGINNING if opts.from_beginning else OFFSET_END
                live = 0
                how = "no checkpoint, no committed offset; " + (
                    "from the beginning" if opts.from_beginning else "from the end"
                )
                if opts.from_beginning:
                    oldest_checkpoint = min(oldest_checkpoint, now - int(opts.dedupe_lookback_seconds * 1000))
            self._live_from[p] = live
            if done >= 0:
                self._committed[p] = done
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
            log.info("%d alerts already on %s will not be re-sent", len(published), opts.alerts_topic)
        metrics.SYMBOLS.set(len(self.engine.states))
        consumer.assign(assign)

    def _collect_published(self, live_from: dict[int, int], since_ms: int) -> set[str]:
        """Ids of alerts already on the alerts topic that fired at or after `live_from`."""
        ids: set[str] = set()
        opts = self.options
        for _key, value in kafka.read_topic(opts.bootstrap_servers, opts.alerts_topic, since_ms):
            if value is None:
                continue
            try:
                data = json.loads(value)
                trade = data["details"]["trade"]
            except (ValueError, KeyError, TypeError):
                continue
            if trade.get("topic") != opts.trades_topic:
                continue
            partition = trade.get("partition")
            if partition in live_from and trade.get("offset", -1) >= live_from[partition]:
                ids.add(str(data.get("alert_id")))
        return ids

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions} & self.assigned
        if numbers and not self._abandon:
            self._finish(numbers)
        self._forget(numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget({tp.partition for tp in partitions})

    def _forget(self, numbers: set[int]) -> None:
        self.engine.drop(numbers)
        if self._checkpointer is not None:
            self._checkpointer.forget(numbers)
        for p in numbers:
            self._positions.pop(p, None)
            self._committed.pop(p, None)
            self._live_from.pop(p, None)
            self._skip.pop(p, None)
            self._inflight.pop(p, None)
        self.assigned -= numbers
        metrics.PARTITIONS.set(len(self.assigned))
