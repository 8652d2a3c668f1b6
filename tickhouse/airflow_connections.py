"""A warehouse role's credentials from an Airflow connection, for code that runs inside
an Airflow task: the drain takes the loader's from `tickhouse_warehouse`, dbt the dbt role's from
`tickhouse_dbt`, so a user's own Airflow works with the connections docs/interfaces/airflow.md documents and
the local stack's workers hold no password variables."""

from __future__ import annotations

import dataclasses
from typing import Any

from tickhouse.config import Settings

# the Settings fields of each role a connection may stand for
_ROLE_FIELDS = {"loader": ("loader_user", "loader_password"), "dbt": ("dbt_user", "dbt_password")}


def with_connection(settings: Settings, conn_id: str, role: str) -> Settings:
    """`settings` with `role`'s host, port, database, login and password taken from the Airflow
    connection `conn_id` (empty host/port/schema keep the configured ones)."""
    from airflow.sdk import BaseHook  # only inside a running task: parsing a DAG never gets here

    conn = BaseHook.get_connection(conn_id)
    if not conn.login or conn.password is None:
        raise ValueError(
            f"the Airflow connection {conn_id!r} has no login or password; set it to the "
            f"warehouse's {role} role (e.g. postgresql://tickhouse_{role}:...@host:5432/tickhouse)"
        )
    user_field, password_field = _ROLE_FIELDS[role]
    credentials: dict[str, Any] = {user_field: conn.login, password_field: conn.password}
    return dataclasses.replace(
        settings,
        postgres_host=conn.host or settings.postgres_host,
        postgres_port=int(conn.port or settings.postgres_port),
        postgres_db=conn.schema or settings.postgres_db,
        **credentials,
    )


# the librdkafka settings of a Kafka connection's extra, and the variables they stand for
_KAFKA_EXTRA = {
    # where the login is made (the local broker's login listener, or your secured cluster)
    "bootstrap.servers": "KAFKA_LOGIN_SERVERS",
    "security.protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanism": "KAFKA_SASL_MECHANISM",
    "sasl.username": "KAFKA_USERNAME",
    "sasl.password": "KAFKA_PASSWORD",
    "ssl.ca.location": "KAFKA_SSL_CA_LOCATION",
}


def use_kafka_connection(conn_id: str) -> None:
    """Make the Kafka login of the Airflow connection `conn_id` (its extra's librdkafka settings:
    bootstrap.servers, security.protocol, sasl.mechanism, sasl.username, sasl.password) this task
    process's Kafka identity, which every client Tickhouse makes then uses
    (`tickhouse.kafka.client_config`).
    A connection without them, or no such connection, leaves the configuration as it is (e.g. a
    PLAINTEXT cluster, or KAFKA_USERNAME/KAFKA_PASSWORD given to the workers)."""
    import os

    from airflow.sdk import BaseHook  # only inside a running task: parsing a DAG never gets here
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        extra = BaseHook.get_connection(conn_id).extra_dejson
    except AirflowNotFoundException:
        return
    # this process only: the task runs in a process of its own, which ends with it. Python's
    # resource tracker (a child that keeps the environment it started with; dbt's locks start it)
    # is started first, so that it does not keep the login
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    for key, variable in _KAFKA_EXTRA.items():
        if extra.get(key):
            os.environ[variable] = str(extra[key])
