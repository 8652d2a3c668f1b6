"""Streams COPY text lines into the raw tables over one connection, inside one transaction.

A COPY stays open while lines for the same table keep coming, so PostgreSQL parses and indexes one
block while Python validates the next. It is closed and reopened only when the lines switch to
another table or need a day partition that does not exist yet (partitions cannot be created in the
middle of a COPY). Quarantine rows are few; they are buffered and copied in blocks too.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from contextlib import ExitStack
from datetime import date, timedelta
from types import TracebackType
from typing import Any

import psycopg
from psycopg.copy import Copy

from tickhouse.drain.rows import COLUMNS, TABLES

FaultHook = Callable[[str], None]

_EPOCH = date(1970, 1, 1)
_FLUSH_BYTES = 1 << 20
_QUARANTINE = "quarantine"
_PARTITION_NAME = re.compile(r"^(?:trades|quotes|alerts|candles)_(\d{8})$")


def epoch_day(day: int) -> date:
    return _EPOCH + timedelta(days=day)


def copy_statement(kind: str) -> str:
    table = "raw.quarantine" if kind == _QUARANTINE else TABLES[kind]
    return f"copy {table} ({', '.join(COLUMNS[kind])}) from stdin"


def existing_partition_days(conn: psycopg.Connection[Any], table: str) -> set[int]:
    """The UTC days (as days since 1970-01-01) that already have a partition of `table`."""
    rows = conn.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = %s::regclass",
        (table,),
    ).fetchall()
    days: set[int] = set()
    for (name,) in rows:
        match = _PARTITION_NAME.match(name)
        if match:
            text = match.group(1)
            day = date(int(text[:4]), int(text[4:6]), int(text[6:]))
            days.add((day - _EPOCH).days)
    return days


class CopyLoader:
    """Buffers COPY lines per table and streams them; `finish()` completes the last COPY."""

    def __init__(self, conn: psycopg.Connection[Any], fault_hook: FaultHook | None = None) -> None:
        self._conn = conn
        self._cur = conn.cursor()
        self._fault_hook = fault_hook
        self._buffers: dict[str, list[bytes]] = {k: [] for k in (*TABLES, _QUARANTINE)}
        self._sizes: dict[str, int] = dict.fromkeys(self._buffers, 0)
        self._new_days: dict[str, set[int]] = {k: set() for k in TABLES}
        self.known_days: dict[str, set[int]] = {
            k: existing_partition_days(conn, t) for k, t in TABLES.items()
        }
        self._stack: ExitStack | None = None
        self._copy: Copy | None = None
        self._open_kind: str | None = None
        self._mid_copy_fired = False
        self.copies_started = 0
        self.partitions_created: list[str] = []

    def add_block(self, kind: str, block: bytes, days: set[int]) -> None:
        """Queue COPY lines of raw.<kind> whose event times fall on `days` (since 1970-01-01)."""
        self._buffers[kind].append(block)
        new_days = days - self.known_days[kind]
        if new_days:
            self._new_days[kind].update(new_days)
        self._sizes[kind] += len(block)
        if self._sizes[kind] >= _FLUSH_BYTES:
            self.flush(kind)

    def add_quarantine(self, line: bytes) -> None:
        self._buffers[_QUARANTINE].append(line)
        self._sizes[_QUARANTINE] += len(line)
        if self._sizes[_QUARANTINE] >= _FLUSH_BYTES:
            self.flush(_QUARANTINE)

    def flush(self, kind: str) -> None:
        """Send what is buffered for `kind`, creating missing day partitions first."""
        buffer = self._buffers[kind]
        if not buffer:
            return
        new_days = self._new_days.get(kind)
        if new_days:
            self._close_copy()
            for day in sorted(new_days):
                self._cur.execute(
                    "select raw.ensure_day_partition(%s::regclass, %s::date)",
                    (TABLES[kind], epoch_day(day)),
                )
                self.partitions_created.append(f"{TABLES[kind]}@{epoch_day(day)}")
            self.known_days[kind].update(new_days)
            new_days.clear()
        if self._open_kind != kind:
            self._close_copy()
            self._open_copy(kind)
        assert self._copy is not None
        self._copy.write(b"".join(buffer))
        buffer.clear()
        self._sizes[kind] = 0
        if self._fault_hook is not None and not self._mid_copy_fired:
            self._mid_copy_fired = True
            self._fault_hook("mid_copy")

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
