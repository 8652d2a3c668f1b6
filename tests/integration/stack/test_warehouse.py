"""The local PostgreSQL is real and its roles hold: loader writes raw, dbt reads raw and owns the
model schemas, bi_reader reads marts and nothing else."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from tickhouse.config import Settings
from tickhouse.raw_tables import COLUMNS, KINDS, table
from tickhouse.warehouse import connect


@pytest.fixture
def raw_and_mart_tables(settings: Settings):
    name = f"t_{uuid.uuid4().hex[:10]}"
    with connect(settings, "loader") as conn:
        conn.execute(f"create table raw.{name} (id int primary key, note text)")
        conn.execute(f"insert into raw.{name} values (1, 'from the loader')")
    with connect(settings, "dbt") as conn:
        conn.execute(f"create table marts.{name} as select id, note from raw.{name}")
    yield name
    with connect(settings, "dbt") as conn:
        conn.execute(f"drop table if exists marts.{name}")
    with connect(settings, "loader") as conn:
        conn.execute(f"drop table if exists raw.{name}")


def test_roles_read_and_write_where_they_should(settings: Settings, raw_and_mart_tables: str) -> None:
    name = raw_and_mart_tables
    with connect(settings, "dbt") as conn:
        assert conn.execute(f"select note from raw.{name}").fetchone() == ("from the loader",)
    with connect(settings, "bi_reader") as conn:
        assert conn.execute(f"select id, note from marts.{name}").fetchall() == [(1, "from the loader")]


@pytest.mark.parametrize(
    "statement",
    [
        "select * from raw.{name}",
        "select * from raw.trades",
        "insert into marts.{name} values (2, 'x')",
        "create table marts.bi_made (id int)",
        "create table public.bi_made (id int)",
        "select * from staging.nothing_here",
    ],
)
def test_bi_reader_is_refused_outside_reading_marts(
    settings: Settings, raw_and_mart_tables: str, statement: str
) -> None:
    with psycopg.connect(settings.conninfo("bi_reader"), autocommit=True) as conn:
        # bi_reader's sessions are read-only by default (migration 010), but any session may switch
        # that off: the privileges must refuse on their own
        conn.execute("set default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement.format(name=raw_and_mart_tables))


def test_bi_reader_sessions_are_read_only_by_default(settings: Settings) -> None:
    with psycopg.connect(settings.conninfo("bi_reader"), autocommit=True) as conn:
        assert conn.execute("show default_transaction_read_only").fetchone() == ("on",)
        assert conn.execute("show search_path").fetchone()[0].startswith("marts")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("create temporary table scratch (id int)")


def test_loader_cannot_touch_marts(settings: Settings, raw_and_mart_tables: str) -> None:
    with connect(settings, "loader") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"delete from marts.{raw_and_mart_tables}")


def test_migrations_recorded_and_raw_tables_present(settings: Settings) -> None:
    with connect(settings, "owner") as conn:
        names = [r[0] for r in conn.execute("select name from public.schema_migrations order by 1")]
        tables = {
            r[0]
            for r in conn.execute(
                "select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = 'raw' and c.relkind in ('r', 'p')"
            )
        }
    assert names[:2] == ["001_schemas_and_grants.sql", "002_raw_tables.sql"]
    assert {"trades", "quotes", "alerts", "quarantine", "kafka_offsets"} <= tables


def test_services_listen_on_loopback_only(settings: Settings) -> None:
    with connect(settings, "owner") as conn:
        assert conn.execute("show listen_addresses").fetchone() == ("127.0.0.1",)


@pytest.mark.parametrize("role", ["bi_reader", "loader", "dbt"])
def test_only_airflow_may_connect_to_airflows_database(settings: Settings, role: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        connect(settings, role, dbname=settings.airflow_db).close()
    connect(settings, "airflow").close()


@pytest.mark.parametrize("kind", [*KINDS, "quarantine"])
def test_the_migrations_give_each_raw_table_the_columns_a_load_writes(
    settings: Settings, kind: str
) -> None:
    """tickhouse.raw_tables is the one shape of the raw tables in code; the migrations agree."""
    schema, name = table(kind).split(".")
    with connect(settings, "owner") as conn:
        columns = {
            row[0]
            for row in conn.execute(
                "select column_name from information_schema.columns"
                " where table_schema = %s and table_name = %s",
                (schema, name),
            )
        }
    assert columns == {*COLUMNS[kind], "loaded_at"}
