"""Benchmark of a split restatement: a split announced for one symbol with 10 years of daily
history, against one new minute of trades for that symbol.

A warehouse of --symbols symbols (10), each with --years (10) years of New York sessions (about
2,520 daily bars), three regular-session prints a session (so three 1m, 5m, 15m and 1h bars a
session as well), loaded as one drain load and built. Then, each followed by a timed `dbt build`
(the whole project with its tests, as `tickhouse transform` runs it):
1. one new minute of trades (--minute-trades, 60) for the first symbol, in its last session;
2. a 4:1 split of that symbol with an ex-date --ex-sessions-ago (250) sessions back, stored the
   way `tickhouse corporate-actions refresh --source file` stores it (the same function, on a CSV
   file). Its as-traded history holds that split (prices 4x before the ex-date): the split is
   learned after the marts were built.
Prints both times and the ratio split / one minute, and checks that they are figures of correct
runs: after the split, every daily adjusted close of the symbol equals its generated close on
today's share basis (continuous across the ex-date), the as-traded close still drops there,
`stock_analytics` shows the real move, every indicator row of the symbol was rewritten and
carries its adjusted close; after each step, no row of the other symbols was rewritten
(`updated_at` of int_bars, int_technicals and int_stock_analytics unchanged). A failed check
exits 1: a time of a wrong run is no figure.

Runs in its own database `<POSTGRES_DB>_split_bench` (dropped at the end unless --keep-db).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

from bench_dbt import CheckFailed, drop_database, load_rows, run_in_own_database

from producer.corporate_actions_refresh import refresh_from_file
from tickhouse.calendars import SESSIONS_CSV
from tickhouse.config import Settings
from tickhouse.warehouse import connect, setup_warehouse
from transform.dbt_runner import build

NEW_YORK = ZoneInfo("America/New_York")
# three prints a session, local time: inside the regular session on early-close days too
PRINT_TIMES = (clock(10, 0), clock(11, 30), clock(12, 45))
NEW_MINUTE = clock(13, 30)  # the one new minute, after the session's last print
SPLIT_TO, SPLIT_FROM = 4, 1
CENT = Decimal("0.01")
# the tables whose updated_at says a row was rewritten
REWRITTEN = ("intermediate.int_bars", "intermediate.int_technicals", "intermediate.int_stock_analytics")
TARGET_PATH = Path(tempfile.gettempdir()) / "tickhouse-bench-split-target"


@dataclasses.dataclass(slots=True)
class History:
    sessions: list[date]
    # per symbol, the close of every session on today's share basis (after the split)
    closes: dict[str, list[Decimal]]
    rows: list[tuple[str, float, int, int]]  # (symbol, price, volume, ts) as traded


def nyse_sessions(last: date, count: int) -> list[date]:
    """The last `count` XNYS sessions up to `last`, from the calendar file setup loads."""
    with SESSIONS_CSV.open(newline="") as handle:
        days = [
            date.fromisoformat(row["trading_date"])
            for row in csv.DictReader(handle)
            if row["calendar"] == "XNYS"
        ]
    days = [day for day in days if day <= last]
    if len(days) < count:
        raise SystemExit(f"the calendar file has {len(days)} XNYS sessions up to {last}, not {count}")
    return days[-count:]


def ms(day: date, at: clock) -> int:
    return int(datetime.combine(day, at, tzinfo=NEW_YORK).timestamp() * 1000)


def generate_history(symbols: Sequence[str], sessions: list[date], ex_index: int) -> History:
    """A random walk per symbol (daily moves within 1.5 %), three prints a session; the first
    symbol traded at SPLIT_TO / SPLIT_FROM times its price (and a quarter of its volume) before
    sessions[ex_index], as it did before its split."""
    rng = random.Random(21)
    closes: dict[str, list[Decimal]] = {}
    rows: list[tuple[str, float, int, int]] = []
    for number, symbol in enumerate(symbols):
        price = Decimal(40 + 10 * number)
        closes[symbol] = []
        for index, day in enumerate(sessions):
            pre_split = number == 0 and index < ex_index
            for at in PRINT_TIMES:
                move = Decimal(rng.randint(-50, 50)) / 10_000
                price = max(Decimal("1.00"), (price * (1 + move)).quantize(CENT))
                traded = price * SPLIT_TO / SPLIT_FROM if pre_split else price
                volume = 100 if pre_split else 100 * SPLIT_TO // SPLIT_FROM
                rows.append((symbol, float(traded), volume, ms(day, at)))
            closes[symbol].append(price)
    return History(sessions, closes, rows)


def timed_build(settings: Settings) -> float:
    started = time.monotonic()
    # a target directory of its own: the project's target/ (the DAG's manifest) stays untouched
    build(["--quiet", "--target-path", str(TARGET_PATH)], settings)
    return time.monotonic() - started


def fetch(settings: Settings, query: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
    with connect(settings, "owner") as conn:
        return conn.execute(query, params).fetchall()


def high_water(settings: Settings) -> dict[str, datetime]:
    """The newest updated_at of each table that marks rewritten rows."""
    marks: dict[str, datetime] = {}
    for table in REWRITTEN:
        (mark,) = fetch(settings, f"select max(updated_at) from {table}")[0]
        assert isinstance(mark, datetime)
        marks[table] = mark
    return marks


def rewritten(settings: Settings, symbol: str, marks: dict[str, datetime]) -> str:
    """How many rows of `symbol` the last build rewrote, per table."""
    counts = []
    for table, mark in marks.items():
        (rows,) = fetch(
            settings, f"select count(*) from {table} where updated_at > %s and symbol = %s", (mark, symbol)
        )[0]
        counts.append(f"{table.split('.')[-1]} {rows:,}")
    return ", ".join(counts)


def check_only_symbol_rewritten(settings: Settings, symbol: str, marks: dict[str, datetime]) -> None:
    for table, mark in marks.items():
        (others,) = fetch(
            settings, f"select count(*) from {table} where updated_at > %s and symbol <> %s", (mark, symbol)
        )[0]
        if others:
            raise CheckFailed(f"{table}: {others} rows of other symbols than {symbol} were rewritten")
    print(f"  check: no row of another symbol than {symbol} was rewritten ({', '.join(REWRITTEN)})")


def check_restatement(settings: Settings, symbol: str, history: History, ex_date: date,
                      marks: dict[str, datetime]) -> None:
    daily = cast(list[tuple[date, Decimal, Decimal]], fetch(
        settings,
        "select trading_date, close, adj_close from marts.fct_bars"
        " where symbol = %s and bar_interval = '1d' order by bar_start",
        (symbol,),
    ))
    expected = dict(zip(history.sessions, history.closes[symbol], strict=True))
    if [row[0] for row in daily] != history.sessions:
        raise CheckFailed(f"{symbol}: {len(daily)} daily bars, not one per session ({len(expected)})")
    wrong = [
        (day, adj, expected[day]) for day, _, adj in daily if abs(Decimal(adj) - expected[day]) > CENT / 100
    ]
    if wrong:
        raise CheckFailed(f"{symbol}: {len(wrong)} daily adj_close off today's basis, first {wrong[0]}")
    jumps = [abs(Decimal(today[2]) / Decimal(before[2]) - 1) for before, today in itertools.pairwise(daily)]
    traded = {day: Decimal(close) for day, close, _ in daily}
    ex_index = history.sessions.index(ex_date)
    traded_drop = traded[ex_date] / traded[history.sessions[ex_index - 1]]
    if max(jumps) > Decimal("0.05") or traded_drop > Decimal("0.3"):
        raise CheckFailed(f"{symbol}: largest daily move of adj_close {max(jumps):.2%}, as traded on the "
                          f"ex-date {traded_drop - 1:.2%}")
    (change,) = fetch(
        settings,
        "select daily_change_pct from marts.stock_analytics where symbol = %s and trading_date = %s",
        (symbol, ex_date),
    )[0]
    real = 100 * (expected[ex_date] / expected[history.sessions[ex_index - 1]] - 1)
    if change is None or abs(Decimal(str(change)) - real) > Decimal("0.001"):
        raise CheckFailed(f"{symbol}: daily_change_pct on the ex-date {change}, not {real:.4f}")
    mark = marks["intermediate.int_technicals"]
    (rows, rewritten, off_basis) = fetch(
        settings,
        "select count(*), count(*) filter (where technicals.updated_at > %s),"
        "       count(*) filter (where abs(technicals.close - bars.adj_close) > 1e-9)"
        " from intermediate.int_technicals as technicals"
        " inner join marts.fct_bars as bars using (symbol, bar_interval, bar_start)"
        " where technicals.symbol = %s",
        (mark, symbol),
    )[0]
    if not rows or rewritten != rows or off_basis:
        raise CheckFailed(f"{symbol}: {rewritten} of {rows} indicator rows rewritten, {off_basis} not on "
                          "the adjusted close")
    print(
        f"  check: {symbol}'s {len(daily):,} daily adj_close equal its closes on today's basis (largest "
        f"daily move {max(jumps):.2%}; as traded {traded_drop - 1:.0%} on the ex-date {ex_date}); "
        f"daily change there {change} %; {rows:,} indicator rows rewritten on adjusted closes"
    )


def store_split(settings: Settings, symbol: str, ex_date: date) -> None:
    """The split, through `tickhouse corporate-actions refresh --source file`'s code path."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "actions.csv"
        path.write_text(
            "symbol,ex_date,action,from_factor,to_factor,cash_amount,currency\n"
            f"{symbol},{ex_date.isoformat()},split,{SPLIT_FROM},{SPLIT_TO},,\n"
        )
        summary = refresh_from_file(settings, path)
    if not summary.ok or summary.new != 1:
        raise CheckFailed(f"the split was not stored: {'; '.join(summary.lines())}")


