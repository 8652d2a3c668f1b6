"""The refresh_corporate_actions DAG file parses in a throwaway AIRFLOW_HOME: daily, optional
params for the trigger form, the Asset transform_marts is scheduled on, and nothing heavy loaded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from drain.assets import REFERENCE_TABLE_ASSETS
from tickhouse.config import PROJECT_ROOT

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=sys.argv[1])
    dag = bag.dags.get("refresh_corporate_actions")
    print(json.dumps({
        "errors": {k: str(v) for k, v in bag.import_errors.items()},
        "found": dag is not None,
        "schedule": None if dag is None else repr(dag.timetable),
        "start_tz": None if dag is None else str(dag.start_date.tzinfo),
        "max_active_runs": None if dag is None else dag.max_active_runs,
        "params": {} if dag is None else {k: {"value": p.resolve(),
                                                "schema": p.schema}
                                           for k, p in dag.params.items()},
        "tasks": {} if dag is None else {
            t.task_id: {"retries": t.retries, "outlets": [[o.name, o.uri] for o in t.outlets],
                        "upstream": sorted(t.upstream_task_ids),
                        "trigger_rule": getattr(t.trigger_rule, "value", t.trigger_rule)}
            for t in dag.tasks},
        "heavy_modules": sorted(m for m in sys.modules
                                if m.split(".")[0] in ("producer", "finnhub", "psycopg")),
    }))
    """
)


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("airflow-home")
    environ = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(PROJECT_ROOT / "dags" / "refresh_corporate_actions.py")],
        env=environ, capture_output=True, text=True, timeout=120, check=True, cwd=PROJECT_ROOT,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_dag_parses_daily_one_run_at_a_time(parsed: dict[str, Any]) -> None:
    assert parsed["errors"] == {}
    assert parsed["found"] is True
    assert "0 0 * * *" in parsed["schedule"]  # @daily
    assert parsed["start_tz"] == "UTC"
    assert parsed["max_active_runs"] == 1
    assert parsed["heavy_modules"] == []  # the refresh code loads inside the task only


def test_params_are_optional_for_the_daily_run(parsed: dict[str, Any]) -> None:
    params = parsed["params"]
    assert list(params) == ["symbols", "from", "to"]
    # a scheduled run validates with every param empty: the defaults
    assert all(p["value"] is None for p in params.values())
    for name in ("from", "to"):
        assert params[name]["schema"]["format"] == "date"
    pattern = params["symbols"]["schema"]["pattern"]
    for good in ("", "AAPL", " NVDA , BRK.B,BINANCE:BTCUSDT "):
        assert re.search(pattern, good), good
    for bad in ("AAPL;MSFT", "A B", "AAPL,,MSFT", "X" * 33):
        assert not re.search(pattern, bad), bad


def test_the_asset_is_published_before_the_run_can_fail(parsed: dict[str, Any]) -> None:
    tasks = parsed["tasks"]
    name = REFERENCE_TABLE_ASSETS["raw.corporate_actions"]
    assert tasks["publish_corporate_actions"]["outlets"] == [[name, name]]
    assert tasks["publish_corporate_actions"]["upstream"] == ["refresh"]
    assert tasks["check_refresh"]["upstream"] == ["publish_corporate_actions", "refresh"]
    # runs after a skipped publish, not after a skipped refresh
    assert tasks["check_refresh"]["trigger_rule"] == "none_failed_min_one_success"
    assert tasks["refresh"]["retries"] >= 1
