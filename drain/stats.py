"""Per-run, per-topic drain statistics and the raw.load_stats table they are written to."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg


@dataclass(slots=True)
class TopicStats:
    """What one run did with one topic. `consumed == loaded + quarantined` always holds."""

    topic: str
    kind: str
    consumed: int = 0
    loaded: int = 0
    quarantined: int = 0
    lag_after: int | None = None
    min_event_ms: int | None = None
    max_event_ms: int | None = None
    # partition -> [first offset, last offset] consumed in this run
    offsets: dict[int, list[int]] = field(default_factory=dict)
    # partition -> next offset the previous run left in raw.kafka_offsets (absent: first run)
    resumed_from: dict[int, int] = field(default_factory=dict)
    gaps: int = 0  # offsets skipped by Kafka (deleted by retention, transaction markers)

    @property
    def table(self) -> str:
        return f"raw.{self.kind}"

    @property
    def min_event_time(self) -> datetime | None:
        return _dt(self.min_event_ms)

    @property
    def max_event_time(self) -> datetime | None:
        return _dt(self.max_event_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "table": self.table,
            "consumed": self.consumed,
            "loaded": self.loaded,
            "quarantined": self.quarantined,
            "lag_after": self.lag_after,
            "min_event_time": _iso(self.min_event_time),
            "max_event_time": _iso(self.max_event_time),
            "offsets": {str(p): {"from": r[0], "to": r[1]} for p, r in sorted(self.offsets.items())},
        }


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


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
