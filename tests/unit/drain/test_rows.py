"""Typed rows as PostgreSQL COPY text, and the warehouse-level checks on top of
docs/interfaces/kafka-messages.md (pure)."""

from __future__ import annotations

import hashlib

import pytest

from drain.rows import Rejected
from drain.targets.postgres import copy_rows
from drain.targets.postgres.copy_rows import (
    copy_bytea,
    copy_text,
    copy_text_array,
    copy_timestamp,
    kafka_timestamp,
)
from tickhouse.raw_tables import COLUMNS
from tickhouse.schemas import InvalidMessage, parse_alert, parse_candle, parse_quote, parse_trade

pytestmark = pytest.mark.unit


def trade_line(payload: bytes, topic: str, partition: int, offset: int, kafka_ts: int | None) -> bytes:
    return copy_rows.trade_line(parse_trade(payload), topic, partition, offset, kafka_ts)


def quote_line(payload: bytes, topic: str, partition: int, offset: int, kafka_ts: int | None) -> bytes:
    return copy_rows.quote_line(parse_quote(payload), topic, partition, offset, kafka_ts)


def alert_line(payload: bytes, topic: str, partition: int, offset: int, kafka_ts: int | None) -> bytes:
    return copy_rows.alert_line(parse_alert(payload), topic, partition, offset, kafka_ts)


def candle_line(payload: bytes, topic: str, partition: int, offset: int, kafka_ts: int | None) -> bytes:
    return copy_rows.candle_line(parse_candle(payload), topic, partition, offset, kafka_ts)


def quarantine_line(
    topic: str, partition: int, offset: int, key: bytes | None, kafka_ts: int | None,
    payload: bytes | None, error: str,
) -> bytes:
    return copy_rows.quarantine_line(Rejected.of(topic, partition, offset, key, kafka_ts, payload, error))


def fields(line: bytes) -> list[str]:
    assert line.endswith(b"\n")
    return line[:-1].decode().split("\t")


def test_trade_line_has_every_column_in_order() -> None:
    line = trade_line(
        b'{"symbol":"AAPL","price":178.45,"volume":100,"ts":1763649000123,'
        b'"conditions":["1","12"],"source":"finnhub"}',
        "market.trades", 2, 41, 1763649000200,
    )
    assert fields(line) == [
        "AAPL", "178.45", "100", "1763649000123", "2025-11-20 14:30:00.123+00", '{"1","12"}',
        "finnhub", "market.trades", "2", "41", "2025-11-20 14:30:00.200+00", "\\N", "\\N",
    ]
    assert len(fields(line)) == len(COLUMNS["trades"])


def test_trade_line_carries_the_producer_identity() -> None:
    payload = b'{"symbol":"AAPL","price":1.5,"volume":2,"ts":5,"producer_id":"0f3a9c","producer_seq":41}'
    assert fields(trade_line(payload, "t", 0, 7, None))[-2:] == ["0f3a9c", "41"]
    assert _wire_agrees(payload)


def test_optional_fields_become_null() -> None:
    line = trade_line(b'{"symbol":"A","price":1,"volume":0,"ts":0}', "t", 0, 0, None)
    assert fields(line)[4:7] == ["1970-01-01 00:00:00.000+00", "\\N", "\\N"]
    assert fields(line)[-1] == "\\N"


def test_decimal_digits_are_kept_exactly() -> None:
    line = trade_line(
        b'{"symbol":"A","price":0.1000000000000000055511151231257827,"volume":1E+3,"ts":5}',
        "t", 0, 0, None,
    )
    assert fields(line)[1:3] == ["0.1000000000000000055511151231257827", "1E+3"]


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("plain", "plain"), ("a\tb", "a\\tb"), ("a\\b", "a\\\\b"), ("l1\nl2\r", "l1\\nl2\\r")],
)
def test_copy_text_escapes_copy_specials(raw: str, escaped: str) -> None:
    assert copy_text(raw) == escaped


def test_array_literal_quotes_and_escapes_items() -> None:
    assert copy_text_array(("1", "12")) == '{"1","12"}'
    assert copy_text_array(()) == "{}"
    assert copy_text_array(None) == "\\N"
    # array quoting first ( \" and \\ ), then COPY escaping doubles each backslash
    assert copy_text_array(('a"b', "c\\d", "{x}")) == '{"a\\\\"b","c\\\\\\\\d","{x}"}'


