"""The Prometheus side of the exporter: a collector that reads the pipeline figures at every scrape."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from exporter.pipeline import drain_lag, marts_coverage, seconds_since, topic_loads, unknown_conditions
from tickhouse.config import Settings
from tickhouse.listen import start_metrics_server


class PipelineCollector:
    """A prometheus-client collector that reads lag and load figures at every scrape.

    Per-symbol series are exported for at most `max_symbols` symbols (PIPELINE_METRICS_MAX_SYMBOLS,
    default 500; the ones behind raw first, then the newest): at 20,000 symbols one series each
    would weigh on Prometheus more than it helps. The totals cover every symbol. Likewise the
    per-code series of unknown trade-condition codes, for at most `max_codes` codes (the most
    recently seen): a feed sending garbage codes must not make a series each.
    """

    def __init__(self, settings: Settings, max_symbols: int = 500, max_codes: int = 100):
        self.settings = settings
        self.max_symbols = max_symbols
        self.max_codes = max_codes

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
            for item in drain_lag(self.settings):
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
        families, conditions_ok = self._unknown_conditions()
        yield from families
        up.add_metric([], ok if coverage_ok and conditions_ok else 0.0)
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

    def _unknown_conditions(self) -> tuple[list[Any], bool]:
        """The trade-condition codes the eligibility table does not list, from
        marts.pipeline_unknown_conditions (declared even when it cannot be read), and whether it
        could be read."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        codes = GaugeMetricFamily(
            "tickhouse_unknown_condition_codes",
            "Trade-condition codes in the warehouse that the trade-condition table does not list",
        )
        prints = CounterMetricFamily(
            "tickhouse_unknown_condition_prints",
            "Prints in the warehouse with a condition code the table does not list (taken as regular)",
            labels=["code"],
        )
        last_seen = GaugeMetricFamily(
            "tickhouse_unknown_condition_last_seen_timestamp_seconds",
            "Event time of the newest print with the code",
            labels=["code"],
        )
        families = [codes, prints, last_seen]
        try:
            unknown = unknown_conditions(self.settings, self.max_codes)
        except Exception:
            return families, False
        if unknown is None:  # dbt has not built the marts yet
            return families, True
        codes.add_metric([], unknown.code_count)
        for item in unknown.codes:
            prints.add_metric([item.code], item.prints)
            if item.last_event_time is not None:
                last_seen.add_metric([item.code], item.last_event_time.timestamp())
        return families, True


def serve_metrics(settings: Settings, port: int, host: str = "127.0.0.1") -> None:
    """Serve the pipeline collector on host:port until interrupted; PortUnavailableError when the
    port is taken."""
    from prometheus_client import REGISTRY

    max_symbols = int(os.environ.get("PIPELINE_METRICS_MAX_SYMBOLS", "500"))
    # the port first: registering runs a first collection, which reaches Kafka and the warehouse
    start_metrics_server(port, host, "PIPELINE_METRICS_PORT")
    REGISTRY.register(PipelineCollector(settings, max_symbols))
    while True:
        time.sleep(3600)


