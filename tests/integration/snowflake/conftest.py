"""Fixtures for the Snowflake drain tests: the dev Kafka broker and fakesnow (in-process).

fakesnow patches `snowflake.connector.connect`, which the provider's SnowflakeHook calls, so the
drain runs exactly the code it runs against Snowflake; every test gets a fresh, empty account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from drain.runner import drain_once
from drain.stats import DrainResult
from tests.integration.drain.conftest import Topics
from tickhouse.config import Settings, load_settings
from tickhouse.kafka import client_config


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings.kafka_bootstrap_servers))


class Snow:
    """Queries against the fake account (a fresh connection per query, like another client)."""

    def query(self, sql: str, params: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
        import snowflake.connector

        conn = snowflake.connector.connect(database="TICKHOUSE", schema="RAW")
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            return list(cur.fetchall())
        finally:
            conn.close()

    def coordinates(self, table: str, topic: str) -> list[tuple[int, int]]:
        """(partition, offset) of every row of `table` from `topic`, duplicates included."""
        return [
            (int(p), int(o))
            for p, o in self.query(
                f"select kafka_partition, kafka_offset from {table} where kafka_topic = %s"
                " order by 1, 2",
                (topic,),
            )
        ]


@pytest.fixture
def snow(monkeypatch: pytest.MonkeyPatch) -> Iterator[Snow]:
    import fakesnow

    # the connection comes from SNOWFLAKE_* through the hook (AIRFLOW_CONN_TICKHOUSE_SNOWFLAKE)
    monkeypatch.delenv("AIRFLOW_CONN_TICKHOUSE_SNOWFLAKE", raising=False)
    monkeypatch.delenv("SNOWFLAKE_CONN_ID", raising=False)
    monkeypatch.setenv("SNOWFLAKE_ACCOUNT", "fakesnow-account")
    monkeypatch.setenv("SNOWFLAKE_USER", "tickhouse_loader")
    monkeypatch.setenv("SNOWFLAKE_PASSWORD", "not-used-by-fakesnow")
    monkeypatch.setenv("SNOWFLAKE_DATABASE", "TICKHOUSE")
    monkeypatch.setenv("WAREHOUSE", "snowflake")
    with fakesnow.patch():
        yield Snow()


class SnowTopics(Topics):
    def options(self, **overrides: Any) -> Any:
        return super().options(warehouse="snowflake", **overrides)

    def drain(self, **overrides: Any) -> DrainResult:
        return drain_once(self.settings, self.options(**overrides))


@pytest.fixture
def topics(settings: Settings, admin: AdminClient) -> Iterator[SnowTopics]:
    created = SnowTopics(settings, admin, 2)
    yield created
    created.delete()


@pytest.fixture
def drain(topics: SnowTopics) -> Callable[..., DrainResult]:
    return topics.drain
