"""The Airflow scheduler restarted while a DAG run is active: the run completes or is retried cleanly."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ops.airflow_api import AirflowAPI
from ops.stack import airflow
from ops.stack.processes import wait_until
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import airflow_healthy
from tickhouse.config import Settings

# serial (pyproject.toml): restarts the stack's Airflow scheduler
pytestmark = pytest.mark.serial

DAG = "stack_healthcheck"


def _scheduler(settings: Settings) -> Any:
    return next(s for s in airflow.services(settings) if s.name == "airflow-scheduler")


def test_scheduler_restart_during_a_run(
    settings: Settings, airflow_api: AirflowAPI, scenario: Scenario, stack_guard: None
) -> None:
    """Airflow scheduler restarted while a stack_healthcheck run is active."""
    scheduler = _scheduler(settings)
    if scheduler.pid() is None:
        pytest.skip("the Airflow scheduler is not one this stack started")
    airflow_api.wait_for_dag(DAG)
    status, dag = airflow_api.request("GET", f"/api/v2/dags/{DAG}")
    was_paused = bool(dag["is_paused"])
    status, body = airflow_api.request("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})
    assert status == 200, body
    try:
        status, run = airflow_api.request("POST", f"/api/v2/dags/{DAG}/dagRuns",
                                          {"logical_date": None, "conf": {}})
        assert status in (200, 201), run
        run_id = run["dag_run_id"]
        path = f"/api/v2/dags/{DAG}/dagRuns/{run_id}"
        # wait until the run is active: a task queued or running
        deadline = time.monotonic() + 90
        states: set[str] = set()
        while time.monotonic() < deadline:
            states = {ti.get("state") or "none" for ti in airflow_api.task_instances(DAG, run_id)}
            if states & {"queued", "running"}:
                break
            time.sleep(0.2)
        assert states & {"queued", "running"}, f"the run never became active: {states}"
        t0 = time.monotonic()
        assert scheduler.stop(timeout=45)
        airflow.start(settings)  # starts only what is not running: the scheduler
        restart_s = time.monotonic() - t0
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status, run = airflow_api.request("GET", path)
            if run.get("state") in ("success", "failed"):
                break
            time.sleep(2)
        tis = airflow_api.task_instances(DAG, run_id)
        tries = {ti["task_id"]: ti.get("try_number") for ti in tis}
        scenario.kills = 1
        scenario.note(f"active states at restart {sorted(states)}; scheduler back in {restart_s:.0f} s; "
                      f"run {run.get('state')} after {time.monotonic() - t0:.0f} s; tries {tries}")
        assert run.get("state") == "success", f"run ended {run.get('state')}: {tis}"
        assert all(ti["state"] == "success" for ti in tis), tis
    finally:
        if was_paused:
            airflow_api.request("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": True})
    wait_until(lambda: airflow_healthy(settings), 120, "Airflow health after the scheduler restart")
