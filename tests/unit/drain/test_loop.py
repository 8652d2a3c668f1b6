"""drain.loop.drain_continuously: when it drains, when it runs the after-load step, when it ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from drain.errors import TopicRewound
from drain.loop import drain_continuously
from drain.options import DrainOptions
from drain.stats import DrainResult, TopicStats
from tickhouse.config import load_settings

pytestmark = pytest.mark.unit

OPTIONS = DrainOptions(topics={"market.trades": "trades", "market.quotes": "quotes"})


def _result(run: int, trades: int, quotes: int = 0) -> DrainResult:
    now = datetime.now(UTC)
    return DrainResult(
        run_id=f"run{run}", started_at=now, finished_at=now,
        topics=[TopicStats("market.trades", "trades", consumed=trades, loaded=trades),
                TopicStats("market.quotes", "quotes", consumed=quotes, loaded=quotes)],
    )


def _scripted(loads: list[int]) -> tuple[Callable[..., DrainResult], list[int]]:
    """A drain that loads loads[i] trades on its i-th call, then nothing."""
    calls: list[int] = []

    def drain(settings: object, options: object, defer: object = None) -> DrainResult:
        calls.append(len(calls))
        i = len(calls) - 1
        return _result(i, loads[i] if i < len(loads) else 0)

    return drain, calls


def test_drains_until_idle_runs_after_load_per_load_and_sums_tables() -> None:
    drain, calls = _scripted([5, 0, 7, 3])
    hot: list[str] = []
    started = time.monotonic()
    outcome = drain_continuously(
        load_settings(), OPTIONS, seconds=60, idle_seconds=0.3, poll_seconds=0.05,
        after_load=lambda r: hot.append(r.run_id), drain=drain,
    )
    assert 0.3 <= time.monotonic() - started < 5
    assert hot == ["run0", "run2", "run3"]  # once per drain that loaded rows, in order
    assert outcome.loaded_by_table == {"raw.trades": 15, "raw.quotes": 0}
    assert outcome.drains == len(calls) >= 5 and outcome.stopped is None
    assert outcome.run_ids[0] == "run0"


def test_ends_after_its_time_while_data_flows_and_survives_a_failing_after_load() -> None:
    def drain(settings: object, options: object, defer: object = None) -> DrainResult:
        time.sleep(0.01)
        return _result(0, 1)

    def failing(result: DrainResult) -> None:
        raise RuntimeError("dbt is down")

    started = time.monotonic()
    outcome = drain_continuously(load_settings(), OPTIONS, seconds=0.3, idle_seconds=10,
                                 after_load=failing, drain=drain)
    assert 0.3 <= time.monotonic() - started < 3  # never idle, yet bounded
    assert outcome.drains > 5 and outcome.after_load_failures == outcome.drains
    assert outcome.loaded_by_table["raw.trades"] == outcome.drains


def test_a_rewound_topic_ends_the_loop_with_what_was_committed() -> None:
    results = iter([_result(0, 4)])

    def drain(settings: object, options: object, defer: object = None) -> DrainResult:
        for result in results:
            return result
        raise TopicRewound("market.quotes[0] was rewound", _result(1, 2))

    outcome = drain_continuously(load_settings(), OPTIONS, seconds=60, idle_seconds=60, drain=drain)
    assert outcome.stopped == "market.quotes[0] was rewound"
    assert outcome.loaded_by_table["raw.trades"] == 6 and outcome.run_ids == ["run0", "run1"]


def test_checks_after_commit_run_beside_the_loop_and_their_failure_is_raised_at_its_end() -> None:
    from drain.errors import DataQualityError

    checked: list[str] = []
    calls: list[int] = []

    def drain(settings: object, options: object, defer: Callable[..., object]) -> DrainResult:
        calls.append(len(calls))
        result = _result(len(calls), 3 if len(calls) <= 3 else 0)

        def steps() -> None:
            time.sleep(0.2)  # Great Expectations' pace
            checked.append(result.run_id)
            if result.run_id == "run2":
                raise DataQualityError("2 expectations failed", result)

        defer(steps)
        return result

    hot: list[float] = []
    with pytest.raises(DataQualityError, match="2 expectations failed"):
        drain_continuously(load_settings(), OPTIONS, seconds=60, idle_seconds=0.2,
                           poll_seconds=0.05, after_load=lambda r: hot.append(time.monotonic()),
                           drain=drain)
    # the three loads were not held up by 0.2 s checks each, and every check still ran
    assert len(hot) == 3 and hot[-1] - hot[0] < 0.3
    assert checked == [f"run{i}" for i in range(1, len(calls) + 1)]


def test_a_slow_after_load_does_not_count_as_idle_time() -> None:
    drain, _calls = _scripted([5, 0, 0])
    outcome = drain_continuously(load_settings(), OPTIONS, seconds=60, idle_seconds=0.3,
                                 poll_seconds=0.05, after_load=lambda r: time.sleep(0.5),
                                 drain=drain)
    # the loop kept draining after the 0.5 s hot run instead of ending as idle at once
    assert outcome.drains >= 3
