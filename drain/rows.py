"""Kafka message -> one line of PostgreSQL COPY text for its raw table, or the reason it is bad.

Validation is the one in `tickhouse.schemas` (CONTRACT §3); on top of it this module rejects the few
values §3 admits but PostgreSQL cannot store (a NUL character in text, a lone UTF-16 surrogate,
more than 16383 digits after the decimal point), so that bad input can never fail a COPY.

Lines are built by hand in COPY's text format because it is the fastest path from Python (see
bench/bench_drain.py, which measures it against psycopg's binary `write_row`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tickhouse.schemas import InvalidMessage, parse_alert, parse_candle, parse_quote, parse_trade

MS_PER_DAY = 86_400_000
# PostgreSQL numeric keeps at most 16383 digits after the decimal point
_MAX_NUMERIC_SCALE = 16383
# 10000-01-01T00:00:00Z: timestamptz text beyond this year is not what we want to write
_MAX_TIMESTAMP_MS = 253_402_300_800_000

COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": (
        "symbol", "price", "volume", "ts", "event_time", "conditions", "source",
        "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp",
    ),
    "quotes": (
        "symbol", "price", "change", "change_pct", "high", "low", "open", "prev_close", "ts",
        "event_time", "source", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp",
    ),
    "alerts": (
        "alert_id", "symbol", "rule", "severity", "message", "trade_ts", "detected_ts",
        "event_time", "details", "kafka_topic", "kafka_partition", "kafka_offset",
        "kafka_timestamp",
    ),
    "candles": (
        "symbol", "resolution", "bar_start", "event_time", "open", "high", "low", "close",
        "volume", "source", "kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp",
    ),
    "quarantine": (
        "kafka_topic", "kafka_partition", "kafka_offset", "kafka_key", "kafka_timestamp",
        "payload", "payload_length", "payload_sha256", "error",
    ),
}

TABLES = {
    "trades": "raw.trades",
    "quotes": "raw.quotes",
    "alerts": "raw.alerts",
    "candles": "raw.candles",
}

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"


def copy_text(value: str) -> str:
    """Escape a string for one field of COPY text format."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPES)
    return value


def copy_optional(value: str | None) -> str:
    return NULL if value is None else copy_text(value)


def copy_bytea(value: bytes | None) -> str:
    """bytea in hex form, its backslash escaped for COPY text."""
    return NULL if value is None else "\\\\x" + value.hex()


_second_cache: dict[int, str] = {}


def copy_timestamp(ms: int) -> str:
    """Epoch milliseconds -> timestamptz text in UTC ('2025-11-20 14:30:00.123+00')."""
    seconds, millis = divmod(ms, 1000)
    prefix = _second_cache.get(seconds)
    if prefix is None:
        if len(_second_cache) > 100_000:
            _second_cache.clear()
        prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
        _second_cache[seconds] = prefix
    return f"{prefix}.{millis:03d}+00"


def kafka_timestamp(ms: int | None) -> str:
    """The message's Kafka timestamp, or NULL when it has none or it is out of range."""
    if ms is None or not 0 <= ms < _MAX_TIMESTAMP_MS:
        return NULL
    return copy_timestamp(ms)


_array_cache: dict[tuple[str, ...], str] = {}


