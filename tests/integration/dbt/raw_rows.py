"""Raw rows for the dbt tests: synthetic and real-data trades, loaded with the loader role."""

from __future__ import annotations

import csv
import gzip
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

NEW_YORK = ZoneInfo("America/New_York")
TOPIC = "test.trades"


@dataclass(slots=True, frozen=True)
class RawTrade:
    symbol: str
    price: Decimal
    volume: Decimal
    ts: int  # epoch ms
    partition: int
    offset: int
    conditions: tuple[str, ...] | None = ("1",)

    @property
    def event_time(self) -> datetime:
        return datetime.fromtimestamp(self.ts / 1000, tz=UTC)


class OffsetCounter:
    """Kafka offsets per partition, increasing in load order (as the drain would see them)."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def take(self, partition: int) -> int:
        value = self._next.get(partition, 0)
        self._next[partition] = value + 1
        return value


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def random_walk_trades(
    rng: random.Random,
    symbol: str,
    start: datetime,
    minutes: int,
    first_price: float,
    flat_minutes: int = 0,
    gap: tuple[int, int] | None = None,
) -> list[tuple[str, Decimal, Decimal, int]]:
    """(symbol, price, volume, ts) every few seconds; the first `flat_minutes` at one price,
    no trades in the minutes [gap[0], gap[1]), some ties on ts and some zero-volume prints."""
    out: list[tuple[str, Decimal, Decimal, int]] = []
    price = first_price
    t = ms(start)
    end = ms(start + timedelta(minutes=minutes))
    while t < end:
        minute = (t - ms(start)) // 60_000
        if gap is None or not gap[0] <= minute < gap[1]:
            if minute >= flat_minutes:
                price = max(1.0, price + rng.gauss(0, 0.05))
            volume = 0 if rng.random() < 0.05 else rng.randint(1, 500)
            out.append((symbol, Decimal(f"{price:.2f}"), Decimal(volume), t))
            if rng.random() < 0.1:  # a second trade in the same millisecond
                out.append((symbol, Decimal(f"{price + 0.01:.2f}"), Decimal(rng.randint(1, 50)), t))
        t += rng.randint(1_000, 9_000)
    return out


def daily_trades(path: Path, ticker: str, days: int, symbol: str) -> list[tuple[str, Decimal, Decimal, int]]:
    """Four trades per trading day (open, high, low, close) from Quandl's public-domain daily
    prices shipped with bokeh-sampledata, so the 1d bars are that ticker's real OHLC."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["Ticker"] == ticker][-days:]
    out: list[tuple[str, Decimal, Decimal, int]] = []
    for row in rows:
        day = date.fromisoformat(row["Date"])
        volume = Decimal(int(float(row["Volume"])) // 4)
        for hour, minute, column in ((9, 30, "Open"), (11, 0, "High"), (13, 0, "Low"), (15, 59, "Close")):
            at = datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)
            out.append((symbol, Decimal(row[column]), volume, ms(at)))
    return out


def with_coordinates(
    rows: Iterable[tuple[str, Decimal, Decimal, int]], offsets: OffsetCounter, partitions: int = 3
) -> list[RawTrade]:
    out = []
    for symbol, price, volume, ts in rows:
        partition = sum(symbol.encode()) % partitions
        out.append(RawTrade(symbol, price, volume, ts, partition, offsets.take(partition)))
    return out


def load_trades(conninfo: str, trades: Sequence[RawTrade]) -> None:
    """COPY trades into raw.trades as the loader role, creating the day partitions first."""
    days = sorted({t.event_time.date() for t in trades})
    with psycopg.connect(conninfo) as conn:
        for day in days:
            conn.execute("select raw.ensure_day_partition('raw.trades', %s)", (day,))
        with (
            conn.cursor() as cur,
            cur.copy(
                "copy raw.trades (symbol, price, volume, ts, event_time, conditions, source,"
                " kafka_topic, kafka_partition, kafka_offset, kafka_timestamp) from stdin"
            ) as copy,
        ):
            for t in trades:
                copy.write_row(
                    (
                        t.symbol,
                        t.price,
                        t.volume,
                        t.ts,
                        t.event_time,
                        None if t.conditions is None else list(t.conditions),
                        "test",
                        TOPIC,
                        t.partition,
                        t.offset,
                        t.event_time,
                    )
                )


def load_alerts(conninfo: str, alerts: Sequence[dict[str, Any]], first_offset: int) -> None:
    with psycopg.connect(conninfo) as conn:
        for index, alert in enumerate(alerts):
            event_time = datetime.fromtimestamp(alert["trade_ts"] / 1000, tz=UTC)
            conn.execute("select raw.ensure_day_partition('raw.alerts', %s)", (event_time.date(),))
            conn.execute(
                "insert into raw.alerts (alert_id, symbol, rule, severity, message, trade_ts,"
                " detected_ts, event_time, details, kafka_topic, kafka_partition, kafka_offset)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, '{}'::jsonb, 'test.alerts', 0, %s)",
                (
                    alert["alert_id"],
                    alert["symbol"],
                    alert["rule"],
                    alert["severity"],
                    alert["message"],
                    alert["trade_ts"],
                    alert["detected_ts"],
                    event_time,
                    first_offset + index,
                ),
            )
