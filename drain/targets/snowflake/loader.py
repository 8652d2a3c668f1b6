"""The Snowflake loader: bulk-load each batch into session staging tables, then move it into RAW in
one transaction with the offsets and the load stats (the PostgreSQL contract).

A run, on one connection from the provider's `SnowflakeHook` (tickhouse.snowflake.settings):

1. read the next offsets from RAW.KAFKA_OFFSETS (the source of truth, as in PostgreSQL);
2. while the drain consumes, every 50,000 rows of a table are bulk-loaded with `write_pandas`
   (a PUT of Parquet files to a temporary stage and a `COPY INTO`) into a TEMPORARY staging table
   of this session. This is autocommitted on purpose: Snowflake commits any open transaction on
   DDL, and `write_pandas` creates a stage. Staged rows are private to the session and vanish
   with it, so a crash here loses nothing and writes nothing. The rows come as text values
   (`staging_rows`), cast to the raw tables' types when they are moved;
3. `BEGIN`; for each raw table and RAW.QUARANTINE insert the staged rows whose Kafka coordinates
   (topic, partition, offset) are not in the table yet — the effect of `MERGE ... WHEN NOT
   MATCHED THEN INSERT`: idempotent although Snowflake does not enforce unique constraints;
   move each partition's offset only if it is still where this run found it (else
   OffsetConflict and ROLLBACK); insert RAW.LOAD_STATS; `COMMIT`;
4. the runner then commits the offsets to Kafka (monitoring only), as for PostgreSQL.

Why INSERT ... WHERE NOT EXISTS and not MERGE: the same result for inserts, and it is the
statement the test double can run. fakesnow 0.12.1 implements MERGE with a
`CREATE TEMPORARY TABLE`, which DuckDB refuses inside a transaction that has written anything
("a single transaction can only write to a single attached database"), so a MERGE could not be
tested in the one transaction that carries the exactly-once guarantee.

Not done on Snowflake (PostgreSQL only): the advisory lock (two drains of one group are caught
by the offset check and the loser rolls back), partitions, DRAIN_RETENTION_DAYS and
QUARANTINE_RETENTION_DAYS (use a Snowflake task or time travel settings), the Great Expectations
checks (DRAIN_DQ_POLICY).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from drain.batches import BatchResult
from drain.errors import DrainError, OffsetConflict
from drain.stats import Position, TopicStats
from drain.targets.snowflake.staging_rows import StagingRow
from tickhouse.raw_tables import COLUMNS, TABLES, table

QUARANTINE = "quarantine"
FLUSH_ROWS = 50_000

_DOUBLE = {"price", "volume", "change", "change_pct", "high", "low", "open", "close", "prev_close"}
_BIGINT = {"ts", "trade_ts", "detected_ts", "bar_start", "kafka_offset", "payload_length", "producer_seq"}
_TIMESTAMP = {"event_time", "kafka_timestamp"}
_BINARY = {"kafka_key", "payload", "payload_sha256"}


def staging_table(kind: str) -> str:
    return f"tickhouse_stage_{kind}"


def column_expression(column: str) -> str:
    """How a staged (text) column becomes the raw table's column type."""
    value = f"s.{column}"
    if column in _DOUBLE:
        return f"cast({value} as double)"
    if column in _BIGINT:
        return f"cast({value} as number(19, 0))"
    if column == "kafka_partition":
        return f"cast({value} as integer)"
    if column in _TIMESTAMP:
        return f"to_timestamp_tz(cast({value} as number(19, 0)), 3)"
    if column == "conditions":
        return f"cast(parse_json({value}) as array)"
    if column == "details":
        return f"parse_json({value})"
    if column in _BINARY:
        return f"to_binary({value}, 'HEX')"
    return value


def create_staging_sql(kind: str) -> str:
    columns = ", ".join(f"{c} varchar" for c in COLUMNS[kind])
    return f"create temporary table if not exists {staging_table(kind)} ({columns})"


