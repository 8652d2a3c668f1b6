"""A three-broker Kafka cluster (KAFKA_BROKERS=3) under faults while trades flow through the producer,
the drain and the alert service: a partition leader SIGKILLed, every broker restarted in turn, a
broker's disk lost. Nothing is lost or doubled, and the drain and the alert service carry on by
themselves.

The cluster is this module's own (its state dir and free ports, stopped afterwards) beside the
suite's PostgreSQL, so the rest of the suite keeps its single broker.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

from alerts.config import load_rules
from alerts.rules import Engine
from alerts.service import alert_id
from ops.stack import kafka_broker
from ops.stack.processes import pid_alive, wait_until
from ops.suite import free_port_run
from tests.reliability.alert_process import AlertProcess, read_all, read_records, rules_file
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import (
    RelTopics,
    check_trades_exactly_once,
    drain_until_caught_up,
    env_int,
    high_watermarks,
    kafka_committed,
    run_drain,
    start_replay,
)
from tickhouse import kafka
from tickhouse.config import Settings, load_settings
from tickhouse.schemas import now_ms

# not serial: the brokers it SIGKILLs and restarts are its own; its drains and alert service load
# the shared warehouse under symbols and topics of their own, as the parallel tests do. Collected
# after the dbt and e2e modules, it starts late in the pass, when the CPU-bound modules are done: its
# drain loop starts a process per drain, every 0.5 s while a fault lasts (docs/performance.md#make-test)

TRADES = env_int("RELIABILITY_CLUSTER_TRADES", 6_000)
SYMBOLS = tuple(f"RELC{n}" for n in range(1, 13))


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Three KRaft brokers of this module's own, with the suite's credentials (so its PostgreSQL
    and its Kafka logins are the same); this process and the ones it starts talk to them."""
    state = tmp_path_factory.mktemp("kafka-cluster-stack")
    shutil.copy2(settings.secrets_file, state / "secrets.env")
    env = {
        "TICKHOUSE_STATE_DIR": str(state),
        "KAFKA_BROKERS": "3",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port_run(3)}",
        "KAFKA_LOGIN_PORT": str(free_port_run(3)),
        "KAFKA_CONTROLLER_PORT": str(free_port_run(3)),
        "KAFKA_LIBS_DIR": str(kafka_broker.libs_dir(settings)),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("KAFKA_HEAP_OPTS", raising=False)
        cluster_settings = load_settings()
        try:
            kafka_broker.start(cluster_settings)
            yield cluster_settings
        finally:
            kafka_broker.stop(cluster_settings)


def _trades_file(path: Path, seed: int) -> set[int]:
    """JSONL trades whose `volume` is their id (1..TRADES), prices a random walk with spikes that
    fire alerts; event times 100 ms apart, an hour in the past."""
    rnd = random.Random(seed)
    prices = dict.fromkeys(SYMBOLS, 100.0)
    start = now_ms() - TRADES * 100 - 3_600_000
    with path.open("w", encoding="ascii") as out:
        for i in range(TRADES):
            symbol = SYMBOLS[i % len(SYMBOLS)]
            prices[symbol] *= 1 + rnd.gauss(0, 0.004)
            price = prices[symbol] * (1.3 if rnd.random() < 0.005 else 1.0)
            out.write(json.dumps({"symbol": symbol, "price": round(price, 4), "volume": i + 1,
                                  "ts": start + i * 100}) + "\n")
    return set(range(1, TRADES + 1))


@dataclass
class DrainLoop:
    """`tickhouse drain --once` run after run, as the ingest DAG's loop does, until told to stop."""

    env: dict[str, str]
    codes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            result = run_drain(self.env, timeout=180)
            self.codes.append(result.returncode)
            if result.returncode:
                self.errors.append(result.stderr[-500:])
            self.stop.wait(0.5)


def _trades_with_coordinates(settings: Settings, topic: str) -> list[tuple[int, int, dict[str, Any]]]:
    """(partition, offset, trade) of every message on `topic`."""
    records = read_records(settings, topic)
    assert all(value is not None for *_, value in records), f"a message of {topic} has no value"
    rows = [(partition, offset, json.loads(value or b"")) for partition, offset, _key, value in records]
    return sorted(rows, key=lambda row: (row[0], row[1]))


