"""Airflow Asset identities of the raw tables (no Airflow import: plain strings).

The drain DAG emits one event per raw table that received rows; the dbt DAG (`transform_marts`)
schedules on the same Assets. An Asset is identified by its name and URI, so both DAGs build them
the same way: `Asset(RAW_TABLE_ASSETS["raw.trades"])`, i.e. name = URI = "tickhouse.raw.trades".
A URI without a scheme keeps Airflow from applying the Postgres provider's URI rules (which would
need a host, port and database that differ between machines): these identify the logical tables,
whatever warehouse holds them.
"""

from __future__ import annotations

RAW_TABLE_ASSETS: dict[str, str] = {
    "raw.trades": "tickhouse.raw.trades",
    "raw.quotes": "tickhouse.raw.quotes",
    "raw.alerts": "tickhouse.raw.alerts",
    "raw.candles": "tickhouse.raw.candles",
}

# the raw tables the marts read (no mart reads quotes): what transform_marts is scheduled on and
# what makes the ingest DAG's hot loop run dbt
MART_INPUTS: tuple[str, ...] = ("raw.trades", "raw.candles", "raw.alerts")

# raw tables written by DAGs of their own, not by the drain, that the marts read:
# refresh_corporate_actions emits this Asset when it stored a new or corrected action, and
# transform_marts is scheduled on it too (a split restates the symbol's adjusted history)
REFERENCE_TABLE_ASSETS: dict[str, str] = {
    "raw.corporate_actions": "tickhouse.raw.corporate_actions",
}
