"""`dbt source freshness` of the raw tables (thresholds in `_tickhouse__sources.yml`).

Runs into a target directory of its own (the project's `target/` holds the manifest the
transform_marts DAG renders from, which `source freshness` would rewrite) and reads dbt's
`sources.json`. A source past its `error_after` (or one dbt could not check) raises
`StaleSourceError`, naming each source and how old its newest load is; `warn_after` only warns.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tickhouse.config import Settings, load_settings
from transform.dbt_runner import TransformError, failure_summary, run_dbt


class StaleSourceError(TransformError):
    """A raw table's newest load is older than its `error_after`, or could not be checked."""


@dataclass(frozen=True, slots=True)
class SourceFreshness:
    source: str  # e.g. tickhouse.trades
    status: str  # pass, warn, error, runtime error
    max_loaded_at: str | None
    age_seconds: float | None

    def describe(self) -> str:
        age = (
            f"newest load {self.age_seconds / 60:.0f} min ago"
            if self.age_seconds is not None
            else "no load"
        )
        return f"{self.source}: {self.status} ({age})"


def read_results(sources_json: Path) -> list[SourceFreshness]:
    data = json.loads(sources_json.read_text())
    out = []
    for item in data.get("results", []):
        name = ".".join(item["unique_id"].split(".")[-2:])
        out.append(
            SourceFreshness(
                source=name,
                status=str(item.get("status")),
                max_loaded_at=item.get("max_loaded_at"),
                age_seconds=item.get("max_loaded_at_time_ago_in_s"),
            )
        )
    return sorted(out, key=lambda r: r.source)


def check_source_freshness(
    settings: Settings | None = None, select: str = "source:tickhouse"
) -> list[SourceFreshness]:
    """Run `dbt source freshness`; returns every checked source, raises StaleSourceError when one
    is past `error_after`."""
    settings = settings or load_settings()
    with tempfile.TemporaryDirectory(prefix="tickhouse-freshness-") as target:
        output = Path(target) / "sources.json"
        result = run_dbt(
            ["source", "freshness", "--select", select, "--target-path", target, "--output", str(output)],
            settings,
        )
        if not output.is_file():
            raise StaleSourceError(f"dbt source freshness wrote no results: {failure_summary(result)}")
        results = read_results(output)
    bad = [r for r in results if r.status not in ("pass", "warn")]
    if bad or not results:
        raise StaleSourceError(
            "stale or unchecked raw sources: " + "; ".join(r.describe() for r in bad)
            if bad
            else f"dbt source freshness checked nothing for {select!r}: {failure_summary(result)}"
        )
    return results
