"""BI reads while the pipeline builds: queries as `bi_reader` on every mart never fail during
drain loads, hot runs, full builds, seeds and full refreshes (no relation under `marts` is ever
dropped), and a build that needs a lock a long BI transaction holds waits at most
DBT_LOCK_TIMEOUT_SECONDS, then runs again and succeeds once the reader is done.

The builds here leave out the data tests (they only read, and they are most of a build's time),
and every dbt invocation starts from the project parsed once (`manifest_for`)."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.dbt.conftest import Transformer, fetch, own_warehouse
from tests.integration.dbt.parsed_project import manifest_for
from tickhouse.config import Settings
from tickhouse.warehouse import connect
from transform.dbt_runner import failure_summary, run_dbt
from transform.hot import HotTransform

pytestmark = pytest.mark.integration

MINUTE_MS = 60_000
DAY_MS = 86_400_000
START_MS = 1_764_000_000_000 // DAY_MS * DAY_MS + 15 * 3_600_000  # a weekday, 15:00 UTC (in session)

# what a dashboard asks: the latest bar per interval, an SMA overlay, top movers, recent alerts,
# the symbol list, the pipeline's state
BI_QUERIES = (
    "select distinct on (bar_interval) bar_interval, bar_start, close from marts.fct_bars"
    " where symbol = 'BIA' order by bar_interval, bar_start desc",
    "select bar_start, close from marts.fct_bars_5m where symbol = 'BIA' order by bar_start desc limit 5",
    "select bars.bar_start, bars.close, technicals.sma_20 from marts.fct_bars_1m as bars"
    " join marts.fct_technicals as technicals on technicals.symbol = bars.symbol"
    " and technicals.bar_interval = '1m' and technicals.bar_start = bars.bar_start"
    " where bars.symbol = 'BIA' order by bars.bar_start desc limit 50",
    "select symbol, trading_date, daily_change_pct from marts.stock_analytics"
    " where daily_change_pct is not null order by abs(daily_change_pct) desc limit 10",
    "select alert_id, symbol, rule from marts.fct_alerts order by detected_ts desc limit 20",
    "select symbol, company_name, calendar from marts.dim_symbols order by symbol",
    "select * from marts.pipeline_status",
    "select * from marts.pipeline_symbols",
)


# `dbt build` of the models and seeds (the seeds reloaded under the views that read them)
MODELS_AND_SEEDS = ("--exclude-resource-type", "test", "unit_test")


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Settings]:
    with own_warehouse("bireads") as settings:
        yield settings


@pytest.fixture(scope="module")
def dbt_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One target directory for the module's dbt invocations."""
    return tmp_path_factory.mktemp("dbt_target")


def load_trades(settings: Settings, symbol: str, first_ms: int, minutes: int, days: int = 1) -> None:
    """One drain load: trades of `symbol` (two a minute) and its raw.load_stats row, in one
    transaction, as the drain writes them (the incremental models find the load by it)."""
    with connect(settings, "owner") as conn:
        conn.execute(
            "select raw.ensure_partitions('raw.trades',"
            " to_timestamp(%s / 1000.0), to_timestamp(%s / 1000.0))",
            (first_ms, first_ms + days * DAY_MS),
        )
        offset = conn.execute("select coalesce(max(kafka_offset), 0) + 1 from raw.trades").fetchone()
        assert offset is not None
        conn.execute(
            """
            insert into raw.trades (symbol, price, volume, ts, event_time, conditions, source,
                                    kafka_topic, kafka_partition, kafka_offset, kafka_timestamp)
            select %(symbol)s, round((100 + d * 3 + sin(m + k) * 2)::numeric, 2), 10, ts,
                   timestamp with time zone 'epoch' + ts * interval '1 millisecond', null, 'test',
                   'test.bi.trades', 0, %(offset)s + (d * %(minutes)s + m) * 2 + k,
                   timestamp with time zone 'epoch' + ts * interval '1 millisecond'
            from generate_series(0, %(days)s - 1) as d, generate_series(0, %(minutes)s - 1) as m,
                 generate_series(0, 1) as k,
                 lateral (select %(first)s::bigint + d * %(day)s::bigint + m * %(minute)s + k as ts) as t
            """,
            {"symbol": symbol, "first": first_ms, "minutes": minutes, "days": days, "offset": offset[0],
             "day": DAY_MS, "minute": MINUTE_MS},
        )
        conn.execute(
            """
            insert into raw.load_stats (run_id, consumer_group, topic, target_table, started_at,
                                        finished_at, duration_ms, consumed, loaded, quarantined,
                                        lag_after, min_event_time, max_event_time, partitions)
            select md5(random()::text), 'test', 'test.bi.trades', 'raw.trades', now(), now(), 0,
                   count(*), count(*), 0, 0, min(event_time), max(event_time), '{}'::jsonb
            from raw.trades where loaded_at = now()
            """
        )


