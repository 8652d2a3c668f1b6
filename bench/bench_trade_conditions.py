"""Benchmark of the trade-condition eligibility: what the condition lookup costs the bars.

A history of --trades trades (10,000,000) over --symbols symbols (10) and --days days (20), as
bench_dbt.py's, carrying the conditions of a consolidated feed: 40 % without codes, regular
prints with code 1, odd lots (12, alone and with 1), intermarket sweeps (8, alone and with the
odd lot), Form-T (24), qualified contingent trades (37), and average-price (3) and cash-sale (5)
prints 3 % off the market price. After a first, untimed `dbt build` (so that both timed builds
replace existing relations, from a warm parse), it is built with `dbt build --full-refresh`
(every model and test) twice: as shipped, and with the dbt var `bench_every_trade_regular`, the
bench's baseline, which compiles the condition lookup out of int_trades_aggregated_to_minute_bars
and counts every print as regular (the same models without eligibility). Then --rounds (3)
full refreshes of that model alone each way, in alternating order. Prints the times and the
ratios with / without.

It checks that the figures are of what they claim: the compiled model of the baseline has no
condition lookup and the shipped one has; after each whole build, one symbol's minute bars of
the last day equal an oracle in Python over its trades (the seed's flags, every code required,
for the shipped build; every print regular for the baseline), and the two oracles differ there.
A failed check exits 1.

Runs in its own database `<POSTGRES_DB>_conditions_bench` (dropped at the end unless --keep-db).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench_dbt import RECORD_LOAD, CheckFailed, drop_database, ensure_partitions, run_in_own_database

from tickhouse.config import Settings
from tickhouse.warehouse import connect, setup_warehouse
from transform.dbt_runner import DBT_PROJECT_DIR, failure_summary, run_dbt

MODEL = "int_trades_aggregated_to_minute_bars"
BASELINE_VARS = json.dumps({"bench_every_trade_regular": True})
TARGET_ROOT = Path(tempfile.gettempdir()) / "tickhouse-bench-conditions-target"
SEED = DBT_PROJECT_DIR / "seeds" / "trade_conditions.csv"

# Trades generated in SQL, as in bench_dbt.py, with a condition set chosen per trade from 40
# slots and the off-market prices of the average-price and cash-sale prints.
INSERT_TRADES = """
insert into raw.trades (symbol, price, volume, ts, event_time, conditions, source,
                        kafka_topic, kafka_partition, kafka_offset, kafka_timestamp)
select
    'COND' || s,
    round((path * case when slot = 36 then 1.03 when slot = 37 then 0.97 else 1 end) :: numeric, 2),
    case when codes && array['12'] then 1 + g :: bigint * 7919 %% 99
         else 100 * (1 + g :: bigint * 7919 %% 5) end :: numeric,
    ts,
    timestamp with time zone 'epoch' + ts * interval '1 millisecond',
    codes,
    'bench',
    'bench.trades',
    s %% 3,
    g :: bigint * %(symbols)s + s,
    timestamp with time zone 'epoch' + ts * interval '1 millisecond'
from generate_series(0, %(per_symbol)s - 1) as g,
     generate_series(0, %(symbols)s - 1) as s,
     lateral (select %(start_ms)s :: bigint + (g * %(step_ms)s) :: bigint + s as ts,
                     50 + 10 * s + 5 * sin(g / 5000.0 + s) + 0.3 * sin(g * 0.7919) as path,
                     (g :: bigint * 7 + s) %% 40 as slot) as t,
     lateral (select case
                  when slot < 16 then null
                  when slot < 22 then array['1']
                  when slot < 28 then array['12']
                  when slot < 32 then array['1', '12']
                  when slot < 34 then array['8']
                  when slot < 36 then array['8', '12']
                  when slot = 36 then array['3']
                  when slot = 37 then array['5']
                  when slot = 38 then array['24']
                  else array['37']
              end :: text[] as codes) as c
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Flags:
    last: bool
    high_low: bool
    volume: bool


REGULAR = Flags(True, True, True)


def seed_flags() -> dict[str, Flags]:
    """The eligibility table as data (the seed dbt loads), read here for the oracle."""
    with SEED.open(newline="") as handle:
        return {
            row["code"]: Flags(*(row[name] == "true" for name in
                                 ("updates_open_close", "updates_high_low", "updates_volume")))
            for row in csv.DictReader(handle)
        }


