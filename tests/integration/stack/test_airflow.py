"""Airflow 3 is real: the REST API wants a token, and a DAG triggered through it runs to success
on the LocalExecutor using the connections setup provisioned."""

from __future__ import annotations

from ops.airflow_api import AirflowAPI
from ops.stack.airflow import viewer_password
from tickhouse.config import Settings


def test_api_refuses_requests_without_a_token(settings: Settings) -> None:
    anonymous = AirflowAPI(settings.airflow_url)
    status, _ = anonymous.request("GET", "/api/v2/dags")
    assert status == 401


def test_api_refuses_a_wrong_password(settings: Settings) -> None:
    anonymous = AirflowAPI(settings.airflow_url)
    status, _ = anonymous.request("POST", "/auth/token", {"username": "admin", "password": "wrong"})
    assert status == 401


def test_viewer_may_read_but_not_trigger(settings: Settings, airflow_api: AirflowAPI) -> None:
    airflow_api.wait_for_dag("stack_healthcheck")
    viewer = AirflowAPI(settings.airflow_url, "viewer", viewer_password(settings))
    status, body = viewer.request("GET", "/api/v2/dags/stack_healthcheck")
    assert status == 200, body
    status, body = viewer.request("POST", "/api/v2/dags/stack_healthcheck/dagRuns", {"logical_date": None})
    assert status == 403, body


def test_healthcheck_dag_runs_to_success_through_the_api(airflow_api: AirflowAPI) -> None:
    run = airflow_api.run_dag("stack_healthcheck", timeout=240)
    tasks = {
        t["task_id"]: t["state"] for t in airflow_api.task_instances("stack_healthcheck", run["dag_run_id"])
    }
    assert run["state"] == "success", tasks
    assert tasks == {"warehouse_answers": "success", "kafka_answers": "success"}
