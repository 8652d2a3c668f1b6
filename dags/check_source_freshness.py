"""check_source_freshness: `dbt source freshness` of the raw feeds, every 5 minutes.

A feed whose newest load is older than its `error_after` (`_tickhouse__sources.yml`: trades and
quotes, 6 hours; `warn_after` 30 minutes only warns) turns the `source_freshness` task red, and
the failure callback sends it to the alert notifiers. The check is its own DAG, not a task of
transform_marts: that DAG runs only when new data lands, which is exactly when nothing is stale.

Thin on purpose: the work is `transform.freshness.check_source_freshness`, imported inside the task.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from airflow.sdk import dag, task

from alerts.airflow_failures import notify_dag_failure, notify_failure


@dag(
    dag_id="check_source_freshness",
    schedule=os.environ.get("SOURCE_FRESHNESS_SCHEDULE") or "*/5 * * * *",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=4),
    # a stale feed is a finding, not a transient error: report it at once
    default_args={"retries": 0, "on_failure_callback": notify_failure},
    on_failure_callback=notify_dag_failure,
    tags=["tickhouse", "dbt", "ops"],
    doc_md=__doc__,
)
def check_source_freshness() -> None:
    @task(execution_timeout=timedelta(minutes=3))
    def source_freshness() -> list[dict[str, object]]:
        """Fails (red) when a raw source is past its error_after; returns every source's age."""
        from airflow.sdk.exceptions import AirflowFailException

        from tickhouse.config import load_settings
        from transform.airflow_profile import dbt_settings
        from transform.freshness import StaleSourceError, check_source_freshness

        try:
            # the dbt role's credentials from the Airflow connection tickhouse_dbt
            results = check_source_freshness(dbt_settings(load_settings()))
        except StaleSourceError as err:
            raise AirflowFailException(str(err)) from err
        for result in results:
            print(result.describe())
        return [
            {"source": r.source, "status": r.status, "age_seconds": r.age_seconds} for r in results
        ]

    source_freshness()


check_source_freshness()
