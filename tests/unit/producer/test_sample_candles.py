"""The bundled daily candles are the real daily bars of the source, as valid candle-file rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from producer.candle_file import read_candles
from producer.sample_candles import main
from tickhouse.config import PROJECT_ROOT
from tickhouse.schemas import Candle

pytestmark = pytest.mark.unit

BUNDLED = PROJECT_ROOT / "data" / "daily_candles.csv.gz"


def source_bars() -> pd.DataFrame:
    """The source file of bokeh_sampledata.stocks, read with plain pandas (the oracle)."""
    import bokeh_sampledata

    raw = Path(bokeh_sampledata.__file__).parent / "_data" / "stocks.csv.gz"
    frame = pd.read_csv(raw)
    since_epoch = pd.to_datetime(frame["Date"]) - pd.Timestamp("1970-01-01")
    frame["bar_start"] = since_epoch // pd.Timedelta(milliseconds=1)
    return frame.rename(columns={"Ticker": "symbol", "Open": "open", "High": "high",
                                 "Low": "low", "Close": "close", "Volume": "volume"})


def test_bundled_file_holds_every_daily_bar_of_the_source_exactly() -> None:
    ours = pd.read_csv(BUNDLED, dtype={"resolution": str})
    assert list(ours.columns) == ["symbol", "resolution", "bar_start", "open", "high", "low",
                                  "close", "volume"]
    assert set(ours["resolution"]) == {"D"}
    source = source_bars()
    key = ["symbol", "bar_start"]
    merged = ours.merge(source, on=key, how="outer", suffixes=("", "_src"), indicator=True)
    assert (merged["_merge"] == "both").all()  # the same days, none missing or extra
    for column in ("open", "high", "low", "close", "volume"):
        assert (merged[column] == merged[f"{column}_src"]).all(), column
    assert len(ours) == 12_154
    assert ours.groupby("symbol")["bar_start"].is_monotonic_increasing.all()
    spans = ours.groupby("symbol")["bar_start"].agg(["min", "max"])
    assert spans.loc["AAPL", "min"] == 951868800000  # 2000-03-01 00:00 UTC
    assert spans.loc["FB", "min"] == 1337299200000  # 2012-05-18
    assert (spans["max"] == 1362096000000).all()  # 2013-03-01


def test_every_row_is_a_valid_candle() -> None:
    items = list(read_candles(BUNDLED))
    assert len(items) == 12_154 and all(isinstance(i, Candle) for i in items)


def test_bundled_file_is_what_the_script_produces(tmp_path: Path) -> None:
    out = tmp_path / "regenerated.csv.gz"
    assert main(["--out", str(out)]) == 0
    assert out.read_bytes() == BUNDLED.read_bytes()
