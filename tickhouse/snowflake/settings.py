"""The warehouse switch and the Snowflake connection settings (SNOWFLAKE_* variables).

| variable | default | meaning |
|---|---|---|
| `WAREHOUSE` | `postgres` | where the drain loads and dbt builds: `postgres` or `snowflake` |
| `SNOWFLAKE_CONN_ID` | `tickhouse_snowflake` | the Airflow connection the drain's `SnowflakeHook` uses |
| `SNOWFLAKE_ACCOUNT` | none | account (`orgname-account`); when set, the connection is built from these |
| `SNOWFLAKE_USER` | none | login |
| `SNOWFLAKE_PASSWORD` | none | password, or use a key pair: |
| `SNOWFLAKE_PRIVATE_KEY_PATH` / `_PASSPHRASE` | none | PEM private key file (+ passphrase) |
| `SNOWFLAKE_ROLE` | none | role (the drain needs CREATE TABLE/INSERT/UPDATE on the RAW schema) |
| `SNOWFLAKE_WAREHOUSE` | none | virtual warehouse that runs the loads and dbt |
| `SNOWFLAKE_DATABASE` | `TICKHOUSE` | database holding RAW, STAGING, INTERMEDIATE, MARTS |
| `SNOWFLAKE_SCHEMA` | `MARTS` | dbt's default schema (profiles.yml); the drain always uses RAW |

How the drain gets its connection: through the provider's `SnowflakeHook(snowflake_conn_id=...)`.
When `SNOWFLAKE_ACCOUNT` is set and `AIRFLOW_CONN_<CONN_ID>` is not, the connection is defined
from the SNOWFLAKE_* variables as `AIRFLOW_CONN_<CONN_ID>` (Airflow's own environment-variable
connection), so the same code works in an Airflow worker, under `tickhouse drain --once` and in
tests. Without `SNOWFLAKE_ACCOUNT` the hook reads the Airflow connection (UI, CLI, secrets
backend) named by `SNOWFLAKE_CONN_ID`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tickhouse.config import ConfigError, merged_environment

WAREHOUSES = ("postgres", "snowflake")
DEFAULT_CONN_ID = "tickhouse_snowflake"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,254}$")


def selected_warehouse(environ: Mapping[str, str] | None = None) -> str:
    """`WAREHOUSE` (environment, then .env), validated: 'postgres' (default) or 'snowflake'."""
    env = merged_environment(environ)
    raw = env.get("WAREHOUSE", "").strip()
    value = raw.lower() or "postgres"
    if value not in WAREHOUSES:
        raise ConfigError(
            f"WAREHOUSE={raw!r} is not a supported warehouse; set it to one of "
            f"{', '.join(WAREHOUSES)} (or leave it unset for postgres)"
        )
    return value


@dataclass(frozen=True, slots=True)
class SnowflakeSettings:
    conn_id: str
    account: str
    user: str
    password: str
    private_key_path: str
    private_key_passphrase: str
    role: str
    warehouse: str
    database: str

    @property
    def env_var(self) -> str:
        """The environment variable Airflow reads this connection from."""
        return f"AIRFLOW_CONN_{self.conn_id.upper()}"

    def airflow_connection(self) -> dict[str, Any]:
        """The connection as Airflow's JSON connection format, in the provider's field names."""
        extra: dict[str, Any] = {"account": self.account, "database": self.database}
        if self.warehouse:
            extra["warehouse"] = self.warehouse
        if self.role:
            extra["role"] = self.role
        if self.private_key_path:
            extra["private_key_file"] = self.private_key_path
        connection: dict[str, Any] = {
            "conn_type": "snowflake",
            "login": self.user,
            "schema": "RAW",
            "extra": extra,
        }
        # with a key pair the provider takes the password field as the key's passphrase
        secret = self.private_key_passphrase if self.private_key_path else self.password
        if secret:
            connection["password"] = secret
        return connection


def load_snowflake_settings(environ: Mapping[str, str] | None = None) -> SnowflakeSettings:
    """SNOWFLAKE_* variables (environment, then .env), validated."""
    env = merged_environment(environ)

    def get(name: str, default: str = "") -> str:
        return env.get(name, default).strip()

    conn_id = get("SNOWFLAKE_CONN_ID", DEFAULT_CONN_ID)
    if not re.fullmatch(r"[A-Za-z0-9_]{1,250}", conn_id):
        raise ConfigError(
            f"SNOWFLAKE_CONN_ID={conn_id!r} must be an Airflow connection id of letters, digits "
            "and _ (it becomes the AIRFLOW_CONN_<ID> variable)"
        )
    database = get("SNOWFLAKE_DATABASE", "TICKHOUSE")
    if not _IDENTIFIER.fullmatch(database):
        raise ConfigError(
            f"SNOWFLAKE_DATABASE={database!r} must be an unquoted Snowflake identifier "
            "(letters, digits, _ and $, starting with a letter or _)"
        )
    settings = SnowflakeSettings(
        conn_id=conn_id,
        account=get("SNOWFLAKE_ACCOUNT"),
        user=get("SNOWFLAKE_USER"),
        password=get("SNOWFLAKE_PASSWORD"),
        private_key_path=get("SNOWFLAKE_PRIVATE_KEY_PATH"),
        private_key_passphrase=get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"),
        role=get("SNOWFLAKE_ROLE"),
        warehouse=get("SNOWFLAKE_WAREHOUSE"),
        database=database,
    )
    if settings.account and not settings.user:
        raise ConfigError("SNOWFLAKE_ACCOUNT is set but SNOWFLAKE_USER is not; set the login too")
    if settings.account and not (settings.password or settings.private_key_path):
        raise ConfigError(
            "SNOWFLAKE_ACCOUNT is set but neither SNOWFLAKE_PASSWORD nor "
            "SNOWFLAKE_PRIVATE_KEY_PATH is; set one of them"
        )
    return settings


def define_airflow_connection(
    settings: SnowflakeSettings, environ: dict[str, str] | None = None
) -> bool:
    """Define `AIRFLOW_CONN_<ID>` from SNOWFLAKE_* when SNOWFLAKE_ACCOUNT is set and it is not
    defined yet; returns whether it did. An explicit AIRFLOW_CONN_<ID> always wins."""
    env: Any = os.environ if environ is None else environ
    if not settings.account or env.get(settings.env_var):
        return False
    env[settings.env_var] = json.dumps(settings.airflow_connection())
    return True


def snowflake_hook(settings: SnowflakeSettings | None = None) -> Any:
    """The provider's SnowflakeHook for the drain's connection (see the module docstring)."""
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    settings = settings or load_snowflake_settings()
    define_airflow_connection(settings)
    return SnowflakeHook(
        snowflake_conn_id=settings.conn_id, database=settings.database, schema="RAW"
    )


def connect(settings: SnowflakeSettings | None = None) -> Any:
    """A snowflake.connector connection (autocommit on) from `snowflake_hook().get_conn()`."""
    return snowflake_hook(settings).get_conn()
