"""What the dashboard reads from the warehouse: only `marts`, only as `bi_reader`, always parametrized.

Every function takes an open connection, so the queries are testable against a real database
without the web app. The marts are dbt's: we read the contract columns (CONTRACT §4) and ignore
any others, and a mart that does not exist yet is reported, not an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from tickhouse.config import SYMBOL_PATTERN, Settings
from tickhouse.warehouse import connect

INTERVALS: tuple[str, ...] = ("1m", "5m", "15m", "1h", "1d")

BAR_COLUMNS: tuple[str, ...] = (
    "bar_start",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "vwap",
    "trade_count",
)
TECHNICAL_COLUMNS: tuple[str, ...] = (
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi_14",
    "bb_upper",
    "bb_middle",
    "bb_lower",
)
PIPELINE_COLUMNS: tuple[str, ...] = (
    "topic",
    "last_loaded_at",
    "messages_loaded",
    "messages_quarantined",
    "consumer_lag",
    "latest_event_time",
    "freshness_seconds",
)

# fct_alerts carries the alert message fields of CONTRACT §3; the models may name the rule
# column `rule` or `rule_name`, and the time as a timestamp or as epoch milliseconds.
_RULE_CANDIDATES = ("rule", "rule_name")
_TIME_CANDIDATES = ("detected_at", "trade_time", "event_time", "detected_ts", "trade_ts", "loaded_at")
_EPOCH_TYPES = {"bigint", "integer", "numeric", "double precision"}

PIPELINE_UNAVAILABLE = "pipeline status unavailable"


class MartUnavailable(RuntimeError):
    """A mart the dashboard needs is missing or unreadable; the message says which and why."""


def validate_symbol(symbol: str) -> str:
    """Return the symbol if it satisfies CONTRACT §3's symbol rule, else raise ValueError."""
    if not isinstance(symbol, str) or not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValueError(f"{symbol!r} is not a valid symbol (1-32 chars of A-Z a-z 0-9 . : - _ / ^ =)")
    return symbol


def validate_interval(interval: str) -> str:
    if interval not in INTERVALS:
        raise ValueError(f"{interval!r} is not a bar interval; expected one of {', '.join(INTERVALS)}")
    return interval


def open_reader(settings: Settings) -> psycopg.Connection[Any]:
    """A read-only `bi_reader` connection with a statement timeout, so a slow query cannot pile up."""
    return connect(
        settings,
        "bi_reader",
        autocommit=True,
        options="-c default_transaction_read_only=on -c statement_timeout=15000",
        application_name="tickhouse-dashboard",
    )


def relation_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """Whether a schema-qualified table or view (e.g. `marts.fct_bars`) exists."""
    row = conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()
    return bool(row and row[0])


def column_types(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, str]:
    """Column name -> data type of a relation, for the columns this role may see."""
    rows = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table),
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def _require(conn: psycopg.Connection[Any], name: str) -> None:
    if not relation_exists(conn, name):
        raise MartUnavailable(f"{name} does not exist yet (dbt has not built it: run `tickhouse transform`)")


def list_symbols(conn: psycopg.Connection[Any]) -> list[str]:
    """The symbols that have bars, sorted; a loose index scan, so it stays fast on big tables."""
    _require(conn, "marts.fct_bars")
    rows = conn.execute(
        """
        with recursive symbols as (
            (select symbol from marts.fct_bars order by symbol limit 1)
            union all
            select (
                select b.symbol from marts.fct_bars as b
                where b.symbol > symbols.symbol order by b.symbol limit 1
            )
            from symbols
            where symbols.symbol is not null
        )
        select symbol from symbols where symbol is not null
        """
    ).fetchall()
    return [str(row[0]) for row in rows if SYMBOL_PATTERN.fullmatch(str(row[0]))]


def bar_counts(conn: psycopg.Connection[Any], symbol: str) -> dict[str, int]:
    """Number of bars per interval for one symbol."""
    _require(conn, "marts.fct_bars")
    rows = conn.execute(
        "select bar_interval, count(*) from marts.fct_bars where symbol = %s group by bar_interval",
        (validate_symbol(symbol),),
    ).fetchall()
    return {str(interval): int(count) for interval, count in rows}


