"""Source freshness runs and turns red on a stale feed: `dbt source freshness` through
`transform.freshness` and the `check_source_freshness` DAG in a real Airflow run (`airflow dags
test` with the stack's Airflow environment and metadata database, pointed at a warehouse of the
test's own), green while the feeds are fresh, red once the newest trades load is 7 hours old.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from ops.stack.airflow import airflow_env, airflow_home
from tests.integration.dbt.conftest import own_warehouse
from tickhouse.config import Settings
from tickhouse.warehouse import connect
from transform.freshness import StaleSourceError, check_source_freshness

pytestmark = pytest.mark.integration

DAG_ID = "check_source_freshness"


def _dags_test(settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {**airflow_env(settings), "POSTGRES_DB": settings.postgres_db}
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "dags", "test", DAG_ID],
        env=env, cwd=airflow_home(settings), capture_output=True, text=True, timeout=600, check=False,
    )


def _load_feeds(settings: Settings) -> None:
    now_ms = int(time.time() * 1000)
    with connect(settings, "owner") as conn:
        for table in ("raw.trades",):  # the drain makes the partitions it writes to
            conn.execute("select raw.ensure_day_partition(%s::regclass, (now() at time zone 'UTC')::date)",
                         (table,))
        conn.execute(
            "insert into raw.trades (symbol, price, volume, ts, event_time, kafka_topic, kafka_partition,"
            " kafka_offset) values ('TESTFRESH', 10, 1, %s, to_timestamp(%s / 1000.0), 't', 0, 0)",
            (now_ms, now_ms),
        )


def test_fresh_feeds_pass_and_a_stale_feed_turns_the_task_red() -> None:
    with own_warehouse("freshness") as settings:
        _load_feeds(settings)
        results = {r.source: r.status for r in check_source_freshness(settings)}
        # quotes are optional (no freshness block), alerts come only when a rule fires
        assert results == {"tickhouse.trades": "pass"}
        green = _dags_test(settings)
        assert green.returncode == 0, green.stdout[-3000:] + green.stderr[-3000:]

        with connect(settings, "owner") as conn:
            conn.execute("update raw.trades set loaded_at = now() - interval '7 hours'")
        with pytest.raises(StaleSourceError) as stale:
            check_source_freshness(settings)
        assert "tickhouse.trades: error (newest load 420 min ago)" in str(stale.value)
        assert "quotes" not in str(stale.value)
        red = _dags_test(settings)
        output = red.stdout + red.stderr
        assert red.returncode != 0, output[-3000:]
        assert "tickhouse.trades: error" in output
        assert "failed" in output.lower()
