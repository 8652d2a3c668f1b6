"""docker-compose.yml (for users with Docker) agrees with the local stack `make up` runs:
same services, ports, versions, topics and Airflow settings."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from ops.stack import kafka_broker
from ops.stack.airflow import airflow_env
from tickhouse.config import PROJECT_ROOT, load_settings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


@pytest.fixture(scope="module")
def local_settings(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("state")
    (state / "secrets.env").write_text(
        "AIRFLOW_FERNET_KEY=k\nAIRFLOW_API_SECRET_KEY=s\nAIRFLOW_JWT_SECRET=j\n"
        "AIRFLOW_ADMIN_PASSWORD=a\nAIRFLOW_VIEWER_PASSWORD=v\n"
    )
    # the defaults: no environment and a project root without a .env (the checkout's may move ports)
    return load_settings({"TICKHOUSE_STATE_DIR": str(state)}, project_root=state)


def _published_ports(service: dict[str, Any]) -> set[tuple[str, int]]:
    out = set()
    for spec in service.get("ports", []):
        host, host_port, _ = (
            str(spec).rsplit(":", 2) if str(spec).count(":") == 2 else ("0.0.0.0", *str(spec).split(":"))
        )
        out.add((host, int(host_port)))
    return out


def test_the_same_components_as_the_local_stack(compose: dict[str, Any]) -> None:
    services = set(compose["services"])
    assert {
        "kafka",
        "postgres",
        "airflow-init",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    } <= services
    assert "airflow-standalone" not in services and "zookeeper" not in services


def test_ports_match_local_defaults_and_bind_loopback(compose: dict[str, Any], local_settings) -> None:
    s = local_settings
    assert _published_ports(compose["services"]["kafka"]) == {(s.kafka_host, s.kafka_port)}
    assert _published_ports(compose["services"]["postgres"]) == {(s.postgres_host, s.postgres_port)}
    assert _published_ports(compose["services"]["airflow-api-server"]) == {(s.airflow_host, s.airflow_port)}


def test_versions_match_the_pinned_local_components(compose: dict[str, Any]) -> None:
    pom = (PROJECT_ROOT / "stack/kafka/pom.xml").read_text()
    kafka_version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert kafka_version
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{kafka_version.group(1)}"
    assert compose["services"]["postgres"]["image"] == "postgres:15"
    lock = (PROJECT_ROOT / "requirements.txt").read_text()
    airflow_version = re.search(r"^apache-airflow==(\S+)$", lock, re.M)
    assert airflow_version
    dockerfile = (PROJECT_ROOT / "stack/docker/Dockerfile.airflow").read_text()
    assert f"apache/airflow:{airflow_version.group(1)}-python3.11" in dockerfile
    assert compose["services"]["airflow-scheduler"]["image"].endswith(airflow_version.group(1))


def test_kraft_mode_and_topic_defaults(compose: dict[str, Any], local_settings) -> None:
    kafka_env = compose["services"]["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    init_env = compose["services"]["kafka-init"]["environment"]
    for variable, topic in zip(
        ("TRADES_TOPIC", "QUOTES_TOPIC", "ALERTS_TOPIC", "CANDLES_TOPIC"), local_settings.topics,
        strict=True,
    ):
        assert init_env[variable] == f"${{{variable}:-{topic}}}"
    assert init_env["TOPIC_PARTITIONS"] == f"${{TOPIC_PARTITIONS:-{local_settings.topic_partitions}}}"
    local_props = kafka_broker.server_properties(local_settings)
    assert "process.roles=broker,controller" in local_props


def test_airflow_settings_agree(compose: dict[str, Any], local_settings) -> None:
    local = airflow_env(local_settings)
    for name in ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        env = compose["services"][name]["environment"]
        for key in (
            "AIRFLOW__CORE__EXECUTOR",
            "AIRFLOW__CORE__AUTH_MANAGER",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
            "AIRFLOW__CORE__LOAD_EXAMPLES",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION",
            "AIRFLOW__API__EXPOSE_CONFIG",
        ):
            assert env[key] == local[key], (name, key)
        # the same Airflow connections are provisioned, under the same ids (the local stack also
        # passes on any AIRFLOW_CONN_* of the user's environment, so compare what setup provisions)
        provisioned = {f"AIRFLOW_CONN_TICKHOUSE_{name}" for name in ("WAREHOUSE", "DBT", "KAFKA")}
        assert {k for k in env if k.startswith("AIRFLOW_CONN_")} == provisioned
        assert provisioned <= set(local)
        assert compose["services"][name]["command"][-1] == name.removeprefix("airflow-")


def test_contract_variables_are_passed_with_contract_defaults(compose: dict[str, Any]) -> None:
    env = compose["services"]["airflow-scheduler"]["environment"]
    assert env["SYMBOLS"] == "${SYMBOLS:-AAPL,MSFT,GOOGL,AMZN,TSLA,NVDA,META,NFLX,AMD,INTC}"
    assert env["FINNHUB_WS_URL"] == "${FINNHUB_WS_URL:-wss://ws.finnhub.io}"
    assert env["FINNHUB_API_URL"] == "${FINNHUB_API_URL:-https://api.finnhub.io/api/v1}"
    for variable in ("POSTGRES_PASSWORD", "LOADER_PASSWORD", "DBT_PASSWORD", "BI_READER_PASSWORD"):
        assert env[variable].startswith(f"${{{variable}:?"), variable  # required, never defaulted
