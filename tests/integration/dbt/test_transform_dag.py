"""The transform_marts DAG: parses from the manifest `dbt parse` writes, quickly, with the
schedule, tasks and retries the contract asks for. Parsed by Airflow's DagBag in a child
process with a throwaway AIRFLOW_HOME, so no Airflow state is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tickhouse.config import PROJECT_ROOT
from transform.dbt_runner import dbt_parse

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
            "retries": t.retries,
            "upstream": sorted(t.upstream_task_ids),
            "locks": [getattr(t._pre_execute_hook, "__name__", None),
                      getattr(t._post_execute_hook, "__name__", None)],
        } for t in dag.tasks
    } if dag else {},
    "schedule": repr(dag.timetable) if dag else "",
    "max_active_runs": dag.max_active_runs if dag else None,
    "max_active_tasks": dag.max_active_tasks if dag else None,
}))
"""


def test_transform_marts_dag_parses_from_the_manifest(tmp_path: Path) -> None:
    manifest = dbt_parse()
    assert json.loads(manifest.read_text())["metadata"]["project_name"] == "tickhouse"
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
    # well inside Airflow's dagbag_import_timeout (30 s): rendered from the manifest, no `dbt ls`
    assert result["seconds"] < 30.0
    tasks = result["tasks"]
    for model in (
        "int_trades_aggregated_to_minute_bars",
        "int_bars",
        "int_technicals",
        "fct_bars",
        "fct_technicals",
        "stock_analytics",
        "fct_alerts",
    ):
        assert f"{model}_model_build" in tasks
    assert "int_bars_model_build" in tasks["int_technicals_model_build"]["upstream"]
    assert "symbol_reference_seed_build" in tasks
    # retried only when dbt timed out on a BI query's lock (transform.airflow_retries)
    assert all(task["retries"] == int(os.environ.get("DBT_LOCK_RETRIES") or 3) for task in tasks.values())
    # the tasks that write a hot model hold the build lock (hooks on every task; they decide)
    assert all(task["locks"] == ["hold_build_lock", "release_build_lock"] for task in tasks.values())
    for asset in ("tickhouse.raw.trades", "tickhouse.raw.alerts", "tickhouse.raw.candles",
                  "tickhouse.raw.corporate_actions"):
        assert f"name='{asset}'" in result["schedule"]
    # no mart reads raw.quotes: new quotes alone start no build
    assert "name='tickhouse.raw.quotes'" not in result["schedule"]
    assert "AssetAny" in result["schedule"]
    assert result["max_active_runs"] == 1
    assert result["max_active_tasks"] < 4  # slots left for the ingest DAG's drain loop
