"""refresh_corporate_actions: splits and dividends from Finnhub into raw.corporate_actions, daily.

Runs the code of `tickhouse corporate-actions refresh --source finnhub`
(`producer.corporate_actions_refresh.run_finnhub`, imported inside the task): Finnhub's
`/stock/split` and `/stock/dividend` for the warehouse's symbols (SYMBOLS and every symbol of
`marts.dim_symbols`), ex-dates from January 1st 30 years ago to a year ahead, upserted into
`raw.corporate_actions` as the loader role.

- Manual run: Airflow UI → Dags → `refresh_corporate_actions` → Trigger, with `symbols`
  (comma-separated; empty: the warehouse's), `from` and `to` (ex-dates; empty: the defaults).
- When the refresh stored a new or corrected action, `publish_corporate_actions` emits the Asset
  `tickhouse.raw.corporate_actions`, on which `transform_marts` is scheduled: the next build
  restates the adjusted prices of the symbols concerned. A refresh that changed nothing emits
  nothing (the task is skipped), so dbt does not run for nothing.
- Failures: a symbol whose calls failed after the fetcher's own retries (429 backoff, 5xx, network),
  or an entry Finnhub served that cannot be stored, fails the run in `check_refresh`, after what was
  stored has been published (the next daily run fetches the failed symbols again). A refused key,
  a plan without access (401/403) or a bad param fails `refresh` at once; a warehouse error is
  retried. Without FINNHUB_API_KEY the run is skipped.
- Credentials: the loader's and dbt's from the Airflow connections `tickhouse_warehouse` and
  `tickhouse_dbt`; FINNHUB_API_KEY and FINNHUB_API_URL from the worker's environment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, task

from alerts.airflow_failures import notify_failure
from drain.assets import REFERENCE_TABLE_ASSETS
from tickhouse.config import SYMBOL_LIST_PATTERN

CORPORATE_ACTIONS = Asset(REFERENCE_TABLE_ASSETS["raw.corporate_actions"])
# comma-separated symbols (docs/interfaces/kafka-messages.md), or empty (the warehouse's symbols)
SYMBOLS_PATTERN = rf"^\s*$|{SYMBOL_LIST_PATTERN}"


@dag(
    dag_id="refresh_corporate_actions",
    schedule="@daily",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=10),
        # the run's failure is its task's: the task callback reports it (no DAG-level callback,
        # whose context Airflow builds from the params)
        "on_failure_callback": notify_failure,
    },
    params={
        "symbols": Param(
            None,
            type=["null", "string"],
            pattern=SYMBOLS_PATTERN,
            title="Symbols",
            description="Comma-separated symbols, e.g. AAPL,NVDA; empty: every symbol the "
            "warehouse has.",
        ),
        "from": Param(
            None,
            type=["null", "string"],
            format="date",
            title="From",
            description="First ex-date; empty: January 1st, 30 years ago.",
        ),
        "to": Param(
            None,
            type=["null", "string"],
            format="date",
            title="To",
            description="Last ex-date, included; empty: a year ahead.",
        ),
    },
    tags=["tickhouse", "reference"],
    doc_md=__doc__,
)
def refresh_corporate_actions() -> None:
    @task(execution_timeout=timedelta(hours=2))
    def refresh(**context: Any) -> dict[str, Any]:
        """Fetch and store the actions; returns the summary's counts."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from drain.airflow_connection import warehouse_settings
        from producer.corporate_actions_refresh import params_request, run_finnhub
        from producer.finnhub_stream import FinnhubAuthError
        from tickhouse.config import ConfigError, load_settings
        from transform.airflow_profile import dbt_settings

        try:
            # reads dim_symbols as dbt, writes raw.corporate_actions as the loader
            settings = load_settings()
            if not settings.finnhub_api_key:
                # a stack without a key has nothing to fetch: visible in the grid, not a failure
                raise AirflowSkipException(
                    "FINNHUB_API_KEY is not set: no corporate actions fetched (set it in .env, or "
                    "load them with `tickhouse corporate-actions refresh --source file`)")
            settings = dbt_settings(warehouse_settings(settings))
            summary = run_finnhub(settings, **params_request(context["params"]))
        except (ConfigError, FinnhubAuthError) as err:
            # retrying cannot help: a bad param, a missing or refused key, no access
            raise AirflowFailException(str(err)) from err
        print("\n".join(summary.lines()))
        return {"fetched": summary.fetched, "stored": summary.stored, "new": summary.new,
                "corrected": summary.corrected, "unchanged": summary.unchanged,
                "rejected": [str(item) for item in summary.rejected], "failed": summary.failed}

    @task(outlets=[CORPORATE_ACTIONS], retries=0)
    def publish_corporate_actions(refreshed: dict[str, Any], **context: Any) -> int:
        """Emits the Asset when the refresh stored a new or corrected action."""
        from airflow.sdk.exceptions import AirflowSkipException

        stored = int(refreshed["stored"])
        if stored == 0:
            raise AirflowSkipException("no new or corrected corporate actions")
        context["outlet_events"][CORPORATE_ACTIONS].extra = {"stored": stored}
        return stored

    # runs after the Asset was published or skipped (what was stored is announced first); skipped
    # with the refresh
    @task(retries=0, trigger_rule="none_failed_min_one_success")
    def check_refresh(refreshed: dict[str, Any]) -> None:
        """Fails the run when an action served was not stored (docs/interfaces/commands.md)."""
        from airflow.sdk.exceptions import AirflowFailException

        if refreshed["failed"] or refreshed["rejected"]:
            raise AirflowFailException(
                f"{len(refreshed['failed'])} symbols failed, {len(refreshed['rejected'])} actions "
                "rejected: " + "; ".join([*(f"{s}: {r}" for s, r in refreshed["failed"].items()),
                                          *refreshed["rejected"]])[:2000])

    refreshed: Any = refresh()
    publish_corporate_actions(refreshed) >> check_refresh(refreshed)


refresh_corporate_actions()
