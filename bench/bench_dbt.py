"""Benchmark of the dbt marts: does an incremental build cost what the new data costs?

1. Empty history: build the (empty) project, load one minute of trades, time `dbt build`.
2. Large history: load BENCH_TRADES trades spread over BENCH_DAYS days, time
   `dbt build --full-refresh`, then load one more minute of trades and time `dbt build`.
Prints the figures and the ratio incremental(large history) / incremental(empty history);
the target is <= 2 (printed, not asserted: tests check behaviour, benches measure).

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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg import sql

from tickhouse.config import Settings, load_settings
from tickhouse.transform import build
from tickhouse.warehouse import connect, setup_warehouse

# Trades generated in SQL: per symbol, evenly spaced in event time, a smooth price path
# with noise, Kafka coordinates that are unique per (partition, offset).
INSERT_TRADES = """
insert into raw.trades (symbol, price, volume, ts, event_time, conditions, source,
                        kafka_topic, kafka_partition, kafka_offset, kafka_timestamp, loaded_at)
select
    'SYM' || s,
    round((50 + 10 * s + 5 * sin(g / 5000.0 + s) + 0.3 * sin(g * 0.7919)) :: numeric, 2),
    (g :: bigint * 7919 %% 500) :: numeric,
    ts,
    timestamp with time zone 'epoch' + ts * interval '1 millisecond',
    null,
    'bench',
    'bench.trades',
    s %% 3,
    %(first_offset)s + g * %(symbols)s + s,
    timestamp with time zone 'epoch' + ts * interval '1 millisecond',
    timestamp with time zone 'epoch' + ts * interval '1 millisecond' + interval '2 seconds'
from generate_series(0, %(per_symbol)s - 1) as g,
     generate_series(0, %(symbols)s - 1) as s,
     lateral (select %(start_ms)s :: bigint + (g * %(step_ms)s) :: bigint + s as ts) as t
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
) -> int:
    """Load `count` trades evenly over `minutes` from `start` as the loader role; returns the
    next free offset."""
    per_symbol = max(1, count // symbols)
    step_ms = minutes * 60_000 / per_symbol
    with connect(settings, "loader") as conn:
        day = start.date()
        while day <= (start + timedelta(minutes=minutes)).date():
            conn.execute("select raw.ensure_day_partition('raw.trades', %s)", (day,))
            day += timedelta(days=1)
        conn.execute(
            INSERT_TRADES,
            {
                "first_offset": first_offset,
                "symbols": symbols,
                "per_symbol": per_symbol,
                "start_ms": int(start.timestamp() * 1000),
                "step_ms": step_ms,
            },
        )
    return first_offset + per_symbol * symbols + symbols


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


def drop_database(settings: Settings) -> None:
    with connect(settings, "owner", dbname="postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(settings.postgres_db))
        )


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
                "marts.fct_bars",
                "marts.fct_technicals",
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
        return 0
    finally:
        if os.environ.get("BENCH_KEEP_DB") != "1":
            drop_database(settings)


if __name__ == "__main__":
    sys.exit(main())
