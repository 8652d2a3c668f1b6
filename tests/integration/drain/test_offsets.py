"""The group lock and where a run starts, against the real database."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from drain.targets.postgres.offsets import lock_group, start_offsets
from tests.integration.drain.conftest import Topics
from tests.integration.drain.helpers import trade
from tickhouse.config import Settings

pytestmark = pytest.mark.integration


def test_the_connections_lock_timeout_applies_again_after_the_group_lock(settings: Settings) -> None:
    """DRAIN_LOCK_TIMEOUT_S becomes the connection's lock_timeout; waiting for the group lock has
    its own, and the run's statements after it must be back under the configured one."""
    with psycopg.connect(settings.conninfo("loader"), options="-c lock_timeout=1234") as conn:
        lock_group(conn, "test-lock-timeout", timeout_s=5)
        assert conn.execute("show lock_timeout").fetchone() == ("1234ms",)
        conn.rollback()
        assert conn.execute("show lock_timeout").fetchone() == ("1234ms",)


def test_a_run_starts_where_any_group_got_or_past_the_rows_present(
    topics: Topics, db: psycopg.Connection[Any]
) -> None:
    first: list[bytes | None] = [trade(i) for i in range(30)]
    second: list[bytes | None] = [*(trade(i) for i in range(10)), b"bad"]
    topics.produce(topics.trades, first, partition=0)
    topics.produce(topics.trades, second, partition=1)
    topics.drain_until_caught_up()
    mapping = topics.mapping
    with psycopg.connect(topics.settings.conninfo("loader")) as conn:
        expected = {(topics.trades, 0): 30, (topics.trades, 1): 11}
        assert start_offsets(conn, mapping) == expected
        conn.execute(  # a group that fell behind does not pull the start back
            "insert into raw.kafka_offsets (consumer_group, topic, partition, next_offset)"
            " values ('behind', %s, 0, 3)",
            (topics.trades,),
        )
        assert start_offsets(conn, mapping) == expected
        # no bookkeeping at all: one past the highest offset in raw.trades or raw.quarantine
        conn.execute("delete from raw.kafka_offsets where topic = %s", (topics.trades,))
        assert start_offsets(conn, mapping) == expected
        conn.rollback()
