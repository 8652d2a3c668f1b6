"""The drain's source of truth for Kafka positions: raw.kafka_offsets, next offset per partition.

Written in the same transaction as the rows they cover, so a run's rows and its positions are
committed together or not at all. A transaction-scoped advisory lock per consumer group keeps two
drains (say the Airflow task and a `tickhouse drain --once`) from draining the same group at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

Position = tuple[str, int]


class OffsetConflict(RuntimeError):
    """raw.kafka_offsets moved under this run: another drain of the same group committed first."""


def lock_key(group: str) -> int:
    """A stable signed 64-bit advisory-lock key for the consumer group."""
    return int.from_bytes(zlib.crc32(f"tickhouse-drain:{group}".encode()).to_bytes(4, "big"), "big")


def lock_group(conn: psycopg.Connection[Any], group: str, timeout_s: float = 300.0) -> None:
    """Wait (up to `timeout_s`) until no other drain of `group` is running; held until commit."""
    with conn.cursor() as cur:
        cur.execute(f"set local lock_timeout = '{int(timeout_s * 1000)}ms'")
        cur.execute("select pg_advisory_xact_lock(%s)", (lock_key(group),))
        cur.execute("set local lock_timeout = 0")


def read_offsets(
    conn: psycopg.Connection[Any], group: str, topics: Iterable[str]
) -> dict[Position, int]:
    rows = conn.execute(
        "select topic, partition, next_offset from raw.kafka_offsets"
        " where consumer_group = %s and topic = any(%s)",
        (group, list(topics)),
    ).fetchall()
    return {(topic, partition): next_offset for topic, partition, next_offset in rows}


def save_offsets(
    conn: psycopg.Connection[Any],
    group: str,
    next_offsets: Mapping[Position, int],
    expected: Mapping[Position, int],
) -> None:
    """Upsert the next offsets; refuses to move a partition that is not where this run found it."""
    if not next_offsets:
        return
    with conn.cursor() as cur:
        for (topic, partition), offset in next_offsets.items():
            cur.execute(
                "insert into raw.kafka_offsets as o (consumer_group, topic, partition, next_offset)"
                " values (%s, %s, %s, %s)"
                " on conflict (consumer_group, topic, partition) do update"
                " set next_offset = excluded.next_offset, updated_at = now()"
                " where o.next_offset is not distinct from %s"
                " returning 1",
                (group, topic, partition, offset, expected.get((topic, partition))),
            )
            if cur.fetchone() is None:
                raise OffsetConflict(
                    f"raw.kafka_offsets for group {group!r} {topic}[{partition}] is no longer "
                    f"{expected.get((topic, partition))}; another drain committed first. "
                    "Nothing was written; run the drain again."
                )
