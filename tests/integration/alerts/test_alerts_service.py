"""The alert service against the real broker: end to end, restarts and rebalances without duplicate
or missing alerts, and notifiers that hang or fail without stalling the stream.

The oracle is the pure rule engine run over the same trades: the alerts on the topic must be exactly
the ones it fires, with the same ids (derived from the trades' Kafka coordinates).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client import REGISTRY

from alerts.config import (
    NotifierConfig,
    PriceMoveConfig,
    RsiConfig,
    RulesConfig,
    SessionExtremesConfig,
    StaleFeedConfig,
    SuspiciousTickConfig,
    SymbolRules,
    VolumeSpikeConfig,
)
from alerts.notify import NotifyOptions, NotifyService
from alerts.rules import Engine
from alerts.service import AlertService, ServiceOptions, alert_id

# SERVICE_SCRIPT: `tickhouse alerts` with a 6 s consumer session (a killed member's partitions free up soon)
from ops.suite import free_port
from tests.reliability.alert_process import SERVICE_SCRIPT
from tickhouse.config import load_settings
from tickhouse.kafka import client_config
from tickhouse.schemas import parse_alert, parse_trade
from tickhouse.trade_conditions import default_table

pytestmark = pytest.mark.integration

T0 = 1_763_640_000_000  # 2025-11-20 12:00 UTC: historical replays are valid input

RULES = SymbolRules(
    price_move=PriceMoveConfig(pct=1.0, window_seconds=60, cooldown_seconds=30),
    volume_spike=VolumeSpikeConfig(factor=1.5, minutes=3, cooldown_seconds=60),
    rsi=RsiConfig(overbought=60, oversold=40, cooldown_seconds=60),
    session_extremes=SessionExtremesConfig(cooldown_seconds=120),
    stale_feed=StaleFeedConfig(seconds=60, cooldown_seconds=120),
    suspicious_tick=SuspiciousTickConfig(band_pct=20, cooldown_seconds=0),
)

# a bad print (5 % off the median) is the only thing that alerts
SUSPICIOUS_TICK_ONLY = SymbolRules(
    price_move=PriceMoveConfig(enabled=False),
    volume_spike=VolumeSpikeConfig(enabled=False),
    rsi=RsiConfig(enabled=False),
    session_extremes=SessionExtremesConfig(enabled=False),
    stale_feed=StaleFeedConfig(enabled=False),
    suspicious_tick=SuspiciousTickConfig(band_pct=5, cooldown_seconds=0),
)


@dataclass
class Sent:
    partition: int
    offset: int
    value: bytes
    kafka_ts: int


@pytest.fixture(scope="module")
def bootstrap() -> str:
    return load_settings().kafka_bootstrap_servers


@pytest.fixture
def topics(bootstrap: str) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    names = {
        "trades": f"test.alerts.trades.{suffix}",
        "alerts": f"test.alerts.alerts.{suffix}",
        "state": f"test.alerts.state.{suffix}",
        "group": f"test-alerts-{suffix}",
    }
    admin = AdminClient(client_config(bootstrap))
    futures = admin.create_topics([NewTopic(names["trades"], 2, 1), NewTopic(names["alerts"], 2, 1)])
    for future in futures.values():
        future.result(30)
    yield names
    for future in admin.delete_topics([names["trades"], names["alerts"], names["state"]]).values():
        with contextlib.suppress(KafkaException):  # e.g. a state topic never created
            future.result(30)
    for future in admin.delete_consumer_groups([names["group"]]).values():
        with contextlib.suppress(KafkaException):
            future.result(30)


def options(bootstrap: str, topics: dict[str, str], rules: SymbolRules = RULES, **kw: Any) -> ServiceOptions:
    return ServiceOptions(
        bootstrap_servers=bootstrap,
        trades_topic=topics["trades"],
        alerts_topic=topics["alerts"],
        state_topic=topics["state"],
        rules=RulesConfig(defaults=rules, overrides={}),
        group=topics["group"],
        from_beginning=True,
        poll_timeout=0.05,
        consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
        **kw,
    )


class Running:
    def __init__(self, service: AlertService) -> None:
        self.service = service
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.run()
        except BaseException as err:  # surfaced by the test
            self.error = err

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the service did not stop"
        assert self.error is None, self.error


class Process:
    """`tickhouse alerts` as a process of its own on the test's topics, to be killed (SIGKILL: no
    commit, no checkpoint, no flush, its partitions held until its session expires)."""

    def __init__(self, topics: dict[str, str], rules: SymbolRules, tmp_path: Path, *extra: str) -> None:
        rules_path = tmp_path / f"rules-{uuid.uuid4().hex[:6]}.yaml"
        rules_path.write_text(yaml.safe_dump({"defaults": asdict(rules), "notifiers": []}))
        self.port = free_port()
        argv = [
            sys.executable, "-c", SERVICE_SCRIPT, "--rules", str(rules_path), "--group", topics["group"],
            "--trades-topic", topics["trades"], "--alerts-topic", topics["alerts"],
            "--state-topic", topics["state"], "--from-beginning", "--no-notify",
            "--metrics-port", str(self.port), *extra,
        ]  # fmt: skip
        env = {**os.environ, **load_settings().as_env(), "PYTHONUNBUFFERED": "1"}
        self.log_path = tmp_path / f"alerts-{uuid.uuid4().hex[:6]}.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def metric(self, name: str) -> float:
        """A gauge or counter of the process (-1 while its endpoint does not answer)."""
        assert self.proc.poll() is None, f"the alert service died:\n{self.log_path.read_text()[-4000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return -1.0
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else -1.0

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def ensure_stopped(self) -> None:
        if self.proc.poll() is None:
            self.kill()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def random_trades(seed: int, n: int, symbols: str, start: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    prices = dict.fromkeys(symbols, 100.0)
    out = []
    ts = start
    for _ in range(n):
        symbol = rnd.choice(symbols[:-1] if rnd.random() < 0.95 else symbols)
        prices[symbol] *= 1 + rnd.gauss(0, 0.01)
        price = prices[symbol] * (1.5 if rnd.random() < 0.01 else 1.0)
        ts += rnd.randint(0, 15_000)
        out.append({"symbol": symbol, "price": round(price, 4), "volume": rnd.randint(1, 500), "ts": ts})
    return out


def produce(
    bootstrap: str, topic: str, values: list[bytes], partitions: list[int], keys: list[bytes]
) -> list[Sent]:
    producer = Producer({**client_config(bootstrap), "linger.ms": 5})
    sent: list[Sent] = []

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        sent.append(Sent(msg.partition(), msg.offset(), msg.value(), msg.timestamp()[1]))

    for value, partition, key in zip(values, partitions, keys, strict=True):
        producer.produce(topic, value=value, key=key, partition=partition, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    return sent


def produce_trades(
    bootstrap: str, topic: str, trades: list[dict[str, Any]], partition_of: dict[str, int]
) -> list[Sent]:
    return produce(
        bootstrap,
        topic,
        [json.dumps(t).encode() for t in trades],
        [partition_of[t["symbol"]] for t in trades],
        [t["symbol"].encode() for t in trades],
    )


def oracle(rules: SymbolRules, topic: str, sent: list[Sent]) -> list[tuple[str, str, str, int]]:
    """(alert_id, symbol, rule, trade_ts) the engine fires over the trades in partition order."""
    engine = Engine(RulesConfig(defaults=rules, overrides={}))
    out = []
    for s in sorted(sent, key=lambda s: (s.partition, s.offset)):
        try:
            trade = parse_trade(s.value)
        except ValueError:
            continue
        eligibility = default_table().eligibility(trade.conditions)
        for f in engine.evaluate(
            trade.symbol, float(trade.price), float(trade.volume), trade.ts, -1, eligibility
        ):
            ident = alert_id(f.symbol, f.rule, topic, s.partition, s.offset)
            out.append((ident, f.symbol, f.rule, trade.ts))
    return out


def read_alerts(bootstrap: str, topic: str, check: bool = True) -> list[tuple[bytes | None, dict[str, Any]]]:
    consumer = Consumer({**client_config(bootstrap), "group.id": f"reader-{uuid.uuid4().hex}"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, 0) for p in parts if ends[p] > 0])
        out = []
        remaining = {p for p, end in ends.items() if end > 0}
        while remaining:
            for msg in consumer.consume(1000, 1.0):
                assert msg.error() is None
                if check:
                    parse_alert(msg.value())  # docs/interfaces/kafka-messages.md shape
                out.append((msg.key(), json.loads(msg.value())))
                if msg.offset() + 1 >= ends[msg.partition()]:
                    remaining.discard(msg.partition())
        return out
    finally:
        consumer.close()


def alerts_as_the_rules_say(
    bootstrap: str, topics: dict[str, str], trades: list[dict[str, Any]], partition_of: dict[str, int]
) -> tuple[list[tuple[bytes | None, dict[str, Any]]], AlertService]:
    """Produce `trades`, run the service until it has read them all and published as many alerts
    as the rules oracle finds in them, and assert those are exactly the oracle's; the alerts
    published (key, alert) and the stopped service."""
    sent = produce_trades(bootstrap, topics["trades"], trades, partition_of)
    expected = oracle(RULES, topics["trades"], sent)
    running = Running(AlertService(options(bootstrap, topics)))
    try:
        wait_for("all trades", lambda: running.service.stats.trades == len(trades))
        wait_for("the alerts", lambda: len(read_alerts(bootstrap, topics["alerts"])) >= len(expected))
    finally:
        running.stop()
    got = read_alerts(bootstrap, topics["alerts"])
    assert sorted((a["alert_id"], a["symbol"], a["rule"], a["trade_ts"]) for _, a in got) == sorted(expected)
    return got, running.service


def test_end_to_end_alerts_match_the_rules(bootstrap: str, topics: dict[str, str]) -> None:
    trades = random_trades(11, 2500, "ABCD", T0)
    partition_of = {"A": 0, "B": 0, "C": 0, "D": 0}  # one partition: stale_feed is deterministic
    values = [json.dumps(t).encode() for t in trades]
    garbage = [b"not json", b'{"symbol":"A","price":"1","volume":1,"ts":1}', b"\xff\xfe", b"[]"]
    for i, bad in enumerate(garbage):
        values.insert(500 * (i + 1), bad)
    keys = [b"A"] * len(values)
    sent = produce(bootstrap, topics["trades"], values, [0] * len(values), keys)
    assert len(sent) == len(values)
    expected = oracle(RULES, topics["trades"], sent)
    assert {rule for _, _, rule, _ in expected} >= {
        "price_move_up",
        "price_move_down",
        "volume_spike",
        "rsi_overbought",
        "rsi_oversold",
        "session_high",
        "session_low",
        "stale_feed",
        "suspicious_tick",
    }, "the crafted stream should exercise every rule"
    del partition_of

    running = Running(AlertService(options(bootstrap, topics)))
    try:
        wait_for("all trades", lambda: running.service.stats.trades == len(trades))
        wait_for(
            "all alerts",
            lambda: len(read_alerts(bootstrap, topics["alerts"])) >= len(expected),
        )
    finally:
        running.stop()
    assert running.service.stats.bad_messages == len(garbage)

    got = read_alerts(bootstrap, topics["alerts"])
    assert sorted((a["alert_id"], a["symbol"], a["rule"], a["trade_ts"]) for _, a in got) == sorted(expected)
    by_offset = {s.offset: s for s in sent}
    for key, alert in got:
        assert key == alert["symbol"].encode()
        trade = alert["details"]["trade"]
        source = by_offset[trade["offset"]]
        assert json.loads(source.value)["ts"] == alert["trade_ts"]
        assert trade["kafka_ts"] == source.kafka_ts
        assert source.kafka_ts <= alert["detected_ts"] <= source.kafka_ts + 30_000
        assert alert["severity"] in ("info", "warning", "critical") and alert["message"]
    details = {a["rule"]: a["details"] for _, a in got}
    assert details["price_move_up"]["threshold_pct"] == 1.0
    assert details["volume_spike"]["threshold_factor"] == 1.5
    assert details["rsi_overbought"]["threshold"] == 60.0
    assert details["suspicious_tick"]["band_pct"] == 20.0
    assert details["stale_feed"]["threshold_seconds"] == 60.0
    assert "previous_extreme" in details["session_high"]


def test_prints_that_do_not_update_last_fire_no_price_alert(bootstrap: str, topics: dict[str, str]) -> None:
    """Odd-lot, average-price and cash-sale prints far from the price fire nothing and do not move
    the reference prices; a print at the odd lot's price with a code the table does not list is
    evaluated as regular (it fires) and is counted."""
    regular: list[dict[str, Any]] = [
        {"symbol": "E", "price": 100.0, "volume": 100, "ts": T0 + i * 1000, "conditions": ["1"]}
        for i in range(6)
    ]
    ineligible: list[dict[str, Any]] = [
        {"symbol": "E", "price": 150.0, "volume": 10, "ts": T0 + 7_000, "conditions": ["12"]},
        {"symbol": "E", "price": 60.0, "volume": 500, "ts": T0 + 8_000, "conditions": ["3"]},
        {"symbol": "E", "price": 200.0, "volume": 300, "ts": T0 + 9_000, "conditions": ["5"]},
        {"symbol": "E", "price": 40.0, "volume": 20, "ts": T0 + 10_000, "conditions": ["1", "12"]},
    ]
    jump: dict[str, Any] = {
        "symbol": "E",
        "price": 150.0,
        "volume": 100,
        "ts": T0 + 12_000,
        "conditions": ["9999"],
    }
    trades = [*regular, *ineligible, jump]
    counted_before = REGISTRY.get_sample_value("tickhouse_alerts_unknown_condition_prints_total") or 0.0
    got, service = alerts_as_the_rules_say(bootstrap, topics, trades, {"E": 0})
    fired_on = {(a["trade_ts"], a["rule"]) for _, a in got}
    assert not {ts for ts, _ in fired_on} & {t["ts"] for t in ineligible}
    assert (jump["ts"], "suspicious_tick") in fired_on
    # taken as regular trades, the same prints would have fired price alerts of their own
    as_regular = Engine(RulesConfig(defaults=RULES, overrides={}))
    fired_as_regular = {t["ts"] for t in trades if as_regular.evaluate("E", t["price"], t["volume"], t["ts"])}
    assert fired_as_regular & {t["ts"] for t in ineligible}
    assert service.stats.unknown_condition_prints == 1
    counted = REGISTRY.get_sample_value("tickhouse_alerts_unknown_condition_prints_total") or 0.0
    assert counted - counted_before == 1


def test_zero_volume_price_updates_move_the_price_rules_but_not_the_volume(
    bootstrap: str, topics: dict[str, str]
) -> None:
    """Finnhub's `v = 0` updates (forex, crypto: a price, no trade) are prints like any other, as in
    the bars: they move the price rules and keep their symbol from going stale, and add nothing to
    a minute's volume. FX trades for four minutes, then sends only updates: a minute of them fires
    no volume spike, a jump in them fires the price rules; S sends one trade, then only updates."""
    fx: list[dict[str, Any]] = [
        {"symbol": "FX", "price": 100.0, "volume": 100, "ts": T0 + i * 10_000} for i in range(24)
    ]
    updates: list[dict[str, Any]] = [
        {"symbol": "FX", "price": 100.0, "volume": 0, "ts": T0 + 240_000 + i * 2_000} for i in range(30)
    ]
    jump: dict[str, Any] = {"symbol": "FX", "price": 101.5, "volume": 0, "ts": T0 + 300_000}
    alive: list[dict[str, Any]] = [
        {"symbol": "S", "price": 50.0, "volume": 0 if i else 10, "ts": T0 + i * 50_000 + 1}
        for i in range(7)
    ]
    trades = sorted([*fx, *updates, jump, *alive], key=lambda t: t["ts"])
    got, _ = alerts_as_the_rules_say(bootstrap, topics, trades, {"FX": 0, "S": 0})
    fired = {(a["symbol"], a["rule"], a["trade_ts"]) for _, a in got}
    assert {("FX", "price_move_up", jump["ts"]), ("FX", "session_high", jump["ts"])} <= fired
    assert not {rule for _, rule, _ in fired} & {"volume_spike", "stale_feed"}

    # the test can fail: the same updates carrying volume spike it, and without S's updates S is stale
    def rules_fired(stream: list[dict[str, Any]]) -> set[tuple[str, str]]:
        engine = Engine(RulesConfig(defaults=RULES, overrides={}))
        return {
            (f.symbol, f.rule)
            for t in stream
            for f in engine.evaluate(t["symbol"], t["price"], t["volume"], t["ts"])
        }

    with_volume = [{**t, "volume": 100} if t["symbol"] == "FX" and not t["volume"] else t for t in trades]
    assert ("FX", "volume_spike") in rules_fired(with_volume)
    without_updates = [t for t in trades if t["symbol"] != "S" or t["volume"]]
    assert ("S", "stale_feed") in rules_fired(without_updates)


def test_rebalance_crash_and_restart_neither_duplicate_nor_miss(
    bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    # stale_feed compares symbols across partitions, so it depends on how they interleave
    rules = replace(RULES, stale_feed=StaleFeedConfig(enabled=False))
    partition_of = {"A": 0, "B": 1, "C": 0}
    phases = []
    start = T0
    for seed in range(4):
        trades = random_trades(100 + seed, 700, "ABC", start)
        start = trades[-1]["ts"]
        phases.append(trades)
    all_sent: list[Sent] = []
    slow = {"checkpoint_seconds": 3600.0}  # checkpoints only on rebalance / request / stop

    def published() -> list[dict[str, Any]]:
        return [a for _, a in read_alerts(bootstrap, topics["alerts"])]

    def expect_published(sent: list[Sent]) -> None:
        want = len(oracle(rules, topics["trades"], sent))
        wait_for(f"{want} alerts", lambda: len(published()) >= want)

    # phase 1: one instance, a process of its own (phase 3 kills it)
    a = Process(topics, rules, tmp_path, "--checkpoint-seconds", "3600")
    try:
        wait_for("both partitions", lambda: a.metric("tickhouse_alerts_partitions_assigned") == 2, 90)
        all_sent += produce_trades(bootstrap, topics["trades"], phases[0], partition_of)
        evaluated = "tickhouse_alerts_trades_evaluated_total"
        wait_for("phase 1 consumed", lambda: a.metric(evaluated) == len(phases[0]))
        expect_published(all_sent)

        # phase 2: a second instance joins; state is handed over through checkpoints
        b = Running(AlertService(options(bootstrap, topics, rules, **slow)))
        wait_for(
            "the partitions to be shared",
            lambda: a.metric("tickhouse_alerts_partitions_assigned") == 1 and len(b.service.assigned) == 1,
        )
        all_sent += produce_trades(bootstrap, topics["trades"], phases[1], partition_of)
        (of_a,) = {0, 1} - b.service.assigned
        # handed over at a checkpoint: each instance evaluates only the new trades of its partition
        on_a = sum(1 for s in all_sent[len(phases[0]) :] if s.partition == of_a)
        wait_for("phase 2 consumed by the first", lambda: a.metric(evaluated) >= len(phases[0]) + on_a)
        wait_for(
            "phase 2 consumed by the second", lambda: consumed(all_sent, b.service, partitions={1 - of_a})
        )
        expect_published(all_sent)

        # phase 3: the first instance is killed (no commit, no checkpoint since the rebalance) after
        # publishing alerts; the survivor takes its partition over and must not re-send them
        a.kill()
    finally:
        a.ensure_stopped()
    wait_for("the survivor to own both partitions", lambda: len(b.service.assigned) == 2)
    all_sent += produce_trades(bootstrap, topics["trades"], phases[2], partition_of)
    wait_for("phase 3 consumed", lambda: consumed(all_sent, b.service))
    expect_published(all_sent)
    b.stop()
    assert b.service.stats.duplicates_suppressed > 0, "the crash left alerts past the commit"

    # phase 4: a fresh instance after a clean stop
    c = Running(AlertService(options(bootstrap, topics, rules, **slow)))
    all_sent += produce_trades(bootstrap, topics["trades"], phases[3], partition_of)
    wait_for("phase 4 consumed", lambda: consumed(all_sent, c.service))
    expect_published(all_sent)
    c.stop()
    assert c.service.stats.trades == len(phases[3]), "restored from the checkpoint, no replay"

    expected = oracle(rules, topics["trades"], all_sent)
    got = [(x["alert_id"], x["symbol"], x["rule"], x["trade_ts"]) for x in published()]
    duplicates = [k for k, n in Counter(g[0] for g in got).items() if n > 1]
    assert not duplicates, f"{len(duplicates)} alerts published twice"
    assert sorted(got) == sorted(expected)


def consumed(sent: list[Sent], *services: AlertService, partitions: set[int] | None = None) -> bool:
    """Every partition's (of `partitions`, default all) owner among `services` has consumed past
    the last sent trade."""
    ends: dict[int, int] = {}
    for s in sent:
        if partitions is None or s.partition in partitions:
            ends[s.partition] = max(ends.get(s.partition, 0), s.offset + 1)
    return all(any((svc.partitions.position(p) or -1) >= end for svc in services) for p, end in ends.items())


class Hooks(BaseHTTPRequestHandler):
    """/ok records the alert, /fail answers 500, /hang never answers until released."""

    received: list[bytes] = []
    failures = 0
    release = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/hang":
            type(self).release.wait(30)
            status = 200
        elif self.path == "/fail":
            type(self).failures += 1
            status = 500
        else:
            type(self).received.append(body)
            status = 200
        try:
            self.send_response(status)
            self.end_headers()
        except OSError:
            pass  # the client gave up (timeout)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hooks() -> Iterator[str]:
    Hooks.received, Hooks.failures, Hooks.release = [], 0, threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Hooks.release.set()
    server.shutdown()
    server.server_close()


def test_hanging_and_failing_notifiers_delay_only_themselves(
    bootstrap: str, topics: dict[str, str], hooks: str
) -> None:
    """Each notifier is its own consumer of the alerts topic: one that hangs or fails delays
    neither the alerts nor the other notifiers; an undeliverable alert goes to the dead letters."""
    # every 10th trade is a bad print: 20 suspicious_tick alerts, nothing else
    rules = SUSPICIOUS_TICK_ONLY
    retry = {"timeout_seconds": 1.0, "backoff_seconds": 0.05, "max_attempts": 3}
    notifiers = (
        NotifierConfig(type="webhook", name="hang", url_env="HOOK_HANG", **retry),  # type: ignore[arg-type]
        NotifierConfig(type="webhook", name="fail", url_env="HOOK_FAIL", **retry),  # type: ignore[arg-type]
        NotifierConfig(type="webhook", name="ok", url_env="HOOK_OK", **retry),  # type: ignore[arg-type]
    )
    environ = {
        "HOOK_HANG": f"{hooks}/hang",
        "HOOK_FAIL": f"{hooks}/fail",
        "HOOK_OK": f"{hooks}/ok",
    }
    notify = NotifyService(
        NotifyOptions(
            bootstrap_servers=bootstrap,
            alerts_topic=topics["alerts"],
            notifiers=notifiers,
            group=f"{topics['group']}-notify",
            environ=environ,
            consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
            max_age_seconds=0,  # the trades are from 2025: no age limit here
        )
    )
    dead_letters = notify.options.dead_letters
    running = Running(AlertService(options(bootstrap, topics, rules)))
    notify.start()
    try:
        wait_for("the partitions", lambda: len(running.service.assigned) == 2)
        wait_for("the notifiers", lambda: all(c.ready.is_set() for c in notify.consumers))
        trades = [
            {"symbol": "A", "price": 150.0 if i % 10 == 9 else 100.0, "volume": 1, "ts": T0 + i}
            for i in range(200)
        ]
        started = time.monotonic()
        produce_trades(bootstrap, topics["trades"], trades, {"A": 0})
        wait_for("20 alerts on the topic", lambda: len(read_alerts(bootstrap, topics["alerts"])) == 20)
        elapsed = time.monotonic() - started
        # the hanging notifier alone would need 20 x 3 attempts x 1 s timeout = 60 s
        assert elapsed < 10, f"the stream took {elapsed:.1f}s: notifiers are on the hot path"
        wait_for("the webhook receiver", lambda: len(Hooks.received) == 20, timeout=20)

        def dead(notifier: str) -> list[dict[str, Any]]:
            found = [d for _, d in read_alerts(bootstrap, dead_letters, check=False)]
            return [d for d in found if d["notifier"] == notifier]

        wait_for("the failing hook's dead letters", lambda: len(dead("fail")) == 20, timeout=30)
        failed = dead("fail")
    finally:
        notify.stop()
        running.stop()
        admin = AdminClient(client_config(bootstrap))
        for future in admin.delete_topics([dead_letters]).values():
            with contextlib.suppress(KafkaException):  # none was dead-lettered: never created
                future.result(30)
        admin.delete_consumer_groups([c.group for c in notify.consumers])
    assert not notify.failed()
    ids = {a["alert_id"] for _, a in read_alerts(bootstrap, topics["alerts"])}
    assert {json.loads(body)["alert_id"] for body in Hooks.received} == ids
    assert Hooks.failures == 20 * 3
    assert {d["alert"]["alert_id"] for d in failed} == ids
    assert {d["attempts"] for d in failed} == {3}
    assert all("HTTP 500" in d["error"] for d in failed)


def test_cli_serves_metrics_and_stops_after_max_seconds(
    bootstrap: str, topics: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alerts.cli import main

    rules = tmp_path / "rules.yaml"
    rules.write_text("defaults:\n  suspicious_tick: {band_pct: 5, cooldown_seconds: 0}\nnotifiers: []\n")
    port = free_port()
    monkeypatch.setenv("ALERTS_METRICS_PORT", str(port))
    monkeypatch.setenv("TRADES_TOPIC", topics["trades"])
    monkeypatch.setenv("ALERTS_TOPIC", topics["alerts"])
    argv = ["--rules", str(rules), "--group", topics["group"], "--from-beginning"]
    argv += ["--state-topic", topics["state"], "--max-seconds", "8"]
    result: list[int] = []
    before = {
        f"{sample.name}{_labels(sample.labels)}": sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name.startswith("tickhouse_alerts_")
    }
    thread = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    started = time.monotonic()
    thread.start()
    trades = [
        {"symbol": "Z", "price": 150.0 if i == 9 else 100.0, "volume": 1, "ts": T0 + i} for i in range(12)
    ]
    produce_trades(bootstrap, topics["trades"], trades, {"Z": 1})
    produce(bootstrap, topics["trades"], [b'{"symbol":"Z"}'], [1], [b"Z"])

    def metrics() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def value(text: str, name: str) -> float:
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else -1.0

    # the counters are process-wide and earlier tests' services counted too: compare with what
    # they held before this service ran
    counters = (
        "tickhouse_alerts_trades_evaluated_total",
        "tickhouse_alerts_bad_messages_total",
        "tickhouse_alerts_latency_seconds_count",
        "tickhouse_alerts_batch_seconds_count",
        'tickhouse_alerts_alerts_total{rule="suspicious_tick"}',
    )
    wait_for("the metrics endpoint", lambda: metrics() != "")
    # both partitions of the trades topic while it runs (it stops at 8 s): what an operator, and
    # the bench, read to see that a group has settled
    wait_for("both partitions held", lambda: value(metrics(), "tickhouse_alerts_partitions_assigned") == 2)
    thread.join(30)
    assert result == [0]
    text = metrics()
    grew = {name: value(text, name) - max(0.0, before.get(name, 0.0)) for name in counters}
    assert grew["tickhouse_alerts_trades_evaluated_total"] == 12, grew
    assert grew["tickhouse_alerts_bad_messages_total"] == 1, grew
    assert grew['tickhouse_alerts_alerts_total{rule="suspicious_tick"}'] == 1, grew
    assert grew["tickhouse_alerts_latency_seconds_count"] >= 1, grew
    assert grew["tickhouse_alerts_batch_seconds_count"] >= 1, grew
    assert value(text, "tickhouse_alerts_partitions_assigned") == 0  # none once it stopped
    assert 8 <= time.monotonic() - started < 30
    alerts = [a for _, a in read_alerts(bootstrap, topics["alerts"])]
    assert [(a["rule"], a["trade_ts"]) for a in alerts] == [("suspicious_tick", T0 + 9)]


def _labels(labels: dict[str, str]) -> str:
    """A sample's labels as the text exposition writes them: {rule="x"}, or nothing."""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""


