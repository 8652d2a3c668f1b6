"""The drain's one exception root, `DrainError`, and the errors a caller may want to tell apart.

Each message says what happened, with the offending topic, partition or group, and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tickhouse.errors import TickhouseError

if TYPE_CHECKING:
    from drain.stats import DrainResult, Rewound


class DrainError(TickhouseError):
    """Root of every error the drain raises on purpose."""


class OffsetConflict(DrainError):
    """raw.kafka_offsets moved under this run: another drain of the same group committed first."""


class DataQualityError(DrainError):
    """The loaded rows failed expectations and DRAIN_DQ_POLICY=fail (the rows are committed)."""

    def __init__(self, message: str, result: DrainResult) -> None:
        super().__init__(message)
        self.result = result


class TopicRewound(DrainError):
    """Partitions whose broker log is behind what the warehouse loaded; the rest is committed."""

    def __init__(self, message: str, result: DrainResult) -> None:
        super().__init__(message)
        self.result = result


def rewound_message(rewound: Rewound, group: str) -> str:
    """What happened to the rewound partitions and what to do about it."""
    lines = [
        f"{topic}[{partition}]: the warehouse has loaded it up to offset {loaded - 1} (group "
        f"{group!r} resumes at {loaded}), but the broker's log of it now ends or restarts at "
        f"offset {broker}"
        for (topic, partition), (loaded, broker) in sorted(rewound.items())
    ]
    topics = sorted({topic for topic, _ in rewound})
    return (
        "Kafka topic rewound: " + "; ".join(lines) + ". The topic was deleted and re-created, or "
        "the broker lost data: its new messages would reuse Kafka coordinates (topic, partition, "
        "offset) that the raw tables already hold. Nothing was loaded from these partitions; the "
        "other topics were drained and committed. Every drain run stops here the same way until "
        "you choose: to keep the rows already loaded and drain the new messages under the same "
        "name, run `tickhouse drain --reset-topic "
        + " --reset-topic ".join(topics)
        + "` (the stored positions move to the broker's current start; a message re-published "
        "unchanged at an offset it had before is a duplicate of a loaded row and is refused: "
        "delete those rows first), or publish to a new topic name instead (TRADES_TOPIC, "
        "QUOTES_TOPIC, ALERTS_TOPIC, ...) and leave this one alone."
    )
