"""Kafka authentication and ACLs: before, any local user could publish fake alerts
or delete topics on the broker. Now a client without a SCRAM login may only do what
docs/interfaces/configuration.md and kafka-messages.md promise it (publish and read market data on
KAFKA_BOOTSTRAP_SERVERS): no alerts, no deletes, no services' consumer groups; each service's principal may do
only what `ops/stack/kafka_security.acl_table` grants it, while the services, each logged in as its own
principal at the login listener, still move every trade once."""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from ops.stack import kafka_security
from tests.kafka_grants import granted
from tests.reliability.alert_process import AlertProcess, rules_file
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import (
    RelTopics,
    check_trades_exactly_once,
    drain_until_caught_up,
    start_replay,
    write_replay_csv,
)
from tickhouse import kafka
from tickhouse.config import Settings, kafka_password_variable, read_env_file
from tickhouse.schemas import now_ms

TRADES = 300


def _login(settings: Settings, principal: str, password: str | None = None) -> dict[str, str]:
    """A client configuration logged in as `principal` (not this process's own identity)."""
    secrets = read_env_file(settings.secrets_file)
    return {
        "bootstrap.servers": settings.kafka_login_listener,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": principal,
        "sasl.password": password if password is not None else secrets[kafka_password_variable(principal)],
    }


def _anonymous(settings: Settings) -> dict[str, str]:
    return {"bootstrap.servers": settings.kafka_bootstrap_servers, "security.protocol": "PLAINTEXT"}


def _produce(config: dict[str, str], topic: str, key: bytes = b"FAKE") -> KafkaError | None:
    """Publish one message; its delivery error (None: the broker took it)."""
    outcome: list[KafkaError | None] = []
    producer = Producer({**config, "message.timeout.ms": 6000, "log_level": 0})
    producer.produce(topic, b'{"fake": true}', key=key, on_delivery=lambda e, _m: outcome.append(e))
    producer.flush(15)
    assert outcome, "no delivery report within 15 s"
    return outcome[0]


def _read(config: dict[str, str], topic: str, partitions: int, group: str) -> KafkaError | int:
    """Fetch `topic` from its start: the first error, or how many messages came in 8 s."""
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False, "log_level": 0})
    got = 0
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.5):
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    return err
                if err is None:
                    got += 1
        return got
    finally:
        consumer.close()


def _commit(config: dict[str, str], topic: str, group: str) -> Exception | None:
    """Commit offset 0 of `topic`'s partition 0 for `group`: the error, None when it was taken."""
    consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False, "log_level": 0})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    except KafkaException as err:
        return err
    finally:
        consumer.close()
    return None


def _delete(config: dict[str, str], topic: str) -> Exception | None:
    client = AdminClient({**config, "log_level": 0})
    try:
        client.delete_topics([topic], request_timeout=8)[topic].result(12)
    except (KafkaException, Exception) as err:  # refused, or the broker never answered
        return err
    return None


def _code(outcome: Any) -> str:
    if isinstance(outcome, KafkaError):
        return str(outcome.name())
    if isinstance(outcome, KafkaException) and outcome.args and isinstance(outcome.args[0], KafkaError):
        return str(outcome.args[0].name())
    return repr(outcome)


