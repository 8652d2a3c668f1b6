"""The supervisor of the long-running services: kill -9 the alert service and the exporter, they
come back, and `tickhouse status` shows how often."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops.stack.apps import APPS, app_status, start_apps, stop_apps
from ops.stack.processes import Service, wait_until
from ops.stack.restarts import restart_count, supervisor_service
from tests.reliability.conftest import Scenario
from tickhouse.config import Settings

# serial (pyproject.toml): SIGKILLs the stack's supervised alert service and exporter
pytestmark = pytest.mark.serial

TICKHOUSE = str(Path(sys.executable).parent / "tickhouse")
WATCHED = ("alerts", "metrics")


def _back(settings: Settings, name: str, old_pid: int) -> bool:
    pid = Service(name, settings.state_dir).pid()
    row = next(a for a in app_status(settings) if a.name == name)
    return pid is not None and pid != old_pid and row.answers


def test_supervisor_restarts_killed_services(settings: Settings, scenario: Scenario) -> None:
    """Supervisor: alert service and exporter killed with SIGKILL."""
    apps = {a.name: a for a in APPS}
    try:
        start_apps(settings, names=WATCHED)
        assert supervisor_service(settings.state_dir).pid() is not None, "no supervisor started"
        assert all(restart_count(settings.state_dir, n) == 0 for n in WATCHED)
        t_back: dict[str, float] = {}
        for round_ in (1, 2):
            pids = {n: Service(n, settings.state_dir).pid() for n in WATCHED}
            assert all(pids.values()), pids
            t0 = time.monotonic()
            for pid in pids.values():
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                scenario.kills += 1
            for name, pid in pids.items():
                assert pid is not None
                wait_until(lambda n=name, p=pid: _back(settings, n, p), 120,
                           f"{name} restarted after kill -9 (round {round_})",
                           Service("supervisor", settings.state_dir).log_file)
                t_back[f"{name}#{round_}"] = time.monotonic() - t0
            for name in WATCHED:
                assert restart_count(settings.state_dir, name) == round_
        # backoff: 1 s before the first restart, doubled (2 s) before the second of the same app
        assert all(t_back[f"{n}#1"] >= 1.0 for n in WATCHED), t_back
        assert all(t_back[f"{n}#2"] >= 2.0 for n in WATCHED), t_back
        status = subprocess.run([TICKHOUSE, "status"], env={**os.environ, "COLUMNS": "200"},
                                text=True, capture_output=True, timeout=120, check=False)
        for name in WATCHED:
            line = next((ln for ln in status.stdout.splitlines() if f" {name} " in ln
                         and apps[name].url() in ln), "")
            assert "restarts: 2" in line, status.stdout[-3000:]
        scenario.messages = 0
        scenario.lost = scenario.doubled = 0
        scenario.note("back after kill -9 (s): " + ", ".join(f"{k} {v:.1f}" for k, v in t_back.items()))
    finally:
        stop_apps(settings)
    assert supervisor_service(settings.state_dir).pid() is None
    assert all(Service(n, settings.state_dir).pid() is None for n in WATCHED)
