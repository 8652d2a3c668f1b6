"""Retention: drop raw day partitions whose whole day is older than DRAIN_RETENTION_DAYS.

Runs after the drain's commit in its own short transaction: dropping a partition needs an ACCESS
EXCLUSIVE lock on the parent, so it waits at most a few seconds for readers and otherwise leaves the
work to the next run rather than stalling the pipeline. Late rows for a dropped day land in a new
partition of that day and are dropped again by the next run.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from tickhouse.config import Settings
from tickhouse.drain.loader import epoch_day, existing_partition_days
from tickhouse.drain.rows import TABLES

log = logging.getLogger(__name__)


def expired_days(days: set[int], retention_days: int, today: date) -> list[int]:
    """The partition days (days since 1970-01-01) older than `retention_days` before `today`."""
    cutoff = today - timedelta(days=retention_days)
    return sorted(d for d in days if epoch_day(d) < cutoff)


def drop_expired_partitions(
    settings: Settings, retention_days: int, today: date | None = None
) -> list[str]:
    """Drop expired day partitions of the raw tables; returns the names dropped."""
    if retention_days <= 0:
        return []
    current = today or datetime.now(UTC).date()
    dropped: list[str] = []
    conn: psycopg.Connection[Any]
    with psycopg.connect(settings.conninfo("loader"), autocommit=True) as conn:
        for table in TABLES.values():
            for day in expired_days(existing_partition_days(conn, table), retention_days, current):
                name = f"{table}_{epoch_day(day):%Y%m%d}"
                try:
                    with conn.transaction():
                        conn.execute("set local lock_timeout = '5s'")
                        conn.execute(f"drop table if exists {name}")
                except psycopg.errors.LockNotAvailable:
                    log.warning("retention: %s is in use, will drop it on a later run", name)
                    continue
                dropped.append(name)
    if dropped:
        log.info("retention %d days: dropped %s", retention_days, ", ".join(dropped))
    return dropped
