"""transform.dbt_runner without a database: how dbt is pointed at the project and profile."""

from __future__ import annotations

import os

import pytest

from tickhouse.config import load_settings
from transform import cli
from transform import dbt_runner as transform

pytestmark = pytest.mark.unit


def test_dbt_environment_comes_from_the_settings() -> None:
    settings = load_settings(
        {
            "POSTGRES_HOST": "db.example",
            "POSTGRES_PORT": "6543",
            "POSTGRES_DB": "warehouse",
            "DBT_USER": "transformer",
            "DBT_PASSWORD": "s3cret",
            "BI_READER_USER": "analyst",
            "TICKHOUSE_STATE_DIR": "/nonexistent",
        }
    )
    assert transform.dbt_environment(settings) == {
        "POSTGRES_HOST": "db.example",
        "POSTGRES_PORT": "6543",
        "POSTGRES_DB": "warehouse",
        "DBT_USER": "transformer",
        "DBT_PASSWORD": "s3cret",
        "BI_READER_USER": "analyst",
        # dbt's connections wait DBT_LOCK_TIMEOUT_SECONDS (10) at most for a lock
        "PGOPTIONS": "-c lock_timeout=10000",
    }


def test_environment_is_restored_after_dbt_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_DB", "before")
    monkeypatch.delenv("DBT_PASSWORD", raising=False)
    with transform._environment({"POSTGRES_DB": "during", "DBT_PASSWORD": "x"}):
        assert os.environ["POSTGRES_DB"] == "during"
        assert os.environ["DBT_PASSWORD"] == "x"
    assert os.environ["POSTGRES_DB"] == "before"
    assert "DBT_PASSWORD" not in os.environ


def test_paths_point_at_the_project_and_the_root_profile() -> None:
    assert (transform.DBT_PROJECT_DIR / "dbt_project.yml").is_file()
    assert (transform.PROFILES_DIR / "profiles.yml").is_file()
    assert transform.MANIFEST_PATH == transform.DBT_PROJECT_DIR / "target" / "manifest.json"


def test_main_help_does_not_run_dbt(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "dbt build" in capsys.readouterr().out


def test_main_reports_a_failed_build(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing_build(extra_args: list[str], settings: object = None) -> None:
        raise transform.TransformError(f"fct_bars: error (args {extra_args})")

    monkeypatch.setattr(cli, "build", failing_build)
    assert cli.main(["--full-refresh"]) == 1
    assert "fct_bars: error (args ['--full-refresh'])" in capsys.readouterr().err
