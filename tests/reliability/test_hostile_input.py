"""Hostile input: a hypothesis fuzz of trade, quote and alert messages plus a corpus of hostile
payloads, mixed with good messages, through the real drain, the alert service and the producer's
Finnhub frame parser. Every bad message is quarantined (or counted and skipped) with a reason that
names the problem; every good one is loaded; nothing crashes; consumed = loaded + quarantined."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from alerts.config import load_rules
from alerts.service import AlertService, ServiceOptions
from producer.finnhub_stream import FinnhubStream
from producer.metrics import ProducerStats
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import (
    RelTopics,
    drain_until_caught_up,
    env_int,
    high_watermarks,
    owner_conn,
)
from tickhouse.config import SYMBOL_PATTERN, Settings
from tickhouse.schemas import Trade, now_ms, parse_trade, to_json

FUZZ = env_int("RELIABILITY_FUZZ_EXAMPLES", 2_500)
CORPUS_REPEAT = env_int("RELIABILITY_CORPUS_REPEAT", 130)
# valid per docs/interfaces/kafka-messages.md (so the alert service takes them) but not storable in
# PostgreSQL: the drain quarantines them (drain/rows.py)
STORAGE_ONLY = {"20k decimals", "NUL in source", "surrogate in source"}
GOOD = env_int("RELIABILITY_GOOD_TRADES", 5_000)
NOW = now_ms()
DAY = 86_400_000
QUARANTINE_KEPT = 65_536  # bytes of a rejected message raw.quarantine keeps (docs/interfaces/warehouse.md)


@dataclass(frozen=True)
class Case:
    label: str
    payload: bytes | None
    expect: str | None  # a word the quarantine reason must contain; None: must be loaded


def _trade(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"symbol": "RELH", "price": 101.25, "volume": 7, "ts": NOW - 3_600_000,
                            "conditions": ["1", "12"], "source": "rel"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def _j(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


def trade_corpus() -> list[Case]:
    nested = b'{"symbol":"RELH","x":' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    deep_obj = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    good = _j(_trade())
    cases = [
        Case("empty", b"", "empty"),
        Case("null value", None, "empty"),
        Case("binary", bytes(range(256)) * 4, "UTF-8"),
        Case("latin-1", '{"symbol":"ÄPPL","price":1,"volume":1,"ts":1}'.encode("latin-1"), "UTF-8"),
        Case("utf-16", '{"symbol":"RELH"}'.encode("utf-16"), "UTF-8"),
        Case("huge 1.1 MB", b'{"symbol":"RELH","pad":"' + b"x" * 1_100_000 + b'"}', "too large"),
        Case("just over 64 KiB", b'{"symbol":"RELH","pad":"' + b"x" * 65_536 + b'"}', "too large"),
        Case("deeply nested array", nested, "nested"),
        Case("deeply nested object", deep_obj, "nested"),
        Case("NaN price", _j(_trade(price=float("nan"))), "NaN"),
        Case("Infinity price", _j(_trade(price=float("inf"))), "Infinity"),
        Case("-Infinity volume", _j(_trade(volume=float("-inf"))), "Infinity"),
        Case("1e309 price", good.replace(b"101.25", b"1e309"), "price"),
        Case("huge int price", good.replace(b"101.25", b"9" * 5_000), "JSON"),
        Case("20k decimals", good.replace(b"101.25", b"1." + b"1" * 20_000), "decimal point"),
        Case("-0 price", good.replace(b"101.25", b"-0"), "price"),
        Case("negative price", _j(_trade(price=-1)), "price"),
        Case("zero price", _j(_trade(price=0)), "price"),
        Case("negative volume", _j(_trade(volume=-5)), "volume"),
        Case("string price", _j(_trade(price="101.25")), "price"),
        Case("string volume", _j(_trade(volume="7")), "volume"),
        Case("string ts", _j(_trade(ts=str(NOW))), "ts"),
        Case("bool price", _j(_trade(price=True)), "price"),
        Case("null price", _j(_trade(price=None)), "price"),
        Case("float ts", _j(_trade(ts=NOW + 0.5)), "ts"),
        Case("ts in ns", _j(_trade(ts=NOW * 1_000_000)), "ts"),
        Case("ts in us", _j(_trade(ts=NOW * 1_000)), "ts"),
        Case("ts far future", _j(_trade(ts=NOW + 3 * DAY)), "ts"),
        Case("ts year 9999+", _j(_trade(ts=253_402_300_800_000)), "ts"),
        Case("negative ts", _j(_trade(ts=-1)), "ts"),
        Case("SQL in symbol", _j(_trade(symbol="RELH'); drop table raw.trades; --")), "symbol"),
        Case("unicode symbol", _j(_trade(symbol="ÄPPLE")), "symbol"),
        Case("emoji symbol", _j(_trade(symbol="REL\U0001f4a5")), "symbol"),
        Case("control char symbol", _j(_trade(symbol="REL\x07H")), "symbol"),
        Case("NUL symbol", _j(_trade(symbol="REL\x00H")), "symbol"),
        Case("newline symbol", _j(_trade(symbol="REL\nH")), "symbol"),
        Case("tab symbol", _j(_trade(symbol="REL\tH")), "symbol"),
        Case("lone surrogate symbol", _j(_trade(symbol="REL\ud800")), "symbol"),
        Case("33-char symbol", _j(_trade(symbol="R" * 33)), "symbol"),
        Case("empty symbol", _j(_trade(symbol="")), "symbol"),
        Case("int symbol", _j(_trade(symbol=42)), "symbol"),
        Case("missing symbol", _j(_trade(symbol=_DROP)), "symbol"),
        Case("missing price", _j(_trade(price=_DROP)), "price"),
        Case("missing volume", _j(_trade(volume=_DROP)), "volume"),
        Case("missing ts", _j(_trade(ts=_DROP)), "ts"),
        Case("duplicated key", good[:-1] + b',"price":1}', "duplicated key"),
        Case("duplicated symbol", b'{"symbol":"RELH","symbol":"X",' + good[1:], "duplicated key"),
        Case("conditions not a list", _j(_trade(conditions="1,12")), "conditions"),
        Case("conditions with ints", _j(_trade(conditions=[1, 12])), "conditions"),
        Case("source not a string", _j(_trade(source=["x"])), "source"),
        Case("NUL in source", _j(_trade(source="a\x00b")), "NUL"),
        Case("surrogate in source", _j(_trade(source="a\udc00b")), "surrogate"),
        Case("array", b"[1, 2, 3]", "not a JSON object"),
        Case("string", b'"RELH"', "not a JSON object"),
        Case("number", b"42", "not a JSON object"),
        Case("json null", b"null", "not a JSON object"),
        Case("BOM", "\ufeff".encode() + good, "JSON"),
        Case("truncated", good[:-5], "JSON"),
        Case("trailing garbage", good + b"xx", "JSON"),
        Case("SQL payload", b"'); drop table raw.trades; --", "JSON"),
        Case("single quotes", good.replace(b'"', b"'"), "JSON"),
    ]
    # edge values docs/interfaces/kafka-messages.md admits: they must be loaded, exactly as sent
    cases += [
        Case("extra keys", _j(_trade(extra={"nested": [1, {"x": None}]}, z=1)), None),
        Case("1e308 price", good.replace(b"101.25", b"1e308"), None),
        Case("-0 volume", good.replace(b'"volume": 7', b'"volume": -0'), None),
        Case("ts in seconds (1970 in ms)", _j(_trade(ts=NOW // 1000)), None),
        Case("unicode source", _j(_trade(source="зеркало 💱 '); drop --")), None),
        Case("symbol edge chars", _j(_trade(symbol="BRK.B:X-1_/^=")), None),
    ]
    return cases


def _json_safe_invalid_text(s: str) -> bool:
    return not SYMBOL_PATTERN.fullmatch(s)


@st.composite
def mutated_trade(draw: Any) -> tuple[str, bytes, str]:
    """A good trade with exactly one field broken; the reason must name that field."""
    field = draw(st.sampled_from(["symbol", "price", "volume", "ts", "conditions", "source"]))
    junk = st.one_of(st.booleans(), st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    numbers_as_text = st.decimals(allow_nan=False, allow_infinity=False).map(str)
    strategies: dict[str, Any] = {
        "symbol": st.one_of(st.text(max_size=40).filter(_json_safe_invalid_text), st.integers(), junk,
                            st.just(_DROP), st.none()),
        "price": st.one_of(st.floats(max_value=0, allow_nan=False, allow_infinity=False),
                           st.integers(max_value=0), numbers_as_text, junk, st.just(_DROP), st.none()),
        "volume": st.one_of(st.floats(max_value=-1e-6, allow_nan=False, allow_infinity=False),
                            st.integers(max_value=-1), numbers_as_text, junk, st.just(_DROP)),
        "ts": st.one_of(st.integers(max_value=-1), st.integers(min_value=NOW + 2 * DAY),
                        st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
                        st.integers(min_value=0, max_value=NOW).map(str), junk, st.just(_DROP)),
        "conditions": st.one_of(st.text(max_size=5), st.integers(),
                                st.lists(st.one_of(st.integers(), st.booleans(), st.none()), min_size=1,
                                         max_size=3)),
        "source": st.one_of(st.integers(), st.booleans(), st.lists(st.text(max_size=3), max_size=2),
                            st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=1)),
    }
    value = draw(strategies[field])
    return field, _j(_trade(**{field: value})), field


def fuzz_cases(n: int) -> list[Case]:
    out: list[Case] = []

    @hsettings(max_examples=n, database=None, deadline=None, derandomize=False,
               suppress_health_check=list(HealthCheck))
    @given(st.one_of(mutated_trade(), st.binary(max_size=200).map(lambda b: ("binary", b, ""))))
    def collect(case: tuple[str, bytes, str]) -> None:
        label, payload, word = case
        out.append(Case(f"fuzz {label}", payload, word))

    collect()
    return out


def good_trade(i: int) -> bytes:
    return _j({"symbol": f"RELG{i % 5}", "price": 50 + (i % 100) / 4, "volume": i,
               "ts": NOW - 2 * 3_600_000 + i, "conditions": ["1"], "source": "rel-good"})


def good_quote(i: int) -> bytes:
    return _j({"symbol": "RELQ", "price": 10 + i, "change": 0.5, "change_pct": None, "high": 12 + i,
               "low": 9, "open": 10, "prev_close": 9.5, "ts": NOW - i, "source": "rel"})


def good_alert(i: int) -> bytes:
    return _j({"alert_id": f"rel-{i}", "symbol": "RELQ", "rule": "spike", "severity": "warning",
               "message": f"spike {i}", "trade_ts": NOW - i, "detected_ts": NOW, "details": {"i": i}})


def quote_corpus() -> list[Case]:
    g = json.loads(good_quote(0))
    return [
        Case("quote missing prev_close", _j({k: v for k, v in g.items() if k != "prev_close"}), "prev_close"),
        Case("quote string high", _j({**g, "high": "12"}), "high"),
        Case("quote NaN change", _j({**g, "change": float("nan")}), "NaN"),
        Case("quote SQL symbol", _j({**g, "symbol": "X'; drop table raw.quotes; --"}), "symbol"),
        Case("quote ts in ns", _j({**g, "ts": NOW * 1_000_000}), "ts"),
        Case("quote negative price", _j({**g, "price": -1}), "price"),
        Case("quote duplicated key", good_quote(1)[:-1] + b',"price":3}', "duplicated key"),
        Case("quote binary", b"\xff\xfe\x00", "UTF-8"),
        Case("quote empty", b"", "empty"),
    ]


def alert_corpus() -> list[Case]:
    g = json.loads(good_alert(0))
    return [
        Case("alert bad severity", _j({**g, "severity": "panic"}), "severity"),
        Case("alert details a list", _j({**g, "details": [1]}), "details"),
        Case("alert missing id", _j({k: v for k, v in g.items() if k != "alert_id"}), "alert_id"),
        Case("alert empty message", _j({**g, "message": ""}), "message"),
        Case("alert huge message", _j({**g, "message": "m" * 5000}), "message"),
        Case("alert trade_ts future", _j({**g, "trade_ts": NOW + 5 * DAY}), "trade_ts"),
        Case("alert SQL symbol", _j({**g, "symbol": "'; delete from raw.alerts; --"}), "symbol"),
        Case("alert not UTF-8", b'{"alert_id":"\xe9"}', "UTF-8"),
        Case("alert nested", b'{"details":' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested"),
    ]


def _mix(bad: list[Case], good: list[bytes], seed: int = 7) -> list[Case]:
    import random

    items = bad + [Case("good", g, None) for g in good]
    random.Random(seed).shuffle(items)
    return items


def _produce(topics: RelTopics, topic: str, cases: list[Case]) -> dict[tuple[int, int], Case]:
    producer = topics.producer()
    placed: dict[tuple[int, int], Case] = {}
    errors: list[Any] = []

    def delivered(case: Case) -> Any:
        def cb(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append((case.label, err))
            else:
                placed[(msg.partition(), msg.offset())] = case
        return cb

    for case in cases:
        while True:
            try:
                producer.produce(topic, value=case.payload, key=b"rel", on_delivery=delivered(case))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors[:5]
    return placed


def _verify_topic(conn: psycopg.Connection[Any], settings: Settings, table: str, topic: str,
                  placed: dict[tuple[int, int], Case]) -> tuple[int, int, list[str]]:
    quarantined = {
        (p, o): (err, bytes(payload) if payload is not None else None, length,
                 bytes(sha) if sha is not None else None)
        for p, o, err, payload, length, sha in conn.execute(
            "select kafka_partition, kafka_offset, error, payload, payload_length, payload_sha256"
            " from raw.quarantine where kafka_topic = %s",
            (topic,),
        ).fetchall()
    }
    loaded_rows = conn.execute(
        f"select kafka_partition, kafka_offset from {table} where kafka_topic = %s", (topic,)
    ).fetchall()
    loaded = set(loaded_rows)
    problems: list[str] = []
    assert len(loaded) == len(loaded_rows), f"{topic}: a message loaded twice"
    assert not (loaded & set(quarantined)), f"{topic}: a message both loaded and quarantined"
    consumed = sum(high_watermarks(settings, topic).values())
    assert consumed == len(placed) == len(loaded) + len(quarantined), (
        f"{topic}: consumed {consumed} != loaded {len(loaded)} + quarantined {len(quarantined)}"
    )
    for coords, case in placed.items():
        if case.expect is None:
            if coords not in loaded:
                problems.append(f"{case.label}: good message not loaded ({quarantined.get(coords)})")
            continue
        got = quarantined.get(coords)
        if got is None:
            problems.append(f"{case.label}: bad message not quarantined: {case.payload!r:.120}")
            continue
        error, payload, length, sha = got
        if case.expect.lower() not in error.lower():
            problems.append(f"{case.label}: reason {error!r} does not name {case.expect!r}")
        # docs/interfaces/warehouse.md: the original bytes, at most the first 64 KiB, with full length and
        # sha256
        if case.payload is None:
            if (payload, length, sha) != (None, None, None):
                problems.append(f"{case.label}: a null message kept bytes")
        elif (payload, length, sha) != (case.payload[:QUARANTINE_KEPT], len(case.payload),
                                        hashlib.sha256(case.payload).digest()):
            problems.append(f"{case.label}: quarantined payload, length or sha256 differs from the message")
    return len(loaded), len(quarantined), problems


def test_hostile_input_through_drain_alerts_and_finnhub_parser(
    settings: Settings, rel_topics: RelTopics, scenario: Scenario
) -> None:
    """hostile input: fuzz + corpus through drain, alerts, Finnhub parser."""
    t0 = time.monotonic()
    fuzz = fuzz_cases(FUZZ)
    corpus = trade_corpus()
    bad_trades = fuzz + [c for c in corpus for _ in range(1 if "huge" in c.label else CORPUS_REPEAT)]
    trades = _mix(bad_trades, [good_trade(i) for i in range(GOOD)])
    quotes = _mix([c for c in quote_corpus() for _ in range(20)], [good_quote(i) for i in range(300)])
    alerts = _mix([c for c in alert_corpus() for _ in range(20)], [good_alert(i) for i in range(300)])
    hostile = sum(1 for c in [*trades, *quotes, *alerts] if c.expect is not None)
    scenario.messages = len(trades) + len(quotes) + len(alerts)
    scenario.note(f"{hostile:,} hostile ({len(fuzz):,} hypothesis, {len(corpus)} corpus kinds) + "
                  f"{scenario.messages - hostile:,} good messages; "
                  f"generated in {time.monotonic() - t0:.0f} s")
    assert hostile >= 10_000

    placed = {
        rel_topics.trades: _produce(rel_topics, rel_topics.trades, trades),
        rel_topics.quotes: _produce(rel_topics, rel_topics.quotes, quotes),
        rel_topics.alerts: _produce(rel_topics, rel_topics.alerts, alerts),
    }
    drain_until_caught_up(settings, rel_topics, rel_topics.env(), timeout=180)
    problems: list[str] = []
    figures = []
    with owner_conn(settings) as conn:
        for topic, table in ((rel_topics.trades, "raw.trades"), (rel_topics.quotes, "raw.quotes"),
                             (rel_topics.alerts, "raw.alerts")):
            loaded, quarantined, found = _verify_topic(conn, settings, table, topic, placed[topic])
            figures.append(f"{table.split('.')[1]} {loaded}+{quarantined}q")
            problems += found
        # the edge values were stored exactly as sent
        stored = dict(conn.execute(
            "select source, count(*) from raw.trades where kafka_topic = %s group by 1", (rel_topics.trades,)
        ).fetchall())
        assert stored.get("rel-good") == GOOD
        big = conn.execute("select price from raw.trades where kafka_topic = %s and price > 1e300",
                           (rel_topics.trades,)).fetchall()
        assert big and all(p == Decimal("1e308") for (p,) in big)
    scenario.note("drain: " + ", ".join(figures))
    kinds = Counter(p.split(":")[0] for p in problems)
    assert not problems, f"{len(problems)} problems ({dict(kinds)}):\n" + "\n".join(problems[:30])
    scenario.lost, scenario.doubled = 0, 0

    # the same trades topic through the alert service: counted and skipped, no crash
    expected_bad = sum(1 for c in trades if c.expect is not None and c.label not in STORAGE_ONLY)
    options = ServiceOptions(
        bootstrap_servers=settings.kafka_bootstrap_servers, trades_topic=rel_topics.trades,
        alerts_topic=f"{rel_topics.alerts}.out", state_topic=f"{rel_topics.alerts}.state",
        rules=load_rules(), group=f"rel-hostile-{rel_topics.suffix}", from_beginning=True,
        max_seconds=120,
    )
    rel_topics.extra += [options.alerts_topic, options.state_topic]
    service = AlertService(options)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as err:  # the point: it must not happen
            failure.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while (service.stats.trades + service.stats.bad_messages < len(trades)
           and time.monotonic() < deadline):
        assert thread.is_alive(), f"the alert service died: {failure}"
        time.sleep(0.2)
    service.stop()
    thread.join(60)
    assert not failure, failure
    assert service.stats.bad_messages == expected_bad, (service.stats.bad_messages, expected_bad)
    assert service.stats.trades == len(trades) - expected_bad
    scenario.note(f"alert service: {service.stats.trades} trades, {service.stats.bad_messages} skipped")

    # the Finnhub frame parser: every payload as a raw frame (never a trade frame: counted and
    # skipped), and every JSON object's fields as a trade inside a frame (one trade or one problem)
    got: list[Trade] = []
    stats = ProducerStats()
    stream = FinnhubStream("ws://127.0.0.1:9", "k" * 20, ["RELH"], got.extend, stats=stats)
    frames = wrapped = 0
    short = {"symbol": "s", "price": "p", "volume": "v", "ts": "t", "conditions": "c"}
    for case in trades:
        if case.payload is None:
            continue
        before = (len(got), stats.malformed_frames)
        stream._handle(case.payload)
        frames += 1
        assert (len(got), stats.malformed_frames) == (before[0], before[1] + 1), case.label
        try:
            obj = json.loads(case.payload)
        except (ValueError, RecursionError):
            continue
        if not isinstance(obj, dict):
            continue
        item = {short.get(k, k): v for k, v in obj.items()}
        before = (len(got), stats.malformed_frames)
        stream._handle(json.dumps({"type": "trade", "data": [item]}, allow_nan=True))
        frames += 1
        wrapped += 1
        delta = (len(got) - before[0], stats.malformed_frames - before[1])
        assert delta in ((1, 0), (0, 1)), (case.label, delta)
        if case.expect is None:
            assert delta == (1, 0), f"{case.label}: a good trade in a frame was skipped"
    assert stats.frames == frames
    for trade in got:  # what the parser lets through is a valid trade
        parse_trade(to_json(trade))
    scenario.note(f"Finnhub parser: {frames} frames ({wrapped} trade frames), {len(got)} trades out, "
                  f"{stats.malformed_frames} counted and skipped")
