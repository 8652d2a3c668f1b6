"""The bundled daily candles: real daily OHLCV as a candle file (`tickhouse backfill --source file`).

Source: `bokeh_sampledata.stocks` (Quandl WIKI prices, public domain; see data/README.md), the same
daily bars `producer.sample_data` expands into the demo's trades: unadjusted open, high, low, close
and volume of AAPL, FB, GOOG, IBM and MSFT, every trading day the source holds (2000-03-01 to
2013-03-01; GOOG from 2004-08-19, FB from 2012-05-18).

Each bar becomes one row of the candle file format: `symbol,resolution,bar_start,open,high,low,
close,volume` with resolution `D` and `bar_start` = 00:00 UTC of the trading date in epoch
milliseconds (Finnhub's convention for daily candles, docs/interfaces/commands.md). Prices are written as the
source's numbers (Python's shortest repr of the float), volumes as integers; rows are ordered by
symbol, then date. The gzip header carries no timestamp: the same command gives the same bytes.

Usage: python -m producer.sample_candles --out data/daily_candles.csv.gz
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SYMBOLS = ("AAPL", "FB", "GOOG", "IBM", "MSFT")
HEADER = ("symbol", "resolution", "bar_start", "open", "high", "low", "close", "volume")
_EPOCH = dt.date(1970, 1, 1)
MS_PER_DAY = 86_400_000


@dataclass(frozen=True, slots=True)
class DailyCandle:
    symbol: str
    day: dt.date
    open: float
    high: float
    low: float
    close: float
    volume: int

    @property
    def bar_start(self) -> int:
        """00:00 UTC of the trading date, epoch milliseconds."""
        return (self.day - _EPOCH).days * MS_PER_DAY


def load_daily(symbols: Sequence[str] = SYMBOLS) -> list[DailyCandle]:
    """Every daily bar of `symbols` in bokeh_sampledata.stocks, by symbol then date."""
    from bokeh_sampledata import stocks

    out: list[DailyCandle] = []
    for symbol in sorted(symbols):
        series = getattr(stocks, symbol)
        for i in range(len(series["date"])):
            out.append(DailyCandle(
                symbol=symbol,
                day=dt.date.fromisoformat(series["date"][i]),
                open=float(series["open"][i]),
                high=float(series["high"][i]),
                low=float(series["low"][i]),
                close=float(series["close"][i]),
                volume=int(series["volume"][i]),
            ))
    out.sort(key=lambda c: (c.symbol, c.day))
    return out


def write_candles(candles: Sequence[DailyCandle], out: Path) -> int:
    """The candles as a gzipped CSV in the candle file format; returns the rows written."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for c in candles:
        writer.writerow([c.symbol, "D", c.bar_start, repr(c.open), repr(c.high), repr(c.low),
                         repr(c.close), c.volume])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                             compresslevel=9) as handle:
        handle.write(buffer.getvalue().encode("utf-8"))
    return len(candles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("data/daily_candles.csv.gz"))
    args = parser.parse_args(argv)
    candles = load_daily(SYMBOLS)
    count = write_candles(candles, args.out)
    print(f"wrote {count:,} daily candles of {', '.join(SYMBOLS)} to {args.out} "
          f"({args.out.stat().st_size / 1e3:.0f} kB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
