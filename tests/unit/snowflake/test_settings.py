"""The WAREHOUSE switch, the SNOWFLAKE_* settings, and how they reach the drain and dbt (pure)."""

from __future__ import annotations

import json

import pytest

from drain.options import DrainOptions, load_options
from tickhouse.config import ConfigError, load_settings
from tickhouse.snowflake.settings import (
    define_airflow_connection,
    load_snowflake_settings,
    selected_warehouse,
)
from transform.dbt_runner import dbt_environment

pytestmark = pytest.mark.unit


def test_warehouse_defaults_to_postgres_and_accepts_snowflake() -> None:
    assert selected_warehouse({}) == "postgres"
    assert selected_warehouse({"WAREHOUSE": " Snowflake "}) == "snowflake"
    assert selected_warehouse({"WAREHOUSE": "postgres"}) == "postgres"


def test_unknown_warehouse_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"WAREHOUSE='bigquery'.*postgres, snowflake"):
        selected_warehouse({"WAREHOUSE": "bigquery"})
    with pytest.raises(ConfigError, match="WAREHOUSE"):
        DrainOptions(topics={"t": "trades"}, warehouse="oracle")


def test_drain_options_take_the_warehouse() -> None:
    settings = load_settings({})
    assert load_options(settings, {}).warehouse == "postgres"
    assert load_options(settings, {"WAREHOUSE": "snowflake"}).warehouse == "snowflake"


def test_dbt_target_follows_warehouse_unless_set() -> None:
    settings = load_settings({})
    assert "DBT_TARGET" not in dbt_environment(settings, {})  # profiles.yml's default: postgres
    env = dbt_environment(
        settings, {"WAREHOUSE": "snowflake", "SNOWFLAKE_ACCOUNT": "org-acct", "SNOWFLAKE_USER": "u"}
    )
    assert env["DBT_TARGET"] == "snowflake"
    assert env["SNOWFLAKE_ACCOUNT"] == "org-acct" and env["SNOWFLAKE_USER"] == "u"
    explicit = dbt_environment(settings, {"WAREHOUSE": "postgres", "DBT_TARGET": "snowflake"})
    assert explicit["DBT_TARGET"] == "snowflake"
    assert "DBT_TARGET" not in dbt_environment(
        settings, {"WAREHOUSE": "snowflake", "DBT_TARGET": "postgres"})
    with pytest.raises(ConfigError, match="WAREHOUSE"):
        dbt_environment(settings, {"WAREHOUSE": "duckdb"})


def test_connection_from_snowflake_variables_password() -> None:
    env = {
        "SNOWFLAKE_ACCOUNT": "org-acct", "SNOWFLAKE_USER": "loader", "SNOWFLAKE_PASSWORD": "pw",
        "SNOWFLAKE_ROLE": "LOADER", "SNOWFLAKE_WAREHOUSE": "LOAD_WH",
    }
    sf = load_snowflake_settings(env)
    target: dict[str, str] = {}
    assert define_airflow_connection(sf, target)
    conn = json.loads(target["AIRFLOW_CONN_TICKHOUSE_SNOWFLAKE"])
    assert conn == {
        "conn_type": "snowflake", "login": "loader", "password": "pw", "schema": "RAW",
        "extra": {"account": "org-acct", "database": "TICKHOUSE", "warehouse": "LOAD_WH",
                  "role": "LOADER"},
    }


def test_connection_with_key_pair_uses_the_passphrase_as_password() -> None:
    sf = load_snowflake_settings({
        "SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u",
        "SNOWFLAKE_PRIVATE_KEY_PATH": "/keys/rsa.p8", "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "pp",
        "SNOWFLAKE_CONN_ID": "my_snow", "SNOWFLAKE_DATABASE": "MARKET",
    })
    conn = sf.airflow_connection()
    assert conn["extra"]["private_key_file"] == "/keys/rsa.p8"
    assert conn["password"] == "pp"
    assert conn["extra"]["database"] == "MARKET"
    assert sf.env_var == "AIRFLOW_CONN_MY_SNOW"


def test_an_explicit_airflow_connection_wins_and_none_is_built_without_account() -> None:
    sf = load_snowflake_settings({"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u",
                                  "SNOWFLAKE_PASSWORD": "p"})
    target = {"AIRFLOW_CONN_TICKHOUSE_SNOWFLAKE": "snowflake://x"}
    assert not define_airflow_connection(sf, target)
    assert target["AIRFLOW_CONN_TICKHOUSE_SNOWFLAKE"] == "snowflake://x"
    empty: dict[str, str] = {}
    assert not define_airflow_connection(load_snowflake_settings({}), empty)
    assert empty == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SNOWFLAKE_ACCOUNT": "a"}, "SNOWFLAKE_USER"),
        ({"SNOWFLAKE_ACCOUNT": "a", "SNOWFLAKE_USER": "u"}, "SNOWFLAKE_PASSWORD"),
        ({"SNOWFLAKE_DATABASE": "my-db"}, "SNOWFLAKE_DATABASE"),
        ({"SNOWFLAKE_CONN_ID": "a b"}, "SNOWFLAKE_CONN_ID"),
    ],
)
def test_bad_snowflake_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_snowflake_settings(env)


def test_drain_cli_refuses_an_unknown_warehouse(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from drain.cli import main

    monkeypatch.setenv("WAREHOUSE", "redshift")
    assert main(["--once"]) == 2
    assert "WAREHOUSE='redshift'" in capsys.readouterr().err
