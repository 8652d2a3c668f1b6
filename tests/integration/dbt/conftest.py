"""Fixtures for the dbt tests: a warehouse database of their own, fed through the real path.

Rows reach raw the way they do in production: JSON messages on Kafka topics of the test's own,
drained by `drain_once` (offsets and load stats in the same transaction as the rows), so the
incremental models see real drain loads. The oracles read the rows back from raw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from drain.options import DrainOptions
from drain.runner import drain_once
from drain.stats import DrainResult
from tests.integration.dbt.parsed_project import manifest_for
from tests.integration.dbt.raw_rows import RawTrade
from tickhouse.config import Settings, load_settings
from tickhouse.kafka import client_config
from tickhouse.warehouse import admin_conninfo, connect, setup_warehouse
from transform.dbt_runner import build

# (symbol, price, volume, ts in epoch ms)
TradeTuple = tuple[str, Decimal, Decimal, int]


def drop_database(settings: Settings) -> None:
    """Drop `settings.postgres_db` if it exists, ending every session in it."""
    # the bootstrap superuser: `with (force)` ends sessions of any role, autovacuum workers included
    # (the owner may not: PostgreSQL 15 refuses with "must be a member of the role whose process is
    # being terminated")
    with psycopg.connect(admin_conninfo(settings), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(settings.postgres_db))
        )


@contextlib.contextmanager
def own_warehouse(name: str) -> Iterator[Settings]:
    """A fresh warehouse database `<POSTGRES_DB>_<name>` (roles, schemas, raw tables), dropped after."""
    base = load_settings()
    settings = dataclasses.replace(base, postgres_db=f"{base.postgres_db}_{name}")
    drop_database(settings)
    setup_warehouse(settings)
    try:
        yield settings
    finally:
        drop_database(settings)


def _number(value: Decimal) -> Any:
    """A JSON number with exactly the digits of `value` (json writes Decimal via float)."""
    return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)


@dataclass
class Feed:
    """Kafka topics of one test module and the drain that loads them into its warehouse."""

    settings: Settings
    admin: AdminClient
    trades_topic: str
    alerts_topic: str
    candles_topic: str
    group: str
    producer: Producer
    kinds: tuple[str, ...]

    @classmethod
    def create(cls, settings: Settings, kinds: Sequence[str] = ("trades", "alerts")) -> Feed:
        suffix = uuid.uuid4().hex[:10]
        admin = AdminClient(client_config(settings.kafka_bootstrap_servers))
        feed = cls(
            settings=settings,
            admin=admin,
            trades_topic=f"test.dbt.trades.{suffix}",
            alerts_topic=f"test.dbt.alerts.{suffix}",
            candles_topic=f"test.dbt.candles.{suffix}",
            group=f"test-dbt-{suffix}",
            producer=Producer({**client_config(settings.kafka_bootstrap_servers), "linger.ms": 5}),
            kinds=tuple(kinds),
        )
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=3, replication_factor=1) for topic in feed.topics]
        )
        for future in futures.values():
            future.result(timeout=30)
        return feed

    @property
    def topics(self) -> dict[str, str]:
        names = {"trades": self.trades_topic, "alerts": self.alerts_topic, "candles": self.candles_topic}
        return {names[kind]: kind for kind in self.kinds}

    def publish(
        self, topic: str, messages: Iterable[tuple[str, dict[str, Any]]], timestamp_ms: int | None = None
    ) -> int:
        """Publish `messages` (key, JSON object); `timestamp_ms` sets their Kafka timestamp (now if None)."""
        count = 0
        stamp = {} if timestamp_ms is None else {"timestamp": timestamp_ms}
        for key, message in messages:
            self.producer.produce(topic, json.dumps(message).encode(), key=key.encode(), **stamp)
            self.producer.poll(0)
            count += 1
        assert self.producer.flush(60) == 0
        return count

    def publish_trades(self, trades: Iterable[TradeTuple]) -> int:
        return self.publish(
            self.trades_topic,
            (
                (s, {"symbol": s, "price": _number(p), "volume": _number(v), "ts": ts, "source": "test"})
                for s, p, v, ts in trades
            ),
        )

    def publish_alerts(self, alerts: Iterable[dict[str, Any]]) -> int:
        return self.publish(self.alerts_topic, ((a["symbol"], a) for a in alerts))

    def drain(self) -> list[DrainResult]:
        """Drain until the topics are empty; one or more loads."""
        options = DrainOptions(
            topics=self.topics,
            group=self.group,
            max_seconds=60.0,
            dq_policy="off",
            partition_refresh_seconds=0.5,
        )
        results = []
        for _ in range(20):
            result = drain_once(self.settings, options)
            results.append(result)
            if all(s.lag_after == 0 for s in result.topics):
                return results
        raise AssertionError("the drain did not catch up in 20 runs")

    def close(self) -> None:
        for future in self.admin.delete_topics(list(self.topics)).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)


def record_split(settings: Settings, symbol: str, ex_date: date, from_factor: int, to_factor: int) -> None:
    """A split in raw.corporate_actions, stored as the loader role the way `tickhouse corporate-actions
    refresh` stores it."""
    with connect(settings, "loader") as conn:
        conn.execute(
            "insert into raw.corporate_actions"
            " (symbol, ex_date, action, from_factor, to_factor, source, fetched_at)"
            " values (%s, %s, 'split', %s, %s, 'file', now())",
            (symbol, ex_date, from_factor, to_factor),
        )


def raw_trades(settings: Settings) -> list[RawTrade]:
    """Every row of raw.trades, the oracle's input."""
    with connect(settings, "owner") as conn:
        rows = conn.execute(
            "select symbol, price, volume, ts, kafka_partition, kafka_offset, conditions from raw.trades"
        ).fetchall()
    return [RawTrade(*row[:6], conditions=None if row[6] is None else tuple(row[6])) for row in rows]


def fetch(settings: Settings, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with connect(settings, "owner") as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return list(cur.execute(query, params or None))


class Transformer:
    """`tickhouse transform` (dbt build) on one warehouse, timing every run. Each run starts
    from the project as `dbt parse` gives it for the warehouse (`manifest_for`: parsed once per
    test process), where `tickhouse transform` parses it first."""

    def __init__(self, settings: Settings, target_path: Path) -> None:
        self.settings = settings
        self.target_path = target_path
        self.seconds: list[float] = []

    def __call__(self, *args: str) -> float:
        manifest = manifest_for(self.settings)
        started = time.monotonic()
        # a target directory of its own: the project's target/ (the DAG's manifest) stays untouched
        build(["--target-path", str(self.target_path), *args], self.settings, manifest=manifest)
        self.seconds.append(time.monotonic() - started)
        return self.seconds[-1]


@contextlib.contextmanager
def own_feed(settings: Settings, kinds: Sequence[str] = ("trades", "alerts")) -> Iterator[Feed]:
    feed = Feed.create(settings, kinds)
    try:
        yield feed
    finally:
        feed.close()
