"""`make test`'s passes (ops/suite.py): which tests each pass selects, the run's exit status, and the
one junit file and slowest-tests list of the whole run (ops/test_report.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ops.suite import (
    NO_TESTS_COLLECTED,
    plan,
    run_environment,
    run_status,
    serial_stack_environment,
    split_pytest_args,
    workers_of,
)
from ops.test_report import case_times, merge_junit, slowest_lines, suite_seconds


def test_the_options_the_passes_set_are_taken_out_in_any_spelling() -> None:
    args = split_pytest_args(["tests/integration", "-q", "-m", "not e2e", "--junitxml=out.xml", "-n", "2"])
    assert (args.marks, args.junitxml, args.workers, args.rest) == (
        "not e2e", "out.xml", 2, ("tests/integration", "-q"))
    args = split_pytest_args(["-mslow", "--junit-xml", "j.xml", "--numprocesses=4", "-x", "-k", "drain"])
    assert (args.marks, args.junitxml, args.workers, args.rest) == ("slow", "j.xml", 4, ("-x", "-k", "drain"))
    assert args.exitfirst
    assert not split_pytest_args(["tests/unit"]).exitfirst


def test_the_passes_split_on_the_markers_and_keep_the_selection(tmp_path: Path) -> None:
    run = plan(split_pytest_args(["tests/reliability", "-m", "not e2e", "-q"]), 3, tmp_path)
    parallel, timed = run.passes
    assert parallel.args == ["tests/reliability", "-q", "-m",
                             "(not e2e) and not serial and not timed and not unit",
                             "-n", "3", "--dist", "loadgroup", "--no-loadscope-reorder"]
    # the timed tests come last, once the parallel tests and those beside them have ended
    assert timed.args == ["tests/reliability", "-q", "-m", "(not e2e) and timed"]
    # beside the parallel tests: the serial ones by a suite on a stack of its own, the unit tests
    serial, unit = run.beside
    assert serial.own_stack and not unit.own_stack and not parallel.own_stack
    assert serial.args == ["tests/reliability", "-q", "-m", "(not e2e) and serial and not timed"]
    assert unit.args == ["tests/reliability", "-q", "-m", "(not e2e) and unit and not serial and not timed"]
    junits = {each.junit for each in (parallel, timed, serial, unit)}
    assert len(junits) == 4 and {junit.parent for junit in junits} == {tmp_path}
    run = plan(split_pytest_args([]), 2, tmp_path)
    assert run.passes[0].args == ["-m", "not serial and not timed and not unit", "-n", "2", "--dist",
                                  "loadgroup", "--no-loadscope-reorder"]
    assert [each.args for each in run.beside] == [["-m", "serial and not timed"],
                                                   ["-m", "unit and not serial and not timed"]]
    # one worker: one pass of everything, one test at a time, on the one stack
    single = plan(split_pytest_args(["tests/unit", "-m", "unit"]), 1, tmp_path)
    assert [each.args for each in single.passes] == [["tests/unit", "-m", "unit"]] and not single.beside


def test_the_serial_tests_suite_gets_a_stack_of_its_own_beside_the_test_stack(tmp_path: Path) -> None:
    caller = {"PATH": "/bin", "TICKHOUSE_TEST_STATE_DIR": str(tmp_path / "stack"), "TICKHOUSE_TEST_LINT": "1"}
    env = serial_stack_environment(caller, "run-1")
    assert env["TICKHOUSE_TEST_STATE_DIR"] == str((tmp_path / "stack-serial").resolve())
    assert (env["TICKHOUSE_TEST_WORKERS"], env["TICKHOUSE_TEST_LINT"], env["TICKHOUSE_TEST_RUN"]) == (
        "1", "0", "run-1")
    assert env["PATH"] == "/bin" and caller["TICKHOUSE_TEST_LINT"] == "1"
    # its own state dir, so its own env file, ports and secrets (run_environment)
    own, _ = run_environment(env, project_root=tmp_path)
    parent, _ = run_environment(caller, project_root=tmp_path)
    assert own["TICKHOUSE_STATE_DIR"] != parent["TICKHOUSE_STATE_DIR"]
    assert own["TICKHOUSE_TEST_RUN"] == "run-1"


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