def test_timestamps_are_utc_with_milliseconds() -> None:
    assert copy_timestamp(0) == "1970-01-01 00:00:00.000+00"
    assert copy_timestamp(978_307_200_999) == "2001-01-01 00:00:00.999+00"
    assert kafka_timestamp(-1) == "\\N"
    assert kafka_timestamp(10**16) == "\\N"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"symbol":"A","price":1,"volume":1,"ts":1,"source":"x\\u0000"}',
         "source: contains a NUL"),
        (b'{"symbol":"A","price":1,"volume":1,"ts":1,"conditions":["\\u0000"]}',
         "conditions: contains a NUL"),
        (b'{"symbol":"A","price":1,"volume":1,"ts":1,"source":"\\udc00"}',
         "source: contains a lone UTF-16 surrogate \\udc00"),
        (b'{"symbol":"A","price":1e-16384,"volume":1,"ts":1}', "price: 16384 digits after the decimal point"),
        (b'{"symbol":"A","price":1,"volume":1.5e-20000,"ts":1}', "volume: 20001 digits"),
    ],
)
def test_values_postgres_cannot_store_are_rejected(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match="^" + reason.replace("\\", "\\\\")):
        trade_line(payload, "t", 0, 0, None)


def test_numeric_scale_at_the_limit_is_accepted() -> None:
    line = trade_line(b'{"symbol":"A","price":1e-16383,"volume":1,"ts":1}', "t", 0, 0, None)
    assert fields(line)[1] == "1E-16383"


def test_schema_reasons_pass_through() -> None:
    with pytest.raises(InvalidMessage, match="price: must be > 0"):
        trade_line(b'{"symbol":"A","price":0,"volume":1,"ts":1}', "t", 0, 0, None)


def test_quote_line() -> None:
    line = quote_line(
        b'{"symbol":"A","price":2,"change":null,"change_pct":-0.5,"high":3,"low":1,"open":2,'
        b'"prev_close":2.5,"ts":1000}',
        "q", 1, 7, None,
    )
    assert fields(line) == [
        "A", "2", "\\N", "-0.5", "3", "1", "2", "2.5", "1000", "1970-01-01 00:00:01.000+00",
        "\\N", "q", "1", "7", "\\N",
    ]


def test_alert_line_event_time_is_the_trade_time_and_details_are_json() -> None:
    line = alert_line(
        b'{"alert_id":"x","symbol":"A","rule":"r","severity":"critical","message":"m\\tn",'
        b'"trade_ts":2000,"detected_ts":3000,"details":{"z":1.5,"k":["v"]}}',
        "a", 0, 1, None,
    )
    parts = fields(line)
    assert parts[4] == "m\\tn"
    assert parts[7] == "1970-01-01 00:00:02.000+00"
    assert parts[8] == '{"z": 1.5, "k": ["v"]}'


def test_alert_details_with_nul_are_rejected() -> None:
    with pytest.raises(InvalidMessage, match="details: contains a NUL"):
        alert_line(
            b'{"alert_id":"x","symbol":"A","rule":"r","severity":"info","message":"m",'
            b'"trade_ts":1,"detected_ts":1,"details":{"k\\u0000":1}}',
            "a", 0, 1, None,
        )


def test_quarantine_line_keeps_the_original_bytes() -> None:
    line = quarantine_line("t", 0, 9, b"KEY", 5, b"\xff\x00\t", "not UTF-8: byte\tat 0")
    sha = hashlib.sha256(b"\xff\x00\t").hexdigest()
    assert fields(line) == [
        "t", "0", "9", "\\\\x4b4559", "1970-01-01 00:00:00.005+00", "\\\\xff0009",
        "3", f"\\\\x{sha}", "not UTF-8: byte\\tat 0",
    ]
    assert fields(quarantine_line("t", 0, 1, None, None, None, "null"))[3:8] == ["\\N"] * 5


def test_quarantine_line_keeps_at_most_64_kib_with_the_full_length_and_sha256() -> None:
    payload = bytes(range(256)) * 4_000  # 1,024,000 bytes, as a hostile producer may send
    key = b"k" * 5_000
    got = fields(quarantine_line("t", 0, 1, key, None, payload, "payload too large: " + "x" * 9_000))
    assert got[5] == "\\\\x" + payload[:65_536].hex()
    assert got[6:8] == ["1024000", "\\\\x" + hashlib.sha256(payload).hexdigest()]
    assert got[3] == "\\\\x" + key[:1024].hex()
    assert len(got[8]) == 2000 and got[8].endswith("...")
    exactly = b"y" * 65_536  # the largest message that may be valid is kept whole
    assert fields(quarantine_line("t", 0, 2, None, None, exactly, "e"))[5:7] == [
        "\\\\x" + exactly.hex(), "65536"
    ]
    assert copy_bytea(b"") == "\\\\x"


