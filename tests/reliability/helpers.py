"""Shared machinery of the reliability suite: unique topics and consumer groups, the drain and the
producer as real processes, and the exactly-once oracle (Kafka offsets and per-trade ids)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from ops.stack import airflow, kafka_broker, postgres
from ops.stack.processes import port_open, wait_until
from tests.cleanup import forget_topics
from tickhouse import kafka
from tickhouse.config import PROJECT_ROOT, Settings
from tickhouse.kafka import client_config

VENV_BIN = Path(sys.executable).parent
# topics of the hostile-input scenario take messages up to this size (the 1+ MB payloads)
BIG_MESSAGE_BYTES = 3_000_000


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


class RelTopics:
    """Unique trades/quotes/alerts topics and a drain group for one scenario, deleted afterwards."""

    def __init__(self, settings: Settings, partitions: int = 3) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.settings = settings
        self.suffix = suffix
        self.trades = f"rel.trades.{suffix}"
        self.quotes = f"rel.quotes.{suffix}"
        self.alerts = f"rel.alerts.{suffix}"
        self.candles = f"rel.candles.{suffix}"
        self.group = f"rel-drain-{suffix}"
        self.admin = AdminClient(client_config(settings.kafka_bootstrap_servers))
        futures = self.admin.create_topics(
            [
                NewTopic(
                    t,
                    num_partitions=partitions,
                    replication_factor=-1,  # the cluster's default: 3 copies with KAFKA_BROKERS=3
                    config={"max.message.bytes": str(BIG_MESSAGE_BYTES)},
                )
                for t in self.names
            ]
        )
        for future in futures.values():
            future.result(timeout=30)
        self.extra: list[str] = []

    @property
    def names(self) -> tuple[str, str, str, str]:
        return (self.trades, self.quotes, self.alerts, self.candles)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a drain / producer process working on these topics only."""
        env = dict(os.environ)
        env.update(self.settings.as_env())
        env.update(
            {
                "TRADES_TOPIC": self.trades,
                "QUOTES_TOPIC": self.quotes,
                "ALERTS_TOPIC": self.alerts,
                "CANDLES_TOPIC": self.candles,
                "DRAIN_GROUP": self.group,
                "DRAIN_DQ_POLICY": "off",
                "PRODUCER_METRICS_PORT": "0",
                "ALERTS_METRICS_PORT": "0",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def producer(self) -> Producer:
        return Producer(
            {
                **client_config(self.settings.kafka_bootstrap_servers),
                "linger.ms": 20,
                "enable.idempotence": True,
                "message.max.bytes": BIG_MESSAGE_BYTES + 1000,
            }
        )

    def produce(self, topic: str, values: Iterable[bytes | None], key: bytes = b"k") -> int:
        producer = self.producer()
        errors: list[Any] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        n = 0
        for value in values:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            n += 1
        assert producer.flush(60) == 0, "test producer could not deliver"
        assert not errors, f"test producer delivery errors: {errors[:3]}"
        return n

    def delete(self) -> None:
        """Delete the topics and this scenario's rows from raw.*: some scenarios load edge values
        (e.g. a price of 1e308) that are valid input but would then sit in every later dbt run."""
        forget_topics(self.settings, [*self.names, *self.extra], self.group)


def high_watermarks(settings: Settings, topic: str) -> dict[int, int]:
    """One past the last offset of each partition of `topic`."""
    return {p: high for p, (_low, high) in kafka.watermarks(settings.kafka_bootstrap_servers, topic).items()}


def kafka_committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({**client_config(settings.kafka_bootstrap_servers), "group.id": group})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in committed}
    finally:
        consumer.close()


def owner_conn(settings: Settings) -> psycopg.Connection[Any]:
    return psycopg.connect(settings.conninfo("owner"), autocommit=True)


def admin_conn(settings: Settings) -> psycopg.Connection[Any]:
    """The cluster's bootstrap superuser (tablespaces and the like need it); the owner elsewhere."""
    from tickhouse.warehouse import admin_conninfo

    return psycopg.connect(admin_conninfo(settings), autocommit=True)


# --- the drain as a process ------------------------------------------------------------------------

DRAIN_ARGV = [str(VENV_BIN / "tickhouse"), "drain", "--once"]

# A drain that SIGKILLs itself at one of the runner's fault stages: the exact windows between
# COPY, the warehouse commit and the Kafka commit that a random kill rarely hits.
SELF_KILL_SCRIPT = """
import os, signal, sys
from tickhouse.config import load_settings
from drain.options import load_options
from drain.runner import drain_once
from tests.faults import crash_at
settings = load_settings()
with crash_at(sys.argv[1], lambda: os.kill(os.getpid(), signal.SIGKILL)):
    drain_once(settings, load_options(settings, dq_policy="off"))
"""


def start_drain(env: dict[str, str], self_kill_stage: str | None = None) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", SELF_KILL_SCRIPT, self_kill_stage] if self_kill_stage else DRAIN_ARGV
    return subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )


