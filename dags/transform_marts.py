"""transform_marts: build and test the dbt marts when new raw data has landed (CONTRACT §5).

Cosmos renders every dbt model (with its tests, TestBehavior.BUILD) and seed as an Airflow
task, from the manifest `dbt parse` wrote at setup (`transform.dbt_runner.dbt_parse()`), so
parsing this file runs no dbt. The run is scheduled on the raw Assets the ingest DAG emits for the
tables the marts read: trades, candles and alerts (no mart reads raw.quotes, so new quotes alone
do not start a build).
dbt's PostgreSQL credentials come from the Airflow connection `tickhouse_dbt` (a Cosmos profile
mapping, `transform.airflow_profile`); the Snowflake target reads profiles.yml.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import Asset, AssetAny
from cosmos import DbtDag, ExecutionConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

from drain.assets import RAW_TABLE_ASSETS
from transform.airflow_profile import profile_config

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"

# the raw tables the marts read, as the ingest DAG names their Assets (drain.assets)
MART_INPUTS = ("raw.trades", "raw.candles", "raw.alerts")

transform_marts = DbtDag(
    dag_id="transform_marts",
    description="dbt build of the Tickhouse marts (bars, technicals, analytics, alerts)",
    project_config=ProjectConfig(
        dbt_project_path=DBT_PROJECT_DIR,
        manifest_path=MANIFEST_PATH,
        project_name="tickhouse",
    ),
    # the Airflow connection tickhouse_dbt (profiles.yml for Snowflake): transform.airflow_profile
    profile_config=profile_config(REPO_ROOT / "profiles.yml"),
    execution_config=ExecutionConfig(
        execution_mode=ExecutionMode.LOCAL,
        invocation_mode=InvocationMode.DBT_RUNNER,
    ),
    render_config=RenderConfig(
        load_method=LoadMode.DBT_MANIFEST,
        test_behavior=TestBehavior.BUILD,
        # tests over two models (relationships, technicals-cover-bars) run in their own
        # task after both parents, not half-way inside the first parent's build
        should_detach_multiple_parents_tests=True,
        emit_datasets=False,
    ),
    # a failed data test is a finding, not a transient error: never retry
    operator_args={"install_deps": False, "retries": 0},
    default_args={"owner": "tickhouse", "retries": 0},
    # any new raw data triggers a build; the incremental models make it cheap
    schedule=AssetAny(*(Asset(RAW_TABLE_ASSETS[table]) for table in MART_INPUTS)),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["tickhouse", "dbt"],
)
