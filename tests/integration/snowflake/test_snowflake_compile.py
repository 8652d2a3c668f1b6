"""Every model and data test of the dbt project, compiled for the `snowflake` target and parsed
with sqlglot's Snowflake dialect, so that SQL Snowflake cannot parse fails here, not in a
user's warehouse.

dbt compiles in-process against fakesnow (an empty account; models read the warehouse while
compiling: watermarks, `is_incremental()`). It compiles twice: once on the empty account (the
full-refresh branch of every incremental model) and once with each incremental model's table
present and empty (their incremental branch). Data tests are compiled with `test_all_rows`,
which skips their read of the tested model's newest row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError

pytestmark = pytest.mark.integration

# fakesnow cannot create a JavaScript function or grant; compiling needs neither
NOP_REGEXES = [r"create or replace function .*ta_indicators", r"\s*grant ", r"\s*revoke "]
COMPILED_TYPES = ("model", "test", "analysis", "snapshot")


class SnowflakeSyntaxError(AssertionError):
    """Compiled SQL that sqlglot's Snowflake dialect cannot parse."""


def parse_snowflake(sql: str) -> list[exp.Expr]:
    """sqlglot's Snowflake parse of `sql`; raises on a syntax error and on a statement sqlglot
    could only keep as an unparsed command."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="snowflake", error_level=ErrorLevel.RAISE) if s]
    except ParseError as error:
        raise SnowflakeSyntaxError(str(error)) from error
    for statement in statements:
        if isinstance(statement, exp.Command):
            raise SnowflakeSyntaxError(f"not parsed, kept as a command: {statement.sql()[:200]}")
    return statements


@dataclass(frozen=True, slots=True)
class Compiled:
    nodes: dict[str, dict[str, Any]]  # unique_id -> manifest node


def compile_project(work: Path, name: str) -> Compiled:
    from dbt.cli.main import dbtRunner

    from transform.dbt_runner import DBT_PROJECT_DIR, PROFILES_DIR

    target = work / name
    result = dbtRunner().invoke([
        "compile", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(PROFILES_DIR),
        "--target", "snowflake", "--target-path", str(target), "--log-path", str(work / "logs"),
        "--vars", json.dumps({"test_all_rows": True}), "--quiet",
    ])
    assert result.success, result.exception
    manifest = json.loads((target / "manifest.json").read_text())
    nodes = {uid: node for uid, node in manifest["nodes"].items()
             if node["resource_type"] in COMPILED_TYPES and node.get("compiled")}
    return Compiled(nodes)


def create_empty_tables(nodes: dict[str, dict[str, Any]]) -> list[str]:
    """An empty table, with its documented columns, for every incremental model."""
    import snowflake.connector

    created = []
    conn = snowflake.connector.connect(database="TICKHOUSE")
    try:
        cur = conn.cursor()
        for node in nodes.values():
            if node["resource_type"] != "model" or node["config"]["materialized"] != "incremental":
                continue
            columns = ", ".join(
                f"{column} {'timestamp_tz' if column.endswith(('_at', '_start', '_ts')) else 'varchar'}"
                for column in node["columns"]
            )
            assert columns, f"{node['name']} documents no columns"
            cur.execute(f"create schema if not exists {node['database']}.{node['schema']}")
            cur.execute(f"create table {node['relation_name']} ({columns})")
            created.append(node["name"])
    finally:
        conn.close()
    return created


@dataclass(frozen=True, slots=True)
class Compilations:
    fresh: Compiled
    incremental: Compiled


@pytest.fixture(scope="module")
def compilations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compilations]:
    import fakesnow

    work = tmp_path_factory.mktemp("dbt-snowflake-compile")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "DBT_TARGET": "snowflake", "SNOWFLAKE_ACCOUNT": "fakesnow", "SNOWFLAKE_USER": "dbt",
            "SNOWFLAKE_PASSWORD": "unused", "SNOWFLAKE_DATABASE": "TICKHOUSE",
            "SNOWFLAKE_SCHEMA": "MARTS", "SNOWFLAKE_WAREHOUSE": "TRANSFORM_WH",
            "SNOWFLAKE_ROLE": "DBT", "BI_READER_USER": "bi_reader", "DBT_THREADS": "1",
        }.items():
            env.setenv(name, value)
        with fakesnow.patch(nop_regexes=NOP_REGEXES):
            fresh = compile_project(work, "fresh")
            assert create_empty_tables(fresh.nodes)
            incremental = compile_project(work, "incremental")
            yield Compilations(fresh, incremental)


@pytest.mark.parametrize("run", ["fresh", "incremental"])
def test_every_compiled_node_parses_as_snowflake_sql(compilations: Compilations, run: str) -> None:
    compiled: Compiled = getattr(compilations, run)
    kinds = {node["resource_type"] for node in compiled.nodes.values()}
    assert {"model", "test"} <= kinds
    errors = {}
    for uid, node in sorted(compiled.nodes.items()):
        try:
            assert parse_snowflake(node["compiled_code"]), "no statement"
        except (SnowflakeSyntaxError, AssertionError) as error:
            errors[uid] = str(error).splitlines()[0]
    assert errors == {}


def test_both_branches_of_the_incremental_models_were_compiled(compilations: Compilations) -> None:
    fresh = compilations.fresh.nodes["model.tickhouse.int_technicals"]["compiled_code"]
    incremental = compilations.incremental.nodes["model.tickhouse.int_technicals"]["compiled_code"]

    assert "changed_series" not in fresh
    assert "changed_series" in incremental
    # the Snowflake macros, not the PostgreSQL ones
    assert "table(intermediate.ta_indicators(" in " ".join(incremental.split())
    assert "qualify row_number()" in incremental


@pytest.mark.parametrize("sql", [
    "select symbol from marts.fct_bars where symbol ~ '^A'",  # PostgreSQL's regex operator
    "select symbol from marts.fct_bars group by 1 having",
    "select * from marts.fct_bars where",
])
def test_sql_snowflake_cannot_parse_is_rejected(sql: str) -> None:
    with pytest.raises(SnowflakeSyntaxError):
        parse_snowflake(sql)
