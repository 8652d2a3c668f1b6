"""The dbt CLI is a first-class interface: after setup, the documented commands work from a fresh
shell with no manual exports (dbt_project/README.md): `eval "$(tickhouse env --export)"`, then dbt."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tickhouse.config import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration


def test_dbt_runs_from_a_fresh_shell_after_eval_of_tickhouse_env(settings: Settings, tmp_path: Path) -> None:
    # a login-less, empty environment: only what a new terminal has, and where the stack keeps state
    fresh = {
        "HOME": os.environ.get("HOME", "/root"),
        "PATH": "/usr/bin:/bin",
        "TICKHOUSE_STATE_DIR": str(settings.state_dir),
        "DBT_TARGET_PATH": str(tmp_path / "target"),
        "DBT_LOG_PATH": str(tmp_path / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
    }
    if "TICKHOUSE_ENV_FILE" in os.environ:  # the test stack's env file stands in for the project's .env
        fresh["TICKHOUSE_ENV_FILE"] = os.environ["TICKHOUSE_ENV_FILE"]
    script = (
        'cd dbt_project && eval "$(../.venv/bin/tickhouse env --export)" '
        "&& ../.venv/bin/dbt debug --profiles-dir .. && ../.venv/bin/dbt parse --profiles-dir .."
    )
    completed = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script],
        cwd=PROJECT_ROOT,
        env=fresh,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert "Connection test: [OK connection ok]" in output
    assert "no password supplied" not in output


def test_tickhouse_env_without_export_stays_key_value_lines(settings: Settings) -> None:
    completed = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "tickhouse"), "env"],
        env={**os.environ, "TICKHOUSE_STATE_DIR": str(settings.state_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = completed.stdout.splitlines()
    assert lines and all("=" in line and not line.startswith("export ") for line in lines)
    assert any(line.startswith("DBT_PASSWORD=") for line in lines)
