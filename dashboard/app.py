"""The Streamlit script (`streamlit run dashboard/app.py`; normally started by `python -m dashboard`).

Streamlit re-executes this file on every interaction; the live panels re-run on their own every
`refresh` seconds as a fragment, so the selectors keep their state between refreshes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pandas as pd
import psycopg
import streamlit as st

from dashboard.charts import build_figure
from dashboard.options import DashboardOptions, load_options
from dashboard.queries import (
    INTERVALS,
    PIPELINE_UNAVAILABLE,
    MartUnavailable,
    bar_counts,
    latest_alerts,
    list_symbols,
    load_bars,
    open_reader,
    pipeline_status,
    symbol_coverage,
)
from tickhouse.config import ConfigError, Settings, load_settings

ALERT_ROWS = 15
MISSING = "\N{EN DASH}"  # shown for a value that is not there


def _age(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return MISSING
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _timestamp(value: pd.Timestamp | None, fmt: str = "%m-%d %H:%M:%S") -> str:
    """A UTC time, short enough for a table cell; the column header says UTC."""
    if value is None or pd.isna(value):
        return MISSING
    return str(pd.Timestamp(value).tz_convert("UTC").strftime(fmt))


def _count(value: float | None) -> str:
    return MISSING if value is None or pd.isna(value) else f"{int(value):,}"


@st.cache_data(ttl=30, show_spinner=False)
def _symbols(_settings: Settings) -> list[str]:
    with open_reader(_settings) as conn:
        return list_symbols(conn)


def _render_chart(settings: Settings, options: DashboardOptions, symbol: str, interval: str) -> None:
    with open_reader(settings) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # counts and bars agree
        with conn.transaction():
            counts = bar_counts(conn, symbol)
            bars = load_bars(conn, symbol, interval, options.max_bars)
    total = counts.get(interval, 0)
    if bars.empty:
        have = ", ".join(f"{i} ({counts[i]:,})" for i in INTERVALS if i in counts) or "none"
        st.info(f"No {interval} bars for {symbol} in marts.fct_bars yet. Intervals with bars: {have}.")
        return
    last, first = bars.iloc[-1], bars.iloc[0]
    now = pd.Timestamp.now(tz="UTC")
    cols = st.columns(4)
    cols[0].metric(
        f"{symbol} last close",
        f"{last['close']:,.2f}",
        delta=f"{(last['close'] / first['open'] - 1) * 100:+.2f} % over the chart" if first["open"] else None,
    )
    cols[1].metric(
        "newest bar (UTC)", _timestamp(last["bar_start"], "%m-%d %H:%M"), help="bar start, event time"
    )
    cols[2].metric("bar age", _age((now - last["bar_start"]).total_seconds()))
    cols[3].metric("bars shown", f"{len(bars):,} of {total:,}")
    st.plotly_chart(
        build_figure(bars, symbol, interval),
        key="price_chart",
        config={"displaylogo": False, "scrollZoom": True},
    )


def _render_alerts(settings: Settings, symbol: str, only_symbol: bool) -> None:
    with open_reader(settings) as conn:
        alerts = latest_alerts(conn, ALERT_ROWS, [symbol] if only_symbol else None)
    if alerts.empty:
        st.caption("no alerts yet" + (f" for {symbol}" if only_symbol else ""))
        return
    shown = pd.DataFrame(
        {
            "time (UTC)": alerts["time"].map(_timestamp),
            "symbol": alerts["symbol"],
            "rule": alerts["rule"],
            "severity": alerts["severity"],
            "message": alerts["message"],
        }
    )
    st.table(shown, hide_index=True)


def _render_pipeline(settings: Settings) -> None:
    try:
        with open_reader(settings) as conn:
            status = pipeline_status(conn)
    except MartUnavailable as err:
        st.info(f"{PIPELINE_UNAVAILABLE}: {err}")
        return
    if status.empty:
        st.info(f"{PIPELINE_UNAVAILABLE}: marts.pipeline_status has no rows yet")
        return
    now = pd.Timestamp.now(tz="UTC")
    last_load = status["last_loaded_at"].max()
    cols = st.columns(4)
    cols[0].metric(
        "last load", _age((now - last_load).total_seconds()) + " ago" if pd.notna(last_load) else MISSING
    )
    cols[1].metric("consumer lag", _count(status["consumer_lag"].sum(min_count=1)), help="all topics")
    cols[2].metric("quarantined", _count(status["messages_quarantined"].sum(min_count=1)), help="all topics")
    cols[3].metric("freshness", _age(status["freshness_seconds"].max()), help="the stalest topic")
    shown = pd.DataFrame(
        {
            "topic": status["topic"],
            "last load (UTC)": status["last_loaded_at"].map(_timestamp),
            "loaded": status["messages_loaded"].map(_count),
            "quarantined": status["messages_quarantined"].map(_count),
            "lag": status["consumer_lag"].map(_count),
            "newest event (UTC)": status["latest_event_time"].map(_timestamp),
            "freshness": status["freshness_seconds"].map(_age),
        }
    )
    st.table(shown, hide_index=True)
    _render_symbol_coverage(settings)


SYMBOL_ROWS = 12


def _render_symbol_coverage(settings: Settings) -> None:
    """Per symbol: oldest and newest bar, and rows raw holds that the marts do not reflect yet."""
    try:
        with open_reader(settings) as conn:
            coverage = symbol_coverage(conn, SYMBOL_ROWS)
    except MartUnavailable as err:
        st.caption(f"per-symbol coverage unavailable: {err}")
        return
    if coverage.empty:
        return
    behind = int(coverage["is_behind_raw"].sum())
    st.caption(
        f"marts behind raw for {behind} of the symbols shown (rows loaded, not yet transformed)"
        if behind
        else "marts up to date with raw for the symbols shown"
    )
    shown = pd.DataFrame(
        {
            "symbol": coverage["symbol"],
            "oldest bar (UTC)": coverage["first_bar_start"].map(_timestamp),
            "newest bar (UTC)": coverage["last_bar_start"].map(_timestamp),
            "rows pending": coverage["rows_pending"].map(_count),
            "oldest pending (UTC)": coverage["oldest_pending_event_time"].map(_timestamp),
        }
    )
    st.table(shown, hide_index=True)


def _guarded(what: str, render: Callable[[], None]) -> None:
    """Show a problem with one panel in that panel, so the rest of the page still works."""
    try:
        render()
    except MartUnavailable as err:
        st.info(f"{what}: {err}")
    except psycopg.OperationalError as err:
        st.error(f"{what}: cannot reach the warehouse as bi_reader: {str(err).strip()}")
    except psycopg.Error as err:
        st.error(f"{what}: query failed: {str(err).strip()}")


def _live_panels(settings: Settings, options: DashboardOptions, symbol: str, interval: str) -> None:
    _guarded("chart", lambda: _render_chart(settings, options, symbol, interval))
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Latest alerts")
        only_symbol = st.toggle(f"only {symbol}", key="alerts_only_symbol")
        _guarded("alerts", lambda: _render_alerts(settings, symbol, only_symbol))
    with right:
        st.subheader("Pipeline")
        _guarded("pipeline", lambda: _render_pipeline(settings))
    st.caption(f"updated {dt.datetime.now(dt.UTC):%H:%M:%S} UTC")


def _wait_for_bars(settings: Settings, options: DashboardOptions, reason: str) -> None:
    """Say why there is nothing to show, and reload the page once there is."""
    st.title("Tickhouse")
    st.info(f"{reason} This page reloads by itself when bars appear.")

    def poll() -> None:
        try:
            with open_reader(settings) as conn:
                ready = bool(list_symbols(conn))
        except (MartUnavailable, psycopg.Error):
            ready = False
        if ready:
            _symbols.clear()
            st.rerun(scope="app")

    st.fragment(run_every=max(options.refresh_seconds, 5))(poll)()


def main() -> None:
    st.set_page_config(page_title="Tickhouse", page_icon=":chart_with_upwards_trend:", layout="wide")
    try:
        settings = load_settings()
        options = load_options()
    except ConfigError as err:
        st.error(f"configuration error: {err}")
        st.stop()
        return

    st.sidebar.title("Tickhouse")
    try:
        symbols = _symbols(settings)
    except MartUnavailable as err:
        _wait_for_bars(settings, options, f"{err}.")
        return
    except psycopg.Error as err:
        st.error(f"cannot read marts as {settings.bi_reader_user}: {str(err).strip()}")
        return
    if not symbols:
        _wait_for_bars(settings, options, "marts.fct_bars has no bars yet; run the pipeline (`make demo`).")
        return

    symbol = st.sidebar.selectbox("Symbol", symbols, key="symbol", bind="query-params")
    interval = st.sidebar.selectbox("Interval", INTERVALS, key="interval", bind="query-params")
    refresh = st.sidebar.number_input(
        "Auto-refresh (seconds, 0 = off)",
        min_value=0,
        max_value=3600,
        value=options.refresh_seconds,
        step=5,
        key="refresh",
    )
    st.sidebar.caption(
        f"Reading `marts` as `{settings.bi_reader_user}` on "
        f"{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}; "
        f"newest {options.max_bars:,} bars per chart."
    )
    if symbol is None or interval is None:
        return

    live = st.fragment(run_every=int(refresh) if refresh else None)(_live_panels)
    live(settings, options, str(symbol), str(interval))


main()
