"""The drain's warehouse credentials from the Airflow connection `tickhouse_warehouse`.

Inside Airflow the `ingest_market_data` task takes the loader role's host, port, database, login
and password from that connection, so a user's own Airflow works with the connection
docs/interfaces/airflow.md documents, and the local stack's workers hold no LOADER_PASSWORD in their
environment. Outside Airflow (`tickhouse drain`) nothing changes: the configuration is read as
before.
"""

from __future__ import annotations

from tickhouse.airflow_connections import with_connection
from tickhouse.config import Settings

WAREHOUSE_CONN_ID = "tickhouse_warehouse"


def warehouse_settings(settings: Settings, conn_id: str = WAREHOUSE_CONN_ID) -> Settings:
    """`settings` with the loader role's connection replaced by the Airflow connection `conn_id`.

    For the Snowflake warehouse (WAREHOUSE=snowflake) the settings are returned unchanged: its
    credentials are SNOWFLAKE_* variables."""
    from tickhouse.snowflake.settings import selected_warehouse

    if selected_warehouse() == "snowflake":
        return settings
    return with_connection(settings, conn_id, "loader")