class BiReader:
    """BI_QUERIES as bi_reader in a loop on a thread of its own, recording every error."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.queries = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> BiReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self.settings, "bi_reader", autocommit=True) as conn:
                    while not self._stop.is_set():
                        for query in BI_QUERIES:
                            try:
                                conn.execute(query).fetchall()
                            except psycopg.Error as error:
                                self.errors.append(f"{query[:60]}...: {error}".strip())
                            self.queries += 1
                        # a busy dashboard, not a benchmark: the builds (dbt runs in this
                        # process) keep the CPU and the interpreter most of the time
                        time.sleep(0.05)
            except psycopg.OperationalError as error:
                self.errors.append(f"connection: {error}")


def test_bi_queries_never_fail_during_drains_hot_runs_full_builds_seeds_and_full_refreshes(
    warehouse: Settings, dbt_target: Path
) -> None:
    load_trades(warehouse, "BIA", START_MS - 3 * DAY_MS, minutes=30, days=3)
    transform = Transformer(warehouse, dbt_target)
    transform(*MODELS_AND_SEEDS)  # the first build creates every relation the readers query
    hot = HotTransform(warehouse, target_path=dbt_target, manifest=manifest_for(warehouse))
    hot.warm_up()

    with BiReader(warehouse) as reader:
        load_trades(warehouse, "BIA", START_MS, minutes=5)
        hot.run()
        load_trades(warehouse, "BIB", START_MS, minutes=5)
        transform(*MODELS_AND_SEEDS)  # views replaced, table models rebuilt, the seed reloaded
        load_trades(warehouse, "BIA", START_MS + 5 * MINUTE_MS, minutes=3)
        # every incremental model rebuilt, the seed reloaded as `dbt seed --full-refresh` does
        transform("--full-refresh", *MODELS_AND_SEEDS)
        queries_during_builds = reader.queries

    failed = f"{len(reader.errors)} of {reader.queries} BI queries failed: {reader.errors[:5]}"
    assert reader.errors == [], failed
    assert queries_during_builds > 100, queries_during_builds
    # what the builds wrote is what the readers see: every minute of every load, both symbols
    bars = fetch(
        warehouse, "select symbol, count(*) as n from marts.fct_bars_1m group by symbol order by symbol"
    )
    assert [(row["symbol"], row["n"]) for row in bars] == [("BIA", 3 * 30 + 5 + 3), ("BIB", 5)]
    symbols = {row["symbol"] for row in fetch(warehouse, "select symbol from marts.dim_symbols")}
    assert {"BIA", "BIB"} <= symbols


def test_a_build_behind_a_long_bi_transaction_waits_at_most_the_lock_timeout_then_retries(
    warehouse: Settings, dbt_target: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(warehouse, dbt_lock_timeout_seconds=1.5, dbt_lock_retries=5)
    transform = Transformer(settings, dbt_target)
    if not fetch(settings, "select 1 from pg_views where schemaname = 'marts' and viewname = 'dim_symbols'"):
        transform(*MODELS_AND_SEEDS)  # the module's first test did not run: create the marts
    load_trades(settings, "BIC", START_MS, minutes=4)

    retried = threading.Event()

    class RetryWatcher(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "running it again" in record.getMessage():
                retried.set()

    watcher = RetryWatcher()
    logging.getLogger("transform.dbt_runner").addHandler(watcher)
    caplog.set_level(logging.WARNING, logger="transform.dbt_runner")
    errors: list[BaseException] = []
    built = threading.Event()

    def build() -> None:
        try:
            # dim_symbols and what it reads (the bars among them): the view the reader holds
            transform("--select", "+dim_symbols", *MODELS_AND_SEEDS)
        except BaseException as error:  # pragma: no cover - reported by the assert below
            errors.append(error)
        finally:
            built.set()

    worker = threading.Thread(target=build)
    try:
        # a BI transaction that read dim_symbols and keeps its lock (a long dashboard query)
        with connect(settings, "bi_reader") as bi:
            bi.execute("select * from marts.dim_symbols").fetchall()
            worker.start()
            # the build replaces dim_symbols: it gives up after the lock timeout and runs again
            assert retried.wait(120), "the build did not time out on the reader's lock"
            assert not built.is_set()
            bi.commit()
            released = time.monotonic()
        assert built.wait(120)
        worker.join()
    finally:
        logging.getLogger("transform.dbt_runner").removeHandler(watcher)
    assert not errors, errors
    # the retry that follows the reader's commit runs the build through (about one build's time)
    assert time.monotonic() - released < 60
    timeouts = [r for r in caplog.records if "running it again" in r.getMessage()]
    assert 1 <= len(timeouts) <= settings.dbt_lock_retries
    assert all("lock timeout" in r.getMessage() for r in timeouts)
    rows = fetch(settings, "select count(*) as n from marts.fct_bars_1m where symbol = 'BIC'")
    assert rows[0]["n"] == 4
    assert "BIC" in {row["symbol"] for row in fetch(settings, "select symbol from marts.dim_symbols")}


def test_views_over_a_mart_survive_its_rebuild_and_an_incompatible_change_fails_naming_them(
    warehouse: Settings, dbt_target: Path
) -> None:
    def run_fct_alerts() -> Any:
        return run_dbt(["run", "--select", "fct_alerts", "--target-path", str(dbt_target)], warehouse,
                       manifest=manifest_for(warehouse))

    if not fetch(warehouse, "select 1 from pg_views where schemaname = 'marts' and viewname = 'fct_alerts'"):
        Transformer(warehouse, dbt_target)(*MODELS_AND_SEEDS)  # the module's first test did not run
    with connect(warehouse, "dbt", autocommit=True) as conn:
        # a user's own view over a mart (a BI tool's saved query)
        conn.execute("create view marts.recent_alert_ids as select alert_id from marts.fct_alerts")
        try:
            assert run_fct_alerts().success
            survivor = conn.execute("select to_regclass('marts.recent_alert_ids') is not null").fetchone()
            assert survivor == (True,)

            # the view as an older project version left it: alert_id of another type, which
            # `create or replace view` cannot change while recent_alert_ids reads it
            definition = conn.execute("select pg_get_viewdef('marts.fct_alerts'::regclass)").fetchone()
            assert definition is not None
            conn.execute("drop view marts.fct_alerts cascade")
            conn.execute(
                "create view marts.fct_alerts as select alert_id::varchar(200) as alert_id"
                f" from ({definition[0].rstrip(';')}) as current_definition"
            )
            conn.execute("create view marts.recent_alert_ids as select alert_id from marts.fct_alerts")
            result = run_fct_alerts()
            assert not result.success
            message = failure_summary(result)
            assert "marts.recent_alert_ids" in message and "alert_id" in message, message
            # nothing was dropped
            assert conn.execute("select count(*) from marts.recent_alert_ids").fetchone() is not None
        finally:
            conn.execute("drop view if exists marts.recent_alert_ids")
            assert run_fct_alerts().success
