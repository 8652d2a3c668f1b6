"""The protocol every drain target keeps (`Target`, its `Loader` and its steps after the commit).

A target keeps the contract of a drain run: the run's rows, its next offsets and its load stats
are committed in one transaction, or nothing is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol

from drain.batches import BatchResult
from drain.rows import Encoding
from drain.stats import DrainResult, Position, TopicStats


class Loader(Protocol):
    """Takes the run's batches while it consumes; nothing is visible before the target commits."""

    partitions_created: list[str]

    def add(self, batch: BatchResult) -> None: ...
    def finish(self) -> None: ...
    def abort(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class AfterCommit(Protocol):
    """One step after the commit (retention, data quality): it records what it did in the result,
    and may raise (DataQualityError) only to report, never to undo: the rows are committed."""

    def __call__(self, result: DrainResult) -> None: ...


class Target(Protocol):
    kind: str
    encoding: Encoding

    def start(self, group: str, topics: Mapping[str, str]) -> dict[Position, int]:
        """Claim the group (where the warehouse can); where each partition starts (topic -> kind)."""
        ...

    def loader(self) -> Loader: ...

    def commit(
        self,
        group: str,
        positions: Mapping[Position, int],
        start_offsets: Mapping[Position, int],
        *,
        run_id: str,
        started_at: datetime,
        finished_at: datetime,
        stats: list[TopicStats],
    ) -> None:
        """Offsets, load stats and the loaded rows, in one transaction; then COMMIT."""
        ...

    def rollback(self) -> None: ...
    def close(self) -> None: ...

    def after_commit(self) -> Sequence[AfterCommit]:
        """The steps to run, in order, once the run is committed and the connection closed."""
        ...
