"""Pipeline health at a glance: Kafka lag of the drain's consumer group, what the drain loaded and
quarantined, and how fresh the raw tables are. Used by `tickhouse status` and exported to
Prometheus by `tickhouse metrics` (the drain runs as short Airflow tasks, so its figures are read
from the warehouse and the broker rather than kept in a process).
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


def seconds_since(moment: datetime | None, now: float | None = None) -> float | None:
    if moment is None:
        return None
    return (now if now is not None else time.time()) - moment.timestamp()


class PipelineCollector:
    """A prometheus-client collector that reads lag and load figures at every scrape."""

    def __init__(self, settings: Settings):
        self.settings = settings

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
        up.add_metric([], ok)
        yield up


def serve_metrics(settings: Settings, port: int, host: str = "127.0.0.1") -> None:
    """Serve the pipeline collector on host:port until interrupted."""
    from prometheus_client import REGISTRY, start_http_server

    REGISTRY.register(PipelineCollector(settings))
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
