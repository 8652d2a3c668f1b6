"""Pipeline health at a glance: Kafka lag of the drain's consumer group, what the drain loaded and
quarantined, how fresh the raw tables are, and per symbol what the marts cover and whether they
are behind raw. Used by `tickhouse status` and exported to Prometheus by `tickhouse metrics` (the
drain runs as short Airflow tasks, so its figures are read from the warehouse and the broker
rather than kept in a process).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tickhouse.config import Settings

DRAIN_GROUP_DEFAULT = "tickhouse-drain"
METRICS_PORT_DEFAULT = 9102


def drain_group() -> str:
    return os.environ.get("DRAIN_GROUP", "").strip() or DRAIN_GROUP_DEFAULT


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    end_offset: int
    committed: int | None  # None: the group never committed on this partition

    @property
    def lag(self) -> int:
        return self.end_offset - (self.committed if self.committed is not None else 0)


@dataclass(frozen=True, slots=True)
class TopicLoad:
    topic: str
    loaded: int
    quarantined: int
    last_run_at: datetime | None
    last_run_seconds: float | None
    max_event_time: datetime | None


def consumer_lag(settings: Settings, group: str | None = None, timeout: float = 5.0) -> list[PartitionLag]:
    """Per-partition lag of the drain's consumer group against each topic's end offset."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": group or drain_group(),
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=timeout)
        partitions = [
            TopicPartition(topic, p)
            for topic in settings.topics
            if topic in metadata.topics
            for p in sorted(metadata.topics[topic].partitions)
        ]
        committed = {
            (tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=timeout)
        }
        out = []
        for tp in partitions:
            _, high = consumer.get_watermark_offsets(tp, timeout=timeout)
            offset = committed.get((tp.topic, tp.partition), -1001)
            out.append(PartitionLag(tp.topic, tp.partition, high, offset if offset >= 0 else None))
        return out
    finally:
        consumer.close()