def loaded_at_sql(loaded_at_ms: int | None) -> str:
    """The load time a run writes on its rows and its LOAD_STATS rows: one value per run (dbt finds
    a load's rows by it), as PostgreSQL's transaction time is; CURRENT_TIMESTAMP differs per
    statement in Snowflake."""
    return "current_timestamp()" if loaded_at_ms is None else f"to_timestamp_tz({int(loaded_at_ms)}, 3)"


def insert_new_rows_sql(
    kind: str, event_ms: tuple[int, int] | None = None, loaded_at_ms: int | None = None
) -> str:
    """Insert the staged rows of `kind` whose Kafka coordinates are not in the raw table yet.

    `event_ms` (the staged rows' event-time span) bounds the existence check so that Snowflake
    prunes the micro-partitions of other days instead of scanning the whole history;
    `loaded_at_ms` is the run's load time (see loaded_at_sql).
    """
    columns = COLUMNS[kind]
    raw_table = table(kind)
    bound = ""
    if event_ms is not None:
        bound = (
            f" and t.event_time between to_timestamp_tz({int(event_ms[0])}, 3)"
            f" and to_timestamp_tz({int(event_ms[1])}, 3)"
        )
    return (
        f"insert into {raw_table} ({', '.join(columns)}, loaded_at) "
        f"select {', '.join(column_expression(c) for c in columns)}, {loaded_at_sql(loaded_at_ms)} "
        f"from {staging_table(kind)} as s "
        f"where not exists (select 1 from {raw_table} as t"
        " where t.kafka_topic = s.kafka_topic"
        " and t.kafka_partition = cast(s.kafka_partition as integer)"
        f" and t.kafka_offset = cast(s.kafka_offset as number(19, 0)){bound})"
    )


