"""The dashboard as a person sees it: served by `python -m dashboard`, read in headless Chromium.

Trades of two test-only symbols go through Kafka, the drain and dbt into a warehouse of the
test's own (tests/e2e/dashboard_data.py), which the dashboard reads. The chart must draw exactly
the bars of the database for the selected symbol and interval, follow the symbol and interval
selectors, and pick up a new bar by auto-refresh alone.
A screenshot is kept in test-artifacts/dashboard.png.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dashboard.queries import PIPELINE_UNAVAILABLE
from ops.suite import free_port
from tests.e2e.browser import CHROMIUM, INSTALL_HINT, Browser, served
from tests.e2e.dashboard_data import DashboardWarehouse, alert, dashboard_warehouse, minute_trades
from tickhouse.config import Settings
from tickhouse.warehouse import connect

pytestmark = pytest.mark.e2e

SYMBOL_A = "TESTDASH"
SYMBOL_B = "TESTDASH2"
REFRESH_SECONDS = 2
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ALERT_MESSAGE = f"{SYMBOL_A} dashboard-test alert"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(INSTALL_HINT.format(path=CHROMIUM), pytrace=False)
    chromium = Browser()
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardWarehouse]:
    end = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with dashboard_warehouse("dashboard_e2e", tmp_path_factory.mktemp("dbt-target")) as house:
        house.load(
            [
                *minute_trades(SYMBOL_A, 260, end, 120.0, seed=11),
                *minute_trades(SYMBOL_B, 170, end, 35.0, seed=21),
            ],
            [alert(SYMBOL_A, "price_move", "warning", ALERT_MESSAGE, dt.datetime.now(dt.UTC))],
        )
        yield house


@pytest.fixture(scope="module")
def settings(warehouse: DashboardWarehouse) -> Settings:
    return warehouse.settings


@pytest.fixture(scope="module")
def dashboard_url(settings: Settings, browser: Browser) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        **settings.as_env(),
        "DASHBOARD_PORT": str(port),
        "DASHBOARD_REFRESH_SECONDS": str(REFRESH_SECONDS),
        "DASHBOARD_MAX_BARS": "1000",  # more than the fixture has: every stored bar is drawn
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(settings.project_root), os.environ.get("PYTHONPATH")) if p
        ),
    }
    url = f"http://127.0.0.1:{port}"
    with served("the dashboard", [sys.executable, "-m", "dashboard"], cwd=settings.project_root,
                env=env, log_path=ARTIFACTS / "dashboard-server.log",
                probe_url=f"{url}/_stcore/health", ready=lambda body: body.strip() == b"ok",
                timeout=60):
        yield url


def _db_bars(settings: Settings, symbol: str, interval: str) -> list[tuple[dt.datetime, float]]:
    """What bi_reader sees in marts.fct_bars: (bar_start as naive UTC, close), oldest first."""
    with connect(settings, "bi_reader") as conn:
        rows = conn.execute(
            "select bar_start, close::float8 from marts.fct_bars "
            "where symbol = %s and bar_interval = %s order by bar_start",
            (symbol, interval),
        ).fetchall()
    return [(start.astimezone(dt.UTC).replace(tzinfo=None), close) for start, close in rows]


_CHART_JS = """(() => {
  const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd.data || !gd.layout || !gd.layout.meta) return null;
  const candles = gd.data.filter(t => t.type === 'candlestick');
  return {meta: gd.layout.meta, candles: candles.map(t => ({x: Array.from(t.x), close: t.close}))};
})()"""


def _numbers(value: Any) -> list[float]:
    """A plotly data array as floats: a plain list, or plotly's typed-array form {dtype, bdata}."""
    if isinstance(value, dict):
        return [float(v) for v in np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])]
    return [float(v) for v in value]


def _drawn_bars(
    browser: Browser, symbol: str, interval: str, count: int | None = None
) -> list[tuple[dt.datetime, float]]:
    """Wait until the chart shows `symbol`/`interval` (with `count` candles) and return its bars."""

    def probe() -> dict[str, Any] | None:
        chart = browser.evaluate(_CHART_JS)
        if not chart or chart["meta"].get("symbol") != symbol or chart["meta"].get("interval") != interval:
            return None
        if count is not None and len(chart["candles"][0]["x"]) != count:
            return None
        return dict(chart)

    chart = browser.wait_for(
        f"the {symbol} {interval} chart" + (f" with {count} bars" if count else ""), probe, timeout=90
    )
    assert len(chart["candles"]) == 1, f"expected one candlestick trace, got {len(chart['candles'])}"
    candles = chart["candles"][0]
    times = [dt.datetime.fromisoformat(x) for x in candles["x"]]
    return list(zip(times, _numbers(candles["close"]), strict=True))


