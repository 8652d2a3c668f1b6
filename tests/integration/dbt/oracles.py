"""Reference computations the marts are checked against: pandas bars, TA-Lib indicators."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

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

        schedule = exchange_calendars.get_calendar("XNYS", start="1990-01-02", end="2035-12-31").schedule
        # trading date -> (04:00 New York, open, close, 20:00 New York), in ns since the epoch
        self._bounds: dict[date, tuple[int, int, int, int]] = {}
        for label, opens, closes in zip(schedule.index, schedule["open"], schedule["close"], strict=True):
            day = label.date()
            pre = pd.Timestamp(datetime.combine(day, time(4)), tz=NEW_YORK)
            post = pd.Timestamp(datetime.combine(day, time(20)), tz=NEW_YORK)
            self._bounds[day] = (pre.value, opens.value, closes.value, post.value)

    def session_of(self, moment: pd.Timestamp) -> tuple[date | None, str]:
        """(trading date, pre/regular/post/closed) of an instant."""
        return self.sessions_of(pd.DatetimeIndex([moment]))[0]

    def sessions_of(self, moments: pd.DatetimeIndex | pd.Series) -> list[tuple[date | None, str]]:
        """`session_of` of each instant (UTC), the New York dates converted at once."""
        instants = pd.DatetimeIndex(moments).as_unit("ns")
        if instants.empty:
            return []
        days = instants.tz_convert(NEW_YORK).date
        out: list[tuple[date | None, str]] = []
        for day, ns in zip(days, instants.asi8, strict=True):
            bounds = self._bounds.get(day)
            if bounds is None:
                out.append((None, "closed"))
                continue
            pre, opens, closes, post = bounds
            if opens <= ns < closes:
                out.append((day, "regular"))
            elif pre <= ns < opens:
                out.append((day, "pre"))
            elif closes <= ns < post:
                out.append((day, "post"))
            else:
                out.append((None, "closed"))
        return out


_SESSIONS: NyseSessions | None = None


def nyse() -> NyseSessions:
    global _SESSIONS
    if _SESSIONS is None:
        _SESSIONS = NyseSessions()
    return _SESSIONS


TRADE_CONDITIONS_CSV = Path(__file__).resolve().parents[3] / "dbt_project" / "seeds" / "trade_conditions.csv"


@dataclass(frozen=True, slots=True)
class Eligibility:
    last: bool
    high_low: bool
    volume: bool


def condition_table() -> dict[str, Eligibility]:
    """The seed as data: code -> which fields a print with that code updates."""
    with TRADE_CONDITIONS_CSV.open(newline="") as handle:
        return {
            row["code"]: Eligibility(
                row["updates_open_close"] == "true",
                row["updates_high_low"] == "true",
                row["updates_volume"] == "true",
            )
            for row in csv.DictReader(handle)
        }


def eligibility_of(conditions: Sequence[str] | None, table: Mapping[str, Eligibility]) -> Eligibility:
    """A field needs every code's consent; unknown codes and no codes are regular."""
    known = [table[code] for code in conditions or () if code in table]
    return Eligibility(
        all(e.last for e in known), all(e.high_low for e in known), all(e.volume for e in known)
    )


# one print of a bar: (price, volume, eligibility, session)
Print = tuple[Decimal, Decimal, Eligibility, str]


def _bar_of(prints: Sequence[Print]) -> dict[str, object]:
    """One bar from its prints, in (ts, partition, offset) order, by the trade-condition rules."""
    last = [p for p, _, e, _ in prints if e.last]
    high_low = [p for p, _, e, _ in prints if e.high_low]
    volume = sum((v for _, v, e, _ in prints if e.volume), Decimal(0))
    weighted = [(p, v) for p, v, e, _ in prints if e.last and e.volume]
    vwap_volume = sum((v for _, v in weighted), Decimal(0))
    return {
        "open": last[0] if last else None,
        "high": max(high_low) if high_low else None,
        "low": min(high_low) if high_low else None,
        "close": last[-1] if last else None,
        "volume": volume,
        "vwap": sum((p * v for p, v in weighted), Decimal(0)) / vwap_volume if vwap_volume else None,
        "trade_count": len(prints),
        "sessions": {session for *_, session in prints},
    }


def pandas_bars(trades: Sequence[RawTrade]) -> pd.DataFrame:
    """fct_bars computed the plain way: one groupby per interval over the raw rows, every symbol on
    the XNYS calendar, the trade-condition table applied print by print: intraday buckets aligned
    to the hour in UTC, with the trading date of their start and the session all their prints lie
    in (`mixed` when several); a 1d bar per regular session, starting 00:00 New York of its date."""
    trades = [t for t in trades if t.price <= MAX_PLAUSIBLE_PRICE and t.volume <= MAX_PLAUSIBLE_VOLUME]
    sessions = nyse()
    table = condition_table()
    frame = pd.DataFrame(
        {
            "symbol": [t.symbol for t in trades],
            "price": [t.price for t in trades],
            "volume": [t.volume for t in trades],
            "ts": [t.ts for t in trades],
            "partition": [t.partition for t in trades],
            "offset": [t.offset for t in trades],
            "eligibility": [eligibility_of(t.conditions, table) for t in trades],
        }
    ).sort_values(["symbol", "ts", "partition", "offset"], kind="stable")
    event_time = pd.to_datetime(frame["ts"], unit="ms", utc=True)
    of_trade = sessions.sessions_of(event_time)
    frame["session"] = [part for _, part in of_trade]
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
        prints = list(zip(rows["price"], rows["volume"], rows["eligibility"], rows["session"], strict=True))
        groups = rows.groupby(["symbol", "bar_start"], sort=True).indices  # rows' positions, in order
        bars = pd.DataFrame(
            [
                {"symbol": symbol, "bar_start": bar_start, **_bar_of([prints[i] for i in positions])}
                for (symbol, bar_start), positions in sorted(groups.items())
            ],
            columns=["symbol", "bar_start", "open", "high", "low", "close", "volume", "vwap",
                     "trade_count", "sessions"],
        )
        bars["bar_interval"] = interval
        if width is None:
            bars["trading_date"] = [start.tz_convert(NEW_YORK).date() for start in bars["bar_start"]]
            bars["session"] = "regular"
        else:
            of_start = sessions.sessions_of(bars["bar_start"])
            bars["trading_date"] = [day for day, _ in of_start]
            bars["session"] = [next(iter(s)) if len(s) == 1 else "mixed" for s in bars["sessions"]]
        out.append(bars.drop(columns="sessions"))
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
