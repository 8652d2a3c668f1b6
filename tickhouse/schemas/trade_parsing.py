"""Parsing trades, the hot path of the drain and the alert service: three fast paths for payloads a
producer's compact JSON writes, and the full checks (`tickhouse.schemas.validation`) behind them.

Each fast path takes a payload only when its decoded value re-encodes to the payload byte for byte and
every field is plainly valid; everything else goes to the full checks, which decide and word the
error. So the fast paths accept nothing the full checks reject (tests/unit/test_schemas.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from decimal import Decimal
from typing import Any

import msgspec

from tickhouse.config import SYMBOL_PATTERN
from tickhouse.schemas.records import MAX_FUTURE_MS, MAX_PAYLOAD_BYTES, Number, Trade, now_ms
from tickhouse.schemas.validation import (
    MAX_PRODUCER_SEQ,
    PRODUCER_ID_MATCH,
    decode_object,
    validate_trade_fully,
)

_SYMBOL_FULLMATCH = SYMBOL_PATTERN.fullmatch
# symbols that passed SYMBOL_PATTERN: a dict lookup instead of a regex per trade. Bounded: a producer
# that invents symbols only makes the cache start over.
_VALID_SYMBOLS: dict[str, None] = {}
_VALID_SYMBOLS_MAX = 65_536
# ints the fast path takes: far inside a double's range, so `_number`'s range check cannot fail
_FAST_INT_LIMIT = 1 << 63


def _valid_symbol(symbol: str) -> bool:
    if symbol in _VALID_SYMBOLS:
        return True
    if _SYMBOL_FULLMATCH(symbol) is None:
        return False
    if len(_VALID_SYMBOLS) >= _VALID_SYMBOLS_MAX:
        _VALID_SYMBOLS.clear()
    _VALID_SYMBOLS[symbol] = None
    return True


def _plain_number(value: object, positive: bool) -> bool:
    """True when `value` certainly passes `_number` unchanged (a cheap check for the hot path).

    Decimal zeros are left to `_number`, which folds -0 and 0E-10 into one zero."""
    if type(value) is int:
        return (value > 0 if positive else value >= 0) and value < _FAST_INT_LIMIT
    if type(value) is Decimal:
        # adjusted() is the decimal exponent: |value| < 1e307 fits a double comfortably
        return value.is_finite() and value > 0 and value.adjusted() < 307
    return False


_TradeMaker = Callable[
    [str, Number, Number, int, "tuple[str, ...] | None", "str | None", "str | None", "int | None"], "Trade"
]


def _trade_maker() -> _TradeMaker:
    """A constructor of Trade that sets its slots directly: a frozen dataclass's generated
    `__init__` goes through `object.__setattr__` per field, which doubles the cost of the hot path."""
    new = object.__new__
    setters = [getattr(Trade, f.name).__set__ for f in fields(Trade)]
    assert len(setters) == 8
    s_symbol, s_price, s_volume, s_ts, s_conditions, s_source, s_producer_id, s_producer_seq = setters

    def make(
        symbol: str,
        price: Number,
        volume: Number,
        ts: int,
        conditions: tuple[str, ...] | None,
        source: str | None,
        producer_id: str | None,
        producer_seq: int | None,
    ) -> Trade:
        trade = new(Trade)
        s_symbol(trade, symbol)
        s_price(trade, price)
        s_volume(trade, volume)
        s_ts(trade, ts)
        s_conditions(trade, conditions)
        s_source(trade, source)
        s_producer_id(trade, producer_id)
        s_producer_seq(trade, producer_seq)
        return trade

    return make


_new_trade = _trade_maker()


def _fast_trade(obj: dict[str, Any], current: int) -> Trade | None:
    """The Trade when every field is plainly valid, else None (the full checks decide)."""
    symbol: Any = obj.get("symbol")
    price: Any = obj.get("price")
    volume: Any = obj.get("volume")
    ts: Any = obj.get("ts")
    conditions: Any = obj.get("conditions")
    source: Any = obj.get("source")
    producer_id: Any = obj.get("producer_id")
    producer_seq: Any = obj.get("producer_seq")
    if (
        type(symbol) is str
        and _valid_symbol(symbol)
        and _plain_number(price, positive=True)
        and _plain_number(volume, positive=False)
        and type(ts) is int
        and 0 <= ts <= current + MAX_FUTURE_MS
        and (source is None or type(source) is str)
        and (conditions is None or (type(conditions) is list and all(type(c) is str for c in conditions)))
        and _plain_identity(producer_id, producer_seq)
    ):
        return _new_trade(
            symbol, price, volume, ts, tuple(conditions) if conditions is not None else None, source,
            producer_id, producer_seq,
        )
    return None


def _plain_identity(producer_id: object, producer_seq: object) -> bool:
    """True when the identity certainly passes `_identity` (a cheap check for the hot path)."""
    if producer_id is None:
        return producer_seq is None
    return (
        type(producer_id) is str
        and PRODUCER_ID_MATCH(producer_id) is not None
        and type(producer_seq) is int
        and 0 <= producer_seq <= MAX_PRODUCER_SEQ
    )


def validate_trade(obj: dict[str, Any], now: int | None = None) -> Trade:
    """A decoded JSON object -> Trade, or InvalidMessage naming the first problem."""
    current = now_ms() if now is None else now
    # Hot path for well-formed trades; anything unusual takes the full checks below, which
    # decide and word the error.
    trade = _fast_trade(obj, current)
    if trade is not None:
        return trade
    return validate_trade_fully(obj, current)


# The fast decoder: JSON numbers with a fraction or exponent become Decimal from their literal text,
# as the full decoder's parse_float does; the encoder writes them back as that text.
_FAST_DECODE = msgspec.json.Decoder(float_hook=Decimal).decode
_CANONICAL_ENCODE = msgspec.json.Encoder(decimal_format="number").encode


def _canonical_object(payload: object) -> dict[str, Any] | None:
    """The JSON object of `payload` when the payload is exactly its canonical compact encoding
    (which rules out duplicated keys, at any depth: re-encoding a dict writes each key once);
    None when it is anything else, valid or not."""
    if type(payload) is not bytes or len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        obj = _FAST_DECODE(payload)
    except (ValueError, RecursionError):  # msgspec.DecodeError, UnicodeDecodeError
        return None
    if type(obj) is not dict or _CANONICAL_ENCODE(obj) != payload:
        return None
    return obj


# The same for code that computes with doubles (the alert rules): JSON numbers with a fraction or
# exponent become floats, and the canonical check compares with their shortest repr.
_FLOAT_DECODE = msgspec.json.Decoder().decode
_FLOAT_ENCODE = msgspec.json.Encoder().encode
_NUMBER_TYPES = (int, float)


def parse_trade_values(payload: bytes | None, now: int | None = None) -> tuple[str, float, float, int]:
    """(symbol, price, volume, ts) of a trades message: `parse_trade_fields` without the conditions."""
    return parse_trade_fields(payload, now)[:4]


def parse_trade_fields(
    payload: bytes | None, now: int | None = None
) -> tuple[str, float, float, int, tuple[str, ...] | list[str] | None]:
    """(symbol, price, volume, ts, conditions) of a trades message, price and volume as doubles:
    what `parse_trade` accepts, with the same errors, without building Decimals and a Trade.

    The fast path takes a payload only when it is exactly the compact encoding of what it decodes
    to, so each number is the shortest text of its double: finite, in range, and positive exactly
    when `parse_trade`'s Decimal is. Everything else goes through `parse_trade`."""
    current = now_ms() if now is None else now
    if type(payload) is bytes and len(payload) <= MAX_PAYLOAD_BYTES:
        try:
            obj = _FLOAT_DECODE(payload)
        except (ValueError, RecursionError):
            obj = None
        if type(obj) is dict and _FLOAT_ENCODE(obj) == payload:
            symbol: Any = obj.get("symbol")
            price: Any = obj.get("price")
            volume: Any = obj.get("volume")
            ts: Any = obj.get("ts")
            conditions: Any = obj.get("conditions")
            source: Any = obj.get("source")
            if (
                type(symbol) is str
                and _valid_symbol(symbol)
                and type(price) in _NUMBER_TYPES
                and 0 < price < _FAST_INT_LIMIT
                and type(volume) in _NUMBER_TYPES
                and 0 <= volume < _FAST_INT_LIMIT
                and type(ts) is int
                and 0 <= ts <= current + MAX_FUTURE_MS
                and (source is None or type(source) is str)
                and (
                    conditions is None
                    or (type(conditions) is list and all(type(c) is str for c in conditions))
                )
                and _plain_identity(obj.get("producer_id"), obj.get("producer_seq"))
            ):
                return symbol, float(price), float(volume), ts, conditions
    trade = parse_trade(payload, current)
    return trade.symbol, float(trade.price), float(trade.volume), trade.ts, trade.conditions


