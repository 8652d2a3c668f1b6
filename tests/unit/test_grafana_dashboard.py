"""The Grafana dashboard in stack/grafana/ only charts metrics that Tickhouse really exports: every
metric name in its queries is exposed by the producer, the pipeline exporter or the alert service."""

from __future__ import annotations

import json
import re

from tickhouse.config import PROJECT_ROOT

DASHBOARD = PROJECT_ROOT / "stack" / "grafana" / "tickhouse-dashboard.json"
def test_every_charted_metric_is_exported(exposed: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\btickhouse_[a-z_]+\b", target["expr"])
    }
    assert queried, "the dashboard queries no Tickhouse metric"
    assert queried <= exposed, f"charted but not exported: {sorted(queried - exposed)}"
