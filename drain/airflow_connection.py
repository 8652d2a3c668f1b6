"""The drain's warehouse credentials from the Airflow connection `tickhouse_warehouse` (issue 16).

Inside Airflow the `ingest_market_data` task takes the loader role's host, port, database, login
and password from that connection, so a user's own Airflow works with the connection the README
documents, and the local stack's workers hold no LOADER_PASSWORD in their environment (issue 14).
Outside Airflow (`tickhouse drain`) nothing changes: the configuration is read as before.
"""

from __future__ import annotations

import dataclasses

from tickhouse.config import Settings

WAREHOUSE_CONN_ID = "tickhouse_warehouse"


def warehouse_settings(settings: Settings, conn_id: str = WAREHOUSE_CONN_ID) -> Settings:
    """`settings` with the loader role's connection replaced by the Airflow connection `conn_id`.

    For the Snowflake warehouse (WAREHOUSE=snowflake) the settings are returned unchanged: its
    credentials are SNOWFLAKE_* variables."""
    import os

    if (os.environ.get("WAREHOUSE") or "postgres").strip().lower() == "snowflake":
        return settings
    from airflow.sdk import BaseHook  # only inside Airflow: parsing a DAG never gets here

    conn = BaseHook.get_connection(conn_id)
    if not conn.login or conn.password is None:
        raise ValueError(
            f"the Airflow connection {conn_id!r} has no login or password; set it to the "
            "warehouse's loader role (e.g. postgresql://tickhouse_loader:...@host:5432/tickhouse)"
        )
    return dataclasses.replace(
        settings,
        postgres_host=conn.host or settings.postgres_host,
        postgres_port=int(conn.port or settings.postgres_port),
        postgres_db=conn.schema or settings.postgres_db,
        loader_user=conn.login,
        loader_password=conn.password,
    )
