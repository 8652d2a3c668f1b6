"""Streams COPY text lines into the raw tables over one connection, inside one transaction.

A COPY stays open while lines for the same table keep coming, so PostgreSQL parses and indexes one
block while Python validates the next. It is closed and reopened only when the lines switch to
another table or need a partition that does not exist yet (partitions cannot be created in the
middle of a COPY; see `partitions` for the ranges they cover). Quarantine rows are few; they are
buffered and copied in blocks too, into the partition of the run's `loaded_at`.
"""

from __future__ import annotations

import contextlib
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import psycopg
from psycopg.copy import Copy

from drain.batches import BatchResult
from drain.rows import MS_PER_DAY
from drain.targets.postgres.partitions import CoveredRanges, ensure_partitions, read_ranges
from tickhouse.raw_tables import COLUMNS, QUARANTINE, TABLES, table

_FLUSH_BYTES = 1 << 20
_QUARANTINE = "quarantine"


def copy_statement(kind: str) -> str:
    """COPY of raw.<kind> (or raw.quarantine) from the lines of `copy_rows`."""
    return f"copy {table(kind)} ({', '.join(COLUMNS[kind])}) from stdin"


class CopyLoader:
    """Buffers COPY lines per table and streams them; `finish()` completes the last COPY."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._cur = conn.cursor()
        self._buffers: dict[str, list[bytes]] = {k: [] for k in (*TABLES, _QUARANTINE)}
        self._sizes: dict[str, int] = dict.fromkeys(self._buffers, 0)
        # days (since 1970-01-01) with rows queued whose partition is not known to exist yet
        self._new_days: dict[str, set[int]] = {k: set() for k in TABLES}
        # days known to be covered: the fast path of add_block is one set difference
        self._covered_days: dict[str, set[int]] = {k: set() for k in TABLES}
        self.ranges: dict[str, CoveredRanges] = {k: read_ranges(conn, t) for k, t in TABLES.items()}
        self._quarantine_ready = False
        self._stack: ExitStack | None = None
        self._copy: Copy | None = None
        self._open_kind: str | None = None
        self.copies_started = 0
        self.partitions_created: list[str] = []

    def add(self, batch: BatchResult) -> None:
        """Queue a batch: its block of raw.<kind> lines and its quarantine lines."""
        if batch.loaded:
            self.add_block(batch.kind, batch.rows, batch.days)
        for line in batch.rejected:
            self.add_quarantine(line)

    def add_block(self, kind: str, block: bytes, days: set[int]) -> None:
        """Queue COPY lines of raw.<kind> whose event times fall on `days` (since 1970-01-01)."""
        self._buffers[kind].append(block)
        unknown = days - self._covered_days[kind]
        if unknown:
            ranges = self.ranges[kind]
            for day in unknown:
                if ranges.covers_day(day):
                    self._covered_days[kind].add(day)
                else:
                    self._new_days[kind].add(day)
        self._sizes[kind] += len(block)
        if self._sizes[kind] >= _FLUSH_BYTES:
            self.flush(kind)

    def add_quarantine(self, line: bytes) -> None:
        self._buffers[_QUARANTINE].append(line)
        self._sizes[_QUARANTINE] += len(line)
        if self._sizes[_QUARANTINE] >= _FLUSH_BYTES:
            self.flush(_QUARANTINE)

    def flush(self, kind: str) -> None:
        """Send what is buffered for `kind`, creating missing partitions first."""
        buffer = self._buffers[kind]
        if not buffer:
            return
        if kind == _QUARANTINE:
            self._prepare_quarantine()
        else:
            self._prepare_days(kind)
        if self._open_kind != kind:
            self._close_copy()
            self._open_copy(kind)
        self._send(b"".join(buffer))
        buffer.clear()
        self._sizes[kind] = 0

    def _send(self, data: bytes) -> None:
        """Write a block into the open COPY (PostgreSQL parses it while Python goes on)."""
        assert self._copy is not None
        self._copy.write(data)

    def _prepare_days(self, kind: str) -> None:
        """Create the partitions the queued days of raw.<kind> still lack (whole days)."""
        new_days = self._new_days[kind]
        if not new_days:
            return
        self._close_copy()
        raw_table = TABLES[kind]
        for day in sorted(new_days):
            # a partition created for an earlier day (a month, a year) often covers this one
            if not self.ranges[kind].covers_day(day):
                lower = day * MS_PER_DAY
                self.partitions_created += ensure_partitions(
                    self._conn, raw_table, lower, lower + MS_PER_DAY
                )
                self.ranges[kind] = read_ranges(self._conn, raw_table)
            self._covered_days[kind].add(day)
        new_days.clear()

    def _prepare_quarantine(self) -> None:
        """raw.quarantine is partitioned by `loaded_at`: the partition of this transaction's now()."""
        if self._quarantine_ready:
            return
        self._close_copy()
        row = self._conn.execute("select extract(epoch from now())::float8 * 1000").fetchone()
        assert row is not None
        now_ms = float(row[0])
        if not read_ranges(self._conn, QUARANTINE).covers(now_ms, now_ms + 1):
            rows = self._conn.execute(
                "select p::text from raw.ensure_partitions(%s::regclass, now(),"
                " now() + interval '1 millisecond') as p",
                (QUARANTINE,),
            ).fetchall()
            self.partitions_created += [name for (name,) in rows]
        self._quarantine_ready = True

    def finish(self) -> None:
        """Flush every buffer and complete the open COPY (the transaction stays open)."""
        for kind in self._buffers:
            self.flush(kind)
        self._close_copy()

    def abort(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Fail the open COPY (if any) so that the transaction can only roll back."""
        stack, self._stack, self._copy, self._open_kind = self._stack, None, None, None
        if stack is not None:
            # the original error matters, not how COPY ended
            with contextlib.suppress(Exception):
                stack.__exit__(exc_type, exc, tb)

    def _open_copy(self, kind: str) -> None:
        stack = ExitStack()
        self._copy = stack.enter_context(self._cur.copy(copy_statement(kind)))
        self._stack = stack
        self._open_kind = kind
        self.copies_started += 1

    def _close_copy(self) -> None:
        stack, self._stack, self._copy, self._open_kind = self._stack, None, None, None
        if stack is not None:
            stack.close()
