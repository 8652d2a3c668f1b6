"""The rules file: defaults, per-symbol overrides, and errors that name the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.cli import main
from alerts.config import DEFAULT_RULES_PATH, RulesError, load_rules, parse_rules

pytestmark = pytest.mark.unit


def test_bundled_rules_file_is_valid_and_overrides_merge_key_by_key() -> None:
    rules = load_rules(DEFAULT_RULES_PATH)
    assert rules.defaults.price_move.pct == 2.0
    tsla = rules.for_symbol("TSLA")
    assert tsla.price_move.pct == 3.0
    assert tsla.price_move.window_seconds == rules.defaults.price_move.window_seconds
    assert rules.for_symbol("UNLISTED") is rules.defaults
    assert [n.type for n in rules.notifiers] == ["slack", "webhook", "email"]


def test_override_inherits_changed_defaults() -> None:
    rules = parse_rules(
        {
            "defaults": {"price_move": {"window_seconds": 30}, "rsi": {"enabled": False}},
            "symbols": {"AAPL": {"price_move": {"pct": 1.5}}},
        }
    )
    aapl = rules.for_symbol("AAPL")
    assert (aapl.price_move.pct, aapl.price_move.window_seconds) == (1.5, 30.0)
    assert aapl.rsi.enabled is False


@pytest.mark.parametrize(
    ("doc", "needles"),
    [
        ({"defaults": {"price_move": {"pct": "2%"}}}, ["defaults.price_move.pct", "'2%'", "number"]),
        ({"defaults": {"price_move": {"pct": 0}}}, ["defaults.price_move.pct", "> 0", "0"]),
        ({"defaults": {"price_move": {"pcnt": 2}}}, ["defaults.price_move.pcnt", "unknown setting"]),
        ({"defaults": {"volume_spike": {"minutes": 2.5}}}, ["volume_spike.minutes", "whole number"]),
        ({"defaults": {"volume_spike": {"minutes": 0}}}, ["volume_spike.minutes", ">= 1"]),
        ({"defaults": {"rsi": {"overbought": 30, "oversold": 70}}}, ["defaults.rsi", "oversold"]),
        ({"defaults": {"rsi": {"period": True}}}, ["defaults.rsi.period", "True"]),
        ({"defaults": {"stale_feed": {"seconds": -1}}}, ["stale_feed.seconds", "-1"]),
        ({"defaults": {"stale_feed": {"enabled": "yes"}}}, ["stale_feed.enabled", "true or false"]),
        ({"defaults": {"session_extremes": {"timezone": "Mars/Olympus"}}}, ["timezone", "Mars"]),
        ({"defaults": {"suspicious_tick": {"severity": "loud"}}}, ["severity", "'loud'", "critical"]),
        ({"defaults": {"suspicious_tick": {"samples": 3, "min_samples": 5}}}, ["min_samples", "5"]),
        ({"defaults": {"fancy_rule": {}}}, ["defaults.fancy_rule", "unknown rule"]),
        ({"defaults": {"price_move": {"pct": float("nan")}}}, ["price_move.pct", "finite"]),
        ({"symbols": {"BAD SYMBOL": {}}}, ["symbols.BAD SYMBOL", "not a valid symbol"]),
        ({"symbols": {"TSLA": {"price_move": {"pct": -3}}}}, ["symbols.TSLA.price_move.pct", "-3"]),
        ({"symbols": ["TSLA"]}, ["symbols", "mapping"]),
        ({"notifiers": [{"type": "pager"}]}, ["notifiers[0].type", "'pager'"]),
        ({"notifiers": [{"type": "slack", "url": "https://x"}]}, ["notifiers[0].url", "unknown"]),
        ({"notifiers": [{"type": "slack"}, {"type": "slack"}]}, ["notifiers[1].name", "another"]),
        ({"rulez": {}}, ["rulez", "unknown top-level key"]),
        ([1, 2], ["top level", "mapping"]),
    ],
)
def test_errors_name_the_key_and_the_value(doc: object, needles: list[str]) -> None:
    with pytest.raises(RulesError) as info:
        parse_rules(doc, "rules.yaml")
    message = str(info.value)
    assert message.startswith("rules.yaml: ")
    for needle in needles:
        assert needle in message, message


def test_yaml_syntax_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults: {price_move: [unclosed\n")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rules", str(DEFAULT_RULES_PATH), "--check"]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "rules.yaml"
    bad.write_text("defaults:\n  price_move:\n    window_seconds: soon\n")
    assert main(["--rules", str(bad), "--check"]) == 2
    err = capsys.readouterr().err
    assert "defaults.price_move.window_seconds" in err and "'soon'" in err


@pytest.mark.parametrize(
    "variable", ["ALERTS_MAX_SYMBOLS", "ALERTS_MAX_AHEAD_SECONDS", "ALERTS_EVICT_IDLE_SECONDS"]
)
def test_cli_names_a_bad_variable(
    variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable, "-3")
    assert main(["--check"]) == 2
    assert f"{variable}='-3'" in capsys.readouterr().err


def test_cli_refuses_an_insecure_notifier_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("notifiers:\n  - {type: slack}\n")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://hooks.slack.com/services/T/B/SECRET")
    monkeypatch.setenv("ALERTS_METRICS_PORT", "0")
    for argv in (["--rules", str(rules)], ["notify", "--rules", str(rules)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "SLACK_WEBHOOK_URL must be an https://" in err and "SECRET" not in err


def test_cli_notify_without_any_notifier_secret_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("SLACK_WEBHOOK_URL", "ALERTS_WEBHOOK_URL", "SMTP_HOST", "ALERTS_EMAIL_TO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALERTS_METRICS_PORT", "0")
    assert main(["notify", "--rules", str(DEFAULT_RULES_PATH)]) == 2
    assert "no notifier has its secrets set" in capsys.readouterr().err
