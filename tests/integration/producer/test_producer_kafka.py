"""Replay, synthetic, shutdown, spool and broker-restart behaviour against the real broker."""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.suite import free_port
from producer.publisher import Publisher
from producer.synthetic import SyntheticConfig, generate
from tests.integration.producer.conftest import consume_all
from tickhouse.config import Settings
from tickhouse.schemas import Trade, now_ms, parse_trade, to_json

pytestmark = pytest.mark.integration


def write_csv(path: Path, rows: list[tuple[str, float, int, int]]) -> Path:
    path.write_text("symbol,price,volume,ts\n" + "".join(
        f"{s},{p},{v},{t}\n" for s, p, v, t in rows))
    return path


def as_published(value: bytes) -> Trade:
    """The trade of a message without the producer's identity (that belongs to the run)."""
    trade = parse_trade(value)
    assert trade.producer_id is not None and trade.producer_seq is not None
    return dataclasses.replace(trade, producer_id=None, producer_seq=None)


def per_symbol_values(messages: list[Any]) -> dict[bytes | None, list[bytes]]:
    out: dict[bytes | None, list[bytes]] = {}
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        out.setdefault(m.key, []).append(m.value)
    return out


def test_replay_speed_zero_publishes_the_file_exactly_once_in_order(
    settings: Settings, make_topic: Callable[[], str], run_producer: Any, tmp_path: Path
) -> None:
    topic = make_topic()
    t0 = 1_361_800_000_000
    rows = [(("AAPL", "MSFT", "IBM")[i % 3], 100 + (i % 97) / 100, 100 * (1 + i % 5), t0 + i)
            for i in range(3000)]
    rows.append(("AAPL", -5, 100, t0))  # invalid: skipped and counted, not sent
    path = write_csv(tmp_path / "trades.csv", rows)
    producer = run_producer(["--source", "replay", "--file", str(path), "--speed", "0",
                             "--trades-topic", topic])
    producer.finish(timeout=60)
    assert producer.proc.returncode == 0, producer.stderr
    assert "3,000 published, 3,000 acknowledged" in producer.stderr
    assert "1 invalid inputs skipped" in producer.stderr
    received = consume_all(settings, topic, expect=3000)
    assert len(received) == 3000
    expected: dict[bytes | None, list[bytes]] = {}
    for s, p, v, t in rows[:-1]:
        trade = Trade(s, p, v, t, None, "replay")
        expected.setdefault(s.encode(), []).append(to_json(trade))
    got = per_symbol_values(received)
    assert {k: [as_published(v) for v in vs] for k, vs in got.items()} == {
        k: [parse_trade(v) for v in vs] for k, vs in expected.items()}


def test_replay_csv_carries_conditions_to_kafka_and_skips_a_bad_cell(
    settings: Settings, make_topic: Callable[[], str], run_producer: Any, tmp_path: Path
) -> None:
    topic = make_topic()
    t0 = 1_361_800_000_000
    path = tmp_path / "trades.csv"
    path.write_text(
        "symbol,price,volume,ts,conditions\n"
        f"AAPL,100.5,100,{t0},1\n"
        f"AAPL,101,7,{t0 + 1},12\n"
        f"AAPL,99,500,{t0 + 2},1;3\n"
        f"AAPL,98,100,{t0 + 3},\n"
        f'AAPL,97,100,{t0 + 4},"1,12"\n'
    )
    producer = run_producer(["--source", "replay", "--file", str(path), "--speed", "0",
                             "--trades-topic", topic])
    producer.finish(timeout=60)
    assert producer.proc.returncode == 0, producer.stderr
    assert "4 published, 4 acknowledged" in producer.stderr
    assert "1 invalid inputs skipped" in producer.stderr
    assert f"{path}:6: skipped: conditions: '1,12' is not a list of condition codes" in producer.stderr
    received = consume_all(settings, topic, expect=4)
    messages = [json.loads(m.value) for m in sorted(received, key=lambda m: m.offset)]
    assert [(m["price"], m.get("conditions")) for m in messages] == [
        (100.5, ["1"]),
        (101, ["12"]),
        (99, ["1", "3"]),
        (98, None),
    ]
    assert {m.key for m in received} == {b"AAPL"}


