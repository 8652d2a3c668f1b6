"""Message schemas (docs/interfaces/kafka-messages.md): good messages parse exactly, every kind of bad input
is rejected with a reason that names the problem."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tickhouse.schemas import (
    Alert,
    InvalidMessage,
    Quote,
    Trade,
    parse_alert,
    parse_quote,
    parse_trade,
    parse_trade_fields,
    parse_trade_fully,
    parse_trade_values,
    to_json,
    wire_trade,
)
from tickhouse.schemas.trade_parsing import _canonical_object

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


# --- the fast path (msgspec) against the full checks ---------------------------------------------


def _outcome(parse: object, payload: bytes | None) -> tuple[str, object]:
    """What a parser makes of `payload`: the trade with every field's type, or the error text."""
    try:
        trade = parse(payload, now=NOW)  # type: ignore[operator]
    except InvalidMessage as err:
        return ("rejected", str(err))
    fields = (trade.symbol, trade.price, trade.volume, trade.ts, trade.conditions, trade.source)
    return ("accepted", tuple((type(v).__name__, repr(v)) for v in fields))


def _values(payload: bytes | None) -> tuple[str, object]:
    """What `parse_trade_values` makes of `payload`, and what it must make of it: the full checks'
    trade with price and volume as doubles, or their error text."""
    try:
        got: tuple[str, object] = ("accepted", parse_trade_values(payload, now=NOW))
    except InvalidMessage as err:
        got = ("rejected", str(err))
    return got


def _full_values(payload: bytes | None) -> tuple[str, object]:
    try:
        t = parse_trade_fully(payload, now=NOW)
    except InvalidMessage as err:
        return ("rejected", str(err))
    return ("accepted", (t.symbol, float(t.price), float(t.volume), t.ts))


def _same_as_full(payload: bytes | None) -> None:
    assert _outcome(parse_trade, payload) == _outcome(parse_trade_fully, payload), payload
    got, want = _values(payload), _full_values(payload)
    assert got == want, payload
    if got[0] == "accepted":
        assert [type(v) for v in got[1]] == [str, float, float, int]  # type: ignore[union-attr]


@pytest.mark.parametrize(("payload", "reason"), BAD_TRADES)
def test_fast_path_gives_the_full_checks_verdict_on_every_bad_trade(
    payload: bytes | None, reason: str
) -> None:
    _same_as_full(payload)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"symbol":"AAPL","price":100.01,"volume":100,"ts":1763649000123}',
        b'{"symbol":"AAPL","price":178.45,"volume":100,"ts":1763649000123,"conditions":["1","12"],"source":"finnhub"}',
        b'{"symbol":"AAPL","price":1E+5,"volume":0,"ts":0}',
        b'{"symbol":"AAPL","price":1e308,"volume":99999999999999999999999,"ts":1}',
        b'{"symbol":"AAPL","price":1E-401,"volume":0.0,"ts":1,"x":{"a":[1,{"b":null}]}}',
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"x":{"a":1,"a":2}}',  # nested duplicate
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"symbol":"AAPL"}',  # same value twice
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"s\\u0079mbol":"X"}',  # escaped duplicate
        b'{"symbol":"AAPL","price":1,"volume":-0,"ts":1}',
        b'{"symbol":"AAPL","price":' + b"9" * 309 + b',"volume":1,"ts":1}',
        b'{"symbol":"AAPL","price":1,"volume":' + b"9" * 400 + b',"ts":1}',
        b'{"symbol":"AAPL","price":1,"volume":-0.0,"ts":1}',
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"source":"\xc3\xa9\\u0000"}',
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1,"source":"a\\ud800"}',
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":' + str(NOW + 86_400_000).encode() + b"}",
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":' + str(NOW + 86_400_001).encode() + b"}",
        b'{"symbol":"AAPL","price":1,"volume":1,"ts":1}\n',
        b' {"symbol":"AAPL","price":1,"volume":1,"ts":1}',
    ],
)
def test_fast_path_agrees_with_the_full_checks_on_edge_cases(payload: bytes) -> None:
    _same_as_full(payload)


