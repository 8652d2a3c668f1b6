"""The one definition of Tickhouse's Kafka messages (docs/interfaces/kafka-messages.md): records, parsing,
validation.

The producer builds records and serializes them with `to_json`; the drain and the alert service parse
raw message bytes with `parse_trade` / `parse_quote` / `parse_alert`, which raise `InvalidMessage`
with a reason that names the problem and the offending value. Numbers are parsed as `Decimal` so that
the warehouse stores exactly the digits that were published.

A trade may carry the identity its producer gave it (`producer_id`, `producer_seq`, keys that
docs/interfaces/kafka-messages.md lists; the Tickhouse producer sets both on every trade,
producer/identity.py): a resend of the same message after a producer crash carries the same identity, and
the warehouse keeps its first load only. Other producers send none. Both or neither: a trade with only
one of them, or with a malformed one (`producer_id` not 1-64 chars of `A-Z a-z 0-9 _ -`, `producer_seq`
not an integer in [0, 2^63)), is bad input and quarantined, since deduplicating on a broken identity
could drop a genuine trade.

`wire_trade` is the fast path (msgspec) of the common case, a trade exactly as a producer's compact
JSON writes it with plain decimal numbers: it keeps the numbers as their JSON text, so the drain copies
them into its COPY lines as published and `parse_trade` builds its record from them. Behind it,
`parse_trade` has a second fast path for other compact payloads (numbers with an exponent, say).
Both decode the payload and re-encode it, and only when the two are byte for byte the same (so it has
no duplicated key, no whitespace, no escape that could hide one, no number written in a second
spelling) and the cheap field checks pass is the trade accepted there. Everything else, every
rejection included, goes through the full checks, which decide and word the error: the fast paths
accept nothing the full checks reject (tests/unit/test_schemas.py proves it with hypothesis).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

import msgspec

from tickhouse.config import SYMBOL_PATTERN

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_FUTURE_MS = 24 * 60 * 60 * 1000  # ts may be at most one day after now
SEVERITIES = ("info", "warning", "critical")
# Finnhub's candle resolutions (minutes, day, week, month), as `market.candles` carries them
RESOLUTIONS = ("1", "5", "15", "30", "60", "D", "W", "M")

Number = int | float | Decimal


class InvalidMessage(ValueError):
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


# --- parsing -----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise InvalidMessage(f"not valid JSON: {name} is not a JSON number")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise InvalidMessage(f"duplicated key {key!r} in JSON object")
        obj[key] = value
    return obj


# Built once: json.loads(text, **hooks) builds a new decoder and scanner on every call, which
# costs more than decoding a trade (the drain's hot path).
_DECODER = json.JSONDecoder(
    parse_float=Decimal,
    parse_constant=_reject_constant,
    object_pairs_hook=_no_duplicate_keys,
)


def decode_object(payload: bytes | None) -> dict[str, Any]:
    """Bytes -> JSON object, strictly: size, UTF-8, no NaN/Infinity, no duplicated keys."""
    if payload is None:
        raise InvalidMessage("empty message: the Kafka value is null")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidMessage(f"payload too large: {len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}")
    if not payload:
        raise InvalidMessage("empty message: the Kafka value has 0 bytes")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidMessage(f"not UTF-8: invalid byte at position {err.start}") from None
    try:
        if text.startswith("\ufeff"):  # as json.loads does
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except RecursionError:
        raise InvalidMessage("not valid JSON: nested too deeply") from None
    except InvalidMessage:
        raise
    except json.JSONDecodeError as err:
        raise InvalidMessage(f"not valid JSON: {err.msg} at position {err.pos}") from None
    except ValueError as err:  # e.g. an integer literal with more digits than Python converts
        raise InvalidMessage(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise InvalidMessage(f"not a JSON object: got a JSON {_json_type(value)}")
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _show(value: object) -> str:
    text = json.dumps(value, default=str, ensure_ascii=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _require(obj: dict[str, Any], key: str) -> Any:
    if key not in obj:
        raise InvalidMessage(f"{key}: missing required field")
    return obj[key]


def _symbol(obj: dict[str, Any]) -> str:
    value = _require(obj, "symbol")
    if not isinstance(value, str):
        raise InvalidMessage(f"symbol: must be a string, got {_json_type(value)} {_show(value)}")
    if not SYMBOL_PATTERN.fullmatch(value):
        raise InvalidMessage(f"symbol: must be 1-32 chars of A-Z a-z 0-9 . : - _ / ^ =, got {_show(value)}")
    return value


def _number(obj: dict[str, Any], key: str, *, minimum: str, nullable: bool = False) -> Any:
    """A finite JSON number; `minimum` is 'positive', 'non-negative' or 'any'."""
    if nullable and obj.get(key) is None:
        return None
    value = _require(obj, key)
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise InvalidMessage(f"{key}: must be a JSON number, got {_json_type(value)} {_show(value)}")
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidMessage(f"{key}: must be finite, got {value}")
    try:
        in_range = math.isfinite(float(value))
    except OverflowError:
        in_range = False
    if not in_range:
        raise InvalidMessage(f"{key}: out of range for a double, got {_show(str(value))}")
    if minimum == "positive" and not value > 0:
        raise InvalidMessage(f"{key}: must be > 0, got {value}")
    if minimum == "non-negative" and value < 0:
        raise InvalidMessage(f"{key}: must be >= 0, got {value}")
    if isinstance(value, Decimal) and value == 0:
        return Decimal(0)  # folds -0 and 0E-10 into one zero
    return value


def _epoch_ms(obj: dict[str, Any], key: str, now: int) -> int:
    value = _require(obj, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMessage(
            f"{key}: must be integer epoch milliseconds, got {_json_type(value)} {_show(value)}"
        )
    if value < 0:
        raise InvalidMessage(f"{key}: must be >= 0 (epoch milliseconds), got {value}")
    if value > now + MAX_FUTURE_MS:
        raise InvalidMessage(
            f"{key}: {value} is more than one day in the future (now is {now}); "
            "is it in microseconds or nanoseconds instead of milliseconds?"
        )
    return value


def _optional_string(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidMessage(f"{key}: must be a string, got {_json_type(value)} {_show(value)}")
    return value


def _conditions(obj: dict[str, Any]) -> tuple[str, ...] | None:
    value = obj.get("conditions")
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidMessage(f"conditions: must be a list of strings, got {_json_type(value)} {_show(value)}")
    for item in value:
        if not isinstance(item, str):
            raise InvalidMessage(
                f"conditions: every item must be a string, got {_json_type(item)} {_show(item)}"
            )
    return tuple(value)


PRODUCER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PRODUCER_ID_FULLMATCH = PRODUCER_ID_PATTERN.fullmatch
MAX_PRODUCER_SEQ = (1 << 63) - 1  # a bigint


def _identity(obj: dict[str, Any]) -> tuple[str | None, int | None]:
    """(producer_id, producer_seq): both absent (null counts as absent), or both valid."""
    producer_id = obj.get("producer_id")
    producer_seq = obj.get("producer_seq")
    if producer_id is None and producer_seq is None:
        return None, None
    if producer_id is None or producer_seq is None:
        present, missing = ("producer_seq", "producer_id") if producer_id is None else (
            "producer_id", "producer_seq")
        raise InvalidMessage(
            f"{missing}: missing, but {present} is set; a trade's producer identity needs both"
        )
    if not isinstance(producer_id, str) or not _PRODUCER_ID_FULLMATCH(producer_id):
        raise InvalidMessage(
            f"producer_id: must be 1-64 chars of A-Z a-z 0-9 _ -, got {_json_type(producer_id)} "
            f"{_show(producer_id)}"
        )
    if isinstance(producer_seq, bool) or not isinstance(producer_seq, int):
        raise InvalidMessage(
            f"producer_seq: must be an integer, got {_json_type(producer_seq)} {_show(producer_seq)}"
        )
    if not 0 <= producer_seq <= MAX_PRODUCER_SEQ:
        raise InvalidMessage(f"producer_seq: must be between 0 and {MAX_PRODUCER_SEQ}, got {producer_seq}")
    return producer_id, producer_seq


def _plain_identity(producer_id: object, producer_seq: object) -> bool:
    """True when the identity certainly passes `_identity` (a cheap check for the hot path)."""
    if producer_id is None:
        return producer_seq is None
    return (
        type(producer_id) is str
        and _PRODUCER_ID_FULLMATCH(producer_id) is not None
        and type(producer_seq) is int
        and 0 <= producer_seq <= MAX_PRODUCER_SEQ
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


def validate_trade(obj: dict[str, Any], now: int | None = None) -> Trade:
    """A decoded JSON object -> Trade, or InvalidMessage naming the first problem."""
    current = now_ms() if now is None else now
    # Hot path for well-formed trades; anything unusual takes the full checks below, which
    # decide and word the error.
    trade = _fast_trade(obj, current)
    if trade is not None:
        return trade
    return _validate_trade_full(obj, current)


def _validate_trade_full(obj: dict[str, Any], current: int) -> Trade:
    symbol = _symbol(obj)
    price = _number(obj, "price", minimum="positive")
    volume = _number(obj, "volume", minimum="non-negative")
    ts = _epoch_ms(obj, "ts", current)
    conditions = _conditions(obj)
    source = _optional_string(obj, "source")
    producer_id, producer_seq = _identity(obj)
    return Trade(symbol, price, volume, ts, conditions, source, producer_id, producer_seq)


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


def _parse_trade_full(payload: bytes | None, now: int | None = None) -> Trade:
    """`parse_trade` without any fast path: the reference the fast paths are tested against."""
    return _validate_trade_full(decode_object(payload), now_ms() if now is None else now)


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


def validate_quote(obj: dict[str, Any], now: int | None = None) -> Quote:
    current = now_ms() if now is None else now
    return Quote(
        symbol=_symbol(obj),
        price=_number(obj, "price", minimum="positive"),
        change=_number(obj, "change", minimum="any", nullable=True),
        change_pct=_number(obj, "change_pct", minimum="any", nullable=True),
        high=_number(obj, "high", minimum="non-negative"),
        low=_number(obj, "low", minimum="non-negative"),
        open=_number(obj, "open", minimum="non-negative"),
        prev_close=_number(obj, "prev_close", minimum="non-negative"),
        ts=_epoch_ms(obj, "ts", current),
        source=_optional_string(obj, "source"),
    )


def parse_quote(payload: bytes | None, now: int | None = None) -> Quote:
    """Message bytes from `market.quotes` -> Quote (raises InvalidMessage)."""
    return validate_quote(decode_object(payload), now)


def _string(obj: dict[str, Any], key: str, max_len: int = 1024) -> str:
    value = _require(obj, key)
    if not isinstance(value, str) or not value:
        raise InvalidMessage(f"{key}: must be a non-empty string, got {_json_type(value)} {_show(value)}")
    if len(value) > max_len:
        raise InvalidMessage(f"{key}: longer than {max_len} characters")
    return value


def validate_alert(obj: dict[str, Any], now: int | None = None) -> Alert:
    current = now_ms() if now is None else now
    severity = _string(obj, "severity", 16)
    if severity not in SEVERITIES:
        raise InvalidMessage(f"severity: must be one of {', '.join(SEVERITIES)}, got {_show(severity)}")
    details = obj.get("details", {})
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise InvalidMessage(f"details: must be a JSON object, got {_json_type(details)}")
    return Alert(
        alert_id=_string(obj, "alert_id", 128),
        symbol=_symbol(obj),
        rule=_string(obj, "rule", 64),
        severity=severity,
        message=_string(obj, "message", 4096),
        trade_ts=_epoch_ms(obj, "trade_ts", current),
        detected_ts=_epoch_ms(obj, "detected_ts", current),
        details=details,
    )


def parse_alert(payload: bytes | None, now: int | None = None) -> Alert:
    """Message bytes from `market.alerts` -> Alert (raises InvalidMessage)."""
    return validate_alert(decode_object(payload), now)


def validate_candle(obj: dict[str, Any], now: int | None = None) -> Candle:
    """A decoded JSON object -> Candle, or InvalidMessage naming the first problem.

    Beyond the field rules of trades, a candle must be a bar: low <= open, close <= high.
    """
    current = now_ms() if now is None else now
    symbol = _symbol(obj)
    resolution = _require(obj, "resolution")
    if not isinstance(resolution, str):
        raise InvalidMessage(
            f"resolution: must be a string, one of {', '.join(RESOLUTIONS)}, "
            f"got {_json_type(resolution)} {_show(resolution)}"
        )
    if resolution not in RESOLUTIONS:
        raise InvalidMessage(f"resolution: must be one of {', '.join(RESOLUTIONS)}, got {_show(resolution)}")
    candle = Candle(
        symbol=symbol,
        resolution=resolution,
        bar_start=_epoch_ms(obj, "bar_start", current),
        open=_number(obj, "open", minimum="positive"),
        high=_number(obj, "high", minimum="positive"),
        low=_number(obj, "low", minimum="positive"),
        close=_number(obj, "close", minimum="positive"),
        volume=_number(obj, "volume", minimum="non-negative"),
        source=_optional_string(obj, "source"),
    )
    if not candle.low <= candle.high:
        raise InvalidMessage(f"low {candle.low} is above high {candle.high}")
    for name in ("open", "close"):
        value = getattr(candle, name)
        if not candle.low <= value <= candle.high:
            raise InvalidMessage(
                f"{name} {value} is outside the candle's range [low {candle.low}, high {candle.high}]"
            )
    return candle


def parse_candle(payload: bytes | None, now: int | None = None) -> Candle:
    """Message bytes from `market.candles` -> Candle (raises InvalidMessage)."""
    return validate_candle(decode_object(payload), now)
