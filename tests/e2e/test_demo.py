"""`tickhouse demo` (what `make demo` runs) as a user runs it: the bundled history and a burst of
real-time trades go producer -> Kafka -> Airflow drain -> dbt via Cosmos -> marts, and the summary
reports what landed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ops.airflow_api import AirflowAPI
from ops.stack.apps import stop_apps
from tickhouse.config import Settings
from tickhouse.warehouse import connect

TICKHOUSE = str(Path(sys.executable).parent / "tickhouse")


def test_demo_runs_the_pipeline_end_to_end(settings: Settings, airflow_api: AirflowAPI) -> None:
    env = {**os.environ, "DEMO_SYNTHETIC_SECONDS": "15", "COLUMNS": "200"}
    try:
        result = subprocess.run(
            [TICKHOUSE, "demo"], env=env, text=True, capture_output=True, timeout=1200, check=False
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        assert re.search(r"sample trading days in marts\s*│\s*10 of 10", output), output[-4000:]
        assert re.search(
            r"freshness: trade event time -> visible in marts.fct_bars\s*│\s*p50 [\d.]+ s", output
        )
        assert re.search(r"messages quarantined \(this run, raw.quarantine\)\s*│\s*5\b", output), output[
            -4000:
        ]
        # what the summary says is in the marts really is, for the bi_reader a BI tool uses
        with connect(settings, "bi_reader") as conn:
            days = conn.execute(
                "select count(distinct bar_start) from marts.fct_bars where bar_interval = '1d' "
                "and bar_source = 'trades' and symbol in ('AAPL', 'GOOG', 'IBM', 'MSFT') "
                "and bar_start between '2013-02-14' and '2013-03-02'"
            ).fetchone()
            synthetic = conn.execute(
                "select count(*) from marts.fct_bars where bar_interval = '1m' "
                "and symbol in ('NVDA', 'TSLA', 'AMD') and bar_start > now() - interval '1 hour'"
            ).fetchone()
        assert days == (10,)
        assert synthetic is not None and synthetic[0] > 0
    finally:
        stop_apps(settings)
        for dag_id in ("ingest_market_data", "transform_marts"):
            airflow_api.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})
