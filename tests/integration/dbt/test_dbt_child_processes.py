"""dbt run in-process (`transform.dbt_runner.run_dbt`) leaves no password in a child process.

dbt's adapters use locks of multiprocessing's spawn context, whose first use starts Python's
resource tracker: a child process that keeps the environment it was started with for the rest of
its parent's life. `run_dbt` puts DBT_PASSWORD into the environment while dbt runs, so a tracker
started then held it (found by test_each_process_holds_only_its_own_role in a drain task)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tickhouse.config import PROJECT_ROOT, Settings

pytestmark = pytest.mark.integration

CHILDREN_AFTER_DBT = r"""
import json, os, sys
from transform.dbt_runner import run_dbt
result = run_dbt(["--quiet", "parse", "--target-path", sys.argv[1]])
assert result.success, result.exception
children = {}
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        with open(f"/proc/{entry}/stat") as f:
            parent = int(f.read().rsplit(")", 1)[1].split()[1])
        if parent == os.getpid():
            with open(f"/proc/{entry}/environ", "rb") as f:
                children[entry] = f.read().decode(errors="replace")
    except OSError:
        continue
print(json.dumps(children))
"""


def test_no_child_of_a_dbt_run_holds_the_dbt_password(settings: Settings, tmp_path: Path) -> None:
    assert len(settings.dbt_password) >= 8
    out = subprocess.run(
        [sys.executable, "-c", CHILDREN_AFTER_DBT, str(tmp_path / "target")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    children: dict[str, str] = json.loads(out.stdout.strip().splitlines()[-1])
    assert children, "dbt started no child process: nothing was checked"
    holding = [pid for pid, environ in children.items() if settings.dbt_password in environ]
    assert not holding, f"child processes {holding} hold the dbt password in their environment"
