"""The report of a `make test` run made of several pytest passes (ops/suite.py): their junit files
merged into one, the slowest tests of the whole run, and the seconds each test module took, which
the next runs' parallel pass orders its work by (`longest_first`).

Each pass writes a junit file of its own; CI reads one. The merged file has one `<testsuite>` with
every test case of every pass, its counts the sums of the passes' and its time the passes' wall
time together. A test that ran in a loadgroup of pytest-xdist carries the group in its node id
(`test_x@airflow-dags`); the merged file names it as the test, without the group.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tickhouse.config import PROJECT_ROOT

# the seconds each test module took in a recent `make test`'s parallel pass (`python -m
# ops.test_report module-seconds .local/test-stack/junit-parallel.xml` writes it)
MODULE_SECONDS = PROJECT_ROOT / "tests" / "module_seconds.json"

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


def _module_path(classname: str, root: Path) -> str:
    """The test file a junit `classname` names (`tests.x.test_y` or `tests.x.test_y.TestClass`)."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        path = "/".join(parts[:end]) + ".py"
        if (root / path).is_file():
            return path
    return "/".join(parts) + ".py"


def module_seconds(parts: Sequence[Path], root: Path = PROJECT_ROOT) -> dict[str, float]:
    """The seconds of each test module (its tests' setup + call + teardown) in the junit files
    `parts` (those that exist), keyed by its path from `root` as pytest's node ids name it."""
    seconds: dict[str, float] = {}
    for part in parts:
        if not part.is_file():
            continue
        for suite in _suites(part):
            for case in suite.iter("testcase"):
                module = _module_path(case.get("classname", ""), root)
                seconds[module] = seconds.get(module, 0.0) + float(case.get("time", "0"))
    return {module: round(value, 1) for module, value in sorted(seconds.items())}


def longest_first(units: Mapping[str, Iterable[str]], seconds: Mapping[str, float]) -> list[str]:
    """The work units (name -> the node ids of its tests) ordered longest first, each as long as
    the recorded seconds of the modules its tests are in. A module without a figure (new since the
    figures were recorded) counts as long as the mean of those recorded; ties keep their order."""
    known = [value for value in seconds.values() if value > 0]
    default = sum(known) / len(known) if known else 0.0

    def length(nodeids: Iterable[str]) -> float:
        modules = {nodeid.split("::", 1)[0] for nodeid in nodeids}
        return sum(seconds.get(module, default) for module in modules)

    lengths = {name: length(nodeids) for name, nodeids in units.items()}
    return sorted(units, key=lambda name: -lengths[name])


def read_module_seconds(path: Path = MODULE_SECONDS) -> dict[str, float]:
    """The recorded seconds per test module ({} without the file, or when it cannot be read)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def main(argv: Sequence[str]) -> int:
    """`python -m ops.test_report module-seconds JUNIT...`: record the module seconds of a `make
    test` run's parallel pass (`.local/test-stack/junit-parallel.xml`) in tests/module_seconds.json."""
    if len(argv) < 2 or argv[0] != "module-seconds":
        print("usage: python -m ops.test_report module-seconds JUNIT...", file=sys.stderr)
        return 2
    parts = [Path(a) for a in argv[1:]]
    seconds = module_seconds(parts)
    if not seconds:
        print(f"no test cases in {', '.join(map(str, parts))}", file=sys.stderr)
        return 1
    MODULE_SECONDS.write_text(json.dumps(seconds, indent=1) + "\n")
    print(f"{len(seconds)} modules, {sum(seconds.values()):.0f} s in all -> {MODULE_SECONDS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
