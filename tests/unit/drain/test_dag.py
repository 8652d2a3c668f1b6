"""The ingest_market_data DAG file parses in a throwaway AIRFLOW_HOME and has the agreed shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drain.assets import RAW_TABLE_ASSETS
from tickhouse.config import PROJECT_ROOT

pytestmark = pytest.mark.unit

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=sys.argv[1])
    dag = bag.dags.get("ingest_market_data")
    tasks = {} if dag is None else {
        t.task_id: {
            "retries": t.retries,
            "backoff": t.retry_exponential_backoff,
            "outlets": [[o.name, o.uri] for o in t.outlets],
            "upstream": sorted(t.upstream_task_ids),
            "trigger_rule": str(t.trigger_rule),
        }
        for t in dag.tasks
    }
    print(json.dumps({
        "errors": {k: str(v) for k, v in bag.import_errors.items()},
        "found": dag is not None,
        "timetable": None if dag is None else (
            getattr(dag.timetable, "expression", None) or type(dag.timetable).__name__),
        "execution_timeout_s": None if dag is None else (
            dag.get_task("drain").execution_timeout.total_seconds()),
        "max_active_runs": None if dag is None else dag.max_active_runs,
        "catchup": None if dag is None else dag.catchup,
        "tasks": tasks,
    }))
    """
)


def parse_dag(tmp_path: Path, **env: str) -> dict[str, object]:
    environ = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               **env}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(PROJECT_ROOT / "dags" / "ingest_market_data.py")],
        env=environ, capture_output=True, text=True, timeout=120, check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_dag_parses_with_schedule_limits_and_assets(tmp_path: Path) -> None:
    parsed = parse_dag(tmp_path)
    assert parsed["errors"] == {}
    assert parsed["found"] is True
    assert parsed["timetable"] == "ContinuousTimetable"
    # the task outlives its loop (DRAIN_LOOP_SECONDS, 300 s) by a margin for the last drain
    assert parsed["execution_timeout_s"] > 300
    assert (parsed["max_active_runs"], parsed["catchup"]) == (1, False)
    tasks = parsed["tasks"]
    assert isinstance(tasks, dict)
    assert tasks["drain"]["retries"] >= 1 and tasks["drain"]["backoff"] > 1
    outlets = sorted(tuple(o) for t in tasks.values() for o in t["outlets"])
    # name = URI, the same Assets transform_marts schedules on
    assert outlets == sorted((name, name) for name in RAW_TABLE_ASSETS.values())
    for table in RAW_TABLE_ASSETS:
        assert tasks[f"publish_{table.split('.')[-1]}"]["upstream"] == ["drain"]
    # a rewound topic fails the run only after the other tables' Assets were published
    publishes = sorted(f"publish_{table.split('.')[-1]}" for table in RAW_TABLE_ASSETS)
    assert tasks["check_topics"]["upstream"] == sorted(["drain", *publishes])
    assert tasks["check_topics"]["retries"] == 0
    assert tasks["check_topics"]["trigger_rule"].lower().endswith("none_failed_min_one_success")


def test_schedule_comes_from_drain_schedule(tmp_path: Path) -> None:
    assert parse_dag(tmp_path, DRAIN_SCHEDULE="*/5 * * * *")["timetable"] == "*/5 * * * *"
