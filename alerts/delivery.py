"""Publishing alerts: the docs/interfaces/kafka-messages.md alert of each firing, produced to the
alerts topic (key = symbol) and tracked until the broker acknowledges it.

Every alert is counted in its trade's partition's in-flight map (trade offset -> alerts not yet
acknowledged) until its delivery report: the partition's commit and its checkpoints stay before
that trade meanwhile. A failed delivery is produced again. The id of an alert is a hash of the rule
and the trade's coordinates, so a replay fires the same ids, and those already on the topic (found
at a restore, `published_ids`) are not sent twice. Notifiers read the alerts topic on their own
(alerts/notify.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from alerts import metrics
from alerts.metrics import Stats
from alerts.rules import Firing
from tickhouse import kafka
from tickhouse.schemas import Alert, now_ms, to_json

log = logging.getLogger("tickhouse.alerts")

# trade offset -> alerts of that trade produced, not yet acknowledged
InFlight = dict[int, int]


def alert_id(symbol: str, rule: str, topic: str, partition: int, offset: int) -> str:
    """Deterministic id from the rule and the triggering trade's coordinates."""
    key = f"{symbol}\x1f{rule}\x1f{topic}\x1f{partition}\x1f{offset}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


class Publisher:
    """Produces the alerts of one service instance and serves their delivery reports."""

    def __init__(self, producer: Producer, alerts_topic: str, trades_topic: str, stats: Stats) -> None:
        self.producer = producer
        self.alerts_topic = alerts_topic
        self.trades_topic = trades_topic
        self.stats = stats
        self.already_published: set[str] = set()  # ids on the alerts topic past the commit
        self._resend: list[tuple[bytes, bytes, InFlight, int]] = []  # to produce again

    def publish(
        self,
        firings: list[Firing] | tuple[Firing, ...],
        msg: Message,
        partition: int,
        offset: int,
        inflight: InFlight,
        trade: tuple[str, float, float, int],
        received: float,
    ) -> None:
        """Publish the alerts of `firings` on the trade `msg` (`received`: perf_counter when its
        batch left the consumer)."""
        symbol, price, volume, ts = trade
        topic = self.trades_topic
        kafka_ts = msg.timestamp()[1]
        for firing in firings:
            ident = alert_id(firing.symbol, firing.rule, topic, partition, offset)
            if ident in self.already_published:
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
            self._send(firing.symbol.encode(), to_json(alert), inflight, offset)
            self.stats.alerts += 1
            self.stats.by_rule[firing.rule] = self.stats.by_rule.get(firing.rule, 0) + 1
            metrics.ALERTS.labels(firing.rule).inc()
            if kafka_ts > 0:
                metrics.LATENCY.observe(max(0, detected - kafka_ts) / 1000.0)
            metrics.PROCESSING.observe(time.perf_counter() - received)
            log.info("alert %s %s %s: %s", alert.alert_id, firing.symbol, firing.rule, firing.message)

    def _send(self, key: bytes, value: bytes, inflight: InFlight, offset: int) -> None:
        """Produce one alert; until the broker acknowledges it, the commit stays before its trade."""
        inflight[offset] = inflight.get(offset, 0) + 1
        on_delivery = functools.partial(self._delivered, key, value, inflight, offset)
        while True:
            try:
                self.producer.produce(self.alerts_topic, key=key, value=value, on_delivery=on_delivery)
                return
            except BufferError:  # the queue is full: let it drain
                self.producer.poll(0.05)

    def _delivered(
        self, key: bytes, value: bytes, inflight: InFlight, offset: int, err: KafkaError | None, msg: Message
    ) -> None:
        if err is not None:
            metrics.DELIVERY_ERRORS.inc()
            if err.fatal():
                raise KafkaException(err)
            log.error("could not deliver an alert to %s (sending it again): %s", msg.topic(), err)
            self._resend.append((key, value, inflight, offset))
            return
        left = inflight.get(offset, 0) - 1
        if left > 0:
            inflight[offset] = left
        else:
            inflight.pop(offset, None)

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for every alert produced; the number still undelivered."""
        return self.producer.flush(timeout)

    @property
    def has_failed(self) -> bool:
        """Alerts whose delivery failed wait to be produced again (`send_again`)."""
        return bool(self._resend)

    def send_again(self) -> None:
        """Produce the alerts whose delivery failed (still in flight: the commit waits for them)."""
        resend, self._resend = self._resend, []
        for key, value, inflight, offset in resend:
            on_delivery = functools.partial(self._delivered, key, value, inflight, offset)
            try:
                self.producer.produce(self.alerts_topic, key=key, value=value, on_delivery=on_delivery)
            except BufferError:
                self._resend.append((key, value, inflight, offset))


def published_ids(
    bootstrap: str, alerts_topic: str, trades_topic: str, live_from: dict[int, int], since_ms: int
) -> set[str]:
    """Ids of the alerts on `alerts_topic` (appended since `since_ms`) that fired on a trade of
    `trades_topic` at or after its partition's `live_from` offset."""
    ids: set[str] = set()
    for _key, value in kafka.read_topic(bootstrap, alerts_topic, since_ms):
        if value is None:
            continue
        try:
            data = json.loads(value)
            trade = data["details"]["trade"]
        except (ValueError, KeyError, TypeError):
            continue
        if trade.get("topic") != trades_topic:
            continue
        partition = trade.get("partition")
        if partition in live_from and trade.get("offset", -1) >= live_from[partition]:
            ids.add(str(data.get("alert_id")))
    return ids