def test_trade_values_are_doubles_of_the_published_digits() -> None:
    payload = b'{"symbol":"AAPL","price":178.45,"volume":100,"ts":1763649000123,"conditions":["1","12"]}'
    assert parse_trade_values(payload, now=NOW) == ("AAPL", 178.45, 100.0, 1763649000123)
    assert parse_trade_values(payload.replace(b"178.45", b"1.7845e2"), now=NOW)[1] == 178.45  # full path
    with pytest.raises(InvalidMessage, match="duplicated key 'price'"):
        parse_trade_values(payload[:-1] + b',"price":1}', now=NOW)


def test_trade_fields_carry_the_conditions_on_both_paths() -> None:
    payload = b'{"symbol":"AAPL","price":178.45,"volume":100,"ts":1763649000123,"conditions":["1","12"]}'
    assert list(parse_trade_fields(payload, now=NOW)[4] or ()) == ["1", "12"]
    full = payload.replace(b"178.45", b"1.7845e2")  # not the compact form: the full checks
    assert parse_trade_fields(full, now=NOW) == ("AAPL", 178.45, 100.0, 1763649000123, ("1", "12"))
    bare = b'{"symbol":"AAPL","price":178.45,"volume":100,"ts":1763649000123}'
    assert parse_trade_fields(bare, now=NOW)[4] is None


def test_fast_path_takes_the_compact_form_and_only_it() -> None:
    compact = b'{"symbol":"AAPL","price":178.45,"volume":100,"ts":1763649000123}'
    assert _canonical_object(compact) is not None
    for other in (
        compact.replace(b",", b", "),  # whitespace: the full checks decide
        compact[:-1] + b',"price":1}',  # duplicated key
        compact.replace(b'"AAPL"', b'"\\u0041APL"'),  # an escape that could hide a duplicate
        compact.replace(b"178.45", b"1.7845e2"),  # a second spelling of the number
        b'{"a":{"b":1,"b":2}}',
    ):
        assert _canonical_object(other) is None, other


_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([2**63, 10**308, 10**309, 10**400]),  # ints past a double's range
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=None).map(lambda d: d.normalize()),
    st.text(max_size=8),
)
_trade_values = {
    "symbol": st.one_of(
        st.sampled_from(["AAPL", "BRK.B", "BINANCE:BTCUSDT", "A" * 32, "A" * 33, ""]), st.text(max_size=6)
    ),
    "price": st.one_of(_json_scalars, st.sampled_from([1e308, 1e-320, 0.0, -0.0, 178.45])),
    "volume": st.one_of(_json_scalars, st.sampled_from([0, -0.0, 2**63, 2**63 - 1, 10**400])),
    "ts": st.one_of(st.integers(min_value=-5, max_value=NOW + 2 * 86_400_000), _json_scalars),
    "conditions": st.one_of(
        st.none(), st.lists(st.one_of(st.text(max_size=3), st.integers()), max_size=3), _json_scalars
    ),
    "source": st.one_of(st.none(), _json_scalars),
    "producer_id": st.one_of(
        st.none(),
        st.sampled_from(["p1", "0f3a9c", "a-b_C", "x" * 64, "x" * 65, "", "a b", "é"]),
        _json_scalars,
    ),
    "producer_seq": st.one_of(
        st.none(), st.integers(-2, 2**64), st.sampled_from([0, 2**63 - 1, 2**63, 1.0, True]), _json_scalars
    ),
}