def test_checkpoint_of_a_recreated_topic_is_ignored(bootstrap: str, topics: dict[str, str]) -> None:
    """A checkpoint beyond the log end (the topic was deleted and re-created) must not silence
    the alerts of the new topic."""
    stale = {
        "version": 1,
        "group": topics["group"],
        "topic": topics["trades"],
        "partition": 0,
        "next_offset": 1_000_000,
        "written_ms": T0,
        "symbols": {},
    }
    key = f"{topics['group']}|{topics['trades']}|0".encode()
    admin = AdminClient(client_config(bootstrap))
    compacted = NewTopic(topics["state"], 1, 1, config={"cleanup.policy": "compact"})
    admin.create_topics([compacted])[topics["state"]].result(30)
    produce(bootstrap, topics["state"], [json.dumps(stale).encode()], [0], [key])
    trades = [
        {"symbol": "Q", "price": 150.0 if i == 9 else 100.0, "volume": 1, "ts": T0 + i} for i in range(12)
    ]
    produce_trades(bootstrap, topics["trades"], trades, {"Q": 0})
    running = Running(AlertService(options(bootstrap, topics)))
    try:
        wait_for("the trades", lambda: running.service.stats.trades == 12)
        wait_for("the alert", lambda: len(read_alerts(bootstrap, topics["alerts"])) == 1)
    finally:
        running.stop()
    assert running.service.stats.replayed_silently == 0


