"""The umbrella `tickhouse` command: every service reachable by name, and any package's error
printed as one line with an exit status, not a traceback (pure: nothing is started)."""

from __future__ import annotations

import pytest

from drain.errors import DrainError
from ops import cli
from tickhouse.config import ConfigError

pytestmark = pytest.mark.unit


def test_every_contract_command_is_there() -> None:
    parser = cli.build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"up", "down", "status", "env", "demo", "produce", "backfill", "drain", "transform",
            "alerts", "quarantine", "dashboard", "metrics"} <= commands
    assert set(cli.SERVICES) <= commands


def test_a_service_gets_the_rest_of_the_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setitem(cli.SERVICES, "drain", (lambda argv: seen.append(argv) or 7, "drain"))
    assert cli.main(["drain", "--once", "--max-messages", "5"]) == 7
    assert seen == [["--once", "--max-messages", "5"]]


def test_a_package_error_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(argv: list[str]) -> int:
        raise DrainError("raw.kafka_offsets moved under this run; run the drain again")

    monkeypatch.setitem(cli.SERVICES, "drain", (fails, "drain"))
    assert cli.main(["drain", "--once"]) == 1
    assert capsys.readouterr().err == (
        "tickhouse drain: raw.kafka_offsets moved under this run; run the drain again\n"
    )


def test_a_configuration_error_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fails(argv: list[str]) -> int:
        raise ConfigError("POSTGRES_PORT='x' is not a TCP port")

    monkeypatch.setitem(cli.SERVICES, "metrics", (fails, "metrics"))
    assert cli.main(["metrics"]) == 2
    assert "configuration error: POSTGRES_PORT='x'" in capsys.readouterr().err


def test_the_stack_refuses_an_unknown_component_before_touching_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["up", "--only", "zookeeper"]) == 1
    assert "tickhouse up: unknown component(s) ['zookeeper']" in capsys.readouterr().err
