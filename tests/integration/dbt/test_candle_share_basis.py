"""Candles and the share basis: a backfill of Finnhub daily candles (split-adjusted as served, to
the day they were fetched) across a 4:1 split, followed by live trades after the split.

- `fct_bars` is as traded for candle bars as for trade bars: a candle served after the split has
  its pre-split days x4 (volume /4); one fetched before the ex-date is as traded already; one
  fetched on the ex-date has the split applied. Intraday candles are as traded.
- `adj_close` is one continuous series across candles and trades: the indicators equal TA-Lib's
  over it and the daily change on the ex-date is the real move, not -75 %.
- A split learned after the backfill restates, at the next transform, exactly the candle bars it
  falls into; the adjusted series, the indicators and the analytics do not move.
- `--full-refresh` equals the incremental runs, and a candle table built before the share basis
  existed is rebuilt once, to the same numbers.

Candles and trades arrive the production way (Kafka -> `drain_once`), the candles with the Kafka
timestamp of their fetch; splits are written to raw.corporate_actions as the loader role.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.dbt.conftest import Transformer, fetch, own_feed, own_warehouse, record_split
from tests.integration.dbt.oracles import INDICATORS, indicator_mismatches
from tests.integration.dbt.raw_rows import ms
from tickhouse.config import Settings
from tickhouse.warehouse import connect

pytestmark = pytest.mark.integration

SESSIONS = 60
EX_INDEX = 40  # the 4:1 split's ex-date: the 41st session
BACKFILL_END = 50  # daily candles up to the 50th session, then live trades

# symbol -> (first session of live trades, whether the split is known before the backfill)
AFTER = "CAFT"  # candles fetched after the ex-date (the evening of the 50th session)
ON_EX = "CONX"  # candles up to the day before the ex-date, fetched on the ex-date before the open
BEFORE = "CPRE"  # candles up to the day before the ex-date, fetched that evening: as traded
LATE = "CLTE"  # like AFTER, but the split is learned after the backfill was transformed
STAY = "CSTY"  # no split
SPLITTING = (AFTER, ON_EX, BEFORE, LATE)
TRADES_FROM = {AFTER: BACKFILL_END, ON_EX: EX_INDEX, BEFORE: EX_INDEX, LATE: BACKFILL_END, STAY: BACKFILL_END}
CANDLE_VOLUME = Decimal(1000)  # as traded
SNAPSHOT_TABLES = {
    "bars": "select * from marts.fct_bars order by symbol, bar_interval, bar_start",
    "int_bars": "select symbol, bar_interval, bar_start, trading_date, close, updated_at"
    " from intermediate.int_bars order by symbol, bar_interval, bar_start",
    "candle_bars": "select * from intermediate.int_candles_deduplicated_to_bars"
    " order by symbol, bar_interval, bar_start",
    "technicals": "select technicals.*, mart.close as mart_close"
    " from intermediate.int_technicals as technicals"
    " inner join marts.fct_technicals as mart using (symbol, bar_interval, bar_start)"
    " order by symbol, bar_interval, bar_start",
    "analytics": "select analytics.*, mart.daily_change_pct as mart_daily_change_pct"
    " from intermediate.int_stock_analytics as analytics"
    " inner join marts.stock_analytics as mart using (symbol, trading_date)"
    " order by symbol, trading_date",
}

Snapshot = dict[str, list[dict[str, Any]]]


@dataclass
class Scenario:
    settings: Settings
    sessions: list[date]
    adjusted: dict[str, list[Decimal]]  # per symbol, each session's close on today's share basis
    hourly_candle_start: datetime
    before_late_split: Snapshot
    after_late_split: Snapshot
    full_refresh: Snapshot
    after_upgrade: Snapshot

    @property
    def ex_date(self) -> date:
        return self.sessions[EX_INDEX]

    def as_traded(self, symbol: str, index: int) -> Decimal:
        factor = 4 if symbol in SPLITTING and index < EX_INDEX else 1
        return self.adjusted[symbol][index] * factor


def _sessions(last: date, count: int) -> list[date]:
    import exchange_calendars

    calendar = exchange_calendars.get_calendar("XNYS", start="2024-01-01", end="2025-12-31")
    return [label.date() for label in calendar.sessions if label.date() <= last][-count:]


def _snapshot(settings: Settings) -> Snapshot:
    return {name: fetch(settings, query) for name, query in SNAPSHOT_TABLES.items()}


def _candle(symbol: str, resolution: str, start: datetime, close: Decimal, volume: Decimal) -> dict[str, Any]:
    def number(value: Decimal) -> Any:
        return int(value) if value == value.to_integral_value() else float(value)

    return {
        "symbol": symbol,
        "resolution": resolution,
        "bar_start": ms(start),
        "open": number(close),
        "high": number(close * Decimal("1.01")),
        "low": number(close * Decimal("0.99")),
        "close": number(close),
        "volume": number(volume),
        "source": "finnhub",
    }


def _fetched_at(symbol: str, sessions: list[date]) -> datetime:
    """When the symbol's candles were fetched (and published): their Kafka timestamp."""
    if symbol == ON_EX:
        return datetime.combine(sessions[EX_INDEX], time(12), tzinfo=UTC)  # 07:00 New York
    if symbol == BEFORE:
        return datetime.combine(sessions[EX_INDEX - 1], time(22), tzinfo=UTC)  # 17:00 New York
    return datetime.combine(sessions[BACKFILL_END - 1], time(23), tzinfo=UTC)  # 18:00 New York


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with (
        own_warehouse("dbt_candle_basis") as settings,
        own_feed(settings, ("trades", "alerts", "candles")) as feed,
    ):
        transform = Transformer(settings, tmp_path_factory.mktemp("dbt-target"))
        rng = random.Random(21)
        sessions = _sessions(date(2025, 3, 7), SESSIONS)
        ex_date = sessions[EX_INDEX]
        adjusted: dict[str, list[Decimal]] = {}
        for symbol in TRADES_FROM:
            price, closes = Decimal("100.00"), []
            for index in range(SESSIONS):
                price = max(Decimal("20.00"), price + Decimal(rng.randint(-150, 150)) / 100)
                if index == EX_INDEX:
                    price = closes[-1] * Decimal("1.02")  # the real move on the ex-date: +2 %
                closes.append(price)
            adjusted[symbol] = closes
        shell = Scenario(settings, sessions, adjusted, datetime.min, {}, {}, {}, {})

        for symbol in (AFTER, ON_EX, BEFORE):
            record_split(settings, symbol, ex_date, 1, 4)
        trades = []
        for symbol, trades_from in TRADES_FROM.items():
            fetched_at = _fetched_at(symbol, sessions)
            candles = []
            for index in range(trades_from):
                day = sessions[index]
                # served on the share basis of the fetch day: splits up to it are applied
                adjusted_as_served = (
                    symbol in SPLITTING and fetched_at.date() >= ex_date and index < EX_INDEX
                )
                close = adjusted[symbol][index] if adjusted_as_served else shell.as_traded(symbol, index)
                volume = CANDLE_VOLUME * 4 if adjusted_as_served else CANDLE_VOLUME
                start = datetime.combine(day, time(0), tzinfo=UTC)
                candles.append(_candle(symbol, "D", start, close, volume))
            feed.publish(feed.candles_topic, ((c["symbol"], c) for c in candles), timestamp_ms=ms(fetched_at))
            for index in range(trades_from, SESSIONS):
                # two prints per session (09:45 and 10:15 New York, EST), as traded
                for moment, value in (
                    (time(14, 45), adjusted[symbol][index - 1]),
                    (time(15, 15), adjusted[symbol][index]),
                ):
                    at = datetime.combine(sessions[index], moment, tzinfo=UTC)
                    trades.append((symbol, value, Decimal(100), ms(at)))
        # an intraday candle from Finnhub is as traded, whatever the fetch day
        hourly_start = datetime.combine(sessions[10], time(15), tzinfo=UTC)
        hourly = _candle(AFTER, "60", hourly_start, shell.as_traded(AFTER, 10), CANDLE_VOLUME)
        feed.publish(feed.candles_topic, [(AFTER, hourly)], timestamp_ms=ms(_fetched_at(AFTER, sessions)))
        feed.publish_trades(trades)
        feed.drain()
        transform()
        before = _snapshot(settings)

        record_split(settings, LATE, ex_date, 1, 4)
        transform()
        after = _snapshot(settings)

        transform("--full-refresh")
        refreshed = _snapshot(settings)

        # the candle bars of an earlier release: no share basis columns; the next run rebuilds them
        with connect(settings, "owner") as conn:
            conn.execute(
                "alter table intermediate.int_candles_deduplicated_to_bars"
                " drop column share_basis_date, drop column splits_updated_at"
            )
        transform()
        upgraded = _snapshot(settings)
        yield Scenario(settings, sessions, adjusted, hourly_start, before, after, refreshed, upgraded)


