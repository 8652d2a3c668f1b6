"""`make test`'s passes (ops/suite.py): which tests each pass selects, the run's exit status, and the
one junit file and slowest-tests list of the whole run, and the module seconds the parallel pass
starts its longest work by (ops/test_report.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ops.suite import NO_TESTS_COLLECTED, passes, run_status, split_pytest_args, workers_of
from ops.test_report import (
    case_times,
    longest_first,
    merge_junit,
    module_seconds,
    read_module_seconds,
    slowest_lines,
    suite_seconds,
)
from tickhouse.config import PROJECT_ROOT


def test_the_options_the_passes_set_are_taken_out_in_any_spelling() -> None:
    args = split_pytest_args(["tests/integration", "-q", "-m", "not e2e", "--junitxml=out.xml", "-n", "2"])
    assert (args.marks, args.junitxml, args.workers, args.rest) == (
        "not e2e", "out.xml", 2, ("tests/integration", "-q"))
    args = split_pytest_args(["-mslow", "--junit-xml", "j.xml", "--numprocesses=4", "-x", "-k", "drain"])
    assert (args.marks, args.junitxml, args.workers, args.rest) == ("slow", "j.xml", 4, ("-x", "-k", "drain"))
    assert args.exitfirst
    assert not split_pytest_args(["tests/unit"]).exitfirst


def test_the_passes_split_on_the_serial_marker_and_keep_the_selection(tmp_path: Path) -> None:
    parallel, serial = passes(split_pytest_args(["tests/reliability", "-m", "not e2e", "-q"]), 3, tmp_path)
    assert parallel.args == ["tests/reliability", "-q", "-m", "(not e2e) and not serial and not unit",
                             "-n", "3", "--dist", "loadgroup", "--no-loadscope-reorder"]
    assert serial.args == ["tests/reliability", "-q", "-m", "(not e2e) and serial"]
    # the unit tests run beside the serial ones, in a process of their own
    assert parallel.beside is None and serial.beside is not None
    assert serial.beside.args == ["tests/reliability", "-q", "-m", "(not e2e) and unit and not serial"]
    junits = {parallel.junit, serial.junit, serial.beside.junit}
    assert len(junits) == 3 and {junit.parent for junit in junits} == {tmp_path}
    parallel, serial = passes(split_pytest_args([]), 2, tmp_path)
    assert parallel.args == ["-m", "not serial and not unit", "-n", "2", "--dist", "loadgroup",
                             "--no-loadscope-reorder"]
    assert serial.args == ["-m", "serial"]
    # one worker: one pass of everything, one test at a time, as before the passes
    [single] = passes(split_pytest_args(["tests/unit", "-m", "unit"]), 1, tmp_path)
    assert single.args == ["tests/unit", "-m", "unit"] and single.beside is None


def test_workers_come_from_n_then_the_knob_then_the_default() -> None:
    assert workers_of(split_pytest_args(["-n", "2"]), {"TICKHOUSE_TEST_WORKERS": "4"}) == 2
    assert workers_of(split_pytest_args([]), {"TICKHOUSE_TEST_WORKERS": "4"}) == 4
    assert workers_of(split_pytest_args([]), {}) >= 1


@pytest.mark.parametrize(
    ("codes", "status"),
    [
        ([0, 0], 0),
        ([0, NO_TESTS_COLLECTED], 0),  # a selection without serial tests
        ([NO_TESTS_COLLECTED, 0], 0),
        ([1, 0], 1),  # either pass failing fails the run
        ([0, 1], 1),
        ([0, 2], 2),
        ([NO_TESTS_COLLECTED, NO_TESTS_COLLECTED], NO_TESTS_COLLECTED),
        ([NO_TESTS_COLLECTED, 1], 1),
    ],
)
def test_the_run_fails_when_either_pass_fails(codes: list[int], status: int) -> None:
    assert run_status(codes) == status


def _junit(path: Path, suite_attrs: dict[str, str], cases: list[tuple[str, str, float, str | None]]) -> Path:
    root = ET.Element("testsuites", {"name": "pytest tests"})
    suite = ET.SubElement(root, "testsuite", {"name": "pytest", **suite_attrs})
    for classname, name, seconds, outcome in cases:
        case = ET.SubElement(suite, "testcase", {"classname": classname, "name": name, "time": str(seconds)})
        if outcome:
            ET.SubElement(case, outcome, {"message": "boom"})
    ET.ElementTree(root).write(path)
    return path


def test_the_passes_junit_files_merge_into_one_suite_without_the_group_suffix(tmp_path: Path) -> None:
    parallel = _junit(tmp_path / "p.xml", {"tests": "3", "errors": "0", "failures": "1", "skipped": "1",
                                            "time": "100.5", "timestamp": "2026-12-07T07:00:00"},
                      [("tests.e2e.test_demo", "test_demo@airflow-ingest_market_data", 90.0, None),
                       ("tests.unit.test_x", "test_a[1@2]", 0.5, "failure"),
                       ("tests.unit.test_x", "test_b", 0.1, "skipped")])
    serial = _junit(tmp_path / "s.xml", {"tests": "1", "errors": "1", "failures": "0", "skipped": "0",
                                          "time": "200"},
                    [("tests.reliability.test_kafka_cluster", "test_rolling_restart", 114.0, "error")])
    out = tmp_path / "artifacts" / "junit.xml"
    merge_junit([parallel, tmp_path / "missing.xml", serial], out)
    [suite] = ET.parse(out).getroot().iter("testsuite")
    assert {k: suite.get(k) for k in ("tests", "errors", "failures", "skipped", "time")} == {
        "tests": "4", "errors": "1", "failures": "1", "skipped": "1", "time": "300.500"}
    assert suite.get("timestamp") == "2026-12-07T07:00:00"
    assert [c.get("name") for c in suite.iter("testcase")] == [
        "test_demo", "test_a[1@2]", "test_b", "test_rolling_restart"]

    times = case_times([parallel, serial])
    assert [(c.nodeid, c.seconds, c.outcome) for c in times] == [
        ("tests.reliability.test_kafka_cluster::test_rolling_restart", 114.0, "error"),
        ("tests.e2e.test_demo::test_demo", 90.0, "passed"),
        ("tests.unit.test_x::test_a[1@2]", 0.5, "failed"),
        ("tests.unit.test_x::test_b", 0.1, "skipped"),
    ]
    assert slowest_lines([parallel, serial], 2) == [
        "  114.00s  tests.reliability.test_kafka_cluster::test_rolling_restart  (error)",
        "   90.00s  tests.e2e.test_demo::test_demo",
    ]
    # the time of a pass that ran in the background is the one pytest wrote
    assert suite_seconds(parallel) == 100.5 and suite_seconds(tmp_path / "missing.xml") is None


def test_module_seconds_add_up_each_modules_tests_under_its_path(tmp_path: Path) -> None:
    (tmp_path / "tests" / "e2e").mkdir(parents=True)
    (tmp_path / "tests" / "e2e" / "test_demo.py").touch()
    (tmp_path / "tests" / "test_y.py").touch()
    parallel = _junit(tmp_path / "p.xml", {"tests": "4", "time": "1"},
                      [("tests.e2e.test_demo", "test_demo@airflow-ingest_market_data", 90.0, None),
                       ("tests.e2e.test_demo", "test_other", 1.5, "failure"),
                       # a test in a class: its classname names the class too
                       ("tests.test_y.TestThing", "test_a", 2.0, None),
                       ("tests.test_y", "test_b", 0.25, None)])
    assert module_seconds([parallel, tmp_path / "missing.xml"], tmp_path) == {
        "tests/e2e/test_demo.py": 91.5, "tests/test_y.py": 2.2}


def test_the_longest_units_go_first_and_an_unrecorded_module_counts_as_the_mean() -> None:
    units = {
        "tests/a.py": ["tests/a.py::t1", "tests/a.py::t2"],
        "tests/b.py": ["tests/b.py::t1"],
        # a group: as long as its modules together
        "airflow-dags": ["tests/c.py::t1@airflow-dags", "tests/d.py::t1@airflow-dags"],
        "tests/new.py": ["tests/new.py::t1"],
        "tests/e.py": ["tests/e.py::t1"],
    }
    seconds = {"tests/a.py": 10.0, "tests/b.py": 100.0, "tests/c.py": 30.0, "tests/d.py": 50.0,
               "tests/e.py": 10.0}
    # the mean of the recorded modules is 40 s
    assert longest_first(units, seconds) == ["tests/b.py", "airflow-dags", "tests/new.py", "tests/a.py",
                                             "tests/e.py"]
    # no figures at all: the order stays as collected
    assert longest_first(units, {}) == list(units)


def test_recorded_module_seconds_are_read_leniently(tmp_path: Path) -> None:
    path = tmp_path / "module_seconds.json"
    assert read_module_seconds(path) == {}
    path.write_text("not json")
    assert read_module_seconds(path) == {}
    path.write_text('{"tests/a.py": 12.5, "tests/b.py": "x"}')
    assert read_module_seconds(path) == {"tests/a.py": 12.5}


GROUPED_MODULE = """
import os, pytest

