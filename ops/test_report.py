"""The report of a `make test` run made of several pytest passes (ops/suite.py): their junit files
merged into one, and the slowest tests of the whole run.

Each pass writes a junit file of its own; CI reads one. The merged file has one `<testsuite>` with
every test case of every pass, its counts the sums of the passes' and its time the passes' wall
time together. A test that ran in a loadgroup of pytest-xdist carries the group in its node id
(`test_x@airflow-dags`); the merged file names it as the test, without the group.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_COUNTS = ("tests", "errors", "failures", "skipped")
# the xdist_group suffix pytest-xdist appends to a node id under --dist loadgroup
_GROUP_SUFFIX = re.compile(r"@[\w.:-]+$")


@dataclass(frozen=True, slots=True)
class CaseTime:
    """One test of the run and its time (setup + call + teardown, as junit reports it)."""

    nodeid: str
    seconds: float
    outcome: str


def _outcome(case: ET.Element) -> str:
    for child in case:
        if child.tag in ("failure", "error"):
            return "failed" if child.tag == "failure" else "error"
        if child.tag == "skipped":
            return "skipped"
    return "passed"


def _suites(path: Path) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    return [root] if root.tag == "testsuite" else list(root.iter("testsuite"))


def merge_junit(parts: Sequence[Path], out: Path) -> None:
    """Write the test cases of every junit file in `parts` (those that exist) into `out`, as one
    suite named like pytest's own."""
    merged = ET.Element("testsuite", {"name": "pytest"})
    counts = dict.fromkeys(_COUNTS, 0)
    seconds = 0.0
    first: dict[str, str] = {}
    for part in parts:
        if not part.is_file():
            continue
        for suite in _suites(part):
            for key in _COUNTS:
                counts[key] += int(suite.get(key, "0"))
            seconds += float(suite.get("time", "0"))
            for key in ("timestamp", "hostname"):
                first.setdefault(key, suite.get(key, ""))
            for case in suite.iter("testcase"):
                name = case.get("name", "")
                case.set("name", _GROUP_SUFFIX.sub("", name))
                merged.append(case)
    merged.attrib.update({key: str(value) for key, value in counts.items()})
    merged.set("time", f"{seconds:.3f}")
    merged.attrib.update({key: value for key, value in first.items() if value})
    out.parent.mkdir(parents=True, exist_ok=True)
    root = ET.Element("testsuites", {"name": "pytest tests"})
    root.append(merged)
    ET.indent(root)
    ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)


def case_times(parts: Sequence[Path]) -> list[CaseTime]:
    """Every test case of the junit files in `parts` (those that exist), slowest first."""
    cases = []
    for part in parts:
        if not part.is_file():
            continue
        for suite in _suites(part):
            for case in suite.iter("testcase"):
                module = case.get("file") or case.get("classname", "").replace(".", "/")
                name = _GROUP_SUFFIX.sub("", case.get("name", ""))
                cases.append(CaseTime(f"{case.get('classname', module)}::{name}",
                                      float(case.get("time", "0")), _outcome(case)))
    return sorted(cases, key=lambda c: -c.seconds)


def slowest_lines(parts: Sequence[Path], count: int = 20) -> list[str]:
    """`count` lines naming the slowest tests of all passes, as pytest's --durations would."""
    return [f"{c.seconds:8.2f}s  {c.nodeid}" + ("" if c.outcome == "passed" else f"  ({c.outcome})")
            for c in case_times(parts)[:count]]


def suite_seconds(path: Path) -> float | None:
    """The time pytest reports for the run that wrote the junit file `path` (None without one)."""
    if not path.is_file():
        return None
    return sum(float(suite.get("time", "0")) for suite in _suites(path))
