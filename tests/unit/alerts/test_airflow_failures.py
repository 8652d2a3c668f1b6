"""The failure alert built from an Airflow callback context: what it names, and no secret."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from alerts.airflow_failures import DAG_RULE, TASK_RULE, failure_alert, secret_values
from tickhouse.redaction import redact

pytestmark = pytest.mark.unit


def test_task_failure_names_the_task_and_hides_secrets() -> None:
    environ = {"DBT_PASSWORD": "pw-0123456789", "ALERTS_WEBHOOK_URL": "https://hooks.example/T/abc",
               "SYMBOLS": "AAPL"}
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="manual__1", try_number=2,
                         log_url="http://127.0.0.1:8080/dags/d/runs/manual__1/tasks/t?try_number=2")
    error = RuntimeError("connect to postgresql://tickhouse_dbt:pw-0123456789@db/x failed\ntrace...")
    alert = failure_alert({"ti": ti, "run_id": "manual__1", "exception": error}, TASK_RULE, environ, 5)
    assert alert.rule == TASK_RULE and alert.severity == "critical"
    assert alert.details == {
        "dag_id": "d", "task_id": "t", "run_id": "manual__1", "try_number": 2,
        "log_url": ti.log_url,
        "error": "RuntimeError: connect to postgresql://tickhouse_dbt:***@db/x failed",
    }
    assert "pw-0123456789" not in alert.message and "d.t" in alert.message
    again = failure_alert({"ti": ti, "run_id": "manual__1", "exception": error}, TASK_RULE, environ, 9)
    assert again.alert_id == alert.alert_id  # one failure, one id: receivers drop a repeat


def test_dag_failure_without_a_task_instance() -> None:
    alert = failure_alert({"dag": SimpleNamespace(dag_id="d"), "run_id": "r", "reason": "timed_out"},
                          DAG_RULE, {}, 1)
    assert (alert.details["dag_id"], alert.details["task_id"], alert.details["log_url"]) == ("d", None, None)
    assert alert.details["error"] == "timed_out"


def test_secret_values_are_the_secret_variables() -> None:
    values = secret_values({"FINNHUB_API_KEY": "k" * 20, "SLACK_WEBHOOK_URL": "https://x/y",
                            "AIRFLOW_CONN_TICKHOUSE_DBT": "postgresql://u:p@h/d", "POSTGRES_HOST": "db1"})
    assert set(values) == {"k" * 20, "https://x/y", "postgresql://u:p@h/d"}
    assert redact("key kkkkkkkkkkkkkkkkkkkk at https://x/y", values) == "key *** at ***"