pytestmark = pytest.mark.xdist_group("one-dag")


def test_it():
    with open(os.environ["WORKERS_FILE"], "a") as out:
        out.write(f"{__name__} {os.environ['PYTEST_XDIST_WORKER']}\\n")
"""


def test_the_tests_of_an_xdist_group_share_one_worker(tmp_path: Path) -> None:
    """The parallel pass's scheduler (tests/conftest.py) keeps an xdist_group on one worker: the
    tests that drive the same Airflow DAG must not run at once. pytest-xdist 3.8 marks a group in
    the node ids, which pytest 9.2 no longer lets it change (pytest-dev/pytest-xdist#1386): with
    that pair the two modules below ran on two workers, side by side."""
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_xdist_make_scheduler  # noqa: F401\n")
    for name in ("test_first_of_the_group", "test_second_of_the_group"):
        (tmp_path / f"{name}.py").write_text(GROUPED_MODULE)
    workers_file = tmp_path / "workers.txt"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
         "--no-loadscope-reorder", "-o", "addopts=", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "WORKERS_FILE": str(workers_file)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ran = dict(line.split() for line in workers_file.read_text().splitlines())
    assert set(ran) == {"test_first_of_the_group", "test_second_of_the_group"}
    assert len(set(ran.values())) == 1, f"one group on two workers: {ran}"
