"""The dbt project's `snowflake` target, run by dbt-snowflake in-process against fakesnow.

`fakesnow.patch()` replaces `snowflake.connector.connect`, which dbt-snowflake calls, so
`dbtRunner` builds the real project with `--target snowflake`: the adapter.dispatch
`snowflake__*` macros, dbt-snowflake's own materializations (views, tables, delete+insert
incrementals, seeds) and the data tests. Raw rows come from the drain's own Snowflake loader.

What fakesnow 0.12.1 cannot execute, and is therefore switched off or stood in for here (and
nowhere else):
- the on-run-start hook's `create or replace function ... language javascript` (the indicator
  table function): fakesnow has no JavaScript UDFs, so the statement is a no-op (nop_regexes);
- the call of that function in int_technicals, `table(ta_indicators(...) over (partition by
  ...))`, a partitioned table-function call DuckDB cannot parse: this one call is replaced by
  a SQL stand-in (UDTF_STAND_IN). The stand-in numbers each series' bars on from the
  `seed_state` the model hands it, as the function does, and gives every indicator a
  placeholder from the bar where TA-Lib has its first value on (NULL before): what the model's
  SQL around the call does with it is real (the rows to recompute and their seed state,
  the lags and Bollinger deviation, the delete+insert incremental, fct_technicals' join with
  the split-adjusted bars, the data tests), the indicator numbers are not. The function body
  itself is checked against TA-Lib under Node.js (tests/unit/snowflake/test_technicals_udtf.py);
- `grant` / `revoke` / `show grants` (the marts' `+grants` for bi_reader): not implemented;
  no-ops here (and `show grants` answers "none");
- a TEMPORARY table with a database and schema (dbt-snowflake's `<model>__dbt_tmp` of
  incremental runs): DuckDB keeps temporary tables in its own catalog; created as a regular
  table here.
Bars are compared with the pandas oracle the PostgreSQL mart tests use (tests/integration/dbt),
so both warehouses are held to the same numbers.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from drain.batches import Item, parse_batch
from drain.targets.snowflake.staging_rows import ENCODING
from tests.integration.dbt.oracles import pandas_bars
from tests.integration.dbt.raw_rows import OffsetCounter, RawTrade, random_walk_trades, with_coordinates
from tickhouse.config import load_settings

pytestmark = pytest.mark.integration

# The partitioned call of the JavaScript indicator function, as snowflake__fold_technicals
# compiles it ...
UDTF_CALL = re.compile(
    r"select folded_rows\.\*\s+from (?P<rows>\w+) as input_rows,\s+table\([\w.]+\.ta_indicators\("
    r".*?\)\s+over\s+\(.*?\)\) as folded_rows",
    re.IGNORECASE | re.DOTALL,
)
# ... and its SQL stand-in: bar_number and ta_state (here only the bar number) continue from the
# seed state like the function's; each indicator is a placeholder (the close, 0 for the MACD
# lines, 50 for RSI) from the bar where TA-Lib gives its first value, NULL before it.
BAR_NUMBER = (
    "coalesce(cast(input_rows.seed_state[0] as number), 0) + row_number() over"
    " (partition by input_rows.symbol, input_rows.bar_interval order by input_rows.bar_start)"
)
UDTF_STAND_IN = (
    "select input_rows.symbol, input_rows.bar_interval, input_rows.bar_start,"
    f" {BAR_NUMBER} as bar_number, array_construct({BAR_NUMBER}) as ta_state,"
    + ", ".join(
        f"case when {BAR_NUMBER} >= {first} then cast({value} as double) end as {name}"
        for name, first, value in (
            ("sma_20", 20, "input_rows.close"), ("sma_50", 50, "input_rows.close"),
            ("sma_200", 200, "input_rows.close"), ("ema_12", 12, "input_rows.close"),
            ("ema_26", 26, "input_rows.close"), ("macd", 34, "0"), ("macd_signal", 34, "0"),
            ("macd_hist", 34, "0"), ("rsi_14", 15, "50"),
        )
    )
    + " from {rows} as input_rows"
)
NOP_REGEXES = [
    r"create or replace function .*ta_indicators",
    r"\s*grant ",
    r"\s*revoke ",
]
# ... and `show grants on`, which dbt reads after a model is rebuilt, answers "no grants"
SHOW_GRANTS = re.compile(r"^\s*show grants on [\w.]+", re.IGNORECASE)
NO_GRANTS = (
    "select null as privilege, null as granted_to, null as grantee_name"
    " from (select 1) where false"
)
# dbt-snowflake stages an incremental run's rows in `create or replace temporary table
# DB.SCHEMA.<model>__dbt_tmp`; DuckDB allows temporary tables only in its own "temp" catalog,
# so here that one table is created as a regular table (every statement dbt runs is otherwise
# unchanged).
QUALIFIED_TEMP_TABLE = re.compile(
    r"create or replace temporary table (\w+\.\w+\.\w+__dbt_tmp)", re.IGNORECASE
)
TOPIC = "test.trades"
PRODUCER = "0f3a9c5e"
START = datetime(2025, 11, 18, 14, 0, tzinfo=UTC)


class Account:
    def __init__(self) -> None:
        import snowflake.connector

        self.conn = snowflake.connector.connect(database="TICKHOUSE", schema="RAW")
        self.loads = 0

    def rows(self, sql: str) -> list[dict[str, Any]]:
        cur = self.conn.cursor()
        cur.execute(sql)
        names = [d[0].lower() for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def load_trades(self, trades: list[RawTrade], producer_seqs: list[int] | None = None) -> None:
        """Through the drain's Snowflake loader: staged, then inserted in one transaction. With
        `producer_seqs`, the trades carry the producer identity (PRODUCER, seq) as the Tickhouse
        producer stamps it."""
        from drain.targets.snowflake.loader import SnowflakeLoader

        loader = SnowflakeLoader(self.conn)
        items: list[Item] = []
        for i, t in enumerate(trades):
            body: dict[str, Any] = {"symbol": t.symbol, "price": float(t.price), "volume": float(t.volume),
                                    "ts": t.ts, "conditions": ["1"]}
            if producer_seqs is not None:
                body.update(producer_id=PRODUCER, producer_seq=producer_seqs[i])
            items.append((json.dumps(body).encode(), t.partition, t.offset, t.ts, None))
        loader.add(parse_batch("trades", TOPIC, items, ENCODING))
        loader.finish()
        self._move(loader, TOPIC, "trades", [t.ts for t in trades])

    def load_alerts(self, count: int) -> None:
        from drain.targets.snowflake.loader import SnowflakeLoader

        loader = SnowflakeLoader(self.conn)
        items: list[Item] = []
        for i in range(count):
            body = {"alert_id": f"a-{i}", "symbol": "AAPL", "rule": "spike",
                    "severity": "warning", "message": "m", "trade_ts": int(START.timestamp() * 1000),
                    "detected_ts": int(START.timestamp() * 1000) + 5, "details": {"z": i}}
            items.append((json.dumps(body).encode(), 0, i, None, None))
        loader.add(parse_batch("alerts", "test.alerts", items, ENCODING))
        loader.finish()
        self._move(loader, "test.alerts", "alerts", [int(START.timestamp() * 1000)])

    def _move(self, loader: Any, topic: str, kind: str, event_ms: list[int]) -> None:
        """Rows and their LOAD_STATS row in one transaction, with one load time (as the drain does)."""
        from drain.stats import TopicStats
        from drain.targets.snowflake.loader import write_load_stats

        self.loads += 1
        now = datetime.now(UTC)
        stats = TopicStats(topic, kind, consumed=len(event_ms), loaded=len(event_ms),
                           min_event_ms=min(event_ms), max_event_ms=max(event_ms))
        cur = self.conn.cursor()
        cur.execute("begin")
        loader.move_staged_rows(cur, int(now.timestamp() * 1000))
        write_load_stats(cur, run_id=f"load-{self.loads}", group="test", started_at=now, finished_at=now,
                         stats=[stats], loaded_at_ms=int(now.timestamp() * 1000))
        cur.execute("commit")


def dbt(*args: str) -> dict[str, str]:
    """dbt in-process, as `tickhouse transform` runs it (WAREHOUSE=snowflake selects the
    snowflake target); returns {node name: status}."""
    from transform.dbt_runner import dbt_environment, run_dbt

    assert dbt_environment(load_settings())["DBT_TARGET"] == "snowflake"
    result = run_dbt(args)
    assert result.exception is None, result.exception
    run: Any = result.result
    return {r.node.name: str(r.status) for r in run.results}


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    import fakesnow

    from tickhouse.snowflake.schema import setup_raw

    work = tmp_path_factory.mktemp("dbt-snowflake")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("DBT_TARGET", raising=False)
        for name, value in {
            "WAREHOUSE": "snowflake", "SNOWFLAKE_ACCOUNT": "fakesnow",
            "SNOWFLAKE_USER": "dbt", "SNOWFLAKE_PASSWORD": "unused", "SNOWFLAKE_DATABASE":
            "TICKHOUSE", "SNOWFLAKE_SCHEMA": "MARTS", "SNOWFLAKE_WAREHOUSE": "TRANSFORM_WH",
            "SNOWFLAKE_ROLE": "DBT", "BI_READER_USER": "bi_reader",
            # fakesnow is one in-process DuckDB: concurrent DDL from dbt threads conflicts
            "DBT_THREADS": "1",
            # keep the project's target/ (the Airflow DAG's manifest) untouched
            "DBT_TARGET_PATH": str(work / "target"), "DBT_LOG_PATH": str(work / "logs"),
        }.items():
            env.setenv(name, value)
        from fakesnow.cursor import FakeSnowflakeCursor

        execute = FakeSnowflakeCursor.execute

        def execute_with_regular_tmp_table(self: Any, command: str, *args: Any, **kwargs: Any) -> Any:
            command = QUALIFIED_TEMP_TABLE.sub(r"create or replace table \1", command)
            command = SHOW_GRANTS.sub(NO_GRANTS, command)
            command = UDTF_CALL.sub(lambda m: UDTF_STAND_IN.format(rows=m["rows"]), command)
            return execute(self, command, *args, **kwargs)

        env.setattr(FakeSnowflakeCursor, "execute", execute_with_regular_tmp_table)
        with fakesnow.patch(nop_regexes=NOP_REGEXES):
            acct = Account()
            setup_raw(acct.conn)
            yield acct


def trades_batch(seed: int, start: datetime, minutes: int, offsets: OffsetCounter) -> list[RawTrade]:
    rng = random.Random(seed)
    rows = random_walk_trades(rng, "AAPL", start, minutes, 180.0)
    rows += random_walk_trades(rng, "MSFT", start, minutes, 410.0, gap=(5, 9))
    rows += random_walk_trades(rng, "ZZZZ", start, minutes, 3.0)  # not in dim_symbols
    return with_coordinates(rows, offsets)


def assert_bars_match_pandas(account: Account, trades: list[RawTrade]) -> None:
    expected = pandas_bars(trades)
    actual = pd.DataFrame(account.rows("select * from marts.fct_bars"))
    assert len(actual) == len(expected)
    actual["bar_start"] = pd.to_datetime(actual["bar_start"], utc=True)
    merged = expected.merge(actual, on=["symbol", "bar_interval", "bar_start"],
                            suffixes=("", "_sf"), validate="one_to_one")
    assert len(merged) == len(expected)
    for column in ("open", "high", "low", "close", "volume", "vwap"):
        for want, got in zip(merged[column], merged[f"{column}_sf"], strict=True):
            if want is None:
                assert got is None
            else:
                assert float(got) == pytest.approx(float(want), rel=1e-9, abs=1e-9), column
    assert (merged["trade_count"] == merged["trade_count_sf"].astype(int)).all()


def assert_technicals_cover_the_bars(account: Account) -> dict[tuple[str, str, pd.Timestamp], Any]:
    """fct_technicals has one row per bar of fct_bars with a close, whose close is the bar's
    split-adjusted close, and int_technicals numbers every series 1, 2, ... in bar order (each
    run continues from the state of the bar before the ones it recomputes). Returns each
    indicator row's updated_at."""

    def key(row: dict[str, Any]) -> tuple[str, str, pd.Timestamp]:
        return (row["symbol"], row["bar_interval"], pd.to_datetime(row["bar_start"], utc=True))

    bars = account.rows("select * from marts.fct_bars where adj_close is not null")
    technicals = account.rows("select * from marts.fct_technicals")
    assert len(technicals) == len(bars) > 0
    assert {key(r): r["close"] for r in technicals} == {key(r): r["adj_close"] for r in bars}
    state = account.rows(
        "select symbol, bar_interval, bar_start, bar_number, updated_at from intermediate.int_technicals"
        " order by symbol, bar_interval, bar_start"
    )
    series: dict[tuple[str, str], list[int]] = {}
    for row in state:
        series.setdefault((row["symbol"], row["bar_interval"]), []).append(int(row["bar_number"]))
    for name, numbers in series.items():
        assert numbers == list(range(1, len(numbers) + 1)), name
    return {key(row): row["updated_at"] for row in state}


