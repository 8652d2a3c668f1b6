"""Fixtures for the producer's integration tests: topics, a consumer, the fake Finnhub server,
and running `tickhouse produce` as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ops.suite import free_port
from tests.finnhub_server import FakeFinnhub
from tickhouse.config import Settings
from tickhouse.kafka import client_config


@dataclass(frozen=True)
class Received:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


@pytest.fixture
def make_topic(settings: Settings) -> Iterator[Callable[[], str]]:
    """Creates fresh 3-partition topics on demand; all are deleted afterwards."""
    admin = AdminClient(client_config(settings.kafka_bootstrap_servers))
    created: list[str] = []

    def make() -> str:
        name = f"test.producer.{uuid.uuid4().hex[:12]}"
        admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])[
            name].result(30)
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.result(30)


def consume_all(settings: Settings, topic: str, expect: int | None = None,
                timeout: float = 30.0) -> list[Received]:
    """Every message of `topic` from the beginning up to its end (or until `expect` arrived)."""
    admin = AdminClient(client_config(settings.kafka_bootstrap_servers))
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer({**client_config(settings.kafka_bootstrap_servers),
                         "group.id": f"test-{uuid.uuid4().hex}", "enable.auto.commit": False,
                         "enable.partition.eof": False})
    try:
        ends = {}
        deadline = time.monotonic() + timeout
        while True:
            ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in partitions}
            if expect is None or sum(ends.values()) >= expect or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[Received] = []
        positions = dict.fromkeys(partitions, 0)
        while any(positions[p] < ends[p] for p in partitions):
            if time.monotonic() > deadline + 30:
                raise TimeoutError(f"consuming {topic}: {positions} of {ends}")
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            partition, offset = msg.partition(), msg.offset()
            assert partition is not None and offset is not None
            positions[partition] = offset + 1
            out.append(Received(partition, offset, msg.key(), msg.value() or b"",
                                msg.timestamp()[1]))
        return out
    finally:
        consumer.close()


@pytest.fixture
def fake_finnhub() -> Iterator[FakeFinnhub]:
    with FakeFinnhub(token="test-token", max_symbols=3) as server:
        yield server


def scrape(port: int) -> dict[str, float]:
    """The producer's Prometheus counters and gauges (name -> value)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(tickhouse_producer_\w+?)(?:_total)? ([0-9.e+-]+)$", line)
        if match:
            values[match.group(1).removeprefix("tickhouse_producer_")] = float(match.group(2))
    return values


class ProducerProcess:
    """`tickhouse produce ARGS` as a child process (python -m producer.cli)."""

    def __init__(self, args: list[str], env: dict[str, str], metrics_port: int | None) -> None:
        self.metrics_port = metrics_port
        port_args = ["--metrics-port", str(metrics_port or 0)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", *args, *port_args, "--no-status"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stderr = ""

    def metrics(self) -> dict[str, float]:
        assert self.metrics_port
        return scrape(self.metrics_port)

    def wait_metric(self, name: str, at_least: float, timeout: float = 15.0) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                values = self.metrics()
                if values.get(name, 0) >= at_least:
                    return values
            except OSError:
                values = {}
            if self.proc.poll() is not None:
                raise AssertionError(f"producer exited {self.proc.returncode}: {self.finish()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} < {at_least} after {timeout}s: {values}")
            time.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 30.0) -> str:
        try:
            _, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
            raise
        return self.stderr

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait, return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.finish(timeout)
        return int(self.proc.returncode)


@pytest.fixture
def run_producer(tmp_path: Path) -> Iterator[Callable[..., ProducerProcess]]:
    started: list[ProducerProcess] = []

    def run(args: list[str], env: dict[str, str] | None = None,
            metrics: bool = False) -> ProducerProcess:
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        spool = ["--spool", str(tmp_path / f"spool-{len(started)}.bin")]
        process = ProducerProcess([*args, *spool], full_env, free_port() if metrics else None)
        started.append(process)
        return process

    yield run
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.communicate()