@st.composite
def _trade_payloads(draw: st.DrawFn) -> bytes:
    """Trade-like JSON objects written the way producers write them (compact or not, escaped or
    not), with dropped, extra and duplicated keys and numbers in other spellings."""
    obj = {k: draw(v) for k, v in _trade_values.items() if draw(st.integers(0, 9)) > 0}
    pairs = list(obj.items())
    if draw(st.booleans()):
        pairs.append((draw(st.text(max_size=4)), draw(_json_scalars)))
    if pairs and draw(st.integers(0, 3)) == 0:
        key, _ = draw(st.sampled_from(pairs))
        pairs.insert(draw(st.integers(0, len(pairs))), (key, draw(_trade_values.get(key, _json_scalars))))
    compact = draw(st.booleans())
    parts = []
    for key, value in pairs:
        if isinstance(value, Decimal):
            text = str(value)  # e.g. 1E+5, 0.00001, 1.50
        elif isinstance(value, float) and draw(st.booleans()):
            text = str(Decimal(repr(value)))  # the same number in a second spelling
        else:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=draw(st.booleans()))
        parts.append(json.dumps(key, ensure_ascii=draw(st.booleans())) + (":" if compact else ": ") + text)
    return ("{" + ("," if compact else ", ").join(parts) + "}").encode("utf-8", "surrogatepass")


@hsettings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(_trade_payloads())
def test_fast_path_accepts_nothing_the_full_checks_reject(payload: bytes) -> None:
    _same_as_full(payload)


@hsettings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.binary(max_size=120), st.integers(0, 200), st.binary(max_size=4))
def test_fast_path_on_mutated_and_random_bytes(noise: bytes, at: int, insert: bytes) -> None:
    good = b'{"symbol":"AAPL","price":178.45,"volume":100,"ts":1763649000123,"conditions":["1"]}'
    _same_as_full(noise)
    _same_as_full(good[:at] + insert + good[at + len(insert) // 2 :])


_PLAIN_TRADE = b'{"symbol":"AAPL","price":178.45,"volume":100,"ts":1763649000123'


def test_a_trade_carries_its_producer_identity_through_every_path() -> None:
    payload = _PLAIN_TRADE + b',"producer_id":"0f3a9c","producer_seq":42}'
    trade = parse_trade(payload, now=NOW)
    assert (trade.producer_id, trade.producer_seq) == ("0f3a9c", 42)
    assert to_json(trade) == payload  # the producer's bytes are the compact form
    spaced = parse_trade(payload.replace(b",", b", "), now=NOW)  # the full checks
    assert (spaced.producer_id, spaced.producer_seq) == ("0f3a9c", 42)
    plain = parse_trade(_PLAIN_TRADE + b"}", now=NOW)
    assert (plain.producer_id, plain.producer_seq) == (None, None)
    nulls = parse_trade(_PLAIN_TRADE + b',"producer_id":null,"producer_seq":null}', now=NOW)
    assert (nulls.producer_id, nulls.producer_seq) == (None, None)


@pytest.mark.parametrize(
    ("identity", "reason"),
    [
        (b',"producer_id":"p1"', "producer_seq: missing, but producer_id is set"),
        (b',"producer_seq":1', "producer_id: missing, but producer_seq is set"),
        (b',"producer_id":"","producer_seq":1', "producer_id: must be 1-64 chars"),
        (b',"producer_id":"a b","producer_seq":1', "producer_id: must be 1-64 chars"),
        (b',"producer_id":"' + b"x" * 65 + b'","producer_seq":1', "producer_id: must be 1-64 chars"),
        (b',"producer_id":7,"producer_seq":1', "chars of A-Z a-z 0-9 _ -, got number 7"),
        (b',"producer_id":"p1","producer_seq":"1"', "producer_seq: must be an integer, got string"),
        (b',"producer_id":"p1","producer_seq":1.0', "producer_seq: must be an integer, got number"),
        (b',"producer_id":"p1","producer_seq":true', "producer_seq: must be an integer, got boolean"),
        (b',"producer_id":"p1","producer_seq":-1', "producer_seq: must be between 0 and"),
        (b',"producer_id":"p1","producer_seq":9223372036854775808', "producer_seq: must be between 0 and"),
    ],
)
def test_a_malformed_producer_identity_is_quarantined_with_the_reason(identity: bytes, reason: str) -> None:
    payload = _PLAIN_TRADE + identity + b"}"
    with pytest.raises(InvalidMessage, match=re.escape(reason)):
        parse_trade(payload, now=NOW)
    with pytest.raises(InvalidMessage, match=re.escape(reason)):
        parse_trade_values(payload, now=NOW)
    assert wire_trade(payload, now=NOW) is None