class WireTrade(msgspec.Struct, omit_defaults=True, gc=False):
    """A trade as a producer's compact JSON writes it, its numbers still as their JSON text: what
    `wire_trade` gives when every field is plainly valid (docs/interfaces/kafka-messages.md)."""

    symbol: str
    price: msgspec.Raw
    volume: msgspec.Raw
    ts: int
    conditions: list[str] | None = None
    source: str | None = None
    producer_id: str | None = None
    producer_seq: int | None = None


_WIRE_DECODE = msgspec.json.Decoder(WireTrade).decode
_WIRE_ENCODE = msgspec.json.Encoder().encode
# A number the wire path takes: plain digits, no sign, no exponent, at most 18 digits either side of
# the point, so it is finite, inside a double's range, its double is 0 only when it is 0, and its
# text is what `str` of the full checks' int or Decimal writes (anything else: the full checks).
_PLAIN_DIGITS = re.compile(rb"(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,18})?").fullmatch


def wire_trade(payload: bytes | None, now: int | None = None) -> WireTrade | None:
    """The trade of `payload` with its numbers as their JSON text, when the payload is exactly the
    compact encoding of a plainly valid trade; None for anything else, valid or not (then
    `parse_trade` decides, and words the error).

    The one fast path of every trade consumer: `parse_trade` builds its record from it, the alert
    service reads doubles from it (`parse_trade_values`), the drain writes the number texts into
    its COPY lines as they are. Re-encoding the decoded struct must give back the payload byte for
    byte, which rules out duplicated keys, whitespace, escapes that could hide a key, extra keys
    and other key orders; tests/unit/test_schemas.py holds it against the full checks."""
    if type(payload) is not bytes or len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        wire = _WIRE_DECODE(payload)
        if _WIRE_ENCODE(wire) != payload:
            return None
    except (ValueError, RecursionError):  # msgspec.DecodeError / ValidationError, bad Unicode
        return None
    price = bytes(wire.price)
    volume = bytes(wire.volume)
    ts = wire.ts
    if (
        _PLAIN_DIGITS(price) is not None
        and float(price) > 0
        and _PLAIN_DIGITS(volume) is not None
        # a zero is written "0" by the full checks (they fold 0.0 and 0E-5 into one zero)
        and (volume == b"0" or float(volume) > 0)
        and 0 <= ts <= (now_ms() if now is None else now) + MAX_FUTURE_MS
        and _valid_symbol(wire.symbol)
        and _plain_identity(wire.producer_id, wire.producer_seq)
    ):
        return wire
    return None


def _wire_number(text: bytes) -> Number:
    """The full checks' value of a plain JSON number: int without a point, else its Decimal."""
    return Decimal(text.decode("ascii")) if b"." in text else int(text)


def parse_trade_fully(payload: bytes | None, now: int | None = None) -> Trade:
    """`parse_trade` without any fast path: the reference the fast paths are tested against."""
    return validate_trade_fully(decode_object(payload), now_ms() if now is None else now)


def parse_trade(payload: bytes | None, now: int | None = None) -> Trade:
    """Message bytes from `market.trades` -> Trade (raises InvalidMessage)."""
    current = now_ms() if now is None else now
    wire = wire_trade(payload, current)
    if wire is not None:
        conditions = wire.conditions
        return _new_trade(
            wire.symbol,
            _wire_number(bytes(wire.price)),
            _wire_number(bytes(wire.volume)),
            wire.ts,
            tuple(conditions) if conditions is not None else None,
            wire.source,
            wire.producer_id,
            wire.producer_seq,
        )
    obj = _canonical_object(payload)
    if obj is not None:
        trade = _fast_trade(obj, current)
        if trade is not None:
            return trade
    return validate_trade(decode_object(payload), current)
