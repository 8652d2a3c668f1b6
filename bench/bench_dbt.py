"""Benchmark of the dbt marts: does an incremental build cost what the new data costs?

1. Empty history: build the (empty) project, load one minute of trades, time `dbt build`.
2. Large history: load BENCH_TRADES trades spread over BENCH_DAYS days, time
   `dbt build --full-refresh`, then load one more minute of trades and time `dbt build`.
3. One late trade dated 30 days back for one symbol, then time `dbt build`.
4. A 2-year daily backfill of 5 new symbols (4 trades per trading day), then time `dbt build`.
Prints the figures and the ratios incremental(large history) / incremental(empty history)
(target <= 2) and late trade / one minute (target <= 3); printed, not asserted: tests check
behaviour, benches measure.

Trades are generated in SQL and written as drain loads (rows and their raw.load_stats row in
one transaction, sharing the transaction's loaded_at), which is how the incremental models
find what changed.

Runs in its own database `<POSTGRES_DB>_dbt_bench` (dropped at the end unless
BENCH_KEEP_DB=1). Scale with BENCH_TRADES (default 10_000_000), BENCH_SYMBOLS (10) and
BENCH_DAYS (20); one minute of new trades has the history's average rate.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg import errors, sql

from tickhouse.config import Settings, load_settings
from tickhouse.warehouse import connect, setup_warehouse
from transform.dbt_runner import build

# Trades generated in SQL: per symbol, evenly spaced in event time, a smooth price path
# with noise, Kafka coordinates that are unique per (partition, offset). loaded_at is the
# column default, the transaction's start time, as in a drain load.
INSERT_TRADES = """
insert into raw.trades (symbol, price, volume, ts, event_time, conditions, source,
                        kafka_topic, kafka_partition, kafka_offset, kafka_timestamp)
select
    %(prefix)s || s,
    round((50 + 10 * s + 5 * sin(g / 5000.0 + s) + 0.3 * sin(g * 0.7919)) :: numeric, 2),
    (g :: bigint * 7919 %% 500) :: numeric,
    ts,
    timestamp with time zone 'epoch' + ts * interval '1 millisecond',
    null,
    'bench',
    'bench.trades',
    s %% 3,
    %(first_offset)s + g * %(symbols)s + s,
    timestamp with time zone 'epoch' + ts * interval '1 millisecond'
from generate_series(0, %(per_symbol)s - 1) as g,
     generate_series(0, %(symbols)s - 1) as s,
     lateral (select %(start_ms)s :: bigint + (g * %(step_ms)s) :: bigint + s as ts) as t
"""

# The drain's bookkeeping of that load, in the same transaction (same loaded_at).
RECORD_LOAD = """
insert into raw.load_stats (run_id, consumer_group, topic, target_table, started_at,
                            finished_at, duration_ms, consumed, loaded, quarantined, lag_after,
                            min_event_time, max_event_time, partitions)
select md5(random()::text), 'bench', 'bench.trades', 'raw.trades', now(), now(), 0,
       count(*), count(*), 0, 0, min(event_time), max(event_time), '{}'::jsonb
