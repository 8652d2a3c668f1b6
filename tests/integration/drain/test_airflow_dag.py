"""One real Airflow run of `ingest_market_data`, triggered through the REST API (v2).

Needs the whole local stack (`make up`) with this repository's dags/ deployed: the file is
replayed with `tickhouse produce --source replay`, the DAG drains it on the real Airflow.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Producer

from tests.integration.drain.helpers import NOW_MS
from tickhouse.config import Settings
from tickhouse.kafka import client_config

# one worker runs the tests that drive the shared Airflow's `ingest_market_data`, one after another
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("airflow-ingest_market_data")]


def test_dag_run_loads_a_replayed_file_and_records_stats(
    settings: Settings, airflow_api: Any, tmp_path: Path
) -> None:
    tag = f"dagtest-{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC)
    replay = tmp_path / "trades.jsonl"
    replay.write_text(
        "".join(
            json.dumps({"symbol": "AAPL", "price": 100 + i, "volume": i, "ts": NOW_MS - i,
                        "source": tag}) + "\n"
            for i in range(200)
        )
    )
    from producer.cli import main as produce

    assert produce(["--source", "replay", "--file", str(replay), "--speed", "0", "--no-status",
                    "--metrics-port", "0"]) == 0
    # the replay source refuses bad lines, so a bad message goes straight onto the topic
    # (its bytes name this run, so that a row an earlier run left cannot satisfy the check below)
    bad_payload = f"this line of {tag} is not JSON".encode()
    producer = Producer(client_config(settings.kafka_bootstrap_servers))
    producer.produce(settings.trades_topic, value=bad_payload, key=b"AAPL")
    assert producer.flush(30) == 0

    run = airflow_api.run_dag("ingest_market_data", timeout=300)
    assert run["state"] == "success", run
    states = {t["task_id"]: t["state"] for t in airflow_api.task_instances(
        "ingest_market_data", run["dag_run_id"])}
    assert states["drain"] == "success", states
    # a scheduled run may have drained the file first; then this run had nothing to publish
    assert states["publish_trades"] in ("success", "skipped"), states
    assert states["check_topics"] == "success", states  # no topic was stopped (rewound)

    with psycopg.connect(settings.conninfo("owner")) as conn:
        loaded = conn.execute(
            "select count(*) from raw.trades where source = %s", (tag,)
        ).fetchone()
        assert loaded == (200,)
        quarantined = conn.execute(
            "select count(*) from raw.quarantine where kafka_topic = %s"
            " and payload = %s",
            (settings.trades_topic, bad_payload),
        ).fetchone()
        assert quarantined == (1,)  # exactly once: this run's message, neither lost nor doubled
        stats = conn.execute(
            "select sum(consumed), sum(loaded), sum(quarantined) from raw.load_stats"
            " where topic = %s and finished_at >= %s",
            (settings.trades_topic, started),
        ).fetchone()
        assert stats is not None and stats[0] >= 201 and stats[0] == stats[1] + stats[2]
