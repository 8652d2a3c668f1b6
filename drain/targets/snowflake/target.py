"""The Snowflake target: stage with write_pandas, then insert-if-absent + offsets + stats in one
transaction (see `loader` for the order of a run and why it is safe)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from drain.options import DrainOptions
from drain.stats import DrainResult, Position, TopicStats
from drain.targets.protocol import AfterCommit, Loader
from drain.targets.snowflake import staging_rows
from drain.targets.snowflake.loader import SnowflakeLoader, read_offsets, save_offsets, write_load_stats
from tickhouse.snowflake.schema import setup_raw

log = logging.getLogger(__name__)


class SnowflakeTarget:
    kind = "snowflake"
    encoding = staging_rows.ENCODING

    def __init__(self, conn: Any, options: DrainOptions) -> None:
        self._conn = conn
        self._options = options
        self._loader: SnowflakeLoader | None = None
        self._in_transaction = False
        setup_raw(conn)  # idempotent; a fresh account needs no separate setup step

    def start(self, group: str, topics: Mapping[str, str]) -> dict[Position, int]:
        # Snowflake inserts only rows whose coordinates are absent, so a new group's first run
        # from offset 0 adds nothing twice; it starts from the group's own offsets
        return read_offsets(self._conn, group, topics)

    def loader(self) -> Loader:
        self._loader = SnowflakeLoader(self._conn)
        return self._loader

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
            cur.execute("commit")
            self._in_transaction = False

    def rollback(self) -> None:
        if self._in_transaction:
            self._in_transaction = False
            self._conn.rollback()

    def close(self) -> None:
        self._conn.close()

    def after_commit(self) -> list[AfterCommit]:
        options = self._options
        if options.retention_days or options.dq_policy != "off":
            return [self._postgres_only]
        return []

    def _postgres_only(self, result: DrainResult) -> None:
        log.info(
            "DRAIN_RETENTION_DAYS, QUARANTINE_RETENTION_DAYS and DRAIN_DQ_POLICY apply to "
            "PostgreSQL only; skipped on Snowflake (run %s)",
            result.run_id[:8],
        )