# serial (pyproject.toml): times the gaps between sends to 60 ms
@pytest.mark.serial
def test_replay_speed_one_keeps_the_gaps(
    settings: Settings, make_topic: Callable[[], str], run_producer: Any, tmp_path: Path
) -> None:
    topic = make_topic()
    t0 = 1_361_800_000_000
    offsets = [0, 0, 100, 250, 600, 601, 900, 1400, 1500]
    path = write_csv(tmp_path / "t.csv", [("AAPL", 10.0, 100, t0 + o) for o in offsets])
    producer = run_producer(["--source", "replay", "--file", str(path), "--speed", "1",
                             "--trades-topic", topic])
    assert producer.finish(timeout=60) is not None and producer.proc.returncode == 0
    received = sorted(consume_all(settings, topic, expect=len(offsets)), key=lambda m: m.offset)
    assert [parse_trade(m.value).ts - t0 for m in received] == offsets
    # Kafka's CreateTime is when the producer sent each message: the gaps are the file's
    sent = [m.timestamp_ms - received[0].timestamp_ms for m in received]
    for got, want in zip(sent, offsets, strict=True):
        assert abs(got - want) <= 60, (sent, offsets)


# serial (pyproject.toml): times the gaps between sends to 60 ms
@pytest.mark.serial
def test_replay_speed_ten_is_ten_times_faster(
    settings: Settings, make_topic: Callable[[], str], run_producer: Any, tmp_path: Path
) -> None:
    topic = make_topic()
    t0 = 1_361_800_000_000
    offsets = [0, 5000, 10000]
    path = write_csv(tmp_path / "t.csv", [("IBM", 10.0, 100, t0 + o) for o in offsets])
    run_producer(["--source", "replay", "--file", str(path), "--speed", "10",
                  "--trades-topic", topic]).finish(timeout=60)
    received = sorted(consume_all(settings, topic, expect=3), key=lambda m: m.offset)
    sent = [m.timestamp_ms - received[0].timestamp_ms for m in received]
    assert sent == pytest.approx([0, 500, 1000], abs=60)


def test_synthetic_is_reproducible_for_a_seed(
    settings: Settings, make_topic: Callable[[], str], run_producer: Any
) -> None:
    topics = [make_topic(), make_topic()]
    for topic in topics:
        producer = run_producer(["--source", "synthetic", "--symbols", "AAPL,MSFT", "--rate",
                                 "400", "--duration", "5", "--seed", "42", "--start-ts",
                                 "1763649000000", "--fast", "--trades-topic", topic])
        producer.finish(timeout=60)
        assert producer.proc.returncode == 0, producer.stderr
    first, second = (per_symbol_values(consume_all(settings, t)) for t in topics)
    assert 1500 < sum(len(v) for v in first.values()) < 2500  # ~ rate x duration

    def market_data(values: dict[bytes | None, list[bytes]]) -> dict[bytes | None, list[dict[str, Any]]]:
        """The trades without the producer's identity, which belongs to the run, not to the seed."""
        out: dict[bytes | None, list[dict[str, Any]]] = {}
        for key, messages in values.items():
            for value in messages:
                trade = json.loads(value)
                identity = trade.pop("producer_id"), trade.pop("producer_seq")
                assert isinstance(identity[0], str) and isinstance(identity[1], int)
                out.setdefault(key, []).append(trade)
        return out

    assert market_data(first) == market_data(second)
    trades = [parse_trade(v) for v in first[b"AAPL"]]
    seqs = [t.producer_seq for values in first.values() for t in map(parse_trade, values)]
    assert len(set(seqs)) == len(seqs)  # one identity per trade
    assert all(t.source == "synthetic" for t in trades)
    assert [t.ts for t in trades] == sorted(t.ts for t in trades)


def test_sigterm_flushes_and_exits_zero(
    settings: Settings, make_topic: Callable[[], str], run_producer: Any
) -> None:
    topic = make_topic()
    producer = run_producer(["--source", "synthetic", "--symbols", "AAPL,MSFT,IBM", "--rate",
                             "2000", "--duration", "600", "--trades-topic", topic],
                            metrics=True)
    metrics = producer.wait_metric("delivered", 2000, timeout=30)
    assert metrics["produce_latency_seconds_count"] > 0  # the latency histogram is sampled
    assert metrics["produce_latency_seconds_sum"] / metrics["produce_latency_seconds_count"] < 5
    started = time.monotonic()
    producer.signal(signal.SIGTERM)
    producer.finish(timeout=30)
    assert producer.proc.returncode == 0, producer.stderr
    assert time.monotonic() - started < 10
    summary = producer.stderr.strip().splitlines()[-1]
    published = int(summary.split(" published")[0].split()[-1].replace(",", ""))
    assert f"{published:,} acknowledged, 0 kept in the spool" in summary
    assert len(consume_all(settings, topic, expect=published)) == published


