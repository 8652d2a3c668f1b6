"""transform_marts: build and test the dbt marts when new raw data has landed (CONTRACT §5).

Cosmos renders every dbt model (with its tests, TestBehavior.BUILD) and seed as an Airflow
task, from the manifest `dbt parse` wrote at setup (`transform.dbt_runner.dbt_parse()`), so
parsing this file runs no dbt. The run is scheduled on the raw Assets the ingest DAG emits for the
tables the marts read: trades, candles and alerts (no mart reads raw.quotes, so new quotes alone
do not start a build).
dbt reads its connection from the environment through profiles.yml (POSTGRES_HOST,
POSTGRES_PORT, POSTGRES_DB, DBT_USER, DBT_PASSWORD, BI_READER_USER).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import Asset, AssetAny
from cosmos import DbtDag, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

from alerts.airflow_failures import notify_dag_failure, notify_failure
from drain.assets import RAW_TABLE_ASSETS

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
    profile_config=ProfileConfig(
        profile_name="tickhouse",
        # WAREHOUSE=snowflake (or DBT_TARGET) selects the profiles.yml target, as for the CLI
        target_name=os.environ.get("DBT_TARGET") or os.environ.get("WAREHOUSE") or "postgres",
        profiles_yml_filepath=REPO_ROOT / "profiles.yml",
    ),
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
    default_args={"owner": "tickhouse", "retries": 0, "on_failure_callback": notify_failure},
    on_failure_callback=notify_dag_failure,
    # any new raw data triggers a build; the incremental models make it cheap
    schedule=AssetAny(*(Asset(RAW_TABLE_ASSETS[table]) for table in MART_INPUTS)),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["tickhouse", "dbt"],
)
