"""KAFKA_BROKERS: the local stack's Kafka as one broker (unchanged) or as a cluster of KRaft nodes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ops.stack import kafka_broker
from ops.suite import _ephemeral_start, free_port, free_port_run, run_environment
from tickhouse.config import ConfigError, Settings, kafka_client_settings, load_settings


def _settings(tmp_path: Path, **env: str) -> Settings:
    (tmp_path / "secrets.env").write_text("KAFKA_ADMIN_PASSWORD=ka\nKAFKA_CONTROLLER_PASSWORD=kc\n")
    return load_settings({"TICKHOUSE_STATE_DIR": str(tmp_path), **env}, project_root=tmp_path)


def _properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if "=" in line and not line.startswith(("#", " "))]
    return dict(line.split("=", 1) for line in lines)


def test_one_broker_is_the_default_with_one_copy_per_partition(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.kafka_brokers == 1
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.kafka_login_listener == "127.0.0.1:9094"
    [node] = kafka_broker.nodes(settings)
    props = _properties(kafka_broker.server_properties(settings, node))
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert "min.insync.replicas" not in props and "default.replication.factor" not in props
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")


def test_three_brokers_list_every_address_and_keep_three_copies(tmp_path: Path) -> None:
    settings = _settings(tmp_path, KAFKA_BROKERS="3")
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112"
    assert settings.kafka_login_listener == "127.0.0.1:9094,127.0.0.1:9104,127.0.0.1:9114"
    assert (settings.topic_replication_factor, settings.min_insync_replicas) == (3, 2)
    assert settings.kafka_heap_opts == "-Xms128m -Xmx256m"
    nodes = kafka_broker.nodes(settings)
    assert [(n.node_id, n.port, n.login_port, n.controller_port) for n in nodes] == [
        (1, 9092, 9094, 9093), (2, 9102, 9104, 9103), (3, 9112, 9114, 9113),
    ]
    for node in nodes:
        props = _properties(kafka_broker.server_properties(settings, node))
        assert props["node.id"] == str(node.node_id)
        assert props["controller.quorum.voters"] == (
            "1@127.0.0.1:9093,2@127.0.0.1:9103,3@127.0.0.1:9113"
        )
        assert props["listeners"] == (
            f"PUBLIC://127.0.0.1:{node.port},CLIENT://127.0.0.1:{node.login_port},"
            f"CONTROLLER://127.0.0.1:{node.controller_port}"
        )
        assert props["log.dirs"] == str(tmp_path / "kafka-cluster" / f"broker-{node.node_id}" / "data")
        for key in ("default.replication.factor", "offsets.topic.replication.factor",
                    "transaction.state.log.replication.factor"):
            assert props[key] == "3", key
        assert props["min.insync.replicas"] == "2"
        assert props["transaction.state.log.min.isr"] == "2"
        assert props["unclean.leader.election.enable"] == "false"


def test_a_login_to_the_cluster_goes_to_every_login_listener(tmp_path: Path) -> None:
    env = {"TICKHOUSE_STATE_DIR": str(tmp_path), "TICKHOUSE_ENV_FILE": str(tmp_path / "none.env"),
           "KAFKA_BROKERS": "3", "KAFKA_ADMIN_PASSWORD": "ka"}
    settings = load_settings(env, project_root=tmp_path)
    client = kafka_client_settings(settings.kafka_bootstrap_servers, env)
    assert client["bootstrap.servers"] == "127.0.0.1:9094,127.0.0.1:9104,127.0.0.1:9114"
    assert client["sasl.username"] == "admin"


def test_bootstrap_listing_other_than_every_broker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KAFKA_BROKERS=3"):
        _settings(tmp_path, KAFKA_BROKERS="3", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9092,127.0.0.1:9093")
    listed = _settings(tmp_path, KAFKA_BROKERS="2",
                       KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:7001,127.0.0.1:7005")
    assert [n.port for n in kafka_broker.nodes(listed)] == [7001, 7005]
    assert (listed.topic_replication_factor, listed.min_insync_replicas) == (2, 1)


def test_the_suite_can_run_on_a_cluster_with_free_port_runs(tmp_path: Path) -> None:
    base = free_port_run(3)
    for port in (base, base + 10, base + 20):  # each broker's port of that kind
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
    _env, written = run_environment(
        {"TICKHOUSE_TEST_KAFKA_BROKERS": "3", "TICKHOUSE_STATE_DIR": str(tmp_path / "user"),
         "TICKHOUSE_TEST_STATE_DIR": str(tmp_path / "test")},
        project_root=tmp_path,
    )
    assert written["KAFKA_BROKERS"] == "3"
    assert int(written["KAFKA_LOGIN_PORT"]) != int(written["KAFKA_CONTROLLER_PORT"])


def test_the_suite_takes_its_ports_below_the_ephemeral_range(tmp_path: Path) -> None:
    """Ports the OS hands out (bind to 0, outgoing connections) stay clear of the test stack's,
    which a restarting service must find free again."""
    ephemeral = _ephemeral_start()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert sock.getsockname()[1] >= ephemeral  # what the OS hands out
    assert all(1024 < free_port() < ephemeral for _ in range(50))
    assert all(free_port_run(3) + 20 < ephemeral for _ in range(20))
    _env, written = run_environment(
        {"TICKHOUSE_STATE_DIR": str(tmp_path / "user"), "TICKHOUSE_TEST_STATE_DIR": str(tmp_path / "test")},
        project_root=tmp_path,
    )
    ports = [int(value) for key, value in written.items() if key.endswith("_PORT")]
    ports.append(int(written["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1]))
    assert len(ports) == 10 and all(port < ephemeral for port in ports), written


def test_the_suite_ignores_the_callers_broker_count(tmp_path: Path) -> None:
    env, written = run_environment(
        {"KAFKA_BROKERS": "3", "TICKHOUSE_STATE_DIR": str(tmp_path / "user"),
         "TICKHOUSE_TEST_STATE_DIR": str(tmp_path / "test")},
        project_root=tmp_path,
    )
    assert "KAFKA_BROKERS" not in env and "KAFKA_BROKERS" not in written


def test_the_broker_runs_with_the_jvm_flags_of_kafka_jvm_performance_opts(tmp_path: Path) -> None:
    (tmp_path / "kafka" / "libs").mkdir(parents=True)
    (tmp_path / "kafka" / "libs" / "kafka_2.13-4.0.0.jar").touch()
    default = _settings(tmp_path)
    argv = kafka_broker._argv(default, tmp_path / "server.properties", tmp_path / "log4j2.yaml")
    assert argv[1:6] == ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                         "-Djava.awt.headless=true"]
    tuned = _settings(tmp_path, KAFKA_JVM_PERFORMANCE_OPTS="-XX:+UseSerialGC -XX:TieredStopAtLevel=1")
    argv = kafka_broker._argv(tuned, tmp_path / "server.properties", tmp_path / "log4j2.yaml")
    assert argv[3:5] == ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"] and "-XX:+UseG1GC" not in argv


def test_the_suite_runs_its_brokers_on_the_jits_first_tier_whatever_the_caller_sets(tmp_path: Path) -> None:
    env, written = run_environment(
        {"KAFKA_JVM_PERFORMANCE_OPTS": "-XX:+UseZGC", "TICKHOUSE_STATE_DIR": str(tmp_path / "user"),
         "TICKHOUSE_TEST_STATE_DIR": str(tmp_path / "test")},
        project_root=tmp_path,
    )
    assert written["KAFKA_JVM_PERFORMANCE_OPTS"] == (
        "-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:TieredStopAtLevel=1"
    )
    assert env["KAFKA_JVM_PERFORMANCE_OPTS"] == written["KAFKA_JVM_PERFORMANCE_OPTS"]