class SnowflakeLoader:
    """Collects the drain's rows per table and bulk-loads them into the session's staging tables."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._kinds = (*TABLES, QUARANTINE)
        self._rows: dict[str, list[StagingRow]] = {k: [] for k in self._kinds}
        self.staged: dict[str, int] = dict.fromkeys(self._kinds, 0)
        self.event_ms: dict[str, tuple[int, int]] = {}
        self.partitions_created: list[str] = []  # Snowflake has no partitions to create
        with conn.cursor() as cur:
            for kind in self._kinds:
                cur.execute(create_staging_sql(kind))
                # a reused session (never the drain's) may still hold rows of an earlier run
                cur.execute(f"truncate table {staging_table(kind)}")

    def add(self, batch: BatchResult) -> None:
        """Queue a batch's staging rows (`staging_rows`) and its rejected ones for staging."""
        kind = batch.kind
        if batch.loaded:
            self._rows[kind].extend(batch.rows)
            assert batch.min_event_ms is not None and batch.max_event_ms is not None
            low, high = self.event_ms.get(kind, (batch.min_event_ms, batch.max_event_ms))
            self.event_ms[kind] = (min(low, batch.min_event_ms), max(high, batch.max_event_ms))
            if len(self._rows[kind]) >= FLUSH_ROWS:
                self.flush(kind)
        if batch.rejected:
            self._rows[QUARANTINE].extend(batch.rejected)
            if len(self._rows[QUARANTINE]) >= FLUSH_ROWS:
                self.flush(QUARANTINE)

    def flush(self, kind: str) -> None:
        """Bulk-load what is queued for `kind` into its staging table (write_pandas)."""
        rows = self._rows[kind]
        if not rows:
            return
        import pandas as pd

        self._stage(kind, pd.DataFrame(rows, columns=[c.upper() for c in COLUMNS[kind]], dtype=object))
        self.staged[kind] += len(rows)
        rows.clear()

    def _stage(self, kind: str, frame: Any) -> None:
        """One bulk load (write_pandas: Parquet files PUT to a stage, COPY INTO the staging table)."""
        from snowflake.connector.pandas_tools import write_pandas

        success, _, loaded, _ = write_pandas(self._conn, frame, staging_table(kind).upper())
        if not success or loaded != len(frame):
            raise DrainError(
                f"staging {len(frame)} rows of {kind} into Snowflake loaded {loaded}; nothing was "
                "committed, run the drain again"
            )

    def finish(self) -> None:
        """Stage everything still queued (outside any transaction)."""
        for kind in self._kinds:
            self.flush(kind)

    def abort(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Forget queued rows; staged ones die with the session."""
        for rows in self._rows.values():
            rows.clear()

    def move_staged_rows(self, cur: Any, loaded_at_ms: int | None = None) -> dict[str, int]:
        """In the caller's transaction: insert the staged rows new to each raw table."""
        inserted: dict[str, int] = {}
        for kind in self._kinds:
            if self.staged[kind]:
                cur.execute(insert_new_rows_sql(kind, self.event_ms.get(kind), loaded_at_ms))
                inserted[kind] = max(cur.rowcount or 0, 0)
        return inserted


def read_offsets(conn: Any, group: str, topics: Iterable[str]) -> dict[Position, int]:
    """The next offset per partition stored for `group` (RAW.KAFKA_OFFSETS)."""
    names = list(topics)
    if not names:
        return {}
    placeholders = ", ".join(["%s"] * len(names))
    with conn.cursor() as cur:
        cur.execute(
            "select topic, partition, max(next_offset) from raw.kafka_offsets"
            f" where consumer_group = %s and topic in ({placeholders}) group by 1, 2",
            (group, *names),
        )
        return {(topic, int(p)): int(o) for topic, p, o in cur.fetchall()}


def save_offsets(
    cur: Any, group: str, next_offsets: Mapping[Position, int], expected: Mapping[Position, int]
) -> None:
    """Move each partition's next offset, only from where this run found it (in the transaction)."""
    for (topic, partition), offset in sorted(next_offsets.items()):
        before = expected.get((topic, partition))
        if before is None:
            cur.execute(
                "insert into raw.kafka_offsets"
                " (consumer_group, topic, partition, next_offset, updated_at)"
                " select %s, %s, %s, %s, current_timestamp() where not exists"
                " (select 1 from raw.kafka_offsets"
                "  where consumer_group = %s and topic = %s and partition = %s)",
                (group, topic, partition, offset, group, topic, partition),
            )
        else:
            cur.execute(
                "update raw.kafka_offsets set next_offset = %s, updated_at = current_timestamp()"
                " where consumer_group = %s and topic = %s and partition = %s"
                " and next_offset = %s",
                (offset, group, topic, partition, before),
            )
        if cur.rowcount != 1:
            raise OffsetConflict(
                f"RAW.KAFKA_OFFSETS for group {group!r} {topic}[{partition}] is no longer "
                f"{before}; another drain committed first. Nothing was written; run the drain "
                "again."
            )


def write_load_stats(
    cur: Any,
    *,
    run_id: str,
    group: str,
    started_at: datetime,
    finished_at: datetime,
    stats: list[TopicStats],
    loaded_at_ms: int | None = None,
) -> None:
    """One RAW.LOAD_STATS row per topic (in the caller's transaction), with the run's load time."""
    duration_ms = int((finished_at - started_at).total_seconds() * 1000)

    def ms(value: datetime | None) -> int | None:
        return None if value is None else int(value.timestamp() * 1000)

    for s in stats:
        cur.execute(
            "insert into raw.load_stats (run_id, consumer_group, topic, target_table, started_at,"
            " finished_at, duration_ms, consumed, loaded, quarantined, lag_after, min_event_time,"
            " max_event_time, partitions, loaded_at)"
            " select %s, %s, %s, %s, to_timestamp_tz(%s, 3), to_timestamp_tz(%s, 3), %s, %s, %s,"
            " %s, %s, to_timestamp_tz(%s, 3), to_timestamp_tz(%s, 3), parse_json(%s),"
            f" {loaded_at_sql(loaded_at_ms)}",
            (
                run_id, group, s.topic, s.table, ms(started_at), ms(finished_at), duration_ms,
                s.consumed, s.loaded, s.quarantined, s.lag_after, s.min_event_ms, s.max_event_ms,
                json.dumps({str(p): {"from": r[0], "to": r[1]} for p, r in s.offsets.items()}),
            ),
        )
