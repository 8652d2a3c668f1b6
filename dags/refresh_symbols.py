"""refresh_symbols: company profiles from Finnhub into dim_symbols, weekly.

Runs the code of `tickhouse symbols refresh` (`producer.symbols`, imported inside the task):
Finnhub's `/stock/profile2` for SYMBOLS and every symbol of `marts.dim_symbols`, written to
`raw.symbol_profiles`, which dim_symbols (a view) shows at once. Without FINNHUB_API_KEY, or with
Finnhub unreachable, the seed fills the symbols that have no profile yet and the run succeeds; a
refused key fails it at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, task

from alerts.airflow_failures import notify_dag_failure, notify_failure


@dag(
    dag_id="refresh_symbols",
    schedule="@weekly",
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5), "on_failure_callback": notify_failure},
    on_failure_callback=notify_dag_failure,
    tags=["tickhouse", "reference"],
    doc_md=__doc__,
)
def refresh_symbols() -> None:
    @task(execution_timeout=timedelta(minutes=30))
    def refresh() -> dict[str, Any]:
        """Fetch and write the profiles; returns the summary's counts."""
        from airflow.sdk.exceptions import AirflowFailException

        from drain.airflow_connection import warehouse_settings
        from producer.finnhub_quotes import hide_secret_in_logs
        from producer.finnhub_stream import FinnhubAuthError
        from producer.symbols import ProfileFetcher, symbols_to_refresh
        from producer.symbols import refresh as refresh_profiles
        from tickhouse.config import load_settings
        from transform.airflow_profile import dbt_settings

        # it reads dim_symbols as dbt and writes raw.symbol_profiles as the loader: both roles'
        # credentials from the Airflow connections (tickhouse_dbt, tickhouse_warehouse)
        settings = dbt_settings(warehouse_settings(load_settings()))
        hide_secret_in_logs(settings.finnhub_api_key)
        fetcher = (ProfileFetcher(settings.finnhub_api_url, settings.finnhub_api_key)
                   if settings.finnhub_api_key else None)
        try:
            summary = refresh_profiles(settings, symbols_to_refresh(settings), fetcher)
        except FinnhubAuthError as err:
            raise AirflowFailException(str(err)) from err
        finally:
            if fetcher is not None:
                fetcher.close()
        print("\n".join(summary.lines()))
        if summary.failed:
            raise RuntimeError(f"{len(summary.failed)} profiles failed; see the summary")
        return {"symbols": len(summary.symbols), "fetched": len(summary.fetched),
                "unknown": summary.unknown, "from_seed": len(summary.from_seed), "offline": summary.offline}

    refresh()


refresh_symbols()
