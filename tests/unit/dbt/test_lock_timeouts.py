"""The lock timeout of dbt's connections and what is retried after one: only a run whose every
failure is PostgreSQL's lock-timeout cancellation."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from tickhouse.config import ConfigError, load_settings
from transform.airflow_retries import retry_lock_timeouts_only
from transform.dbt_runner import dbt_environment, failed_on_lock_timeout, pg_options_with_lock_timeout

LOCK_TIMEOUT = (
    'canceling statement due to lock timeout\nCONTEXT: create or replace view "marts"."dim_symbols"'
)


def _result(*messages: tuple[str, str], exception: Exception | None = None) -> Any:
    nodes = [SimpleNamespace(status=status, message=message, node=SimpleNamespace(name=f"m{i}"))
             for i, (status, message) in enumerate(messages)]
    return SimpleNamespace(success=False, exception=exception, result=SimpleNamespace(results=nodes))


def test_only_a_run_failed_on_lock_timeouts_alone_is_retried() -> None:
    assert failed_on_lock_timeout(_result(("success", ""), ("error", LOCK_TIMEOUT)))
    assert not failed_on_lock_timeout(_result(("error", LOCK_TIMEOUT), ("fail", "Got 3 results")))
    assert not failed_on_lock_timeout(_result(("error", 'relation "x" does not exist')))
    assert not failed_on_lock_timeout(_result(("success", "")))


def test_dbt_connections_get_the_lock_timeout_after_the_users_pgoptions() -> None:
    assert pg_options_with_lock_timeout("", 10) == "-c lock_timeout=10000"
    assert pg_options_with_lock_timeout("-c lock_timeout=0 ", 1.5) == "-c lock_timeout=0 -c lock_timeout=1500"
    settings = dataclasses.replace(load_settings({}), dbt_lock_timeout_seconds=2.5)
    assert dbt_environment(settings, {"PGOPTIONS": "-c work_mem=64MB"})["PGOPTIONS"] == (
        "-c work_mem=64MB -c lock_timeout=2500"
    )
    assert "PGOPTIONS" not in dbt_environment(settings, {"WAREHOUSE": "snowflake"})


def test_lock_timeout_settings_are_validated() -> None:
    settings = load_settings({"DBT_LOCK_TIMEOUT_SECONDS": "0.5", "DBT_LOCK_RETRIES": "5"})
    assert (settings.dbt_lock_timeout_seconds, settings.dbt_lock_retries) == (0.5, 5)
    assert (load_settings({}).dbt_lock_timeout_seconds, load_settings({}).dbt_lock_retries) == (10.0, 3)
    with pytest.raises(ConfigError, match="DBT_LOCK_TIMEOUT_SECONDS"):
        load_settings({"DBT_LOCK_TIMEOUT_SECONDS": "soon"})
    with pytest.raises(ConfigError, match="DBT_LOCK_RETRIES"):
        load_settings({"DBT_LOCK_RETRIES": "0"})


class CosmosTask:
    """The part of a Cosmos dbtRunner operator the hook replaces: it raises on a failed run."""

    def handle_exception_dbt_runner(self, result: Any) -> None:
        if not result.success:
            raise RuntimeError("dbt invocation completed with errors")


def test_an_airflow_task_fails_for_good_unless_dbt_timed_out_on_a_lock() -> None:
    from airflow.sdk.exceptions import AirflowFailException

    task = CosmosTask()
    retry_lock_timeouts_only(task)
    retry_lock_timeouts_only(task)  # a retry's pre_execute: wrapped once
    with pytest.raises(RuntimeError) as retried:
        task.handle_exception_dbt_runner(_result(("error", LOCK_TIMEOUT)))
    assert not isinstance(retried.value, AirflowFailException)
    with pytest.raises(AirflowFailException, match="m0: fail"):
        task.handle_exception_dbt_runner(_result(("fail", "Got 3 results")))
    task.handle_exception_dbt_runner(SimpleNamespace(success=True))