def trade_message(i: int, base: int) -> tuple[bytes, bytes]:
    symbol = ("AAPL", "MSFT", "IBM", "GOOG")[i % 4]
    return symbol.encode(), to_json(Trade(symbol, 100 + i / 100, 100, base + i, None, "test"))


def test_unreachable_broker_spools_then_resends_everything_in_order(
    settings: Settings, make_topic: Callable[[], str], tmp_path: Path
) -> None:
    topic = make_topic()
    spool = tmp_path / "spool.bin"
    base = now_ms() - 10_000
    # 1) nothing listens on this port: the queue (50) fills, the rest goes to the spool
    down = Publisher(f"127.0.0.1:{free_port()}", spool_path=spool, max_queue_messages=50,
                     stall_seconds=0.3)
    down.publish_batch(topic, [(0, *trade_message(i, base)) for i in range(250)])
    assert down.spooling
    for i in range(250, 400):
        down.publish(topic, *trade_message(i, base))
    assert down.stats.spooled >= 400 - 50
    assert down.close(timeout=0.5) == 400  # the unacknowledged queue joins the spool, in front
    assert spool.exists()
    # 2) with the broker: the spool goes first, then new messages
    up = Publisher(settings.kafka_bootstrap_servers, spool_path=spool, max_queue_messages=50)
    for i in range(400, 450):
        up.publish(topic, *trade_message(i, base))
    up.publish_batch(topic, [(0, *trade_message(i, base)) for i in range(450, 500)])
    assert up.flush(30) == 0
    assert up.stats.delivered == 500 and up.stats.published == 100
    assert up.close() == 0
    assert not spool.exists()
    received = consume_all(settings, topic, expect=500)
    assert len(received) == 500
    expected: dict[bytes | None, list[bytes]] = {}
    for i in range(500):
        key, value = trade_message(i, base)
        expected.setdefault(key, []).append(value)
    assert per_symbol_values(received) == expected


# --- broker restart ----------------------------------------------------------------------------


@pytest.fixture
def broker_control(settings: Settings) -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
    """(stop, start) for the Kafka broker of the local stack, via ops.stack.

    Skipped unless the broker at KAFKA_BOOTSTRAP_SERVERS is one that ops.stack started
    (its pid is recorded in the state dir): a broker this test does not own is never stopped.
    """
    from ops.stack import kafka_broker

    if kafka_broker.service(settings).pid() is None:
        pytest.skip(f"the broker at {settings.kafka_bootstrap_servers} was not started by "
                    f"ops.stack (no pid under {settings.state_dir}); not stopping it")

    def stop() -> None:
        kafka_broker.stop(settings)

    def start() -> None:
        kafka_broker.start(settings)

    yield stop, start
    kafka_broker.start(settings)  # leave it running whatever happened


# serial (pyproject.toml): stops and restarts the stack's Kafka broker
@pytest.mark.serial
def test_broker_restart_during_production_loses_nothing(
    settings: Settings, make_topic: Callable[[], str], run_producer: Any,
    broker_control: tuple[Callable[[], None], Callable[[], None]],
) -> None:
    stop_broker, start_broker = broker_control
    topic = make_topic()
    start_ts = now_ms() - 3_600_000
    config = SyntheticConfig(symbols=("AAPL", "MSFT", "IBM"), rate=1000, duration=20, seed=5,
                             start_ts=start_ts)
    producer = run_producer(["--source", "synthetic", "--symbols", "AAPL,MSFT,IBM", "--rate",
                             "1000", "--duration", "20", "--seed", "5", "--start-ts",
                             str(start_ts), "--trades-topic", topic, "--max-queue", "500",
                             "--stall-seconds", "1"], metrics=True)
    producer.wait_metric("delivered", 1000, timeout=30)
    stop_broker()
    # the in-memory queue fills, then the spool takes over
    producer.wait_metric("spooled", 100, timeout=30)
    start_broker()
    producer.finish(timeout=120)
    assert producer.proc.returncode == 0, producer.stderr
    assert "0 kept in the spool" in producer.stderr.strip().splitlines()[-1], producer.stderr[-6000:]
    # the oracle: the same seed regenerates exactly the trades the producer generated
    expected: dict[bytes | None, list[bytes]] = {}
    for trade in generate(config):
        expected.setdefault(trade.symbol.encode(), []).append(to_json(trade))
    received = consume_all(settings, topic, expect=sum(map(len, expected.values())), timeout=60)
    got = per_symbol_values(received)
    for key, values in expected.items():
        assert len(got[key]) == len(values), key  # nothing lost, nothing twice
        assert [as_published(v) for v in got[key]] == [parse_trade(v) for v in values], key  # in order
