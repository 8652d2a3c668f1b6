"""The PostgreSQL target: COPY into the partitioned raw tables inside the run's one transaction.

A run takes the group's advisory lock and reads the next offsets from raw.kafka_offsets (the source
of truth) in its transaction, streams COPY text (`copy_rows`) into the raw tables and raw.quarantine
(`loader`), then writes the next offsets and raw.load_stats and commits. After the commit, in their
own short transactions: retention (`retention`, DRAIN_RETENTION_DAYS / QUARANTINE_RETENTION_DAYS)
and the Great Expectations checks of the rows just loaded (`quality`, DRAIN_DQ_POLICY).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

import psycopg

from drain.errors import DataQualityError
from drain.options import DrainOptions
from drain.stats import DrainResult, Position, TopicStats
from drain.targets.postgres import copy_rows
from drain.targets.postgres.load_stats import write_load_stats
from drain.targets.postgres.loader import CopyLoader
from drain.targets.postgres.offsets import lock_group, read_offsets, save_offsets, start_offsets
from drain.targets.protocol import AfterCommit, Loader
from tickhouse.config import Settings

log = logging.getLogger(__name__)


class PostgresTarget:
    kind = "postgres"
    encoding = copy_rows.ENCODING

    def __init__(self, settings: Settings, options: DrainOptions) -> None:
        self._settings = settings
        self._options = options
        self._conn = psycopg.connect(
            settings.conninfo("loader"),
            application_name="tickhouse-drain",
            options=f"-c lock_timeout={options.lock_timeout_seconds * 1000}",
        )
        self._stored: dict[Position, int] = {}

    def start(self, group: str, topics: Mapping[str, str]) -> dict[Position, int]:
        lock_group(self._conn, group)
        # the commit moves the group's own offsets only from where they are now (OffsetConflict)
        self._stored = read_offsets(self._conn, group, topics)
        starts = start_offsets(self._conn, topics)
        for position, offset in self._stored.items():
            starts[position] = max(offset, starts.get(position, offset))
        return starts

    def loader(self) -> Loader:
        return CopyLoader(self._conn)

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

    def after_commit(self) -> list[AfterCommit]:
        steps: list[AfterCommit] = []
        if self._options.retention_days or self._options.quarantine_retention_days:
            steps.append(self._retention)
        if self._options.dq_policy != "off":
            steps.append(self._data_quality)
        return steps

    def _retention(self, result: DrainResult) -> None:
        """Drop the raw partitions older than the retention settings (the next run tries again)."""
        from drain.targets.postgres.retention import drop_expired_partitions

        try:
            result.partitions_dropped = drop_expired_partitions(
                self._settings,
                self._options.retention_days,
                quarantine_retention_days=self._options.quarantine_retention_days,
            )
        except Exception:
            log.exception("retention failed (the load is committed); the next run tries again")

    def _data_quality(self, result: DrainResult) -> None:
        """The expectations over the run's rows; DataQualityError when DRAIN_DQ_POLICY=fail."""
        from drain.targets.postgres.quality import check_run

        try:
            result.dq_failures = check_run(self._settings, self._options, result)
            result.dq_checked = True
        except Exception as err:
            log.exception("data quality checks could not run for run %s", result.run_id)
            result.dq_failures = [f"data quality checks could not run: {err}"]
        if result.dq_failures and self._options.dq_policy == "fail":
            raise DataQualityError(
                f"data quality: {len(result.dq_failures)} expectation(s) failed for run "
                f"{result.run_id} (rows are committed; see raw.dq_results): "
                + "; ".join(result.dq_failures),
                result,
            )
