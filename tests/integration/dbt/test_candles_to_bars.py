"""Candles make bars where no trade does: thirteen years of real daily candles from data/,
backfilled with `tickhouse backfill --source file`, drained, transformed.

- Every daily candle of the bundled file becomes the `1d` bar of its date (bar_source
  'candles', the candle's own numbers), and the indicators over those bars equal TA-Lib's.
- Trades win where both exist: a trading day with trades is a trades bar, whatever candle
  arrives for it, before or after.
- A candle loaded again for the same bar (a corrected backfill) replaces the earlier one.
- Intraday candles make the bar of their own interval when aligned to its bucket; 30-minute
  candles and unaligned ones make none.
- A full refresh gives the same numbers.
"""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from producer.backfill_cli import main as backfill_main
from tests.integration.dbt.conftest import Feed, Transformer, fetch, own_feed, own_warehouse
from tests.integration.dbt.oracles import INDICATORS, indicator_mismatches
from tests.integration.dbt.raw_rows import ms
from tickhouse.config import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

CANDLE_FILE = PROJECT_ROOT / "data" / "daily_candles.csv.gz"
NEW_YORK = ZoneInfo("America/New_York")


def _daily_candles() -> dict[str, list[dict[str, str]]]:
    per_symbol: dict[str, list[dict[str, str]]] = defaultdict(list)
    with gzip.open(CANDLE_FILE, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            per_symbol[row["symbol"]].append(row)
    return per_symbol


def _day_of(bar_start_ms: str) -> date:
    return datetime.fromtimestamp(int(bar_start_ms) / 1000, tz=UTC).date()


def _bar_start(day: date) -> datetime:
    """Where the 1d bar of `day` starts: 00:00 America/New_York."""
    return datetime.combine(day, time(0), tzinfo=NEW_YORK).astimezone(UTC)


def _candle(
    symbol: str, resolution: str, start: datetime, o: str, h: str, low: str, c: str, v: int
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "resolution": resolution,
        "bar_start": ms(start),
        "open": float(o),
        "high": float(h),
        "low": float(low),
        "close": float(c),
        "volume": v,
        "source": "test",
    }


def _bars(settings: Settings, symbol: str, interval: str) -> list[dict[str, Any]]:
    return fetch(
        settings,
        "select * from marts.fct_bars where symbol = %s and bar_interval = %s order by bar_start",
        (symbol, interval),
    )


def _technicals(settings: Settings, symbol: str, interval: str) -> list[dict[str, Any]]:
    return fetch(
        settings,
        "select * from marts.fct_technicals where symbol = %s and bar_interval = %s order by bar_start",
        (symbol, interval),
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Feed, Transformer]]:
    with (
        own_warehouse("dbt_candles") as settings,
        own_feed(settings, ("trades", "alerts", "candles")) as feed,
    ):
        transform = Transformer(settings, tmp_path_factory.mktemp("dbt-target"))
        code = backfill_main(
            ["--source", "file", "--file", str(CANDLE_FILE), "--topic", feed.candles_topic, "--no-progress"]
        )
        assert code == 0
        feed.drain()
        transform()
        yield settings, feed, transform


def test_every_daily_candle_makes_the_daily_bar_of_its_date(
    loaded: tuple[Settings, Feed, Transformer],
) -> None:
    settings, _, _ = loaded
    candles = _daily_candles()
    assert sum(len(rows) for rows in candles.values()) == 12_154
    for symbol, rows in candles.items():
        bars = {bar["bar_start"]: bar for bar in _bars(settings, symbol, "1d")}
        assert len(bars) == len(rows), symbol
        for row in rows:
            bar = bars[_bar_start(_day_of(row["bar_start"]))]
            assert bar["bar_source"] == "candles"
            assert (bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"]) == tuple(
                Decimal(row[k]) for k in ("open", "high", "low", "close", "volume")
            ), (symbol, row)
            assert bar["vwap"] is None and bar["trade_count"] is None
    # daily candles make no intraday bars
    assert not fetch(settings, "select 1 from marts.fct_bars where bar_interval <> '1d' limit 1")


def test_indicators_over_candle_bars_equal_talib(loaded: tuple[Settings, Feed, Transformer]) -> None:
    settings, _, _ = loaded
    for symbol in ("AAPL", "FB"):
        rows = _technicals(settings, symbol, "1d")
        closes = [float(bar["close"]) for bar in _bars(settings, symbol, "1d")]
        assert [float(r["close"]) for r in rows] == closes
        problems = indicator_mismatches({name: [r[name] for r in rows] for name in INDICATORS}, closes)
        assert not problems, problems[:5]
    assert _technicals(settings, "AAPL", "1d")[-1]["sma_200"] is not None


