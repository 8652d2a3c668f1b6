"""The alert service: a consumer group on the trades topic that evaluates the rules on every
trade and publishes docs/interfaces/kafka-messages.md alerts (key = symbol) to the alerts topic.

Its parts, each in its own module; `AlertService` runs the loop and wires them together:

- `partitions.Partitions`: the trades partitions this instance owns, one `OwnedPartition` record
  each (position, committed offset, where publishing starts, restored symbols' skip offsets, alerts
  in flight): assign and restore, commit, forget;
- `evaluation.Evaluator`: each consumed batch through the rules (`rules.Engine`);
- `delivery.Publisher`: the alerts to the alerts topic, tracked until acknowledged; the notifiers
  read that topic on their own (`notify.py`);
- `checkpoints.Checkpointer`: the rule state on the state topic, a slice at a time between batches.

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
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from alerts import checkpoints, clients, metrics
from alerts.config import RulesConfig
from alerts.delivery import Publisher
from alerts.delivery import alert_id as alert_id
from alerts.evaluation import Evaluator
from alerts.metrics import Stats
from alerts.partitions import Partitions, PartitionsConfig
from alerts.rules import Engine
from tickhouse import kafka

log = logging.getLogger("tickhouse.alerts")


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


class AlertService:
    """One instance of the service: the consumer loop over its parts (see the module docstring)."""

    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self.engine = Engine(options.rules)
        self.stats = Stats()
        self.partitions = Partitions(
            PartitionsConfig(
                bootstrap_servers=options.bootstrap_servers,
                trades_topic=options.trades_topic,
                alerts_topic=options.alerts_topic,
                state_topic=options.state_topic,
                group=options.group,
                from_beginning=options.from_beginning,
                replay_seconds=options.replay_seconds,
                dedupe_lookback_seconds=options.dedupe_lookback_seconds,
            ),
            self.engine,
        )
        self.ready = threading.Event()  # set once partitions are assigned and restored
        self.publisher: Publisher | None = None
        self.checkpointer: checkpoints.Checkpointer | None = None
        self._stop = threading.Event()
        self._gc_timer = metrics.GcTimer()

    @property
    def assigned(self) -> set[int]:
        """The trades partitions this instance owns."""
        return set(self.partitions.owned)

    def stop(self) -> None:
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
        partitions = self.partitions
        consumer = clients.trades_consumer(
            opts.bootstrap_servers,
            opts.group,
            opts.from_beginning,
            {"on_commit": partitions.on_commit, **opts.consumer_config},
        )
        producer = clients.alerts_producer(opts.bootstrap_servers, opts.producer_config)
        state_producer = clients.state_producer(opts.bootstrap_servers, opts.producer_config)
        publisher = self.publisher = Publisher(producer, opts.alerts_topic, opts.trades_topic, self.stats)
        checkpointer = self.checkpointer = checkpoints.Checkpointer(
            state_producer,
            opts.state_topic,
            opts.group,
            opts.trades_topic,
            self.engine,
            partitions.position,
            partitions.delivered_upto,
            lambda: producer.flush(1.0),
        )
        partitions.bind(consumer, checkpointer)
        evaluator = Evaluator(self.engine, partitions.owned, publisher, self.stats, opts.max_ahead_seconds)
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
                    evaluator.process(first, rest)
                if len(producer):  # alerts on their way: serve their delivery reports
                    producer.poll(0)
                if len(state_producer):
                    state_producer.poll(0)
                if publisher.has_failed:
                    publisher.send_again()
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
        assert self.checkpointer is not None
        self.partitions.commit(synchronous=False)
        metrics.SYMBOLS.set(len(self.engine.states))
        self.checkpointer.begin(self.assigned)
        self.partitions.prune_skips()

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
            owned = self.assigned
            self._finish(owned)
            self.partitions.forget(owned)  # the revoke callback during close() has nothing left to do
            consumer.close()
        finally:
            producer.flush(10)
            state_producer.flush(10)
            self._gc_timer.remove()
            gc.unfreeze()
            self.ready.clear()

    def _finish(self, partitions: set[int]) -> None:
        """Everything of `partitions` durable: alerts, offsets, a checkpoint (revoke, shutdown)."""
        if not partitions:
            return
        assert self.publisher is not None and self.checkpointer is not None
        remaining = self.publisher.flush(10)
        if remaining:
            log.warning("%d alerts not yet delivered; committing only what is", remaining)
        self.partitions.commit(synchronous=True, partitions=partitions)
        self.checkpointer.complete(partitions)

    # --- rebalance -----------------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self.publisher is not None
        self.publisher.already_published |= self.partitions.assign(consumer, partitions)
        self.ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions}
        self._finish(numbers & self.assigned)
        self.partitions.forget(numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.partitions.forget({tp.partition for tp in partitions})