def load_bars(conn: psycopg.Connection[Any], symbol: str, interval: str, limit: int) -> pd.DataFrame:
    """The newest `limit` bars of one symbol and interval, oldest first, with their technicals.

    Columns: BAR_COLUMNS + TECHNICAL_COLUMNS (technicals are NaN when fct_technicals is missing or
    has no row for a bar). `bar_start` is a tz-aware UTC timestamp; prices are floats.
    """
    validate_symbol(symbol)
    validate_interval(interval)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    _require(conn, "marts.fct_bars")
    bar_select = sql.SQL(", ").join(
        [sql.SQL("b.bar_start")]
        + [sql.SQL("b.{}::float8").format(sql.Identifier(c)) for c in BAR_COLUMNS[1:]]
    )
    if relation_exists(conn, "marts.fct_technicals"):
        tech_select = sql.SQL(", ").join(
            sql.SQL("t.{}::float8 as {}").format(sql.Identifier(c), sql.Identifier(c))
            for c in TECHNICAL_COLUMNS
        )
        join = sql.SQL(
            "left join marts.fct_technicals as t "
            "on t.symbol = b.symbol and t.bar_interval = b.bar_interval and t.bar_start = b.bar_start"
        )
    else:
        tech_select = sql.SQL(", ").join(
            sql.SQL("null::float8 as {}").format(sql.Identifier(c)) for c in TECHNICAL_COLUMNS
        )
        join = sql.SQL("")
    query = sql.SQL(
        """
        select {bar_select}, {tech_select}
        from (
            select symbol, bar_interval, bar_start, open, high, low, close, volume, vwap, trade_count
            from marts.fct_bars
            where symbol = %s and bar_interval = %s
            order by bar_start desc
            limit %s
        ) as b
        {join}
        order by b.bar_start
        """
    ).format(bar_select=bar_select, tech_select=tech_select, join=join)
    rows = conn.execute(query, (symbol, interval, limit)).fetchall()
    frame = pd.DataFrame(rows, columns=[*BAR_COLUMNS, *TECHNICAL_COLUMNS])
    frame["bar_start"] = pd.to_datetime(frame["bar_start"], utc=True)
    for column in frame.columns[1:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


@dataclass(frozen=True, slots=True)
class AlertColumns:
    """How this warehouse's fct_alerts names the rule and time columns."""

    rule: str
    time: str
    time_is_epoch_ms: bool


def alert_columns(conn: psycopg.Connection[Any]) -> AlertColumns:
    """Find the rule and time columns of marts.fct_alerts, or raise MartUnavailable."""
    _require(conn, "marts.fct_alerts")
    types = column_types(conn, "marts", "fct_alerts")
    missing = [c for c in ("alert_id", "symbol", "severity", "message") if c not in types]
    rule = next((c for c in _RULE_CANDIDATES if c in types), None)
    time = next((c for c in _TIME_CANDIDATES if c in types), None)
    if missing or rule is None or time is None:
        wanted = [*missing, *(["rule"] if rule is None else []), *(["a time column"] if time is None else [])]
        raise MartUnavailable(f"marts.fct_alerts lacks {', '.join(wanted)} (has {', '.join(types)})")
    return AlertColumns(rule=rule, time=time, time_is_epoch_ms=types[time] in _EPOCH_TYPES)


ALERT_FRAME_COLUMNS: tuple[str, ...] = ("time", "symbol", "rule", "severity", "message", "alert_id")


def latest_alerts(
    conn: psycopg.Connection[Any], limit: int = 20, symbols: Sequence[str] | None = None
) -> pd.DataFrame:
    """The newest alerts (all symbols, or only `symbols`), newest first; `time` is tz-aware UTC."""
    columns = alert_columns(conn)
    time_expr = (
        sql.SQL("to_timestamp({}::float8 / 1000.0)").format(sql.Identifier(columns.time))
        if columns.time_is_epoch_ms
        else sql.SQL("{}::timestamptz").format(sql.Identifier(columns.time))
    )
    where = sql.SQL("")
    params: list[Any] = []
    if symbols is not None:
        where = sql.SQL("where symbol = any(%s)")
        params.append([validate_symbol(s) for s in symbols])
    query = sql.SQL(
        """
        select {time_expr} as alert_time, symbol, {rule}::text, severity::text, message::text,
               alert_id::text
        from marts.fct_alerts
        {where}
        order by {time} desc nulls last, alert_id
        limit %s
        """
    ).format(
        time_expr=time_expr, rule=sql.Identifier(columns.rule), where=where, time=sql.Identifier(columns.time)
    )
    params.append(limit)
    rows = conn.execute(query, params).fetchall()
    frame = pd.DataFrame(rows, columns=list(ALERT_FRAME_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def pipeline_status(conn: psycopg.Connection[Any]) -> pd.DataFrame:
    """One row per topic from marts.pipeline_status, or MartUnavailable when it is missing."""
    _require(conn, "marts.pipeline_status")
    query = sql.SQL("select {} from marts.pipeline_status order by topic").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in PIPELINE_COLUMNS)
    )
    try:
        rows = conn.execute(query).fetchall()
    except psycopg.Error as err:
        raise MartUnavailable(f"marts.pipeline_status is not readable: {str(err).strip()}") from err
    frame = pd.DataFrame(rows, columns=list(PIPELINE_COLUMNS))
    for column in ("last_loaded_at", "latest_event_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in ("messages_loaded", "messages_quarantined", "consumer_lag", "freshness_seconds"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


SYMBOL_COVERAGE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "first_bar_start",
    "last_bar_start",
    "rows_pending",
    "oldest_pending_event_time",
    "is_behind_raw",
)


def symbol_coverage(conn: psycopg.Connection[Any], limit: int) -> pd.DataFrame:
    """Per symbol from marts.pipeline_symbols: the symbols behind raw first, then the newest bars."""
    _require(conn, "marts.pipeline_symbols")
    query = sql.SQL(
        "select {} from marts.pipeline_symbols"
        " order by is_behind_raw desc, last_bar_start desc nulls last, symbol limit %s"
    ).format(sql.SQL(", ").join(sql.Identifier(c) for c in SYMBOL_COVERAGE_COLUMNS))
    try:
        rows = conn.execute(query, (limit,)).fetchall()
    except psycopg.Error as err:
        raise MartUnavailable(f"marts.pipeline_symbols is not readable: {str(err).strip()}") from err
    frame = pd.DataFrame(rows, columns=list(SYMBOL_COVERAGE_COLUMNS))
    for column in ("first_bar_start", "last_bar_start", "oldest_pending_event_time"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["rows_pending"] = pd.to_numeric(frame["rows_pending"], errors="coerce")
    return frame

