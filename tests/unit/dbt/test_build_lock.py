"""transform_marts' build takes the one-build-at-a-time lock in the hot models' own transactions:
the `build_lock` pre-hook of every intermediate model, given the lock's key and the hot models in
dbt's environment by `transform.hot.build_lock_environment`. Here: that the hook reaches every
hot model and names the same lock the hot runs hold; tests/integration/dbt/test_hot_transform.py
shows it work."""

from __future__ import annotations

import pytest
import yaml

from tickhouse.config import PROJECT_ROOT
from transform.dbt_runner import BUILD_LOCK_KEY
from transform.hot import HOT_MODELS, build_lock_environment

pytestmark = pytest.mark.unit

DBT = PROJECT_ROOT / "dbt_project"


def test_the_environment_names_the_hot_runs_lock_and_every_hot_model() -> None:
    environment = build_lock_environment()
    assert int(environment["TICKHOUSE_BUILD_LOCK_KEY"]) == BUILD_LOCK_KEY
    assert environment["TICKHOUSE_BUILD_LOCK_MODELS"].split(",") == list(HOT_MODELS)
    # a PostgreSQL bigint, as pg_advisory_xact_lock takes it
    assert -(2**63) <= BUILD_LOCK_KEY < 2**63


def test_every_hot_model_gets_the_pre_hook() -> None:
    project = yaml.safe_load((DBT / "dbt_project.yml").read_text())
    intermediate = project["models"]["tickhouse"]["intermediate"]
    assert "{{ tickhouse.build_lock() }}" in intermediate["+pre-hook"]
    for name in HOT_MODELS:
        assert (DBT / "models" / "intermediate" / f"{name}.sql").is_file(), name