def test_snowflake_target_builds_and_tests_on_fakesnow(account: Account) -> None:
    offsets = OffsetCounter()
    first = trades_batch(1, START, 90, offsets)
    account.load_trades(first)
    account.load_alerts(3)

    statuses = dbt("build")
    failed = {name: s for name, s in statuses.items() if s not in ("success", "pass", "warn", "no-op")}
    assert not failed, failed
    models = {"stg_tickhouse__trades", "stg_tickhouse__quotes", "stg_tickhouse__alerts",
              "stg_tickhouse__load_stats", "int_trades_aggregated_to_minute_bars", "fct_bars",
              "fct_alerts", "stock_analytics", "pipeline_status", "dim_symbols", "int_technicals",
              "fct_technicals", "assert_technicals_bar_numbers_are_dense",
              "assert_technicals_cover_every_bar"}
    assert models <= statuses.keys()
    assert sum(s == "pass" for s in statuses.values()) >= 40  # the data tests ran
    assert_bars_match_pandas(account, first)
    written = assert_technicals_cover_the_bars(account)
    assert [r["alert_id"] for r in account.rows("select alert_id from marts.fct_alerts order by 1")] == [
        "a-0", "a-1", "a-2"]

    # an incremental run over new trades (loading 50 of them twice adds nothing: same coordinates)
    second = trades_batch(2, START + timedelta(minutes=90), 30, offsets)
    account.load_trades(second)
    account.load_trades(second[:50])
    statuses = dbt("build")
    failed = {name: s for name, s in statuses.items() if s not in ("success", "pass", "warn", "no-op")}
    assert not failed, failed
    assert_bars_match_pandas(account, first + second)
    # the incremental run recomputed the new bars only, numbering them on from the stored state
    rewritten = assert_technicals_cover_the_bars(account)
    new_bars_from = pd.Timestamp(START + timedelta(minutes=90))
    for bar, updated_at in rewritten.items():
        if bar[1] == "1m":
            assert (updated_at == written.get(bar)) == (bar[2] < new_bars_from), bar
    daily = account.rows(
        "select symbol, count(*) as days from marts.stock_analytics group by 1 order by 1")
    assert [(r["symbol"], int(r["days"])) for r in daily] == [("AAPL", 1), ("MSFT", 1), ("ZZZZ", 1)]

    # trades of the Tickhouse producer, then 40 of them resent after a crash in a later load (same
    # identity, new offsets): raw holds every message, the bars count each trade once
    third = trades_batch(3, START + timedelta(minutes=120), 10, offsets)
    account.load_trades(third, producer_seqs=list(range(len(third))))
    statuses = dbt("build")
    resent = with_coordinates([(t.symbol, t.price, t.volume, t.ts) for t in third[:40]], offsets)
    account.load_trades(resent, producer_seqs=list(range(40)))
    statuses = dbt("build")
    failed = {name: s for name, s in statuses.items() if s not in ("success", "pass", "warn", "no-op")}
    assert not failed, failed
    raw_rows = account.rows("select count(*) as n from raw.trades where producer_id is not null")
    assert int(raw_rows[0]["n"]) == len(third) + 40
    assert_bars_match_pandas(account, first + second + third)
    assert_technicals_cover_the_bars(account)
