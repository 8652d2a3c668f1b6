"""PostgreSQL restarted while the Airflow task `ingest_market_data.drain` is copying: the task
fails with a clear error, Airflow retries it, the retry loads everything exactly once."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any

import psycopg
import pytest

from ops.airflow_api import AirflowAPI
from ops.stack import postgres
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import env_int, high_watermarks, owner_conn, wait_for_drain_copy
from tickhouse.config import Settings
from tickhouse.kafka import client_config
from tickhouse.schemas import now_ms

# serial (pyproject.toml): restarts the stack's PostgreSQL under the shared Airflow's drain task
pytestmark = pytest.mark.serial

DAG = "ingest_market_data"
TRADES = env_int("RELIABILITY_AIRFLOW_PG_TRADES", 120_000)


def _active_runs(api: AirflowAPI, *states: str) -> list[str]:
    wanted = states or ("queued", "running")
    status, body = api.request("GET", f"/api/v2/dags/{DAG}/dagRuns?limit=50&order_by=-run_after")
    assert status == 200, body
    return [r["dag_run_id"] for r in body["dag_runs"] if r["state"] in wanted]


def _cleanup(settings: Settings, symbol: str) -> None:
    """This scenario's trades go through the real topic and DAG: remove them from raw and marts."""
    with contextlib.suppress(psycopg.Error), owner_conn(settings) as conn:
        conn.execute("delete from raw.trades where symbol = %s", (symbol,))
    with contextlib.suppress(psycopg.Error), psycopg.connect(
        settings.conninfo("dbt"), autocommit=True
    ) as conn:
        tables = conn.execute(
            "select c.table_schema, c.table_name from information_schema.columns c"
            " join information_schema.tables t using (table_schema, table_name)"
            " where c.column_name = 'symbol' and t.table_type = 'BASE TABLE'"
            " and c.table_schema in ('staging', 'intermediate', 'marts')"
        ).fetchall()
        for schema, table in tables:
            conn.execute(f'delete from {schema}."{table}" where symbol = %s', (symbol,))


def test_postgres_restart_during_airflow_drain(
    settings: Settings, airflow_api: AirflowAPI, scenario: Scenario, stack_guard: None
) -> None:
    """PostgreSQL restarted under the Airflow drain task; Airflow retries it."""
    if postgres.server_pid(settings) is None:
        pytest.skip("PostgreSQL is not one this stack started; cannot restart it")
    airflow_api.wait_for_dag(DAG)
    status, dag = airflow_api.request("GET", f"/api/v2/dags/{DAG}")
    was_paused = bool(dag["is_paused"])
    symbol = f"RELAF{uuid.uuid4().hex[:8].upper()}"
    base = now_ms() - 5_400_000
    from confluent_kafka import Producer

    producer = Producer({**client_config(settings.kafka_bootstrap_servers), "linger.ms": 20,
                         "enable.idempotence": True})
    placed: set[tuple[int, int]] = set()

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        placed.add((msg.partition(), msg.offset()))

    try:
        for i in range(TRADES):
            value = json.dumps({"symbol": symbol, "price": 20 + (i % 50) / 10, "volume": i,
                                "ts": base + i * 10}).encode()
            while True:
                try:
                    producer.produce(settings.trades_topic, key=symbol.encode(), value=value,
                                     on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        assert producer.flush(60) == 0 and len(placed) == TRADES

        status, body = airflow_api.request("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False})
        assert status == 200, body
        # unpaused, the DAG starts a scheduled run at once; trigger one only if none comes.
        # Watch for the COPY from the moment of unpausing: a prompt run copies the whole batch
        # in a few seconds, so a pause before watching can miss it entirely.
        copy_seen = wait_for_drain_copy(settings, timeout=5)
        if not copy_seen and not _active_runs(airflow_api):
            status, run = airflow_api.request("POST", f"/api/v2/dags/{DAG}/dagRuns",
                                              {"logical_date": None, "conf": {}})
            assert status in (200, 201), run
        if not copy_seen and not wait_for_drain_copy(settings, timeout=180):
            pytest.fail("the Airflow drain task never started copying")
        copying = _active_runs(airflow_api, "running")
        assert copying, "a drain is copying but no DAG run is running"
        run_id = copying[0]
        assert postgres.stop(settings)
        postgres.start(settings)
        scenario.kills = 1
        deadline = time.monotonic() + 300
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                status, run = airflow_api.request("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}")
                if run.get("state") in ("success", "failed"):
                    break
            time.sleep(2)
        tis = {ti["task_id"]: ti for ti in airflow_api.task_instances(DAG, run_id)}
        drain = tis["drain"]
        status, first = airflow_api.request(
            "GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}/taskInstances/drain/logs/1?full_content=true")
        first_log = json.dumps(first)
        reason = next((w for w in ("server closed the connection", "terminating connection",
                                   "connection", "OperationalError") if w in first_log), None)
        scenario.note(f"run {run.get('state')}; drain tries {drain.get('try_number')}; "
                      f"first try's error mentions {reason!r}")
        assert run.get("state") == "success", f"run {run.get('state')}: {drain}"
        assert drain["state"] == "success"
        assert int(drain["try_number"]) >= 2, "the drain task did not fail and retry"
        assert reason is not None, f"the failed try's log does not say why: {first_log[-1500:]}"

        # exactly once: every message of this scenario, by Kafka coordinates and by trade id
        with owner_conn(settings) as conn:
            rows = conn.execute(
                "select kafka_partition, kafka_offset, volume from raw.trades"
                " where kafka_topic = %s and symbol = %s",
                (settings.trades_topic, symbol),
            ).fetchall()
        coords = {(p, o) for p, o, _ in rows}
        ids = {int(v) for _, _, v in rows}
        lost = max(len(placed - coords), TRADES - len(ids))
        doubled = len(rows) - len(coords)
        scenario.messages, scenario.lost, scenario.doubled = TRADES, lost, doubled
        assert lost == 0 and doubled == 0 and coords == placed and ids == set(range(TRADES))
        marks = high_watermarks(settings, settings.trades_topic)
        assert all(o < marks[p] for p, o in placed)
    finally:
        if was_paused:
            airflow_api.request("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": True})
        _cleanup(settings, symbol)
