"""transform_marts: build and test the dbt marts when new raw data has landed (docs/interfaces/airflow.md).

One task, `dbt_build`: Cosmos runs one `dbt build` of the whole project in the task's process
(`DbtBuildLocalOperator`, dbt's Python entry point): every seed, model and data test, in dbt's
order, DBT_THREADS at a time. One invocation, not a task per model: each task would pay a task's
start, Cosmos' copy of the project and dbt's import and parse, seconds each, more than most models
take to build (docs/performance.md#the-loop-make-demo-and-make-test). dbt's log of the run, model
by model with each test, is the task's log.

The run is scheduled on the raw Assets the ingest DAG emits for the tables the marts read:
trades, candles and alerts (no mart reads raw.quotes, so new quotes alone do not start a
build), and on the reference tables (a corporate action restates the adjusted prices). The
ingest DAG publishes those Assets when its drain loop ends (every few minutes while data
flows): this is the slow path, the full build with every test; the marts' bars are kept fresh
in between by the hot loop (`transform.hot`, run by the ingest DAG).

The build takes the one-build-at-a-time lock model by model: the hot models (those the hot loop
writes) take it inside their own transaction (`build_lock` pre-hook, given the lock in dbt's
environment), so this build and a hot run never write the same table at once, and everything else
(the other models, every test) runs beside the hot loop.
dbt's PostgreSQL credentials come from the Airflow connection `tickhouse_dbt` (a Cosmos profile
mapping, `transform.airflow_profile`); the Snowflake target reads profiles.yml.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, AssetAny, dag
from cosmos.constants import InvocationMode
from cosmos.operators.local import DbtBuildLocalOperator

from alerts.airflow_failures import notify_dag_failure, notify_failure
from drain.assets import MART_INPUTS, RAW_TABLE_ASSETS, REFERENCE_TABLE_ASSETS
from tickhouse.config import dbt_lock_retries
from transform.airflow_profile import profile_config
from transform.hot import build_lock_environment

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
# where Cosmos keeps dbt's partial-parse state between runs (each run builds in a copy of the
# project): a run parses only what changed since the last
PARSE_CACHE_DIR = DBT_PROJECT_DIR / "target" / "transform_marts"

# How much lower than the ingest DAG's hot loop the build runs on the CPU (os.nice): the full
# build is the slow path, and on a small host its dbt threads would otherwise take the cores the
# hot loop needs to keep the bars seconds behind the trades.
SLOW_PATH_NICENESS = 10

# how many times a build whose dbt run timed out on a BI query's lock runs again (tickhouse.config)
LOCK_RETRIES = dbt_lock_retries()


def prepare_build(context: Any) -> None:
    """pre_execute: first of all it starts Python's resource tracker (dbt's locks need it) and runs
    the `uname -p` Python's platform module caches (dbt asks for the platform), so
    that the tracker, a child that keeps the environment it started with, does not keep dbt's
    password, which Cosmos puts into this process's environment (its profile's variables) while
    dbt runs. Then the build yields the CPU to the hot loop (SLOW_PATH_NICENESS; dbt runs in this
    process, its threads inherit it), and its connections wait at most DBT_LOCK_TIMEOUT_SECONDS
    for a BI query's lock; only a build that failed on that is retried. The build lock is taken
    by the hot models themselves (`build_lock_environment`)."""
    import os

    from tickhouse.config import load_settings
    from transform.airflow_retries import apply_lock_timeout, retry_lock_timeouts_only
    from transform.dbt_runner import start_children_before_secrets

    start_children_before_secrets()
    os.nice(SLOW_PATH_NICENESS)
    apply_lock_timeout(load_settings())
    retry_lock_timeouts_only(context["task"])


@dag(
    dag_id="transform_marts",
    description="dbt build of the Tickhouse marts (bars, technicals, analytics, alerts)",
    # any new raw data triggers a build (a new corporate action too); the incremental models make
    # it cheap
    schedule=AssetAny(*(Asset(RAW_TABLE_ASSETS[table]) for table in MART_INPUTS),
                      *(Asset(name) for name in REFERENCE_TABLE_ASSETS.values())),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    # one task: the rest of AIRFLOW_PARALLELISM (4) is the ingest DAG's drain loop and publish
    # tasks; the slow path must never starve the hot one
    max_active_tasks=1,
    # a failed data test is a finding, not a transient error: never retried
    default_args={"owner": "tickhouse", "retries": 0, "on_failure_callback": notify_failure},
    on_failure_callback=notify_dag_failure,
    tags=["tickhouse", "dbt"],
    doc_md=__doc__,
)
def transform_marts() -> None:
    DbtBuildLocalOperator(
        task_id="dbt_build",
        project_dir=str(DBT_PROJECT_DIR),
        # the Airflow connection tickhouse_dbt (profiles.yml for Snowflake): transform.airflow_profile
        profile_config=profile_config(REPO_ROOT / "profiles.yml"),
        invocation_mode=InvocationMode.DBT_RUNNER,
        install_deps=False,
        cache_dir=PARSE_CACHE_DIR,
        emit_datasets=False,
        # the hot models take the build lock in their own transaction (macros/utils/build_lock.sql)
        env=build_lock_environment(),
        # only a build that timed out on a reader's lock is run again (transform.airflow_retries)
        retries=LOCK_RETRIES,
        retry_delay=timedelta(seconds=5),
        pre_execute=prepare_build,
    )


transform_marts()