def test_trades_win_over_candles_and_a_later_candle_replaces_an_earlier_one(
    loaded: tuple[Settings, Feed, Transformer],
) -> None:
    settings, feed, transform = loaded
    ibm = _daily_candles()["IBM"]
    traded_day, corrected_day = _day_of(ibm[-5]["bar_start"]), _day_of(ibm[-3]["bar_start"])
    # two trades on one day IBM has a candle for: that day's bar is made of them
    at_ten = datetime.combine(traded_day, time(10), tzinfo=NEW_YORK)
    feed.publish_trades(
        [
            ("IBM", Decimal("200.00"), Decimal(10), ms(at_ten)),
            ("IBM", Decimal("201.50"), Decimal(30), ms(at_ten + timedelta(hours=2))),
        ]
    )
    # a corrected candle for another day, and (again) a candle for the traded day
    corrected = _candle(
        "IBM", "D", datetime.combine(corrected_day, time(0), tzinfo=UTC), "190", "199", "189", "198.25", 1234
    )
    again = _candle("IBM", "D", datetime.combine(traded_day, time(0), tzinfo=UTC), "1", "2", "1", "2", 1)
    feed.publish(feed.candles_topic, [("IBM", corrected), ("IBM", again)])
    feed.drain()
    transform()
    bars = {bar["bar_start"]: bar for bar in _bars(settings, "IBM", "1d")}
    traded = bars[_bar_start(traded_day)]
    assert traded["bar_source"] == "trades"
    assert (traded["open"], traded["close"], traded["volume"], traded["trade_count"]) == (
        Decimal("200.00"),
        Decimal("201.50"),
        Decimal(40),
        2,
    )
    assert traded["vwap"] == (Decimal("200.00") * 10 + Decimal("201.50") * 30) / 40
    fixed = bars[_bar_start(corrected_day)]
    assert (fixed["bar_source"], fixed["close"], fixed["volume"]) == (
        "candles",
        Decimal("198.25"),
        Decimal(1234),
    )
    # the series is recomputed with the new closes: still TA-Lib's numbers
    rows = _technicals(settings, "IBM", "1d")
    closes = [float(bar["close"]) for bar in _bars(settings, "IBM", "1d")]
    assert not indicator_mismatches({name: [r[name] for r in rows] for name in INDICATORS}, closes)


def test_intraday_candles_make_the_bars_of_their_own_interval_when_aligned(
    loaded: tuple[Settings, Feed, Transformer],
) -> None:
    settings, feed, transform = loaded
    hour = datetime(2013, 2, 27, 15, 0, tzinfo=UTC)
    candles = [
        _candle("INTRA", "1", hour, "10", "11", "9", "10.5", 100),
        _candle("INTRA", "5", hour + timedelta(minutes=5), "10", "12", "9", "11", 500),
        _candle("INTRA", "60", hour, "10", "13", "8", "12", 6000),
        _candle("INTRA", "15", hour + timedelta(minutes=7), "10", "12", "9", "11", 5),  # not on a boundary
        _candle("INTRA", "30", hour, "10", "12", "9", "11", 3000),  # no 30m interval
    ]
    feed.publish(feed.candles_topic, [("INTRA", c) for c in candles])
    feed.drain()
    transform()
    bars = fetch(
        settings,
        "select bar_interval, bar_start, close, bar_source from marts.fct_bars where symbol = 'INTRA'"
        " order by bar_interval, bar_start",
    )
    assert [(b["bar_interval"], b["bar_start"], b["close"], b["bar_source"]) for b in bars] == [
        ("1h", hour, Decimal(12), "candles"),
        ("1m", hour, Decimal("10.5"), "candles"),
        ("5m", hour + timedelta(minutes=5), Decimal(11), "candles"),
    ]


def test_full_refresh_gives_the_numbers_of_the_incremental_runs(
    loaded: tuple[Settings, Feed, Transformer],
) -> None:
    settings, _, transform = loaded
    query = (
        "select symbol, bar_interval, bar_start, trading_date, session, open, high, low, close, volume,"
        " vwap, trade_count, bar_source from marts.fct_bars order by 1, 2, 3"
    )
    technicals = (
        "select symbol, bar_interval, bar_start, ta_state, rsi_14, macd from intermediate.int_technicals"
        " order by 1, 2, 3"
    )
    before = (fetch(settings, query), fetch(settings, technicals))
    transform("--full-refresh")
    assert (fetch(settings, query), fetch(settings, technicals)) == before
