"""transform_marts' tasks against long BI queries: dbt's connections wait at most
DBT_LOCK_TIMEOUT_SECONDS for a lock, and a task whose dbt run failed only on that timeout is
retried by Airflow (DBT_LOCK_RETRIES times); any other failure (a failed data test is a finding)
fails the task at once, without retries."""

from __future__ import annotations

import os
from typing import Any

from tickhouse.config import Settings
from transform.dbt_runner import failed_on_lock_timeout, failure_summary, pg_options_with_lock_timeout


def apply_lock_timeout(settings: Settings) -> None:
    """Give the dbt connections this task process opens from here on the lock timeout
    (PostgreSQL; dbt runs in this process, libpq reads PGOPTIONS when it connects)."""
    target = os.environ.get("DBT_TARGET") or os.environ.get("WAREHOUSE") or "postgres"
    if target.strip().lower() == "postgres":
        os.environ["PGOPTIONS"] = pg_options_with_lock_timeout(
            os.environ.get("PGOPTIONS", ""), settings.dbt_lock_timeout_seconds
        )


def retry_lock_timeouts_only(task: Any) -> None:
    """Make a Cosmos dbtRunner operator's failure handling fail the task for good
    (AirflowFailException: no retries) unless the dbt run failed only on a lock timeout."""
    original = task.handle_exception_dbt_runner
    if getattr(original, "retries_lock_timeouts_only", False):
        return

    def handle(result: Any) -> None:
        if not result.success and not failed_on_lock_timeout(result):
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"dbt failed: {failure_summary(result)}")
        original(result)  # a lock timeout: Cosmos' error, which Airflow retries

    handle.retries_lock_timeouts_only = True  # type: ignore[attr-defined]
    task.handle_exception_dbt_runner = handle
