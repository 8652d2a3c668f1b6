"""Tests own their data: what a test put into Kafka and the warehouse goes again afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import psycopg

from tickhouse import kafka
from tickhouse.config import Settings
from tickhouse.raw_tables import QUARANTINE, TABLES


def forget_topics(settings: Settings, topics: Sequence[str], group: str | None = None) -> None:
    """Delete `topics` from the broker and their rows from raw.* (and `group`'s offsets and load
    stats), so that no later test, dbt run or dashboard sees them. Best effort: a test that broke
    the stack on purpose may leave nothing to delete."""
    names = list(topics)
    with contextlib.suppress(psycopg.Error), psycopg.connect(
        settings.conninfo("owner"), autocommit=True
    ) as conn:
        for table in (*TABLES.values(), QUARANTINE):
            conn.execute(f"delete from {table} where kafka_topic = any(%s)", (names,))
        conn.execute("delete from raw.quarantine_replays where kafka_topic = any(%s)", (names,))
        conn.execute("delete from raw.kafka_offsets where topic = any(%s)", (names,))
        conn.execute("delete from raw.load_stats where topic = any(%s)", (names,))
        if group is not None:
            conn.execute("delete from raw.kafka_offsets where consumer_group = %s", (group,))
            conn.execute("delete from raw.load_stats where consumer_group = %s", (group,))
    with contextlib.suppress(Exception):
        for future in kafka.admin(settings.kafka_bootstrap_servers).delete_topics(names).values():
            with contextlib.suppress(Exception):
                future.result(timeout=30)
