"""dbt marts against oracles, read as BI users read them (`bi_reader`, schema `marts`):
fct_bars and its one-interval views fct_bars_<interval> vs pandas over raw.trades, fct_technicals
vs TA-Lib, stock_analytics vs plain arithmetic, through incremental runs with late trades and
history in between, and full refreshes.

Rows arrive the production way (Kafka -> `drain_once`) in a warehouse database of the test's
own (`<POSTGRES_DB>_dbt_test`), created and dropped here. There is no lookback window: after
every run the marts equal what raw holds, whatever the event time of what arrived.

The scenario (one dbt build per step, the expensive part) is built once for the module. Each
step records what it left or why it failed, and a test fails only when a step it reads failed:
one broken step does not take every test down with it.
"""

from __future__ import annotations

import functools
import random
import traceback
from collections.abc import Callable, Iterator
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
from tests.integration.dbt.oracles import INDICATORS, INTRADAY_MS, indicator_mismatches, pandas_bars
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
ADJUSTED = {"adj_open": "open", "adj_high": "high", "adj_low": "low", "adj_close": "close"}
INTERVALS = (*INTRADAY_MS, "1d")
Trade = tuple[str, Decimal, Decimal, int]
BarKey = tuple[str, str, datetime]


@dataclass
class Snapshot:
    """What one step left: raw.trades (the oracles' input), the marts as bi_reader reads them, and
    the state the incremental runs keep in intermediate (write times, indicator state), which no
    mart shows but which proves what a run rewrote."""

    trades: list[RawTrade]
    bars: list[dict[str, Any]]  # marts.fct_bars
    interval_bars: dict[str, list[dict[str, Any]]]  # marts.fct_bars_<interval>
    technicals: list[dict[str, Any]]  # marts.fct_technicals
    bar_state: dict[BarKey, dict[str, Any]]  # intermediate.int_bars
    technicals_state: dict[BarKey, dict[str, Any]]  # intermediate.int_technicals


@dataclass(frozen=True, slots=True)
class StepFailed:
    """Why a scenario step left no snapshot: its traceback."""

    traceback: str


@dataclass
class Scenario:
    settings: Settings
    transform: Transformer
    outcomes: dict[str, Snapshot | StepFailed] = field(default_factory=dict)
    late_trades: list[Trade] = field(default_factory=list)
    gap_days: list[date] = field(default_factory=list)

    def step(self, name: str, action: Callable[[], object]) -> None:
        """Run one step and record the snapshot it leaves, or its traceback. The steps after a
        failed one still run (every build transforms whatever raw holds), so the tests that read
        only other steps still judge them."""
        try:
            action()
            self.outcomes[name] = _snapshot(self.settings)
        except Exception:
            self.outcomes[name] = StepFailed(traceback.format_exc())

    def snapshot(self, name: str) -> Snapshot:
        """The snapshot of step `name`; fails the calling test (only it) when the step failed."""
        outcome = self.outcomes[name]
        if isinstance(outcome, StepFailed):
            pytest.fail(f"scenario step {name!r} failed:\n{outcome.traceback}", pytrace=False)
        return outcome

    def snapshots(self, prefix: str) -> list[Snapshot]:
        return [self.snapshot(name) for name in self.outcomes if name.startswith(prefix)]


def _bi_fetch(settings: Settings, *queries: str) -> list[list[dict[str, Any]]]:
    """Rows as a BI tool gets them: one `bi_reader` session with its role defaults."""
    with (
        psycopg.connect(settings.conninfo("bi_reader"), autocommit=True) as conn,
        conn.cursor(row_factory=psycopg.rows.dict_row) as cur,
    ):
        return [list(cur.execute(query)) for query in queries]


def _keyed(rows: list[dict[str, Any]]) -> dict[BarKey, dict[str, Any]]:
    return {_bar_key(row): row for row in rows}


def _snapshot(settings: Settings) -> Snapshot:
    order = "order by symbol, bar_interval, bar_start"
    bars, technicals, *interval_bars = _bi_fetch(
        settings,
        f"select * from marts.fct_bars {order}",
        f"select * from marts.fct_technicals {order}",
        *(f"select * from marts.fct_bars_{interval} order by symbol, bar_start" for interval in INTERVALS),
    )
    key = "symbol, bar_interval, bar_start"
    bar_state = fetch(settings, f"select {key}, updated_at from intermediate.int_bars")
    technicals_state = fetch(
        settings, f"select {key}, bar_number, ta_state, updated_at from intermediate.int_technicals"
    )
    return Snapshot(
        raw_trades(settings),
        bars,
        dict(zip(INTERVALS, interval_bars, strict=True)),
        technicals,
        _keyed(bar_state),
        _keyed(technicals_state),
    )


