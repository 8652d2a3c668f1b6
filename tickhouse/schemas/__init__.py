"""The one definition of Tickhouse's Kafka messages (docs/interfaces/kafka-messages.md): the records
(`records`), the full checks (`validation`) and the trades' fast paths (`trade_parsing`); import
them from here.

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

from tickhouse.schemas.records import (
    MAX_FUTURE_MS,
    MAX_PAYLOAD_BYTES,
    RESOLUTIONS,
    SEVERITIES,
    Alert,
    Candle,
    InvalidMessage,
    Number,
    Quote,
    Trade,
    now_ms,
    to_json,
)
from tickhouse.schemas.trade_parsing import (
    WireTrade,
    parse_trade,
    parse_trade_fields,
    parse_trade_fully,
    parse_trade_values,
    validate_trade,
    wire_trade,
)
from tickhouse.schemas.validation import (
    MAX_PRODUCER_SEQ,
    PRODUCER_ID_PATTERN,
    decode_object,
    parse_alert,
    parse_candle,
    parse_quote,
    validate_alert,
    validate_candle,
    validate_quote,
    validate_trade_fully,
)

__all__ = [
    "MAX_FUTURE_MS",
    "MAX_PAYLOAD_BYTES",
    "MAX_PRODUCER_SEQ",
    "PRODUCER_ID_PATTERN",
    "RESOLUTIONS",
    "SEVERITIES",
    "Alert",
    "Candle",
    "InvalidMessage",
    "Number",
    "Quote",
    "Trade",
    "WireTrade",
    "decode_object",
    "now_ms",
    "parse_alert",
    "parse_candle",
    "parse_quote",
    "parse_trade",
    "parse_trade_fields",
    "parse_trade_fully",
    "parse_trade_values",
    "to_json",
    "validate_alert",
    "validate_candle",
    "validate_quote",
    "validate_trade",
    "validate_trade_fully",
    "wire_trade",
]
