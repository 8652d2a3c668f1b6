"""The manifest the dbt tests' runs start from (`manifest_for`: one parse per test process, the
database put in afterwards) is the manifest `dbt parse` gives for the test's database."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.integration.dbt import parsed_project
from tests.integration.dbt.parsed_project import PLACEHOLDER_DATABASE, manifest_for
from tickhouse.config import Settings
from transform.dbt_runner import failure_summary, run_dbt

pytestmark = pytest.mark.integration

# what differs between two parses of the same project whatever the database: when and by which
# invocation they ran
PARSE_TIMES = {"created_at", "invocation_id", "invocation_started_at", "generated_at", "run_started_at"}


def _comparable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items() if key not in PARSE_TIMES}
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    return value


def test_the_manifest_for_a_database_is_what_dbt_parse_gives_for_it(
    settings: Settings, tmp_path: Path
) -> None:
    # a name of another length than the placeholder's (nothing parsed may keep its offsets)
    warehouse = dataclasses.replace(settings, postgres_db=f"{settings.postgres_db}_parsed_x")
    parsed = run_dbt(["--quiet", "parse", "--target-path", str(tmp_path)], warehouse)
    assert parsed.success, failure_summary(parsed)
    expected = _comparable(parsed.result.writable_manifest().to_dict())
    manifest = manifest_for(warehouse)
    got = _comparable(manifest.writable_manifest().to_dict())

    assert got == expected
    assert PLACEHOLDER_DATABASE not in repr(got)
    # the fields that name the database were rewritten, not left alike by chance
    relation = manifest.nodes["model.tickhouse.fct_bars"].relation_name
    assert relation == f'"{warehouse.postgres_db}"."marts"."fct_bars"', relation
    # each call is a copy of its own (a run compiles into its manifest)
    assert manifest_for(warehouse) is not manifest


def test_the_project_is_parsed_once_per_process_and_environment(settings: Settings) -> None:
    """Every later call reuses the parse, also when the project read a variable that is not set
    (dbt records those by a placeholder: compared with the unset variable, every call parsed again)."""
    first = manifest_for(settings)
    parses = parsed_project.parses
    assert parses >= 1
    from dbt.constants import DEFAULT_ENV_PLACEHOLDER

    # the project reads at least one variable it finds unset (as DBT_DEFAULT_PLACEHOLDER); read
    # from the parse that serves now (an earlier test may have parsed with the variable set)
    read = parsed_project.variables_read(settings)
    assert DEFAULT_ENV_PLACEHOLDER in read.values(), read
    for database in ("parsed_once_a", "parsed_once_b"):
        other = manifest_for(dataclasses.replace(settings, postgres_db=database))
        assert other.nodes["model.tickhouse.fct_bars"].database == database
    assert manifest_for(settings) is not first
    assert parsed_project.parses == parses
