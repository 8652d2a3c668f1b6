"""The dashboard's queries against the real warehouse, as bi_reader, on fixture rows in `marts`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from dashboard.queries import (
    MartUnavailable,
    bar_counts,
    latest_alerts,
    list_symbols,
    load_bars,
    open_reader,
    pipeline_status,
    relation_exists,
)
from tests.e2e.dashboard_data import MartFixture, Series, synthetic_series
from tickhouse.config import Settings
from tickhouse.warehouse import setup_warehouse

pytestmark = pytest.mark.integration

SYMBOL = "TESTDASHQ"
END = dt.datetime(2026, 11, 20, 20, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def series(settings: Settings) -> Iterator[Series]:
    setup_warehouse(settings)
    fixture = MartFixture(settings, [SYMBOL])
    fixture.cleanup()
    fixture.ensure_tables()
    one = synthetic_series(SYMBOL, "5m", 80, END, seed=7)
    try:
        fixture.insert_series([one, synthetic_series(SYMBOL, "1h", 12, END, seed=8)])
        fixture.insert_alert(SYMBOL, "volume_spike", "info", "newer", END)
        fixture.insert_alert(SYMBOL, "price_spike", "warning", "older", END - dt.timedelta(hours=1))
        yield one
    finally:
        fixture.cleanup()


def test_bars_come_back_oldest_first_with_their_technicals(settings: Settings, series: Series) -> None:
    with open_reader(settings) as conn:
        assert SYMBOL in list_symbols(conn)
        assert bar_counts(conn, SYMBOL) == {"5m": 80, "1h": 12}
        bars = load_bars(conn, SYMBOL, "5m", 1000)
        newest = load_bars(conn, SYMBOL, "5m", 30)
    assert list(bars["bar_start"]) == series.bar_starts
    assert np.allclose(bars["close"], [r["close"] for r in series.rows])
    stored_sma = np.array([np.nan if r["sma_20"] is None else r["sma_20"] for r in series.rows])
    assert np.allclose(bars["sma_20"], stored_sma, equal_nan=True)
    assert bars["sma_200"].isna().all()  # 80 bars: TA-Lib has no SMA(200) yet
    assert list(newest["bar_start"]) == series.bar_starts[-30:]


def test_latest_alerts_newest_first_with_utc_times(settings: Settings, series: Series) -> None:
    with open_reader(settings) as conn:
        alerts = latest_alerts(conn, 10, [SYMBOL])
    assert list(alerts["message"]) == ["newer", "older"]
    assert list(alerts["rule"]) == ["volume_spike", "price_spike"]
    assert alerts["time"].iloc[0] == END


def test_inputs_are_validated_before_any_query(settings: Settings) -> None:
    with open_reader(settings) as conn:
        with pytest.raises(ValueError, match="not a valid symbol"):
            load_bars(conn, "X'; drop table marts.fct_bars; --", "1m", 10)
        with pytest.raises(ValueError, match="not a bar interval"):
            load_bars(conn, SYMBOL, "7m", 10)


def test_reader_is_read_only(settings: Settings, series: Series) -> None:
    with open_reader(settings) as conn, pytest.raises(psycopg.Error):
        conn.execute("delete from marts.fct_bars where symbol = %s", (SYMBOL,))


def test_pipeline_status_missing_is_reported_not_raised_as_sql_error(settings: Settings) -> None:
    with open_reader(settings) as conn:
        if relation_exists(conn, "marts.pipeline_status"):
            frame = pipeline_status(conn)
            assert {"topic", "consumer_lag", "freshness_seconds"} <= set(frame.columns)
        else:
            with pytest.raises(MartUnavailable, match=r"marts\.pipeline_status does not exist"):
                pipeline_status(conn)