def _daily(snapshot: Snapshot, symbol: str) -> list[dict[str, Any]]:
    return [r for r in snapshot["bars"] if r["symbol"] == symbol and r["bar_interval"] == "1d"]


def test_candle_bars_are_as_traded_and_adj_close_is_one_series(scenario: Scenario) -> None:
    for symbol, trades_from in TRADES_FROM.items():
        bars = _daily(scenario.after_late_split, symbol)
        assert [b["trading_date"] for b in bars] == scenario.sessions, symbol
        for index, bar in enumerate(bars):
            split_before = symbol in SPLITTING and index < EX_INDEX
            assert bar["bar_source"] == ("candles" if index < trades_from else "trades"), (symbol, index)
            assert bar["close"] == scenario.as_traded(symbol, index), (symbol, index)
            assert bar["adj_close"] == scenario.adjusted[symbol][index], (symbol, index)
            if index < trades_from:
                assert bar["open"] == bar["close"] and bar["volume"] == CANDLE_VOLUME, (symbol, index)
                assert bar["high"] == bar["close"] * Decimal("1.01"), (symbol, index)
                assert bar["adj_volume"] == CANDLE_VOLUME * (4 if split_before else 1), (symbol, index)
    # the pre-split candles of the backfill fetched after the split: served /4, shown x4 again
    after = _daily(scenario.after_late_split, AFTER)
    assert after[EX_INDEX - 1]["close"] > 3 * after[EX_INDEX]["close"]
    assert after[EX_INDEX - 1]["adj_close"] < after[EX_INDEX]["adj_close"]


