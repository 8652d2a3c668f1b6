"""Finnhub WebSocket frame parsing, subscription bookkeeping and backoff."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest

from producer.finnhub_stream import backoff_delays, parse_frame, subscription_changes
from tickhouse.schemas import parse_trade, to_json

pytestmark = pytest.mark.unit

NOW = 1_763_649_000_000


def frame(*trades: object) -> str:
    return json.dumps({"type": "trade", "data": list(trades)})


def test_every_trade_of_a_multi_trade_frame_is_parsed_in_order() -> None:
    trades = [{"s": "AAPL", "p": 178.45 + i / 100, "t": NOW - 1000 + i, "v": 100 + i,
               "c": ["1", "12"]} for i in range(50)]
    parsed = parse_frame(frame(*trades), now=NOW)
    assert parsed.kind == "trade"
    assert parsed.problems == []
    assert [t.ts for t in parsed.trades] == [t["t"] for t in trades]
    first = parsed.trades[0]
    assert (first.symbol, first.price, first.volume, first.conditions, first.source) == (
        "AAPL", Decimal("178.45"), 100, ("1", "12"), "finnhub")


def test_missing_conditions_and_zero_volume_are_valid() -> None:
    parsed = parse_frame(frame({"s": "BINANCE:BTCUSDT", "p": 7296.89, "t": NOW, "v": 0}), now=NOW)
    assert parsed.problems == []
    (trade,) = parsed.trades
    assert trade.conditions is None
    assert trade.volume == 0
    # the published message satisfies docs/interfaces/kafka-messages.md and keeps the price's digits
    assert parse_trade(to_json(trade), now=NOW) == trade
    assert b'"price":7296.89' in to_json(trade)


def test_invalid_trades_are_reported_and_the_valid_ones_kept() -> None:
    parsed = parse_frame(
        frame(
            {"s": "AAPL", "p": 1.5, "t": NOW, "v": 1},
            {"s": "AAPL", "p": -1, "t": NOW, "v": 1},
            {"s": "AAPL", "p": "1.5", "t": NOW, "v": 1},
            {"s": "AAPL", "t": NOW, "v": 1},
            {"s": "AAPL", "p": 1.5, "t": NOW * 1000, "v": 1},
            "junk",
            {"s": "MSFT", "p": 2.5, "t": NOW, "v": 3},
        ),
        now=NOW,
    )
    assert [t.symbol for t in parsed.trades] == ["AAPL", "MSFT"]
    assert len(parsed.problems) == 5
    assert "price: must be > 0" in parsed.problems[0]
    assert "price: must be a JSON number" in parsed.problems[1]
    assert "price: missing required field" in parsed.problems[2]
    assert "future" in parsed.problems[3]
    assert "not an object" in parsed.problems[4]


@pytest.mark.parametrize(
    ("text", "kind", "needle"),
    [
        ('{"type":"ping"}', "ping", None),
        ('{"type":"error","msg":"Subscribing to too many symbols"}', "error", None),
        ("not json", "malformed", "not valid JSON"),
        ("[1,2]", "malformed", "not a JSON object"),
        ('{"type":"trade"}', "malformed", "without a 'data' list"),
        ('{"type":"trade","data":[{"s":"A","p":NaN,"t":1,"v":1}]}', "malformed", "NaN"),
        ('{"type":"news"}', "other", "unknown frame type"),
    ],
)
def test_frame_kinds(text: str, kind: str, needle: str | None) -> None:
    parsed = parse_frame(text, now=NOW)
    assert parsed.kind == kind
    assert parsed.trades == []
    if needle:
        assert needle in parsed.problems[0]
    if kind == "error":
        assert parsed.message == "Subscribing to too many symbols"


def test_subscription_changes_touch_only_the_difference() -> None:
    add, remove = subscription_changes(["AAPL", "MSFT", "TSLA"], ["MSFT", "NVDA", "AAPL", "AMD"])
    assert add == ["NVDA", "AMD"]
    assert remove == ["TSLA"]
    assert subscription_changes(["A"], ["A"]) == ([], [])


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap() -> None:
    gen = iter(backoff_delays(0.5, 8.0, random.Random(1)))
    got = [next(gen) for _ in range(8)]
    caps = [0.5, 1, 2, 4, 8, 8, 8, 8]
    for value, cap in zip(got, caps, strict=True):
        assert cap / 2 <= value <= cap
    # jitter: two clients with different seeds do not retry in lock-step
    other = iter(backoff_delays(0.5, 8.0, random.Random(2)))
    assert [next(other) for _ in range(8)] != got
