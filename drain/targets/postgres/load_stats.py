"""raw.load_stats: one row per run and topic, written in the run's transaction."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import psycopg

from drain.stats import TopicStats


def write_load_stats(
    conn: psycopg.Connection[Any],
    *,
    run_id: str,
    group: str,
    started_at: datetime,
    finished_at: datetime,
    stats: list[TopicStats],
) -> None:
    """Insert one raw.load_stats row per topic (in the caller's transaction)."""
    duration_ms = int((finished_at - started_at).total_seconds() * 1000)
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.load_stats (run_id, consumer_group, topic, target_table, started_at,"
            " finished_at, duration_ms, consumed, loaded, quarantined, lag_after, min_event_time,"
            " max_event_time, partitions)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
            [
                (
                    run_id, group, s.topic, s.table, started_at, finished_at, duration_ms,
                    s.consumed, s.loaded, s.quarantined, s.lag_after, s.min_event_time,
                    s.max_event_time,
                    json.dumps({str(p): {"from": r[0], "to": r[1]} for p, r in s.offsets.items()}),
                )
                for s in stats
            ],
        )
