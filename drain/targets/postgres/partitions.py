"""Which event times the partitions of a raw table cover, and making sure a batch's rows have one.

The ranges themselves are chosen in PostgreSQL (`raw.ensure_partitions`, tickhouse/sql/006): a
calendar month for event times of the last twelve months and the near future, a calendar year for
older history, clipped so as never to overlap a partition that exists, each created on its own and
then ATTACHed. Why not one partition per day (the scheme before 006): every query plans and locks
every partition it cannot prune, and ten years of daily history made 2,613 partitions of
raw.trades, enough to exhaust PostgreSQL's shared lock table ("out of shared memory") for every dbt
run. With months and years a table holds about (years of history) + 12 x (years of live data)
partitions, and one drain run creates at most one per year since 1970 plus about thirteen months,
whatever a batch contains: a limit no careless or hostile batch can push past the server's.

This module keeps the drain's view of those ranges (`CoveredRanges`, pure) so that a batch whose
days are already covered costs no query, and calls `raw.ensure_partitions` for the rest. It also
plans the opt-in merge of the day partitions an install made before 006 (`plan_day_merges`,
`tickhouse drain --merge-day-partitions`): migrating never rewrites rows, so an install that
already holds thousands of day partitions keeps them until it merges them (or retention drops
them).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from drain.rows import MS_PER_DAY

_RANGES_SQL = (
    "select child::text, extract(epoch from lower_bound)::float8 * 1000,"
    " extract(epoch from upper_bound)::float8 * 1000"
    " from raw.partition_ranges(%s::regclass) order by 2"
)


@dataclass(frozen=True, slots=True)
class Partition:
    """One attached partition: its name and [lower, upper) in epoch ms (infinite for MIN/MAXVALUE)."""

    name: str
    lower_ms: float
    upper_ms: float


class CoveredRanges:
    """The event-time ranges a table's partitions cover; answers "has this span a partition?"."""

    def __init__(self, partitions: Iterable[Partition]) -> None:
        self.partitions = sorted(partitions, key=lambda p: p.lower_ms)
        self._lowers = [p.lower_ms for p in self.partitions]

    def covers(self, lower_ms: float, upper_ms: float) -> bool:
        """Whether every instant of [lower_ms, upper_ms) falls into some partition."""
        i = bisect_right(self._lowers, lower_ms) - 1
        while 0 <= i < len(self.partitions):
            part = self.partitions[i]
            if part.lower_ms > lower_ms:
                return False
            if part.upper_ms >= upper_ms:
                return True
            lower_ms = part.upper_ms
            i += 1
        return False

    def covers_day(self, day: int) -> bool:
        """Whether the UTC day `day` (days since 1970-01-01) is covered from start to end."""
        return self.covers(day * MS_PER_DAY, (day + 1) * MS_PER_DAY)

    def __len__(self) -> int:
        return len(self.partitions)


def read_ranges(conn: psycopg.Connection[Any], table: str) -> CoveredRanges:
    """The attached partitions of `table` (e.g. 'raw.trades') as the catalog has them now."""
    rows = conn.execute(_RANGES_SQL, (table,)).fetchall()
    return CoveredRanges(Partition(name, lower, upper) for name, lower, upper in rows)


def _timestamp(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ensure_partitions(
    conn: psycopg.Connection[Any], table: str, lower_ms: float, upper_ms: float
) -> list[str]:
    """Create (and attach) what `table` lacks for [lower_ms, upper_ms); returns the names created.

    Runs in the caller's transaction: the new partitions commit (or roll back) with the rows.
    """
    rows = conn.execute(
        "select p::text from raw.ensure_partitions(%s::regclass, %s, %s) as p",
        (table, _timestamp(lower_ms), _timestamp(upper_ms)),
    ).fetchall()
    return [name for (name,) in rows]


_DAY_NAME = re.compile(r"_\d{8}$")


def is_day_partition(partition: Partition) -> bool:
    """A one-day partition as the drain made them before migration 006 (`<table>_YYYYMMDD`)."""
    return (
        bool(_DAY_NAME.search(partition.name))
        and partition.upper_ms - partition.lower_ms == MS_PER_DAY
        and partition.lower_ms % MS_PER_DAY == 0
    )


@dataclass(frozen=True, slots=True)
class Merge:
    """Day partitions to merge into one partition of [lower_ms, upper_ms)."""

    lower_ms: float
    upper_ms: float
    days: tuple[str, ...]


def plan_day_merges(
    ranges: CoveredRanges, natural: Callable[[float], tuple[float, float]]
) -> list[Merge]:
    """Group the day partitions by the range the current scheme gives their day (`natural`: the
    month or year), clipped by the partitions that are not day partitions; groups of one stay."""
    others = [p for p in ranges.partitions if not is_day_partition(p)]
    groups: dict[tuple[float, float], list[str]] = {}
    for day in (p for p in ranges.partitions if is_day_partition(p)):
        lower, upper = natural(day.lower_ms)
        lower = max([lower, *(o.upper_ms for o in others if o.upper_ms <= day.lower_ms)])
        upper = min([upper, *(o.lower_ms for o in others if o.lower_ms >= day.upper_ms)])
        groups.setdefault((lower, upper), []).append(day.name)
    return [
        Merge(lower, upper, tuple(names))
        for (lower, upper), names in sorted(groups.items())
        if len(names) > 1
    ]


def natural_range(conn: psycopg.Connection[Any], at_ms: float) -> tuple[float, float]:
    """raw.natural_partition_range of an instant, in epoch ms."""
    row = conn.execute(
        "select extract(epoch from lower_bound)::float8 * 1000,"
        " extract(epoch from upper_bound)::float8 * 1000"
        " from raw.natural_partition_range(%s)",
        (_timestamp(at_ms),),
    ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1])


def merge(conn: psycopg.Connection[Any], table: str, plan: Merge) -> str:
    """Run one planned merge in the caller's transaction; returns the merged partition's name."""
    row = conn.execute(
        "select raw.merge_partitions(%s::regclass, %s, %s)::text",
        (table, _timestamp(plan.lower_ms), _timestamp(plan.upper_ms)),
    ).fetchone()
    assert row is not None
    return str(row[0])
