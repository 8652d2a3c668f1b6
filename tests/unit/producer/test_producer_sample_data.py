"""The bundled demo data respects the real daily bars it was expanded from."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from producer.sample_data import NEW_YORK, SYMBOLS, expand_day, load_bars, write_csv
from tickhouse.config import PROJECT_ROOT

pytestmark = pytest.mark.unit

BUNDLED = PROJECT_ROOT / "data" / "sample_trades.csv.gz"


def daily_from_trades(trades: pd.DataFrame) -> pd.DataFrame:
    """Plain pandas daily OHLCV per symbol and New York trading day."""
    frame = trades.copy()
    frame["time"] = pd.to_datetime(frame["ts"], unit="ms", utc=True).dt.tz_convert(NEW_YORK)
    frame["day"] = frame["time"].dt.date
    grouped = frame.groupby(["symbol", "day"], sort=True)
    return pd.DataFrame({
        "open": grouped["price"].first(),
        "high": grouped["price"].max(),
        "low": grouped["price"].min(),
        "close": grouped["price"].last(),
        "volume": grouped["volume"].sum(),
        "trades": grouped["price"].size(),
        "first": grouped["time"].min(),
        "last": grouped["time"].max(),
    })


def check_against_bars(trades: pd.DataFrame, days: int) -> None:
    daily = daily_from_trades(trades)
    bars = load_bars(SYMBOLS, days)
    assert len(daily) == len(bars) == len(SYMBOLS) * days
    for bar in bars:
        row = daily.loc[(bar.symbol, bar.day)]
        assert (row["open"], row["high"], row["low"], row["close"]) == pytest.approx(
            (bar.open, bar.high, bar.low, bar.close), abs=1e-9)
        assert row["volume"] == bar.volume
        assert 2000 <= row["trades"] <= 5000
        assert row["first"].time() == dt.time(9, 30)
        assert row["last"].time() < dt.time(16, 0)


def test_bundled_file_respects_every_daily_bar() -> None:
    assert BUNDLED.stat().st_size < 3_000_000
    trades = pd.read_csv(BUNDLED)
    assert list(trades.columns) == ["symbol", "price", "volume", "ts"]
    assert trades["ts"].is_monotonic_increasing
    lots = trades["volume"] % 100
    assert (lots == 0).mean() > 0.98  # round lots, a remainder per day at most
    check_against_bars(trades, days=10)


def test_expansion_is_deterministic_and_seed_dependent(tmp_path: Path) -> None:
    bars = load_bars(("IBM", "MSFT"), 2)
    first = [expand_day(bar, seed=5) for bar in bars]
    again = [expand_day(bar, seed=5) for bar in bars]
    other = [expand_day(bar, seed=6) for bar in bars]
    for a, b, c in zip(first, again, other, strict=True):
        assert np.array_equal(a.price, b.price) and np.array_equal(a.ts, b.ts)
        assert not np.array_equal(a.price, c.price)
    out1, out2 = tmp_path / "a.csv.gz", tmp_path / "b.csv.gz"
    write_csv(first, out1)
    write_csv(again, out2)
    assert out1.read_bytes() == out2.read_bytes()


def test_bundled_file_is_what_the_script_produces(tmp_path: Path) -> None:
    from producer.sample_data import main

    out = tmp_path / "regenerated.csv.gz"
    assert main(["--out", str(out)]) == 0
    assert out.read_bytes() == BUNDLED.read_bytes()
