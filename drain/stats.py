"""What a drain run did: per topic (`TopicStats`, written to raw.load_stats) and as a whole
(`DrainResult`, what `drain_once` returns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Position = tuple[str, int]  # (topic, partition)
# (topic, partition) -> (next offset the warehouse has, offset the broker's log ends or restarts at)
Rewound = dict[Position, tuple[int, int]]


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


@dataclass(slots=True)
class DrainResult:
    run_id: str
    started_at: datetime
    finished_at: datetime
    topics: list[TopicStats]
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    dq_failures: list[str] = field(default_factory=list)
    dq_checked: bool = False
    rewound: Rewound = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def loaded_by_table(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for s in self.topics:
            totals[s.table] = totals.get(s.table, 0) + s.loaded
        return totals

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "duration_s": round(self.duration_s, 3),
            "topics": [s.as_dict() for s in self.topics],
            "loaded_by_table": self.loaded_by_table,
            "partitions_created": self.partitions_created,
            "partitions_dropped": self.partitions_dropped,
            "dq_failures": self.dq_failures,
            "rewound": {
                f"{topic}[{partition}]": {"warehouse_next": loaded, "broker": broker}
                for (topic, partition), (loaded, broker) in sorted(self.rewound.items())
            },
        }
