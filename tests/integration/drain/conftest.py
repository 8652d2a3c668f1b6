"""Fixtures for the drain's integration tests: the real broker and PostgreSQL from load_settings()."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from drain.options import DrainOptions
from drain.runner import drain_once
from drain.stats import DrainResult
from tests.cleanup import forget_topics
from tickhouse.config import Settings, load_settings
from tickhouse.kafka import client_config
from tickhouse.warehouse import setup_warehouse


@pytest.fixture(scope="session")
def settings() -> Settings:
    s = load_settings()
    setup_warehouse(s)
    return s


@pytest.fixture(scope="session")
def admin(settings: Settings) -> AdminClient:
    return AdminClient(client_config(settings.kafka_bootstrap_servers))


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(settings.conninfo("owner"), autocommit=True) as conn:
        yield conn


class Topics:
    """Unique trades/quotes/alerts/candles topics for one test, deleted afterwards."""

    def __init__(self, settings: Settings, admin: AdminClient, partitions: int) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.settings = settings
        self.admin = admin
        self.trades = f"test.drain.trades.{suffix}"
        self.quotes = f"test.drain.quotes.{suffix}"
        self.alerts = f"test.drain.alerts.{suffix}"
        self.candles = f"test.drain.candles.{suffix}"
        self.group = f"test-drain-{suffix}"
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in self.names]
        )
        for future in futures.values():
            future.result(timeout=30)
        self.producer = Producer(
            {**client_config(settings.kafka_bootstrap_servers), "linger.ms": 5}
        )

    @property
    def names(self) -> tuple[str, str, str, str]:
        return (self.trades, self.quotes, self.alerts, self.candles)

    @property
    def mapping(self) -> dict[str, str]:
        return {self.trades: "trades", self.quotes: "quotes", self.alerts: "alerts",
                self.candles: "candles"}

    def env(self) -> dict[str, str]:
        """The topic and group variables of a drain working on these topics only."""
        return {"TRADES_TOPIC": self.trades, "QUOTES_TOPIC": self.quotes,
                "ALERTS_TOPIC": self.alerts, "CANDLES_TOPIC": self.candles,
                "DRAIN_GROUP": self.group}

    def options(self, **overrides: Any) -> DrainOptions:
        values: dict[str, Any] = {
            "topics": self.mapping,
            "group": self.group,
            "max_seconds": 30.0,
            "dq_policy": "off",
            "partition_refresh_seconds": 0.5,
        }
        values.update(overrides)
        return DrainOptions(**values)

    def produce(
        self, topic: str, values: list[bytes | None], partition: int | None = None
    ) -> None:
        for value in values:
            if partition is None:
                self.producer.produce(topic, value=value, key=b"k")
            else:
                self.producer.produce(topic, value=value, key=b"k", partition=partition)
            self.producer.poll(0)
        assert self.producer.flush(30) == 0

    def drain(self, **overrides: Any) -> DrainResult:
        return drain_once(self.settings, self.options(**overrides))

    def drain_until_caught_up(self, **overrides: Any) -> list[DrainResult]:
        results = []
        for _ in range(50):
            result = self.drain(**overrides)
            results.append(result)
            if all(s.lag_after == 0 for s in result.topics) and not any(
                s.consumed for s in result.topics
            ):
                return results
        raise AssertionError("drain did not catch up in 50 runs")

    def delete(self) -> None:
        forget_topics(self.settings, self.names, self.group)


@pytest.fixture
def make_topics(
    settings: Settings, admin: AdminClient
) -> Iterator[Callable[..., Topics]]:
    created: list[Topics] = []

    def make(partitions: int = 2) -> Topics:
        topics = Topics(settings, admin, partitions)
        created.append(topics)
        return topics

    yield make
    for topics in created:
        topics.delete()


@pytest.fixture
def topics(make_topics: Callable[..., Topics]) -> Topics:
    return make_topics(2)


def coordinates(
    conn: psycopg.Connection[Any], table: str, topic: str
) -> list[tuple[int, int]]:
    """(partition, offset) of every row of `table` from `topic`, duplicates included."""
    return [
        (p, o)
        for p, o in conn.execute(
            f"select kafka_partition, kafka_offset from {table} where kafka_topic = %s"
            " order by 1, 2",
            (topic,),
        )
    ]
