"""Validate and format one batch of one topic's messages: the CPU-heavy part of the drain.

A pure function of plain data (bytes and ints in, bytes out), so it runs the same inline or in a
worker process (DRAIN_PARSE_WORKERS > 0): JSON validation in Python is what bounds the drain's
throughput, and it is the one part that can use more cores. The transaction, offsets and COPY stay
in the drain's own process either way.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from drain.rows import LINE_BUILDERS, MS_PER_DAY, quarantine_line
from tickhouse.schemas import InvalidMessage

# (value, partition, offset, kafka timestamp ms or None, key)
Item = tuple[bytes | None, int, int, int | None, bytes | None]


@dataclass(slots=True)
class BatchResult:
    topic: str
    kind: str
    block: bytes = b""  # COPY text lines for raw.<kind>
    days: set[int] = field(default_factory=set)  # UTC days (since 1970-01-01) of those rows
    loaded: int = 0
    quarantine: list[bytes] = field(default_factory=list)  # COPY text lines for raw.quarantine
    min_event_ms: int | None = None
    max_event_ms: int | None = None


def parse_batch(kind: str, topic: str, items: list[Item]) -> BatchResult:
    """Every message of `items` becomes a raw.<kind> line or a raw.quarantine line."""
    build = LINE_BUILDERS[kind]
    lines: list[bytes] = []
    days: set[int] = set()
    quarantine: list[bytes] = []
    low: int | None = None
    high: int | None = None
    for value, partition, offset, kafka_ts, key in items:
        try:
            line, event_ms = build(value, topic, partition, offset, kafka_ts)
        except InvalidMessage as err:
            quarantine.append(
                quarantine_line(topic, partition, offset, key, kafka_ts, value, str(err))
            )
            continue
        lines.append(line)
        days.add(event_ms // MS_PER_DAY)
        if low is None or event_ms < low:
            low = event_ms
        if high is None or event_ms > high:
            high = event_ms
    return BatchResult(
        topic=topic,
        kind=kind,
        block=b"".join(lines),
        days=days,
        loaded=len(lines),
        quarantine=quarantine,
        min_event_ms=low,
        max_event_ms=high,
    )


class BatchParser:
    """Runs `parse_batch` inline (workers=0) or in a pool of worker processes, results in order.

    `submit` hands back the results that are ready (in submission order) so the caller can stream
    them into COPY while later batches are still being parsed; `drain` waits for the rest.
    """

    def __init__(self, workers: int, on_result: Callable[[BatchResult], None]) -> None:
        self._on_result = on_result
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[Future[BatchResult]] = deque()
        self._max_pending = 2 * workers
        if workers > 0:
            # spawn, not fork: the parent runs librdkafka and libpq threads
            self._pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")
            )

    def submit(self, kind: str, topic: str, items: list[Item]) -> None:
        if self._pool is None:
            self._on_result(parse_batch(kind, topic, items))
            return
        self._pending.append(self._pool.submit(parse_batch, kind, topic, items))
        while self._pending and (
            len(self._pending) > self._max_pending or self._pending[0].done()
        ):
            self._on_result(self._pending.popleft().result())

    def drain(self) -> None:
        while self._pending:
            self._on_result(self._pending.popleft().result())

    def close(self) -> None:
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