def test_symbols_beyond_max_symbols_are_evicted_and_stay_evicted_after_a_restart(
    bootstrap: str, topics: dict[str, str]
) -> None:
    trades = [{"symbol": f"E{i}", "price": 100.0, "volume": 1, "ts": T0 + i * 1000} for i in range(8)]
    produce_trades(bootstrap, topics["trades"], trades, {t["symbol"]: 0 for t in trades})
    first = Running(AlertService(options(bootstrap, topics, max_symbols=5, checkpoint_seconds=0.5)))
    try:
        wait_for("the trades", lambda: first.service.stats.trades == 8)
        wait_for(
            "the eviction", lambda: sorted(first.service.engine.states) == ["E3", "E4", "E5", "E6", "E7"]
        )
        wait_for(
            "the tombstones",
            lambda: not first.service.engine.evicted and not first.service.checkpointer.busy,  # type: ignore[union-attr]
        )
    finally:
        first.stop()
    second = Running(AlertService(options(bootstrap, topics, max_symbols=5)))
    try:
        wait_for("the restore", lambda: second.service.ready.is_set())
        assert sorted(second.service.engine.states) == ["E3", "E4", "E5", "E6", "E7"]
    finally:
        second.stop()


def test_checkpoints_that_cannot_be_written_are_metered_and_the_alerts_go_on(
    bootstrap: str, topics: dict[str, str]
) -> None:
    from alerts import metrics

    # a state topic that refuses every symbol record (each is larger than 300 bytes)
    admin = AdminClient(client_config(bootstrap))
    tiny = NewTopic(topics["state"], 1, 1, config={"cleanup.policy": "compact", "max.message.bytes": "300"})
    admin.create_topics([tiny])[topics["state"]].result(30)
    failures = metrics.CHECKPOINT_FAILURES.labels("delivery")
    before = failures._value.get()
    running = Running(AlertService(options(bootstrap, topics, checkpoint_seconds=0.3)))
    try:
        wait_for("the partitions", lambda: len(running.service.assigned) == 2)
        first = [{"symbol": "F", "price": 100.0, "volume": 1, "ts": T0 + i} for i in range(6)]
        produce_trades(bootstrap, topics["trades"], first, {"F": 0})
        wait_for("failed checkpoint rounds", lambda: failures._value.get() >= before + 2)
        jump = [{"symbol": "F", "price": 150.0, "volume": 1, "ts": T0 + 10}]
        produce_trades(bootstrap, topics["trades"], jump, {"F": 0})
        wait_for(
            "the alert",
            lambda: any(a["rule"] == "suspicious_tick" for _, a in read_alerts(bootstrap, topics["alerts"])),
        )
        assert running.thread.is_alive()
    finally:
        running.stop()


