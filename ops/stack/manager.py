"""`tickhouse up | down | status`: the local stack as a whole."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import psycopg

from ops.stack import airflow, kafka_broker, postgres
from ops.stack.credentials import ensure_credentials
from ops.stack.processes import StackError, port_open
from tickhouse.config import Settings, env_file, load_settings, read_env_file
from tickhouse.warehouse import setup_warehouse

COMPONENTS = ("postgres", "kafka", "airflow")


def prepare_settings() -> Settings:
    """Generate missing credentials, then load the configuration that includes them."""
    first = load_settings()
    user_env = {**read_env_file(env_file()), **os.environ}
    ensure_credentials(first.secrets_file, user_env)
    return load_settings()


def up(
    components: Iterable[str] = COMPONENTS,
    say: Callable[[str], None] = print,
    started: list[str] | None = None,
    apps: bool = False,
) -> list[str]:
    """Start what is not running; returns the components this call started. `started` is filled
    as components come up, so a caller still knows what to stop when a later one fails. With
    `apps`, Tickhouse's long-running services follow (alert service, exporter, dashboard) under
    their supervisor, which restarts any that dies."""
    wanted = list(components)
    unknown = set(wanted) - set(COMPONENTS)
    if unknown:
        raise StackError(f"unknown component(s) {sorted(unknown)}; choose from {', '.join(COMPONENTS)}")
    settings = prepare_settings()
    if started is None:
        started = []
    if "postgres" in wanted or "airflow" in wanted:
        t0 = time.monotonic()
        if postgres.initdb(settings):
            say(f"PostgreSQL cluster created in {postgres.data_dir(settings)}")
        if postgres.start(settings):
            started.append("postgres")
        if postgres.split_legacy_owner(settings):
            say(
                f"PostgreSQL  upgraded: {settings.postgres_user} is now an ordinary role owning the "
                "warehouse; the bootstrap superuser is tickhouse_superuser (password only in "
                f"{settings.secrets_file})"
            )
        applied = setup_warehouse(settings)
        postgres.transfer_ownership(settings)
        say(
            f"PostgreSQL  {settings.postgres_host}:{settings.postgres_port}  ready "
            f"({time.monotonic() - t0:.1f} s{', migrations: ' + ', '.join(applied) if applied else ''})"
        )
    if "kafka" in wanted:
        t0 = time.monotonic()
        if kafka_broker.needs_restart(settings):
            # its clients must log in from now on (least privilege): Airflow's connections and the
            # services' environments are made at their start, so they start again with their logins
            from ops.stack.apps import stop_apps

            stopped = stop_apps(settings) if apps else []
            if "airflow" in wanted and airflow.stop(settings):
                stopped.append("airflow")
            if stopped:
                say(f"            stopped {', '.join(stopped)} to start again with Kafka logins")
            if not apps or "airflow" not in wanted:
                say("            if Airflow or the services run, restart them (`make down && make up`) "
                    "so that they log in to Kafka")
        if kafka_broker.start(settings, say=say):
            started.append("kafka")
        kafka_broker.create_topics(settings)
        say(
            f"Kafka       {settings.kafka_bootstrap_servers}  ready ({time.monotonic() - t0:.1f} s, "
            f"topics {', '.join(settings.topics)} x{settings.topic_partitions} partitions)"
        )
        say(
            f"            logins (SCRAM) at {settings.kafka_login_listener}; without a login: "
            + ("market data only" if settings.kafka_anonymous_access == "market" else "nothing")
        )
    if "airflow" in wanted:
        t0 = time.monotonic()
        if _refresh_dbt_manifest(settings):
            say(f"dbt         project parsed for the DAGs' dbt runs ({time.monotonic() - t0:.1f} s)")
        t0 = time.monotonic()
        if airflow.start(settings):
            started.append("airflow")
        say(f"Airflow     {settings.airflow_url}  ready ({time.monotonic() - t0:.1f} s)")
        say(f"            login: admin / {airflow.admin_password(settings)}")
    if apps:
        from ops.stack.apps import start_apps

        t0 = time.monotonic()
        names = start_apps(settings, say=say)
        say(
            f"Services    {', '.join(names) or 'already running'} "
            f"({time.monotonic() - t0:.1f} s; restarted by the supervisor if they die)"
        )
    return started


def _refresh_dbt_manifest(settings: Settings) -> bool:
    """`dbt parse` when the dbt project changed since the manifest was written: its partial-parse
    state (target/partial_parse.msgpack) is where the DAGs' dbt runs start from (the hot runs'
    first parse, transform_marts' first build), so they parse only what changed since."""
    project = settings.project_root / "dbt_project"
    if not (project / "dbt_project.yml").exists():
        return False
    import hashlib

    digest = hashlib.sha256()
    files = [settings.project_root / "profiles.yml", *sorted(project.rglob("*"))]
    for path in files:
        if (
            path.is_file()
            and not path.is_relative_to(project / "target")
            and not path.is_relative_to(project / "logs")
        ):
            digest.update(str(path.relative_to(settings.project_root)).encode())
            digest.update(path.read_bytes())
    stamp = settings.state_dir / "dbt-manifest.stamp"
    manifest = project / "target" / "manifest.json"
    if manifest.exists() and stamp.exists() and stamp.read_text() == digest.hexdigest():
        return False
    from transform.dbt_runner import dbt_parse

    dbt_parse(settings)
    stamp.write_text(digest.hexdigest())
    return True


