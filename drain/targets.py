"""Where a drain run writes: PostgreSQL (default) or Snowflake, chosen by WAREHOUSE.

Both keep the same contract: the run's rows, its next offsets and its load stats are committed
in one transaction, or nothing is. The runner consumes and validates once (`runner._consume`,
`batches.parse_batch`) and hands rows to `target.loader`; the target does the rest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from drain.stats import TopicStats
from tickhouse.config import Settings

if TYPE_CHECKING:
    from drain.snowflake_loader import SnowflakeLoader

log = logging.getLogger(__name__)

FaultHook = Callable[[str], None]
Position = tuple[str, int]


class RowLoader(Protocol):
    partitions_created: list[str]

    def add_block(self, kind: str, block: bytes, days: set[int]) -> None: ...
    def add_quarantine(self, line: bytes) -> None: ...
    def finish(self) -> None: ...
    def abort(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Target(Protocol):
    kind: str

    def start(self, group: str, topics: Mapping[str, str]) -> dict[Position, int]:
        """Claim the group (where the warehouse can); where each partition starts (topic -> kind)."""
        ...

    def loader(self) -> RowLoader: ...

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


class PostgresTarget:
    """COPY into the partitioned raw tables inside the run's one transaction."""

    kind = "postgres"

    def __init__(self, settings: Settings, fault_hook: FaultHook | None = None) -> None:
        import psycopg

        # lock_timeout: behind someone's ACCESS EXCLUSIVE lock (a manual ALTER, a long migration)
        # the run fails clearly after a minute and Airflow retries, instead of hanging to its timeout
        self._conn = psycopg.connect(
            settings.conninfo("loader"),
            application_name="tickhouse-drain",
            options=f"-c lock_timeout={int(os.environ.get('DRAIN_LOCK_TIMEOUT_S', '60')) * 1000}",
        )
        self._fault_hook = fault_hook
        self._stored: dict[Position, int] = {}

    def start(self, group: str, topics: Mapping[str, str]) -> dict[Position, int]:
        from drain.offsets import lock_group, read_offsets, start_offsets

        lock_group(self._conn, group)
        # the commit moves the group's own offsets only from where they are now (OffsetConflict)
        self._stored = read_offsets(self._conn, group, topics)
        starts = start_offsets(self._conn, topics)
        for position, offset in self._stored.items():
            starts[position] = max(offset, starts.get(position, offset))
        return starts

    def loader(self) -> RowLoader:
        from drain.loader import CopyLoader

        return CopyLoader(self._conn, self._fault_hook)

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
        from drain.offsets import save_offsets
        from drain.stats import write_load_stats

        save_offsets(self._conn, group, positions, self._stored)
        write_load_stats(
            self._conn, run_id=run_id, group=group, started_at=started_at,
            finished_at=finished_at, stats=stats,
        )
        self._conn.commit()

    def rollback(self) -> None:
        self._conn.rollback()

    def close(self) -> None:
        self._conn.close()


class SnowflakeTarget:
    """Stage with write_pandas, then insert-if-absent + offsets + stats in one transaction."""

    kind = "snowflake"

    def __init__(self, conn: Any, fault_hook: FaultHook | None = None) -> None:
        from tickhouse.snowflake.schema import setup_raw

        self._conn = conn
        self._fault_hook = fault_hook
        self._loader: SnowflakeLoader | None = None
        self._in_transaction = False
        setup_raw(conn)  # idempotent; a fresh account needs no separate setup step

    def start(self, group: str, topics: Mapping[str, str]) -> dict[Position, int]:
        # Snowflake inserts only rows whose coordinates are absent, so a new group's first run
        # from offset 0 adds nothing twice; it starts from the group's own offsets
        from drain.snowflake_loader import read_offsets

        return read_offsets(self._conn, group, topics)

    def loader(self) -> RowLoader:
        from drain.snowflake_loader import SnowflakeLoader

        loader = SnowflakeLoader(self._conn, self._fault_hook)
        self._loader = loader
        return loader

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
        from drain.snowflake_loader import save_offsets, write_load_stats

        # one load time for the run's rows and its LOAD_STATS rows: how dbt finds a load's rows
        loaded_at_ms = int(finished_at.timestamp() * 1000)
        with self._conn.cursor() as cur:
            cur.execute("begin")
            self._in_transaction = True
            if self._loader is not None:
                inserted = self._loader.move_staged_rows(cur, loaded_at_ms)
                log.info("snowflake: inserted %s (rows already present are skipped)", inserted)
            save_offsets(cur, group, positions, start_offsets)
            write_load_stats(
                cur, run_id=run_id, group=group, started_at=started_at,
                finished_at=finished_at, stats=stats, loaded_at_ms=loaded_at_ms,
            )
            if self._fault_hook is not None:
                self._fault_hook("in_transaction_before_commit")
            cur.execute("commit")
            self._in_transaction = False

    def rollback(self) -> None:
        if self._in_transaction:
            self._in_transaction = False
            self._conn.rollback()

    def close(self) -> None:
        self._conn.close()


def open_target(
    settings: Settings, warehouse: str | None = None, fault_hook: FaultHook | None = None
) -> Target:
    """The target WAREHOUSE selects (tickhouse.snowflake.settings.selected_warehouse)."""
    from tickhouse.snowflake.settings import selected_warehouse

    chosen = warehouse or selected_warehouse()
    if chosen == "snowflake":
        from tickhouse.snowflake.settings import connect

        return SnowflakeTarget(connect(), fault_hook)
    return PostgresTarget(settings, fault_hook)