def _alert_metrics(service: AlertProcess) -> str:
    """The alert service's own figures (trades evaluated, delivery errors, checkpoints)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
    except OSError as err:
        return f"(no metrics: {err})"
    return "\n".join(line for line in text.splitlines()
                     if line.startswith("tickhouse_alerts_") and not line.startswith("#"))


def _wait_whole(settings: Settings, topics: RelTopics, timeout: float = 120) -> None:
    """Until every partition of the scenario's topics and the consumer offsets has all its copies
    in sync again."""
    names = [*topics.names, *topics.extra, "__consumer_offsets"]
    wait_until(lambda: not kafka_broker.under_replicated(settings, names), timeout,
               "the cluster's replicas back in sync")


def _node_leading(settings: Settings, topic: str) -> kafka_broker.Node:
    """The broker leading the partition of `topic` that holds the most messages so far."""
    marks = high_watermarks(settings, topic)
    partition = max(marks, key=lambda p: marks[p])
    leader = kafka.admin(settings.kafka_bootstrap_servers).list_topics(topic, timeout=10).topics[
        topic].partitions[partition].leader
    return next(n for n in kafka_broker.nodes(settings) if n.node_id == leader)


def _kill(settings: Settings, node: kafka_broker.Node) -> None:
    """SIGKILL one broker, as a crashed machine would go."""
    pid = kafka_broker.node_service(settings, node).pid()
    assert pid is not None, f"broker {node.node_id} is not running"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 30, f"broker {node.node_id} gone")


def _run_scenario(
    cluster: Settings,
    tmp_path: Path,
    scenario: Scenario,
    fault: Callable[[RelTopics], int],
    speed: float,
) -> None:
    """Trades replayed by `tickhouse produce` while the drain loop and the alert service run;
    `fault` breaks the cluster (returns its kills) and leaves it whole again. Then every trade is
    in raw.trades exactly once, and the alerts are exactly those the rules fire on the trades."""
    topics = RelTopics(cluster)
    drain = DrainLoop(topics.env())
    loop = threading.Thread(target=drain.run, daemon=True)
    # the bundled rules without stale_feed, whose firings depend on how partitions interleave
    rules = rules_file(tmp_path, stale_feed={"enabled": False})
    service = AlertProcess(topics, rules, tmp_path / "alerts.log")
    producer = None
    try:
        expected_ids = _trades_file(tmp_path / "trades.jsonl", env_int("RELIABILITY_SEED", int(time.time())))
        service.start()
        loop.start()
        producer = start_replay(topics.env(), tmp_path / "trades.jsonl", topics.trades, speed=speed,
                                log=tmp_path / "producer.log")
        time.sleep(3)  # trades are flowing through all three
        assert producer.poll() is None, (tmp_path / "producer.log").read_text()[-3000:]
        scenario.kills = fault(topics)
        _wait_whole(cluster, topics)
        assert producer.wait(240) == 0, (tmp_path / "producer.log").read_text()[-3000:]
        service.check_alive()
        marks = {p: h for p, h in high_watermarks(cluster, topics.trades).items() if h > 0}
        deadline = time.monotonic() + 120
        while (committed := {p: o for p, o in kafka_committed(cluster, service.group, topics.trades).items()
                             if p in marks}) != marks:
            service.check_alive()
            assert time.monotonic() < deadline, (
                f"the alert service did not catch up: committed {committed}, ends {marks}\n"
                + _alert_metrics(service) + "\n"
                + "\n".join(line for line in service.log().splitlines()[-400:] if " alert " not in line)
            )
            time.sleep(1)
        service.check_alive()
        drain.stop.set()
        loop.join(200)
        runs = drain_until_caught_up(cluster, topics, topics.env())
        service.stop()

        figures = check_trades_exactly_once(cluster, topics.trades, expected_ids)
        scenario.messages = TRADES
        scenario.lost = figures.lost
        scenario.doubled = figures.doubled
        scenario.note(f"drain runs during the fault {len(drain.codes)} (failed {len(drain.errors)}), "
                      f"{runs} more to catch up")
        assert figures.lost == 0, f"{figures.lost} trades lost"
        assert figures.doubled == 0, f"{figures.doubled} trades doubled"
        assert drain.codes and drain.codes[-1] == 0, f"the drain did not recover: {drain.errors[-1:]}"

        engine = Engine(load_rules(rules))
        expected_alerts = set()
        for partition, offset, t in _trades_with_coordinates(cluster, topics.trades):
            for f in engine.evaluate(t["symbol"], float(t["price"]), float(t["volume"]), t["ts"], partition):
                expected_alerts.add(alert_id(f.symbol, f.rule, topics.trades, partition, offset))
        published = [json.loads(v or b"{}")["alert_id"] for _k, v in read_all(cluster, topics.alerts)]
        scenario.note(f"{len(expected_alerts)} alerts expected by the rules oracle, "
                      f"{len(published)} published")
        assert len(expected_alerts) >= 5, "the trades fired too few alerts to prove anything"
        assert set(published) == expected_alerts, (
            f"alerts missing {len(expected_alerts - set(published))}, "
            f"not fired by the rules {len(set(published) - expected_alerts)}"
        )
        assert len(published) == len(set(published)), "alerts published twice"
    finally:
        drain.stop.set()
        if producer is not None and producer.poll() is None:
            producer.kill()
            producer.wait(30)
        service.stop(signal.SIGKILL)
        if loop.is_alive():
            loop.join(200)
        kafka_broker.start(cluster)  # whatever a failure left down
        topics.delete()


def test_partition_leader_sigkilled(cluster: Settings, tmp_path: Path, scenario: Scenario) -> None:
    """Kafka cluster: partition leader SIGKILLed during produce + drain + alerts."""

    def fault(topics: RelTopics) -> int:
        leader = _node_leading(cluster, topics.trades)
        _kill(cluster, leader)
        time.sleep(5)  # the others take over its partitions while trades keep coming
        kafka_broker.start(cluster)
        return 1

    _run_scenario(cluster, tmp_path, scenario, fault, speed=40)


def test_rolling_restart(cluster: Settings, tmp_path: Path, scenario: Scenario) -> None:
    """Kafka cluster: every broker stopped and started in turn."""

    def fault(topics: RelTopics) -> int:
        for node in kafka_broker.nodes(cluster):
            assert kafka_broker.node_service(cluster, node).stop(timeout=60)
            kafka_broker.start(cluster)
            _wait_whole(cluster, topics)
        return 0

    _run_scenario(cluster, tmp_path, scenario, fault, speed=15)


def test_broker_disk_lost(cluster: Settings, tmp_path: Path, scenario: Scenario) -> None:
    """Kafka cluster: one broker's disk lost (killed, log dir deleted, restarted empty)."""

    def fault(topics: RelTopics) -> int:
        node = _node_leading(cluster, topics.trades)
        _kill(cluster, node)
        shutil.rmtree(node.home / "data")
        kafka_broker.start(cluster)  # formats the empty storage; it copies its partitions back
        _wait_whole(cluster, topics)
        copies = sorted(p.name for p in (node.home / "data").glob(f"{topics.trades}-*"))
        assert copies == [f"{topics.trades}-{p}" for p in range(3)], copies
        return 1

    _run_scenario(cluster, tmp_path, scenario, fault, speed=40)


def test_topics_have_three_copies_and_need_two_in_sync(cluster: Settings) -> None:
    """Kafka cluster: the stack's topics are on every broker and acknowledged by two."""
    admin = kafka.admin(cluster.kafka_bootstrap_servers)
    metadata = admin.list_topics(timeout=10)
    for topic in (*cluster.topics, "__consumer_offsets"):
        for partition in metadata.topics[topic].partitions.values():
            assert sorted(partition.replicas) == [1, 2, 3], (topic, partition.id)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t) for t in cluster.topics]
    for resource, future in admin.describe_configs(resources).items():
        configs = future.result(30)
        assert configs["min.insync.replicas"].value == "2", resource
        assert configs["unclean.leader.election.enable"].value == "false", resource
