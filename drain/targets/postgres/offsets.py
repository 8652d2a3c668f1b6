"""The drain's source of truth for Kafka positions: raw.kafka_offsets, next offset per partition.

Written in the same transaction as the rows they cover, so a run's rows and its positions are
committed together or not at all. A transaction-scoped advisory lock per consumer group keeps two
drains (say the Airflow task and a `tickhouse drain --once`) from draining the same group at once.

Where a run starts (`start_offsets`): the raw tables are one per topic, whichever consumer group
loaded them, so a message is "already loaded" when any group's next offset for its partition is
past it. A run therefore starts each partition at the furthest next offset any group stored, not
only its own: a new DRAIN_GROUP (or one that fell behind another) continues where the warehouse is
instead of loading from offset 0 into the unique constraint. When no group has stored anything for
a topic but its raw table or raw.quarantine holds rows of it (the bookkeeping was deleted), the
start is one past the highest offset present, per partition.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from drain.errors import OffsetConflict
from tickhouse.raw_tables import QUARANTINE, TABLES

Position = tuple[str, int]


def lock_key(group: str) -> int:
    """A stable signed 64-bit advisory-lock key for the consumer group."""
    return int.from_bytes(zlib.crc32(f"tickhouse-drain:{group}".encode()).to_bytes(4, "big"), "big")


def lock_group(conn: psycopg.Connection[Any], group: str, timeout_s: float = 300.0) -> None:
    """Wait (up to `timeout_s`) until no other drain of `group` is running; held until commit.

    The wait for another drain of the group gets its own timeout; afterwards the connection's
    own lock_timeout (DRAIN_LOCK_TIMEOUT_S) applies again to everything the run locks.
    """
    with conn.cursor() as cur:
        cur.execute("select current_setting('lock_timeout')")
        row = cur.fetchone()
        configured = "0" if row is None else str(row[0])
        cur.execute("select set_config('lock_timeout', %s, true)", (f"{int(timeout_s * 1000)}ms",))
        cur.execute("select pg_advisory_xact_lock(%s)", (lock_key(group),))
        cur.execute("select set_config('lock_timeout', %s, true)", (configured,))


def read_offsets(
    conn: psycopg.Connection[Any], group: str, topics: Iterable[str]
) -> dict[Position, int]:
    rows = conn.execute(
        "select topic, partition, next_offset from raw.kafka_offsets"
        " where consumer_group = %s and topic = any(%s)",
        (group, list(topics)),
    ).fetchall()
    return {(topic, partition): next_offset for topic, partition, next_offset in rows}


def furthest_offsets(
    conn: psycopg.Connection[Any], topics: Iterable[str]
) -> dict[Position, int]:
    """The furthest next offset any consumer group stored, per partition of `topics`."""
    rows = conn.execute(
        "select topic, partition, max(next_offset) from raw.kafka_offsets"
        " where topic = any(%s) group by topic, partition",
        (list(topics),),
    ).fetchall()
    return {(topic, partition): next_offset for topic, partition, next_offset in rows}


def _present_sql(table: str) -> sql.Composed:
    # one index probe per Kafka partition (a loose index scan), not a scan of the topic's rows
    return sql.SQL(
        "with recursive parts(p) as ("
        " select min(kafka_partition) from {t} where kafka_topic = %(topic)s"
        " union all"
        " select (select min(kafka_partition) from {t}"
        "  where kafka_topic = %(topic)s and kafka_partition > parts.p)"
        " from parts where parts.p is not null)"
        " select p, (select max(kafka_offset) from {t}"
        "  where kafka_topic = %(topic)s and kafka_partition = p) + 1"
        " from parts where p is not null"
    ).format(t=sql.SQL(table))


def offsets_of_rows_present(
    conn: psycopg.Connection[Any], topic: str, kind: str
) -> dict[Position, int]:
    """One past the highest offset of `topic` in raw.<kind> or raw.quarantine, per partition."""
    found: dict[Position, int] = {}
    for table in (TABLES[kind], QUARANTINE):
        for partition, next_offset in conn.execute(_present_sql(table), {"topic": topic}):
            position = (topic, partition)
            found[position] = max(found.get(position, 0), next_offset)
    return found


def start_offsets(
    conn: psycopg.Connection[Any], topics: Mapping[str, str]
) -> dict[Position, int]:
    """Where this run starts each partition: the furthest any group got, see the module docstring.

    `topics` maps each topic to its kind (trades, quotes, ...).
    """
    starts = furthest_offsets(conn, topics)
    known = {topic for topic, _ in starts}
    for topic, kind in topics.items():
        if topic not in known:
            starts.update(offsets_of_rows_present(conn, topic, kind))
    return starts


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


def reset_topic(
    conn: psycopg.Connection[Any], group: str, topic: str, log_starts: Mapping[int, int]
) -> list[tuple[str, int, int | None, int]]:
    """Move the stored positions of `topic`, of every group that has some and of `group`, to the
    broker's log starts (`log_starts`, partition -> low watermark); partitions the broker no longer
    has go back to 0. Positions are stored explicitly so that rows loaded from the topic's earlier
    life are not taken for "already loaded" (`start_offsets`).

    For a topic that was deleted and re-created (see `drain.errors.TopicRewound`). Runs in the caller's
    transaction; returns (group, partition, old next offset or None, new next offset).
    """
    rows = conn.execute(
        "select consumer_group, partition, next_offset from raw.kafka_offsets"
        " where topic = %s for update",
        (topic,),
    ).fetchall()
    groups = sorted({g for g, _, _ in rows} | {group})
    stored = {(group, partition): offset for group, partition, offset in rows}
    changes: list[tuple[str, int, int | None, int]] = []
    for group in groups:
        partitions = sorted({p for g, p in stored if g == group} | set(log_starts))
        for partition in partitions:
            new = log_starts.get(partition, 0)
            old = stored.get((group, partition))
            if old == new:
                continue
            conn.execute(
                "insert into raw.kafka_offsets as o (consumer_group, topic, partition, next_offset)"
                " values (%s, %s, %s, %s) on conflict (consumer_group, topic, partition) do update"
                " set next_offset = excluded.next_offset, updated_at = now()",
                (group, topic, partition, new),
            )
            changes.append((group, partition, old, new))
    return changes