def _load_and_transform(scenario: Scenario, feed: Feed, trades: list[Trade], *args: str) -> None:
    feed.publish_trades(trades)
    feed.drain()
    scenario.transform(*args)


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

        def incremental_run(number: int = number, batch: list[Trade] = batch) -> None:
            if number == 1:
                feed.publish_alerts(alerts)
            if number == 2:
                feed.publish_alerts([historical_alert])
            if number == 3:  # the alert service restarted and published a-1 again
                feed.publish_alerts(alerts[:1])
            _load_and_transform(run, feed, batch)

        run.step(f"incremental run {number}", incremental_run)

    run.step("full refresh", lambda: transform("--full-refresh"))

    # Late trades far behind the newest bar (the old design's lookbacks were 60 minutes and
    # 3 days): one inside MSFT's intraday history, one new high in AAPL's 100th trading day.
    aapl_day = datetime.fromtimestamp(aapl[4 * 100][3] / 1000, tz=UTC).astimezone(NEW_YORK)
    aapl_high = max(t[1] for t in aapl[400:404]) + Decimal("1.25")
    run.late_trades = [
        late("MSFT", 100.5, "30.05"),
        at("AAPL", aapl_day.replace(hour=12, minute=0), str(aapl_high), 100),
    ]
    run.step("late trades", lambda: _load_and_transform(run, feed, run.late_trades))

    # a print the contract admits (finite, positive) but no market makes: it must not break the
    # build (1e308 overflows double-precision indicators) and stays out of the bars
    newest = max(t[3] for t in synthetic)
    implausible = [("MSFT", Decimal("1e308"), Decimal("1e308"), newest + 1_000)]
    run.step("implausible print", lambda: _load_and_transform(run, feed, implausible))

    # A symbol that skips a session: its change across the gap must stay NULL.
    run.gap_days = [datetime.fromtimestamp(aapl[4 * n][3] / 1000, tz=UTC).date() for n in range(200, 210)]
    gappy = [("GAPY", p, v, ts) for n, (_, p, v, ts) in enumerate(aapl[800:840]) if n // 4 != 5]
    run.step("gap", lambda: _load_and_transform(run, feed, gappy))

    # A new symbol with two years of daily history, arriving in four parts out of order.
    ibm = daily_trades(STOCKS_CSV, "IBM", 504, "NVDA")
    parts = [ibm[i * 504 : (i + 1) * 504] for i in range(4)]
    for number, part in enumerate((parts[2], parts[0], parts[3], parts[1]), start=1):
        run.step(f"history part {number}", functools.partial(_load_and_transform, run, feed, part))
    run.step("history full refresh", lambda: transform("--full-refresh"))
    print(f"dbt build seconds: {[round(s, 1) for s in transform.seconds]}")
    return run


def _bar_key(row: dict[str, Any]) -> BarKey:
    return (row["symbol"], row["bar_interval"], row["bar_start"])


def _bar_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in BAR_COLUMNS)


def _assert_bar_matches(key: BarKey, row: dict[str, Any], ref: Any) -> None:
    """One mart row against its pandas bar; no split is known here, so the split-adjusted
    columns equal the as-traded ones."""
    assert row["bar_source"] == "trades", key
    for column in ("trading_date", "session", "open", "high", "low", "close", "volume", "trade_count"):
        assert row[column] == getattr(ref, column), (key, column, row[column], getattr(ref, column))
    if ref.vwap is None:
        assert row["vwap"] is None, key
    else:
        assert abs(row["vwap"] - ref.vwap) <= abs(ref.vwap) * Decimal("1e-15"), (key, row["vwap"], ref.vwap)
    for adjusted, traded in ADJUSTED.items():
        assert row[adjusted] == row[traded], (key, adjusted, row[adjusted], row[traded])
    assert row["adj_volume"] == row["volume"] and row["adj_total_return_factor"] == 1, key


def _assert_bars_match_pandas(snapshot: Snapshot) -> None:
    """fct_bars, and each fct_bars_<interval> view, equal the bars of every row of raw.trades,
    computed the plain way."""
    expected = pandas_bars(snapshot.trades)
    want = {(r.symbol, r.bar_interval, r.bar_start.to_pydatetime()): r for r in expected.itertuples()}
    got = _keyed(snapshot.bars)
    assert set(got) == set(want), (
        f"bars only in dbt: {sorted(set(got) - set(want))[:5]}, "
        f"only in pandas: {sorted(set(want) - set(got))[:5]}"
    )
    for key, row in got.items():
        _assert_bar_matches(key, row, want[key])
    for interval, rows in snapshot.interval_bars.items():
        view = {(r["symbol"], interval, r["bar_start"]): r for r in rows}
        assert set(view) == {k for k in want if k[1] == interval}, interval
        for key, row in view.items():
            _assert_bar_matches(key, row, want[key])
            # the columns of fct_bars but bar_interval, in its order
            assert list(row.items()) == [(c, v) for c, v in got[key].items() if c != "bar_interval"], key


