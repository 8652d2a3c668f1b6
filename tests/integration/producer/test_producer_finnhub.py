"""`tickhouse produce --source finnhub` against the local Finnhub-protocol server and the broker."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from producer.finnhub_quotes import QuotePoller, RateLimiter
from tests.finnhub_server import FakeFinnhub
from tests.integration.producer.conftest import consume_all
from tickhouse.config import Settings
from tickhouse.schemas import now_ms, parse_quote, parse_trade

pytestmark = pytest.mark.integration

SYMBOLS = ["AAPL", "MSFT", "BINANCE:BTCUSDT"]


def finnhub_env(server: FakeFinnhub, token: str = "test-token") -> dict[str, str]:
    return {"FINNHUB_API_KEY": token, "FINNHUB_WS_URL": server.ws_url,
            "FINNHUB_API_URL": server.api_url}


def random_trades(rng: random.Random, n: int, symbols: list[str], base_ts: int) -> list[dict[str, Any]]:
    trades = []
    for i in range(n):
        trade: dict[str, Any] = {"s": rng.choice(symbols), "p": round(rng.uniform(10, 500), 2),
                                 "t": base_ts + i, "v": rng.choice([0, 1, 100, 250, 0.5])}
        if rng.random() < 0.7:  # Finnhub omits `c` on many trades
            trade["c"] = rng.choice([["1"], ["1", "12"], ["24", "12"]])
        trades.append(trade)
    return trades


def as_tuple(trade: dict[str, Any]) -> tuple[Any, ...]:
    return (trade["s"], float(trade["p"]), float(trade["v"]), trade["t"],
            tuple(trade["c"]) if trade.get("c") is not None else None)


def by_symbol(rows: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        out[row[0]].append(row)
    return dict(out)


def test_every_trade_sent_while_connected_arrives_once_in_order(
    settings: Settings, make_topic: Any, run_producer: Any, fake_finnhub: FakeFinnhub
) -> None:
    topic = make_topic()
    rng = random.Random(11)
    producer = run_producer(
        ["--source", "finnhub", "--symbols", ",".join(SYMBOLS), "--trades-topic", topic],
        env=finnhub_env(fake_finnhub), metrics=True,
    )
    fake_finnhub.wait_subscribed(SYMBOLS, timeout=20)
    base = now_ms() - 60_000
    expected: list[dict[str, Any]] = []
    for frame in range(5):  # frames carry many trades
        expected += fake_finnhub.send_trades(random_trades(rng, 80, SYMBOLS, base + frame * 100))
        fake_finnhub.send_ping()
    # an unsubscribed symbol is not sent by the server
    assert fake_finnhub.send_trades([{"s": "TSLA", "p": 1.0, "t": base, "v": 1}]) == []
    # a malformed frame, a frame with one bad trade among good ones, an error frame
    fake_finnhub.send_raw('{"type":"trade","data":[{"s":"AAPL","p":')
    good = {"s": "MSFT", "p": 27.8801, "t": base + 999, "v": 0}
    fake_finnhub.send_raw(json.dumps({"type": "trade", "data": [
        {"s": "AAPL", "p": "12.5", "t": base, "v": 1}, good]}))
    expected.append(good)
    fake_finnhub.send_error("Subscribing to too many symbols")
    producer.wait_metric("trades_in", len(expected))

    # network failure: the producer reconnects (backoff) and subscribes again
    assert fake_finnhub.drop_connections() == 1
    fake_finnhub.wait_subscribed(SYMBOLS, timeout=20)
    assert fake_finnhub.handshakes == [101, 101]
    for frame in range(3):
        expected += fake_finnhub.send_trades(random_trades(rng, 100, SYMBOLS, base + 10_000 + frame * 100))
    metrics = producer.wait_metric("delivered", len(expected))
    assert metrics["reconnects"] == 1
    assert metrics["malformed_frames"] == 2
    assert metrics["error_frames"] == 1
    assert metrics["frames"] >= 5 + 5 + 3 + 3

    assert producer.stop() == 0, producer.stderr
    assert "too many symbols" in producer.stderr and "reduce SYMBOLS" in producer.stderr
    assert '{"type":"trade","data":[{"s":"AAPL","p":' in producer.stderr  # the frame's text

    received = consume_all(settings, topic, expect=len(expected))
    assert len(received) == len(expected)  # exactly once: nothing lost, nothing twice
    trades = []
    for message in received:
        trade = parse_trade(message.value)
        assert message.key == trade.symbol.encode()
        assert trade.source == "finnhub"
        trades.append((trade.symbol, float(trade.price), float(trade.volume), trade.ts,
                       trade.conditions))
    # key = symbol, so each symbol lives in one partition, in the order the server sent it
    assert {m.key: m.partition for m in received} == {
        m.key: m.partition for m in received[::-1]}
    in_kafka_order = sorted(zip(received, trades, strict=True),
                            key=lambda pair: (pair[0].partition, pair[0].offset))
    assert by_symbol([t for _, t in in_kafka_order]) == by_symbol([as_tuple(t) for t in expected])


def test_silence_watchdog_reconnects(run_producer: Any, fake_finnhub: FakeFinnhub,
                                     make_topic: Any) -> None:
    producer = run_producer(
        ["--source", "finnhub", "--symbols", "AAPL", "--trades-topic", make_topic(),
         "--silence-timeout", "1"],
        env=finnhub_env(fake_finnhub),
    )
    fake_finnhub.wait_subscribed(["AAPL"], timeout=20)
    fake_finnhub.wait_for(lambda: len(fake_finnhub.handshakes) >= 2, timeout=10)
    fake_finnhub.wait_subscribed(["AAPL"])
    assert producer.stop() == 0
    assert "nothing received for 1s" in producer.stderr


def test_bad_key_stops_at_once_with_a_clear_message(run_producer: Any, fake_finnhub: FakeFinnhub,
                                                    make_topic: Any) -> None:
    started = time.monotonic()
    producer = run_producer(
        ["--source", "finnhub", "--symbols", "AAPL", "--trades-topic", make_topic()],
        env=finnhub_env(fake_finnhub, token="wrong"),
    )
    producer.finish(timeout=30)
    assert producer.proc.returncode == 3
    assert "refused the API key (HTTP 401" in producer.stderr
    assert fake_finnhub.handshakes == [401]  # no hammering
    assert time.monotonic() - started < 20


def test_sighup_changes_symbols_on_the_same_connection(
    run_producer: Any, fake_finnhub: FakeFinnhub, make_topic: Any, tmp_path: Path,
    settings: Settings,
) -> None:
    topic = make_topic()
    symbols_file = tmp_path / "symbols.txt"
    symbols_file.write_text("AAPL,MSFT\n")
    producer = run_producer(
        ["--source", "finnhub", "--symbols-file", str(symbols_file), "--trades-topic", topic],
        env=finnhub_env(fake_finnhub), metrics=True,
    )
    fake_finnhub.wait_subscribed(["AAPL", "MSFT"], timeout=20)
    symbols_file.write_text("AAPL\nNVDA\n")
    producer.signal(signal.SIGHUP)
    fake_finnhub.wait_subscribed(["AAPL", "NVDA"])
    assert fake_finnhub.handshakes == [101]
    assert {"type": "unsubscribe", "symbol": "MSFT"} in fake_finnhub.received
    assert [m for m in fake_finnhub.received if m == {"type": "subscribe", "symbol": "AAPL"}] == [
        {"type": "subscribe", "symbol": "AAPL"}]  # AAPL untouched
    sent = fake_finnhub.send_trades([{"s": "AAPL", "p": 1.5, "t": now_ms(), "v": 1},
                                     {"s": "NVDA", "p": 2.5, "t": now_ms(), "v": 2},
                                     {"s": "MSFT", "p": 3.5, "t": now_ms(), "v": 3}])
    assert [t["s"] for t in sent] == ["AAPL", "NVDA"]
    producer.wait_metric("delivered", 2)
    assert producer.stop() == 0
    assert sorted(m.key or b"" for m in consume_all(settings, topic, expect=2)) == [b"AAPL", b"NVDA"]


def test_quotes_are_polled_with_retries_on_429(
    run_producer: Any, fake_finnhub: FakeFinnhub, make_topic: Any, settings: Settings
) -> None:
    trades_topic, quotes_topic = make_topic(), make_topic()
    fake_finnhub.set_quote("AAPL", c=261.74, d=-1.23, dp=-0.4678, h=263.31, l=260.68, o=261.07,
                           pc=262.97, t=1763649000)
    fake_finnhub.fail_quotes(2, status=429)
    producer = run_producer(
        ["--source", "finnhub", "--symbols", "AAPL,NOPE", "--trades-topic", trades_topic,
         "--quotes-topic", quotes_topic, "--quotes-every", "60"],
        env=finnhub_env(fake_finnhub), metrics=True,
    )
    values = producer.wait_metric("quotes_skipped", 1, timeout=30)
    assert values["quotes_in"] == 1
    assert values["quote_errors"] == 2
    assert producer.stop() == 0
    statuses = [(symbol, status) for _, symbol, status in fake_finnhub.quote_requests]
    assert statuses == [("AAPL", 429), ("AAPL", 429), ("AAPL", 200), ("NOPE", 200)]
    (message,) = consume_all(settings, quotes_topic, expect=1)
    quote = parse_quote(message.value)
    assert message.key == b"AAPL"
    assert (quote.symbol, float(quote.price), quote.ts) == ("AAPL", 261.74, 1763649000000)
    assert "c == 0" in producer.stderr and "NOPE" in producer.stderr


def test_quote_poller_survives_5xx_and_network_errors(fake_finnhub: FakeFinnhub) -> None:
    published: list[Any] = []
    fake_finnhub.set_quote("IBM", c=200.5, d=1, dp=0.5, h=201, l=199, o=200, pc=199.5, t=1700000000)
    fake_finnhub.fail_quotes(1, status=502)
    poller = QuotePoller(fake_finnhub.api_url, "test-token", lambda: ["IBM"], published.append,
                         every=60, backoff_initial=0.05, max_attempts=3)
    assert asyncio.run(poller.poll_symbol("IBM")) is not None
    assert len(published) == 1 and poller.stats.quote_errors == 1

    # nothing listening: requests raises ConnectionError, which the library does not wrap
    dead = QuotePoller("http://127.0.0.1:9/api/v1", "test-token", lambda: ["IBM"],
                       published.append, every=60, backoff_initial=0.01, max_attempts=2,
                       limiter=RateLimiter([]))
    assert asyncio.run(dead.poll_symbol("IBM")) is None
    assert dead.stats.quote_errors == 2
    # the class attribute is untouched: another client still points at Finnhub
    assert dead.client.API_URL != poller.client.API_URL
    import finnhub

    assert finnhub.Client.API_URL == "https://api.finnhub.io/api/v1"
