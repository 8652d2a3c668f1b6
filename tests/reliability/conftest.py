"""Reliability suite: faults, hostile input, access. Every scenario records its figures here; the
session ends with a summary table (pytest's terminal summary) and test-artifacts/reliability-summary.json.

Under `make test`'s parallel pass the scenarios not marked `serial` run on pytest-xdist workers: each
hands its figures to the controller (tests/conftest.py), and the serial pass adds its own to the
same run's file.

Scenarios take every address from `load_settings()` and stop/start services only through the stack
modules; the `stack_guard` fixture restarts whatever a test stopped, so later tests find the stack
running and healthy.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.helpers import RelTopics, ensure_stack_healthy
from tickhouse.config import PROJECT_ROOT, Settings

SUMMARY_PATH = PROJECT_ROOT / "test-artifacts" / "reliability-summary.json"


@dataclass
class Scenario:
    """Figures of one scenario (one test)."""

    nodeid: str
    name: str
    status: str = "running"
    kills: int = 0
    messages: int = 0
    lost: int | None = None
    doubled: int | None = None
    # copies a producer sent again after a crash, with the same producer identity: Kafka and
    # raw.trades hold them, the warehouse's models count each trade once (they are not `doubled`)
    resent_in_kafka: int | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic, repr=False)

    def note(self, text: str) -> None:
        self.notes.append(text)


class Summary:
    def __init__(self) -> None:
        self.scenarios: dict[str, Scenario] = {}
        # rows of the scenarios that ran elsewhere: on pytest-xdist workers (tests/conftest.py)
        self.received: list[dict[str, Any]] = []

    def start(self, nodeid: str, name: str) -> Scenario:
        scenario = Scenario(nodeid, name)
        self.scenarios[nodeid] = scenario
        return scenario

    def finish(self, nodeid: str, outcome: str) -> None:
        scenario = self.scenarios.get(nodeid)
        if scenario is not None and scenario.status in ("running", "passed"):
            scenario.status = outcome
            scenario.seconds = round(time.monotonic() - scenario.started, 1)

    def rows(self) -> list[dict[str, Any]]:
        out = list(self.received)
        for s in self.scenarios.values():
            row = asdict(s)
            row.pop("started")
            out.append(row)
        return out


SUMMARY = Summary()


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Scenario:
    """The figures record of this test; the docstring's first line names the scenario."""
    doc = (request.function.__doc__ or request.node.name).strip().splitlines()[0]
    return SUMMARY.start(request.node.nodeid, doc.rstrip("."))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and not report.passed):
        SUMMARY.finish(item.nodeid, "skipped" if report.skipped else report.outcome)
    elif report.when == "teardown" and report.failed:
        scenario = SUMMARY.scenarios.get(item.nodeid)
        if scenario is not None:
            scenario.status = "failed"
            scenario.note("teardown failed (stack restore)")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand this worker's scenarios to the controller, which prints the
    summary (tests/conftest.py)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["reliability_scenarios"] = json.dumps(SUMMARY.rows())


def _earlier_passes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scenarios an earlier pass of the same `make test` run wrote to the summary file (ops/suite.py
    names the run in TICKHOUSE_TEST_RUN), which this pass's do not replace."""
    run = os.environ.get("TICKHOUSE_TEST_RUN")
    if not run or not SUMMARY_PATH.is_file():
        return []
    try:
        earlier = json.loads(SUMMARY_PATH.read_text())
    except ValueError:
        return []
    if earlier.get("run") != run:
        return []
    here = {r["nodeid"] for r in rows}
    return [r for r in earlier.get("scenarios", []) if r.get("nodeid") not in here]


def write_summary(terminalreporter: Any) -> None:
    """The summary table of the scenarios (with those of the run's earlier passes) and its file;
    called by tests/conftest.py's pytest_terminal_summary."""
    rows = SUMMARY.rows()
    if not rows:
        return
    rows = _earlier_passes(rows) + rows
    tr = terminalreporter
    tr.section("Tickhouse reliability summary")
    header = (f"{'scenario':<58} {'status':<8} {'kills':>5} {'messages':>9} {'lost':>5} "
              f"{'doubled':>7} {'s':>6}")
    tr.write_line(header)
    tr.write_line("-" * len(header))

    def show(v: int | None) -> str:
        return "-" if v is None else str(v)

    for r in rows:
        tr.write_line(
            f"{r['name'][:58]:<58} {r['status']:<8} {r['kills']:>5} {r['messages']:>9} "
            f"{show(r['lost']):>5} {show(r['doubled']):>7} {r['seconds']:>6}"
        )
    totals = {
        "scenarios_run": sum(1 for r in rows if r["status"] in ("passed", "failed")),
        "scenarios_passed": sum(1 for r in rows if r["status"] == "passed"),
        "kills_survived": sum(r["kills"] for r in rows if r["status"] == "passed"),
        "messages_tried": sum(r["messages"] for r in rows),
        "lost": sum(r["lost"] or 0 for r in rows),
        "doubled": sum(r["doubled"] or 0 for r in rows),
        "resent_in_kafka": sum(r["resent_in_kafka"] or 0 for r in rows),
    }
    tr.write_line("-" * len(header))
    tr.write_line(
        f"scenarios run {totals['scenarios_run']} (passed {totals['scenarios_passed']}), kills survived "
        f"{totals['kills_survived']}, messages tried {totals['messages_tried']:,}, lost {totals['lost']}, "
        f"doubled {totals['doubled']}"
        + (f" (resent in Kafka {totals['resent_in_kafka']}, each counted once downstream by its "
           "producer identity)" if totals["resent_in_kafka"] else "")
    )
    for r in rows:
        for note in r["notes"]:
            tr.write_line(f"  {r['name'][:40]}: {note}")
    SUMMARY_PATH.parent.mkdir(parents=True, exist_ok=True)
    run = {"run": os.environ["TICKHOUSE_TEST_RUN"]} if os.environ.get("TICKHOUSE_TEST_RUN") else {}
    SUMMARY_PATH.write_text(json.dumps({**run, "totals": totals, "scenarios": rows}, indent=2) + "\n")
    tr.write_line(f"figures written to {SUMMARY_PATH.relative_to(PROJECT_ROOT)}")


@pytest.fixture
def stack_guard(settings: Settings) -> Iterator[None]:
    """Whatever a test stops, this brings back and checks healthy afterwards."""
    yield
    ensure_stack_healthy(settings)


@pytest.fixture
def rel_topics(settings: Settings) -> Iterator[RelTopics]:
    topics = RelTopics(settings)
    yield topics
    topics.delete()


def pytest_sessionstart(session: pytest.Session) -> None:
    Path(SUMMARY_PATH).parent.mkdir(parents=True, exist_ok=True)