def _assert_indicators_match_talib(snapshot: Snapshot) -> int:
    """fct_technicals equals TA-Lib over the split-adjusted closes of fct_bars, series by series."""
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in snapshot.technicals:
        series.setdefault((row["symbol"], row["bar_interval"]), []).append(row)
    bars: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in snapshot.bars:
        bars.setdefault((row["symbol"], row["bar_interval"]), []).append(row)
    assert set(series) == set(bars)
    assert set(snapshot.technicals_state) == {_bar_key(r) for r in snapshot.technicals}
    checked = 0
    for key, rows in series.items():
        assert [(r["bar_start"], r["trading_date"], r["close"]) for r in rows] == [
            (b["bar_start"], b["trading_date"], b["adj_close"]) for b in bars[key]
        ], key
        numbers = [snapshot.technicals_state[_bar_key(r)]["bar_number"] for r in rows]
        assert numbers == list(range(1, len(rows) + 1)), key
        ours = {name: [r[name] for r in rows] for name in INDICATORS}
        problems = indicator_mismatches(ours, [float(r["close"]) for r in rows])
        assert not problems, f"{key}: {len(problems)} mismatches, e.g. {problems[:5]}"
        checked += len(rows)
    return checked


def _assert_same_numbers(left: Snapshot, right: Snapshot) -> None:
    """The marts exactly equal (not approximately), indicator state included."""
    assert left.bars == right.bars
    assert left.interval_bars == right.interval_bars
    assert left.technicals == right.technicals

    def state(snapshot: Snapshot) -> dict[BarKey, tuple[Any, ...]]:
        return {k: (r["bar_number"], r["ta_state"]) for k, r in snapshot.technicals_state.items()}

    assert state(left) == state(right)


def test_bars_match_pandas_after_every_incremental_run(scenario: Scenario) -> None:
    for snapshot in scenario.snapshots("incremental run"):
        _assert_bars_match_pandas(snapshot)


def test_indicators_match_talib_after_every_incremental_run(scenario: Scenario) -> None:
    incremental = scenario.snapshots("incremental run")
    assert len(incremental) == 3
    checked = [_assert_indicators_match_talib(s) for s in incremental]
    # the series are long enough for every indicator: 1m has 300 bars, AAPL 1d 260
    longest = max(
        sum(1 for r in incremental[-1].technicals if (r["symbol"], r["bar_interval"]) == key)
        for key in {("MSFT", "1m"), ("AAPL", "1d")}
    )
    assert longest >= 260 and checked[-1] > checked[0]
    assert any(r["sma_200"] is not None for r in incremental[-1].technicals)


def test_late_trade_in_an_empty_minute_inserts_a_bar_and_renumbers_the_series(scenario: Scenario) -> None:
    minute = BASE + timedelta(minutes=231)
    before = scenario.snapshot("incremental run 2").interval_bars["1m"]
    after = scenario.snapshot("incremental run 3").interval_bars["1m"]
    assert not [r for r in before if (r["symbol"], r["bar_start"]) == ("MSFT", minute)]
    filled = [r for r in after if (r["symbol"], r["bar_start"]) == ("MSFT", minute)]
    assert len(filled) == 1 and filled[0]["close"] == Decimal("28.55")
    # the 1m series is renumbered from that bar on: the bar after it moves up one place
    old_state = scenario.snapshot("incremental run 2").technicals_state
    new_state = scenario.snapshot("incremental run 3").technicals_state
    following = min(k for k in old_state if k[:2] == ("MSFT", "1m") and k[2] > minute)
    assert new_state[following]["bar_number"] == old_state[following]["bar_number"] + 1


def test_full_refresh_gives_the_numbers_of_the_incremental_runs(scenario: Scenario) -> None:
    full_refresh = scenario.snapshot("full refresh")
    _assert_same_numbers(scenario.snapshot("incremental run 3"), full_refresh)
    _assert_indicators_match_talib(full_refresh)


