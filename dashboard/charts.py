"""The price chart: candlesticks with SMA / EMA / Bollinger overlays, volume, RSI and MACD panes.

Pure: a DataFrame from `queries.load_bars` in, a plotly Figure out.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

UP_COLOR = "#26a69a"
DOWN_COLOR = "#ef5350"
CANDLE_TRACE_NAME = "price"

_OVERLAYS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("sma_20", "SMA 20", {"color": "#ff9800", "width": 1.2}),
    ("sma_50", "SMA 50", {"color": "#2962ff", "width": 1.2}),
    ("sma_200", "SMA 200", {"color": "#6d4c41", "width": 1.2}),
    ("ema_12", "EMA 12", {"color": "#ab47bc", "width": 1, "dash": "dot"}),
    ("ema_26", "EMA 26", {"color": "#00838f", "width": 1, "dash": "dot"}),
)
_BAND_LINE = {"color": "rgba(120,144,156,0.8)", "width": 0.8}


def chart_times(bar_start: pd.Series) -> pd.Series:
    """Bar starts as naive UTC timestamps: plotly.js has no time zones, so we label the axis UTC."""
    times = pd.to_datetime(bar_start, utc=True)
    return times.dt.tz_convert("UTC").dt.tz_localize(None)


def _line(x: pd.Series, y: pd.Series, name: str, line: dict[str, Any], **extra: Any) -> go.Scatter:
    return go.Scatter(x=x, y=y, name=name, mode="lines", line=line, connectgaps=False, **extra)


def build_figure(bars: pd.DataFrame, symbol: str, interval: str) -> go.Figure:
    """Four panes sharing the time axis: price (+overlays), volume, RSI(14), MACD(12, 26, 9)."""
    x = chart_times(bars["bar_start"])
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.025,
        row_heights=[0.52, 0.14, 0.16, 0.18],
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=bars["bb_upper"],
            name="Bollinger upper",
            mode="lines",
            line=_BAND_LINE,
            legendgroup="bb",
            showlegend=False,
            hoverinfo="skip",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=bars["bb_lower"],
            name="Bollinger (20, 2)",
            mode="lines",
            line=_BAND_LINE,
            fill="tonexty",
            fillcolor="rgba(120,144,156,0.12)",
            legendgroup="bb",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        _line(
            x,
            bars["bb_middle"],
            "BB middle",
            {**_BAND_LINE, "dash": "dash"},
            legendgroup="bb",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Candlestick(
            x=x,
            open=bars["open"],
            high=bars["high"],
            low=bars["low"],
            close=bars["close"],
            name=CANDLE_TRACE_NAME,
            increasing={"line": {"color": UP_COLOR}, "fillcolor": UP_COLOR},
            decreasing={"line": {"color": DOWN_COLOR}, "fillcolor": DOWN_COLOR},
        ),
        row=1,
        col=1,
    )
    for column, name, line in _OVERLAYS:
        fig.add_trace(_line(x, bars[column], name, line), row=1, col=1)

    up = bars["close"] >= bars["open"]
    fig.add_trace(
        go.Bar(
            x=x,
            y=bars["volume"],
            name="volume",
            showlegend=False,
            marker={"color": [UP_COLOR if u else DOWN_COLOR for u in up], "line": {"width": 0}},
        ),
        row=2,
        col=1,
    )

    fig.add_trace(_line(x, bars["rsi_14"], "RSI 14", {"color": "#7e57c2", "width": 1.2}), row=3, col=1)
    for level in (30, 70):
        fig.add_hline(y=level, line={"color": "#9e9e9e", "width": 0.8, "dash": "dot"}, row=3, col=1)

    hist = bars["macd_hist"]
    fig.add_trace(
        go.Bar(
            x=x,
            y=hist,
            name="MACD hist",
            showlegend=False,
            marker={
                "color": [UP_COLOR if h >= 0 else DOWN_COLOR for h in hist.fillna(0)],
                "line": {"width": 0},
            },
        ),
        row=4,
        col=1,
    )
    fig.add_trace(_line(x, bars["macd"], "MACD", {"color": "#1e88e5", "width": 1.2}), row=4, col=1)
    fig.add_trace(_line(x, bars["macd_signal"], "signal", {"color": "#fb8c00", "width": 1.2}), row=4, col=1)

    fig.update_layout(
        title={"text": f"{symbol} · {interval} bars", "x": 0.01, "y": 0.985, "yanchor": "top"},
        height=820,
        margin={"l": 10, "r": 10, "t": 90, "b": 10},
        hovermode="x unified",
        bargap=0.1,
        legend={"orientation": "h", "y": 1.01, "x": 0, "xanchor": "left", "yanchor": "bottom"},
        # keep the user's zoom across auto-refreshes until the symbol or interval changes
        uirevision=f"{symbol}/{interval}",
        meta={"symbol": symbol, "interval": interval, "bars": len(bars)},
    )
    fig.update_xaxes(rangeslider_visible=False)
    fig.update_xaxes(title_text="time (UTC)", row=4, col=1)
    fig.update_yaxes(title_text="price", row=1, col=1)
    fig.update_yaxes(title_text="volume", row=2, col=1)
    fig.update_yaxes(title_text="RSI", range=[0, 100], row=3, col=1)
    fig.update_yaxes(title_text="MACD", row=4, col=1)
    return fig
