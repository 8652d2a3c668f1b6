"""Validate one batch of one topic's messages into typed rows, encoded for the target: the CPU-heavy
part of the drain.

A pure function of plain data (bytes and ints in, the target's rows out), so it runs the same inline
or in a worker process (DRAIN_PARSE_WORKERS > 0): JSON validation in Python is what bounds the
drain's throughput, and it is the one part that can use more cores. The transaction, offsets and
loading stay in the drain's own process either way.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from drain.rows import EVENT_MS, MS_PER_DAY, PARSERS, Encoding, Rejected
from tickhouse.schemas import InvalidMessage, now_ms

# (value, partition, offset, kafka timestamp ms or None, key)
Item = tuple[bytes | None, int, int, int | None, bytes | None]


@dataclass(slots=True)
class BatchResult:
    """One batch of one topic, as the target's rows: `rows` for raw.<kind> (what the encoding's
    `batch` made of them), `rejected` for raw.quarantine."""

    topic: str
    kind: str
    rows: Any = None
    days: set[int] = field(default_factory=set)  # UTC days (since 1970-01-01) of those rows
    loaded: int = 0
    rejected: list[Any] = field(default_factory=list)
    min_event_ms: int | None = None
    max_event_ms: int | None = None


def parse_batch(kind: str, topic: str, items: list[Item], encoding: Encoding) -> BatchResult:
    """Every message of `items` becomes a row of raw.<kind> or a rejected row of raw.quarantine."""
    parse = PARSERS[kind]
    encode = encoding.rows[kind]
    wire = encoding.wire.get(kind)
    event_ms_of = EVENT_MS[kind]
    now = now_ms()  # one "now" per batch for the "at most a day ahead" rule
    rows: list[Any] = []
    days: set[int] = set()
    rejected: list[Any] = []
    low: int | None = None
    high: int | None = None
    for value, partition, offset, kafka_ts, key in items:
        hit = None if wire is None else wire(value, topic, partition, offset, kafka_ts, now)
        if hit is not None:
            row, event_ms = hit
        else:
            try:
                record = parse(value, now)
                row = encode(record, topic, partition, offset, kafka_ts)
            except InvalidMessage as err:
                rejected.append(
                    encoding.rejected(
                        Rejected.of(topic, partition, offset, key, kafka_ts, value, str(err))
                    )
                )
                continue
            event_ms = event_ms_of(record)
        rows.append(row)
        days.add(event_ms // MS_PER_DAY)
        if low is None or event_ms < low:
            low = event_ms
        if high is None or event_ms > high:
            high = event_ms
    return BatchResult(
        topic=topic,
        kind=kind,
        rows=encoding.batch(rows),
        days=days,
        loaded=len(rows),
        rejected=rejected,
        min_event_ms=low,
        max_event_ms=high,
    )


class BatchParser:
    """Runs `parse_batch` inline (workers=0) or in a pool of worker processes, results in order.

    `submit` hands back the results that are ready (in submission order) so the caller can stream
    them into the target while later batches are still being parsed; `drain` waits for the rest.
    """

    def __init__(
        self, workers: int, encoding: Encoding, on_result: Callable[[BatchResult], None]
    ) -> None:
        self._encoding = encoding
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
            self._on_result(parse_batch(kind, topic, items, self._encoding))
            return
        self._pending.append(self._pool.submit(parse_batch, kind, topic, items, self._encoding))
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
