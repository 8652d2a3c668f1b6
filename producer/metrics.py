"""Producer counters, their Prometheus exposition, and the one-line live status on a TTY.

The hot path only bumps plain integer attributes of `ProducerStats`; Prometheus reads them at scrape
time through a custom collector, so publishing a message costs no lock and no metric lookup.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TextIO

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9101
METRICS_PORT_ENV = "PRODUCER_METRICS_PORT"

_COUNTERS: dict[str, str] = {
    "frames": "WebSocket frames received from Finnhub",
    "malformed_frames": "Frames or trades that were not valid and were logged and skipped",
    "error_frames": "Finnhub error frames received",
    "trades_in": "Trades received from the source",
    "quotes_in": "Quotes received from the REST API and published",
    "quotes_skipped": "Quotes not published (unknown symbol: c == 0)",
    "quote_errors": "REST quote requests that failed (and were retried later)",
    "published": "Messages handed to the Kafka producer",
    "delivered": "Messages acknowledged by the broker",
    "delivery_errors": "Delivery reports with an error",
    "reconnects": "WebSocket reconnects",
    "spooled": "Messages written to the on-disk spool while the broker was unreachable",
    "unspooled": "Messages replayed from the on-disk spool",
}


@dataclass(slots=True)
class ProducerStats:
    """Plain counters; the publisher, sources and the collector share one instance."""

    frames: int = 0
    malformed_frames: int = 0
    error_frames: int = 0
    trades_in: int = 0
    quotes_in: int = 0
    quotes_skipped: int = 0
    quote_errors: int = 0
    published: int = 0
    delivered: int = 0
    delivery_errors: int = 0
    reconnects: int = 0
    spooled: int = 0
    unspooled: int = 0
    spool_depth: int = 0
    queue_depth: int = 0
    connected: int = 0

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _StatsCollector(Collector):
    def __init__(self, stats: ProducerStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for name, help_text in _COUNTERS.items():
            counter = CounterMetricFamily(f"tickhouse_producer_{name}", help_text)
            counter.add_metric([], getattr(self._stats, name))
            yield counter
        gauges = {
            "spool_depth": "Messages waiting in the on-disk spool",
            "queue_depth": "Messages in the Kafka producer's in-memory queue",
            "connected": "1 while the Finnhub WebSocket is connected",
        }
        for name, help_text in gauges.items():
            gauge = GaugeMetricFamily(f"tickhouse_producer_{name}", help_text)
            gauge.add_metric([], getattr(self._stats, name))
            yield gauge


class ProducerMetrics:
    """The registry of one producer process: counters from `stats` plus the latency histogram."""

    def __init__(self, stats: ProducerStats) -> None:
        self.stats = stats
        self.registry = CollectorRegistry()
        self.registry.register(_StatsCollector(stats))
        self.produce_latency = Histogram(
            "tickhouse_producer_produce_latency_seconds",
            "Time from handing a message to the Kafka client to the broker's acknowledgement (sampled)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self._server: object | None = None

    def serve(self, port: int, addr: str = "127.0.0.1") -> int | None:
        """Expose /metrics on `port` (0 = disabled). Returns the port or None when not serving."""
        if port == 0:
            return None
        try:
            server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as err:
            # Metrics are an aid; a port clash must not stop market data from flowing.
            log.warning("metrics not served: cannot listen on %s:%s (%s)", addr, port, err)
            return None
        self._server = server
        return int(server.server_address[1])

    def close(self) -> None:
        server = self._server
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
            self._server = None


def metrics_port_from_env(environ: dict[str, str] | None = None) -> int:
    """`PRODUCER_METRICS_PORT` (default 9101; 0 disables)."""
    raw = (environ if environ is not None else dict(os.environ)).get(METRICS_PORT_ENV, "").strip()
    if not raw:
        return DEFAULT_METRICS_PORT
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"{METRICS_PORT_ENV}={raw!r} is not a TCP port (0 disables the endpoint)")
    return int(raw)


def status_text(stats: ProducerStats, rate: float) -> str:
    return (
        f"trades {stats.trades_in:,}  published {stats.published:,}  acked {stats.delivered:,}"
        f"  {rate:,.0f} msg/s  queue {stats.queue_depth:,}  spool {stats.spool_depth:,}"
        f"  errors {stats.delivery_errors + stats.malformed_frames:,}"
        f"  reconnects {stats.reconnects}"
    )


class StatusLine:
    """Rewrites one status line on a terminal about once a second (nothing when not a TTY)."""

    def __init__(self, stats: ProducerStats, stream: TextIO | None = None, every: float = 1.0):
        self._stats = stats
        self._stream = stream or sys.stderr
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self._stream.isatty():
            return
        self._thread = threading.Thread(target=self._run, name="status-line", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last_time, last_count = time.monotonic(), self._stats.delivered
        while not self._stop.wait(self._every):
            now, count = time.monotonic(), self._stats.delivered
            rate = (count - last_count) / max(now - last_time, 1e-9)
            last_time, last_count = now, count
            self._stream.write("\r\x1b[2K" + status_text(self._stats, rate))
            self._stream.flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._stream.write("\r\x1b[2K" + status_text(self._stats, 0.0) + "\n")
            self._stream.flush()
