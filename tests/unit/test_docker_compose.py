"""docker-compose.yml (for users with Docker) agrees with the local stack `make up` runs:
same services, ports, versions, topics and Airflow settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.stack import kafka_broker
from ops.stack.airflow import airflow_env
from ops.stack.apps import APPS
from ops.stack.credentials import ROLE_PASSWORDS
from tickhouse.config import NO_SECRETS_FILE, PROJECT_ROOT, load_settings

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
        "KAFKA_ADMIN_PASSWORD=ka\nKAFKA_DRAIN_PASSWORD=kd\nKAFKA_PRODUCER_PASSWORD=kp\n"
        "KAFKA_CONTROLLER_PASSWORD=kc\n"
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
    assert compose["services"]["postgres"]["image"].startswith("postgres:15.")
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
    setup = compose["services"]["airflow-init"]["environment"]
    for variable in ROLE_PASSWORDS.values():
        assert setup[variable].startswith(f"${{{variable}:?"), variable  # required, never defaulted


# --- least privilege: each container gets the secrets of its own roles only ------------------------

NOTIFIER_SECRETS = {"SLACK_WEBHOOK_URL", "ALERTS_WEBHOOK_URL", "SMTP_PASSWORD"}
AIRFLOW_SECRETS = {"AIRFLOW_API_SECRET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY"}
SECRETS = {*ROLE_PASSWORDS.values(), *AIRFLOW_SECRETS, "AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_VIEWER_PASSWORD",
           "FINNHUB_API_KEY", *NOTIFIER_SECRETS}


def _passwords(roles: tuple[str, ...]) -> set[str]:
    return {ROLE_PASSWORDS[role] for role in roles}


def _app_roles(name: str) -> tuple[str, ...]:
    """The warehouse roles the local stack gives one of its apps."""
    [app] = [app for app in APPS if app.name == name]
    return app.roles


def _secrets_of(service: dict[str, Any]) -> set[str]:
    """The secret variables a service's environment holds or interpolates (into a URI, say)."""
    held = set()
    for key, value in service.get("environment", {}).items():
        held |= {key} & SECRETS
        held |= {match.group(1) for match in _VARIABLE.finditer(str(value))} & SECRETS
    return held


def test_each_service_holds_exactly_its_own_roles_secrets(compose: dict[str, Any]) -> None:
    # Airflow: its metadata database, and the loader's and dbt's logins inside the two connections
    # its tasks use (the local stack's workers hold none as a variable either)
    airflow = (_passwords(("airflow", "loader", "dbt")) | AIRFLOW_SECRETS | {"FINNHUB_API_KEY"}
               | NOTIFIER_SECRETS)
    expected = {
        "kafka": set(),
        "kafka-init": set(),
        "postgres": _passwords(("owner", "airflow")),
        # setup: creates every role with its password, and Airflow's logins
        "airflow-init": set(ROLE_PASSWORDS.values()) | {"AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_VIEWER_PASSWORD"},
        **{name: airflow for name in AIRFLOW_SERVICES},
        "dbt-manifest": set(),
        "alerts": _passwords(_app_roles("alerts")) | NOTIFIER_SECRETS,
        "exporter": _passwords(_app_roles("metrics")),
        "dashboard": _passwords(_app_roles("dashboard")),
        "producer": {"FINNHUB_API_KEY"},
    }
    assert set(compose["services"]) == set(expected)
    held = {name: _secrets_of(service) for name, service in compose["services"].items()}
    assert held == expected


def test_no_service_reads_a_secrets_file(compose: dict[str, Any]) -> None:
    for name in (*AIRFLOW_SERVICES, *TICKHOUSE_SERVICES, "airflow-init"):
        assert compose["services"][name]["environment"][NO_SECRETS_FILE] == "1", name


# --- the compose file's Airflow, rendered here without Docker -------------------------------------

AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
TICKHOUSE_SERVICES = ("dbt-manifest", "alerts", "exporter", "dashboard", "producer")
_VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def _interpolate(value: str, dotenv: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} against a .env; $$ is a literal $."""

    def one(match: re.Match[str]) -> str:
        name, kind, arg = match.group(1), match.group(2), match.group(3)
        if dotenv.get(name):
            return dotenv[name]
        if kind == "?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg if kind == "-" else ""

    return _VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path of the service's bind mounts (./ is the repository)."""
    out = {}
    for spec in service.get("volumes", []):
        source, target = str(spec).split(":")[:2]
        if source.startswith("."):
            out[target] = (PROJECT_ROOT / source).resolve()
    return out


