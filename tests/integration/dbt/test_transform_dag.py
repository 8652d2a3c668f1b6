"""The transform_marts DAG: parses quickly, with the schedule, the one whole-project `dbt build`
task and the retries the docs describe (docs/interfaces/airflow.md). Parsed by Airflow's DagBag
in a child process with a throwaway AIRFLOW_HOME, so no Airflow state is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tickhouse.config import PROJECT_ROOT
from transform.hot import build_lock_environment

pytestmark = pytest.mark.integration

PARSE_DAG = r"""
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
import cosmos  # imported by the DAG processor once, not per parse
started = time.monotonic()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.monotonic() - started
dag = bag.dags.get("transform_marts")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "seconds": seconds,
    "tasks": {
        t.task_id: {
            "operator": type(t).__name__,
            "command": list(t.base_cmd),
            "select": [t.select, t.exclude, t.selector, t.models],
            "vars": t.vars,
            "env": t.env,
            "project_dir": str(t.project_dir),
            "retries": t.retries,
            "hooks": [getattr(t._pre_execute_hook, "__name__", None),
                      getattr(t._post_execute_hook, "__name__", None)],
        } for t in dag.tasks
    } if dag else {},
    "schedule": repr(dag.timetable) if dag else "",
    "max_active_runs": dag.max_active_runs if dag else None,
    "max_active_tasks": dag.max_active_tasks if dag else None,
}))
"""


def test_transform_marts_dag_is_one_dbt_build_of_the_whole_project(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
    }
    completed = subprocess.run(
        [sys.executable, "-c", PARSE_DAG, str(PROJECT_ROOT / "dags" / "transform_marts.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    # well inside Airflow's dagbag_import_timeout (30 s): no dbt runs when the file is parsed
    assert result["seconds"] < 30.0
    # one `dbt build` of the whole project (every seed, model and test: nothing selected away)
    # in one task, with the hot models taking the build lock in their own transactions
    assert list(result["tasks"]) == ["dbt_build"]
    build = result["tasks"]["dbt_build"]
    assert build["operator"] == "DbtBuildLocalOperator"
    assert build["command"] == ["build"]
    assert build["select"] == [None, None, None, None]
    assert Path(build["project_dir"]) == PROJECT_ROOT / "dbt_project"
    assert build["vars"] is None and build["env"] == build_lock_environment()
    # retried only when dbt timed out on a BI query's lock (transform.airflow_retries)
    assert build["retries"] == int(os.environ.get("DBT_LOCK_RETRIES") or 3)
    assert build["hooks"] == ["prepare_build", None]
    for asset in ("tickhouse.raw.trades", "tickhouse.raw.alerts", "tickhouse.raw.candles",
                  "tickhouse.raw.corporate_actions"):
        assert f"name='{asset}'" in result["schedule"]
    # no mart reads raw.quotes: new quotes alone start no build
    assert "name='tickhouse.raw.quotes'" not in result["schedule"]
    assert "AssetAny" in result["schedule"]
    assert result["max_active_runs"] == 1
    assert result["max_active_tasks"] < 4  # slots left for the ingest DAG's drain loop
