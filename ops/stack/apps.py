"""Tickhouse's own long-running services beside the stack: the alert service, the dashboard and the
pipeline metrics exporter. `make demo` starts them; `make down` stops them with the stack."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from ops.stack.processes import Service, port_open, require_port_free, tickhouse_command, wait_until
from tickhouse.config import Settings


@dataclass(frozen=True, slots=True)
class App:
    name: str
    argv: tuple[str, ...]
    port_variable: str
    default_port: int
    health_path: str

    def port(self) -> int:
        return int(os.environ.get(self.port_variable, self.default_port))

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port()}{self.health_path}"


APPS = (
    App("alerts", ("alerts", "--from-beginning"), "ALERTS_METRICS_PORT", 9103, "/metrics"),
    App("metrics", ("metrics",), "PIPELINE_METRICS_PORT", 9102, "/metrics"),
    App("dashboard", ("dashboard",), "DASHBOARD_PORT", 8501, "/"),
    # serves what `tickhouse docs` (or the demo) generated last; started once the marts exist
    App("docs", ("docs", "--no-generate"), "DOCS_PORT", 8580, "/"),
)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_apps(settings: Settings, names: tuple[str, ...] | None = None) -> list[str]:
    """Start the named apps (all by default) that are not running; returns those started."""
    started = []
    env = {**os.environ, **settings.as_env()}
    for app in APPS:
        if names is not None and app.name not in names:
            continue
        svc = Service(app.name, settings.state_dir)
        if svc.pid() is not None:
            continue
        require_port_free("127.0.0.1", app.port(), app.port_variable)
        svc.start([tickhouse_command(), *app.argv], env=env, cwd=settings.project_root)
        started.append(app.name)
    for app in APPS:
        if app.name in started:
            svc = Service(app.name, settings.state_dir)
            wait_until(
                lambda a=app: port_open("127.0.0.1", a.port()) and _answers(a.url()),
                90,
                f"{app.name} (port {app.port()})",
                svc.log_file,
            )
    return started


def stop_apps(settings: Settings) -> list[str]:
    return [app.name for app in APPS if Service(app.name, settings.state_dir).stop(timeout=20)]


def app_status(settings: Settings) -> list[tuple[str, str, bool, bool]]:
    """(name, url, running, answers) for each app."""
    out = []
    for app in APPS:
        running = Service(app.name, settings.state_dir).pid() is not None
        out.append((app.name, app.url(), running, running and _answers(app.url())))
    return out
