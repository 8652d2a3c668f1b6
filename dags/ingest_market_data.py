"""ingest_market_data: drain the Kafka topics into the raw tables, one micro-batch per run.

Thin on purpose: the work is `drain.runner.drain_once` (also `tickhouse drain --once`),
imported inside the task so that parsing this file touches no network and loads nothing heavy.

- Schedule: every minute by default (`DRAIN_SCHEDULE`, any cron expression or preset);
  one run at a time and no catchup, so a backlog is worked off by consecutive, non-overlapping
  runs of at most DRAIN_MAX_MESSAGES messages / DRAIN_MAX_SECONDS seconds each.
- Exactly once does not depend on Airflow: offsets are committed with the rows, so a retried or
  killed task resumes where the last commit left off.
- For each raw table that received rows, a `publish_*` task emits an Asset event (names and URIs
  in `drain.assets.RAW_TABLE_ASSETS`: "tickhouse.raw.trades" etc.); `transform_marts` is
  scheduled on those of the tables the marts read (trades, candles, alerts).
  Tables with no new rows emit nothing (the task is skipped), so dbt does not run for nothing.
- A rewound topic (deleted and re-created; see `drain.errors.TopicRewound`) stops only
  that topic: the others are committed and their Assets published, and `check_topics` then fails
  the run with the message that says what to do (no retries: retrying cannot fix it).
- Configuration: the Tickhouse environment (CONTRACT §2 and DRAIN_* variables) of the Airflow
  worker, read by `tickhouse.config.load_settings()`.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, dag, task

from alerts.airflow_failures import notify_dag_failure, notify_failure
from drain.assets import RAW_TABLE_ASSETS

RAW_ASSETS = {table: Asset(name) for table, name in RAW_TABLE_ASSETS.items()}


@dag(
    dag_id="ingest_market_data",
    schedule=os.environ.get("DRAIN_SCHEDULE") or "* * * * *",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=15),
    default_args={
        "retries": 3,
        "retry_delay": timedelta(seconds=15),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
        "on_failure_callback": notify_failure,
    },
    on_failure_callback=notify_dag_failure,
    tags=["tickhouse", "ingest"],
    doc_md=__doc__,
)
def ingest_market_data() -> None:
    @task(execution_timeout=timedelta(minutes=10))
    def drain() -> dict[str, Any]:
        """One exactly-once micro-batch; returns only counts (rows never travel through XCom)."""
        from airflow.sdk.exceptions import AirflowFailException

        from drain.errors import DataQualityError, TopicRewound
        from drain.options import load_options
        from drain.runner import drain_once
        from tickhouse.config import load_settings

        settings = load_settings()
        stopped = None
        try:
            result = drain_once(settings, load_options(settings))
        except DataQualityError as err:
            # the rows are committed; retrying would only drain the next batch
            raise AirflowFailException(str(err)) from err
        except TopicRewound as err:
            # the other topics' rows are committed: publish them, then fail in check_topics
            result, stopped = err.result, str(err)
        summary = result.as_dict()
        return {
            "run_id": summary["run_id"],
            "loaded_by_table": summary["loaded_by_table"],
            "stopped": stopped,
        }

    # runs when the publish tasks are done, skipped ones included, and not when the drain failed
    @task(retries=0, trigger_rule="none_failed_min_one_success")
    def check_topics(drained: dict[str, Any]) -> None:
        """Fails the run when a topic was stopped (rewound), after the Assets were published."""
        from airflow.sdk.exceptions import AirflowFailException

        if drained.get("stopped"):
            raise AirflowFailException(drained["stopped"])

    def publish(table: str) -> Any:
        asset = RAW_ASSETS[table]

        @task(task_id=f"publish_{table.split('.')[-1]}", outlets=[asset], retries=0)
        def _publish(drained: dict[str, Any], **context: Any) -> int:
            from airflow.sdk.exceptions import AirflowSkipException

            rows = int(drained["loaded_by_table"].get(table, 0))
            if rows == 0:
                raise AirflowSkipException(f"no new rows in {table}")
            context["outlet_events"][asset].extra = {"rows": rows, "drain_run": drained["run_id"]}
            return rows

        return _publish

    drained = drain()
    published = [publish(table)(drained) for table in RAW_ASSETS]
    check = check_topics(drained)
    for task_ref in published:
        task_ref >> check


ingest_market_data()
