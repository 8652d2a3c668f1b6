"""SIGKILL the alert service repeatedly: it resumes without missing or re-sending an alert."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition

from alerts.config import DEFAULT_RULES_PATH, load_rules
from alerts.rules import Engine
from alerts.service import alert_id
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import RelTopics, env_int, high_watermarks, kafka_committed
from tickhouse.config import Settings
from tickhouse.kafka import client_config
from tickhouse.schemas import now_ms, parse_alert

TRADES = env_int("RELIABILITY_ALERT_TRADES", 12_000)
KILLS = env_int("RELIABILITY_ALERT_KILLS", 4)
# `tickhouse alerts` itself, with a 6 s consumer session instead of librdkafka's 45 s: a SIGKILLed
# member keeps its partitions until its session expires, and 45 s per kill does not fit the budget.
SERVICE_SCRIPT = """
import sys
import alerts.cli as cli
base = cli.ServiceOptions
def options(**kw):
    kw.setdefault("consumer_config", {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    return base(**kw)
cli.ServiceOptions = options
sys.exit(cli.main(sys.argv[1:]))
"""
SYMBOLS = ("RELA1", "RELA2", "RELA3", "RELA4", "RELA5", "RELA6")


def _trades(seed: int, n: int, start: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    prices = dict.fromkeys(SYMBOLS, 100.0)
    ts = start
    out = []
    for _ in range(n):
        symbol = rnd.choice(SYMBOLS)
        prices[symbol] *= 1 + rnd.gauss(0, 0.004)
        price = prices[symbol] * (1.3 if rnd.random() < 0.005 else 1.0)
        ts += rnd.randint(0, 4_000)
        volume = rnd.randint(1, 500) * (20 if rnd.random() < 0.01 else 1)
        out.append({"symbol": symbol, "price": round(price, 4), "volume": volume, "ts": ts})
    return out


def _read_all(settings: Settings, topic: str) -> list[dict[str, Any]]:
    marks = high_watermarks(settings, topic)
    consumer = Consumer({**client_config(settings.kafka_bootstrap_servers),
                         "group.id": f"rel-reader-{uuid.uuid4().hex}", "enable.auto.commit": False})
    out: list[dict[str, Any]] = []
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p, h in marks.items() if h > 0])
        remaining = {p for p, h in marks.items() if h > 0}
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 1.0):
                assert msg.error() is None, msg.error()
                parse_alert(msg.value())  # docs/interfaces/kafka-messages.md shape
                value, partition, offset = msg.value(), msg.partition(), msg.offset()
                assert value is not None and partition is not None and offset is not None
                out.append(json.loads(value))
                if offset + 1 >= marks[partition]:
                    remaining.discard(partition)
        assert not remaining, f"could not read all of {topic}"
    finally:
        consumer.close()
    return out


def test_sigkill_alert_service(
    settings: Settings, rel_topics: RelTopics, tmp_path: Path, scenario: Scenario
) -> None:
    """alert service SIGKILLed and restarted while trades flow."""
    # the bundled rules without stale_feed, whose firings depend on how partitions interleave
    rules_doc = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    rules_doc["defaults"]["stale_feed"]["enabled"] = False
    rules_doc["notifiers"] = []
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules_doc))
    state_topic = f"{rel_topics.alerts}.state"
    rel_topics.extra.append(state_topic)
    group = f"rel-alerts-{rel_topics.suffix}"
    argv = [
        sys.executable, "-c", SERVICE_SCRIPT, "--rules", str(rules_file), "--group", group,
        "--trades-topic", rel_topics.trades, "--alerts-topic", rel_topics.alerts,
        "--state-topic", state_topic, "--from-beginning", "--metrics-port", "0",
        "--checkpoint-seconds", "1",
    ]
    log_path = tmp_path / "alerts.log"
    log = log_path.open("a")

    def restored() -> int:
        return len(re.findall(r"partition \d+: ", log_path.read_text()))

    def start() -> subprocess.Popen[bytes]:
        before = restored()
        proc = subprocess.Popen(argv, env=rel_topics.env(), stdout=log, stderr=subprocess.STDOUT)
        # kill only an instance that owns partitions: wait until it has restored them
        deadline = time.monotonic() + 60
        try:
            while restored() <= before:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the alert service got no partitions"
                time.sleep(0.2)
        except BaseException:
            proc.kill()
            proc.wait(30)
            raise
        return proc

    rng = random.Random(env_int("RELIABILITY_SEED", int(time.time())))
    # all in the past (up to 4 s apart): trades dated after their Kafka timestamp are bounded by it
    trades = _trades(rng.randrange(1 << 30), TRADES, now_ms() - TRADES * 4_000 - 3_600_000)
    producer = rel_topics.producer()
    sent: list[tuple[int, int, bytes]] = []

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        sent.append((int(msg.partition()), int(msg.offset()), bytes(msg.value())))

    service = start()
    kills = 0
    chunks = KILLS * 2 + 2
    size = len(trades) // chunks + 1
    try:
        for c in range(chunks):
            for t in trades[c * size:(c + 1) * size]:
                producer.produce(rel_topics.trades, key=t["symbol"].encode(),
                                 value=json.dumps(t).encode(), on_delivery=delivered)
                producer.poll(0)
            producer.flush(30)
            time.sleep(rng.uniform(0.5, 2.0))
            if c % 2 == 1 and kills < KILLS:
                service.send_signal(signal.SIGKILL)
                service.wait(30)
                kills += 1
                service = start()
        assert len(sent) == TRADES
        marks = high_watermarks(settings, rel_topics.trades)
        deadline = time.monotonic() + 120
        while kafka_committed(settings, group, rel_topics.trades) != marks:
            assert service.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the alert service did not catch up"
            time.sleep(1)
        time.sleep(2)
        service.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0, log_path.read_text()[-3000:]
    finally:
        if service.poll() is None:
            service.kill()
        log.close()

    engine = Engine(load_rules(rules_file))
    expected: dict[str, tuple[str, str, int]] = {}
    for partition, offset, value in sorted(sent):
        t = json.loads(value)
        for f in engine.evaluate(t["symbol"], float(t["price"]), float(t["volume"]), t["ts"], partition):
            expected[alert_id(f.symbol, f.rule, rel_topics.trades, partition, offset)] = (
                f.symbol, f.rule, t["ts"])
    published = [a["alert_id"] for a in _read_all(settings, rel_topics.alerts)]
    missing = set(expected) - set(published)
    extra = set(published) - set(expected)
    doubled = len(published) - len(set(published))
    scenario.kills = kills
    scenario.messages = TRADES
    scenario.lost = len(missing)
    scenario.doubled = doubled + len(extra)
    scenario.note(f"{len(expected)} alerts expected by the rules oracle, {len(published)} published")
    assert len(expected) >= 10, "the trades fired too few alerts to prove anything"
    assert not missing, f"{len(missing)} alerts missed after kills"
    assert not doubled, f"{doubled} alerts re-sent after kills"
    assert not extra, f"{len(extra)} alerts the rules do not fire (cooldown broken?)"
