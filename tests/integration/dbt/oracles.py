"""Reference computations the marts are checked against: pandas bars, TA-Lib indicators."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal

import numpy as np
import pandas as pd
import talib

from tests.integration.dbt.raw_rows import NEW_YORK, RawTrade

INTRADAY_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}
INDICATORS = (
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi_14",
    "bb_upper",
    "bb_middle",
    "bb_lower",
)


# Prints beyond these stay in raw but out of the bars (dbt vars max_plausible_price / _volume).
MAX_PLAUSIBLE_PRICE = Decimal(1_000_000_000)
MAX_PLAUSIBLE_VOLUME = Decimal(1_000_000_000_000)


class NyseSessions:
    """XNYS sessions straight from exchange_calendars (not from the warehouse's copy), with the
    extended hours the contract documents (04:00-20:00 New York)."""

    def __init__(self) -> None:
        import exchange_calendars

        self._schedule = exchange_calendars.get_calendar(
            "XNYS", start="1990-01-02", end="2035-12-31"
        ).schedule

    def session_of(self, moment: pd.Timestamp) -> tuple[date | None, str]:
        """(trading date, pre/regular/post/closed) of an instant."""
        local = moment.tz_convert(NEW_YORK)
        day = local.date()
        label = pd.Timestamp(day)
        if label not in self._schedule.index:
            return None, "closed"
        row = self._schedule.loc[label]
        pre = pd.Timestamp(datetime.combine(day, time(4)), tz=NEW_YORK)
        post = pd.Timestamp(datetime.combine(day, time(20)), tz=NEW_YORK)
        if row["open"] <= moment < row["close"]:
            return day, "regular"
        if pre <= moment < row["open"]:
            return day, "pre"
        if row["close"] <= moment < post:
            return day, "post"
        return None, "closed"


_SESSIONS: NyseSessions | None = None


def nyse() -> NyseSessions:
    global _SESSIONS
    if _SESSIONS is None:
        _SESSIONS = NyseSessions()
    return _SESSIONS


def pandas_bars(trades: Sequence[RawTrade]) -> pd.DataFrame:
    """fct_bars computed the plain way: one groupby per interval over the raw rows, every symbol on
    the XNYS calendar: intraday buckets aligned to the hour in UTC, with the session and trading
    date of their start; a 1d bar per regular session, starting 00:00 New York of its date."""
    trades = [t for t in trades if t.price <= MAX_PLAUSIBLE_PRICE and t.volume <= MAX_PLAUSIBLE_VOLUME]
    sessions = nyse()
    frame = pd.DataFrame(
        {
            "symbol": [t.symbol for t in trades],
            "price": [t.price for t in trades],
            "volume": [t.volume for t in trades],
            "ts": [t.ts for t in trades],
            "partition": [t.partition for t in trades],
            "offset": [t.offset for t in trades],
        }
    ).sort_values(["symbol", "ts", "partition", "offset"], kind="stable")
    frame["price_volume"] = [p * v for p, v in zip(frame["price"], frame["volume"], strict=True)]
    event_time = pd.to_datetime(frame["ts"], unit="ms", utc=True)
    of_trade = [sessions.session_of(moment) for moment in event_time]
    regular_day = pd.Series(
        [
            pd.Timestamp(day, tz=NEW_YORK).tz_convert("UTC") if part == "regular" else pd.NaT
            for day, part in of_trade
        ],
        index=frame.index,
    )
    out = []
    for interval, width in [*INTRADAY_MS.items(), ("1d", None)]:
        if width is None:
            rows = frame.assign(bar_start=regular_day).dropna(subset=["bar_start"])
        else:
            rows = frame.assign(bar_start=pd.to_datetime(frame["ts"] // width * width, unit="ms", utc=True))
        grouped = rows.groupby(["symbol", "bar_start"], sort=True)
        bars = grouped.agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("volume", lambda s: sum(s, Decimal(0))),
            price_volume=("price_volume", lambda s: sum(s, Decimal(0))),
            trade_count=("price", "size"),
        ).reset_index()
        bars["vwap"] = [
            pv / v if v else None for pv, v in zip(bars["price_volume"], bars["volume"], strict=True)
        ]
        bars["bar_interval"] = interval
        if width is None:
            bars["trading_date"] = [start.tz_convert(NEW_YORK).date() for start in bars["bar_start"]]
            bars["session"] = "regular"
        else:
            of_start = [sessions.session_of(start) for start in bars["bar_start"]]
            bars["trading_date"] = [day for day, _ in of_start]
            bars["session"] = [part for _, part in of_start]
        out.append(bars.drop(columns="price_volume"))
    return pd.concat(out, ignore_index=True)


def talib_indicators(closes: Sequence[float]) -> dict[str, np.ndarray]:
    """TA-Lib with default settings over one series of closes."""
    x = np.asarray(closes, dtype=np.float64)
    macd, signal, hist = talib.MACD(x, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(x, 20, 2.0, 2.0, talib.MA_Type.SMA)  # type: ignore[attr-defined]
    return {
        "sma_20": talib.SMA(x, 20),
        "sma_50": talib.SMA(x, 50),
        "sma_200": talib.SMA(x, 200),
        "ema_12": talib.EMA(x, 12),
        "ema_26": talib.EMA(x, 26),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "rsi_14": talib.RSI(x, 14),
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
    }


def indicator_mismatches(
    ours: Mapping[str, Sequence[float | None]], closes: Sequence[float], rel: float = 1e-9
) -> list[str]:
    """Rows where ours differs from TA-Lib: NULL vs NaN placement, or beyond `rel` relative."""
    expected = talib_indicators(closes)
    problems = []
    for name in INDICATORS:
        want = expected[name]
        got = ours[name]
        for index, (g, w) in enumerate(zip(got, want, strict=True)):
            if np.isnan(w):
                if g is not None:
                    problems.append(f"{name}[{index}]: TA-Lib NaN, got {g!r}")
            elif g is None:
                problems.append(f"{name}[{index}]: TA-Lib {w!r}, got NULL")
            elif abs(g - w) > rel * abs(w):
                problems.append(f"{name}[{index}]: TA-Lib {w!r}, got {g!r}")
    return problems
