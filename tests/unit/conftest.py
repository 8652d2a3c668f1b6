"""Fixtures of the unit tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from exporter.collector import PipelineCollector
from tickhouse.config import PROJECT_ROOT, load_settings

SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}


def _exposed_names(text: str) -> set[str]:
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        names.update(name + suffix for suffix in SUFFIXES.get(kind, ()))
    return names


@pytest.fixture(scope="session")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric name the producer, the pipeline exporter and the alert service export."""
    import alerts.notifiers
    import alerts.service  # noqa: F401 - registers the alert service's metrics
    from producer.metrics import ProducerMetrics, ProducerStats

    producer = ProducerMetrics(ProducerStats()).registry
    # nothing listens on these ports: the collector still declares every family it exports
    pipeline = CollectorRegistry()
    state = tmp_path_factory.mktemp("state")
    pipeline.register(
        PipelineCollector(
            load_settings(
                {
                    "TICKHOUSE_STATE_DIR": str(state),
                    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
                    "POSTGRES_PORT": "1",
                },
                project_root=Path(PROJECT_ROOT),
            )
        )
    )
    text = b"".join(generate_latest(r) for r in (producer, pipeline, REGISTRY)).decode()
    return _exposed_names(text)
