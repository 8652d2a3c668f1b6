"""Pipeline health at a glance: Kafka lag of the drain's consumer group, what the drain loaded and
quarantined, how fresh the raw tables are, per symbol what the marts cover and whether they
are behind raw, and the trade-condition codes the eligibility table does not list. Read by
`tickhouse status` and exported to Prometheus by `exporter.collector` (the drain runs as short
Airflow tasks, so its figures are read from the warehouse and the broker rather than kept in a
process).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from tickhouse.config import Settings, drain_group
from tickhouse.kafka import PartitionLag, group_lag


def drain_lag(settings: Settings, timeout: float = 5.0) -> list[PartitionLag]:
    """Per-partition lag of the drain's consumer group (DRAIN_GROUP) behind each topic's end."""
    return group_lag(settings.kafka_bootstrap_servers, drain_group(), settings.topics, timeout)


@dataclass(frozen=True, slots=True)
class TopicLoad:
    topic: str
    loaded: int
    quarantined: int
    last_run_at: datetime | None
    last_run_seconds: float | None
    max_event_time: datetime | None


def topic_loads(settings: Settings) -> list[TopicLoad]:
    """Totals and the latest run per topic from `raw.load_stats` ([] before the first drain), read as
    the monitor role, which may read that table and nothing else of `raw`."""
    from tickhouse.warehouse import connect

    with connect(settings, "monitor") as conn:
        exists = conn.execute("select to_regclass('raw.load_stats') is not null").fetchone()
        if not exists or not exists[0]:
            return []
        rows = conn.execute(
            """
            select topic,
                   sum(loaded)::bigint,
                   sum(quarantined)::bigint,
                   max(finished_at),
                   (array_agg(duration_ms order by finished_at desc))[1] / 1000.0,
                   max(max_event_time)
            from raw.load_stats
            group by topic
            order by topic
            """
        ).fetchall()
    return [
        TopicLoad(r[0], int(r[1]), int(r[2]), r[3], float(r[4]) if r[4] is not None else None, r[5])
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class SymbolCoverage:
    """One row of marts.pipeline_symbols."""

    symbol: str
    first_bar_start: datetime | None
    last_bar_start: datetime | None
    last_daily_bar_start: datetime | None
    rows_pending: int
    oldest_pending_event_time: datetime | None

    @property
    def is_behind_raw(self) -> bool:
        return self.rows_pending > 0


@dataclass(frozen=True, slots=True)
class MartsCoverage:
    """Per-symbol coverage of the marts (the `limit` most relevant symbols) and the totals."""

    symbols: list[SymbolCoverage]
    symbol_count: int
    symbols_behind: int
    rows_pending: int


def marts_coverage(settings: Settings, limit: int = 20) -> MartsCoverage | None:
    """Read marts.pipeline_symbols as bi_reader: the symbols behind raw first, then the ones with
    the newest bars, at most `limit` of them; None before dbt has built it."""
    from tickhouse.warehouse import connect

    with connect(settings, "bi_reader") as conn:
        exists = conn.execute("select to_regclass('marts.pipeline_symbols') is not null").fetchone()
        if not exists or not exists[0]:
            return None
        totals = conn.execute(
            "select count(*), count(*) filter (where is_behind_raw), coalesce(sum(rows_pending), 0)"
            " from marts.pipeline_symbols"
        ).fetchone()
        rows = conn.execute(
            "select symbol, first_bar_start, last_bar_start, last_daily_bar_start, rows_pending,"
            " oldest_pending_event_time from marts.pipeline_symbols"
            " order by is_behind_raw desc, last_bar_start desc nulls last, symbol limit %s",
            (limit,),
        ).fetchall()
    assert totals is not None
    return MartsCoverage(
        symbols=[SymbolCoverage(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows],
        symbol_count=int(totals[0]),
        symbols_behind=int(totals[1]),
        rows_pending=int(totals[2]),
    )


@dataclass(frozen=True, slots=True)
class UnknownCondition:
    """One row of marts.pipeline_unknown_conditions: a condition code the trade-condition table
    (dbt_project/seeds/trade_conditions.csv) does not list, which the bars take as regular."""

    code: str
    prints: int
    symbols: int
    first_event_time: datetime | None
    last_event_time: datetime | None


@dataclass(frozen=True, slots=True)
class UnknownConditions:
    """The `limit` most recently seen unknown codes, and how many codes and prints there are."""

    codes: list[UnknownCondition]
    code_count: int
    prints: int


def unknown_conditions(settings: Settings, limit: int = 100) -> UnknownConditions | None:
    """Read marts.pipeline_unknown_conditions as bi_reader, the most recently seen codes first, at
    most `limit` of them (a feed sending random codes must not make a series each); None before
    dbt has built it."""
    from tickhouse.warehouse import connect

    with connect(settings, "bi_reader") as conn:
        exists = conn.execute(
            "select to_regclass('marts.pipeline_unknown_conditions') is not null"
        ).fetchone()
        if not exists or not exists[0]:
            return None
        totals = conn.execute(
            "select count(*), coalesce(sum(prints), 0) from marts.pipeline_unknown_conditions"
        ).fetchone()
        rows = conn.execute(
            "select code, prints, symbols, first_event_time, last_event_time"
            " from marts.pipeline_unknown_conditions"
            " order by last_event_time desc nulls last, code limit %s",
            (limit,),
        ).fetchall()
    assert totals is not None
    return UnknownConditions(
        codes=[UnknownCondition(r[0], int(r[1]), int(r[2]), r[3], r[4]) for r in rows],
        code_count=int(totals[0]),
        prints=int(totals[1]),
    )


def seconds_since(moment: datetime | None, now: float | None = None) -> float | None:
    if moment is None:
        return None
    return (now if now is not None else time.time()) - moment.timestamp()
