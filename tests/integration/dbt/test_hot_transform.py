"""The hot path (transform.hot, run by the ingest DAG's drain loop): a trade drained is in
marts.fct_bars after one `HotTransform.run()`, the warm run reuses the manifest, and a build
that holds the lock (`tickhouse transform`, or a transform_marts task through its
`hold_build_lock` hook) makes the hot run wait, not fail."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.dbt.conftest import Feed, Transformer, fetch, own_feed, own_warehouse
from tickhouse.config import Settings
from transform.dbt_runner import hold_build_lock, release_build_lock
from transform.hot import HotTransform

pytestmark = pytest.mark.integration

MINUTE = 60_000
BASE = 1_764_000_000_000 // MINUTE * MINUTE  # 2025-11-24 16:00 UTC


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Settings]:
    with own_warehouse("hot") as settings:
        yield settings


def _bars(settings: Settings, symbol: str) -> dict[int, tuple[int, Decimal]]:
    rows = fetch(settings, "select bar_start, trade_count, volume from marts.fct_bars"
                 " where symbol = %s and bar_interval = '1m'", (symbol,))
    return {int(r["bar_start"].timestamp() * 1000): (r["trade_count"], r["volume"]) for r in rows}


def _publish(feed: Feed, symbol: str, minute: int, count: int) -> None:
    feed.publish_trades((symbol, Decimal("10.5"), Decimal(2), BASE + minute * MINUTE + i)
                        for i in range(count))


def test_hot_run_makes_drained_trades_visible_and_waits_for_the_build_lock(
    warehouse: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with own_feed(warehouse, kinds=("trades",)) as feed:
        _publish(feed, "HOTA", 0, 3)
        feed.drain()
        Transformer(warehouse, tmp_path / "full")()  # the full build creates every model
        hot = HotTransform(warehouse, target_path=tmp_path / "hot")

        _publish(feed, "HOTA", 1, 4)
        _publish(feed, "HOTA", 0, 2)  # a late trade of a minute already built
        feed.drain()
        cold = hot.run()
        assert _bars(warehouse, "HOTA") == {BASE: (5, Decimal(10)), BASE + MINUTE: (4, Decimal(8))}
        pending = fetch(warehouse, "select count(*) as n from intermediate.int_raw_loads_pending")
        _publish(feed, "HOTA", 2, 1)
        feed.drain()
        warm = hot.run()
        assert _bars(warehouse, "HOTA")[BASE + 2 * MINUTE] == (1, Decimal(2))
        # the full build that follows finds no load left to rebuild from, and changes nothing
        Transformer(warehouse, tmp_path / "full")()
        assert len(_bars(warehouse, "HOTA")) == 3 and pending[0]["n"] >= 1
        assert warm < cold * 1.5, (warm, cold)  # not parsed again (timing noise allowed)

        # a transform_marts task holds the lock (its pre_execute hook): the hot run waits
        monkeypatch.setenv("POSTGRES_DB", warehouse.postgres_db)
        hold_build_lock()
        _publish(feed, "HOTA", 3, 6)
        feed.drain()
        done = threading.Event()
        errors: list[BaseException] = []

        def hot_run() -> None:
            try:
                hot.run()
            except BaseException as err:  # pragma: no cover - reported by the assert below
                errors.append(err)
            finally:
                done.set()

        worker = threading.Thread(target=hot_run)
        try:
            worker.start()
            assert not done.wait(3), f"the hot run did not wait for the lock: {errors}"
            assert BASE + 3 * MINUTE not in _bars(warehouse, "HOTA")
        finally:
            release_build_lock(None, None)  # the post_execute hook
        assert done.wait(120) and not errors, errors
        worker.join()
        assert _bars(warehouse, "HOTA")[BASE + 3 * MINUTE] == (6, Decimal(12))


def test_the_first_hot_run_on_a_warehouse_never_built_creates_what_it_reads_and_the_marts(
    tmp_path: Path,
) -> None:
    """A new stack whose DAGs were just switched on: no full build has run yet, so the staging
    views, the calendars, the symbol seed and the views of the marts do not exist. The hot run
    builds them (once per process) and the first trades show in marts.fct_bars at once."""
    with own_warehouse("hotnew") as settings, own_feed(settings, kinds=("trades",)) as feed:
        _publish(feed, "HOTN", 0, 3)
        feed.drain()
        hot = HotTransform(settings, target_path=tmp_path / "hot")
        hot.run()
        assert _bars(settings, "HOTN") == {BASE: (3, Decimal(6))}
        # one indicator row per bar of every interval, on the bar's (split-adjusted) close
        technicals = fetch(
            settings,
            "select bar_interval, bar_start, close from marts.fct_technicals where symbol = %s"
            " order by 1, 2",
            ("HOTN",),
        )
        bars = fetch(
            settings,
            "select bar_interval, bar_start, adj_close as close from marts.fct_bars where symbol = %s"
            " order by 1, 2",
            ("HOTN",),
        )
        assert technicals == bars and any(row["bar_interval"] == "1m" for row in bars)

        _publish(feed, "HOTN", 1, 1)
        feed.drain()
        hot.run()  # the usual hot run from here on
        assert _bars(settings, "HOTN")[BASE + MINUTE] == (1, Decimal(2))
