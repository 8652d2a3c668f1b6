"""The Prometheus alerting rules in stack/grafana/ are valid and watch metrics Tickhouse exports:
every expression parses as PromQL (promql-parser, the Rust parser of GreptimeDB), every rule has
the fields Prometheus and Alertmanager need, and every `tickhouse_*` metric it names is exposed by
the producer, the pipeline exporter or the alert service."""

from __future__ import annotations

import re
from typing import Any

import promql_parser
import pytest
import yaml

from tickhouse.config import PROJECT_ROOT

RULES = PROJECT_ROOT / "stack" / "grafana" / "tickhouse-alert-rules.yml"
SCRAPE = PROJECT_ROOT / "stack" / "grafana" / "prometheus.yml"
DURATION = re.compile(r"^\d+[smhd]$")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rules_parse_and_have_what_alertmanager_needs() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} >= {
        "TickhouseDrainLagHigh",
        "TickhouseTradesStale",
        "TickhouseAlertServiceDown",
        "TickhouseQuarantineRateHigh",
        "TickhouseMartsBehindRaw",
    }
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in rules:
        promql_parser.parse(rule["expr"])  # raises on a syntax error
        assert DURATION.match(str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_a_broken_expression_would_be_caught() -> None:
    with pytest.raises(Exception, match="parenthesis"):
        promql_parser.parse("sum(rate(tickhouse_drain_messages_total[5m])")


def test_every_watched_metric_is_exported(exposed: set[str]) -> None:
    watched = {name for rule in _rules() for name in re.findall(r"\btickhouse_[a-z_]+\b", rule["expr"])}
    assert watched, "the rules watch no Tickhouse metric"
    assert watched <= exposed, f"watched but not exported: {sorted(watched - exposed)}"


def test_jobs_in_the_rules_are_scraped_and_the_rules_are_loaded() -> None:
    scrape = yaml.safe_load(SCRAPE.read_text())
    assert RULES.name in scrape["rule_files"]
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    used = {job for rule in _rules() for job in re.findall(r'job="([^"]+)"', rule["expr"])}
    assert used and used <= jobs