def _on_host(container_path: str, mounts: dict[str, Path]) -> Path:
    for target, source in sorted(mounts.items(), key=lambda m: -len(m[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / os.path.relpath(container_path, target)
    raise AssertionError(f"{container_path} is not on a bind mount of the repository: {mounts}")


DOTENV = {
    "POSTGRES_PASSWORD": "pg", "LOADER_PASSWORD": "lo", "DBT_PASSWORD": "dbt", "BI_READER_PASSWORD": "bi",
    "AIRFLOW_DB_PASSWORD": "af", "MONITOR_PASSWORD": "mon", "AIRFLOW_API_SECRET_KEY": "api",
    "AIRFLOW_JWT_SECRET": "jwt",
    "AIRFLOW_ADMIN_PASSWORD": "admin",
}


def test_airflow_paths_under_compose_are_the_repositorys(compose: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        env = {k: _interpolate(str(v), DOTENV) for k, v in service["environment"].items()}
        mounts = _mounts(service)
        assert mounts.get("/opt/tickhouse") == PROJECT_ROOT, name
        # the DAG files sit in the mounted repository, so Path(__file__).parent.parent is its root
        assert _on_host(env["AIRFLOW__CORE__DAGS_FOLDER"], mounts) == PROJECT_ROOT / "dags", name
        assert _on_host(env["AIRFLOW__CORE__PLUGINS_FOLDER"], mounts) == PROJECT_ROOT / "plugins", name
        assert _on_host(env["PYTHONPATH"], mounts) == PROJECT_ROOT, name
        assert "dbt-manifest" in service["depends_on"], name
        assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8080"
    manifest = compose["services"]["dbt-manifest"]
    assert "dbt_parse" in " ".join(manifest["command"])
    assert _mounts(manifest) == {"/opt/tickhouse": PROJECT_ROOT}


def test_the_services_beside_airflow(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in TICKHOUSE_SERVICES:
        assert _mounts(services[name]) == {"/opt/tickhouse": PROJECT_ROOT}, name
        assert services[name]["environment"]["PYTHONPATH"] == "/opt/tickhouse", name
    assert services["alerts"]["command"][:4] == ["python", "-m", "ops.cli", "alerts"]
    assert services["exporter"]["command"][:4] == ["python", "-m", "ops.cli", "metrics"]
    assert "dashboard/app.py" in services["dashboard"]["command"]
    assert services["producer"]["profiles"] == ["finnhub"]
    for name, port in (("alerts", 9103), ("exporter", 9102), ("dashboard", 8501)):
        assert _published_ports(services[name]) == {("127.0.0.1", port)}, name
    assert (PROJECT_ROOT / "dashboard/app.py").is_file()


def test_every_dag_imports_under_the_compose_environment(compose: dict[str, Any], tmp_path: Path) -> None:
    """The scheduler's rendered environment, container paths mapped through its mounts, parses
    every DAG of the dags folder with Airflow's DagBag (what `airflow dags list-import-errors`
    reports), after the dbt-manifest service's command wrote the manifest."""
    service = compose["services"]["airflow-scheduler"]
    mounts = _mounts(service)
    env = {k: _interpolate(str(v), DOTENV) for k, v in service["environment"].items()}
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER", "PYTHONPATH"):
        env[key] = str(_on_host(env[key], mounts))
    env.update({
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AIRFLOW_HOME": str(tmp_path),
        # parsing needs no metadata database; compose's points at the `postgres` container
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "TICKHOUSE_STATE_DIR": str(tmp_path / "state"),
        "TICKHOUSE_ENV_FILE": str(tmp_path / "no.env"),
    })
    dags_folder = env["AIRFLOW__CORE__DAGS_FOLDER"]
    script = (
        "import json, sys\n"
        "from transform.dbt_runner import MANIFEST_PATH, dbt_parse\n"
        "if not MANIFEST_PATH.is_file():\n"
        "    dbt_parse()  # what the dbt-manifest service runs\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={dags_folder!r})\n"
        "print(json.dumps({'errors': {k: str(v)[-1500:] for k, v in bag.import_errors.items()},"
        " 'dags': sorted(bag.dag_ids)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    dag_files = sorted(p.stem for p in (PROJECT_ROOT / "dags").glob("*.py"))
    assert result["dags"] == dag_files  # each file defines the DAG it is named after


def test_every_image_is_pinned_and_listed(compose: dict[str, Any]) -> None:
    listed = {
        line.strip() for line in (PROJECT_ROOT / "stack/docker/images.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    images = {service["image"] for service in compose["services"].values() if "image" in service}
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{image} is not pinned to a tag"
        assert re.fullmatch(r"\d+(\.\d+)+(-[\w.]+)?", tag), f"{image}: a floating tag"
        assert image in listed, f"{image} is not listed in stack/docker/images.txt"
    dockerfile = (PROJECT_ROOT / "stack/docker/Dockerfile.airflow").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M)
    assert base and base.group(1) in listed
    lock = (PROJECT_ROOT / "requirements.txt").read_text()
    airflow = re.search(r"^apache-airflow==(\S+)$", lock, re.M)
    assert airflow and f"tickhouse/airflow:{airflow.group(1)}" in images
