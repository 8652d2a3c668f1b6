"""The hot path (transform.hot, run by the ingest DAG's drain loop): a trade drained is in
marts.fct_bars after one `HotTransform.run()`, the warm run reuses the manifest, and a build
that holds the lock (`tickhouse transform`, or transform_marts' build while it writes a hot
model) makes the hot run wait, not fail; transform_marts' build waits for a hot run only in the
hot models' own transactions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.integration.dbt.conftest import Feed, Transformer, fetch, own_feed, own_warehouse
from tests.integration.dbt.parsed_project import manifest_for
from tickhouse.config import Settings
from transform.dbt_runner import failure_summary, one_build_at_a_time, run_dbt
from transform.hot import HOT_MODELS, HotTransform, build_lock_environment

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


def _counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the project parses of this process's dbt invocations from now on (dbt parses when
    an invocation is given no manifest)."""
    import dbt.cli.requires

    calls: list[int] = []
    parse = dbt.cli.requires.parse_manifest

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return parse(*args, **kwargs)

    monkeypatch.setattr(dbt.cli.requires, "parse_manifest", counted)
    return calls


def test_hot_run_makes_drained_trades_visible_and_waits_for_the_build_lock(
    warehouse: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with own_feed(warehouse, kinds=("trades",)) as feed:
        _publish(feed, "HOTA", 0, 3)
        feed.drain()
        Transformer(warehouse, tmp_path / "full")()  # the full build creates every model
        hot = HotTransform(warehouse, target_path=tmp_path / "hot", manifest=manifest_for(warehouse))
        parses = _counting_parses(monkeypatch)

        _publish(feed, "HOTA", 1, 4)
        _publish(feed, "HOTA", 0, 2)  # a late trade of a minute already built
        feed.drain()
        hot.run()
        assert _bars(warehouse, "HOTA") == {BASE: (5, Decimal(10)), BASE + MINUTE: (4, Decimal(8))}
        pending = fetch(warehouse, "select count(*) as n from intermediate.int_raw_loads_pending")
        _publish(feed, "HOTA", 2, 1)
        feed.drain()
        hot.run()
        assert _bars(warehouse, "HOTA")[BASE + 2 * MINUTE] == (1, Decimal(2))
        assert parses == [], "a hot run parsed the project again instead of reusing its manifest"
        # the full build that follows finds no load left to rebuild from, and changes nothing
        Transformer(warehouse, tmp_path / "full")()
        assert len(_bars(warehouse, "HOTA")) == 3 and pending[0]["n"] >= 1

        # another build holds the lock (`tickhouse transform`, or transform_marts' build in a hot
        # model's transaction): the hot run waits
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
        with one_build_at_a_time(warehouse):
            worker.start()
            assert not done.wait(3), f"the hot run did not wait for the lock: {errors}"
            assert BASE + 3 * MINUTE not in _bars(warehouse, "HOTA")
        assert done.wait(120) and not errors, errors
        worker.join()
        assert _bars(warehouse, "HOTA")[BASE + 3 * MINUTE] == (6, Decimal(12))


# the sessions of `database` waiting for an advisory lock, with their statement (dbt's query
# comment names the node that runs it)
WAITING_FOR_ADVISORY_LOCK = """
    select a.query from pg_locks as l join pg_stat_activity as a on a.pid = l.pid
    where l.locktype = 'advisory' and not l.granted and a.datname = %s
"""
VIEW_VERSION = """
    select r.xmin::text as version from pg_rewrite as r
    where r.ev_class = to_regclass('staging.stg_tickhouse__trades')
"""


def test_the_dag_build_waits_for_a_hot_run_only_in_the_hot_models(
    warehouse: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transform_marts' `dbt build` (with `build_lock_environment`) takes the build lock in each hot
    model's own transaction: while a hot run holds it, the build builds and tests what comes
    before (the staging views), waits at a hot model, and finishes once the lock is free."""
    with own_feed(warehouse, kinds=("trades",)) as feed:
        _publish(feed, "HOTB", 0, 3)
        feed.drain()
        Transformer(warehouse, tmp_path / "full")()  # every model exists
        _publish(feed, "HOTB", 1, 2)
        feed.drain()
        view_before = fetch(warehouse, VIEW_VERSION)
        results: list[object] = []
        for name, value in build_lock_environment().items():  # what the DAG's task gives dbt
            monkeypatch.setenv(name, value)

        def dag_build() -> None:
            results.append(run_dbt(["build", "--target-path", str(tmp_path / "dag")], warehouse,
                                   manifest=manifest_for(warehouse)))

        worker = threading.Thread(target=dag_build)
        with one_build_at_a_time(warehouse):  # what a hot run holds for its whole run
            worker.start()
            waiting: list[str] = []
            deadline = time.monotonic() + 300
            while not waiting and worker.is_alive() and time.monotonic() < deadline:
                time.sleep(0.5)
                waiting = [row["query"] for row in fetch(warehouse, WAITING_FOR_ADVISORY_LOCK,
                                                         (warehouse.postgres_db,))]
            assert waiting, f"the build did not wait for the lock: {results}"
            assert worker.is_alive()
            # only hot models wait, each in its pre-hook
            for query in waiting:
                assert "pg_advisory_xact_lock" in query, query
                assert any(f'"node_id": "model.tickhouse.{name}"' in query for name in HOT_MODELS), query
            # it waits as long as the hot run takes, not the lock_timeout for BI queries' locks
            time.sleep(warehouse.dbt_lock_timeout_seconds + 1)
            assert worker.is_alive() and fetch(warehouse, WAITING_FOR_ADVISORY_LOCK, (warehouse.postgres_db,))
            # what writes no hot table did not wait: the staging view was rebuilt meanwhile
            assert fetch(warehouse, VIEW_VERSION) != view_before
            assert BASE + MINUTE not in _bars(warehouse, "HOTB")
        worker.join(600)
        assert results, "the build did not end"
        result = results[0]
        assert getattr(result, "success", False), failure_summary(result)
        assert _bars(warehouse, "HOTB")[BASE + MINUTE] == (2, Decimal(4))
        # the lock went with each model's transaction: a hot run takes it at once
        started = time.monotonic()
        with one_build_at_a_time(warehouse):
            assert time.monotonic() - started < 5


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


def test_a_hot_run_between_the_dag_builds_hot_models_counts_each_trade_once(
    warehouse: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transform_marts' build takes the build lock model by model, so a hot run can come between
    two of its hot models: after the build's int_raw_loads_pending read a load as pending, the hot
    run merges that load into the minute bars and records it. The build's minute bars, which run
    next, must not merge it again (they rebuild the touched minutes from raw): every trade counts
    once in the bars."""
    with own_feed(warehouse, kinds=("trades",)) as feed:
        _publish(feed, "HOTR", 0, 3)
        feed.drain()
        Transformer(warehouse, tmp_path / "full")()  # every model exists, that load recorded
        hot = HotTransform(warehouse, target_path=tmp_path / "hot", manifest=manifest_for(warehouse))
        _publish(feed, "HOTR", 1, 2)
        feed.drain()

        def dag_build(*args: str) -> None:
            with monkeypatch.context() as env:
                for name, value in build_lock_environment().items():  # what the DAG's task gives dbt
                    env.setenv(name, value)
                result = run_dbt([*args, "--target-path", str(tmp_path / "dag")], warehouse,
                                 manifest=manifest_for(warehouse))
            assert getattr(result, "success", False), failure_summary(result)

        dag_build("run", "--select", "int_raw_loads_pending")  # the build reads the load as pending
        hot.run()  # the hot run slips in: it merges the load and records it
        assert _bars(warehouse, "HOTR") == {BASE: (3, Decimal(6)), BASE + MINUTE: (2, Decimal(4))}
        dag_build("build", "--exclude", "int_raw_loads_pending")  # the build goes on from its next model
        assert _bars(warehouse, "HOTR") == {BASE: (3, Decimal(6)), BASE + MINUTE: (2, Decimal(4))}