from raw.trades
where loaded_at = now()
"""


@dataclasses.dataclass(slots=True)
class Scale:
    trades: int
    symbols: int
    days: int

    @property
    def per_minute(self) -> int:
        return max(self.symbols, round(self.trades / (self.days * 24 * 60)))


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def load_trades(
    settings: Settings,
    start: datetime,
    minutes: float,
    count: int,
    symbols: int,
    first_offset: int,
    prefix: str = "SYM",
) -> int:
    """Load `count` trades evenly over `minutes` from `start` as the loader role, as one drain
    load; returns the next free offset."""
    per_symbol = max(1, count // symbols)
    step_ms = minutes * 60_000 / per_symbol
    with connect(settings, "loader") as conn:
        ensure_partitions(conn, start, start + timedelta(minutes=minutes))
        conn.execute(
            INSERT_TRADES,
            {
                "prefix": prefix,
                "first_offset": first_offset,
                "symbols": symbols,
                "per_symbol": per_symbol,
                "start_ms": int(start.timestamp() * 1000),
                "step_ms": step_ms,
            },
        )
        conn.execute(RECORD_LOAD)
    return first_offset + per_symbol * symbols + symbols


def ensure_partitions(conn: Any, first: datetime, last: datetime) -> None:
    """The raw.trades partitions that rows from `first` to `last` need."""
    day = first.date()
    while day <= last.date():
        conn.execute("select raw.ensure_day_partition('raw.trades', %s)", (day,))
        day += timedelta(days=1)


def load_rows(settings: Settings, rows: list[tuple[str, float, int, int]], first_offset: int) -> int:
    """Load explicit (symbol, price, volume, ts) trades as one drain load; returns the next offset."""
    with connect(settings, "loader") as conn:
        moments = [datetime.fromtimestamp(ts / 1000, tz=UTC) for _, _, _, ts in rows]
        ensure_partitions(conn, min(moments), max(moments))
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy raw.trades (symbol, price, volume, ts, event_time, source, kafka_topic,"
                " kafka_partition, kafka_offset) from stdin"
            ) as copy,
        ):
            for index, ((symbol, price, volume, ts), moment) in enumerate(zip(rows, moments, strict=True)):
                copy.write_row(
                    (symbol, price, volume, ts, moment, "bench", "bench.trades", 0, first_offset + index)
                )
        conn.execute(RECORD_LOAD)
    return first_offset + len(rows)


TARGET_PATH = Path(tempfile.gettempdir()) / "tickhouse-bench-dbt-target"


def timed_build(settings: Settings, *args: str) -> float:
    started = time.monotonic()
    # a target directory of its own: the project's target/ (the DAG's manifest) stays untouched
    build(["--quiet", "--target-path", str(TARGET_PATH), *args], settings)
    return time.monotonic() - started


def count(settings: Settings, query: str) -> int:
    with connect(settings, "owner") as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def drop_database(settings: Settings, attempts: int = 30) -> None:
    # A connection the bench (or dbt) just closed keeps its backend until the server gets round to
    # ending it, which takes a while on a busy machine, and FORCE ends no backend of another role
    # for the owner: wait for them to go.
    for attempt in range(attempts):
        try:
            with connect(settings, "owner", dbname="postgres", autocommit=True) as conn:
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(
                        sql.Identifier(settings.postgres_db)
                    )
                )
            return
        except errors.InsufficientPrivilege:
            if attempt == attempts - 1:
                raise
            time.sleep(1)


class CheckFailed(Exception):
    """A run the bench timed did not do what it should: its time is no figure."""


def run_in_own_database(suffix: str, run: Callable[[Settings], None], keep_db: bool = False) -> int:
    """`run` against a database of its own (the configured one's name + `_suffix`), dropped
    afterwards unless `keep_db`; the exit code: 1 with the reason when a check failed, else 0."""
    base = load_settings()
    settings = dataclasses.replace(base, postgres_db=f"{base.postgres_db}_{suffix}")
    try:
        run(settings)
    except CheckFailed as err:
        print(f"  CHECK FAILED: {err}", file=sys.stderr)
        return 1
    finally:
        if not keep_db:
            drop_database(settings)
    return 0


def main() -> int:
    base = load_settings()
    settings = dataclasses.replace(base, postgres_db=f"{base.postgres_db}_dbt_bench")
    scale = Scale(
        _env_int("BENCH_TRADES", 10_000_000), _env_int("BENCH_SYMBOLS", 10), _env_int("BENCH_DAYS", 20)
    )
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    print(
        f"dbt marts benchmark: {scale.trades:,} trades, {scale.symbols} symbols, {scale.days} days, "
        f"{scale.per_minute:,} new trades per minute; database {settings.postgres_db}"
    )
    drop_database(settings)
    setup_warehouse(settings)
    try:
        # 1. empty history
        timed_build(settings)
        offset = load_trades(settings, now - timedelta(minutes=1), 1, scale.per_minute, scale.symbols, 0)
        empty_incremental = timed_build(settings)
        print(f"  incremental build, empty history, 1 minute of trades: {empty_incremental:7.1f} s")

        # 2. large history
        with connect(settings, "loader") as conn:
            conn.execute("truncate raw.trades")
        history_end = now - timedelta(minutes=2)
        started = time.monotonic()
        offset = load_trades(
            settings,
            history_end - timedelta(days=scale.days),
            scale.days * 24 * 60,
            scale.trades,
            scale.symbols,
            offset,
        )
        load_seconds = time.monotonic() - started
        loaded = count(settings, "select count(*) from raw.trades")
        print(f"  loaded {loaded:,} trades of history in {load_seconds:.1f} s")
        full_refresh = timed_build(settings, "--full-refresh")
        bars = count(settings, "select count(*) from marts.fct_bars")
        print(f"  full refresh ({loaded:,} trades -> {bars:,} bars):      {full_refresh:7.1f} s")
        # what autovacuum would do after a bulk load: fresh statistics and visibility maps
        with connect(settings, "owner", autocommit=True) as conn:
            conn.execute("vacuum (analyze) raw.trades")
            for table in (
                "intermediate.int_trades_aggregated_to_minute_bars",
                "intermediate.int_bars",
                "intermediate.int_technicals",
            ):
                conn.execute(f"vacuum (analyze) {table}")
        timed_build(settings)  # settle: the first incremental run after a refresh
        load_trades(
            settings,
            history_end + timedelta(minutes=1),
            1,
            scale.per_minute,
            scale.symbols,
            offset,
        )
        large_incremental = timed_build(settings)
        print(f"  incremental build, large history, 1 minute of trades: {large_incremental:7.1f} s")
        ratio = large_incremental / empty_incremental
        print(f"  ratio incremental(large) / incremental(empty): {ratio:.2f} (target <= 2)")

        # 3. one late trade, 30 days back, for one symbol (its bars and indicators from there)
        late_ms = int((history_end - timedelta(days=30)).timestamp() * 1000) + 17
        offset = load_rows(settings, [("SYM0", 55.55, 100, late_ms)], offset + 1)
        late = timed_build(settings)
        print(f"  incremental build, 1 trade dated 30 days back:       {late:7.1f} s")
        print(f"  ratio late trade / 1 minute of trades: {late / large_incremental:.2f} (target <= 3)")

        # 4. two years of daily history for 5 new symbols (4 trades per weekday)
        backfill: list[tuple[str, float, int, int]] = []
        first_day = (history_end - timedelta(days=730)).replace(hour=14, minute=30)
        for number in range(5):
            for day in range(730):
                moment = first_day + timedelta(days=day)
                if moment.weekday() >= 5:
                    continue
                for hour, price in ((0, 100.0), (2, 104.0), (4, 98.0), (6, 101.5)):
                    at = moment + timedelta(hours=hour)
                    backfill.append(
                        (f"NEW{number}", price + number + day * 0.01, 100, int(at.timestamp() * 1000))
                    )
        offset = load_rows(settings, backfill, offset + 1)
        backfill_seconds = timed_build(settings)
        days = count(
            settings, "select count(*) from marts.fct_bars where bar_interval = '1d' and symbol like 'NEW%'"
        )
        print(
            f"  incremental build, 2-year daily backfill of 5 symbols ({len(backfill):,} trades, "
            f"{days:,} daily bars): {backfill_seconds:.1f} s"
        )
        return 0
    finally:
        if os.environ.get("BENCH_KEEP_DB") != "1":
            drop_database(settings)


if __name__ == "__main__":
    sys.exit(main())
