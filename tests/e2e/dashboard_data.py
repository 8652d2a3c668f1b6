"""Data for the dashboard tests, made the way users get it: trades and alerts published to Kafka
topics of the test's own, drained and transformed by dbt into a warehouse database of the test's
own (`<POSTGRES_DB>_<name>`), which the dashboard then reads as bi_reader. Nothing of the user's
warehouse is touched, and everything is dropped afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.integration.dbt.conftest import Feed, Transformer, own_feed, own_warehouse
from tickhouse.config import Settings


def minute_trades(
    symbol: str, minutes: int, end: dt.datetime, price: float, seed: int
) -> list[tuple[str, Decimal, Decimal, int]]:
    """One trade a minute for `minutes` minutes ending at `end` (a smooth random-looking walk): as
    many 1m bars, each with that trade's price as open = high = low = close."""
    last = end.astimezone(dt.UTC).replace(second=0, microsecond=0)
    out = []
    for n in range(minutes):
        moment = last - dt.timedelta(minutes=minutes - 1 - n)
        value = price * (1 + 0.01 * math.sin(n / 7 + seed) + 0.002 * math.sin(n * 1.7 + seed))
        out.append(
            (symbol, Decimal(f"{value:.2f}"), Decimal(100 + n % 50), int(moment.timestamp() * 1000) + 5_000)
        )
    return out


def alert(symbol: str, rule: str, severity: str, message: str, at: dt.datetime) -> dict[str, Any]:
    ms = int(at.timestamp() * 1000)
    return {
        "alert_id": f"test-{symbol}-{rule}-{ms}",
        "symbol": symbol,
        "rule": rule,
        "severity": severity,
        "message": message,
        "trade_ts": ms - 250,
        "detected_ts": ms,
        "details": {"test": True},
    }


@dataclass
class DashboardWarehouse:
    """A warehouse of the test's own, fed through Kafka, the drain and dbt."""

    settings: Settings
    feed: Feed
    transform: Transformer

    def load(
        self,
        trades: Sequence[tuple[str, Decimal, Decimal, int]] = (),
        alerts: Sequence[dict[str, Any]] = (),
    ) -> None:
        if trades:
            self.feed.publish_trades(trades)
        if alerts:
            self.feed.publish_alerts(alerts)
        self.feed.drain()
        self.transform()


@contextlib.contextmanager
def dashboard_warehouse(name: str, target_path: Path) -> Iterator[DashboardWarehouse]:
    with own_warehouse(name) as settings, own_feed(settings) as feed:
        yield DashboardWarehouse(settings, feed, Transformer(settings, target_path))
