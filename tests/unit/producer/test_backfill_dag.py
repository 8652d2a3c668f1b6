"""The backfill_history DAG file parses in a throwaway AIRFLOW_HOME with typed params, and its params
become exactly the request `tickhouse backfill --source finnhub` makes."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from producer.backfill import BackfillUsageError, finnhub_request
from tickhouse.config import PROJECT_ROOT, parse_symbols
from tickhouse.schemas import RESOLUTIONS

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    started = time.monotonic()
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=sys.argv[1])
    dag = bag.dags.get("backfill_history")
    print(json.dumps({
        "errors": {k: str(v) for k, v in bag.import_errors.items()},
        "found": dag is not None,
        "schedule": None if dag is None else repr(dag.timetable),
        "max_active_runs": None if dag is None else dag.max_active_runs,
        "params": {} if dag is None else {k: {"value": p.value if p.has_value else None,
                                                "schema": p.schema}
                                           for k, p in dag.params.items()},
        "tasks": {} if dag is None else {t.task_id: {"retries": t.retries} for t in dag.tasks},
        "heavy_modules": sorted(m for m in sys.modules
                                if m.split(".")[0] in ("producer", "finnhub", "confluent_kafka")),
    }))
    """
)


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("airflow-home")
    environ = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(PROJECT_ROOT / "dags" / "backfill_history.py")],
        env=environ, capture_output=True, text=True, timeout=120, check=True,
        cwd=PROJECT_ROOT,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_dag_parses_unscheduled_one_run_at_a_time(parsed: dict[str, Any]) -> None:
    assert parsed["errors"] == {}
    assert parsed["found"] is True
    assert "NullTimetable" in parsed["schedule"]
    assert parsed["max_active_runs"] == 1
    assert parsed["tasks"]["backfill"]["retries"] >= 1


def test_params_are_typed_for_the_trigger_form(parsed: dict[str, Any]) -> None:
    params = parsed["params"]
    assert list(params) == ["symbols", "resolution", "from", "to"]
    assert params["resolution"]["schema"]["enum"] == list(RESOLUTIONS)
    assert params["resolution"]["value"] == "D"
    assert set(params["resolution"]["schema"]["values_display"]) == set(RESOLUTIONS)
    for name in ("from", "to"):
        assert params[name]["schema"] == {"type": "string", "format": "date",
                                          "title": name.capitalize()}
        assert params[name]["value"] is None  # required: the form asks for it
    assert params["symbols"]["schema"]["type"] == "string"


@pytest.mark.parametrize(
    "text",
    ["AAPL", "AAPL,MSFT", " AAPL , MSFT ", "BRK.B,BINANCE:BTCUSDT,^GSPC,EUR=X,A-B_C/D",
     "A,B,", "A B", "AAPL;MSFT", "", ",", "X" * 33, "AAPL,,MSFT"],
)
def test_symbols_pattern_agrees_with_the_command(parsed: dict[str, Any], text: str) -> None:
    pattern = parsed["params"]["symbols"]["schema"]["pattern"]
    try:
        parse_symbols("symbols", text)
        accepted = True
    except Exception:
        accepted = False
    # the form may be stricter than the command (a trailing comma), never looser
    if re.search(pattern, text):
        assert accepted, text
    if text in ("AAPL", "AAPL,MSFT", " AAPL , MSFT ", "BRK.B,BINANCE:BTCUSDT,^GSPC,EUR=X,A-B_C/D"):
        assert re.search(pattern, text), text


def test_params_become_the_command_request() -> None:
    request = finnhub_request({"symbols": " NVDA, AAPL ,NVDA", "resolution": "60",
                               "from": "2024-01-01", "to": "2025-12-31"})
    assert request == {"symbols": ("NVDA", "AAPL"), "resolution": "60",
                       "first": dt.date(2024, 1, 1), "last": dt.date(2025, 12, 31)}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"symbols": "A", "resolution": "2", "from": "2024-01-01", "to": "2024-01-02"},
         "resolution '2'"),
        ({"symbols": "A", "resolution": "D", "from": "2024-02-01", "to": "2024-01-02"},
         "from 2024-02-01 is after to 2024-01-02"),
        ({"symbols": "A", "resolution": "D", "from": None, "to": "2024-01-02"},
         "from: None is not a date"),
        ({"symbols": "", "resolution": "D", "from": "2024-01-01", "to": "2024-01-02"},
         "symbols is empty"),
    ],
)
def test_bad_params_name_the_param(params: dict[str, Any], message: str) -> None:
    with pytest.raises(BackfillUsageError, match=re.escape(message)):
        finnhub_request(params)


def test_parsing_the_dag_imports_no_service_code(parsed: dict[str, Any]) -> None:
    # the backfill code, finnhub-python and the Kafka client load inside the task only
    assert parsed["heavy_modules"] == []
