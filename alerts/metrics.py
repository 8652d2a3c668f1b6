"""The alert service's Prometheus metrics (served by `tickhouse alerts` on ALERTS_METRICS_PORT), and
`Stats`, the counts of one service instance for the process that runs it."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

TRADES_EVALUATED = Counter(
    "tickhouse_alerts_trades_evaluated_total", "Trades evaluated by the rules (replays included)"
)
ALERTS = Counter("tickhouse_alerts_alerts_total", "Alerts published, by rule", ["rule"])
BAD_MESSAGES = Counter(
    "tickhouse_alerts_bad_messages_total", "Messages on the trades topic that are not valid trades"
)
UNKNOWN_CONDITION_PRINTS = Counter(
    "tickhouse_alerts_unknown_condition_prints_total",
    "Trades evaluated with a condition code the trade_conditions table does not list (evaluated as "
    "regular; add the code to dbt_project/seeds/trade_conditions.csv)",
)
FUTURE_TRADES = Counter(
    "tickhouse_alerts_future_trades_total",
    "Trades dated further ahead of their Kafka timestamp than --max-ahead-seconds: left out of the "
    "rules (they would move the rules' event-time clock into the future)",
)
SUPPRESSED = Counter(
    "tickhouse_alerts_suppressed_total",
    "Alerts not published after a restart: replayed before the committed offset, or already on the topic",
    ["reason"],
)
DELIVERY_ERRORS = Counter(
    "tickhouse_alerts_delivery_errors_total", "Alerts the producer failed to deliver (each is sent again)"
)
LATENCY = Histogram(
    "tickhouse_alerts_latency_seconds",
    "From the trade's Kafka timestamp to the alert handed to the producer",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0),
)
PROCESSING = Histogram(
    "tickhouse_alerts_processing_seconds",
    "From the trade's batch leaving the consumer to its alert handed to the producer: the share of "
    "the latency the service itself adds",
    buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
)
BATCH_SECONDS = Histogram(
    "tickhouse_alerts_batch_seconds",
    "Processing time of one consumed batch",
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5),
)
GC_PAUSE = Histogram(
    "tickhouse_alerts_gc_pause_seconds",
    "Pauses of Python's cyclic garbage collector in the alert service, by generation",
    ["generation"],
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
)

SYMBOLS = Gauge("tickhouse_alerts_symbols", "Symbols whose rule state this instance holds")
PARTITIONS = Gauge(
    "tickhouse_alerts_partitions_assigned",
    "Partitions of the trades topic this instance holds (0 until its group assigns it some)",
)
EVICTED = Counter(
    "tickhouse_alerts_symbols_evicted_total",
    "Symbols forgotten: idle longer than --evict-idle-seconds, or beyond --max-symbols",
)
CHECKPOINT_RECORDS = Counter(
    "tickhouse_alerts_checkpoint_records_total",
    "Records written to the state topic, by kind (symbol state, tombstone, partition manifest)",
    ["kind"],
)
CHECKPOINT_FAILURES = Counter(
    "tickhouse_alerts_checkpoint_failures_total",
    "Checkpoint records that could not be written (the service keeps running and retries)",
    ["reason"],
)
CHECKPOINT_SECONDS = Histogram(
    "tickhouse_alerts_checkpoint_round_seconds",
    "From the start of a checkpoint round to its manifest on the state topic",
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
LAST_CHECKPOINT = Gauge(
    "tickhouse_alerts_last_checkpoint_timestamp_seconds",
    "Wall clock of the newest manifest written, per trades partition",
    ["partition"],
)

NOTIFICATIONS = Counter(
    "tickhouse_alerts_notifications_total",
    "Notifier deliveries by outcome (sent; duplicate = an alert_id already delivered, skipped; "
    "dead_letter = undeliverable after the retries; too_old = on a trade older than "
    "ALERTS_NOTIFY_MAX_AGE_SECONDS when alerted, published and stored but not sent)",
    ["notifier", "outcome"],
)
NOTIFY_ATTEMPT_FAILURES = Counter(
    "tickhouse_alerts_notification_attempt_failures_total",
    "Failed delivery attempts (each retried with backoff until max_attempts)",
    ["notifier"],
)


@dataclass
class Stats:
    """What one service instance did (`AlertService.run` returns it)."""

    trades: int = 0
    bad_messages: int = 0
    alerts: int = 0
    replayed_silently: int = 0
    duplicates_suppressed: int = 0
    future_trades: int = 0
    unknown_condition_prints: int = 0  # trades with a condition code the table does not list
    by_rule: dict[str, int] = field(default_factory=dict)


class GcTimer:
    """Observes every collector pause into GC_PAUSE (installed in gc.callbacks by the service)."""

    def __init__(self) -> None:
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            GC_PAUSE.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - self._started)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
