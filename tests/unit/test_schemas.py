"""Message schemas (CONTRACT §3): good messages parse exactly, every kind of bad input is rejected
with a reason that names the problem."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tickhouse.schemas import (
    Alert,
    InvalidMessage,
    Quote,
    Trade,
    parse_alert,
    parse_quote,
    parse_trade,
    to_json,
)

NOW = 1_763_649_000_000  # 2025-11-20T14:30:00Z


def test_contract_example_trade_parses_with_exact_decimals() -> None:
    raw = (
        b'{"symbol": "AAPL", "price": 178.45, "volume": 100, "ts": 1763649000123, '
        b'"conditions": ["1","12"], "source": "finnhub"}'
    )
    trade = parse_trade(raw, now=NOW)
    assert trade == Trade("AAPL", Decimal("178.45"), 100, 1763649000123, ("1", "12"), "finnhub")
    assert str(trade.price) == "178.45"


def test_optional_fields_and_extra_keys() -> None:
    trade = parse_trade(b'{"symbol":"BRK.B","price":1,"volume":0,"ts":0,"extra":{"x":[1]}}', now=NOW)
    assert (trade.conditions, trade.source, trade.volume) == (None, None, 0)


def test_round_trip_through_json() -> None:
    trade = Trade("BINANCE:BTCUSDT", 97123.5, 0.0031, NOW, None, "synthetic")
    again = parse_trade(to_json(trade), now=NOW)
    assert (again.symbol, float(again.price), float(again.volume), again.ts) == (
        "BINANCE:BTCUSDT",
        97123.5,
        0.0031,
        NOW,
    )
    quote = Quote("AAPL", 178.1, -0.5, -0.28, 179.0, 177.2, 178.0, 178.6, NOW, "finnhub")
    assert parse_quote(to_json(quote), now=NOW).high == Decimal("179.0")
    alert = Alert("a1", "AAPL", "price_move", "warning", "up 2%", NOW, NOW + 3, {"pct": 2, "rule": "x"})
    assert parse_alert(to_json(alert), now=NOW) == alert


BAD_TRADES = [
    (None, "empty message"),
    (b"", "empty message"),
    (b"\xff\xfe\x00", "not UTF-8"),
    (b"not json", "not valid JSON"),
    (b'["AAPL", 1]', "not a JSON object"),
    (b'"AAPL"', "not a JSON object"),
    (b'{"symbol":"AAPL","symbol":"MSFT","price":1,"volume":1,"ts":1}', "duplicated key 'symbol'"),
    (b'{"symbol":"AAPL","price":NaN,"volume":1,"ts":1}', "NaN"),
    (b'{"symbol":"AAPL","price":Infinity,"volume":1,"ts":1}', "Infinity"),
    (b'{"symbol":"AAPL","price":1e309,"volume":1,"ts":1}', "price: out of range"),
    (b'{"symbol":"AAPL","price":"178.45","volume":1,"ts":1}', "price: must be a JSON number, got string"),
    (b'{"symbol":"AAPL","price":true,"volume":1,"ts":1}', "price: must be a JSON number, got boolean"),
    (b'{"symbol":"AAPL","price":0,"volume":1,"ts":1}', "price: must be > 0"),
    (b'{"symbol":"AAPL","price":-1.5,"volume":1,"ts":1}', "price: must be > 0, got -1.5"),
    (b'{"symbol":"AAPL","price":1,"volume":-1,"ts":1}', "volume: must be >= 0"),
    (b'{"symbol":"AAPL","price":1,"ts":1}', "volume: missing"),
    (b'{"price":1,"volume":1,"ts":1}', "symbol: missing"),
    (b'{"symbol":"","price":1,"volume":1,"ts":1}', "symbol: must be 1-32"),
    (b'{"symbol":"A;DROP TABLE x","price":1,"volume":1,"ts":1}', "symbol: must be 1-32"),
    (b'{"symbol":"' + b"A" * 33 + b'","price":1,"volume":1,"ts":1}', "symbol: must be 1-32"),
    (b'{"symbol":7,"price":1,"volume":1,"ts":1}', "symbol: must be a string"),
    (b'{"symbol":"AAPL","price":1,"volume":1,"ts":1.5}', "ts: must be integer epoch milliseconds"),
    (b'{"symbol":"AAPL","price":1,"volume":1,"ts":"1"}', "ts: must be integer epoch milliseconds"),
    (b'{"symbol":"AAPL","price":1,"volume":1,"ts":-1}', "ts: must be >= 0"),
    (b'{"symbol":"AAPL","price":1,"volume":1,"ts":1763649000123000}', "more than one day in the future"),
    (b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"conditions":"1"}', "conditions: must be a list"),
    (b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"conditions":[1]}', "conditions: every item"),
    (b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"source":5}', "source: must be a string"),
    (b'{"symbol":"AAPL","price":1,"volume":1,"ts":' + b"9" * 5000 + b"}", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "payload too large"),
    (b"[" * 20_000 + b"]" * 20_000, "nested too deeply"),
    (
        json.dumps({"symbol": "AAPL", "price": 1, "volume": 1, "ts": 1, "pad": "x" * 70_000}).encode(),
        "payload too large",
    ),
]


@pytest.mark.parametrize(("payload", "reason"), BAD_TRADES)
def test_bad_trades_are_rejected_with_a_reason(payload: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidMessage) as err:
        parse_trade(payload, now=NOW)
    assert reason in str(err.value)


def test_timestamp_bounds_are_inclusive_at_one_day_ahead() -> None:
    day = 24 * 3600 * 1000
    ok = parse_trade(json.dumps({"symbol": "A", "price": 1, "volume": 1, "ts": NOW + day}).encode(), now=NOW)
    assert ok.ts == NOW + day
    with pytest.raises(InvalidMessage, match="future"):
        parse_trade(
            json.dumps({"symbol": "A", "price": 1, "volume": 1, "ts": NOW + day + 1}).encode(), now=NOW
        )


def test_negative_zero_volume_is_zero() -> None:
    trade = parse_trade(b'{"symbol":"A","price":1,"volume":-0.0,"ts":1}', now=NOW)
    assert trade.volume == 0 and not str(trade.volume).startswith("-")


def test_quote_and_alert_rules() -> None:
    quote = {
        "symbol": "AAPL",
        "price": 1,
        "change": None,
        "change_pct": None,
        "high": 2,
        "low": 1,
        "open": 1,
        "prev_close": 1,
        "ts": NOW,
    }
    assert parse_quote(json.dumps(quote).encode(), now=NOW).change is None
    with pytest.raises(InvalidMessage, match="high: must be a JSON number"):
        parse_quote(json.dumps({**quote, "high": "2"}).encode(), now=NOW)
    alert = {
        "alert_id": "x",
        "symbol": "AAPL",
        "rule": "r",
        "severity": "loud",
        "message": "m",
        "trade_ts": NOW,
        "detected_ts": NOW,
        "details": {},
    }
    with pytest.raises(InvalidMessage, match="severity: must be one of"):
        parse_alert(json.dumps(alert).encode(), now=NOW)


@pytest.mark.parametrize(
    ("price", "volume", "reason"),
    [
        (Decimal("NaN"), 1, "price: must be finite"),
        (Decimal("Infinity"), 1, "price: must be finite"),
        (Decimal("1e400"), 1, "price: out of range"),
        (Decimal("-0.0"), 1, "price: must be > 0"),
        (1, Decimal("-1E-30"), "volume: must be >= 0"),
        (True, 1, "price: must be a JSON number"),
        (1.5, 1, "price: must be a JSON number"),  # objects from JSON carry Decimal, never float
    ],
)
def test_validate_trade_hot_path_never_admits_what_the_full_checks_reject(
    price: object, volume: object, reason: str
) -> None:
    from tickhouse.schemas import validate_trade

    with pytest.raises(InvalidMessage, match=reason):
        validate_trade({"symbol": "AAPL", "price": price, "volume": volume, "ts": NOW}, now=NOW)


def test_validate_trade_hot_path_normalizes_decimal_zero_volume() -> None:
    from tickhouse.schemas import validate_trade

    trade = validate_trade({"symbol": "AAPL", "price": 1, "volume": Decimal("-0E-5"), "ts": NOW}, now=NOW)
    assert trade.volume == 0 and str(trade.volume) == "0"
