"""The dbt profile of the `transform_marts` DAG: from the Airflow connection `tickhouse_dbt`,
so a user's own Airflow works with the connection docs/interfaces/airflow.md documents and the
local stack's workers hold no DBT_PASSWORD in their environment.

Snowflake (WAREHOUSE=snowflake or DBT_TARGET=snowflake) keeps `profiles.yml`, whose target reads
the SNOWFLAKE_* variables.
"""

from __future__ import annotations

import os
from pathlib import Path

from cosmos import ProfileConfig
from cosmos.profiles import PostgresUserPasswordProfileMapping

from tickhouse.airflow_connections import with_connection
from tickhouse.config import Settings
from tickhouse.snowflake.settings import selected_warehouse

DBT_CONN_ID = "tickhouse_dbt"
PROFILE_NAME = "tickhouse"


def profile_config(profiles_yml: Path, conn_id: str = DBT_CONN_ID) -> ProfileConfig:
    """Cosmos' ProfileConfig: the PostgreSQL target mapped from the Airflow connection `conn_id`
    (read when a task runs, not when the DAG file is parsed), or profiles.yml for Snowflake."""
    target = os.environ.get("DBT_TARGET") or selected_warehouse()
    if target != "postgres":
        return ProfileConfig(
            profile_name=PROFILE_NAME, target_name=target, profiles_yml_filepath=profiles_yml
        )
    return ProfileConfig(
        profile_name=PROFILE_NAME,
        target_name="postgres",
        profile_mapping=PostgresUserPasswordProfileMapping(
            conn_id=conn_id,
            # what profiles.yml sets beside the credentials
            profile_args={
                "schema": "marts",
                "threads": int(os.environ.get("DBT_THREADS") or 4),
                "connect_timeout": 10,
                "keepalives_idle": 0,
            },
        ),
    )


def dbt_settings(settings: Settings, conn_id: str = DBT_CONN_ID) -> Settings:
    """`settings` with the dbt role's connection from the Airflow connection `conn_id`, for what
    runs dbt or takes its build lock inside a task (the hot models, Cosmos' lock hook). Snowflake:
    unchanged (its credentials are SNOWFLAKE_* variables)."""
    target = os.environ.get("DBT_TARGET") or selected_warehouse()
    if target != "postgres":
        return settings
    return with_connection(settings, conn_id, "dbt")