def run_drain(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(DRAIN_ARGV, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def drain_until_caught_up(
    settings: Settings, topics: RelTopics, env: dict[str, str], timeout: float = 240
) -> int:
    """Run clean drains until raw.kafka_offsets reaches every high watermark; returns the runs."""
    deadline = time.monotonic() + timeout
    runs = 0
    while time.monotonic() < deadline:
        result = run_drain(env)
        runs += 1
        assert result.returncode == 0, f"clean drain failed ({result.returncode}): {result.stderr[-2000:]}"
        if caught_up(settings, topics):
            return runs
    raise AssertionError(f"drain did not catch up within {timeout} s ({runs} runs)")


def stored_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    with owner_conn(settings) as conn:
        return dict(
            conn.execute(
                "select partition, next_offset from raw.kafka_offsets where consumer_group = %s"
                " and topic = %s",
                (group, topic),
            ).fetchall()
        )


def caught_up(settings: Settings, topics: RelTopics) -> bool:
    for topic in topics.names:
        marks = {p: h for p, h in high_watermarks(settings, topic).items() if h > 0}
        # an empty partition has no stored offset, or 0 (`tickhouse drain --reset-topic`)
        stored = {p: o for p, o in stored_offsets(settings, topics.group, topic).items() if o > 0}
        if stored != marks:
            return False
    return True


@dataclass
class Completeness:
    expected: int
    rows: int
    distinct_coordinates: int
    lost: int
    doubled: int


def check_trades_exactly_once(settings: Settings, topic: str, expected_ids: set[int]) -> Completeness:
    """raw.trades against Kafka: every offset of `topic` once (raw + quarantine), and every trade id
    (carried in `volume`) exactly once. Returns the figures; the caller asserts."""
    marks = high_watermarks(settings, topic)
    with owner_conn(settings) as conn:
        coords = conn.execute(
            "select kafka_partition, kafka_offset from raw.trades where kafka_topic = %s"
            " union all select kafka_partition, kafka_offset from raw.quarantine where kafka_topic = %s",
            (topic, topic),
        ).fetchall()
        ids = [
            int(v)
            for (v,) in conn.execute(
                "select volume from raw.trades where kafka_topic = %s", (topic,)
            ).fetchall()
        ]
    kafka_coords = {(p, o) for p, high in marks.items() for o in range(high)}
    seen = set(coords)
    id_set = set(ids)
    lost_ids = len(expected_ids - id_set)
    lost_coords = len(kafka_coords - seen)
    doubled = (len(coords) - len(seen)) + (len(ids) - len(id_set))
    assert seen <= kafka_coords, "rows with Kafka coordinates that do not exist"
    assert sum(marks.values()) == len(expected_ids), (
        f"Kafka holds {sum(marks.values())} messages on {topic}, {len(expected_ids)} were produced"
    )
    return Completeness(len(expected_ids), len(ids), len(seen), max(lost_ids, lost_coords), doubled)


# --- trade files -------------------------------------------------------------------------------------


def write_replay_csv(
    path: Path, n: int, symbols: tuple[str, ...], start_ts: int, step_ms: int = 1
) -> set[int]:
    """A plain `symbol,price,volume,ts` CSV; each trade's id is its volume (0..n-1)."""
    with path.open("w", encoding="ascii") as out:
        out.write("symbol,price,volume,ts\n")
        for i in range(n):
            price = 100 + (i % 997) / 100
            out.write(f"{symbols[i % len(symbols)]},{price:.2f},{i},{start_ts + i * step_ms}\n")
    return set(range(n))


def start_replay(
    env: dict[str, str],
    path: Path,
    trades_topic: str,
    speed: float = 0.0,
    spool: Path | None = None,
    log: Path | None = None,
    extra: list[str] | None = None,
) -> subprocess.Popen[str]:
    argv = [
        str(VENV_BIN / "tickhouse"),
        "produce",
        "--source",
        "replay",
        "--file",
        str(path),
        "--speed",
        str(speed),
        "--trades-topic",
        trades_topic,
        "--no-status",
        "--metrics-port",
        "0",
        "--flush-timeout",
        "120",
        "--stall-seconds",
        "1",
    ]
    if speed:
        argv += ["--max-gap", "1"]
    if spool is not None:
        argv += ["--spool", str(spool)]
    argv += extra or []
    out = open(log, "w") if log is not None else subprocess.PIPE  # noqa: SIM115
    return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)


# --- the stack -------------------------------------------------------------------------------------


def airflow_healthy(settings: Settings) -> bool:
    health = airflow.health(settings)
    return bool(health) and all(v == "healthy" for v in health.values())


def ensure_stack_healthy(settings: Settings, timeout: float = 180) -> list[str]:
    """Start any stack component that is down (through the stack modules) and wait until all answer.
    Returns what had to be restarted."""
    restarted: list[str] = []
    if postgres.server_pid(settings) is None:
        postgres.start(settings)
        restarted.append("postgres")
    if kafka_broker.service(settings).pid() is None:
        kafka_broker.start(settings)
        restarted.append("kafka")
    kafka_broker.create_topics(settings)
    down = [s.name for s in airflow.services(settings) if s.pid() is None]
    if down:
        airflow.start(settings)
        restarted.extend(down)
    wait_until(lambda: port_open(settings.postgres_host, settings.postgres_port), 60, "PostgreSQL")
    wait_until(lambda: airflow_healthy(settings), timeout, "Airflow health")
    with psycopg.connect(settings.conninfo("owner"), connect_timeout=10) as conn:
        conn.execute("select 1")
    return restarted


def wait_for_drain_copy(settings: Settings, timeout: float) -> bool:
    """Poll until a drain (application_name tickhouse-drain) is inside its COPY into raw.trades."""
    deadline = time.monotonic() + timeout
    with owner_conn(settings) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "select count(*) from pg_stat_activity where application_name = 'tickhouse-drain'"
                " and query ilike 'copy raw.trades%%' and state = 'active'"
            ).fetchone()
            if row and row[0]:
                return True
            time.sleep(0.05)
    return False
