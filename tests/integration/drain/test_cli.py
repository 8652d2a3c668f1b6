"""`tickhouse drain --once` through its main(argv), against the real services."""

from __future__ import annotations

import pytest

from drain.cli import main
from tests.integration.drain.conftest import Topics
from tests.integration.drain.helpers import quote, trade

pytestmark = pytest.mark.integration


def test_drain_once_prints_the_stats_table(
    topics: Topics, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    topics.produce(topics.trades, [trade(i) for i in range(25)] + [b"oops"])
    topics.produce(topics.quotes, [quote(1)])
    for name, value in {**topics.env(), "DRAIN_DQ_POLICY": "off", "COLUMNS": "200"}.items():
        monkeypatch.setenv(name, value)

    assert main(["--once", "--max-messages", "10"]) == 0
    out = capsys.readouterr().out
    assert topics.trades in out and "raw.trades" in out
    assert main(["--once", "--max-seconds", "20"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if topics.trades in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[2:6] == ["16", "15", "1", "0"]  # consumed, loaded, quarantined, lag after


def test_bad_arguments_and_configuration_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([]) == 2  # --once is required
    assert main(["--once", "--max-messages", "x"]) == 2
    monkeypatch.setenv("DRAIN_DQ_POLICY", "sometimes")
    assert main(["--once"]) == 2
    assert "DRAIN_DQ_POLICY='sometimes'" in capsys.readouterr().err


