"""What the drain makes of one Kafka message: a typed row of its raw table, or a rejected one.

Validation is the one in `tickhouse.schemas` (docs/interfaces/kafka-messages.md): a message of raw.<kind>
becomes its record (`Trade`, `Quote`, `Alert`, `Candle`), which with the message's Kafka coordinates is the
typed row; a bad message becomes a `Rejected` row of raw.quarantine, with its bytes (bounded) and the reason.
How rows are written is the target's business, given as an `Encoding` (COPY text for PostgreSQL, staging
values for Snowflake, `drain.targets`). An encoder may refuse a value docs/interfaces/kafka-messages.md admits
but its warehouse cannot store (`InvalidMessage`): the message is then quarantined with that reason, so bad
input can never fail a load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from operator import attrgetter
from typing import Any

from tickhouse.schemas import (
    Alert,
    Candle,
    InvalidMessage,
    Quote,
    Trade,
    parse_alert,
    parse_candle,
    parse_quote,
    parse_trade,
)

MS_PER_DAY = 86_400_000

Record = Trade | Quote | Alert | Candle

# kind -> (message bytes, now ms) to its record (raises InvalidMessage with the reason)
PARSERS: dict[str, Callable[[bytes | None, int | None], Any]] = {
    "trades": parse_trade,
    "quotes": parse_quote,
    "alerts": parse_alert,
    "candles": parse_candle,
}
# kind -> the record's event time (epoch ms): what the raw tables are partitioned by
EVENT_MS: dict[str, Callable[[Any], int]] = {
    "trades": attrgetter("ts"),
    "quotes": attrgetter("ts"),
    "alerts": attrgetter("trade_ts"),
    "candles": attrgetter("bar_start"),
}

# What raw.quarantine keeps of a rejected message (docs/interfaces/warehouse.md): the payload up to the size a
# valid message may have, the key up to far more than a symbol needs, the reason up to a few lines. The full
# length and sha256 of the payload are kept beside it, so a row stays under ~70 KiB whatever a producer sends
# (Kafka accepts ~1 MB).
QUARANTINE_PAYLOAD_BYTES = 64 * 1024  # docs/interfaces/warehouse.md; also the most a valid message may have
QUARANTINE_KEY_BYTES = 1024
QUARANTINE_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Rejected:
    """One raw.quarantine row: what is kept of a rejected message, and why it was rejected."""

    topic: str
    partition: int
    offset: int
    key: bytes | None  # at most QUARANTINE_KEY_BYTES
    kafka_ts: int | None
    payload: bytes | None  # at most QUARANTINE_PAYLOAD_BYTES
    payload_length: int | None  # of the whole message
    payload_sha256: bytes | None  # of the whole message
    error: str

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        kafka_ts: int | None,
        payload: bytes | None,
        error: str,
    ) -> Rejected:
        """The bounded row of a message rejected for `error`."""
        # a reason quotes the input: no NUL, no lone surrogate may reach a warehouse's text column
        reason = error.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
        if len(reason) > QUARANTINE_ERROR_CHARS:
            reason = reason[: QUARANTINE_ERROR_CHARS - 3] + "..."
        length = sha256 = None
        if payload is not None:
            length = len(payload)
            sha256 = hashlib.sha256(payload).digest()
            payload = payload[:QUARANTINE_PAYLOAD_BYTES]
        return cls(
            topic, partition, offset, None if key is None else key[:QUARANTINE_KEY_BYTES],
            kafka_ts, payload, length, sha256, reason,
        )


# (record, topic, partition, offset, Kafka timestamp ms or None) -> the target's row
RowEncoder = Callable[[Any, str, int, int, "int | None"], Any]
# (message bytes, topic, partition, offset, Kafka timestamp ms or None, now ms) -> (the target's
# row, its event time ms), or None to take the kind's parser and RowEncoder
WireEncoder = Callable[[bytes | None, str, int, int, "int | None", int], "tuple[Any, int] | None"]


@dataclass(frozen=True, slots=True)
class Encoding:
    """How a target writes rows: an encoder per kind, one for rejected messages, and what one
    batch of encoded rows becomes on its way to the target's loader (PostgreSQL joins its COPY
    lines into one block). `wire` may give a kind a fast path from the message bytes to the row
    (which must equal what the parser and RowEncoder make of what it takes; it declines the rest).
    Module-level functions only: an Encoding travels to the worker processes of
    DRAIN_PARSE_WORKERS."""

    rows: Mapping[str, RowEncoder]
    rejected: Callable[[Rejected], Any]
    batch: Callable[[list[Any]], Any]
    wire: Mapping[str, WireEncoder] = field(default_factory=dict)


def _has_char(value: Any, char: str) -> bool:
    """Whether a string anywhere inside `value` (keys included) contains `char`."""
    if isinstance(value, str):
        return char in value
    if isinstance(value, dict):
        return any(_has_char(k, char) or _has_char(v, char) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_char(v, char) for v in value)
    return False


def _lone_surrogate(value: Any) -> str | None:
    """The first lone UTF-16 surrogate in any string inside `value`, if there is one."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            return value[err.start]
        return None
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    for item in items:
        found = _lone_surrogate(item)
        if found is not None:
            return found
    return None


def check_storable(fields: Mapping[str, Any]) -> None:
    """Refuse text no raw table can hold: a NUL character or a lone UTF-16 surrogate (valid JSON
    escapes, but not valid in a warehouse's text); raises InvalidMessage naming the field."""
    for name, value in fields.items():
        if _has_char(value, "\x00"):
            raise InvalidMessage(
                f"{name}: contains a NUL character (\\u0000), which the warehouse cannot store"
            )
        bad = _lone_surrogate(value)
        if bad is not None:
            raise InvalidMessage(
                f"{name}: contains a lone UTF-16 surrogate \\u{ord(bad):04x}, which is not valid Unicode"
            )


def text_fields(record: Record) -> dict[str, Any]:
    """The fields of a record that may hold arbitrary text (the symbol is checked by
    docs/interfaces/kafka-messages.md)."""
    if isinstance(record, Trade):
        return {"source": record.source, "conditions": record.conditions}
    if isinstance(record, Alert):
        return {"alert_id": record.alert_id, "rule": record.rule, "message": record.message,
                "details": record.details}
    return {"source": record.source}


def _json_number(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def details_json(alert: Alert) -> str:
    """An alert's `details` as JSON text (numbers as doubles); InvalidMessage when a number does not
    fit a double."""
    try:
        return json.dumps(alert.details, ensure_ascii=False, allow_nan=False, default=_json_number)
    except ValueError:
        raise InvalidMessage("details: contains a number out of range for a double") from None
