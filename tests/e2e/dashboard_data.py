"""Fixture data for the dashboard test: bars, technicals and alerts for test-only symbols in `marts`.

The marts belong to dbt. When dbt has built them, the fixture inserts rows for its own symbols into
them (contract columns only) and deletes exactly those rows afterwards; when they do not exist yet,
it creates minimal tables with the contract columns and drops them afterwards, so dbt later builds
its own. Technicals are computed with TA-Lib, as the contract defines them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
import talib
from psycopg import sql

from dashboard.queries import BAR_COLUMNS, TECHNICAL_COLUMNS, alert_columns, column_types, relation_exists
from tickhouse.config import Settings
from tickhouse.warehouse import connect

INTERVAL_STEP = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}

_CREATE = {
    "fct_bars": """
        create table marts.fct_bars (
            symbol text not null, bar_interval text not null, bar_start timestamptz not null,
            open numeric, high numeric, low numeric, close numeric, volume numeric, vwap numeric,
            trade_count bigint,
            primary key (symbol, bar_interval, bar_start)
        )""",
    "fct_technicals": """
        create table marts.fct_technicals (
            symbol text not null, bar_interval text not null, bar_start timestamptz not null,
            close numeric, sma_20 float8, sma_50 float8, sma_200 float8, ema_12 float8, ema_26 float8,
            macd float8, macd_signal float8, macd_hist float8, rsi_14 float8,
            bb_upper float8, bb_middle float8, bb_lower float8,
            primary key (symbol, bar_interval, bar_start)
        )""",
    # the alert fields of CONTRACT §3 (rule, epoch-ms times): the dashboard must read this shape
    # as well as dbt's (rule_name, timestamptz)
    "fct_alerts": """
        create table marts.fct_alerts (
            alert_id text primary key, symbol text not null, rule text not null, severity text not null,
            message text not null, trade_ts bigint, detected_ts bigint
        )""",
}


@dataclass(frozen=True, slots=True)
class Series:
    """The bars of one symbol and interval, oldest first."""

    symbol: str
    interval: str
    rows: list[dict[str, Any]]

    @property
    def bar_starts(self) -> list[dt.datetime]:
        return [row["bar_start"] for row in self.rows]


def synthetic_series(
    symbol: str, interval: str, count: int, end: dt.datetime, seed: int, price: float = 100.0
) -> Series:
    """`count` plausible OHLCV bars ending at `end` (a random walk), with TA-Lib technicals."""
    step = INTERVAL_STEP[interval]
    rng = np.random.default_rng(seed)
    closes = price * np.exp(np.cumsum(rng.normal(0, 0.004, count) + 0.0002 * np.sin(np.arange(count) / 25)))
    opens = np.concatenate([[price], closes[:-1]]) * (1 + rng.normal(0, 0.001, count))
    highs = np.maximum(opens, closes) * (1 + np.abs(rng.normal(0, 0.002, count)))
    lows = np.minimum(opens, closes) * (1 - np.abs(rng.normal(0, 0.002, count)))
    volumes = rng.integers(100, 5000, count).astype(float)
    technicals = _technicals(closes)
    last = end.astimezone(dt.UTC).replace(microsecond=0)
    last -= dt.timedelta(seconds=int(last.timestamp()) % step)
    rows = []
    for i in range(count):
        row: dict[str, Any] = {
            "bar_start": last - dt.timedelta(seconds=step * (count - 1 - i)),
            "open": round(float(opens[i]), 4),
            "high": round(float(highs[i]), 4),
            "low": round(float(lows[i]), 4),
            "close": round(float(closes[i]), 4),
            "volume": float(volumes[i]),
            "vwap": round(float((highs[i] + lows[i] + closes[i]) / 3), 4),
            "trade_count": int(rng.integers(1, 60)),
        }
        for name, values in technicals.items():
            value = float(values[i])
            row[name] = None if np.isnan(value) else value
        rows.append(row)
    return Series(symbol, interval, rows)


def _technicals(closes: np.ndarray) -> dict[str, np.ndarray]:
    macd, signal, hist = talib.MACD(closes, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(closes, 20, 2, 2)
    return {
        "sma_20": talib.SMA(closes, 20),
        "sma_50": talib.SMA(closes, 50),
        "sma_200": talib.SMA(closes, 200),
        "ema_12": talib.EMA(closes, 12),
        "ema_26": talib.EMA(closes, 26),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "rsi_14": talib.RSI(closes, 14),
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
    }


@dataclass
class MartFixture:
    """Rows for `symbols` in marts.fct_bars / fct_technicals / fct_alerts, removed by `cleanup()`."""

    settings: Settings
    symbols: Sequence[str]
    created: list[str] = field(default_factory=list)

    def _conn(self) -> psycopg.Connection[Any]:
        return connect(self.settings, "dbt", autocommit=True)

    def ensure_tables(self) -> None:
        with self._conn() as conn:
            for table, ddl in _CREATE.items():
                if relation_exists(conn, f"marts.{table}"):
                    _check_insertable(conn, table)
                    continue
                with conn.transaction():
                    conn.execute(ddl)
                    conn.execute(
                        sql.SQL("grant select on {} to {}").format(
                            sql.Identifier("marts", table), sql.Identifier(self.settings.bi_reader_user)
                        )
                    )
                self.created.append(table)

    def insert_series(self, series: Iterable[Series]) -> None:
        bar_columns = ["symbol", "bar_interval", *BAR_COLUMNS]
        tech_columns = ["symbol", "bar_interval", "bar_start", "close", *TECHNICAL_COLUMNS]
        with self._conn() as conn, conn.transaction():
            for one in series:
                assert one.symbol in self.symbols, f"{one.symbol} is not one of this fixture's symbols"
                for table, columns in (("fct_bars", bar_columns), ("fct_technicals", tech_columns)):
                    rows = [[one.symbol, one.interval, *(row[c] for c in columns[2:])] for row in one.rows]
                    _insert(conn, table, columns, rows)
            for table in ("fct_bars", "fct_technicals"):
                if table not in self.created:
                    self._fill_dbt_columns(conn, table)

    def _fill_dbt_columns(self, conn: psycopg.Connection[Any], table: str) -> None:
        """Give dbt's bookkeeping columns plausible values, so that a `dbt test` that happens to
        run while the fixture rows exist (not_null on bar_number, ta_state) does not fail on them."""
        target = sql.Identifier("marts", table)
        mine = (list(self.symbols),)
        for column, kind in column_types(conn, "marts", table).items():
            name = sql.Identifier(column)
            if column == "bar_number":
                conn.execute(
                    sql.SQL(
                        "update {t} as t set {c} = n.bar_number from ("
                        " select symbol, bar_interval, bar_start, row_number() over"
                        " (partition by symbol, bar_interval order by bar_start) as bar_number"
                        " from {t} where symbol = any(%s)) as n"
                        " where t.symbol = n.symbol and t.bar_interval = n.bar_interval"
                        " and t.bar_start = n.bar_start"
                    ).format(t=target, c=name),
                    mine,
                )
            elif kind.startswith("timestamp") and column != "bar_start":
                conn.execute(
                    sql.SQL("update {} set {} = now() where {} is null and symbol = any(%s)").format(
                        target, name, name
                    ),
                    mine,
                )
            elif kind == "ARRAY":
                conn.execute(
                    sql.SQL("update {} set {} = '{{}}' where {} is null and symbol = any(%s)").format(
                        target, name, name
                    ),
                    mine,
                )

    def insert_alert(self, symbol: str, rule: str, severity: str, message: str, when: dt.datetime) -> str:
        alert_id = f"testdash-{uuid.uuid4()}"
        with self._conn() as conn:
            names = alert_columns(conn)
            types = column_types(conn, "marts", "fct_alerts")
            values: dict[str, Any] = {
                "alert_id": alert_id,
                "symbol": symbol,
                names.rule: rule,
                "severity": severity,
                "message": message,
            }
            for column in ("trade_ts", "detected_ts", "trade_time", "detected_at", "event_time"):
                if column in types:
                    epoch = types[column] in {"bigint", "integer", "numeric"}
                    values[column] = int(when.timestamp() * 1000) if epoch else when
            if types.get("alert_id") == "uuid":
                values["alert_id"] = alert_id = str(uuid.uuid4())
            _insert(conn, "fct_alerts", list(values), [list(values.values())])
        return alert_id

    def cleanup(self) -> None:
        with self._conn() as conn, conn.transaction():
            for table in _CREATE:
                if table in self.created:
                    conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier("marts", table)))
                elif relation_exists(conn, f"marts.{table}"):
                    conn.execute(
                        sql.SQL("delete from {} where symbol = any(%s)").format(
                            sql.Identifier("marts", table)
                        ),
                        (list(self.symbols),),
                    )
        self.created.clear()


def _check_insertable(conn: psycopg.Connection[Any], table: str) -> None:
    """dbt's marts are tables; if one became a view or gained a required column, say so plainly."""
    row = conn.execute(
        "select table_type from information_schema.tables where table_schema = 'marts' and table_name = %s",
        (table,),
    ).fetchone()
    if not row or row[0] != "BASE TABLE":
        raise AssertionError(
            f"marts.{table} exists but is a {row[0] if row else 'relation the dbt role cannot see'}, "
            "not a table: the dashboard fixture cannot insert its test rows into it"
        )
    required = conn.execute(
        "select column_name from information_schema.columns where table_schema = 'marts' "
        "and table_name = %s and is_nullable = 'NO' and column_default is null",
        (table,),
    ).fetchall()
    known = {
        "symbol",
        "bar_interval",
        *BAR_COLUMNS,
        *TECHNICAL_COLUMNS,
        "alert_id",
        "rule",
        "rule_name",
        "severity",
        "message",
        "trade_ts",
        "detected_ts",
        "trade_time",
        "detected_at",
        "event_time",
    }
    unknown = sorted(str(r[0]) for r in required if r[0] not in known)
    if unknown:
        raise AssertionError(f"marts.{table} has required columns the fixture does not fill: {unknown}")


def _insert(conn: psycopg.Connection[Any], table: str, columns: list[str], rows: list[list[Any]]) -> None:
    query = sql.SQL("insert into {} ({}) values ({})").format(
        sql.Identifier("marts", table),
        sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        sql.SQL(", ").join(sql.Placeholder() for _ in columns),
    )
    with conn.cursor() as cur:
        cur.executemany(query, rows)