def test_the_share_basis_is_the_fetch_day_in_new_york(scenario: Scenario) -> None:
    bases = {
        (r["symbol"], r["bar_interval"]): r["share_basis_date"]
        for r in scenario.after_late_split["candle_bars"]
    }
    sessions = scenario.sessions
    assert bases == {
        (AFTER, "1d"): sessions[BACKFILL_END - 1],
        (AFTER, "1h"): None,
        (ON_EX, "1d"): scenario.ex_date,
        (BEFORE, "1d"): sessions[EX_INDEX - 1],
        (LATE, "1d"): sessions[BACKFILL_END - 1],
        (STAY, "1d"): sessions[BACKFILL_END - 1],
    }
    # the split-adjusted candles of a symbol with splits carry the run that last saw its splits change
    stamped = {
        r["symbol"] for r in scenario.after_late_split["candle_bars"] if r["splits_updated_at"] is not None
    }
    assert stamped == {AFTER, ON_EX, BEFORE, LATE}


def test_an_intraday_candle_is_taken_as_traded(scenario: Scenario) -> None:
    hourly = [
        r
        for r in scenario.after_late_split["bars"]
        if r["symbol"] == AFTER and r["bar_interval"] == "1h" and r["bar_source"] == "candles"
    ]
    assert [r["bar_start"] for r in hourly] == [scenario.hourly_candle_start]
    assert hourly[0]["close"] == scenario.as_traded(AFTER, 10)
    assert hourly[0]["adj_close"] == scenario.adjusted[AFTER][10]
    assert hourly[0]["volume"] == CANDLE_VOLUME


