"""ingest_market_data: drain the Kafka topics into the raw tables and keep the bars fresh.

Thin on purpose: the work is `drain.loop.drain_continuously`, a bounded loop of
`drain.runner.drain_once` (also `tickhouse drain --once`), and `transform.hot.HotTransform`,
imported inside the task so that parsing this file touches no network and loads nothing heavy.

- Schedule: `@continuous` by default (`DRAIN_SCHEDULE`, or any cron expression or preset): one
  run at a time, the next one starts as soon as the last ended. A run's `drain` task loops for
  up to DRAIN_LOOP_SECONDS (300), draining again at once while data flows (each drain at most
  DRAIN_MAX_MESSAGES messages / DRAIN_MAX_SECONDS seconds), and ends early after
  DRAIN_IDLE_SECONDS (30) with nothing to drain (between empty drains it waits 0.2 s,
  doubling up to 1 s, so an idle stack costs little).
- After every drain that loaded rows of a table the marts read, the hot dbt models run in the
  same process (`transform.hot`: minute bars → int_bars → int_technicals, warm, under the build
  lock), so a trade is in `marts.fct_bars` seconds after it was produced. DRAIN_HOT_TRANSFORM=0
  switches that off (then only transform_marts builds the marts).
- Exactly once does not depend on Airflow: offsets are committed with the rows of each drain, so
  a retried or killed task resumes where the last commit left off.
- When the loop ends, for each raw table that received rows a `publish_*` task emits an Asset
  event (names and URIs in `drain.assets.RAW_TABLE_ASSETS`: "tickhouse.raw.trades" etc.);
  `transform_marts` (the slow path: full build and tests) is scheduled on those of the tables the
  marts read (trades, candles, alerts).
  Tables with no new rows emit nothing (the task is skipped), so dbt does not run for nothing.
- A rewound topic (deleted and re-created; see `drain.errors.TopicRewound`) stops only
  that topic: the others are committed and their Assets published, and `check_topics` then fails
  the run with the message that says what to do (no retries: retrying cannot fix it).
- Configuration: the Tickhouse environment (docs/interfaces/configuration.md and DRAIN_* variables) of the
  Airflow worker, read by `tickhouse.config.load_settings()`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, dag, task

from alerts.airflow_failures import notify_dag_failure, notify_failure
from drain.assets import MART_INPUTS, RAW_TABLE_ASSETS

RAW_ASSETS = {table: Asset(name) for table, name in RAW_TABLE_ASSETS.items()}


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


LOOP_SECONDS = _seconds("DRAIN_LOOP_SECONDS", 300)
IDLE_SECONDS = _seconds("DRAIN_IDLE_SECONDS", 30)


@dag(
    dag_id="ingest_market_data",
    schedule=os.environ.get("DRAIN_SCHEDULE") or "@continuous",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(seconds=LOOP_SECONDS) + timedelta(minutes=15),
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
    @task(execution_timeout=timedelta(seconds=LOOP_SECONDS) + timedelta(minutes=10))
    def drain() -> dict[str, Any]:
        """Exactly-once drains (and the hot models) for a while; returns only counts (rows
        never travel through XCom)."""
        from airflow.sdk.exceptions import AirflowFailException

        from drain.airflow_connection import warehouse_settings
        from drain.errors import DataQualityError
        from drain.loop import drain_continuously
        from drain.options import load_options
        from drain.stats import DrainResult
        from tickhouse.airflow_connections import use_kafka_connection
        from tickhouse.config import load_settings
        from transform.airflow_profile import dbt_settings
        from transform.hot import HotTransform

        # credentials from the Airflow connections: tickhouse_warehouse (the loader) for the drain,
        # tickhouse_dbt for the hot models, tickhouse_kafka (the drain's Kafka principal)
        use_kafka_connection("tickhouse_kafka")
        settings = warehouse_settings(load_settings())
        after_load = None
        if os.environ.get("DRAIN_HOT_TRANSFORM", "1") != "0":
            hot = HotTransform(dbt_settings(settings))

            def after_load(result: DrainResult) -> None:
                # a load of a raw table the marts read runs the hot models
                if any(result.loaded_by_table.get(table, 0) for table in MART_INPUTS):
                    hot.run()

        try:
            # a topic rewound ends the loop: the other topics' rows are committed, publish
            # them, then fail in check_topics
            outcome = drain_continuously(
                settings, load_options(settings), seconds=LOOP_SECONDS,
                idle_seconds=IDLE_SECONDS, after_load=after_load,
            )
        except DataQualityError as err:
            # the rows are committed; retrying would only drain the next batch
            raise AirflowFailException(str(err)) from err
        return {
            "run_id": outcome.run_ids[-1] if outcome.run_ids else "",
            "drains": outcome.drains,
            "loaded_by_table": outcome.loaded_by_table,
            "hot_failures": outcome.after_load_failures,
            "stopped": outcome.stopped,
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