def test_late_trades_far_behind_update_exactly_their_bars_and_the_series_from_there(
    scenario: Scenario,
) -> None:
    before, after = scenario.snapshot("full refresh"), scenario.snapshot("late trades")
    _assert_bars_match_pandas(after)
    _assert_indicators_match_talib(after)
    # the bars that hold a late trade, in every interval, and no other, were written
    old, new = _keyed(before.bars), _keyed(after.bars)
    expected = pandas_bars(
        [
            t
            for t in after.trades
            if (t.symbol, t.price, t.ts) in {(s, p, ts) for s, p, _, ts in scenario.late_trades}
        ]
    )
    touched = {(r.symbol, r.bar_interval, r.bar_start.to_pydatetime()) for r in expected.itertuples()}
    assert len(touched) == 10  # 5 intervals x 2 trades
    old_state, new_state = before.bar_state, after.bar_state
    written = {
        k for k, r in new_state.items() if k not in old_state or r["updated_at"] != old_state[k]["updated_at"]
    }
    assert written == touched
    assert all(_bar_values(new[k]) != _bar_values(old[k]) for k in touched if k in old)
    aapl_day = [k for k in touched if k[0] == "AAPL" and k[1] == "1d"]
    assert aapl_day and new[aapl_day[0]]["high"] == Decimal(scenario.late_trades[1][1])
    # each touched series is recomputed from its earliest touched bar on, and only from there
    first_touched: dict[tuple[str, str], datetime] = {}
    for symbol, interval, start in touched:
        key = (symbol, interval)
        first_touched[key] = min(start, first_touched.get(key, start))
    old_technicals = {k: r["updated_at"] for k, r in before.technicals_state.items()}
    recomputed = {k for k, r in after.technicals_state.items() if old_technicals.get(k) != r["updated_at"]}
    assert recomputed == {k for k in new if k[:2] in first_touched and k[2] >= first_touched[k[:2]]}


def test_history_out_of_order_for_a_new_symbol_reaches_the_marts_every_run(scenario: Scenario) -> None:
    history = scenario.snapshots("history part")
    assert len(history) == 4
    for snapshot in history:
        _assert_bars_match_pandas(snapshot)
        _assert_indicators_match_talib(snapshot)
    last = history[-1]
    daily = [r for r in last.technicals if r["symbol"] == "NVDA" and r["bar_interval"] == "1d"]
    assert len(daily) == 504
    # an analyst who adds a symbol with its history gets its SMA-200 on daily bars at once
    assert daily[-1]["sma_200"] is not None and daily[198]["sma_200"] is None
    assert daily[199]["sma_200"] is not None


def test_full_refresh_after_out_of_order_history_gives_the_same_numbers(scenario: Scenario) -> None:
    _assert_same_numbers(scenario.snapshot("history part 4"), scenario.snapshot("history full refresh"))


def test_unknown_symbols_flow_through_and_alerts_are_one_row_each(scenario: Scenario) -> None:
    settings = scenario.settings
    assert {r["symbol"] for r in scenario.snapshot("incremental run 3").bars} == {"AAPL", "MSFT", "ZZT.X"}
    analytics, marts_alerts = _bi_fetch(
        settings,
        "select * from marts.stock_analytics where symbol = 'ZZT.X'",
        "select alert_id, severity from marts.fct_alerts order by 1",
    )
    assert analytics
    assert [(a["alert_id"], a["severity"]) for a in marts_alerts] == [
        ("a-1", "warning"),
        ("a-2", "critical"),
        ("a-3", "info"),  # about a trade ten years older than the rest: still a new alert
    ]
    # which delivery is kept is internal (no mart shows Kafka offsets)
    alerts = fetch(settings, "select alert_id, kafka_offset from intermediate.int_alerts order by 1")
    assert [a["alert_id"] for a in alerts] == ["a-1", "a-2", "a-3"]
    # a-1 was published twice: the first delivery is the one kept
    deliveries = fetch(
        settings, "select kafka_offset from raw.alerts where alert_id = 'a-1' order by kafka_offset"
    )
    assert len(deliveries) == 2 and alerts[0]["kafka_offset"] == deliveries[0]["kafka_offset"]


def test_stock_analytics_formulas(scenario: Scenario) -> None:
    final = scenario.snapshot("history full refresh")
    (rows,) = _bi_fetch(
        scenario.settings, "select * from marts.stock_analytics where symbol = 'AAPL' order by trading_date"
    )
    daily = [r for r in final.interval_bars["1d"] if r["symbol"] == "AAPL"]
    assert len(rows) == len(daily) == 260
    closes = [r["adj_close"] for r in daily]
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
    scenario.snapshot("gap")
    (rows,) = _bi_fetch(
        scenario.settings, "select * from marts.stock_analytics where symbol = 'GAPY' order by trading_date"
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
    before, after = scenario.snapshot("late trades"), scenario.snapshot("implausible print")
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
    # the one-interval views: the columns of fct_bars but bar_interval, in the same order and types
    for interval in INTERVALS:
        view = by_table[f"fct_bars_{interval}"]
        assert [(c, view[c]["data_type"]) for c in view] == [
            (c, column["data_type"]) for c, column in by_table["fct_bars"].items() if c != "bar_interval"
        ], interval
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
    final = scenario.snapshot("history full refresh")
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
