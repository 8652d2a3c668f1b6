"""Tickhouse's Kafka messages as records: the trade, quote, alert and candle a producer publishes
(docs/interfaces/kafka-messages.md), their JSON encoding, and `InvalidMessage`, the error every parser
raises with the quarantine reason."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tickhouse.errors import TickhouseError

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_FUTURE_MS = 24 * 60 * 60 * 1000  # ts may be at most one day after now
SEVERITIES = ("info", "warning", "critical")
# Finnhub's candle resolutions (minutes, day, week, month), as `market.candles` carries them
RESOLUTIONS = ("1", "5", "15", "30", "60", "D", "W", "M")

Number = int | float | Decimal


class InvalidMessage(TickhouseError, ValueError):
    """A Kafka message that does not satisfy docs/interfaces/kafka-messages.md; `str(err)` is the quarantine
    reason."""


@dataclass(slots=True, frozen=True)
class Trade:
    symbol: str
    price: Number
    volume: Number
    ts: int
    conditions: tuple[str, ...] | None = None
    source: str | None = None
    producer_id: str | None = None
    producer_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "symbol": self.symbol,
            "price": self.price,
            "volume": self.volume,
            "ts": self.ts,
        }
        if self.conditions is not None:
            out["conditions"] = list(self.conditions)
        if self.source is not None:
            out["source"] = self.source
        if self.producer_id is not None:
            out["producer_id"] = self.producer_id
            out["producer_seq"] = self.producer_seq
        return out


@dataclass(slots=True, frozen=True)
class Quote:
    symbol: str
    price: Number
    change: Number | None
    change_pct: Number | None
    high: Number
    low: Number
    open: Number
    prev_close: Number
    ts: int
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "price": self.price,
            "change": self.change,
            "change_pct": self.change_pct,
            "high": self.high,
            "low": self.low,
            "open": self.open,
            "prev_close": self.prev_close,
            "ts": self.ts,
            "source": self.source,
        }


@dataclass(slots=True, frozen=True)
class Alert:
    alert_id: str
    symbol: str
    rule: str
    severity: str
    message: str
    trade_ts: int
    detected_ts: int
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "symbol": self.symbol,
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "trade_ts": self.trade_ts,
            "detected_ts": self.detected_ts,
            "details": self.details,
        }


@dataclass(slots=True, frozen=True)
class Candle:
    """One OHLCV candle of `market.candles` (Finnhub `/stock/candle`; `bar_start` in epoch ms)."""

    symbol: str
    resolution: str
    bar_start: int
    open: Number
    high: Number
    low: Number
    close: Number
    volume: Number
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "symbol": self.symbol,
            "resolution": self.resolution,
            "bar_start": self.bar_start,
            "open": self.open,
            "high": self.high,
            "low": self.low,
            "close": self.close,
            "volume": self.volume,
        }
        if self.source is not None:
            out["source"] = self.source
        return out


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")


def to_json(record: Trade | Quote | Alert | Candle) -> bytes:
    """Serialize a record as the compact UTF-8 JSON message value."""
    return json.dumps(record.to_dict(), separators=(",", ":"), allow_nan=False, default=_json_default).encode(
        "utf-8"
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000
