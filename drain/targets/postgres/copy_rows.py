"""Typed rows -> lines of PostgreSQL COPY text, one per raw-table row (`ENCODING`).

Lines are built by hand in COPY's text format because it is the fastest path from Python (see
bench/bench_drain.py, which measures it against psycopg's binary `write_row`): this runs once per
message, so each encoder is one f-string with a fast path for the common case, plain ASCII. On top
of docs/interfaces/kafka-messages.md it refuses what PostgreSQL cannot store (text with NUL or a lone
surrogate, more than 16383 digits after the decimal point), so that bad input can never fail a COPY.
"""

from __future__ import annotations

import time
from decimal import Decimal

from drain.rows import Encoding, Rejected, check_storable, details_json, text_fields
from tickhouse.schemas import Alert, Candle, InvalidMessage, Quote, Trade, wire_trade

# PostgreSQL numeric keeps at most 16383 digits after the decimal point
_MAX_NUMERIC_SCALE = 16383
# 10000-01-01T00:00:00Z: timestamptz text beyond this year is not what we want to write
_MAX_TIMESTAMP_MS = 253_402_300_800_000

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
_MILLIS = tuple(f".{millis:03d}+00" for millis in range(1000))


def copy_timestamp(ms: int) -> str:
    """Epoch milliseconds -> timestamptz text in UTC ('2025-11-20 14:30:00.123+00')."""
    seconds, millis = divmod(ms, 1000)
    prefix = _second_cache.get(seconds)
    if prefix is None:
        if len(_second_cache) > 100_000:
            _second_cache.clear()
        prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
        _second_cache[seconds] = prefix
    return prefix + _MILLIS[millis]


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


def _finish(line: str, record: Trade | Quote | Candle) -> bytes:
    """The line as bytes, once its text is known to be storable."""
    # the common case: plain ASCII, nothing PostgreSQL could refuse
    if line.isascii() and "\x00" not in line:
        return line.encode("ascii")
    check_storable(text_fields(record))
    return line.encode("utf-8")


def trade_line(t: Trade, topic: str, partition: int, offset: int, kafka_ts: int | None) -> bytes:
    """A raw.trades row as one COPY line; raises InvalidMessage."""
    line = (
        f"{t.symbol}\t{_numeric('price', t.price)}\t{_numeric('volume', t.volume)}\t{t.ts}\t"
        f"{copy_timestamp(t.ts)}\t{copy_text_array(t.conditions)}\t{copy_optional(t.source)}\t"
        f"{topic}\t{partition}\t{offset}\t{kafka_timestamp(kafka_ts)}\t"
        f"{copy_optional(t.producer_id)}\t{NULL if t.producer_seq is None else t.producer_seq}\n"
    )
    # the common case inline (this runs once per trade): plain ASCII, nothing PostgreSQL refuses
    if line.isascii() and "\x00" not in line:
        return line.encode("ascii")
    return _finish(line, t)


# The wire path works in bytes: COPY fields of values that repeat (a second's timestamp prefix, a
# source, a list of conditions) are made once. Bounded: a producer that invents values only makes
# the caches stop growing.
_CACHE_MAX = 10_000
_second_bytes: dict[int, bytes] = {}
_MILLIS_BYTES = tuple(millis.encode("ascii") for millis in _MILLIS)
_NULL_BYTES = NULL.encode("ascii")
_NO_IDENTITY = b"%s\t%s" % (_NULL_BYTES, _NULL_BYTES)
# what _plain_field gives for text that is not plain: a NUL, which no plain field holds
_NOT_PLAIN = b"\x00"
_source_fields: dict[str | None, bytes] = {}
_conditions_fields: dict[tuple[str, ...] | None, bytes] = {}


def _timestamp_bytes(ms: int) -> bytes:
    """`copy_timestamp` as bytes."""
    seconds, millis = divmod(ms, 1000)
    prefix = _second_bytes.get(seconds)
    if prefix is None:
        if len(_second_bytes) > 100_000:
            _second_bytes.clear()
        prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)).encode("ascii")
        _second_bytes[seconds] = prefix
    return prefix + _MILLIS_BYTES[millis]


def _plain_field(text: str) -> bytes:
    """A COPY field as bytes when it is plain ASCII without NUL; `_NOT_PLAIN` when it needs the
    checks of `check_storable` (the record path makes them)."""
    return text.encode("ascii") if text.isascii() and "\x00" not in text else _NOT_PLAIN


