"""The refresh_corporate_actions DAG on the stack's real Airflow 3, run through `airflow dags test`
with a `conf` from the trigger form, its Finnhub URL pointed at the fake server and its warehouse
connections (tickhouse_warehouse, tickhouse_dbt) at a warehouse of the test's own: the actions are
stored, the Asset transform_marts is scheduled on is emitted, and a second run that changes nothing
emits none.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.airflow_api import AirflowAPI
from ops.stack.airflow import airflow_env, airflow_home
from tests.finnhub_server import FakeFinnhub
from tests.integration.dbt.conftest import fetch, own_warehouse
from tickhouse.config import Settings

pytestmark = pytest.mark.integration

DAG_ID = "refresh_corporate_actions"
ASSET = "tickhouse.raw.corporate_actions"


@pytest.fixture
def warehouse() -> Iterator[Settings]:
    with own_warehouse("corporate_actions_dag") as settings:
        yield settings


def _connection(settings: Settings, user: str, password: str) -> str:
    return (f"postgresql://{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}"
            f"@{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}")


def dags_test(stack: Settings, warehouse: Settings, conf: dict[str, Any], env: dict[str, str]
              ) -> subprocess.CompletedProcess[str]:
    connections = {
        # Airflow reads AIRFLOW_CONN_* before its metadata database: this run's warehouse only
        "AIRFLOW_CONN_TICKHOUSE_WAREHOUSE": _connection(warehouse, warehouse.loader_user,
                                                        warehouse.loader_password),
        "AIRFLOW_CONN_TICKHOUSE_DBT": _connection(warehouse, warehouse.dbt_user, warehouse.dbt_password),
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "test", DAG_ID, "--conf", json.dumps(conf)],
        env={**airflow_env(stack), **connections, **env}, cwd=airflow_home(stack),
        capture_output=True, text=True, timeout=600, check=False,
    )


def _run(api: AirflowAPI, started: dt.datetime, conf: dict[str, Any]) -> dict[str, Any]:
    status, body = api.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?order_by=-run_after&limit=20")
    assert status == 200, body
    [run] = [r for r in body["dag_runs"] if r["conf"] == conf
             and dt.datetime.fromisoformat(r["run_after"].replace("Z", "+00:00")) >= started]
    return run


def _asset_events(api: AirflowAPI, run_id: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"source_dag_id": DAG_ID, "source_run_id": run_id})
    status, body = api.request("GET", f"/api/v2/assets/events?{query}")
    assert status == 200, body
    return [e for e in body["asset_events"] if e["uri"] == ASSET]


def test_a_run_stores_the_actions_and_emits_the_asset_once(
    settings: Settings, warehouse: Settings, airflow_api: AirflowAPI, fake_finnhub: FakeFinnhub,
) -> None:
    airflow_api.wait_for_dag(DAG_ID)
    fake_finnhub.set_splits("NVDA", [{"date": "2024-06-10", "fromFactor": 1, "toFactor": 10}])
    fake_finnhub.set_dividends("NVDA", [{"date": "2024-06-11", "amount": 0.01, "adjustedAmount": 0.01,
                                         "currency": "USD"}])
    fake_finnhub.fail_actions(1, 429, retry_after=0.2)
    conf = {"symbols": "NVDA", "from": "2024-01-01", "to": "2024-12-31"}
    env = {"FINNHUB_API_KEY": fake_finnhub.token, "FINNHUB_API_URL": fake_finnhub.api_url}

    started = dt.datetime.now(dt.UTC)
    done = dags_test(settings, warehouse, conf, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = fetch(warehouse, "select symbol, ex_date, action, to_factor, cash_amount "
                            "from raw.corporate_actions order by ex_date")
    assert [(r["symbol"], r["ex_date"], r["action"]) for r in rows] == [
        ("NVDA", dt.date(2024, 6, 10), "split"), ("NVDA", dt.date(2024, 6, 11), "dividend")]
    assert [s for *_, s in fake_finnhub.action_requests].count(429) == 1
    run = _run(airflow_api, started, conf)
    assert run["state"] == "success"
    states = {t["task_id"]: t["state"] for t in airflow_api.task_instances(DAG_ID, run["dag_run_id"])}
    assert states == {"refresh": "success", "publish_corporate_actions": "success",
                      "check_refresh": "success"}
    [event] = _asset_events(airflow_api, run["dag_run_id"])
    assert event["extra"].get("stored") == 2

    # the same run again: nothing new, the Asset is not emitted, the run still succeeds
    started = dt.datetime.now(dt.UTC)
    done = dags_test(settings, warehouse, conf, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = _run(airflow_api, started, conf)
    states = {t["task_id"]: t["state"] for t in airflow_api.task_instances(DAG_ID, run["dag_run_id"])}
    assert states["publish_corporate_actions"] == "skipped" and run["state"] == "success"
    assert _asset_events(airflow_api, run["dag_run_id"]) == []
    assert len(fetch(warehouse, "select 1 from raw.corporate_actions")) == 2


def test_a_refused_key_fails_the_run_at_once(
    settings: Settings, warehouse: Settings, airflow_api: AirflowAPI, fake_finnhub: FakeFinnhub,
) -> None:
    airflow_api.wait_for_dag(DAG_ID)
    conf = {"symbols": "AAPL", "from": None, "to": None}
    started = dt.datetime.now(dt.UTC)
    done = dags_test(settings, warehouse, conf, {"FINNHUB_API_KEY": "wrong-key-123",
                                                 "FINNHUB_API_URL": fake_finnhub.api_url})
    output = done.stdout + done.stderr
    assert "refused the API key" in output, output[-3000:]
    assert "wrong-key-123" not in output
    assert len(fake_finnhub.action_requests) == 1  # no retry of the call nor of the task
    run = _run(airflow_api, started, conf)
    assert run["state"] == "failed"
    [refresh] = [t for t in airflow_api.task_instances(DAG_ID, run["dag_run_id"])
                 if t["task_id"] == "refresh"]
    assert (refresh["state"], refresh["try_number"]) == ("failed", 1)


def test_without_a_key_the_run_is_skipped(
    settings: Settings, warehouse: Settings, airflow_api: AirflowAPI, fake_finnhub: FakeFinnhub,
) -> None:
    airflow_api.wait_for_dag(DAG_ID)
    conf = {"symbols": "MSFT", "from": None, "to": None}
    started = dt.datetime.now(dt.UTC)
    done = dags_test(settings, warehouse, conf, {"FINNHUB_API_KEY": "",
                                                 "FINNHUB_API_URL": fake_finnhub.api_url})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = _run(airflow_api, started, conf)
    states = {t["task_id"]: t["state"] for t in airflow_api.task_instances(DAG_ID, run["dag_run_id"])}
    assert states == {"refresh": "skipped", "publish_corporate_actions": "skipped",
                      "check_refresh": "skipped"}
    assert fake_finnhub.action_requests == [] and _asset_events(airflow_api, run["dag_run_id"]) == []
