"""The incremental models' change set is data: drain loads, joined as tables.

- A run touching 100,000 (symbol, minute) ranges (50,000 new symbols, two minutes each, in one
  drain load) builds, and the marts hold exactly those bars. The old design compiled one
  `union all` branch per symbol into the SQL and failed with "stack depth limit exceeded".
- Ten years of daily history for one symbol (2,608 weekday trades, which used to make 2,613 day
  partitions and "out of shared memory" in every transform after) builds, and the marts hold them.
- A run that fails leaves its loads pending: the next run rebuilds from them, and until then
  `tickhouse status`, the metrics exporter (and the dashboard, from the same view) say which
  symbols the marts are behind raw for.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from exporter.collector import PipelineCollector
from exporter.pipeline import SymbolCoverage, marts_coverage
from ops.cli import _print_marts_coverage
from tests.integration.dbt.conftest import Feed, Transformer, fetch, own_feed, own_warehouse
from tests.integration.dbt.raw_rows import ms
from tickhouse.config import Settings
from transform.dbt_runner import TransformError

pytestmark = pytest.mark.integration

SYMBOLS = 50_000


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Feed, Transformer]]:
    with own_warehouse("dbt_changes") as settings, own_feed(settings) as feed:
        yield settings, feed, Transformer(settings, tmp_path_factory.mktemp("dbt-target"))


def _xnys_sessions_before(day: date, count: int) -> list[datetime]:
    """15:00 UTC of the last `count` XNYS sessions before `day` (exchange_calendars)."""
    import exchange_calendars

    calendar = exchange_calendars.get_calendar("XNYS", start="2005-01-01", end="2035-12-31")
    labels = [label.date() for label in calendar.sessions if label.date() < day][-count:]
    return [datetime.combine(label, time(15), tzinfo=UTC) for label in labels]


def _count(settings: Settings, query: str) -> int:
    return int(fetch(settings, query)[0]["n"])


def test_a_run_touching_100000_minute_ranges_builds_exactly_their_bars(
    warehouse: tuple[Settings, Feed, Transformer],
) -> None:
    settings, feed, transform = warehouse
    # the 401 most recent XNYS sessions before today, at 15:00 UTC (10:00 or 11:00 in New York)
    sessions = _xnys_sessions_before(datetime.now(UTC).date(), 401)
    start = sessions[-1]
    # an existing history, so that the big run is an incremental one
    feed.publish_trades(
        ("SEED", Decimal("10.00") + minute, Decimal(5), ms(start + timedelta(minutes=minute)))
        for minute in range(30)
    )
    feed.drain()
    transform()

    trades = []
    for number in range(SYMBOLS):
        symbol = f"N{number:05d}"
        # two minutes per symbol, in two sessions: 100,000 separate ranges to rebuild
        trades.append((symbol, Decimal("20.50"), Decimal(100), ms(sessions[number % 400])))
        trades.append(
            (symbol, Decimal("21.25"), Decimal(300), ms(start + timedelta(minutes=40, seconds=number % 60)))
        )
    feed.publish_trades(trades)
    loads = feed.drain()
    assert sum(s.loaded for r in loads for s in r.topics) == 2 * SYMBOLS
    seconds = transform()
    print(f"incremental build over {2 * SYMBOLS:,} new minute ranges: {seconds:.1f} s")

    assert (
        _count(settings, "select count(*) as n from intermediate.int_trades_minutes_to_rebuild")
        == 2 * SYMBOLS
    )
    per_interval = {
        row["bar_interval"]: row["n"]
        for row in fetch(
            settings,
            "select bar_interval, count(*) as n from marts.fct_bars where symbol like 'N%' group by 1",
        )
    }
    assert per_interval == {
        "1m": 2 * SYMBOLS,
        "5m": 2 * SYMBOLS,
        "15m": 2 * SYMBOLS,
        "1h": 2 * SYMBOLS,
        "1d": 2 * SYMBOLS,
    }
    sample = fetch(
        settings,
        "select bar_interval, open, volume, trade_count, vwap from marts.fct_bars"
        " where symbol = 'N12345' order by bar_interval, bar_start",
    )
    assert [(r["open"], r["volume"], r["trade_count"]) for r in sample if r["bar_interval"] == "1m"] == [
        (Decimal("20.50"), Decimal(100), 1),
        (Decimal("21.25"), Decimal(300), 1),
    ]
    assert (
        _count(settings, "select count(*) as n from marts.fct_technicals where symbol like 'N%'")
        == 10 * SYMBOLS
    )
    # the untouched symbol's bars were not rewritten
    assert (
        _count(
            settings,
            "select count(distinct updated_at) as n from intermediate.int_bars where symbol = 'SEED'",
        )
        == 1
    )


@dataclass
class Coverage:
    symbols: list[SymbolCoverage]
    symbols_behind: int
    rows_pending: int
    exported: str  # the Prometheus exposition of `tickhouse metrics`
    printed: str  # the per-symbol table of `tickhouse status`


def _coverage_as_users_see_it(settings: Settings) -> Coverage:
    coverage = marts_coverage(settings, limit=100)
    assert coverage is not None
    registry = CollectorRegistry()
    registry.register(PipelineCollector(settings, max_symbols=100))
    console = Console(record=True, width=200)
    _print_marts_coverage(console, settings, limit=100)
    return Coverage(
        coverage.symbols,
        coverage.symbols_behind,
        coverage.rows_pending,
        generate_latest(registry).decode(),
        console.export_text(),
    )


def test_a_failed_run_leaves_its_loads_pending_for_the_next_run(
    warehouse: tuple[Settings, Feed, Transformer],
) -> None:
    settings, feed, transform = warehouse
    transform()  # the marts exist and are up to date
    moment = _xnys_sessions_before(datetime.now(UTC).date(), 1)[0] + timedelta(minutes=5)
    feed.publish_trades([("PEND", Decimal("7.77"), Decimal(1), ms(moment))])
    feed.drain()
    # dbt cannot read raw.trades for one run: the first model that reads it fails
    with psycopg.connect(settings.conninfo("owner"), autocommit=True) as conn:
        conn.execute(f"revoke select on raw.trades from {settings.dbt_user}")
    try:
        with pytest.raises(TransformError):
            transform()
    finally:
        with psycopg.connect(settings.conninfo("owner"), autocommit=True) as conn:
            conn.execute(f"grant select on raw.trades to {settings.dbt_user}")
    assert not fetch(settings, "select * from marts.fct_bars where symbol = 'PEND'")
    # status, dashboard and exporter say the marts are behind raw for PEND, and by how much
    behind = _coverage_as_users_see_it(settings)
    assert behind.symbols_behind == 1 and behind.rows_pending == 1
    assert behind.symbols[0].symbol == "PEND" and behind.symbols[0].oldest_pending_event_time == moment
    assert "tickhouse_marts_symbols_behind_raw 1.0" in behind.exported
    assert "PEND" in behind.printed and "1 behind raw" in behind.printed
    transform()
    caught_up = _coverage_as_users_see_it(settings)
    assert caught_up.symbols_behind == 0 and caught_up.rows_pending == 0
    assert "tickhouse_marts_symbols_behind_raw 0.0" in caught_up.exported
    pend = fetch(settings, "select * from marts.pipeline_symbols where symbol = 'PEND'")[0]
    # its newest bar is the minute of its trade; its oldest, the daily bar of that day
    assert pend["last_bar_start"] == moment and not pend["is_behind_raw"]
    assert moment - timedelta(days=1) < pend["first_bar_start"] <= moment
    # per-symbol series for at most max_symbols (100 here) of the symbols, whatever their number
    series = caught_up.exported.count("tickhouse_symbol_last_bar_timestamp_seconds{symbol=")
    assert 0 < series <= 100
    bars = fetch(settings, "select bar_interval, close from marts.fct_bars where symbol = 'PEND'")
    assert sorted(r["bar_interval"] for r in bars) == ["15m", "1d", "1h", "1m", "5m"]
    assert {r["close"] for r in bars} == {Decimal("7.77")}
    # and the load is recorded as transformed: the run after this one has nothing to do
    transformed = fetch(
        settings,
        "select count(*) as n from intermediate.int_raw_loads_transformed t"
        " join raw.load_stats s using (run_id, topic) where s.min_event_time = %s",
        (moment,),
    )
    assert transformed[0]["n"] == 1


def test_ten_years_of_daily_history_build_and_every_transform_after_them_too(
    warehouse: tuple[Settings, Feed, Transformer],
) -> None:
    settings, feed, transform = warehouse
    # 2,608 sessions (more than ten years) up to May 2022, one trade each in the regular session
    weekdays = _xnys_sessions_before(date(2022, 5, 6), 2608)
    assert (weekdays[-1] - weekdays[0]).days > 3650
    feed.publish_trades(
        ("TENY", Decimal("50.00") + Decimal(n) / 100, Decimal(10), ms(day)) for n, day in enumerate(weekdays)
    )
    feed.drain()
    transform()
    transform()  # and the next one, which used to fail for everyone
    daily = fetch(
        settings,
        "select count(*) as n, max(close) as high from marts.fct_bars"
        " where symbol = 'TENY' and bar_interval = '1d'",
    )
    assert daily[0]["n"] == 2608 and daily[0]["high"] == Decimal("50.00") + Decimal(2607) / 100
    partitions = _count(
        settings, "select count(*) as n from pg_inherits where inhparent = 'raw.trades'::regclass"
    )
    assert partitions < 40, partitions
    sma = fetch(
        settings,
        "select sma_200 from marts.fct_technicals where symbol = 'TENY'"
        " and bar_interval = '1d' order by bar_start desc limit 1",
    )
    assert sma[0]["sma_200"] is not None
