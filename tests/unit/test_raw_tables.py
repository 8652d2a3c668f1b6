"""The raw tables have one shape in code (tickhouse.raw_tables), and Snowflake's DDL agrees with it
(PostgreSQL's migrations: tests/integration/stack/test_warehouse.py)."""

from __future__ import annotations

import re

import pytest

from tickhouse.raw_tables import COLUMNS, KINDS, table
from tickhouse.snowflake.schema import ddl_statements

pytestmark = pytest.mark.unit


def snowflake_columns() -> dict[str, set[str]]:
    """raw table -> the columns its CREATE TABLE and later ADD COLUMNs give it."""
    columns: dict[str, set[str]] = {}
    for statement in ddl_statements():
        created = re.match(r"create table if not exists (raw\.\w+) \((.*)\)$", statement, re.S)
        added = re.match(r"alter table (raw\.\w+) add column if not exists (\w+)", statement)
        if created:
            body = [line.strip() for line in re.split(r",\s*\n", created.group(2))]
            columns[created.group(1)] = {line.split()[0] for line in body if line}
        elif added:
            columns[added.group(1)].add(added.group(2))
    return columns


@pytest.mark.parametrize("kind", [*KINDS, "quarantine"])
def test_snowflake_ddl_has_the_columns_a_load_writes(kind: str) -> None:
    assert snowflake_columns()[table(kind)] == {*COLUMNS[kind], "loaded_at"}
