"""Notifications, at least once: every notifier is its own consumer of the alerts topic.

A notifier (Slack, webhook, email; see `alerts/notifiers.py`) reads `market.alerts` in its own
consumer group, `<notify group>.<notifier name>`, and commits an alert's offset only after the alert
is delivered (or, after `max_attempts` tries, written to the dead-letter topic
`<alerts topic>.deadletter` with the error). So an alert on the topic is never lost: not when the
evaluator restarts (it no longer holds notifications in memory), nor when the notifier does (it
resumes at its committed offset), and a slow or failing notifier delays only itself.

Repeats are dropped by `alert_id`: the ids delivered recently (and, after a restart, those just
before the committed offset) are remembered, so an alert that reached the topic twice is sent once.
The one repeat left is a kill between a delivery and its commit (a few milliseconds); receivers can
drop it too, since every delivery carries the alert_id. A notifier group that has never committed
starts `lookback_seconds` back, so a first start does not replay the whole history.

Alerts on old trades (a replay, a backfill, a feed catching up) are for the record, not for people:
an alert whose trade was more than `max_age_seconds` old when the alert was raised (`detected_ts -
trade_ts`, wall clock against event time) is not sent; it stays on the topic and in the warehouse
like any other, and is counted as `too_old`. Measured at detection, not at delivery, so a notifier
catching up after an outage still sends the live alerts it missed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Message, Producer, TopicPartition

from alerts import clients, metrics
from alerts.config import NotifierConfig
from alerts.notifiers import Sender, build_sender, deliver
from tickhouse import kafka
from tickhouse.schemas import SEVERITIES, Alert, InvalidMessage, now_ms, parse_alert

log = logging.getLogger("tickhouse.alerts.notify")


@dataclass
class NotifyOptions:
    bootstrap_servers: str
    alerts_topic: str
    notifiers: tuple[NotifierConfig, ...]
    group: str = "tickhouse-alerts-notify"  # each notifier's group is "<group>.<name>"
    dead_letter_topic: str = ""  # default "<alerts topic>.deadletter"
    lookback_seconds: float = 300.0
    max_age_seconds: float = 300.0  # trades older than this when alerted are not notified; 0 = no limit
    remember: int = 10_000  # alert ids kept for dropping repeats
    poll_timeout: float = 0.2
    environ: Mapping[str, str] | None = None
    consumer_config: dict[str, Any] = field(default_factory=dict)

    @property
    def dead_letters(self) -> str:
        return self.dead_letter_topic or f"{self.alerts_topic}.deadletter"


class NotifierConsumer:
    """One notifier: its consumer group, its thread, its delivered ids."""

    def __init__(
        self,
        sender: Sender,
        cfg: NotifierConfig,
        options: NotifyOptions,
        dead_letters: Producer,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.sender = sender
        self.cfg = cfg
        self.options = options
        self.group = f"{options.group}.{cfg.name}"
        self.min_rank = SEVERITIES.index(cfg.min_severity)
        self.sent = 0
        self.duplicates = 0
        self.too_old = 0
        self.dead_lettered = 0
        self.ready = threading.Event()  # partitions assigned
        self._dead_letters = dead_letters
        self._stopping = threading.Event()
        self._sleep = sleep if sleep is not None else self._stopping.wait
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name=f"notifier-{cfg.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def _main(self) -> None:
        try:
            self.run()
        except BaseException as err:  # reported by NotifyService.check()
            self.error = err
            log.exception("notifier %s stopped", self.cfg.name)

    def run(self) -> None:
        opts = self.options
        consumer = kafka.consumer(
            opts.bootstrap_servers,
            self.group,
            **{
                "auto.offset.reset": "latest",
                "client.id": f"tickhouse-notify-{self.cfg.name}-{uuid.uuid4().hex[:6]}",
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
                **opts.consumer_config,
            },
        )
        consumer.subscribe([opts.alerts_topic], on_assign=self._on_assign)
        try:
            while not self._stopping.is_set():
                msg = consumer.poll(opts.poll_timeout)
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.fatal():
                        raise KafkaException(err)
                    continue
                if self._handle(msg):
                    try:
                        consumer.commit(message=msg, asynchronous=False)
                    except KafkaException as err:  # e.g. a rebalance: the alert id is remembered
                        log.warning("notifier %s: commit failed: %s", self.cfg.name, err)
        finally:
            consumer.close()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = consumer.committed(partitions, timeout=10)
        fresh = [tp for tp in committed if tp.offset < 0]
        if fresh:
            since = now_ms() - int(self.options.lookback_seconds * 1000)
            found = consumer.offsets_for_times(
                [TopicPartition(tp.topic, tp.partition, since) for tp in fresh], timeout=10
            )
            starts = {tp.partition: (tp.offset if tp.offset >= 0 else OFFSET_END) for tp in found}
            for tp in committed:
                if tp.offset < 0:
                    tp.offset = starts[tp.partition]
        self._remember_before(consumer, [tp for tp in committed if tp.offset >= 0])
        consumer.assign(committed)
        log.info(
            "notifier %s: %s",
            self.cfg.name,
            ", ".join(f"partition {tp.partition} from offset {tp.offset}" for tp in committed),
        )
        self.ready.set()

    def _remember_before(self, consumer: Consumer, starts: list[TopicPartition]) -> None:
        """The ids of the alerts just before each start offset count as delivered: a repeat of one
        of them after the commit is dropped."""
        reader = kafka.consumer(self.options.bootstrap_servers, f"{self.group}-reader-{uuid.uuid4().hex[:6]}")
        try:
            window = max(1, self.options.remember // max(1, len(starts)))
            assign = [TopicPartition(tp.topic, tp.partition, max(0, tp.offset - window)) for tp in starts]
            ends = {tp.partition: tp.offset for tp in starts}
            todo = {tp.partition for tp in assign if tp.offset < ends[tp.partition]}
            if not todo:
                return
            reader.assign([tp for tp in assign if tp.partition in todo])
            deadline = time.monotonic() + 30
            while todo and time.monotonic() < deadline:
                for msg in reader.consume(1000, 0.2):
                    if msg.error() is not None:
                        continue
                    p, offset = cast(int, msg.partition()), cast(int, msg.offset())
                    if p in todo and offset < ends[p]:
                        ident = _alert_id(msg.value())
                        if ident:
                            self._remember(ident)
                    if offset + 1 >= ends.get(p, 0):
                        todo.discard(p)
        finally:
            reader.close()

    def _remember(self, ident: str) -> None:
        delivered = self._delivered
        delivered[ident] = None
        delivered.move_to_end(ident)
        while len(delivered) > self.options.remember:
            delivered.popitem(last=False)

    def _handle(self, msg: Message) -> bool:
        """Deliver one alert; True when its offset may be committed."""
        try:
            alert = parse_alert(msg.value())
        except InvalidMessage as err:
            log.warning("notifier %s: skipping a message that is not an alert: %s", self.cfg.name, err)
            return True
        if SEVERITIES.index(alert.severity) < self.min_rank:
            return True
        if too_old_to_notify(alert, self.options.max_age_seconds):
            self.too_old += 1
            metrics.NOTIFICATIONS.labels(self.cfg.name, "too_old").inc()
            log.debug("notifier %s: alert %s is on a trade too old to notify", self.cfg.name, alert.alert_id)
            return True
        if alert.alert_id in self._delivered:
            self.duplicates += 1
            metrics.NOTIFICATIONS.labels(self.cfg.name, "duplicate").inc()
            return True
        ok, attempts, error = deliver(self.sender, alert, self.cfg, self._sleep, self._stopping)
        if ok:
            self.sent += 1
            metrics.NOTIFICATIONS.labels(self.cfg.name, "sent").inc()
        elif self._stopping.is_set():
            return False  # not committed: delivered after the restart
        else:
            self._dead_letter(alert, attempts, error)
        self._remember(alert.alert_id)
        return True

    def _dead_letter(self, alert: Alert, attempts: int, error: str) -> None:
        record = {
            "alert": alert.to_dict(),
            "notifier": self.cfg.name,
            "attempts": attempts,
            "error": error,
            "failed_ts": now_ms(),
        }
        producer = self._dead_letters
        producer.produce(
            self.options.dead_letters,
            key=alert.alert_id.encode(),
            value=json.dumps(record, default=str).encode(),
        )
        if producer.flush(30):
            raise KafkaException(f"could not write alert {alert.alert_id} to {self.options.dead_letters}")
        self.dead_lettered += 1
        metrics.NOTIFICATIONS.labels(self.cfg.name, "dead_letter").inc()
        log.error(
            "notifier %s: alert %s undeliverable after %d attempts (%s); written to %s",
            self.cfg.name,
            alert.alert_id,
            attempts,
            error,
            self.options.dead_letters,
        )


def too_old_to_notify(alert: Alert, max_age_seconds: float) -> bool:
    """True when the alert's trade was more than `max_age_seconds` old when the alert was raised
    (a replayed or backfilled trade); a limit of 0 means none."""
    return max_age_seconds > 0 and alert.detected_ts - alert.trade_ts > max_age_seconds * 1000


def _alert_id(value: bytes | None) -> str:
    try:
        data = json.loads(value or b"")
    except ValueError:
        return ""
    ident = data.get("alert_id") if isinstance(data, dict) else None
    return ident if isinstance(ident, str) else ""


class NotifyService:
    """Every configured notifier whose secrets are set, each a NotifierConsumer."""

    def __init__(self, options: NotifyOptions) -> None:
        """Builds every sender first: unsafe settings raise NotifierConfigError before any
        connection is made."""
        self.options = options
        senders = [(cfg, build_sender(cfg, options.environ)) for cfg in options.notifiers]
        self.consumers: list[NotifierConsumer] = []
        self._dead_letters: Producer | None = None
        for cfg, sender in senders:
            if sender is None:
                continue
            if self._dead_letters is None:
                self._dead_letters = clients.dead_letter_producer(options.bootstrap_servers)
            log.info("notifier %s on (%s), group %s.%s", cfg.name, cfg.type, options.group, cfg.name)
            self.consumers.append(NotifierConsumer(sender, cfg, options, self._dead_letters))

    def start(self) -> None:
        if not self.consumers:
            return
        kafka.ensure_topics(self.options.bootstrap_servers, {self.options.dead_letters: kafka.TopicSpec(1)})
        for consumer in self.consumers:
            consumer.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every notifier; an alert being retried stays uncommitted (sent after a restart)."""
        deadline = time.monotonic() + timeout
        for consumer in self.consumers:
            consumer.stop()
        for consumer in self.consumers:
            if consumer.thread.is_alive():
                consumer.thread.join(max(0.0, deadline - time.monotonic()))
        if self._dead_letters is not None:
            self._dead_letters.flush(5)

    def failed(self) -> list[str]:
        """Notifiers whose thread died, with the reason."""
        return [f"{c.cfg.name}: {c.error}" for c in self.consumers if c.error is not None]
