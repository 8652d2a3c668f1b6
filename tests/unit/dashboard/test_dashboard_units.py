"""Pure parts of the dashboard: options, input validation, the figure, the server arguments."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from dashboard.charts import CANDLE_TRACE_NAME, build_figure, chart_times
from dashboard.cli import main, streamlit_argv
from dashboard.options import DEFAULT_PORT, DashboardOptions, load_options
from dashboard.queries import BAR_COLUMNS, TECHNICAL_COLUMNS, validate_interval, validate_symbol
from tickhouse.config import ConfigError

pytestmark = pytest.mark.unit


def _bars(count: int) -> pd.DataFrame:
    start = pd.Timestamp("2026-11-20 14:30", tz="UTC")
    closes = 100 + np.cumsum(np.linspace(-1, 1, count))
    frame = pd.DataFrame(
        {
            "bar_start": [start + pd.Timedelta(minutes=i) for i in range(count)],
            "open": closes - 0.1,
            "high": closes + 0.5,
            "low": closes - 0.5,
            "close": closes,
            "volume": np.arange(count, dtype=float),
            "vwap": closes,
            "trade_count": np.ones(count),
        }
    )
    for column in TECHNICAL_COLUMNS:
        frame[column] = np.nan
    frame.loc[count // 2 :, "rsi_14"] = 55.0
    return frame[[*BAR_COLUMNS, *TECHNICAL_COLUMNS]]


def test_options_defaults_and_environment() -> None:
    assert load_options({}) == DashboardOptions()
    assert load_options({"DASHBOARD_PORT": ""}).port == DEFAULT_PORT
    options = load_options(
        {"DASHBOARD_PORT": "9000", "DASHBOARD_REFRESH_SECONDS": "0", "DASHBOARD_MAX_BARS": "50"}
    )
    assert options == DashboardOptions(port=9000, refresh_seconds=0, max_bars=50)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DASHBOARD_PORT", "70000"),
        ("DASHBOARD_PORT", "http"),
        ("DASHBOARD_REFRESH_SECONDS", "-1"),
        ("DASHBOARD_MAX_BARS", "0"),
    ],
)
def test_options_reject_bad_values_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_options({name: value})


@pytest.mark.parametrize("symbol", ["AAPL", "BRK.B", "BINANCE:BTCUSDT", "^GSPC", "EUR/USD=X"])
def test_valid_symbols_pass(symbol: str) -> None:
    assert validate_symbol(symbol) == symbol


@pytest.mark.parametrize("symbol", ["", "AAPL;drop table x", "A" * 33, "it's", "a b"])
def test_invalid_symbols_are_rejected(symbol: str) -> None:
    with pytest.raises(ValueError, match="not a valid symbol"):
        validate_symbol(symbol)


def test_interval_must_be_a_contract_interval() -> None:
    assert validate_interval("15m") == "15m"
    with pytest.raises(ValueError, match="1m, 5m, 15m, 1h, 1d"):
        validate_interval("2m")


def test_chart_times_are_naive_utc() -> None:
    times = chart_times(pd.Series([pd.Timestamp("2026-11-20 09:30", tz="America/New_York")]))
    assert times.iloc[0] == pd.Timestamp("2026-11-20 14:30")
    assert times.dt.tz is None


def test_figure_has_one_candle_per_bar_and_every_pane() -> None:
    bars = _bars(30)
    fig = build_figure(bars, "AAPL", "1m")
    candles = [t for t in fig.data if t.type == "candlestick"]
    assert len(candles) == 1 and candles[0].name == CANDLE_TRACE_NAME
    assert len(candles[0].x) == 30
    assert list(candles[0].close) == list(bars["close"])
    names = {t.name for t in fig.data}
    assert {
        "SMA 20",
        "SMA 50",
        "SMA 200",
        "EMA 12",
        "EMA 26",
        "Bollinger (20, 2)",
        "volume",
        "RSI 14",
        "MACD",
        "signal",
        "MACD hist",
    } <= names
    # price, volume, RSI and MACD each on their own y axis
    assert {t.yaxis for t in fig.data} == {"y", "y2", "y3", "y4"}
    assert fig.layout.meta == {"symbol": "AAPL", "interval": "1m", "bars": 30}
    assert pd.Timestamp(candles[0].x[0]) == pd.Timestamp(dt.datetime(2026, 11, 20, 14, 30))


def test_server_listens_on_loopback_only() -> None:
    argv = streamlit_argv(DashboardOptions(port=8600))
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[argv.index("--server.port") + 1] == "8600"
    assert argv[argv.index("--browser.gatherUsageStats") + 1] == "false"


@pytest.mark.parametrize("argv", [["--port", "99999"], ["--refresh", "-3"], ["--max-bars", "0"], ["--bogus"]])
def test_cli_rejects_bad_arguments_with_exit_code_2(argv: list[str]) -> None:
    assert main(argv) == 2


def test_cli_help_exits_0() -> None:
    assert main(["--help"]) == 0