def topic_loads(settings: Settings) -> list[TopicLoad]:
    """Totals and the latest run per topic from `raw.load_stats` ([] before the first drain)."""
    from tickhouse.warehouse import connect

    with connect(settings, "loader") as conn:
        exists = conn.execute("select to_regclass('raw.load_stats') is not null").fetchone()
        if not exists or not exists[0]:
            return []
        rows = conn.execute(
            """
            select topic,
                   sum(loaded)::bigint,
                   sum(quarantined)::bigint,
                   max(finished_at),
                   (array_agg(duration_ms order by finished_at desc))[1] / 1000.0,
                   max(max_event_time)
            from raw.load_stats
            group by topic
            order by topic
            """
        ).fetchall()
    return [
        TopicLoad(r[0], int(r[1]), int(r[2]), r[3], float(r[4]) if r[4] is not None else None, r[5])
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class SymbolCoverage:
    """One row of marts.pipeline_symbols."""

    symbol: str
    first_bar_start: datetime | None
    last_bar_start: datetime | None
    last_daily_bar_start: datetime | None
    rows_pending: int
    oldest_pending_event_time: datetime | None

    @property
    def is_behind_raw(self) -> bool:
        return self.rows_pending > 0


@dataclass(frozen=True, slots=True)
class MartsCoverage:
    """Per-symbol coverage of the marts (the `limit` most relevant symbols) and the totals."""

    symbols: list[SymbolCoverage]
    symbol_count: int
    symbols_behind: int
    rows_pending: int


def marts_coverage(settings: Settings, limit: int = 20) -> MartsCoverage | None:
    """Read marts.pipeline_symbols as bi_reader: the symbols behind raw first, then the ones with
    the newest bars, at most `limit` of them; None before dbt has built it."""
    from tickhouse.warehouse import connect

    with connect(settings, "bi_reader") as conn:
        exists = conn.execute("select to_regclass('marts.pipeline_symbols') is not null").fetchone()
        if not exists or not exists[0]:
            return None
        totals = conn.execute(
            "select count(*), count(*) filter (where is_behind_raw), coalesce(sum(rows_pending), 0)"
            " from marts.pipeline_symbols"
        ).fetchone()
        rows = conn.execute(
            "select symbol, first_bar_start, last_bar_start, last_daily_bar_start, rows_pending,"
            " oldest_pending_event_time from marts.pipeline_symbols"
            " order by is_behind_raw desc, last_bar_start desc nulls last, symbol limit %s",
            (limit,),
        ).fetchall()
    assert totals is not None
    return MartsCoverage(
        symbols=[SymbolCoverage(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows],
        symbol_count=int(totals[0]),
        symbols_behind=int(totals[1]),
        rows_pending=int(totals[2]),
    )


def seconds_since(moment: datetime | None, now: float | None = None) -> float | None:
    if moment is None:
        return None
    return (now if now is not None else time.time()) - moment.timestamp()


class PipelineCollector:
    """A prometheus-client collector that reads lag and load figures at every scrape.

    Per-symbol series are exported for at most `max_symbols` symbols (PIPELINE_METRICS_MAX_SYMBOLS,
    default 500; the ones behind raw first, then the newest): at 20,000 symbols one series each
    would weigh on Prometheus more than it helps. The totals cover every symbol.
    """

    def __init__(self, settings: Settings, max_symbols: int = 500):
        self.settings = settings
        self.max_symbols = max_symbols

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        lag = GaugeMetricFamily(
            "tickhouse_drain_consumer_lag",
            "Messages not yet drained, per partition",
            labels=["topic", "partition"],
        )
        up = GaugeMetricFamily("tickhouse_pipeline_scrape_ok", "1 when both Kafka and the warehouse answered")
        ok = 1.0
        try:
            for item in consumer_lag(self.settings):
                lag.add_metric([item.topic, str(item.partition)], item.lag)
        except Exception:
            ok = 0.0
        yield lag
        messages = CounterMetricFamily(
            "tickhouse_drain_messages", "Messages drained, by outcome", labels=["topic", "outcome"]
        )
        last_run = GaugeMetricFamily(
            "tickhouse_drain_last_run_timestamp_seconds", "When the last drain run finished", labels=["topic"]
        )
        duration = GaugeMetricFamily(
            "tickhouse_drain_last_run_duration_seconds", "Duration of the last drain run", labels=["topic"]
        )
        freshness = GaugeMetricFamily(
            "tickhouse_raw_freshness_seconds",
            "Seconds since the newest event time loaded into raw, per topic",
            labels=["topic"],
        )
        try:
            for load in topic_loads(self.settings):
                messages.add_metric([load.topic, "loaded"], load.loaded)
                messages.add_metric([load.topic, "quarantined"], load.quarantined)
                if load.last_run_at is not None:
                    last_run.add_metric([load.topic], load.last_run_at.timestamp())
                if load.last_run_seconds is not None:
                    duration.add_metric([load.topic], load.last_run_seconds)
                age = seconds_since(load.max_event_time)
                if age is not None:
                    freshness.add_metric([load.topic], age)
        except Exception:
            ok = 0.0
        yield messages
        yield last_run
        yield duration
        yield freshness
        families, coverage_ok = self._marts_coverage()
        yield from families
        up.add_metric([], ok if coverage_ok else 0.0)
        yield up

    def _marts_coverage(self) -> tuple[list[Any], bool]:
        """Gauges of marts.pipeline_symbols (declared even when it cannot be read), and whether it
        could be read."""
        from prometheus_client.core import GaugeMetricFamily

        behind = GaugeMetricFamily(
            "tickhouse_marts_symbols_behind_raw",
            "Symbols with rows in raw that the marts do not reflect yet (the next transform's work)",
        )
        pending = GaugeMetricFamily(
            "tickhouse_marts_rows_pending", "Trades and candles loaded into raw but not yet in the marts"
        )
        symbols = GaugeMetricFamily("tickhouse_marts_symbols", "Symbols with bars in the marts")
        first_bar = GaugeMetricFamily(
            "tickhouse_symbol_first_bar_timestamp_seconds",
            "Start of the symbol's oldest bar",
            labels=["symbol"],
        )
        last_bar = GaugeMetricFamily(
            "tickhouse_symbol_last_bar_timestamp_seconds",
            "Start of the symbol's newest bar",
            labels=["symbol"],
        )
        symbol_pending = GaugeMetricFamily(
            "tickhouse_symbol_rows_pending",
            "The symbol's rows loaded into raw but not yet in the marts",
            labels=["symbol"],
        )
        families = [behind, pending, symbols, first_bar, last_bar, symbol_pending]
        try:
            coverage = marts_coverage(self.settings, self.max_symbols)
        except Exception:
            return families, False
        if coverage is None:  # dbt has not built the marts yet
            return families, True
        behind.add_metric([], coverage.symbols_behind)
        pending.add_metric([], coverage.rows_pending)
        symbols.add_metric([], coverage.symbol_count)
        for item in coverage.symbols:
            if item.first_bar_start is not None:
                first_bar.add_metric([item.symbol], item.first_bar_start.timestamp())
            if item.last_bar_start is not None:
                last_bar.add_metric([item.symbol], item.last_bar_start.timestamp())
            symbol_pending.add_metric([item.symbol], item.rows_pending)
        return families, True


def serve_metrics(settings: Settings, port: int, host: str = "127.0.0.1") -> None:
    """Serve the pipeline collector on host:port until interrupted."""
    from prometheus_client import REGISTRY, start_http_server

    max_symbols = int(os.environ.get("PIPELINE_METRICS_MAX_SYMBOLS", "500"))
    REGISTRY.register(PipelineCollector(settings, max_symbols))
    start_http_server(port, addr=host)
    while True:
        time.sleep(3600)


def main(argv: list[str]) -> int:
    """`tickhouse metrics [--port N]`: the pipeline exporter (lag, loads, freshness)."""
    import argparse

    from tickhouse.config import load_settings

    parser = argparse.ArgumentParser(prog="tickhouse metrics", description=main.__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PIPELINE_METRICS_PORT", METRICS_PORT_DEFAULT)),
        help=f"Prometheus port (env PIPELINE_METRICS_PORT, default {METRICS_PORT_DEFAULT})",
    )
    args = parser.parse_args(argv)
    try:
        serve_metrics(load_settings(), args.port)
    except KeyboardInterrupt:
        return 0
    return 0
