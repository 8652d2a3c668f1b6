"""The backfill_history DAG on the stack's real Airflow 3.

- its params as the REST API (and so the trigger form) serves them, and the API refusing bad ones;
- a run through `airflow dags test` with a `conf`, the stack's Airflow environment and metadata
  database, and the Finnhub URL and candles topic pointed at this test's fake server and topic
  (the scheduler's workers keep the Finnhub URL they were started with, so only a run in a process
  of our own can reach the fake server): the candles arrive, the run is listed by the REST API
  like any other, with its conf, state and the summary as the task's return value;
- a refused plan (403) failing the run at once, without retries;
- a run triggered through the REST API and executed by the scheduler's worker, when the stack has
  no FINNHUB_API_KEY: it fails at once with the message saying so.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ops.airflow_api import AirflowAPI
from ops.stack.airflow import airflow_env, airflow_home
from tests.finnhub_server import DAILY_CANDLES, FakeFinnhub
from tests.integration.producer.conftest import consume_all
from tests.kafka_grants import granted
from tickhouse.config import Settings
from tickhouse.schemas import parse_candle

# one worker runs the tests that drive the shared Airflow's `backfill_history`, one after another
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("airflow-backfill_history")]

DAG_ID = "backfill_history"


def dags_test(settings: Settings, conf: dict[str, Any], env: dict[str, str]
              ) -> subprocess.CompletedProcess[str]:
    # the task publishes as the `producer` principal (its Airflow connection): grant it the
    # candle topic's ACLs on this test's own topic
    with granted(settings, candles_topic=env["CANDLES_TOPIC"]):
        return subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "dags", "test", DAG_ID, "--conf",
             json.dumps(conf)],
            env={**airflow_env(settings), **env}, cwd=airflow_home(settings),
            capture_output=True, text=True, timeout=600, check=False,
        )


def runs_since(api: AirflowAPI, started: dt.datetime) -> list[dict[str, Any]]:
    status, body = api.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?order_by=-run_after&limit=20")
    assert status == 200, body
    return [r for r in body["dag_runs"]
            if dt.datetime.fromisoformat(r["run_after"].replace("Z", "+00:00")) >= started]


def test_params_are_served_typed_and_enforced_by_the_rest_api(airflow_api: AirflowAPI) -> None:
    airflow_api.wait_for_dag(DAG_ID)
    status, details = airflow_api.request("GET", f"/api/v2/dags/{DAG_ID}/details")
    assert status == 200, details
    params = details["params"]
    assert list(params) == ["symbols", "resolution", "from", "to"]
    assert params["resolution"]["schema"]["enum"] == ["1", "5", "15", "30", "60", "D", "W", "M"]
    assert params["from"]["schema"]["format"] == params["to"]["schema"]["format"] == "date"
    assert params["from"]["value"] is None and params["symbols"]["schema"]["pattern"]
    good = {"symbols": "AAPL", "resolution": "D", "from": "2024-01-01", "to": "2024-12-31"}
    for change, named in (({"resolution": "2"}, "resolution"), ({"from": "2024-13-01"}, "from"),
                          ({"symbols": "AA PL"}, "symbols"), ({"to": None}, "to")):
        conf = {k: v for k, v in {**good, **change}.items() if v is not None}
        status, body = airflow_api.request("POST", f"/api/v2/dags/{DAG_ID}/dagRuns",
                                           {"logical_date": None, "conf": conf})
        assert status == 400, (conf, body)
        assert f"Invalid input for param {named}" in body["detail"]


def test_a_run_publishes_the_history_and_is_listed_like_any_other(
    settings: Settings, airflow_api: AirflowAPI, make_topic: Callable[[], str],
    fake_finnhub: FakeFinnhub,
) -> None:
    airflow_api.wait_for_dag(DAG_ID)
    topic = make_topic()
    conf = {"symbols": "IBM, FB", "resolution": "D", "from": "2012-03-01", "to": "2013-03-01"}
    started = dt.datetime.now(dt.UTC)
    done = dags_test(settings, conf, {"FINNHUB_API_KEY": "test-token",
                                      "FINNHUB_API_URL": fake_finnhub.api_url,
                                      "CANDLES_TOPIC": topic})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    calls = fake_finnhub.candle_requests
    assert [(r.symbol, r.resolution, r.status) for r in calls] == [("IBM", "D", 200),
                                                                    ("FB", "D", 200)]
    served = sum(r.candles for r in calls)
    with gzip.open(DAILY_CANDLES, "rt", newline="") as handle:
        expected = sorted(
            (r["symbol"], int(r["bar_start"]), float(r["close"])) for r in csv.DictReader(handle)
            if r["symbol"] in ("IBM", "FB") and "2012-03-01" <= dt.datetime.fromtimestamp(
                int(r["bar_start"]) / 1000, dt.UTC).date().isoformat() <= "2013-03-01")
    candles = [parse_candle(m.value) for m in consume_all(settings, topic, expect=served)]
    assert served == len(expected) == len(candles)
    assert sorted((c.symbol, c.bar_start, float(c.close)) for c in candles) == expected

    [run] = [r for r in runs_since(airflow_api, started) if r["conf"] == conf]
    assert (run["state"], run["run_type"]) == ("success", "manual")
    [task] = airflow_api.task_instances(DAG_ID, run["dag_run_id"])
    assert (task["task_id"], task["state"], task["try_number"]) == ("backfill", "success", 1)
    status, xcom = airflow_api.request(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/backfill/"
        "xcomEntries/return_value")
    assert status == 200, xcom
    value = xcom["value"] if isinstance(xcom["value"], dict) else json.loads(xcom["value"])
    assert (value["served"], value["published"], value["acknowledged"]) == (served,) * 3
    assert (value["symbols"], value["topic"], value["exit_code"]) == (["IBM", "FB"], topic, 0)
    assert "done: every candle was published and acknowledged" in done.stdout + done.stderr


def test_a_plan_without_candle_access_fails_the_run_at_once(
    settings: Settings, airflow_api: AirflowAPI, make_topic: Callable[[], str],
    fake_finnhub: FakeFinnhub,
) -> None:
    airflow_api.wait_for_dag(DAG_ID)
    fake_finnhub.deny_candles = True
    conf = {"symbols": "MSFT", "resolution": "W", "from": "2001-01-01", "to": "2010-12-31"}
    started = dt.datetime.now(dt.UTC)
    done = dags_test(settings, conf, {"FINNHUB_API_KEY": "test-token",
                                      "FINNHUB_API_URL": fake_finnhub.api_url,
                                      "CANDLES_TOPIC": make_topic()})
    output = done.stdout + done.stderr
    assert "this API key's plan has no access to stock candles" in output
    assert len(fake_finnhub.candle_requests) == 1  # one call: no retry of the task or the call
    [run] = [r for r in runs_since(airflow_api, started) if r["conf"] == conf]
    assert run["state"] == "failed", output[-4000:]
    [task] = airflow_api.task_instances(DAG_ID, run["dag_run_id"])
    assert (task["state"], task["try_number"]) == ("failed", 1)


def test_a_run_triggered_through_the_api_runs_on_the_worker(
    settings: Settings, airflow_api: AirflowAPI
) -> None:
    if settings.finnhub_api_key or os.environ.get("FINNHUB_API_KEY"):
        pytest.skip("this stack has a FINNHUB_API_KEY: a triggered run would call the real "
                    "Finnhub and publish to the stack's CANDLES_TOPIC")
    conf = {"symbols": "AAPL", "resolution": "D", "from": "2024-01-01", "to": "2024-01-31"}
    started = time.monotonic()
    run = airflow_api.run_dag(DAG_ID, conf=conf, timeout=300)
    assert run["state"] == "failed" and run["conf"] == conf
    assert run["run_type"] == "manual" and run["triggered_by"] == "rest_api"
    [task] = airflow_api.task_instances(DAG_ID, run["dag_run_id"])
    assert (task["state"], task["try_number"]) == ("failed", 1)  # a missing key is not retried
    status, log = airflow_api.request(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances/backfill/logs/1")
    assert status == 200, log
    text = json.dumps(log)
    assert "FINNHUB_API_KEY is not set" in text, text[-3000:]
    assert time.monotonic() - started < 300