def down(components: Iterable[str] | None = None, say: Callable[[str], None] = print) -> list[str]:
    """Stop the given components (Airflow first, PostgreSQL last); returns those stopped. With no
    components, everything: Tickhouse's own services (alerts, dashboard, metrics) and the stack."""
    from ops.stack.apps import stop_apps

    settings = load_settings()
    wanted = set(COMPONENTS if components is None else components)
    stopped: list[str] = []
    if components is None:
        for name in stop_apps(settings):
            say(f"{name:<10} stopped")
    if "airflow" in wanted and airflow.stop(settings):
        stopped.append("airflow")
    if "kafka" in wanted and kafka_broker.stop(settings):
        stopped.append("kafka")
    if "postgres" in wanted and postgres.stop(settings):
        stopped.append("postgres")
    for name in COMPONENTS:
        if name in wanted:
            say(f"{name:<10} {'stopped' if name in stopped else 'was not running'}")
    return stopped


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    address: str
    running: bool
    answers: bool
    detail: str


def _postgres_status(settings: Settings) -> ComponentStatus:
    pid = postgres.server_pid(settings)
    detail = ""
    answers = False
    try:
        with psycopg.connect(settings.conninfo("owner"), connect_timeout=3) as conn:
            version = conn.execute("show server_version").fetchone()
            detail = f"PostgreSQL {version[0].split()[0] if version else '?'}"
            answers = True
    except psycopg.Error as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ComponentStatus(
        "postgres",
        f"{settings.postgres_host}:{settings.postgres_port}",
        pid is not None,
        answers,
        detail + (f", pid {pid}" if pid else ""),
    )


def _kafka_status(settings: Settings) -> ComponentStatus:
    pids = [pid for svc in kafka_broker.services(settings) if (pid := svc.pid()) is not None]
    answers = False
    detail = ""
    if port_open(settings.kafka_host, settings.kafka_port):
        try:
            counts = kafka_broker.topic_partitions(settings)
            answers = True
            detail = ", ".join(f"{t}:{n}p" for t, n in counts.items())
        except Exception as err:
            detail = str(err)
    return ComponentStatus(
        "kafka",
        settings.kafka_bootstrap_servers,
        len(pids) == settings.kafka_brokers,
        answers,
        detail + (f", pid{'s' if len(pids) > 1 else ''} {', '.join(map(str, pids))}" if pids else ""),
    )


def _airflow_status(settings: Settings) -> ComponentStatus:
    pids = {s.name: s.pid() for s in airflow.services(settings)}
    health = airflow.health(settings)
    running = [n.removeprefix("airflow-") for n, p in pids.items() if p]
    detail = ", ".join(f"{k}={v}" for k, v in health.items()) or "API does not answer"
    return ComponentStatus(
        "airflow",
        settings.airflow_url,
        len(running) == len(pids),
        bool(health) and all(v == "healthy" for v in health.values()),
        f"{detail}; processes: {', '.join(running) or 'none'}",
    )


def status() -> list[ComponentStatus]:
    settings = load_settings()
    return [_postgres_status(settings), _kafka_status(settings), _airflow_status(settings)]
