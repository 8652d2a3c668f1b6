"""What the dashboard reads from the warehouse: only `marts`, only as `bi_reader`, always parametrized.

Every function takes an open connection, so the queries are testable against a real database
without the web app. The marts are dbt's views with enforced contracts (docs/interfaces/warehouse.md,
dbt_project/models/marts/_marts__models.yml): the queries are fixed SQL against those columns. A
mart that does not exist yet (before the first transform) is reported, not an error.
"""

from __future__ import annotations

from collections.abc import Sequence
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

PIPELINE_UNAVAILABLE = "pipeline status unavailable"


class MartUnavailable(RuntimeError):
    """A mart the dashboard needs is missing or unreadable; the message says which and why."""


def validate_symbol(symbol: str) -> str:
    """Return the symbol if it satisfies docs/interfaces/kafka-messages.md's symbol rule, else raise
    ValueError."""
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

    Columns: BAR_COLUMNS + TECHNICAL_COLUMNS (technicals are NaN where TA-Lib has no value yet).
    `bar_start` is a tz-aware UTC timestamp; prices are floats.
    """
    validate_symbol(symbol)
    validate_interval(interval)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    _require(conn, "marts.fct_bars")
    _require(conn, "marts.fct_technicals")
    bar_select = sql.SQL(", ").join(
        [sql.SQL("b.bar_start")]
        + [sql.SQL("b.{}::float8").format(sql.Identifier(c)) for c in BAR_COLUMNS[1:]]
    )
    tech_select = sql.SQL(", ").join(
        sql.SQL("t.{}").format(sql.Identifier(c)) for c in TECHNICAL_COLUMNS
    )
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
        left join marts.fct_technicals as t
            on t.symbol = b.symbol and t.bar_interval = b.bar_interval and t.bar_start = b.bar_start
        order by b.bar_start
        """
    ).format(bar_select=bar_select, tech_select=tech_select)
    rows = conn.execute(query, (symbol, interval, limit)).fetchall()
    frame = pd.DataFrame(rows, columns=[*BAR_COLUMNS, *TECHNICAL_COLUMNS])
    frame["bar_start"] = pd.to_datetime(frame["bar_start"], utc=True)
    for column in frame.columns[1:]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


ALERT_FRAME_COLUMNS: tuple[str, ...] = ("time", "symbol", "rule", "severity", "message", "alert_id")


def latest_alerts(
    conn: psycopg.Connection[Any], limit: int = 20, symbols: Sequence[str] | None = None
) -> pd.DataFrame:
    """The newest alerts (all symbols, or only `symbols`), newest first by when they were raised;
    `time` is tz-aware UTC."""
    _require(conn, "marts.fct_alerts")
    where = sql.SQL("")
    params: list[Any] = []
    if symbols is not None:
        where = sql.SQL("where symbol = any(%s)")
        params.append([validate_symbol(s) for s in symbols])
    query = sql.SQL(
        """
        select detected_ts, symbol, rule, severity, message, alert_id
        from marts.fct_alerts
        {where}
        order by detected_ts desc, alert_id
        limit %s
        """
    ).format(where=where)
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

