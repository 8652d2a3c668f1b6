"""Airflow 3 as separate processes (api-server, scheduler, dag-processor, triggerer) with the
LocalExecutor, metadata in the stack's PostgreSQL and the simple auth manager.

Everything is configured through `AIRFLOW__*` variables (no airflow.cfg to edit); connections for
Kafka and the warehouse are provisioned as `AIRFLOW_CONN_*` variables of the processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psycopg

from ops.stack.credentials import generated_secret, service_environment
from ops.stack.processes import Service, StackError, port_open, require_port_free, wait_until
from tickhouse.config import (
    Settings,
    env_file,
    kafka_password_variable,
    read_env_file,
)

# the warehouse roles whose passwords are in Airflow's environment as variables: none; the drain's
# and dbt's reach the tasks only in the connections tickhouse_warehouse and tickhouse_dbt
WORKER_ROLES: tuple[str, ...] = ()
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"
VIEWER_USER = "viewer"


def airflow_home(settings: Settings) -> Path:
    return settings.state_dir / "airflow"


def services(settings: Settings) -> list[Service]:
    return [Service(f"airflow-{c}", settings.state_dir) for c in COMPONENTS]


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def airflow_env(settings: Settings) -> dict[str, str]:
    """The environment of every Airflow process (and of `airflow` CLI calls made by Tickhouse)."""
    home = airflow_home(settings)
    root = settings.project_root
    metadata_uri = (
        f"postgresql+psycopg2://{settings.airflow_db_user}:{settings.airflow_db_password}"
        f"@{settings.postgres_host}:{settings.postgres_port}/{settings.airflow_db}"
    )
    warehouse_uri = (
        f"postgresql://{settings.loader_user}:{settings.loader_password}"
        f"@{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}"
    )
    dbt_uri = (
        f"postgresql://{settings.dbt_user}:{settings.dbt_password}"
        f"@{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}"
    )
    # the Kafka principals of the drain (ingest_market_data, stack_healthcheck) and of the
    # producer (backfill_history), least privilege: their logins are in these connections only
    def kafka_conn(principal: str) -> str:
        return json.dumps(
            {
                "conn_type": "kafka",
                "extra": {
                    # the broker's login listener (KAFKA_LOGIN_PORT)
                    "bootstrap.servers": settings.kafka_login_listener,
                    "security.protocol": settings.kafka_security_protocol,
                    "sasl.mechanism": settings.kafka_sasl_mechanism,
                    "sasl.username": principal,
                    "sasl.password": generated_secret(settings, kafka_password_variable(principal)),
                },
            }
        )

    # the project's .env reaches the workers too (DRAIN_*, WAREHOUSE, SNOWFLAKE_*, notifiers...);
    # the process environment wins over it, as everywhere. No generated secret reaches Airflow
    # as a variable; the loader's and dbt's passwords are in its connections only.
    env = service_environment(
        settings, {**read_env_file(env_file(project_root=root)), **os.environ}, WORKER_ROLES
    )
    env.update(
        {
            "PATH": f"{_venv_bin()}:{env.get('PATH', '/usr/bin:/bin')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(root / "plugins"),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(settings.airflow_parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(settings.airflow_parallelism),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__FERNET_KEY": generated_secret(settings, "AIRFLOW_FERNET_KEY"),
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin,{VIEWER_USER}:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{settings.airflow_url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_uri,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
            # the metadata database is the warehouse's PostgreSQL server: the scheduler rides out
            # a restart of it (~30 s of retries with backoff) instead of exiting after ~3 s
            "AIRFLOW__DATABASE__MAX_DB_RETRIES": "10",
            "AIRFLOW__API__HOST": settings.airflow_host,
            "AIRFLOW__API__PORT": str(settings.airflow_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": settings.airflow_url,
            "AIRFLOW__API__SECRET_KEY": generated_secret(settings, "AIRFLOW_API_SECRET_KEY"),
            "AIRFLOW__API__EXPOSE_CONFIG": "False",
            "AIRFLOW__API_AUTH__JWT_SECRET": generated_secret(settings, "AIRFLOW_JWT_SECRET"),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(settings.airflow_dag_parse_seconds),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_TICKHOUSE_WAREHOUSE": warehouse_uri,
            "AIRFLOW_CONN_TICKHOUSE_DBT": dbt_uri,
            "AIRFLOW_CONN_TICKHOUSE_KAFKA": kafka_conn("drain"),
            "AIRFLOW_CONN_TICKHOUSE_KAFKA_PRODUCER": kafka_conn("producer"),
            "PYTHONPATH": os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p),
            "NO_PROXY": "*",
        }
    )
    return env


def admin_password(settings: Settings) -> str:
    return settings.airflow_admin_password or generated_secret(settings, "AIRFLOW_ADMIN_PASSWORD")


def viewer_password(settings: Settings) -> str:
    return generated_secret(settings, "AIRFLOW_VIEWER_PASSWORD")


def _write_passwords_file(settings: Settings) -> None:
    path = airflow_home(settings) / "passwords.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({ADMIN_USER: admin_password(settings), VIEWER_USER: viewer_password(settings)}, out)
        out.write("\n")


def _airflow_cli(settings: Settings, *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(_venv_bin() / "airflow"), *args],
        env=airflow_env(settings),
        cwd=airflow_home(settings),
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(
            f"`airflow {' '.join(args)}` failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


def migrate(settings: Settings) -> None:
    """Create or upgrade Airflow's metadata database (idempotent, a few seconds)."""
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    _airflow_cli(settings, "db", "migrate")
    unstall_continuous_drain(settings)