def test_indicators_and_daily_changes_see_no_split_jump(scenario: Scenario) -> None:
    for name in ("after_late_split", "full_refresh", "after_upgrade"):
        snapshot: Snapshot = getattr(scenario, name)
        for symbol in TRADES_FROM:
            closes = [float(c) for c in scenario.adjusted[symbol]]
            rows = [r for r in snapshot["technicals"] if r["symbol"] == symbol and r["bar_interval"] == "1d"]
            assert [r["close"] for r in rows] == closes, (name, symbol)
            assert [float(r["mart_close"]) for r in rows] == closes, (name, symbol)
            problems = indicator_mismatches({i: [r[i] for r in rows] for i in INDICATORS}, closes)
            assert not problems, (name, symbol, problems[:3])
            analytics = {r["trading_date"]: r for r in snapshot["analytics"] if r["symbol"] == symbol}
            assert [analytics[d]["daily_close"] for d in scenario.sessions] == scenario.adjusted[symbol]
            changes = [r["daily_change_pct"] for r in analytics.values() if r["daily_change_pct"] is not None]
            assert len(changes) == SESSIONS - 1 and max(abs(c) for c in changes) < 5, (name, symbol)
            assert analytics[scenario.ex_date]["daily_change_pct"] == Decimal("2.0000"), (name, symbol)
            assert analytics[scenario.ex_date]["mart_daily_change_pct"] == Decimal("2.0000"), (name, symbol)


def test_a_split_learned_after_the_backfill_restates_exactly_the_candle_bars_it_touches(
    scenario: Scenario,
) -> None:
    # before the split was known, LATE's candles were taken at their word: one basis, no jump
    before = _daily(scenario.before_late_split, LATE)
    assert [b["close"] for b in before] == scenario.adjusted[LATE]
    assert [b["adj_close"] for b in before] == scenario.adjusted[LATE]

    def bar_key(row: dict[str, Any]) -> tuple[str, str, datetime]:
        return (row["symbol"], row["bar_interval"], row["bar_start"])

    old = {bar_key(r): r for r in scenario.before_late_split["int_bars"]}
    new = scenario.after_late_split["int_bars"]
    assert old.keys() == {bar_key(r) for r in new}
    rewritten = [r for r in new if r["updated_at"] != old[bar_key(r)]["updated_at"]]
    assert sorted((r["symbol"], r["bar_interval"], r["trading_date"]) for r in rewritten) == [
        (LATE, "1d", day) for day in scenario.sessions[:EX_INDEX]
    ]
    for row in rewritten:
        assert row["close"] == 4 * old[bar_key(row)]["close"]

    # the adjusted series did not move: the indicators and analytics keep their numbers, and only
    # LATE's rows are recomputed
    keys = {"technicals": ("symbol", "bar_interval", "bar_start"), "analytics": ("symbol", "trading_date")}
    for name, key in keys.items():
        old_rows = {tuple(r[k] for k in key): r for r in scenario.before_late_split[name]}
        new_rows = {tuple(r[k] for k in key): r for r in scenario.after_late_split[name]}
        assert old_rows.keys() == new_rows.keys(), name
        touched = set()
        for row_key, row in new_rows.items():
            previous = old_rows[row_key]
            assert {c: v for c, v in row.items() if not c.endswith("updated_at")} == {
                c: v for c, v in previous.items() if not c.endswith("updated_at")
            }, (name, row_key)
            if row["updated_at"] != previous["updated_at"]:
                touched.add(row_key[0])
        assert touched <= {LATE}, name


def test_incremental_runs_equal_a_full_refresh_and_an_upgrade(scenario: Scenario) -> None:
    technicals = ("symbol", "bar_interval", "bar_start", "close", *INDICATORS, "bar_number", "ta_state")
    analytics = ("symbol", "trading_date", "daily_close", "daily_change_pct", "ma_7_day", "ma_30_day")
    # not splits_updated_at: a run's start, like updated_at
    candle_bars = ("symbol", "bar_interval", "bar_start", "open", "high", "low", "close", "volume",
                   "share_basis_date")
    for name in ("full_refresh", "after_upgrade"):
        other: Snapshot = getattr(scenario, name)
        assert scenario.after_late_split["bars"] == other["bars"], name
        compared = {"technicals": technicals, "analytics": analytics, "candle_bars": candle_bars}
        for table, columns in compared.items():
            assert [{c: r[c] for c in columns} for r in scenario.after_late_split[table]] == [
                {c: r[c] for c in columns} for r in other[table]
            ], (name, table)
