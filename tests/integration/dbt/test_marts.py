"""dbt marts against oracles: fct_bars vs pandas, fct_technicals vs TA-Lib, through several
incremental runs with late trades in between, a full refresh, and the bar lookbacks.

Runs in its own database (`<POSTGRES_DB>_dbt_test`), created and dropped here, so that the
global watermarks the incremental models keep see only this test's rows.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.integration.dbt.oracles import INDICATORS, indicator_mismatches, pandas_bars
from tests.integration.dbt.raw_rows import (
    OffsetCounter,
    RawTrade,
    daily_trades,
    load_alerts,
    load_trades,
    ms,
    random_walk_trades,
    with_coordinates,
)
from tickhouse.config import Settings, load_settings
from tickhouse.transform import build
from tickhouse.warehouse import connect, setup_warehouse

pytestmark = pytest.mark.integration

BASE = datetime(2025, 3, 10, 2, 0, tzinfo=UTC)  # spans New York midnight (04:00 UTC, EDT)
STOCKS_CSV = Path(str(__import__("bokeh_sampledata").__file__)).parent / "_data" / "stocks.csv.gz"
BAR_COLUMNS = ["open", "high", "low", "close", "volume", "vwap", "trade_count"]


def _drop_database(settings: Settings) -> None:
    with connect(settings, "owner", dbname="postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(settings.postgres_db))
        )


@pytest.fixture(scope="module")
def settings() -> Iterator[Settings]:
    base = load_settings()
    test_settings = dataclasses.replace(base, postgres_db=f"{base.postgres_db}_dbt_test")
    _drop_database(test_settings)
    setup_warehouse(test_settings)
    yield test_settings
    _drop_database(test_settings)


@dataclass
class Snapshot:
    trades: list[RawTrade]
    bars: list[dict[str, Any]]
    technicals: list[dict[str, Any]]


@dataclass
class Scenario:
    settings: Settings
    target_path: Path
    incremental: list[Snapshot] = field(default_factory=list)
    full_refresh: Snapshot | None = None
    after_very_late_trade: Snapshot | None = None
    very_late_trade: RawTrade | None = None
    after_implausible_print: Snapshot | None = None
    build_seconds: list[float] = field(default_factory=list)


def _fetch(settings: Settings, query: str) -> list[dict[str, Any]]:
    with connect(settings, "owner") as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return list(cur.execute(query))


def _snapshot(settings: Settings, trades: list[RawTrade]) -> Snapshot:
    bars = _fetch(settings, "select * from marts.fct_bars order by symbol, bar_interval, bar_start")
    technicals = _fetch(
        settings, "select * from marts.fct_technicals order by symbol, bar_interval, bar_start"
    )
    return Snapshot(list(trades), bars, technicals)


def _timed_build(scenario: Scenario, *args: str) -> None:
    started = time.monotonic()
    # a target directory of its own: the project's target/ (the DAG's manifest) stays untouched
    build(["--target-path", str(scenario.target_path), *args], scenario.settings)
    scenario.build_seconds.append(time.monotonic() - started)


@pytest.fixture(scope="module")
def scenario(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    rng = random.Random(20250310)
    offsets = OffsetCounter()
    loader = settings.conninfo("loader")
    run = Scenario(settings, tmp_path_factory.mktemp("dbt-target"))

    # MSFT: a random walk with a 3-minute hole that a late trade fills in run 3;
    # ZZT.X (not in dim_symbols): starts flat for 20 minutes (RSI's 0/0 case);
    # AAPL: 260 real trading days (open/high/low/close trades), for the daily series.
    msft = random_walk_trades(rng, "MSFT", BASE, 300, 28.0, gap=(230, 233))
    zzt = random_walk_trades(rng, "ZZT.X", BASE, 300, 150.0, flat_minutes=20)
    aapl = daily_trades(STOCKS_CSV, "AAPL", 260, "AAPL")
    synthetic = sorted(msft + zzt, key=lambda row: row[3])

    def window(start_min: float, end_min: float) -> list[tuple[str, Decimal, Decimal, int]]:
        lo, hi = ms(BASE + timedelta(minutes=start_min)), ms(BASE + timedelta(minutes=end_min))
        return [row for row in synthetic if lo <= row[3] < hi]

    def late(symbol: str, minute: float, price: str) -> tuple[str, Decimal, Decimal, int]:
        return (symbol, Decimal(price), Decimal(7), ms(BASE + timedelta(minutes=minute)))

    loaded: list[RawTrade] = []
    batches = [
        # run 1: history
        aapl + window(0, 150),
        # run 2: new trades, plus late ones 10-40 minutes behind the newest bar
        [*window(150, 240), late("MSFT", 112.5, "27.10"), late("ZZT.X", 141, "151.37")],
        # run 3: the rest, plus a trade in MSFT's empty minute 231 and more late ones
        [*window(240, 300), late("MSFT", 231.2, "28.55"), late("ZZT.X", 205.5, "150.01")],
    ]
    alerts = [
        {
            "alert_id": "a-1",
            "symbol": "MSFT",
            "rule": "price_spike",
            "severity": "warning",
            "message": "spike",
            "trade_ts": ms(BASE + timedelta(minutes=5)),
            "detected_ts": ms(BASE) + 301_000,
        },
        {
            "alert_id": "a-2",
            "symbol": "ZZT.X",
            "rule": "volume_spike",
            "severity": "critical",
            "message": "volume",
            "trade_ts": ms(BASE + timedelta(minutes=7)),
            "detected_ts": ms(BASE) + 421_500,
        },
    ]
    historical_alert = {
        "alert_id": "a-3",
        "symbol": "AAPL",
        "rule": "session_high",
        "severity": "info",
        "message": "replayed history",
        "trade_ts": ms(BASE - timedelta(days=3650)),
        "detected_ts": ms(BASE),
    }
    for number, batch in enumerate(batches, start=1):
        trades = with_coordinates(batch, offsets)
        load_trades(loader, trades)
        loaded.extend(trades)
        if number == 1:
            load_alerts(loader, alerts, first_offset=0)
        if number == 2:  # an alert about a trade years older than every other (a replay)
            load_alerts(loader, [historical_alert], first_offset=2)
        if number == 3:  # the alert service restarted and published a-1 again
            load_alerts(loader, alerts[:1], first_offset=10)
        _timed_build(run)
        run.incremental.append(_snapshot(settings, loaded))

    _timed_build(run, "--full-refresh")
    run.full_refresh = _snapshot(settings, loaded)

    # beyond the intraday lookback (60 minutes) but within the daily one (3 days)
    newest = max(t.ts for t in loaded if t.symbol == "MSFT")
    very_late = with_coordinates([("MSFT", Decimal("99.99"), Decimal(1), newest - 150 * 60_000)], offsets)
    load_trades(loader, very_late)
    _timed_build(run)
    run.very_late_trade = very_late[0]
    run.after_very_late_trade = _snapshot(settings, [*loaded, *very_late])
    # a print the contract admits (finite, positive) but no market makes: it must not break the
    # build (1e308 overflows double-precision indicators) and stays out of the bars
    newest = max(t.ts for t in [*loaded, *very_late] if t.symbol == "MSFT")
    implausible = with_coordinates([("MSFT", Decimal("1e308"), Decimal("1e308"), newest + 1_000)], offsets)
    load_trades(loader, implausible)
    _timed_build(run)
    run.after_implausible_print = _snapshot(settings, [*loaded, *very_late])
    print(f"dbt build seconds: {[round(s, 1) for s in run.build_seconds]}")
    return run


def _bar_key(row: dict[str, Any]) -> tuple[str, str, datetime]:
    return (row["symbol"], row["bar_interval"], row["bar_start"])


def _assert_bars_match_pandas(snapshot: Snapshot) -> None:
    expected = pandas_bars(snapshot.trades)
    want = {(r.symbol, r.bar_interval, r.bar_start.to_pydatetime()): r for r in expected.itertuples()}
    got = {_bar_key(row): row for row in snapshot.bars}
    assert set(got) == set(want), (
        f"bars only in dbt: {sorted(set(got) - set(want))[:5]}, "
        f"only in pandas: {sorted(set(want) - set(got))[:5]}"
    )
    for key, row in got.items():
        ref = want[key]
        for column in ("open", "high", "low", "close", "volume", "trade_count"):
            assert row[column] == getattr(ref, column), (key, column, row[column], getattr(ref, column))
        if ref.vwap is None:
            assert row["vwap"] is None, key
        else:
            assert abs(row["vwap"] - ref.vwap) <= abs(ref.vwap) * Decimal("1e-15"), (
                key,
                row["vwap"],
                ref.vwap,
            )


def _assert_indicators_match_talib(snapshot: Snapshot) -> int:
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in snapshot.technicals:
        series.setdefault((row["symbol"], row["bar_interval"]), []).append(row)
    bar_closes: dict[tuple[str, str], list[float]] = {}
    for row in snapshot.bars:
        bar_closes.setdefault((row["symbol"], row["bar_interval"]), []).append(float(row["close"]))
    assert set(series) == set(bar_closes)
    checked = 0
    for key, rows in series.items():
        closes = bar_closes[key]
        assert [r["close"] for r in rows] == closes, key
        assert [r["bar_number"] for r in rows] == list(range(1, len(rows) + 1)), key
        ours = {name: [r[name] for r in rows] for name in INDICATORS}
        problems = indicator_mismatches(ours, closes)
        assert not problems, f"{key}: {len(problems)} mismatches, e.g. {problems[:5]}"
        checked += len(rows)
    return checked


def test_bars_match_pandas_after_every_incremental_run(scenario: Scenario) -> None:
    for snapshot in scenario.incremental:
        _assert_bars_match_pandas(snapshot)


def test_indicators_match_talib_after_every_incremental_run(scenario: Scenario) -> None:
    checked = [_assert_indicators_match_talib(s) for s in scenario.incremental]
    # the series are long enough for every indicator: 1m has 300 bars, AAPL 1d 260
    longest = max(
        sum(1 for r in scenario.incremental[-1].technicals if (r["symbol"], r["bar_interval"]) == key)
        for key in {("MSFT", "1m"), ("AAPL", "1d")}
    )
    assert longest >= 260 and checked[-1] > checked[0]
    assert any(r["sma_200"] is not None for r in scenario.incremental[-1].technicals)


def test_late_trade_in_an_empty_minute_inserts_a_bar_and_renumbers_the_series(scenario: Scenario) -> None:
    minute = BASE + timedelta(minutes=231)
    before = [r for r in scenario.incremental[1].bars if _bar_key(r) == ("MSFT", "1m", minute)]
    after = [r for r in scenario.incremental[2].bars if _bar_key(r) == ("MSFT", "1m", minute)]
    assert not before and len(after) == 1 and after[0]["close"] == Decimal("28.55")


def test_full_refresh_gives_the_numbers_of_the_incremental_runs(scenario: Scenario) -> None:
    assert scenario.full_refresh is not None
    incremental, full = scenario.incremental[-1], scenario.full_refresh
    assert [
        {k: r[k] for k in ("symbol", "bar_interval", "bar_start", *BAR_COLUMNS)} for r in incremental.bars
    ] == [{k: r[k] for k in ("symbol", "bar_interval", "bar_start", *BAR_COLUMNS)} for r in full.bars]
    columns = ("symbol", "bar_interval", "bar_start", "close", *INDICATORS, "bar_number", "ta_state")
    assert [{k: r[k] for k in columns} for r in incremental.technicals] == [
        {k: r[k] for k in columns} for r in full.technicals
    ]  # exactly equal, not approximately
    _assert_indicators_match_talib(full)


def test_a_trade_beyond_the_intraday_lookback_updates_only_the_daily_bar(scenario: Scenario) -> None:
    trade = scenario.very_late_trade
    assert trade is not None and scenario.after_very_late_trade is not None
    before = {_bar_key(r): r for r in scenario.full_refresh.bars}  # type: ignore[union-attr]
    after = {_bar_key(r): r for r in scenario.after_very_late_trade.bars}
    minute = trade.event_time.replace(second=0, microsecond=0)
    assert ("MSFT", "1m", minute) not in after or after[("MSFT", "1m", minute)] == before.get(
        ("MSFT", "1m", minute)
    )
    daily = [k for k in after if k[0] == "MSFT" and k[1] == "1d" and k[2] <= trade.event_time]
    day_key = max(daily, key=lambda k: k[2])
    assert after[day_key]["high"] == Decimal("99.99")
    assert after[day_key]["trade_count"] == before[day_key]["trade_count"] + 1
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {day_key}, sorted(changed)
    # only the changed series is recomputed, and only from the changed bar on
    old = {_bar_key(r): r["updated_at"] for r in scenario.full_refresh.technicals}  # type: ignore[union-attr]
    recomputed = {
        _bar_key(r) for r in scenario.after_very_late_trade.technicals if r["updated_at"] != old[_bar_key(r)]
    }
    assert recomputed == {k for k in after if k[:2] == ("MSFT", "1d") and k[2] >= day_key[2]}
    _assert_indicators_match_talib(scenario.after_very_late_trade)


def test_unknown_symbols_flow_through_and_alerts_are_one_row_each(scenario: Scenario) -> None:
    settings = scenario.settings
    assert {r["symbol"] for r in scenario.incremental[-1].bars} == {"AAPL", "MSFT", "ZZT.X"}
    analytics = _fetch(settings, "select * from marts.stock_analytics where symbol = 'ZZT.X'")
    assert analytics and all(r["company_name"] is None for r in analytics)
    alerts = _fetch(settings, "select alert_id, severity, kafka_offset from marts.fct_alerts order by 1")
    assert [(a["alert_id"], a["severity"], a["kafka_offset"]) for a in alerts] == [
        ("a-1", "warning", 0),
        ("a-2", "critical", 1),
        ("a-3", "info", 2),
    ]


def test_stock_analytics_formulas(scenario: Scenario) -> None:
    rows = _fetch(
        scenario.settings,
        "select * from marts.stock_analytics where symbol = 'AAPL' order by trading_date",
    )
    daily = [r for r in scenario.incremental[-1].bars if r["symbol"] == "AAPL" and r["bar_interval"] == "1d"]
    assert len(rows) == len(daily) == 260
    closes = [r["close"] for r in daily]
    last = rows[-1]
    assert last["daily_close"] == closes[-1]
    assert last["ma_7_day"] == pytest.approx(sum(closes[-7:]) / 7, rel=Decimal("1e-15"))
    assert last["ma_30_day"] == pytest.approx(sum(closes[-30:]) / 30, rel=Decimal("1e-15"))
    changes = [100 * (b - a) / a for a, b in zip(closes[-31:-1], closes[-30:], strict=True)]
    mean = sum(changes) / 30
    variance = sum((c - mean) ** 2 for c in changes) / 29
    assert float(last["volatility_30_day"]) == pytest.approx(float(variance) ** 0.5, rel=1e-12)
    assert last["daily_change_pct"] == pytest.approx(
        100 * (closes[-1] - closes[-2]) / closes[-2], rel=Decimal("1e-15")
    )
    cutoff = last["trading_date"] - timedelta(days=363)
    year = [r for r in daily if r["bar_start"].astimezone(UTC).date() >= cutoff]
    assert last["high_52_week"] == max(r["high"] for r in year)
    assert last["low_52_week"] == min(r["low"] for r in year)
    assert rows[0]["ma_7_day"] is None and rows[6]["ma_7_day"] is not None
    assert rows[0]["daily_change_pct"] is None


def test_bi_reader_reads_marts_and_nothing_else(scenario: Scenario) -> None:
    settings = scenario.settings
    with psycopg.connect(settings.conninfo("bi_reader"), autocommit=True) as conn:
        for table in (
            "marts.fct_bars",
            "marts.fct_technicals",
            "marts.stock_analytics",
            "marts.fct_alerts",
            "marts.dim_symbols",
        ):
            assert conn.execute(f"select count(*) from {table}").fetchone()[0] > 0, table  # type: ignore[index]
        for table in (
            "staging.stg_tickhouse__trades",
            "intermediate.int_trades_aggregated_to_minute_bars",
            "raw.trades",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select count(*) from {table}")


def test_implausible_prints_stay_out_of_the_bars_and_do_not_break_the_build(scenario: Scenario) -> None:
    before, after = scenario.after_very_late_trade, scenario.after_implausible_print
    assert before is not None and after is not None
    columns = (
        "symbol",
        "bar_interval",
        "bar_start",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "vwap",
        "trade_count",
    )

    def values(snapshot: Snapshot) -> list[tuple[Any, ...]]:
        return sorted(tuple(r[c] for c in columns) for r in snapshot.bars)

    # exactly the bars of before the print arrived, and indicators still equal to TA-Lib
    assert values(after) == values(before)
    _assert_indicators_match_talib(after)
    assert max(r["high"] for r in after.bars) < 1_000_000_000
