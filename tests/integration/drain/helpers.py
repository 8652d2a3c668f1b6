"""Message builders shared by the drain's integration tests."""

from __future__ import annotations

import json
import time
from typing import Any

NOW_MS = int(time.time() * 1000)


def trade(i: int, ts: int | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "symbol": "AAPL" if i % 2 else "MSFT",
        "price": round(100 + (i % 1000) / 100, 2),
        "volume": i % 500,
        "ts": NOW_MS - i if ts is None else ts,
        "conditions": ["1", "12"],
        "source": "test",
    }
    body.update(extra)
    return json.dumps(body).encode()


def quote(i: int, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "symbol": "AAPL", "price": 10 + i, "change": 0.5, "change_pct": None, "high": 12 + i,
        "low": 9 + i, "open": 10, "prev_close": 9.5, "ts": NOW_MS - i, "source": "test",
    }
    body.update(extra)
    return json.dumps(body).encode()


def alert(i: int, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "alert_id": f"a-{i}", "symbol": "AAPL", "rule": "spike", "severity": "warning",
        "message": f"price spike {i}", "trade_ts": NOW_MS - i, "detected_ts": NOW_MS,
        "details": {"z": 3.5, "window": [1, 2]},
    }
    body.update(extra)
    return json.dumps(body).encode()


def candle(i: int, **extra: Any) -> bytes:
    """A valid daily candle, day `i` before today (00:00 UTC), unless `extra` breaks it."""
    day = NOW_MS - NOW_MS % 86_400_000 - i * 86_400_000
    body: dict[str, Any] = {
        "symbol": "AAPL", "resolution": "D", "bar_start": day, "open": 100 + i, "high": 102 + i,
        "low": 99.5 + i, "close": 101.25 + i, "volume": 1000 * i, "source": "test",
    }
    body.update(extra)
    return json.dumps(body).encode()