def run(settings: Settings, args: argparse.Namespace) -> None:
    symbols = [f"SPLIT{number}" for number in range(args.symbols)]
    today = datetime.now(UTC).date()
    sessions = nyse_sessions(today - timedelta(days=1), round(args.years * 252))
    ex_index = len(sessions) - args.ex_sessions_ago
    history = generate_history(symbols, sessions, ex_index)
    symbol, ex_date = symbols[0], sessions[ex_index]
    print(
        f"split restatement benchmark: {len(symbols)} symbols x {len(sessions):,} sessions "
        f"({sessions[0]} to {sessions[-1]}), {len(history.rows):,} trades; {SPLIT_TO}:{SPLIT_FROM} split "
        f"of {symbol}, ex-date {ex_date}; database {settings.postgres_db}"
    )
    drop_database(settings)
    setup_warehouse(settings)
    started = time.monotonic()
    offset = load_rows(settings, history.rows, 0)
    first_build = timed_build(settings)
    (bars,) = fetch(settings, "select count(*) from marts.fct_bars")[0]
    print(f"  loaded and built {bars:,} bars in {time.monotonic() - started:.1f} s "
          f"(build {first_build:.1f} s)")
    with connect(settings, "owner", autocommit=True) as conn:  # what autovacuum would do after a bulk load
        for table in ("raw.trades", "intermediate.int_trades_aggregated_to_minute_bars", *REWRITTEN):
            conn.execute(f"vacuum (analyze) {table}")
    timed_build(settings)  # settle: the first incremental run after the first build

    # 1. one minute of trades for the symbol, in its last session
    last = sessions[-1]
    start = ms(last, NEW_MINUTE)
    step = 60_000 // args.minute_trades
    price = history.closes[symbol][-1]
    minute = [
        (symbol, float(price + CENT * (index % 7 - 3)), 100, start + index * step)
        for index in range(args.minute_trades)
    ]
    history.closes[symbol][-1] = Decimal(str(minute[-1][1]))
    offset = load_rows(settings, minute, offset + 1)
    marks = high_water(settings)
    one_minute = timed_build(settings)
    print(f"  incremental build, 1 minute of trades ({len(minute)}) for {symbol}:    {one_minute:7.1f} s"
          f" (rows rewritten: {rewritten(settings, symbol, marks)})")
    check_only_symbol_rewritten(settings, symbol, marks)

    # 2. the split, learned now
    store_split(settings, symbol, ex_date)
    marks = high_water(settings)
    split = timed_build(settings)
    print(f"  incremental build, {SPLIT_TO}:{SPLIT_FROM} split of {symbol} ({len(sessions):,} sessions): "
          f"{split:7.1f} s (rows rewritten: {rewritten(settings, symbol, marks)})")
    check_restatement(settings, symbol, history, ex_date, marks)
    check_only_symbol_rewritten(settings, symbol, marks)
    print(f"  ratio split / 1 minute of trades: {split / one_minute:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10, help="symbols with the whole history")
    parser.add_argument("--years", type=float, default=10, help="years of sessions (252 a year)")
    parser.add_argument("--ex-sessions-ago", type=int, default=250, help="the split's ex-date, in sessions")
    parser.add_argument("--minute-trades", type=int, default=60, help="trades in the one new minute")
    parser.add_argument("--keep-db", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)
    if not 1 <= args.ex_sessions_ago < round(args.years * 252) or args.symbols < 1 or args.minute_trades < 1:
        parser.error("--ex-sessions-ago must lie inside the history; --symbols and --minute-trades >= 1")
    return run_in_own_database("split_bench", lambda settings: run(settings, args), args.keep_db)


if __name__ == "__main__":
    sys.exit(main())
