"""Drain continuously for a bounded time: `drain_once` again and again, exactly once each.

The `ingest_market_data` DAG runs this as one long task (schedule `@continuous`): a trade waits
for the next drain of this loop (well under a second when data flows) instead of the next cron
tick plus a task start-up. Each iteration is one ordinary `drain_once` (its own transaction and
offsets), so a kill or a retry anywhere resumes from the last commit, as before.

The steps after each drain's commit (retention, the Great Expectations checks) run in one worker
thread, in order, off the way of the next drain and of the hot models; the loop waits for them
before it returns, and a `DataQualityError` of theirs (DRAIN_DQ_POLICY=fail) is raised then.

After every iteration that loaded rows, `after_load` runs (the DAG passes the hot dbt models,
`transform.hot`); a failure there is logged and retried with the next load, never allowed to stop
the drain: the loads stay pending for dbt, which rebuilds from them whenever it next succeeds.
The loop ends after `seconds`, or after `idle_seconds` with nothing to drain (so the Assets of a
burst are published soon after it ends), or when a topic was rewound (`TopicRewound`: the rows of
the other topics are committed; the caller publishes what was loaded and then fails the run).

A loop lives for minutes and starts threads all the time (each drain's Kafka consumer, each hot
run's dbt workers): it limits glibc's malloc to two arenas first (`tickhouse.allocator`), without
which its resident memory creeps up with every drain instead of settling.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from drain.errors import TopicRewound
from drain.options import DrainOptions
from drain.runner import drain_once
from drain.stats import DrainResult
from tickhouse.allocator import limit_malloc_arenas
from tickhouse.config import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LoopResult:
    """What a loop did: rows per raw table over all of its drains, and how it ended."""

    run_ids: list[str] = field(default_factory=list)
    loaded_by_table: dict[str, int] = field(default_factory=dict)
    drains: int = 0
    after_load_failures: int = 0
    stopped: str | None = None

    def add(self, result: DrainResult) -> int:
        self.drains += 1
        self.run_ids.append(result.run_id)
        loaded = 0
        for table, rows in result.loaded_by_table.items():
            self.loaded_by_table[table] = self.loaded_by_table.get(table, 0) + rows
            loaded += rows
        return loaded


def drain_continuously(
    settings: Settings,
    options: DrainOptions,
    *,
    seconds: float,
    idle_seconds: float,
    poll_seconds: float = 0.2,
    max_poll_seconds: float = 1.0,
    after_load: Callable[[DrainResult], object] | None = None,
    drain: Callable[..., DrainResult] = drain_once,
) -> LoopResult:
    """Run `drain` until `seconds` passed or nothing arrived for `idle_seconds`; between empty
    drains it waits `poll_seconds`, doubling up to `max_poll_seconds`.

    `DataQualityError` (DRAIN_DQ_POLICY=fail) and connection errors propagate: the rows of that
    drain are committed (or rolled back whole), and the caller fails or retries the task.
    """
    limit_malloc_arenas()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="drain-checks") as checks:
        pending: list[Future[None]] = []

        def defer(steps: Callable[[], None]) -> None:
            pending.append(checks.submit(steps))

        try:
            outcome = _loop(seconds, idle_seconds, poll_seconds, max_poll_seconds, after_load,
                            lambda: drain(settings, options, defer=defer))
        finally:
            # the checks of every committed drain run to the end, whatever ended the loop
            errors = [f.exception() for f in pending]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return outcome


def _loop(
    seconds: float,
    idle_seconds: float,
    poll_seconds: float,
    max_poll_seconds: float,
    after_load: Callable[[DrainResult], object] | None,
    drain: Callable[[], DrainResult],
) -> LoopResult:
    outcome = LoopResult()
    started = time.monotonic()
    last_data = started
    pause = poll_seconds
    while True:
        try:
            result = drain()
        except TopicRewound as err:
            outcome.add(err.result)
            outcome.stopped = str(err)
            return outcome
        loaded = outcome.add(result)
        if loaded:
            pause = poll_seconds
            if after_load is not None:
                try:
                    after_load(result)
                except Exception:  # the marts catch up with the next success; keep draining
                    outcome.after_load_failures += 1
                    log.exception("after-load step failed; the loads stay pending for dbt")
            # idle time counts from the end of this load's work, however long it took
            last_data = time.monotonic()
        now = time.monotonic()
        if now - started >= seconds or now - last_data >= idle_seconds:
            return outcome
        if not loaded:
            # nothing new: wait a moment, longer while it stays quiet (an idle stack should cost
            # little); while data flows, drain again at once
            time.sleep(pause)
            pause = min(pause * 2, max_poll_seconds)
