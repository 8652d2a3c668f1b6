"""dbt marts against oracles: fct_bars vs pandas over raw.trades, fct_technicals vs TA-Lib,
through incremental runs with late trades and history in between, and a full refresh.

Rows arrive the production way (Kafka -> `drain_once`) in a warehouse database of the test's
own (`<POSTGRES_DB>_dbt_test`), created and dropped here. There is no lookback window: after
every run the marts equal what raw holds, whatever the event time of what arrived.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import talib

from tests.integration.dbt.conftest import (
    Feed,
    Transformer,
    fetch,
    own_feed,
    own_warehouse,
    raw_trades,
)
from tests.integration.dbt.oracles import INDICATORS, indicator_mismatches, pandas_bars
from tests.integration.dbt.raw_rows import (
    NEW_YORK,
    RawTrade,
    daily_trades,
    ms,
    random_walk_trades,
)
from tickhouse.config import Settings

pytestmark = pytest.mark.integration

# Monday 9 March 2025, 09:30 New York (EDT): five hours of the regular session; the hour buckets
# (aligned to UTC hours) start in the pre-market
BASE = datetime(2025, 3, 10, 13, 30, tzinfo=UTC)
STOCKS_CSV = Path(str(__import__("bokeh_sampledata").__file__)).parent / "_data" / "stocks.csv.gz"
BAR_COLUMNS = [
    "trading_date",
    "session",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
    "bar_source",
]
Trade = tuple[str, Decimal, Decimal, int]


@dataclass
class Snapshot:
    trades: list[RawTrade]
    bars: list[dict[str, Any]]
    technicals: list[dict[str, Any]]


@dataclass
class Scenario:
    settings: Settings
    transform: Transformer
    incremental: list[Snapshot] = field(default_factory=list)
    full_refresh: Snapshot | None = None
    late_trades: list[Trade] = field(default_factory=list)
    after_late_trades: Snapshot | None = None
    after_implausible_print: Snapshot | None = None
    history: list[Snapshot] = field(default_factory=list)
    history_full_refresh: Snapshot | None = None
    gap_days: list[date] = field(default_factory=list)
    after_gap: Snapshot | None = None


def _snapshot(settings: Settings) -> Snapshot:
    """The bars and indicators, with the state the incremental runs keep (intermediate tables)."""
    bars = fetch(settings, "select * from intermediate.int_bars order by symbol, bar_interval, bar_start")
    technicals = fetch(
        settings, "select * from intermediate.int_technicals order by symbol, bar_interval, bar_start"
    )
    return Snapshot(raw_trades(settings), bars, technicals)


def _load_and_transform(scenario: Scenario, feed: Feed, trades: list[Trade], *args: str) -> Snapshot:
    feed.publish_trades(trades)
    feed.drain()
    scenario.transform(*args)
    return _snapshot(scenario.settings)


def _alert(
    alert_id: str, symbol: str, rule: str, severity: str, trade: datetime, detected_ms: int
) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "symbol": symbol,
        "rule": rule,
        "severity": severity,
        "message": rule,
        "trade_ts": ms(trade),
        "detected_ts": detected_ms,
        "details": {},
    }


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with own_warehouse("dbt_test") as settings, own_feed(settings) as feed:
        yield _run_scenario(settings, feed, Transformer(settings, tmp_path_factory.mktemp("dbt-target")))


def _run_scenario(settings: Settings, feed: Feed, transform: Transformer) -> Scenario:
    rng = random.Random(20250310)
    run = Scenario(settings, transform)

    # MSFT: a random walk with a 3-minute hole that a late trade fills in run 3;
    # ZZT.X (not in dim_symbols): starts flat for 20 minutes (RSI's 0/0 case);
    # AAPL: 260 real trading days (open/high/low/close trades), for the daily series.
    msft = random_walk_trades(rng, "MSFT", BASE, 300, 28.0, gap=(230, 233))
    zzt = random_walk_trades(rng, "ZZT.X", BASE, 300, 150.0, flat_minutes=20)
    aapl = daily_trades(STOCKS_CSV, "AAPL", 260, "AAPL")
    synthetic = sorted(msft + zzt, key=lambda row: row[3])

    def window(start_min: float, end_min: float) -> list[Trade]:
        lo, hi = ms(BASE + timedelta(minutes=start_min)), ms(BASE + timedelta(minutes=end_min))
        return [row for row in synthetic if lo <= row[3] < hi]

    def at(symbol: str, moment: datetime, price: str, volume: int = 7) -> Trade:
        return (symbol, Decimal(price), Decimal(volume), ms(moment))

    def late(symbol: str, minute: float, price: str) -> Trade:
        return at(symbol, BASE + timedelta(minutes=minute), price)

    detected = ms(BASE) + 301_000
    batches = [
        # run 1: history
        aapl + window(0, 150),
        # run 2: new trades, plus late ones 10-40 minutes behind the newest bar
        [*window(150, 240), late("MSFT", 112.5, "27.10"), late("ZZT.X", 141, "151.37")],
        # run 3: the rest, plus a trade in MSFT's empty minute 231 and more late ones
        [*window(240, 300), late("MSFT", 231.2, "28.55"), late("ZZT.X", 205.5, "150.01")],
    ]
    alerts = [
        _alert("a-1", "MSFT", "price_spike", "warning", BASE + timedelta(minutes=5), detected),
        _alert("a-2", "ZZT.X", "volume_spike", "critical", BASE + timedelta(minutes=7), detected + 120_500),
    ]
    # an alert about a trade years older than every other (a replay)
    historical_alert = _alert("a-3", "AAPL", "session_high", "info", BASE - timedelta(days=3650), ms(BASE))
    for number, batch in enumerate(batches, start=1):
        if number == 1:
            feed.publish_alerts(alerts)
        if number == 2:
            feed.publish_alerts([historical_alert])
        if number == 3:  # the alert service restarted and published a-1 again
            feed.publish_alerts(alerts[:1])
        run.incremental.append(_load_and_transform(run, feed, batch))

    transform("--full-refresh")
    run.full_refresh = _snapshot(settings)

    # Late trades far behind the newest bar (the old design's lookbacks were 60 minutes and
    # 3 days): one inside MSFT's intraday history, one new high in AAPL's 100th trading day.
    aapl_day = datetime.fromtimestamp(aapl[4 * 100][3] / 1000, tz=UTC).astimezone(NEW_YORK)
    aapl_high = max(t[1] for t in aapl[400:404]) + Decimal("1.25")
    run.late_trades = [
        late("MSFT", 100.5, "30.05"),
        at("AAPL", aapl_day.replace(hour=12, minute=0), str(aapl_high), 100),
    ]
    run.after_late_trades = _load_and_transform(run, feed, run.late_trades)

    # a print the contract admits (finite, positive) but no market makes: it must not break the
    # build (1e308 overflows double-precision indicators) and stays out of the bars
    newest = max(t[3] for t in synthetic)
    run.after_implausible_print = _load_and_transform(
        run, feed, [("MSFT", Decimal("1e308"), Decimal("1e308"), newest + 1_000)]
    )

    # A symbol that skips a session: its change across the gap must stay NULL.
    run.gap_days = [datetime.fromtimestamp(aapl[4 * n][3] / 1000, tz=UTC).date() for n in range(200, 210)]
    gappy = [row for n, row in enumerate(aapl[800:840]) if n // 4 != 5]
    run.after_gap = _load_and_transform(run, feed, [("GAPY", p, v, ts) for _, p, v, ts in gappy])

    # A new symbol with two years of daily history, arriving in four parts out of order.
    ibm = daily_trades(STOCKS_CSV, "IBM", 504, "NVDA")
    parts = [ibm[i * 504 : (i + 1) * 504] for i in range(4)]
    for part in (parts[2], parts[0], parts[3], parts[1]):
        run.history.append(_load_and_transform(run, feed, part))
    transform("--full-refresh")
    run.history_full_refresh = _snapshot(settings)
    print(f"dbt build seconds: {[round(s, 1) for s in transform.seconds]}")
    return run


def _bar_key(row: dict[str, Any]) -> tuple[str, str, datetime]:
    return (row["symbol"], row["bar_interval"], row["bar_start"])


def _bar_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in BAR_COLUMNS)


def _assert_bars_match_pandas(snapshot: Snapshot) -> None:
    """fct_bars equals the bars of every row of raw.trades, computed the plain way."""
    expected = pandas_bars(snapshot.trades)
    want = {(r.symbol, r.bar_interval, r.bar_start.to_pydatetime()): r for r in expected.itertuples()}
    got = {_bar_key(row): row for row in snapshot.bars}
    assert set(got) == set(want), (
        f"bars only in dbt: {sorted(set(got) - set(want))[:5]}, "
        f"only in pandas: {sorted(set(want) - set(got))[:5]}"
    )
    for key, row in got.items():
        ref = want[key]
        assert row["bar_source"] == "trades", key
        for column in ("trading_date", "session", "open", "high", "low", "close", "volume", "trade_count"):
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


def _assert_same_numbers(left: Snapshot, right: Snapshot) -> None:
    """Bars and indicators exactly equal (not approximately), indicator state included."""
    bar_columns = ("symbol", "bar_interval", "bar_start", *BAR_COLUMNS)
    assert [{k: r[k] for k in bar_columns} for r in left.bars] == [
        {k: r[k] for k in bar_columns} for r in right.bars
    ]
    columns = ("symbol", "bar_interval", "bar_start", "close", *INDICATORS, "bar_number", "ta_state")
    assert [{k: r[k] for k in columns} for r in left.technicals] == [
        {k: r[k] for k in columns} for r in right.technicals
    ]


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
    _assert_same_numbers(scenario.incremental[-1], scenario.full_refresh)
    _assert_indicators_match_talib(scenario.full_refresh)


def test_late_trades_far_behind_update_exactly_their_bars_and_the_series_from_there(
    scenario: Scenario,
) -> None:
    before, after = scenario.full_refresh, scenario.after_late_trades
    assert before is not None and after is not None
    _assert_bars_match_pandas(after)
    _assert_indicators_match_talib(after)
    # the bars that hold a late trade, in every interval, and no other, were written
    old = {_bar_key(r): r for r in before.bars}
    new = {_bar_key(r): r for r in after.bars}
    expected = pandas_bars(
        [
            t
            for t in after.trades
            if (t.symbol, t.price, t.ts) in {(s, p, ts) for s, p, _, ts in scenario.late_trades}
        ]
    )
    touched = {(r.symbol, r.bar_interval, r.bar_start.to_pydatetime()) for r in expected.itertuples()}
    assert len(touched) == 10  # 5 intervals x 2 trades
    written = {k for k, r in new.items() if k not in old or r["updated_at"] != old[k]["updated_at"]}
    assert written == touched
    assert all(_bar_values(new[k]) != _bar_values(old[k]) for k in touched if k in old)
    aapl_day = [k for k in touched if k[0] == "AAPL" and k[1] == "1d"]
    assert aapl_day and new[aapl_day[0]]["high"] == Decimal(scenario.late_trades[1][1])
    # each touched series is recomputed from its earliest touched bar on, and only from there
    first_touched: dict[tuple[str, str], datetime] = {}
    for symbol, interval, start in touched:
        key = (symbol, interval)
        first_touched[key] = min(start, first_touched.get(key, start))
    old_technicals = {_bar_key(r): r["updated_at"] for r in before.technicals}
    recomputed = {_bar_key(r) for r in after.technicals if old_technicals.get(_bar_key(r)) != r["updated_at"]}
    assert recomputed == {k for k in new if k[:2] in first_touched and k[2] >= first_touched[k[:2]]}


def test_history_out_of_order_for_a_new_symbol_reaches_the_marts_every_run(scenario: Scenario) -> None:
    for snapshot in scenario.history:
        _assert_bars_match_pandas(snapshot)
        _assert_indicators_match_talib(snapshot)
    last = scenario.history[-1]
    daily = [r for r in last.technicals if r["symbol"] == "NVDA" and r["bar_interval"] == "1d"]
    assert len(daily) == 504
    # an analyst who adds a symbol with its history gets its SMA-200 on daily bars at once
    assert daily[-1]["sma_200"] is not None and daily[198]["sma_200"] is None
    assert daily[199]["sma_200"] is not None


def test_full_refresh_after_out_of_order_history_gives_the_same_numbers(scenario: Scenario) -> None:
    assert scenario.history_full_refresh is not None
    _assert_same_numbers(scenario.history[-1], scenario.history_full_refresh)


def test_unknown_symbols_flow_through_and_alerts_are_one_row_each(scenario: Scenario) -> None:
    settings = scenario.settings
    assert {r["symbol"] for r in scenario.incremental[-1].bars} == {"AAPL", "MSFT", "ZZT.X"}
    analytics = fetch(settings, "select * from marts.stock_analytics where symbol = 'ZZT.X'")
    assert analytics
    alerts = fetch(
        settings, "select alert_id, severity, kafka_offset from intermediate.int_alerts order by 1"
    )
    assert [(a["alert_id"], a["severity"]) for a in alerts] == [
        ("a-1", "warning"),
        ("a-2", "critical"),
        ("a-3", "info"),  # about a trade ten years older than the rest: still a new alert
    ]
    # a-1 was published twice: the first delivery is the one kept
    deliveries = fetch(
        settings, "select kafka_offset from raw.alerts where alert_id = 'a-1' order by kafka_offset"
    )
    assert len(deliveries) == 2 and alerts[0]["kafka_offset"] == deliveries[0]["kafka_offset"]


def test_stock_analytics_formulas(scenario: Scenario) -> None:
    rows = fetch(
        scenario.settings,
        "select * from marts.stock_analytics where symbol = 'AAPL' order by trading_date",
    )
    final = scenario.history_full_refresh
    assert final is not None
    daily = [r for r in final.bars if r["symbol"] == "AAPL" and r["bar_interval"] == "1d"]
    assert len(rows) == len(daily) == 260
    closes = [r["close"] for r in daily]
    last = rows[-1]
    # every day of AAPL's series is a session after the one before it
    assert all(r["sessions_since_previous"] == 1 for r in rows[1:])
    assert last["daily_close"] == closes[-1]
    # rounded to 4 decimals (prices in dollars, percentages in percent)
    assert last["ma_7_day"] == round(sum(closes[-7:]) / 7, 4)
    assert last["ma_30_day"] == round(sum(closes[-30:]) / 30, 4)
    changes = [100 * (b - a) / a for a, b in zip(closes[-31:-1], closes[-30:], strict=True)]
    mean = sum(changes) / 30
    variance = sum((c - mean) ** 2 for c in changes) / 29
    assert float(last["volatility_30_day"]) == pytest.approx(float(variance) ** 0.5, abs=5e-5)
    assert last["daily_change_pct"] == round(100 * (closes[-1] - closes[-2]) / closes[-2], 4)
    cutoff = last["trading_date"] - timedelta(days=363)
    year = [r for r in daily if r["bar_start"].astimezone(UTC).date() >= cutoff]
    assert last["high_52_week"] == max(r["high"] for r in year)
    assert last["low_52_week"] == min(r["low"] for r in year)
    assert rows[0]["ma_7_day"] is None and rows[6]["ma_7_day"] is not None
    assert rows[0]["daily_change_pct"] is None


def test_changes_compare_with_the_previous_session_and_stay_null_across_a_gap(scenario: Scenario) -> None:
    rows = fetch(
        scenario.settings,
        "select * from marts.stock_analytics where symbol = 'GAPY' order by trading_date",
    )
    traded = [d for n, d in enumerate(scenario.gap_days) if n != 5]
    assert [r["trading_date"] for r in rows] == traded
    after_gap = rows[5]  # the session after the one GAPY skipped
    assert after_gap["previous_trading_date"] == scenario.gap_days[4]
    assert after_gap["sessions_since_previous"] == 2
    assert after_gap["previous_close"] is None and after_gap["daily_change_pct"] is None
    assert rows[6]["sessions_since_previous"] == 1 and rows[6]["daily_change_pct"] is not None
    # a 7-session average needs a bar on all seven sessions: none spans the gap
    assert all(r["ma_7_day"] is None for r in rows)


def test_bi_reader_reads_marts_and_nothing_else(scenario: Scenario) -> None:
    settings = scenario.settings
    with psycopg.connect(settings.conninfo("bi_reader"), autocommit=True) as conn:
        for table in (
            "marts.fct_bars",
            "marts.fct_bars_1m",
            "marts.fct_bars_1d",
            "marts.fct_technicals",
            "marts.stock_analytics",
            "marts.fct_alerts",
            "marts.dim_symbols",
        ):
            assert conn.execute(f"select count(*) from {table}").fetchone()[0] > 0, table  # type: ignore[index]
        for table in (
            "staging.stg_tickhouse__trades",
            "intermediate.int_trades_aggregated_to_minute_bars",
            "intermediate.int_bars",
            "intermediate.symbol_reference",
            "raw.trades",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select count(*) from {table}")


def test_implausible_prints_stay_out_of_the_bars_and_do_not_break_the_build(scenario: Scenario) -> None:
    before, after = scenario.after_late_trades, scenario.after_implausible_print
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


def test_marts_are_views_whose_contracts_and_descriptions_reach_the_database(scenario: Scenario) -> None:
    """What a BI tool sees: fixed column names and types, and every column described (persist_docs)."""
    settings = scenario.settings
    columns = fetch(
        settings,
        "select c.table_name, c.column_name, c.data_type,"
        " col_description(format('marts.%I', c.table_name)::regclass, c.ordinal_position) as description"
        " from information_schema.columns c where c.table_schema = 'marts' order by 1, c.ordinal_position",
    )
    by_table: dict[str, dict[str, dict[str, Any]]] = {}
    for column in columns:
        by_table.setdefault(column["table_name"], {})[column["column_name"]] = column
    assert list(by_table["fct_alerts"]) == [
        "alert_id",
        "symbol",
        "rule",
        "severity",
        "message",
        "trade_ts",
        "detected_ts",
        "detection_latency_ms",
        "details",
    ]
    assert by_table["fct_alerts"]["trade_ts"]["data_type"] == "timestamp with time zone"
    assert by_table["fct_alerts"]["details"]["data_type"] == "text"
    assert (
        by_table["fct_technicals"]["close"]["data_type"]
        == by_table["fct_bars"]["close"]["data_type"]
        == "numeric"
    )
    assert by_table["fct_bars"]["trade_count"]["data_type"] == "bigint"
    assert {"trading_date", "session", "bar_source"} <= set(by_table["fct_bars"])
    assert "bar_interval" not in by_table["fct_bars_1d"]
    internal = {"updated_at", "source_updated_at", "ta_state", "bar_number", "bars_updated_at", "loaded_at"}
    for table, table_columns in by_table.items():
        assert not internal & set(table_columns), (table, internal & set(table_columns))
        undocumented = [name for name, column in table_columns.items() if not column["description"]]
        assert not undocumented, (table, undocumented)
    kinds = fetch(
        settings, "select table_name, table_type from information_schema.tables where table_schema = 'marts'"
    )
    assert {k["table_type"] for k in kinds} == {"VIEW"}
    comment = fetch(settings, "select obj_description('marts.fct_bars'::regclass, 'pg_class') as text")
    assert comment[0]["text"] and "OHLCV" in comment[0]["text"]


def test_a_bi_tool_as_bi_reader_gets_the_right_numbers(scenario: Scenario) -> None:
    """The queries a Superset or Metabase user writes first, as bi_reader with only its role
    defaults (search_path marts, a statement timeout, read-only), checked against oracles."""
    final = scenario.history_full_refresh
    assert final is not None
    expected = pandas_bars(final.trades)
    with psycopg.connect(scenario.settings.conninfo("bi_reader"), autocommit=True) as conn:
        defaults = conn.execute(
            "select current_setting('search_path'), current_setting('statement_timeout'),"
            " current_setting('default_transaction_read_only')"
        ).fetchone()
        assert defaults == ("marts", "2min", "on")

        def rows(query: str) -> list[tuple[Any, ...]]:
            return conn.execute(query).fetchall()

        # the latest bar of every interval for one symbol (unqualified names: the search path)
        latest = rows(
            "select distinct on (bar_interval) bar_interval, bar_start, close, volume from fct_bars"
            " where symbol = 'MSFT' order by bar_interval, bar_start desc"
        )
        msft = expected[expected["symbol"] == "MSFT"].sort_values("bar_start")
        oracle = {interval: group.iloc[-1] for interval, group in msft.groupby("bar_interval", sort=False)}
        assert {r[0]: (r[1], r[2], r[3]) for r in latest} == {
            interval: (bar.bar_start.to_pydatetime(), bar.close, bar.volume)
            for interval, bar in oracle.items()
        }

        # an SMA overlay on daily bars: equal to TA-Lib over the daily closes
        overlay = rows(
            "select b.bar_start, b.close, t.sma_20 from fct_bars_1d as b join fct_technicals as t"
            " on t.symbol = b.symbol and t.bar_interval = '1d' and t.bar_start = b.bar_start"
            " where b.symbol = 'AAPL' order by b.bar_start"
        )
        closes = [float(r[1]) for r in overlay]
        want = talib.SMA(np.asarray(closes), 20)
        assert len(overlay) == 260
        for (_, _, got), ref in zip(overlay, want, strict=True):
            assert (got is None) if np.isnan(ref) else got == pytest.approx(ref, rel=1e-12)

        # top movers of the latest day: the change against the previous session of each symbol
        movers = rows(
            "select symbol, daily_change_pct from stock_analytics"
            " where trading_date = (select max(trading_date) from stock_analytics where symbol = 'NVDA')"
            " and daily_change_pct is not null order by abs(daily_change_pct) desc"
        )
        daily = expected[(expected["bar_interval"] == "1d") & (expected["symbol"] == "NVDA")].sort_values(
            "bar_start"
        )
        prev, last = daily.iloc[-2], daily.iloc[-1]
        assert ("NVDA", round(100 * (last.close - prev.close) / prev.close, 4)) in movers

        # alerts per severity
        assert dict(rows("select severity, count(*) from fct_alerts group by 1")) == {
            "warning": 1,
            "critical": 1,
            "info": 1,
        }
        # and nothing else is writable or readable
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("create temporary table probe (id int)")
