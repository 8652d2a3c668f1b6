"""Retention: drop whole partitions of the raw tables, and of raw.quarantine, once they are old.

`DRAIN_RETENTION_DAYS=N` drops a partition of raw.trades / quotes / alerts / candles when its whole
event-time range ends on or before 00:00 UTC of the day N days ago; `QUARANTINE_RETENTION_DAYS=N`
does the same for raw.quarantine by `loaded_at`. Rows are never deleted one by one, so the
granularity is the partition's: a month for live data (data is kept up to a month longer than N
days), a year for history loaded when it was already older than twelve months, a day for the day
partitions of installs before migration 006 (see `partitions`).

Runs after the drain's commit in its own short transactions: dropping a partition needs an ACCESS
EXCLUSIVE lock on the parent, so it waits at most a few seconds for readers and otherwise leaves the
work to the next run rather than stalling the pipeline. Late rows for a dropped range land in a new
partition of that range and are dropped again by the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from drain.rows import MS_PER_DAY
from drain.targets.postgres.partitions import Partition, read_ranges
from tickhouse.config import Settings
from tickhouse.raw_tables import QUARANTINE, TABLES

log = logging.getLogger(__name__)


def cutoff_ms(retention_days: int, today: date) -> int:
    """00:00 UTC of the day `retention_days` before `today`, in epoch ms."""
    cutoff = today - timedelta(days=retention_days)
    return (cutoff - date(1970, 1, 1)).days * MS_PER_DAY


def expired(partitions: Iterable[Partition], retention_days: int, today: date) -> list[Partition]:
    """The partitions whose whole range ends on or before the cutoff (a partial one is kept)."""
    cutoff = cutoff_ms(retention_days, today)
    return [p for p in partitions if p.upper_ms <= cutoff]


def drop_expired_partitions(
    settings: Settings,
    retention_days: int,
    today: date | None = None,
    quarantine_retention_days: int = 0,
) -> list[str]:
    """Drop the expired partitions of the raw tables and of raw.quarantine; returns their names."""
    plan = [(table, retention_days) for table in TABLES.values()]
    plan.append((QUARANTINE, quarantine_retention_days))
    plan = [(table, days) for table, days in plan if days > 0]
    if not plan:
        return []
    current = today or datetime.now(UTC).date()
    dropped: list[str] = []
    conn: psycopg.Connection[Any]
    with psycopg.connect(settings.conninfo("loader"), autocommit=True) as conn:
        for table, days in plan:
            for partition in expired(read_ranges(conn, table).partitions, days, current):
                try:
                    with conn.transaction():
                        conn.execute("set local lock_timeout = '5s'")
                        conn.execute(f"drop table if exists {partition.name}")
                except psycopg.errors.LockNotAvailable:
                    log.warning("retention: %s is in use, will drop it on a later run", partition.name)
                    continue
                dropped.append(partition.name)
    if dropped:
        log.info(
            "retention (%d days raw, %d days quarantine): dropped %s",
            retention_days, quarantine_retention_days, ", ".join(dropped),
        )
    return dropped
