"""Evaluation: each consumed batch of trades through the rules, in the place of its partition.

A trade advances its partition's position whatever it holds. A valid one is evaluated with what its
conditions let it update (tickhouse.trade_conditions, the table the bars use; alerts/rules.py says
which rule takes which prints); a trade carrying a code the table does not list is evaluated as
regular and counted in `tickhouse_alerts_unknown_condition_prints_total`. Not evaluated: bad
messages (counted), trades dated past their Kafka timestamp + `max_ahead_seconds` (counted, logged
once a minute: they would move the rules' event-time clock), and trades a restored symbol's state
already covers. Firings on trades before the partition's `live_from` are replayed silently (their
alerts were published before); the others go to the publisher.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException, Message

from alerts import metrics
from alerts.delivery import Publisher
from alerts.metrics import Stats
from alerts.partitions import OwnedPartition
from alerts.rules import Engine
from tickhouse.schemas import InvalidMessage, now_ms, parse_trade_fields
from tickhouse.trade_conditions import default_table

log = logging.getLogger("tickhouse.alerts")


class Evaluator:
    """Runs the rules over the batches of one service instance."""

    def __init__(
        self,
        engine: Engine,
        owned: dict[int, OwnedPartition],
        publisher: Publisher,
        stats: Stats,
        max_ahead_seconds: float,
    ) -> None:
        self.engine = engine
        self.owned = owned  # the partitions' records, kept up to date by their owner
        self.publisher = publisher
        self.stats = stats
        self.max_ahead_seconds = max_ahead_seconds
        self._future_logged = 0.0
        self._error_logged: dict[int, float] = {}  # consumer error code -> when last logged

    def process(self, first: Message, rest: list[Message]) -> None:
        """Evaluate one consumed batch (`first`, then `rest`)."""
        started = time.perf_counter()
        now = now_ms()
        ahead = int(self.max_ahead_seconds * 1000)
        evaluate = self.engine.evaluate
        owned_partitions = self.owned
        publish = self.publisher.publish
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
            try:
                owned = owned_partitions[partition]
            except KeyError:
                continue  # fetched before the partition was revoked: its next owner evaluates it
            owned.next_offset = offset + 1
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
            skip = owned.skip
            if skip and symbol in skip and offset < skip[symbol]:
                continue  # restored: this symbol's state covers the trade already
            count += 1
            eligibility = eligibility_of(conditions)
            if eligibility.unknown_codes:
                unknown += 1
            firings = evaluate(symbol, price, volume, ts, partition, eligibility)
            if firings:
                if offset < owned.live_from:
                    self.stats.replayed_silently += len(firings)
                    metrics.SUPPRESSED.labels("replayed").inc(len(firings))
                else:
                    trade = (symbol, price, volume, ts)
                    publish(firings, msg, partition, offset, owned.inflight, trade, started)
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
                self.max_ahead_seconds,
            )

    def _log_consumer_error(self, err: KafkaError) -> None:
        """Transient consumer errors (e.g. the topic does not exist yet), once a minute each."""
        now = time.monotonic()
        code = err.code()
        if now - self._error_logged.get(code, -1e9) >= 60:
            self._error_logged[code] = now
            log.warning("consumer: %s (retrying; logged once a minute)", err.str())