def trade_wire_line(
    payload: bytes | None, topic: str, partition: int, offset: int, kafka_ts: int | None, now: int
) -> tuple[bytes, int] | None:
    """The COPY line of a trades message and its event time, straight from the payload, when it is
    a plainly valid trade in compact JSON (`tickhouse.schemas.wire_trade`) with plain ASCII text:
    its numbers are written as they were published, with no Decimal in between. None for anything
    else: then the message takes `parse_trade` and `trade_line`, which make the same line of
    whatever this takes (tests/unit/drain/test_rows.py)."""
    w = wire_trade(payload, now)
    if w is None:
        return None
    source = w.source
    source_field = _source_fields.get(source)
    if source_field is None:
        source_field = _plain_field(copy_optional(source))
        if len(_source_fields) < _CACHE_MAX:
            _source_fields[source] = source_field
    conditions = None if w.conditions is None else tuple(w.conditions)
    conditions_field = _conditions_fields.get(conditions)
    if conditions_field is None:
        conditions_field = _plain_field(copy_text_array(conditions))
        if len(_conditions_fields) < _CACHE_MAX:
            _conditions_fields[conditions] = conditions_field
    if source_field is _NOT_PLAIN or conditions_field is _NOT_PLAIN:
        return None
    ts = w.ts
    # PRODUCER_ID_PATTERN: ASCII, nothing to escape; wire_trade gives both or neither
    producer_id = w.producer_id
    seq = w.producer_seq
    identity = (
        _NO_IDENTITY if producer_id is None or seq is None else b"%s\t%d" % (producer_id.encode("ascii"), seq)
    )
    if kafka_ts is None or not 0 <= kafka_ts < _MAX_TIMESTAMP_MS:
        kafka_field = _NULL_BYTES
    else:
        kafka_field = _timestamp_bytes(kafka_ts)
    line = b"\t".join(
        (
            w.symbol.encode("ascii"),  # SYMBOL_PATTERN: ASCII, nothing to escape
            w.price,  # msgspec.Raw: the published digits
            w.volume,
            b"%d" % ts,
            _timestamp_bytes(ts),
            conditions_field,
            source_field,
            b"%s\t%d\t%d\t%s\t%s\n" % (topic.encode("ascii"), partition, offset, kafka_field, identity),
        )
    )
    return line, ts


def quote_line(q: Quote, topic: str, partition: int, offset: int, kafka_ts: int | None) -> bytes:
    """A raw.quotes row as one COPY line; raises InvalidMessage."""
    line = (
        f"{q.symbol}\t{_numeric('price', q.price)}\t{_optional_numeric('change', q.change)}\t"
        f"{_optional_numeric('change_pct', q.change_pct)}\t{_numeric('high', q.high)}\t"
        f"{_numeric('low', q.low)}\t{_numeric('open', q.open)}\t"
        f"{_numeric('prev_close', q.prev_close)}\t{q.ts}\t{copy_timestamp(q.ts)}\t"
        f"{copy_optional(q.source)}\t{topic}\t{partition}\t{offset}\t{kafka_timestamp(kafka_ts)}\n"
    )
    return _finish(line, q)


def alert_line(a: Alert, topic: str, partition: int, offset: int, kafka_ts: int | None) -> bytes:
    """A raw.alerts row as one COPY line (event time = trade_ts); raises InvalidMessage."""
    details = details_json(a)
    line = (
        f"{copy_text(a.alert_id)}\t{a.symbol}\t{copy_text(a.rule)}\t{a.severity}\t"
        f"{copy_text(a.message)}\t{a.trade_ts}\t{a.detected_ts}\t{copy_timestamp(a.trade_ts)}\t"
        f"{copy_text(details)}\t{topic}\t{partition}\t{offset}\t{kafka_timestamp(kafka_ts)}\n"
    )
    # always checked: JSON escapes a NUL in `details` as \u0000, which jsonb refuses
    check_storable(text_fields(a))
    return line.encode("utf-8")


def candle_line(c: Candle, topic: str, partition: int, offset: int, kafka_ts: int | None) -> bytes:
    """A raw.candles row as one COPY line (event time = bar_start); raises InvalidMessage."""
    line = (
        f"{c.symbol}\t{c.resolution}\t{c.bar_start}\t{copy_timestamp(c.bar_start)}\t"
        f"{_numeric('open', c.open)}\t{_numeric('high', c.high)}\t{_numeric('low', c.low)}\t"
        f"{_numeric('close', c.close)}\t{_numeric('volume', c.volume)}\t{copy_optional(c.source)}\t"
        f"{topic}\t{partition}\t{offset}\t{kafka_timestamp(kafka_ts)}\n"
    )
    return _finish(line, c)


def quarantine_line(r: Rejected) -> bytes:
    """A raw.quarantine row as one COPY line: the kept bytes, their full length and sha256, and
    the reason."""
    length = NULL if r.payload_length is None else str(r.payload_length)
    line = (
        f"{r.topic}\t{r.partition}\t{r.offset}\t{copy_bytea(r.key)}\t{kafka_timestamp(r.kafka_ts)}\t"
        f"{copy_bytea(r.payload)}\t{length}\t{copy_bytea(r.payload_sha256)}\t{copy_text(r.error)}\n"
    )
    return line.encode("utf-8", errors="backslashreplace")


def join_lines(lines: list[bytes]) -> bytes:
    """One COPY block of a batch's lines (joined where they are made: in a worker, when there are
    workers)."""
    return b"".join(lines)


ENCODING = Encoding(
    rows={"trades": trade_line, "quotes": quote_line, "alerts": alert_line, "candles": candle_line},
    rejected=quarantine_line,
    batch=join_lines,
    wire={"trades": trade_wire_line},
)