def test_kafka_refuses_strangers_and_other_principals(
    settings: Settings, scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka auth: strangers refused, principals kept to ACLs."""
    topics = RelTopics(settings)
    # the stack's ACL table, applied to this scenario's topics and drain group (tests own their data)
    monkeypatch.setenv("DRAIN_GROUP", topics.group)
    admin = kafka_security.admin_client(settings)
    refused: list[str] = []
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(topics.delete)
        cleanup.enter_context(granted(
            settings, topics.group, trades_topic=topics.trades, quotes_topic=topics.quotes,
            alerts_topic=topics.alerts, candles_topic=topics.candles,
        ))

        # --- strangers: no login, or a wrong password -------------------------------------------
        anonymous = _produce(_anonymous(settings), topics.alerts)
        assert anonymous is not None, "a client without a login published a fake alert"
        assert anonymous.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, anonymous
        refused.append(f"anonymous publish of an alert: {_code(anonymous)}")
        deleted = _delete(_anonymous(settings), topics.trades)
        assert deleted is not None, "a client without a login deleted a topic"
        refused.append(f"anonymous delete: {_code(deleted)}")
        # a `tickhouse-*` group's coordinator is not even found for it (DESCRIBE denied)
        hijacked = f"tickhouse-drain-{topics.suffix}"
        hijack = _commit(_anonymous(settings), topics.trades, hijacked)
        assert hijack is not None, "a client without a login committed in a tickhouse-* group"
        committed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(hijacked)])
        offsets = committed[hijacked].result(15).topic_partitions or []
        assert all(tp.offset < 0 for tp in offsets), offsets
        refused.append(f"anonymous commit in a tickhouse-* group: {_code(hijack)}")
        # ... while the interface of docs/interfaces/configuration.md and kafka-messages.md stays open to it:
        # market data in, topics readable
        assert _produce(_anonymous(settings), topics.quotes, b"ANON") is None
        assert _read(_anonymous(settings), topics.quotes, 3, f"someone-{topics.suffix}") == 1
        assert _commit(_anonymous(settings), topics.quotes, f"someone-{topics.suffix}") is None
        wrong = _produce(_login(settings, "alerts", "not-the-password"), topics.alerts)
        assert wrong is not None, "a wrong password published an alert"
        refused.append(f"wrong password: {_code(wrong)}")

        # --- each principal outside its grants ----------------------------------------------------
        denied = KafkaError.TOPIC_AUTHORIZATION_FAILED
        # a reader without rights on the topic (or on any group) is refused at one or the other
        read_denied = {denied, KafkaError.GROUP_AUTHORIZATION_FAILED}
        for principal, topic in (("alerts", topics.trades), ("producer", topics.alerts),
                                 ("drain", topics.trades), ("monitor", topics.alerts)):
            err = _produce(_login(settings, principal), topic)
            assert err is not None and err.code() == denied, f"{principal} wrote {topic}: {err}"
            refused.append(f"{principal} -> {topic.split('.')[1]}: {_code(err)}")
        for principal in ("producer", "monitor"):
            probe = f"tickhouse-probe-{uuid.uuid4().hex[:8]}"
            got = _read(_login(settings, principal), topics.trades, 3, probe)
            assert isinstance(got, KafkaError), f"{principal} read trades: {got}"
            assert got.code() in read_denied, f"{principal} read trades: {got}"
            refused.append(f"{principal} reads trades: {_code(got)}")
        for principal in ("producer", "alerts", "drain", "monitor"):
            err2 = _delete(_login(settings, principal), topics.trades)
            assert err2 is not None, f"{principal} deleted a topic"
            assert _code(err2) == "TOPIC_AUTHORIZATION_FAILED", (principal, err2)
        refused.append("delete topic by any service principal: TOPIC_AUTHORIZATION_FAILED")
        # ... and inside them: the alert service's principal writes alerts, the drain's reads them
        assert _produce(_login(settings, "alerts"), topics.alerts, b"RULE") is None
        assert _read(_login(settings, "drain"), topics.alerts, 3, topics.group) == 1
        # every topic is still there
        existing = admin.list_topics(timeout=10).topics
        assert set(topics.names) <= set(existing)

        # --- the services, each as its own principal, still work ----------------------------------
        def as_principal(principal: str) -> dict[str, str]:
            secrets = read_env_file(settings.secrets_file)
            return {"KAFKA_USERNAME": principal,
                    "KAFKA_PASSWORD": secrets[kafka_password_variable(principal)]}

        alert_service = AlertProcess(
            topics, rules_file(tmp_path), tmp_path / "alerts.log",
            "--group", f"tickhouse-alerts-rel-{topics.suffix}", env=as_principal("alerts"),
        )
        alert_service.start()
        try:
            csv = tmp_path / "trades.csv"
            ids = write_replay_csv(csv, TRADES, ("AAPL", "MSFT"), now_ms() - 60_000)
            # the producer under another service's login stops at once and says why, its
            # messages kept in its spool
            wrong_login = start_replay(topics.env(**as_principal("alerts")), csv, topics.trades,
                                       spool=tmp_path / "wrong.spool")
            out, _ = wrong_login.communicate(timeout=120)
            assert wrong_login.returncode != 0 and "Kafka refused" in out, out[-3000:]
            refused.append("`tickhouse produce` as alerts: exits, messages kept in its spool")
            replay = start_replay(topics.env(**as_principal("producer")), csv, topics.trades)
            out, _ = replay.communicate(timeout=120)
            assert replay.returncode == 0, f"the producer as `producer` failed:\n{out[-3000:]}"
            drain_until_caught_up(settings, topics, topics.env(**as_principal("drain")))
            # the alert service read every trade as `alerts` (and wrote its checkpoints)
            alert_service.wait_metric("tickhouse_alerts_trades_evaluated_total", TRADES, timeout=60)
        finally:
            alert_service.stop()
        figures = check_trades_exactly_once(settings, topics.trades, ids)
        scenario.messages = TRADES
        scenario.lost, scenario.doubled = figures.lost, figures.doubled
        assert figures.lost == 0 and figures.doubled == 0, figures
        # none of the refused attempts left a message behind
        fakes = [
            topic for topic in topics.names
            for key, _value in kafka.read_topic(settings.kafka_bootstrap_servers, topic, timeout=30)
            if key == b"FAKE"
        ]
        assert not fakes, f"refused publishes reached {fakes}"
        scenario.note(f"refused {len(refused)} kinds of access: " + "; ".join(refused))
        scenario.note("producer, drain and alert service ran as their own principals: "
                      f"{TRADES} trades loaded once")