def test_partitions_whose_state_could_not_be_restored_are_still_owned_and_committed(
    bootstrap: str, topics: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Restoring fails (here: reading the checkpoints raises): the instance starts the partitions
    with empty state, evaluates their trades and commits its progress, so a restart does not
    replay them (it used to consume them without ever committing)."""
    from alerts import checkpoints

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("injected: the checkpoints cannot be read")

    monkeypatch.setattr(checkpoints, "read", broken)
    trades = [
        {"symbol": "R", "price": 150.0 if i == 5 else 100.0, "volume": 1, "ts": T0 + i} for i in range(8)
    ]
    produce_trades(bootstrap, topics["trades"], trades, {"R": 1})
    running = Running(AlertService(options(bootstrap, topics, checkpoint_seconds=0.3)))
    try:
        wait_for("the partitions", lambda: running.service.assigned == {0, 1})
        wait_for("the trades", lambda: running.service.stats.trades == len(trades))
        wait_for(
            "the alert",
            lambda: any(a["rule"] == "suspicious_tick" for _, a in read_alerts(bootstrap, topics["alerts"])),
        )
    finally:
        running.stop()
    consumer = Consumer({**client_config(bootstrap), "group.id": topics["group"]})
    try:
        committed = consumer.committed([TopicPartition(topics["trades"], 1)], timeout=10)
    finally:
        consumer.close()
    assert committed[0].offset == len(trades), "progress on the partition was never committed"


def test_alerts_on_old_trades_are_published_but_not_notified(
    bootstrap: str, topics: dict[str, str], hooks: str
) -> None:
    """An alert raised on a trade older than max_age_seconds (a replay, a backfill) reaches the
    alerts topic like any other but no notifier sends it; it is counted as too_old. Live ones are sent."""
    rules = SUSPICIOUS_TICK_ONLY
    notify = NotifyService(
        NotifyOptions(
            bootstrap_servers=bootstrap,
            alerts_topic=topics["alerts"],
            notifiers=(NotifierConfig(type="webhook", name="ok", url_env="HOOK_OK"),),  # type: ignore[arg-type]
            group=f"{topics['group']}-notify",
            environ={"HOOK_OK": f"{hooks}/ok"},
            consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
            max_age_seconds=300,
        )
    )
    running = Running(AlertService(options(bootstrap, topics, rules)))
    notify.start()
    try:
        wait_for("the partitions", lambda: len(running.service.assigned) == 2)
        wait_for("the notifier", lambda: all(c.ready.is_set() for c in notify.consumers))
        now = int(time.time() * 1000)
        # every 10th trade is a bad print: 5 alerts on hour-old trades (OLD), 5 on live ones (LIVE)
        trades = [
            {"symbol": symbol, "price": 150.0 if i % 10 == 9 else 100.0, "volume": 1, "ts": start + i}
            for symbol, start in (("OLD", now - 3_600_000), ("LIVE", now))
            for i in range(50)
        ]
        produce_trades(bootstrap, topics["trades"], trades, {"OLD": 0, "LIVE": 1})
        wait_for("10 alerts on the topic", lambda: len(read_alerts(bootstrap, topics["alerts"])) == 10)
        wait_for("5 notifications", lambda: len(Hooks.received) == 5, timeout=20)
        consumer = notify.consumers[0]
        wait_for("5 alerts counted too old", lambda: consumer.too_old == 5, timeout=20)
        time.sleep(1)  # nothing more arrives
    finally:
        notify.stop()
        running.stop()
        admin = AdminClient(client_config(bootstrap))
        for future in admin.delete_topics([notify.options.dead_letters]).values():
            with contextlib.suppress(KafkaException):  # nothing dead-lettered: never created
                future.result(30)
        admin.delete_consumer_groups([c.group for c in notify.consumers])
    published = [a for _, a in read_alerts(bootstrap, topics["alerts"])]
    assert sorted(a["symbol"] for a in published) == ["LIVE"] * 5 + ["OLD"] * 5
    sent = [json.loads(body) for body in Hooks.received]
    assert len(sent) == 5 and {a["symbol"] for a in sent} == {"LIVE"}
    assert consumer.sent == 5 and consumer.too_old == 5
