"""The dbt var `bench_every_trade_regular` is a bench aid: false in the project, set by nothing
but the bench that measures the trade-condition lookup against it (it would count odd lots and
average-price prints in the bars' prices). The models' rules under the default are tested in
tests/integration/dbt/test_trade_conditions.py."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tickhouse.config import PROJECT_ROOT

pytestmark = pytest.mark.unit

VAR = "bench_every_trade_regular"


def test_the_bench_var_is_off_in_the_project() -> None:
    project = yaml.safe_load((PROJECT_ROOT / "dbt_project" / "dbt_project.yml").read_text())
    assert project["vars"][VAR] is False


def test_only_the_bench_sets_the_var() -> None:
    tracked = subprocess.run(
        ["git", "grep", "-l", VAR], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    # where it is declared, read, documented and measured; nothing that runs a warehouse
    allowed = {
        "dbt_project/dbt_project.yml",
        "dbt_project/README.md",
        "dbt_project/models/intermediate/int_trades_aggregated_to_minute_bars.sql",
        "bench/bench_trade_conditions.py",
        "bench/README.md",
        "docs/performance.md",
        "tests/unit/dbt/test_bench_vars.py",
    }
    assert set(tracked) <= allowed, f"{VAR} appears outside the bench: {sorted(set(tracked) - allowed)}"
    assert "bench/bench_trade_conditions.py" in tracked
