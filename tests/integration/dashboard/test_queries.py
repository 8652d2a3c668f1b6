"""The dashboard's queries as bi_reader, against marts dbt built from trades that went through
Kafka and the drain into a warehouse of the test's own (tests/e2e/dashboard_data.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
import talib

from dashboard.queries import (
    MartUnavailable,
    bar_counts,
    latest_alerts,
    list_symbols,
    load_bars,
    open_reader,
    pipeline_status,
    symbol_coverage,
)
from tests.e2e.dashboard_data import DashboardWarehouse, alert, dashboard_warehouse, minute_trades
from tests.integration.dbt.conftest import own_warehouse

pytestmark = pytest.mark.integration

SYMBOL = "TESTDASHQ"
# 400 minutes of one trade a minute, ending on a full hour: 400 1m bars, 80 5m bars
END = dt.datetime(2026, 11, 20, 19, 59, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardWarehouse]:
    with dashboard_warehouse("dashboard_queries", tmp_path_factory.mktemp("dbt-target")) as house:
        house.load(
            minute_trades(SYMBOL, 400, END, 100.0, seed=7),
            [
                alert(SYMBOL, "volume_spike", "info", "newer", END),
                alert(SYMBOL, "price_move", "warning", "older", END - dt.timedelta(hours=1)),
            ],
        )
        yield house


def test_bars_come_back_oldest_first_with_their_technicals(warehouse: DashboardWarehouse) -> None:
    with open_reader(warehouse.settings) as conn:
        assert SYMBOL in list_symbols(conn)
        counts = bar_counts(conn, SYMBOL)
        bars = load_bars(conn, SYMBOL, "5m", 1000)
        newest = load_bars(conn, SYMBOL, "5m", 30)
    assert counts["1m"] == 400 and counts["5m"] == 80
    starts = list(bars["bar_start"])
    assert starts == sorted(starts) and len(starts) == 80
    assert starts[-1] == END.replace(minute=55)
    # the technicals joined to each bar are TA-Lib's over those closes
    assert np.allclose(bars["sma_20"], talib.SMA(bars["close"].to_numpy(), 20), equal_nan=True)
    assert bars["sma_200"].isna().all()  # 80 bars: TA-Lib has no SMA(200) yet
    assert list(newest["bar_start"]) == starts[-30:]


def test_latest_alerts_newest_first_with_utc_times(warehouse: DashboardWarehouse) -> None:
    with open_reader(warehouse.settings) as conn:
        alerts = latest_alerts(conn, 10, [SYMBOL])
    assert list(alerts["message"]) == ["newer", "older"]
    assert list(alerts["rule"]) == ["volume_spike", "price_move"]
    assert alerts["time"].iloc[0] == END


def test_pipeline_panels_read_their_views(warehouse: DashboardWarehouse) -> None:
    with open_reader(warehouse.settings) as conn:
        status = pipeline_status(conn)
        coverage = symbol_coverage(conn, 10)
    assert set(status["topic"]) == {warehouse.feed.trades_topic, warehouse.feed.alerts_topic}
    assert int(status["messages_loaded"].sum()) == 402
    row = coverage[coverage["symbol"] == SYMBOL].iloc[0]
    assert row["rows_pending"] == 0 and not row["is_behind_raw"]


def test_inputs_are_validated_before_any_query(warehouse: DashboardWarehouse) -> None:
    with open_reader(warehouse.settings) as conn:
        with pytest.raises(ValueError, match="not a valid symbol"):
            load_bars(conn, "X'; drop table marts.fct_bars; --", "1m", 10)
        with pytest.raises(ValueError, match="not a bar interval"):
            load_bars(conn, SYMBOL, "7m", 10)


def test_reader_is_read_only(warehouse: DashboardWarehouse) -> None:
    with open_reader(warehouse.settings) as conn, pytest.raises(psycopg.Error):
        conn.execute("delete from marts.fct_bars where symbol = %s", (SYMBOL,))


def test_marts_not_built_yet_are_reported_not_raised_as_sql_errors() -> None:
    with own_warehouse("dashboard_empty") as settings, open_reader(settings) as conn:
        with pytest.raises(MartUnavailable, match=r"marts\.fct_bars does not exist"):
            load_bars(conn, SYMBOL, "1m", 10)
        with pytest.raises(MartUnavailable, match=r"marts\.pipeline_status does not exist"):
            pipeline_status(conn)