def _assert_same_bars(
    drawn: list[tuple[dt.datetime, float]], stored: list[tuple[dt.datetime, float]]
) -> None:
    assert len(drawn) == len(stored), f"chart draws {len(drawn)} bars, the database has {len(stored)}"
    assert [t for t, _ in drawn] == [t for t, _ in stored], "chart bar times differ from marts.fct_bars"
    assert np.allclose([c for _, c in drawn], [c for _, c in stored], rtol=1e-9), "chart closes differ"


def _select(browser: Browser, label: str, value: str) -> None:
    """Choose `value` in the sidebar selectbox labelled `label`, the way a person does."""
    selector = f'[data-testid="stSidebar"] input[aria-label="{label}"]'
    browser.click(selector)
    browser.evaluate(f"document.querySelector({json.dumps(selector)}).select()")
    browser.type_text(value)
    option = browser.wait_for(
        f"option {value!r} in the {label} list",
        lambda: browser.evaluate(
            f"""(() => {{ const o = [...document.querySelectorAll('[role=option]')]
                 .find(e => e.innerText.trim() === {json.dumps(value)});
                 if (!o) return null; const r = o.getBoundingClientRect();
                 return {{x: r.x + r.width / 2, y: r.y + r.height / 2}}; }})()"""
        ),
        timeout=10,
    )
    browser.click_at(option["x"], option["y"])


def _body_text(browser: Browser) -> str:
    return str(browser.evaluate("document.body ? document.body.innerText : ''"))


def test_dashboard_draws_the_bars_in_the_database(
    browser: Browser, settings: Settings, warehouse: DashboardWarehouse, dashboard_url: str
) -> None:
    browser.navigate(f"{dashboard_url}/?symbol={SYMBOL_A}&interval=1m")

    # the page loads and the chart is exactly the stored 1m bars of SYMBOL_A
    stored_a = _db_bars(settings, SYMBOL_A, "1m")
    assert len(stored_a) == 260
    _assert_same_bars(_drawn_bars(browser, SYMBOL_A, "1m"), stored_a)

    # alerts and pipeline panels
    text = browser.wait_for(
        "the alerts table", lambda: _body_text(browser) if ALERT_MESSAGE in _body_text(browser) else None
    )
    assert "Latest alerts" in text and "Pipeline" in text
    assert PIPELINE_UNAVAILABLE in text or "consumer lag" in text, (
        "pipeline panel shows neither status nor reason"
    )
    time.sleep(0.5)  # let plotly finish painting before the picture
    browser.screenshot(ARTIFACTS / "dashboard.png")

    # selecting another symbol redraws the chart with that symbol's stored bars
    _select(browser, "Symbol", SYMBOL_B)
    stored_b = _db_bars(settings, SYMBOL_B, "1m")
    assert len(stored_b) == 170
    _assert_same_bars(_drawn_bars(browser, SYMBOL_B, "1m"), stored_b)
    assert f"symbol={SYMBOL_B}" in browser.evaluate("location.search"), "selection is not in the URL"

    # ... and so does another interval
    _select(browser, "Interval", "5m")
    stored_b5 = _db_bars(settings, SYMBOL_B, "5m")
    _assert_same_bars(_drawn_bars(browser, SYMBOL_B, "5m"), stored_b5)

    # a bar that lands in the warehouse shows up by auto-refresh, with no interaction
    last = stored_b5[-1][0].replace(tzinfo=dt.UTC)
    warehouse.load(minute_trades(SYMBOL_B, 1, last + dt.timedelta(minutes=5), 36.0, seed=22))
    grown = _db_bars(settings, SYMBOL_B, "5m")
    assert len(grown) == len(stored_b5) + 1
    stored_b5 = grown
    _assert_same_bars(_drawn_bars(browser, SYMBOL_B, "5m", count=len(stored_b5)), stored_b5)

    browser.screenshot(ARTIFACTS / "dashboard-after-switch.png")
