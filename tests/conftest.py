"""Shared fixtures. Integration and e2e tests talk to the real local stack (`make up`); they take
every address and credential from `load_settings()`, exactly as the services do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.airflow_api import AirflowAPI
from tickhouse.config import Settings, load_settings

TESTS_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by the folder it lives in: tests/unit, tests/integration, tests/e2e."""
    for item in items:
        path = Path(str(item.fspath))
        parts = path.relative_to(TESTS_DIR).parts if path.is_relative_to(TESTS_DIR) else ()
        if parts and parts[0] in {"unit", "integration", "e2e", "reliability"}:
            item.add_marker(getattr(pytest.mark, "integration" if parts[0] == "reliability" else parts[0]))


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture
def unique_topic(settings: Settings) -> Iterator[str]:
    """A fresh single-use topic with 3 partitions, deleted afterwards."""
    from confluent_kafka.admin import AdminClient, NewTopic

    name = f"test.{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture(scope="session")
def airflow_api(settings: Settings) -> AirflowAPI:
    from ops.stack.airflow import admin_password

    return AirflowAPI(settings.airflow_url, "admin", admin_password(settings))
