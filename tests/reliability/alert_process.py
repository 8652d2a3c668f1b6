"""`tickhouse alerts` as a real process for the reliability scenarios: started with its own rules
file, group and topics, watched through its log and Prometheus endpoint, killed with signals."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition

from alerts.config import DEFAULT_RULES_PATH
from ops.suite import free_port
from tests.reliability.helpers import RelTopics, high_watermarks
from tickhouse.config import Settings
from tickhouse.kafka import client_config

# the CLI itself, with a 6 s consumer session instead of 10 s: a SIGKILLed member keeps its
# partitions until its session expires
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


def rules_file(tmp_path: Path, **changes: Any) -> Path:
    """The bundled rules with `changes` merged into `defaults` (section -> settings), no notifiers
    unless `notifiers=` is given."""
    doc = yaml.safe_load(DEFAULT_RULES_PATH.read_text())
    doc["notifiers"] = changes.pop("notifiers", [])
    for section, settings in changes.items():
        doc["defaults"][section].update(settings)
    path = tmp_path / f"rules-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class AlertProcess:
    """One `tickhouse alerts` process at a time on the scenario's topics."""

    def __init__(
        self, topics: RelTopics, rules: Path, log_path: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        self.topics = topics
        self.state_topic = f"{topics.alerts}.state"
        topics.extra.append(self.state_topic)
        self.group = f"rel-alerts-{topics.suffix}"
        self.port = free_port()
        self.argv = [
            sys.executable, "-c", SERVICE_SCRIPT, "--rules", str(rules), "--group", self.group,
            "--trades-topic", topics.trades, "--alerts-topic", topics.alerts,
            "--state-topic", self.state_topic, "--from-beginning", "--metrics-port", str(self.port),
            "--checkpoint-seconds", "1", *extra,
        ]  # fmt: skip
        self.env = topics.env(**(env or {}))
        self.env.pop("ALERTS_METRICS_PORT", None)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def restored(self) -> int:
        return len(re.findall(r"partition \d+: ", self.log()))

    def start(self, timeout: float = 90) -> None:
        """Start and wait until it owns its partitions (it logs how it restored each)."""
        before = self.restored()
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        try:
            while self.restored() <= before:
                self.check_alive()
                assert time.monotonic() < deadline, "the alert service got no partitions"
                time.sleep(0.2)
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    def check_alive(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, f"the alert service died:\n{self.log()[-4000:]}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.kills += 1
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(30)
        self.proc = None
        return code

    def metric(self, name: str) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else None

    def wait_metric(self, name: str, at_least: float, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            self.check_alive()
            value = self.metric(name)
            if value is not None and value >= at_least:
                return value
            time.sleep(0.3)
        raise AssertionError(f"{name} stayed at {value}, wanted >= {at_least}\n{self.log()[-3000:]}")


def read_records(settings: Settings, topic: str) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """(partition, offset, key, value) of every message on `topic`, partition by partition."""
    marks = high_watermarks(settings, topic)
    consumer = Consumer(
        {
            **client_config(settings.kafka_bootstrap_servers),
            "group.id": f"rel-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    out: list[tuple[int, int, bytes | None, bytes | None]] = []
    try:
        remaining = {p for p, h in marks.items() if h > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in remaining])
        deadline = time.monotonic() + 120
        while remaining and time.monotonic() < deadline:
            for msg in consumer.consume(5000, 1.0):
                assert msg.error() is None, msg.error()
                partition, offset = msg.partition(), msg.offset()
                assert partition is not None and offset is not None
                out.append((partition, offset, msg.key(), msg.value()))
                if offset + 1 >= marks[partition]:
                    remaining.discard(partition)
        assert not remaining, f"could not read all of {topic}"
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
    return out


def read_all(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every message on `topic`, partition by partition."""
    return [(key, value) for _, _, key, value in read_records(settings, topic)]
