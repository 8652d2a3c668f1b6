"""transform_marts: build and test the dbt marts when new raw data has landed (docs/interfaces/airflow.md).

Cosmos renders every dbt model (with its tests, TestBehavior.BUILD) and seed as an Airflow
task, from the manifest `dbt parse` wrote at setup (`transform.dbt_runner.dbt_parse()`), so
parsing this file runs no dbt. The run is scheduled on the raw Assets the ingest DAG emits for the
tables the marts read: trades, candles and alerts (no mart reads raw.quotes, so new quotes alone
do not start a build). The ingest DAG publishes those Assets when its drain loop ends (every few
minutes while data flows): this is the slow path, the full build with every test; the marts'
bars are kept fresh in between by the hot loop (`transform.hot`, run by the ingest DAG).
dbt's PostgreSQL credentials come from the Airflow connection `tickhouse_dbt` (a Cosmos profile
mapping, `transform.airflow_profile`); the Snowflake target reads profiles.yml.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetAny
from cosmos import DbtDag, ExecutionConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior

from alerts.airflow_failures import notify_dag_failure, notify_failure
from drain.assets import MART_INPUTS, RAW_TABLE_ASSETS, REFERENCE_TABLE_ASSETS
from tickhouse.config import dbt_lock_retries
from transform.airflow_profile import profile_config

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
MANIFEST_PATH = DBT_PROJECT_DIR / "target" / "manifest.json"


def _writes_a_hot_model(context: Any) -> bool:
    from transform.hot import HOT_MODELS

    return str(context["task"].task_id).removesuffix("_model_build") in HOT_MODELS


# How much lower than the ingest DAG's hot loop this DAG's tasks run on the CPU (os.nice): the
# full build is the slow path, and on a small host its dbt invocations would otherwise take the
# cores the hot loop needs to keep the bars seconds behind the trades.
SLOW_PATH_NICENESS = 10

# how many times a task whose dbt run timed out on a BI query's lock runs again (tickhouse.config)
LOCK_RETRIES = dbt_lock_retries()


def hold_build_lock(context: Any) -> None:
    """pre_execute: the task yields the CPU to the hot loop (SLOW_PATH_NICENESS; dbt runs in this
    process, its threads inherit it); a task that writes one of the hot models (transform.hot)
    then waits for the one-build-at-a-time lock, so it never writes a table the ingest DAG's hot
    run is writing. The other tasks (views, stock_analytics, the tests) only read those tables:
    they do not queue behind the hot runs, nor the hot runs behind them.
    First of all it starts Python's resource tracker (dbt's locks need it), so that the tracker,
    a child that keeps the environment it started with, does not keep dbt's password, which
    Cosmos puts into this process's environment (its profile's variables) while dbt runs."""
    import os

    from tickhouse.config import load_settings
    from transform.airflow_retries import apply_lock_timeout, retry_lock_timeouts_only
    from transform.dbt_runner import start_resource_tracker

    start_resource_tracker()
    os.nice(SLOW_PATH_NICENESS)
    settings = load_settings()
    # a BI query holding a lock makes the task wait DBT_LOCK_TIMEOUT_SECONDS at most, then retry
    apply_lock_timeout(settings)
    retry_lock_timeouts_only(context["task"])
    if _writes_a_hot_model(context):
        from transform.airflow_profile import dbt_settings
        from transform.dbt_runner import hold_build_lock as hold

        hold(context, dbt_settings(settings))  # the dbt role, from tickhouse_dbt


def release_build_lock(context: Any, result: Any = None) -> None:
    """post_execute: release it (a failed task's process exit releases it too)."""
    from transform.dbt_runner import release_build_lock as release

    release(context, result)


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
    # a failed data test is a finding, not a transient error: never retried. The tasks that write a
    # hot model hold the build lock while they run, so no model is written by this DAG and the
    # ingest DAG's hot loop (transform.hot) at once: a task waits for the lock, never fails.
    operator_args={
        "install_deps": False,
        # only a run that timed out on a reader's lock is retried (transform.airflow_retries)
        "retries": LOCK_RETRIES,
        "retry_delay": timedelta(seconds=5),
        "pre_execute": hold_build_lock,
        "post_execute": release_build_lock,
    },
    default_args={"owner": "tickhouse", "retries": 0, "on_failure_callback": notify_failure},
    on_failure_callback=notify_dag_failure,
    # any new raw data triggers a build (a new corporate action too); the incremental models make
    # it cheap
    schedule=AssetAny(*(Asset(RAW_TABLE_ASSETS[table]) for table in MART_INPUTS),
                      *(Asset(name) for name in REFERENCE_TABLE_ASSETS.values())),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    # leave task slots (AIRFLOW_PARALLELISM, 4) to the ingest DAG's drain loop and its publish
    # tasks: the slow path must never starve the hot one
    max_active_tasks=2,
    tags=["tickhouse", "dbt"],
)