# A cron schedule's runs have zero-length data intervals. When `ingest_market_data` changes from a
# cron (the first release, or DRAIN_SCHEDULE) to `@continuous`, Airflow's ContinuousTimetable starts
# the next interval at the last run's end, which is that run's own logical date: the scheduler logs
# "run already exists; skipping dagrun creation" every second and never runs the DAG again (the
# family of apache/airflow#66754). One microsecond more on the last scheduled run's interval end
# moves the next logical date past it; to a cron schedule it changes nothing.
UNSTALL_SQL = """
update dag_run set data_interval_end = data_interval_end + interval '1 microsecond'
 where id = (select id from dag_run where dag_id = %s and run_type = 'scheduled'
              order by logical_date desc nulls last limit 1)
   and data_interval_start = data_interval_end
"""


def unstall_continuous_drain(settings: Settings, dag_id: str = "ingest_market_data") -> bool:
    """Give the drain DAG's last scheduled run a non-empty interval; True when one was changed."""
    with psycopg.connect(host=settings.postgres_host, port=settings.postgres_port,
                         dbname=settings.airflow_db, user=settings.airflow_db_user,
                         password=settings.airflow_db_password, autocommit=True,
                         connect_timeout=10) as conn:
        return conn.execute(UNSTALL_SQL, (dag_id,)).rowcount > 0


def health(settings: Settings) -> dict[str, str]:
    """Component statuses from the API server's /api/v2/monitor/health ({} when it does not answer)."""
    try:
        with urllib.request.urlopen(f"{settings.airflow_url}/api/v2/monitor/health", timeout=3) as resp:
            data = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    return {name: str(part.get("status")) for name, part in data.items() if isinstance(part, dict)}


def start(settings: Settings) -> list[str]:
    """Start the Airflow components that are not running; returns the ones started."""
    home = airflow_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    running = {s.name for s in services(settings) if s.pid() is not None}
    if "airflow-api-server" not in running:
        require_port_free(settings.airflow_host, settings.airflow_port, "AIRFLOW_PORT")
    _write_passwords_file(settings)
    migrate(settings)
    env = airflow_env(settings)
    started = []
    for component, svc in zip(COMPONENTS, services(settings), strict=True):
        if svc.name in running:
            continue
        # The scheduler and triggerer would start a log server bound to every interface (uvicorn
        # host "", ports 8793/8794) that nothing here needs: the api-server reads the task logs
        # from the shared local log folder. Without it everything listens on 127.0.0.1 only.
        extra = ["--skip-serve-logs"] if component in ("scheduler", "triggerer") else []
        svc.start([str(_venv_bin() / "airflow"), component, *extra], env=env, cwd=home)
        started.append(svc.name)
    api = services(settings)[0]
    wait_until(
        lambda: port_open(settings.airflow_host, settings.airflow_port),
        180,
        "Airflow api-server",
        api.log_file,
    )
    wait_until(
        lambda: health(settings).get("metadatabase") == "healthy",
        120,
        "Airflow metadatabase health",
        api.log_file,
    )
    return started


def stop(settings: Settings) -> list[str]:
    """Stop the Airflow components this stack started, scheduler first; returns those stopped."""
    stopped = []
    order = ["airflow-scheduler", "airflow-triggerer", "airflow-dag-processor", "airflow-api-server"]
    by_name = {s.name: s for s in services(settings)}
    for name in order:
        if by_name[name].stop(timeout=45):
            stopped.append(name)
    return stopped