def copy_text_array(items: tuple[str, ...] | None) -> str:
    """A text[] literal for COPY text ('{"1","12"}'), cached: trade conditions repeat a lot."""
    if items is None:
        return NULL
    cached = _array_cache.get(items)
    if cached is None:
        quoted = ('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items)
        cached = copy_text("{" + ",".join(quoted) + "}")
        if len(_array_cache) < 10_000:
            _array_cache[items] = cached
    return cached


def _numeric(key: str, value: int | float | Decimal) -> str:
    text = str(value)
    # plain numbers are short; only very long or exponent forms can exceed numeric's scale
    if (len(text) > 64 or "E" in text) and isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -_MAX_NUMERIC_SCALE:
            raise InvalidMessage(
                f"{key}: {-exponent} digits after the decimal point, PostgreSQL numeric keeps at "
                f"most {_MAX_NUMERIC_SCALE}"
            )
    return text


def _optional_numeric(key: str, value: int | float | Decimal | None) -> str:
    return NULL if value is None else _numeric(key, value)


def _has_char(value: Any, char: str) -> bool:
    """Whether a string anywhere inside `value` (keys included) contains `char`."""
    if isinstance(value, str):
        return char in value
    if isinstance(value, dict):
        return any(_has_char(k, char) or _has_char(v, char) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_char(v, char) for v in value)
    return False


def _has_nul(value: Any) -> bool:
    return _has_char(value, "\x00")


def _finish(line: str, fields: dict[str, Any]) -> bytes:
    if "\x00" in line:
        bad = next((name for name, value in fields.items() if _has_nul(value)), "a text field")
        raise InvalidMessage(
            f"{bad}: contains a NUL character (\\u0000), which PostgreSQL text cannot store"
        )
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError as err:
        bad_char = line[err.start]
        bad = next(
            (name for name, value in fields.items() if _has_char(value, bad_char)), "a text field"
        )
        raise InvalidMessage(
            f"{bad}: contains a lone UTF-16 surrogate \\u{ord(bad_char):04x}, which is not "
            "valid Unicode"
        ) from None


def _json_number(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def trade_line(
    payload: bytes | None, topic: str, partition: int, offset: int, kafka_ts: int | None
) -> tuple[bytes, int]:
    """A trades message -> (COPY line, event time in ms); raises InvalidMessage."""
    t = parse_trade(payload)
    line = (
        f"{t.symbol}\t{_numeric('price', t.price)}\t{_numeric('volume', t.volume)}\t{t.ts}\t"
        f"{copy_timestamp(t.ts)}\t{copy_text_array(t.conditions)}\t{copy_optional(t.source)}\t"
        f"{topic}\t{partition}\t{offset}\t{kafka_timestamp(kafka_ts)}\n"
    )
    # the common case: plain ASCII, nothing PostgreSQL could refuse
    if line.isascii() and "\x00" not in line:
        return line.encode("ascii"), t.ts
    return _finish(line, {"source": t.source, "conditions": t.conditions}), t.ts


def quote_line(
    payload: bytes | None, topic: str, partition: int, offset: int, kafka_ts: int | None
) -> tuple[bytes, int]:
    """A quotes message -> (COPY line, event time in ms); raises InvalidMessage."""
    q = parse_quote(payload)
    line = (
        f"{q.symbol}\t{_numeric('price', q.price)}\t{_optional_numeric('change', q.change)}\t"
        f"{_optional_numeric('change_pct', q.change_pct)}\t{_numeric('high', q.high)}\t"
        f"{_numeric('low', q.low)}\t{_numeric('open', q.open)}\t"
        f"{_numeric('prev_close', q.prev_close)}\t{q.ts}\t{copy_timestamp(q.ts)}\t"
        f"{copy_optional(q.source)}\t{topic}\t{partition}\t{offset}\t{kafka_timestamp(kafka_ts)}\n"
    )
    return _finish(line, {"source": q.source}), q.ts


def alert_line(
    payload: bytes | None, topic: str, partition: int, offset: int, kafka_ts: int | None
) -> tuple[bytes, int]:
    """An alerts message -> (COPY line, event time = trade_ts in ms); raises InvalidMessage."""
    a = parse_alert(payload)
    try:
        details = json.dumps(
            a.details, ensure_ascii=False, allow_nan=False, default=_json_number
        )
    except ValueError:
        raise InvalidMessage("details: contains a number out of range for a double") from None
    if _has_nul(a.details):
        raise InvalidMessage(
            "details: contains a NUL character (\\u0000), which PostgreSQL jsonb cannot store"
        )
    line = (
        f"{copy_text(a.alert_id)}\t{a.symbol}\t{copy_text(a.rule)}\t{a.severity}\t"
        f"{copy_text(a.message)}\t{a.trade_ts}\t{a.detected_ts}\t{copy_timestamp(a.trade_ts)}\t"
        f"{copy_text(details)}\t{topic}\t{partition}\t{offset}\t{kafka_timestamp(kafka_ts)}\n"
    )
    fields = {"alert_id": a.alert_id, "rule": a.rule, "message": a.message, "details": a.details}
    return _finish(line, fields), a.trade_ts


def candle_line(
    payload: bytes | None, topic: str, partition: int, offset: int, kafka_ts: int | None
) -> tuple[bytes, int]:
    """A candles message -> (COPY line, event time = bar_start in ms); raises InvalidMessage."""
    c = parse_candle(payload)
    line = (
        f"{c.symbol}\t{c.resolution}\t{c.bar_start}\t{copy_timestamp(c.bar_start)}\t"
        f"{_numeric('open', c.open)}\t{_numeric('high', c.high)}\t{_numeric('low', c.low)}\t"
        f"{_numeric('close', c.close)}\t{_numeric('volume', c.volume)}\t{copy_optional(c.source)}\t"
        f"{topic}\t{partition}\t{offset}\t{kafka_timestamp(kafka_ts)}\n"
    )
    return _finish(line, {"source": c.source}), c.bar_start


LINE_BUILDERS: dict[str, Callable[[bytes | None, str, int, int, int | None], tuple[bytes, int]]] = {
    "trades": trade_line,
    "quotes": quote_line,
    "alerts": alert_line,
    "candles": candle_line,
}


# What raw.quarantine keeps of a rejected message (CONTRACT §4): the payload up to the size a valid
# message may have, the key up to far more than a symbol needs, the reason up to a few lines. The
# full length and sha256 of the payload are kept beside it, so a row stays under ~70 KiB whatever
# a producer sends (Kafka accepts ~1 MB).
QUARANTINE_PAYLOAD_BYTES = 64 * 1024  # CONTRACT §4; also the most a valid message may have
QUARANTINE_KEY_BYTES = 1024
QUARANTINE_ERROR_CHARS = 2000


def quarantine_line(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    kafka_ts: int | None,
    payload: bytes | None,
    error: str,
) -> bytes:
    """One raw.quarantine row: the original bytes (at most the first 64 KiB), their full length
    and sha256, and why they were rejected."""
    reason = error.replace("\x00", "\\u0000")
    if len(reason) > QUARANTINE_ERROR_CHARS:
        reason = reason[: QUARANTINE_ERROR_CHARS - 3] + "..."
    if payload is None:
        length = sha256 = NULL
    else:
        length = str(len(payload))
        sha256 = copy_bytea(hashlib.sha256(payload).digest())
        payload = payload[:QUARANTINE_PAYLOAD_BYTES]
    if key is not None:
        key = key[:QUARANTINE_KEY_BYTES]
    line = (
        f"{topic}\t{partition}\t{offset}\t{copy_bytea(key)}\t{kafka_timestamp(kafka_ts)}\t"
        f"{copy_bytea(payload)}\t{length}\t{sha256}\t{copy_text(reason)}\n"
    )
    return line.encode("utf-8", errors="backslashreplace")
