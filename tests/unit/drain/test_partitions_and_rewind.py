"""The drain's view of partition ranges and the rewound-topic message (pure)."""

from __future__ import annotations

import pytest

from drain.errors import rewound_message
from drain.rows import MS_PER_DAY
from drain.targets.postgres.partitions import CoveredRanges, Partition

pytestmark = pytest.mark.unit

INF = float("inf")


def ranges(*bounds: tuple[float, float]) -> CoveredRanges:
    return CoveredRanges(Partition(f"p{i}", lo, hi) for i, (lo, hi) in enumerate(bounds))


def test_a_span_is_covered_by_one_partition_or_adjacent_ones() -> None:
    r = ranges((0, 10), (10, 20), (25, 30))
    assert r.covers(0, 10) and r.covers(3, 4) and r.covers(5, 20)  # 5..20 spans two
    assert not r.covers(15, 26)  # 20..25 is a gap
    assert not r.covers(-1, 3) and not r.covers(29, 31) and not r.covers(40, 41)
    assert r.covers(25, 30) and not ranges().covers(0, 1)


def test_days_and_infinite_bounds() -> None:
    r = ranges((-INF, 2 * MS_PER_DAY), (3 * MS_PER_DAY, INF))
    assert r.covers_day(0) and r.covers_day(1) and not r.covers_day(2) and r.covers_day(10_000)
    assert len(r) == 2


def test_the_rewound_message_says_what_happened_and_what_to_do() -> None:
    text = rewound_message({("market.trades", 0): (1000, 12), ("market.quotes", 2): (5, 0)}, "g")
    assert "market.trades[0]: the warehouse has loaded it up to offset 999" in text
    assert "resumes at 1000" in text and "restarts at offset 12" in text
    assert "deleted and re-created" in text and "Nothing was loaded from these partitions" in text
    assert "tickhouse drain --reset-topic market.quotes --reset-topic market.trades" in text
    assert "new topic name" in text
