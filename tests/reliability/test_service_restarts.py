"""Kafka broker and PostgreSQL restarted mid-stream: nothing lost, nothing doubled."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from pathlib import Path

import pytest

from ops.airflow_api import AirflowAPI
from ops.stack import kafka_broker, postgres
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import (
    RelTopics,
    check_trades_exactly_once,
    drain_until_caught_up,
    ensure_stack_healthy,
    env_int,
    owner_conn,
    run_drain,
    start_drain,
    start_replay,
    stored_offsets,
    wait_for_drain_copy,
    write_replay_csv,
)
from tickhouse.config import PROJECT_ROOT, Settings
from tickhouse.schemas import now_ms

# serial (pyproject.toml): stops and restarts the stack's Kafka broker and PostgreSQL
pytestmark = pytest.mark.serial

BROKER_TRADES = env_int("RELIABILITY_BROKER_TRADES", 30_000)
PG_TRADES = env_int("RELIABILITY_PG_TRADES", 150_000)


def test_kafka_broker_restart_mid_stream(
    settings: Settings, rel_topics: RelTopics, tmp_path: Path, scenario: Scenario, stack_guard: None
) -> None:
    """Kafka broker stopped and restarted mid-stream."""
    if kafka_broker.service(settings).pid() is None:
        pytest.skip("the Kafka broker is not one this stack started; cannot restart it")
    csv = tmp_path / "trades.csv"
    # 10 ms apart in event time, replayed 20x faster: about 15 s of flow
    ids = write_replay_csv(csv, BROKER_TRADES, ("RELB1", "RELB2"), now_ms() - 3_600_000, step_ms=10)
    log = tmp_path / "producer.log"
    replay = start_replay(
        rel_topics.env(), csv, rel_topics.trades, speed=20, spool=tmp_path / "spool.bin", log=log,
        extra=["--max-queue", "2000"],
    )
    env = rel_topics.env(DRAIN_MAX_SECONDS="5")
    drains: list[tuple[int, str]] = []  # (exit code, stderr) of every drain during the flow
    in_flight = threading.Event()
    stop = threading.Event()

    def drain_loop() -> None:
        while not stop.is_set():
            in_flight.set()
            done = run_drain(env, timeout=120)
            in_flight.clear()
            drains.append((done.returncode, done.stderr))
            time.sleep(0.5)

    drainer = threading.Thread(target=drain_loop, daemon=True)
    drainer.start()
    try:
        # the fault lands mid-stream: part of the flow is loaded, a drain is running, the replay goes on
        deadline = time.monotonic() + 60
        while not stored_offsets(settings, rel_topics.group, rel_topics.trades):
            assert time.monotonic() < deadline, "no drain loaded anything within 60 s"
            time.sleep(0.2)
        assert in_flight.wait(10), "no drain was running"
        assert replay.poll() is None, f"the replay ended before the fault: {log.read_text()[-2000:]}"
        loaded_before = sum(stored_offsets(settings, rel_topics.group, rel_topics.trades).values())
        t0 = time.monotonic()
        assert kafka_broker.stop(settings)
        time.sleep(3)
        kafka_broker.start(settings)
        outage = time.monotonic() - t0
        assert replay.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        stop.set()
        drainer.join(timeout=180)
        if replay.poll() is None:
            replay.kill()
    assert 0 < loaded_before < BROKER_TRADES
    # a drain that lost the broker fails cleanly (exit 3, nothing committed), never otherwise
    unexpected = [(code, err[-500:]) for code, err in drains if code not in (0, 3)]
    assert not unexpected, unexpected
    assert all("failed:" in err for code, err in drains if code == 3)
    assert drains and drains[-1][0] == 0, f"the last drain of the flow did not succeed: {drains[-1:]}"
    codes = [code for code, _ in drains]
    text = log.read_text()
    assert "spool" in text, f"the producer never spooled during a {outage:.0f} s outage:\n{text[-3000:]}"
    assert "0 kept in the spool" in text, text[-2000:]
    runs = drain_until_caught_up(settings, rel_topics, rel_topics.env())
    result = check_trades_exactly_once(settings, rel_topics.trades, ids)
    scenario.messages, scenario.lost, scenario.doubled = BROKER_TRADES, result.lost, result.doubled
    scenario.kills = 1
    failed = sum(1 for c in codes if c != 0)
    scenario.note(
        f"broker down {outage:.1f} s; {len(codes)} drains during the flow ({failed} failed while the "
        f"broker was away), {runs} to catch up; producer: {text.strip().splitlines()[-1][:160]}"
    )
    assert result.lost == 0 and result.doubled == 0, result


def _dbt_available() -> bool:
    return (
        importlib.util.find_spec("transform.dbt_runner") is not None
        and (PROJECT_ROOT / "dbt_project" / "dbt_project.yml").exists()
    )


def test_postgres_restart_mid_drain(
    settings: Settings, rel_topics: RelTopics, scenario: Scenario, stack_guard: None,
    airflow_api: AirflowAPI,
) -> None:
    """PostgreSQL restarted mid-drain; a retry loads; dbt catches up."""
    if postgres.server_pid(settings) is None:
        pytest.skip("PostgreSQL is not one this stack started; cannot restart it")
    # the Airflow task runs exactly this drain and retries it: the retry below is what it does
    airflow_api.wait_for_dag("ingest_market_data")
    status, task = airflow_api.request("GET", "/api/v2/dags/ingest_market_data/tasks/drain")
    assert status == 200, task
    assert int(task["retries"]) >= 1, f"the drain task does not retry: {task['retries']}"
    # recent event times (the last trade 5 minutes ago), like a live feed
    base = now_ms() - 3_300_000
    # symbols of this run only: marts are incremental and keep the bars of earlier runs
    symbols = (f"RELPG{rel_topics.suffix[:8]}A", f"RELPG{rel_topics.suffix[:8]}B")
    ids = set(range(PG_TRADES))
    rel_topics.produce(
        rel_topics.trades,
        (
            json.dumps({"symbol": symbols[i % 2], "price": 50 + (i % 300) / 10, "volume": i,
                        "ts": base + i * 20}).encode()
            for i in range(PG_TRADES)
        ),
    )
    env = rel_topics.env()
    drain = start_drain(env)
    try:
        assert wait_for_drain_copy(settings, timeout=30), "the drain never started its COPY"
        assert postgres.stop(settings)
        postgres.start(settings)
        _out, err = drain.communicate(timeout=120)
    finally:
        if drain.poll() is None:
            drain.kill()
    scenario.kills = 1
    assert drain.returncode == 3, f"expected the drain to fail (exit 3), got {drain.returncode}: {err}"
    assert "tickhouse drain: failed:" in err and "next run resumes" in err, err
    reason = err.split("failed:", 1)[1].strip().splitlines()[0]
    assert any(w in reason.lower() for w in ("connection", "terminat", "server closed", "shutdown")), (
        f"the drain's error does not say the database went away: {reason!r}"
    )
    scenario.note(f"drain failed with: {reason[:120]}")
    with owner_conn(settings) as conn:
        rows = conn.execute(
            "select count(*) from raw.trades where kafka_topic = %s", (rel_topics.trades,)
        ).fetchone()
    assert rows == (0,), "a failed drain left rows behind"

    restarted = ensure_stack_healthy(settings)
    if restarted:
        scenario.note(f"after the PostgreSQL restart these had to be restarted: {restarted}")
    runs = drain_until_caught_up(settings, rel_topics, env)
    result = check_trades_exactly_once(settings, rel_topics.trades, ids)
    scenario.messages, scenario.lost, scenario.doubled = PG_TRADES, result.lost, result.doubled
    scenario.note(f"retry: {runs} drain run(s) loaded everything")
    assert result.lost == 0 and result.doubled == 0, result

    if not _dbt_available():
        scenario.note("dbt catch-up NOT RUN: transform.dbt_runner / dbt_project not available")
        return
    from transform.cli import main as transform_main

    t0 = time.monotonic()
    code = transform_main([])
    scenario.note(f"dbt build after the restart: exit {code} in {time.monotonic() - t0:.0f} s")
    assert code == 0, "dbt build failed after the PostgreSQL restart"
    with owner_conn(settings) as conn:
        bars = conn.execute(
            "select coalesce(sum(trade_count), 0), coalesce(sum(volume), 0) from marts.fct_bars"
            " where bar_interval = '1m' and symbol = any(%s)",
            (list(symbols),),
        ).fetchone()
    assert bars is not None
    assert int(bars[0]) == PG_TRADES, f"marts.fct_bars counts {bars[0]} trades of {PG_TRADES}"
    assert int(bars[1]) == sum(ids), "marts.fct_bars volume does not match the trades"
