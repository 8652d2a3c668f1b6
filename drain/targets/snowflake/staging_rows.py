"""Typed rows -> staging rows for Snowflake (`ENCODING`): every value as text, in COLUMNS order.

The staging tables are all VARCHAR (`loader.create_staging_sql`); the loader casts each column to
its raw table's type in SQL when it moves the rows into RAW. So a value is written here in the form
that cast reads: numbers as their JSON text, timestamps as epoch milliseconds, `conditions` and
`details` as JSON, binary as hex. On top of docs/interfaces/kafka-messages.md the same text is refused as in
PostgreSQL (NUL, lone surrogates), so a message is quarantined alike whichever warehouse loads it.
"""

from __future__ import annotations

import json

from drain.rows import Encoding, Rejected, check_storable, details_json, text_fields
from tickhouse.schemas import Alert, Candle, Quote, Trade

Value = str | None
StagingRow = list[Value]

# 10000-01-01T00:00:00Z: a Kafka timestamp beyond it (or before 1970) is stored as NULL, as in PostgreSQL
_MAX_TIMESTAMP_MS = 253_402_300_800_000


def _text(value: object) -> Value:
    return None if value is None else str(value)


def _kafka_timestamp(ms: int | None) -> Value:
    return None if ms is None or not 0 <= ms < _MAX_TIMESTAMP_MS else str(ms)


def _hex(value: bytes | None) -> Value:
    return None if value is None else value.hex()


_conditions_cache: dict[tuple[str, ...], str] = {}


def _conditions(items: tuple[str, ...] | None) -> Value:
    """Trade conditions as a JSON array, cached (they repeat a lot), checked once per value."""
    if items is None:
        return None
    cached = _conditions_cache.get(items)
    if cached is None:
        check_storable({"conditions": items})
        cached = json.dumps(list(items), ensure_ascii=False)
        if len(_conditions_cache) < 10_000:
            _conditions_cache[items] = cached
    return cached


def _plain(text: str | None) -> bool:
    """Text no warehouse refuses, cheaply: absent, or ASCII without NUL (the common case)."""
    return text is None or (text.isascii() and "\x00" not in text)


def trade_row(t: Trade, topic: str, partition: int, offset: int, kafka_ts: int | None) -> StagingRow:
    conditions = _conditions(t.conditions)
    if not _plain(t.source):
        check_storable({"source": t.source})
    return [
        t.symbol, str(t.price), str(t.volume), str(t.ts), str(t.ts), conditions, t.source,
        topic, str(partition), str(offset), _kafka_timestamp(kafka_ts),
        t.producer_id, _text(t.producer_seq),
    ]


def quote_row(q: Quote, topic: str, partition: int, offset: int, kafka_ts: int | None) -> StagingRow:
    if not _plain(q.source):
        check_storable(text_fields(q))
    return [
        q.symbol, str(q.price), _text(q.change), _text(q.change_pct), str(q.high), str(q.low),
        str(q.open), str(q.prev_close), str(q.ts), str(q.ts), q.source,
        topic, str(partition), str(offset), _kafka_timestamp(kafka_ts),
    ]


def alert_row(a: Alert, topic: str, partition: int, offset: int, kafka_ts: int | None) -> StagingRow:
    details = details_json(a)
    check_storable(text_fields(a))
    return [
        a.alert_id, a.symbol, a.rule, a.severity, a.message, str(a.trade_ts), str(a.detected_ts),
        str(a.trade_ts), details, topic, str(partition), str(offset), _kafka_timestamp(kafka_ts),
    ]


def candle_row(c: Candle, topic: str, partition: int, offset: int, kafka_ts: int | None) -> StagingRow:
    if not _plain(c.source):
        check_storable(text_fields(c))
    return [
        c.symbol, c.resolution, str(c.bar_start), str(c.bar_start), str(c.open), str(c.high),
        str(c.low), str(c.close), str(c.volume), c.source,
        topic, str(partition), str(offset), _kafka_timestamp(kafka_ts),
    ]


def quarantine_row(r: Rejected) -> StagingRow:
    return [
        r.topic, str(r.partition), str(r.offset), _hex(r.key), _kafka_timestamp(r.kafka_ts),
        _hex(r.payload), _text(r.payload_length), _hex(r.payload_sha256), r.error,
    ]


def as_list(rows: list[StagingRow]) -> list[StagingRow]:
    return rows


ENCODING = Encoding(
    rows={"trades": trade_row, "quotes": quote_row, "alerts": alert_row, "candles": candle_row},
    rejected=quarantine_row,
    batch=as_list,
)