def test_candle_line_has_every_column_in_order() -> None:
    line = candle_line(
        b'{"symbol":"AAPL","resolution":"D","bar_start":1732060800000,"open":228.06,'
        b'"high":229.93,"low":225.89,"close":229,"volume":35169566,"source":"finnhub"}',
        "market.candles", 1, 7, 1763649000200,
    )
    assert fields(line) == [
        "AAPL", "D", "1732060800000", "2024-11-20 00:00:00.000+00", "228.06", "229.93", "225.89",
        "229", "35169566", "finnhub", "market.candles", "1", "7", "2025-11-20 14:30:00.200+00",
    ]
    assert len(fields(line)) == len(COLUMNS["candles"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"high": 1.0}, "low 225.89 is above high 1.0"),
        ({"open": 230}, "open 230 is outside the candle's range [low 225.89, high 229.93]"),
        ({"resolution": "2"}, "resolution: must be one of 1, 5, 15, 30, 60, D, W, M, got \"2\""),
        ({"resolution": 5}, "resolution: must be a string"),
        ({"bar_start": 1.5}, "bar_start: must be integer epoch milliseconds"),
        ({"volume": -1}, "volume: must be >= 0, got -1"),
        ({"source": "a\u0000b"}, "source: contains a NUL character"),
    ],
)
def test_bad_candles_are_rejected_with_the_reason(change: dict[str, object], reason: str) -> None:
    import json

    body = {"symbol": "AAPL", "resolution": "D", "bar_start": 1732060800000, "open": 228.06,
            "high": 229.93, "low": 225.89, "close": 229, "volume": 35169566, **change}
    with pytest.raises(InvalidMessage) as err:
        candle_line(json.dumps(body).encode(), "market.candles", 0, 0, None)
    assert reason in str(err.value)


# --- the wire path (trade_wire_line) against parse_trade + trade_line -------------------------------

_WIRE_NOW = 1_763_649_000_000


def _line_outcome(payload: bytes | None, kafka_ts: int | None) -> tuple[str, object]:
    """What the record path (the full checks, then `trade_line`) makes of a trades message."""
    from tickhouse.schemas import parse_trade_fully

    try:
        trade = parse_trade_fully(payload, now=_WIRE_NOW)
        return ("line", copy_rows.trade_line(trade, "market.trades", 2, 41, kafka_ts))
    except InvalidMessage as err:
        return ("rejected", str(err))


def _wire_agrees(payload: bytes | None, kafka_ts: int | None = 1_763_649_000_456) -> bool:
    """The wire path makes the record path's line of what it takes; returns whether it took it."""
    hit = copy_rows.trade_wire_line(payload, "market.trades", 2, 41, kafka_ts, _WIRE_NOW)
    if hit is None:
        return False
    line, event_ms = hit
    assert _line_outcome(payload, kafka_ts) == ("line", line), payload
    assert event_ms == parse_trade(payload, now=_WIRE_NOW).ts
    return True


def test_wire_path_takes_the_producers_compact_trades_and_writes_the_same_line() -> None:
    from tickhouse.schemas import Trade, to_json

    taken = [
        b'{"symbol":"AAPL","price":178.45,"volume":100,"ts":1763649000123,"conditions":["1","12"],"source":"finnhub"}',
        b'{"symbol":"BRK.B","price":0.0001,"volume":0,"ts":0}',
        b'{"symbol":"X","price":178.450,"volume":0.25,"ts":1763649000123,"conditions":[],"source":"a\\tb\\\\c"}',
        b'{"symbol":"X","price":1,"volume":1,"ts":1,"conditions":["a\\"b","{c}"]}',
        to_json(Trade("BINANCE:BTCUSDT", 97123.5, 0.0031, _WIRE_NOW, ("1",), "synthetic")),
        to_json(Trade("AAPL", 1.5, 2, 5, None, None, "0f3a9c", 2**63 - 1)),
    ]
    for payload in taken:
        assert _wire_agrees(payload), payload
    assert _wire_agrees(taken[0], kafka_ts=None) and _wire_agrees(taken[0], kafka_ts=-1)
    declined = [
        b'{"symbol":"AAPL","price":1.7845e2,"volume":100,"ts":1}',  # exponent: the record path
        b'{"symbol":"AAPL","price":1,"volume":0.0,"ts":1}',  # a zero the full checks write as 0
        b'{"symbol":"AAPL","price":1,"volume":-0,"ts":1}',
        b'{"symbol":"AAPL","price":0,"volume":1,"ts":1}',  # rejected
        b'{"symbol":"AAPL","price":"1","volume":1,"ts":1}',  # rejected: a number as a string
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"price":2}',  # rejected: duplicated key
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"x":1}',  # extra key: the record path
        b'{"price":1,"symbol":"AAPL","volume":1,"ts":1}',  # another key order: the record path
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"source":"\\u0000"}',  # rejected: NUL
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"source":"\xc3\xa9"}',  # non-ASCII text
        b'{"symbol":"AAPL","price":' + b"1" * 19 + b',"volume":1,"ts":1}',  # long: the record path
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":' + str(_WIRE_NOW + 86_400_001).encode() + b"}",
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"producer_id":"p"}',  # rejected: no seq
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"producer_id":"p","producer_seq":-1}',
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"producer_id":"a b","producer_seq":1}',
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"producer_seq":1,"producer_id":"p"}',  # order
        None,
        b"",
    ]
    for payload in declined:
        assert not _wire_agrees(payload), payload


