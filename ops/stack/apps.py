"""Tickhouse's own long-running services beside the stack: the alert service, the dashboard and the
pipeline metrics exporter. `tickhouse up` (the whole stack) and `make demo` start them with their
supervisor (`ops/stack/supervisor.py`), which restarts any that dies; `make down` stops them with the
stack."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

from ops.stack.credentials import GENERATED, KAFKA_IDENTITY, service_environment
from ops.stack.processes import (
    Service,
    StackError,
    port_open,
    require_port_free,
    tickhouse_command,
    wait_until,
)
from ops.stack.restarts import count_of, read_restarts, reset_restarts, supervisor_service
from tickhouse.config import Settings, env_file, read_env_file


@dataclass(frozen=True, slots=True)
class App:
    name: str
    argv: tuple[str, ...]
    port_variable: str
    default_port: int
    health_path: str
    # the warehouse roles whose passwords it receives (its own only)
    roles: tuple[str, ...] = ()
    # its Kafka principal, whose login it alone receives
    kafka_user: str | None = None

    def port(self) -> int:
        # the environment, then the project's .env (as for every other setting): a port set in .env
        # must not be ignored in favour of the default another checkout's stack may use
        value = os.environ.get(self.port_variable) or read_env_file(env_file()).get(self.port_variable)
        return int(value or self.default_port)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port()}{self.health_path}"


APPS = (
    App("alerts", ("alerts", "--from-beginning"), "ALERTS_METRICS_PORT", 9103, "/metrics", (), "alerts"),
    App(
        "metrics", ("metrics",), "PIPELINE_METRICS_PORT", 9102, "/metrics", ("monitor", "bi_reader"),
        "monitor",
    ),
    App("dashboard", ("dashboard",), "DASHBOARD_PORT", 8501, "/", ("bi_reader",)),
    # serves what `tickhouse docs` (or the demo) generated last; started once the marts exist
    App("docs", ("docs", "--no-generate"), "DOCS_PORT", 8580, "/"),
)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def launch_app(settings: Settings, app: App) -> int:
    """Start one app detached (its pid file and log under the state dir); returns its pid."""
    env = {
        **service_environment(settings, os.environ, app.roles, app.kafka_user),
        app.port_variable: str(app.port()),
    }
    return Service(app.name, settings.state_dir).start(
        [tickhouse_command(), *app.argv], env=env, cwd=settings.project_root
    )


def start_apps(
    settings: Settings,
    names: tuple[str, ...] | None = None,
    say: object = None,
) -> list[str]:
    """Start the named apps (all by default) that are not running, then their supervisor; returns
    the apps started. With `say` (a callable), an app whose port is taken is reported and skipped
    instead of failing the whole start."""
    started = []
    for app in APPS:
        if names is not None and app.name not in names:
            continue
        if Service(app.name, settings.state_dir).pid() is not None:
            continue
        if app.name == "docs" and names is None:
            from transform.docs import site_ready

            if not site_ready():  # nothing to serve before the first `tickhouse docs` / demo
                if callable(say):
                    say(f"{app.name:<10} not started: no generated docs yet (run `tickhouse docs`)")
                continue
        try:
            require_port_free("127.0.0.1", app.port(), app.port_variable)
        except StackError as err:
            if not callable(say):
                raise
            say(f"{app.name:<10} not started: {err}")
            continue
        launch_app(settings, app)
        started.append(app.name)
    reset_restarts(settings.state_dir, started)
    for app in APPS:
        if app.name in started:
            svc = Service(app.name, settings.state_dir)
            wait_until(
                lambda a=app: port_open("127.0.0.1", a.port()) and _answers(a.url()),
                90,
                f"{app.name} (port {app.port()})",
                svc.log_file,
            )
    _start_supervisor(settings)
    return started


def _start_supervisor(settings: Settings) -> None:
    """(Re)start the supervisor over every app that now runs (a running one is replaced so that it
    watches apps started after it)."""
    running = [app.name for app in APPS if Service(app.name, settings.state_dir).pid() is not None]
    supervisor = supervisor_service(settings.state_dir)
    supervisor.stop(timeout=10)
    if not running:
        return
    supervisor.start(
        [sys.executable, "-m", "ops.stack.supervisor", *running],
        # no password in its environment: it reads the stack's secrets file to give each app the
        # passwords of its own roles (launch_app)
        env={k: v for k, v in {**os.environ, **settings.as_env()}.items()
             if k not in (*GENERATED, *KAFKA_IDENTITY)},
        cwd=settings.project_root,
    )


def stop_apps(settings: Settings) -> list[str]:
    # the supervisor first: it must not revive what we stop
    supervisor_service(settings.state_dir).stop(timeout=10)
    return [app.name for app in APPS if Service(app.name, settings.state_dir).stop(timeout=20)]


@dataclass(frozen=True, slots=True)
class AppStatus:
    name: str
    url: str
    running: bool
    answers: bool
    restarts: int
    supervised: bool


def app_status(settings: Settings) -> list[AppStatus]:
    """Each app: running, answering, and how often its supervisor restarted it."""
    restarts = read_restarts(settings.state_dir)
    supervised = supervisor_service(settings.state_dir).pid() is not None
    out = []
    for app in APPS:
        running = Service(app.name, settings.state_dir).pid() is not None
        out.append(
            AppStatus(
                app.name,
                app.url(),
                running,
                running and _answers(app.url()),
                count_of(restarts, app.name),
                supervised,
            )
        )
    return out
