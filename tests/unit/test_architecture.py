"""The import rule of ARCHITECTURE.md holds: import-linter's contracts (pyproject.toml) are kept.

Layers: ops on top, the services (producer, drain, alerts, dashboard, exporter, transform) in the
middle, independent of each other, the core library (tickhouse) at the bottom; no import circle
between the modules of a package."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tickhouse.config import PROJECT_ROOT

pytestmark = pytest.mark.unit

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_the_import_contracts_are_kept() -> None:
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    contracts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert f"{len(contracts['contracts'])} kept, 0 broken" in done.stdout


def test_every_package_of_ours_is_under_the_rule() -> None:
    """A new top-level package must be given a layer, or the contracts would not see it."""
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    checked = set(config["tool"]["importlinter"]["root_packages"])
    installed = set(config["tool"]["setuptools"]["packages"]["find"]["include"])
    assert {name.rstrip("*") for name in installed} == checked
    on_disk = {p.parent.name for p in PROJECT_ROOT.glob("*/__init__.py")} - {"tests"}
    assert on_disk == checked
