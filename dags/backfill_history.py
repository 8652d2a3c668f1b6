"""backfill_history: history as candles from Finnhub, started from the Airflow UI's trigger form.

How an analyst runs it: Airflow UI → Dags → `backfill_history` → Trigger; fill in the form
(`symbols`, comma-separated; `resolution`, one of Finnhub's 1, 5, 15, 30, 60, D, W, M; `from` and
`to`, days in UTC, both included) and press Trigger. The form validates every field before the run
is created; the REST API does the same for `POST /api/v2/dags/backfill_history/dagRuns` with
`{"conf": {"symbols": "NVDA", "resolution": "D", "from": "2024-01-01", "to": "2025-12-31"}}`.
The run shows in the grid like any other, with the summary (calls, candles served and published,
no_data ranges) in the `backfill` task's log and its return value.

Thin on purpose: the task runs `producer.backfill.run_backfill`, the code of
`tickhouse backfill --source finnhub`, imported inside the task. The candles go to CANDLES_TOPIC;
`ingest_market_data` drains them into `raw.candles` exactly once and emits
`tickhouse.raw.candles`, which schedules `transform_marts`.

- No schedule, one run at a time: Finnhub's limit (60 calls/min) is per API key, and one run
  already uses 50 calls/min; later runs queue.
- Retries: a run whose candles Kafka did not all acknowledge, or with Finnhub ranges that failed
  after the backfill's own retries, is retried (publishing the candles again); a refused key, a plan
  without candle access (401/403) or a bad request fails at once.
- Configuration: the worker's Tickhouse environment (`FINNHUB_API_KEY`, `FINNHUB_API_URL`,
  `CANDLES_TOPIC`, `KAFKA_BOOTSTRAP_SERVERS`; the project's `.env` is read too).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from alerts.airflow_failures import notify_failure
from tickhouse.config import SYMBOL_LIST_PATTERN
from tickhouse.schemas import RESOLUTIONS

# comma-separated symbols of docs/interfaces/kafka-messages.md (1-32 chars of A-Z a-z 0-9 . : - _ / ^ =), in a
# form both Python's and the browser's regular expressions read the same way
SYMBOLS_PATTERN = SYMBOL_LIST_PATTERN


@dag(
    dag_id="backfill_history",
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        # its one task's failure is the run's failure: the task callback reports it. No DAG-level
        # callback: Airflow builds that callback's context from the task's params, and with the
        # required params below (no default) `airflow dags test` of a failing run crashes there
        # and leaves the run `running`
        "on_failure_callback": notify_failure,
    },
    params={
        "symbols": Param(
            "AAPL",
            type="string",
            pattern=SYMBOLS_PATTERN,
            title="Symbols",
            description="Comma-separated symbols, e.g. AAPL,MSFT,NVDA.",
        ),
        "resolution": Param(
            "D",
            type="string",
            enum=list(RESOLUTIONS),
            values_display={
                "1": "1 minute", "5": "5 minutes", "15": "15 minutes", "30": "30 minutes",
                "60": "60 minutes", "D": "day", "W": "week", "M": "month",
            },
            title="Resolution",
            description="Candle resolution (Finnhub's). Daily candles make the 1d bars.",
        ),
        "from": Param(
            type="string",
            format="date",
            title="From",
            description="First day, from 00:00:00 UTC.",
        ),
        "to": Param(
            type="string",
            format="date",
            title="To",
            description="Last day, included (to 23:59:59 UTC).",
        ),
    },
    tags=["tickhouse", "backfill"],
    doc_md=__doc__,
)
def backfill_history() -> None:
    @task(execution_timeout=timedelta(hours=12))
    def backfill(**context: Any) -> dict[str, Any]:
        """Run the backfill; returns its summary (counts and ranges, never candles)."""
        from airflow.sdk.exceptions import AirflowFailException

        from producer.backfill import (
            EXIT_OK,
            BackfillUsageError,
            LogProgress,
            finnhub_request,
            report,
            run_backfill,
        )
        from producer.finnhub_quotes import hide_secret_in_logs
        from producer.finnhub_stream import FinnhubAuthError
        from tickhouse.airflow_connections import use_kafka_connection
        from tickhouse.config import ConfigError, load_settings

        try:
            # the producer's Kafka principal, from its Airflow connection
            use_kafka_connection("tickhouse_kafka_producer")
            settings = load_settings()
            hide_secret_in_logs(settings.finnhub_api_key)
            request = finnhub_request(context["params"])
            summary = run_backfill(settings, source="finnhub", progress=LogProgress(), **request)
        except (BackfillUsageError, ConfigError, FinnhubAuthError) as err:
            # retrying cannot help: a bad request, a missing or refused key, no candle access
            raise AirflowFailException(str(err)) from err
        print("\n".join(report(summary)))
        if summary.exit_code != EXIT_OK:
            raise RuntimeError(f"backfill incomplete (exit {summary.exit_code}); see the summary")
        return summary.as_dict()

    backfill()


backfill_history()