def test_wire_path_agrees_with_the_record_path_on_generated_trades() -> None:
    """Trades written the way producers write them (mostly compact and valid, with numbers in
    every spelling, any text, keys dropped, added, reordered or repeated): the wire path takes only
    what the record path accepts, and writes its line byte for byte."""
    import json
    from decimal import Decimal

    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    plain = st.integers(0, 8).flatmap(
        lambda places: st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1e6"), places=places)
    ).map(str)
    numbers = st.one_of(
        plain,
        plain,
        plain,
        st.integers(min_value=-5, max_value=10**20).map(str),
        st.integers(0, 20).flatmap(
            lambda places: st.decimals(min_value=Decimal("-1"), max_value=Decimal("1e19"), places=places)
        ).map(str),
        st.floats(min_value=0, max_value=1e25).map(repr),
        st.sampled_from(["0", "0.0", "-0", "1e5", "1E-7", "0.000001", "178.45", '"1"', "true", "null"]),
    )
    text = st.one_of(st.sampled_from(["finnhub", "1", "12", "a\tb", "q\"\\{"]), st.text(max_size=4))
    fields = {
        "symbol": st.one_of(st.sampled_from(["AAPL", "BRK.B", "BINANCE:BTCUSDT", "AAPL", "A" * 33, ""]), text)
        .map(json.dumps),
        "price": numbers,
        "volume": numbers,
        "ts": st.one_of(st.integers(-1, _WIRE_NOW + 2 * 86_400_000), st.just(_WIRE_NOW + 86_400_001))
        .map(str),
        "conditions": st.one_of(st.none(), st.lists(text, max_size=3)).map(
            lambda v: json.dumps(v, ensure_ascii=False)
        ),
        "source": st.one_of(st.none(), text).map(lambda v: json.dumps(v, ensure_ascii=False)),
        "producer_id": st.one_of(
            st.sampled_from(["0f3a9c", "p-1_A", "x" * 64]), st.sampled_from(["", "a b", "x" * 65]), text
        ).map(json.dumps),
        "producer_seq": st.one_of(
            st.integers(0, 2**63 - 1), st.integers(-1, 2**64), st.sampled_from(["1.0", "null", '"1"'])
        ).map(str),
    }

    @st.composite
    def payloads(draw: st.DrawFn) -> bytes:
        keys = [k for k in fields if k not in ("conditions", "source") or draw(st.booleans())]
        # an identity is both keys or neither, mostly; sometimes only one of them
        identity = draw(st.integers(0, 9))
        keys = [k for k in keys if k not in ("producer_id", "producer_seq")
                or identity >= 7 or (identity == 6 and k == "producer_id")]
        if draw(st.integers(0, 9)) == 0:
            keys = draw(st.permutations(keys))
        if draw(st.integers(0, 9)) == 0:
            keys.append(draw(st.sampled_from([*fields, "extra"])))
        parts = [f'"{k}":{draw(fields.get(k, numbers))}' for k in keys]
        sep = "," if draw(st.integers(0, 9)) else ", "
        return ("{" + sep.join(parts) + "}").encode("utf-8", "surrogatepass")

    taken = []

    # derandomized: the same examples every run, so the count below is stable
    @hsettings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck), database=None,
               derandomize=True)
    @given(payloads())
    def check(payload: bytes) -> None:
        if _wire_agrees(payload):
            taken.append(payload)

    check()
    assert len(taken) > 50, f"the wire path took only {len(taken)} payloads: the test checks little"
    identified = sum(b'"producer_seq"' in payload for payload in taken)
    assert identified > 3, f"the wire path took only {identified} payloads with an identity"
