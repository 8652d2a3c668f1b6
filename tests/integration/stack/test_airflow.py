"""Airflow 3 is real: the REST API wants a token, and a DAG triggered through it runs to success
on the LocalExecutor using the connections setup provisioned; setup keeps a continuous DAG from
stalling after a schedule change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from airflow.timetables.base import DataInterval, TimeRestriction
from airflow.timetables.simple import ContinuousTimetable

from ops.airflow_api import AirflowAPI
from ops.stack.airflow import unstall_continuous_drain, viewer_password
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


def test_a_drain_dag_switched_from_cron_to_continuous_is_not_stalled(settings: Settings) -> None:
    """A cron run's zero-length interval made the continuous timetable propose that run's own
    logical date again (scheduler: "run already exists", forever); setup moves it past."""
    dag_id = f"tickhouse_test_stall_{uuid.uuid4().hex[:8]}"
    minute = datetime(2026, 11, 30, 21, 20, tzinfo=UTC)
    with psycopg.connect(host=settings.postgres_host, port=settings.postgres_port,
                         dbname=settings.airflow_db, user=settings.airflow_db_user,
                         password=settings.airflow_db_password, autocommit=True) as conn:
        try:
            for run_type, at in (("scheduled", minute - timedelta(minutes=1)), ("scheduled", minute),
                                 ("manual", minute + timedelta(minutes=5))):
                logical = at if run_type == "scheduled" else None
                conn.execute(
                    "insert into dag_run (dag_id, run_id, run_type, run_after, logical_date,"
                    " data_interval_start, data_interval_end, state)"
                    " values (%s, %s, %s, %s, %s, %s, %s, 'success')",
                    (dag_id, f"{run_type}__{at.isoformat()}", run_type, at, logical, logical, logical))

            def proposed() -> datetime:
                start, end = conn.execute(
                    "select data_interval_start, data_interval_end from dag_run where dag_id = %s"
                    " and run_type = 'scheduled' order by logical_date desc limit 1", (dag_id,)
                ).fetchone()
                info = ContinuousTimetable().next_dagrun_info(
                    last_automated_data_interval=DataInterval(start, end),
                    restriction=TimeRestriction(earliest=None, latest=None, catchup=False))
                assert info is not None
                return info.logical_date

            assert proposed() == minute  # the stall: the next run's logical date is taken

            assert unstall_continuous_drain(settings, dag_id) is True
            assert proposed() > minute
            assert unstall_continuous_drain(settings, dag_id) is False  # once only
            ends = conn.execute("select data_interval_end - data_interval_start from dag_run"
                                " where dag_id = %s and run_type = 'scheduled' order by logical_date",
                                (dag_id,)).fetchall()
            assert ends == [(timedelta(0),), (timedelta(microseconds=1),)]  # the last run only
        finally:
            conn.execute("delete from dag_run where dag_id = %s", (dag_id,))
