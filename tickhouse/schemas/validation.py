"""The full checks of a message (docs/interfaces/kafka-messages.md): strict JSON decoding, one rule per
field, and the parsers of quotes, alerts and candles. Trades take these checks too when their fast
paths (`tickhouse.schemas.trade_parsing`) do not decide; the checks word every error."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from tickhouse.config import SYMBOL_PATTERN
from tickhouse.schemas.records import (
    MAX_FUTURE_MS,
    MAX_PAYLOAD_BYTES,
    RESOLUTIONS,
    SEVERITIES,
    Alert,
    Candle,
    InvalidMessage,
    Quote,
    Trade,
    now_ms,
)


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
PRODUCER_ID_MATCH = PRODUCER_ID_PATTERN.fullmatch
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
    if not isinstance(producer_id, str) or not PRODUCER_ID_MATCH(producer_id):
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


def validate_trade_fully(obj: dict[str, Any], current: int) -> Trade:
    """Every check of a trade, no fast path: the reference the fast paths are held against."""
    symbol = _symbol(obj)
    price = _number(obj, "price", minimum="positive")
    volume = _number(obj, "volume", minimum="non-negative")
    ts = _epoch_ms(obj, "ts", current)
    conditions = _conditions(obj)
    source = _optional_string(obj, "source")
    producer_id, producer_seq = _identity(obj)
    return Trade(symbol, price, volume, ts, conditions, source, producer_id, producer_seq)


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