def trade_flags(codes: Sequence[str] | None, table: dict[str, Flags]) -> Flags:
    """A print qualifies for a field only if every code of it does; no or unknown codes: regular."""
    flags = [table.get(code, REGULAR) for code in codes or ()]
    return Flags(*(all(getattr(f, name) for f in flags) for name in ("last", "high_low", "volume")))


def oracle_bars(
    trades: Iterable[tuple[Any, ...]], table: dict[str, Flags] | None
) -> dict[datetime, tuple[Any, ...]]:
    """Minute bars (open, high, low, close, volume, trade_count) of trades (event_time, ts,
    partition, offset, price, volume, codes) in order; `table` None: every print regular."""
    minutes: dict[datetime, list[tuple[Any, ...]]] = defaultdict(list)
    for trade in trades:
        minutes[trade[0].replace(second=0, microsecond=0)].append(trade)
    bars = {}
    for minute, prints in minutes.items():
        prints.sort(key=lambda t: (t[1], t[2], t[3]))
        flagged = [(t, REGULAR if table is None else trade_flags(t[6], table)) for t in prints]
        last = [t[4] for t, f in flagged if f.last]
        high_low = [t[4] for t, f in flagged if f.high_low]
        bars[minute] = (
            last[0] if last else None,
            max(high_low) if high_low else None,
            min(high_low) if high_low else None,
            last[-1] if last else None,
            sum((t[5] for t, f in flagged if f.volume), Decimal(0)),
            len(prints),
        )
    return bars


def check_bars(settings: Settings, day_start: datetime, table: dict[str, Flags] | None, label: str) -> None:
    """COND0's minute bars from `day_start` on against the oracle; the other oracle must differ."""
    with connect(settings, "owner") as conn:
        trades = conn.execute(
            "select event_time, ts, kafka_partition, kafka_offset, price, volume, conditions"
            " from raw.trades where symbol = 'COND0' and event_time >= %s",
            (day_start,),
        ).fetchall()
        rows = conn.execute(
            f"select bar_start, open, high, low, close, volume, trade_count from intermediate.{MODEL}"
            " where symbol = 'COND0' and bar_start >= %s",
            (day_start,),
        ).fetchall()
    built = {row[0]: tuple(row[1:]) for row in rows}
    expected = oracle_bars(trades, table)
    other = oracle_bars(trades, None if table is not None else seed_flags())
    wrong = [minute for minute in expected if built.get(minute) != expected[minute]]
    if wrong or set(built) != set(expected):
        first = wrong[0] if wrong else None
        raise CheckFailed(f"{label}: {len(wrong)} of {len(expected)} minute bars of COND0 differ from the "
                          f"oracle, first {first}: {built.get(first) if first else None} against "
                          f"{expected.get(first) if first else None}")
    differing = sum(1 for minute in expected if expected[minute] != other[minute])
    if not differing:
        raise CheckFailed(f"{label}: the bars are the same with and without eligibility: nothing measured")
    print(f"  check ({label}): {len(expected):,} minute bars of COND0 equal the oracle "
          f"({differing:,} of them differ {'without' if table else 'with'} eligibility)")


def check_compiled(target: Path, with_lookup: bool) -> None:
    """The compiled model has the condition lookup (shipped) or not (baseline)."""
    compiled = next(target.glob(f"compiled/**/{MODEL}.sql"), None)
    if compiled is None:
        raise CheckFailed(f"no compiled {MODEL}.sql under {target}")
    has_lookup = "condition_sets as (" in compiled.read_text()
    if has_lookup != with_lookup:
        raise CheckFailed(f"{compiled}: condition lookup {'missing' if with_lookup else 'still there'}")


def dbt(settings: Settings, target: Path, args: Sequence[str], baseline: bool) -> float:
    """One dbt command on `target` (each variant its own, so partial parsing stays warm);
    returns its wall time."""
    extra = ["--vars", BASELINE_VARS] if baseline else []
    started = time.monotonic()
    result = run_dbt([*args, "--quiet", "--target-path", str(target), *extra], settings)
    seconds = time.monotonic() - started
    if not result.success:
        raise CheckFailed(f"dbt {' '.join(args)} failed: {failure_summary(result)}")
    return seconds


