"""The bundled demo data: real daily OHLCV bars expanded into intraday trades.

Source: `bokeh_sampledata.stocks` (Quandl WIKI prices, public domain), daily unadjusted
open/high/low/close/volume for AAPL, GOOG, IBM and MSFT up to 2013-03-01. For the last `days`
trading days of each symbol, one day becomes N trades (N drawn from [min_trades, max_trades]):

- times: N sorted draws from a U-shaped Beta(0.7, 0.7) density over the regular session
  09:30-16:00 America/New_York (busy open and close, quiet midday), in whole milliseconds; the
  first trade is at 09:30:00 and the last one just before 16:00:00;
- prices: a piecewise Brownian bridge pinned to the open at the first trade, the day's high and
  low at two random trades in between (in random order), and the close at the last trade; rounded
  to the cent and clipped into [low, high], so open, close, high and low are exactly the day's;
- sizes: the day's volume in round lots of 100 shares, every trade at least one lot, the rest
  spread with log-normal weights (largest-remainder rounding); a volume that is not a multiple of
  100 puts its remainder on one random trade. The sizes sum to the day's volume exactly.

Everything is drawn from `numpy.random.default_rng([seed, symbol, day])`: the same seed gives the
same file byte for byte (the gzip header carries no timestamp).

Usage: python -m producer.sample_data --out data/sample_trades.csv.gz [--days 10] [--seed 42]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import io
import itertools
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

NEW_YORK = ZoneInfo("America/New_York")
SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")
SESSION_OPEN = dt.time(9, 30)
SESSION_MS = int(6.5 * 3600 * 1000)
LOT = 100


@dataclass(frozen=True, slots=True)
class DailyBar:
    symbol: str
    day: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True, slots=True)
class DayTrades:
    bar: DailyBar
    ts: np.ndarray  # int64 epoch ms, ascending
    price: np.ndarray  # float64
    volume: np.ndarray  # int64


def load_bars(symbols: Sequence[str] = SYMBOLS, days: int = 10) -> list[DailyBar]:
    """The last `days` daily bars of each symbol from bokeh_sampledata.stocks."""
    from bokeh_sampledata import stocks

    bars: list[DailyBar] = []
    for symbol in symbols:
        series = getattr(stocks, symbol)
        n = len(series["date"])
        for i in range(max(n - days, 0), n):
            bars.append(DailyBar(
                symbol=symbol,
                day=dt.date.fromisoformat(series["date"][i]),
                open=float(series["open"][i]),
                high=float(series["high"][i]),
                low=float(series["low"][i]),
                close=float(series["close"][i]),
                volume=int(series["volume"][i]),
            ))
    return bars


def _rng(seed: int, bar: DailyBar) -> np.random.Generator:
    symbol_key = zlib.crc32(bar.symbol.encode())
    return np.random.default_rng([seed, symbol_key, bar.day.toordinal()])


def _bridge(
    rng: np.random.Generator, start: float, end: float, steps: int, scale: float
) -> np.ndarray:
    """`steps + 1` points of a Brownian bridge from `start` to `end`."""
    if steps <= 0:
        return np.array([start])
    walk = np.concatenate([[0.0], np.cumsum(rng.normal(0.0, scale, steps))])
    fraction = np.arange(steps + 1) / steps
    return np.asarray(start + walk - fraction * walk[-1] + fraction * (end - start))


def _sizes(rng: np.random.Generator, volume: int, n: int) -> np.ndarray:
    lots, odd = divmod(volume, LOT)
    weights = rng.lognormal(0.0, 1.0, n)
    extra = lots - n
    share = weights / weights.sum() * extra
    base = np.floor(share).astype(np.int64)
    shortfall = extra - int(base.sum())
    if shortfall:
        base[np.argsort(-(share - base), kind="stable")[:shortfall]] += 1
    sizes = (base + 1) * LOT
    if odd:
        sizes[rng.integers(n)] += odd
    return np.asarray(sizes)


def expand_day(
    bar: DailyBar, seed: int, min_trades: int = 2000, max_trades: int = 5000
) -> DayTrades:
    """One daily bar -> its intraday trades (see the module docstring for how)."""
    rng = _rng(seed, bar)
    n = int(rng.integers(min_trades, max_trades + 1))
    n = max(min(n, bar.volume // LOT), 4)
    # times
    start = dt.datetime.combine(bar.day, SESSION_OPEN, NEW_YORK)
    start_ms = int(start.timestamp() * 1000)
    offsets = np.sort((rng.beta(0.7, 0.7, n) * SESSION_MS).astype(np.int64))
    offsets[0] = 0
    offsets = np.minimum(offsets, SESSION_MS - 1)
    # prices: open -> first extreme -> second extreme -> close
    first, second = sorted(rng.choice(np.arange(1, n - 1), size=2, replace=False).tolist())
    extremes = (bar.high, bar.low) if rng.random() < 0.5 else (bar.low, bar.high)
    anchors = [(0, bar.open), (first, extremes[0]), (second, extremes[1]), (n - 1, bar.close)]
    scale = max(bar.high - bar.low, 0.01) / np.sqrt(n) * 1.5
    pieces = []
    for (i0, p0), (i1, p1) in itertools.pairwise(anchors):
        segment = _bridge(rng, p0, p1, i1 - i0, scale)
        pieces.append(segment[:-1])
    pieces.append(np.array([bar.close]))
    price = np.clip(np.round(np.concatenate(pieces), 2), bar.low, bar.high)
    for index, value in anchors:
        price[index] = value
    return DayTrades(bar, start_ms + offsets, price, _sizes(rng, bar.volume, n))


def _price_text(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text


def write_csv(days: Sequence[DayTrades], out: Path) -> int:
    """All trades, ordered by time (stable: per symbol in trade order), as gzipped CSV."""
    rows: list[tuple[int, int, str, str, int]] = []
    for order, day in enumerate(days):
        symbol = day.bar.symbol
        for i in range(len(day.ts)):
            rows.append((int(day.ts[i]), order, symbol, _price_text(float(day.price[i])),
                         int(day.volume[i])))
    rows.sort(key=lambda r: (r[0], r[1]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["symbol", "price", "volume", "ts"])
    for ts, _order, symbol, price, volume in rows:
        writer.writerow([symbol, price, volume, ts])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                             compresslevel=9) as handle:
        handle.write(buffer.getvalue().encode("utf-8"))
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/sample_trades.csv.gz"))
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--min-trades", type=int, default=2000)
    parser.add_argument("--max-trades", type=int, default=5000)
    args = parser.parse_args(argv)
    bars = load_bars(SYMBOLS, args.days)
    days = [expand_day(bar, args.seed, args.min_trades, args.max_trades) for bar in bars]
    count = write_csv(days, args.out)
    print(f"wrote {count:,} trades ({len(bars)} symbol-days) to {args.out} "
          f"({args.out.stat().st_size / 1e6:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