def model_seconds(target: Path) -> float:
    """The minute-bar model's own execution time in the last run on `target` (run_results.json)."""
    results = json.loads((target / "run_results.json").read_text())["results"]
    return float(next(r["execution_time"] for r in results if r["unique_id"].endswith(f".{MODEL}")))


def load(settings: Settings, trades: int, symbols: int, days: int, end: datetime) -> None:
    per_symbol = max(1, trades // symbols)
    start = end - timedelta(days=days)
    with connect(settings, "loader") as conn:
        ensure_partitions(conn, start, end)
        conn.execute(
            INSERT_TRADES,
            {
                "symbols": symbols,
                "per_symbol": per_symbol,
                "start_ms": int(start.timestamp() * 1000),
                "step_ms": days * 86_400_000 / per_symbol,
            },
        )
        conn.execute(RECORD_LOAD)


def run(settings: Settings, args: argparse.Namespace) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    targets = {False: TARGET_ROOT / "shipped", True: TARGET_ROOT / "baseline"}
    print(f"trade-condition eligibility benchmark: {args.trades:,} trades, {args.symbols} symbols, "
          f"{args.days} days; database {settings.postgres_db}")
    drop_database(settings)
    setup_warehouse(settings)
    started = time.monotonic()
    load(settings, args.trades, args.symbols, args.days, end)
    with connect(settings, "owner", autocommit=True) as conn:
        conn.execute("vacuum (analyze) raw.trades")
        (loaded,) = conn.execute("select count(*) from raw.trades").fetchone() or (0,)
    print(f"  loaded {loaded:,} trades in {time.monotonic() - started:.1f} s")
    # untimed: the timed builds both replace existing relations, and both start from a warm parse
    started = time.monotonic()
    dbt(settings, targets[False], ["build"], baseline=False)
    dbt(settings, targets[True], ["parse"], baseline=True)
    print(f"  first build (untimed in the figures): {time.monotonic() - started:.1f} s")
    day_start = (end - timedelta(days=1)).replace(hour=0, minute=0)

    whole: dict[bool, float] = {}
    whole_model: dict[bool, float] = {}
    for baseline, target in targets.items():
        whole[baseline] = dbt(settings, target, ["build", "--full-refresh"], baseline)
        whole_model[baseline] = model_seconds(target)
        check_compiled(target, with_lookup=not baseline)
        check_bars(settings, day_start, None if baseline else seed_flags(),
                   "baseline" if baseline else "shipped")
    for baseline, label in ((False, "with eligibility (shipped)"), (True, "without (baseline)")):
        print(f"  dbt build --full-refresh, {label + ':':27} {whole[baseline]:7.1f} s "
              f"({MODEL} {whole_model[baseline]:.1f} s)")
    print(f"  ratio with / without, whole build: {whole[False] / whole[True]:.2f}; "
          f"{MODEL}: {whole_model[False] / whole_model[True]:.2f}")

    alone: dict[bool, list[float]] = {False: [], True: []}
    for round_number in range(args.rounds):
        for baseline in ((False, True) if round_number % 2 == 0 else (True, False)):
            dbt(settings, targets[baseline], ["run", "--full-refresh", "--select", MODEL], baseline)
            alone[baseline].append(model_seconds(targets[baseline]))
    if args.rounds:
        with_, without = statistics.median(alone[False]), statistics.median(alone[True])
        print(f"  {MODEL} alone, full refresh, median of {args.rounds}: with {with_:.1f} s "
              f"({', '.join(f'{s:.1f}' for s in alone[False])}), without {without:.1f} s "
              f"({', '.join(f'{s:.1f}' for s in alone[True])})")
        print(f"  ratio with / without, {MODEL} alone: {with_ / without:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=10_000_000, help="trades of history")
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--days", type=int, default=20, help="days the history spans")
    parser.add_argument("--rounds", type=int, default=3,
                        help="full refreshes of the minute-bar model alone, each way")
    parser.add_argument("--keep-db", action="store_true", help="keep the bench database")
    args = parser.parse_args(argv)
    if args.trades < args.symbols or args.symbols < 1 or args.days < 2 or args.rounds < 0:
        parser.error("need --trades >= --symbols >= 1, --days >= 2, --rounds >= 0")
    return run_in_own_database("conditions_bench", lambda settings: run(settings, args), args.keep_db)


if __name__ == "__main__":
    sys.exit(main())
