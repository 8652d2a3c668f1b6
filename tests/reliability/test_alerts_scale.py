"""The alert service with 20,000 symbols on one partition: it checkpoints them (a record each, not
one message over Kafka's 1 MB limit), keeps alerting on a jump, and restores them after a SIGKILL."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from tests.reliability.alert_process import AlertProcess, read_all, rules_file
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import RelTopics, env_int
from tickhouse.config import Settings
from tickhouse.schemas import now_ms

SYMBOLS = env_int("RELIABILITY_ALERT_SYMBOLS", 20_000)


def _produce(topics: RelTopics, trades: list[dict[str, object]]) -> None:
    producer = topics.producer()
    for t in trades:
        while True:
            try:
                producer.produce(
                    topics.trades, key=str(t["symbol"]).encode(), value=json.dumps(t).encode(), partition=0
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


def _jump(symbol: str, start: int, before: int = 6) -> list[dict[str, object]]:
    """`before` quiet trades at 100, then a print 15 % higher."""
    quiet = [{"symbol": symbol, "price": 100.0, "volume": 10, "ts": start + i} for i in range(before)]
    return [*quiet, {"symbol": symbol, "price": 115.0, "volume": 10, "ts": start + before}]


def _manifest_offset(settings: Settings, service: AlertProcess) -> int:
    key = f"{service.group}|{service.topics.trades}|0".encode()  # the partition's manifest
    offsets = [
        json.loads(v)["next_offset"] for k, v in read_all(settings, service.state_topic) if k == key and v
    ]
    return offsets[-1] if offsets else -1


def _alerts_of(settings: Settings, topics: RelTopics, symbol: str) -> list[str]:
    alerts = [json.loads(v) for _, v in read_all(settings, topics.alerts) if v]
    return [a["alert_id"] for a in alerts if a["symbol"] == symbol]


def test_alert_service_survives_20000_symbols(
    settings: Settings, rel_topics: RelTopics, tmp_path: Path, scenario: Scenario
) -> None:
    """alert service with 20,000 symbols on one partition, SIGKILLed."""
    # stale_feed off: 20,000 symbols with one trade each would all be "stale" minutes later
    rules = rules_file(tmp_path, stale_feed={"enabled": False})
    service = AlertProcess(rel_topics, rules, tmp_path / "alerts.log")
    service.start()
    t0 = now_ms() - 600_000
    try:
        crowd = [
            {"symbol": f"RELS{i:05d}", "price": 50.0 + i % 100, "volume": 1, "ts": t0 + i // 100}
            for i in range(SYMBOLS)
        ]
        # the second jump's symbol gets its quiet trades now, its jump only after the restart
        crowd += _jump("RELJUMP1", t0 + 1_000) + _jump("RELJUMP2", t0 + 2_000)[:-1]
        _produce(rel_topics, crowd)
        total = len(crowd)
        service.wait_metric("tickhouse_alerts_trades_evaluated_total", total)
        deadline = time.monotonic() + 120
        while _manifest_offset(settings, service) < total:
            service.check_alive()
            assert time.monotonic() < deadline, "no checkpoint of the 20,000 symbols"
            time.sleep(1)
        assert service.metric("tickhouse_alerts_symbols") == SYMBOLS + 2
        assert _alerts_of(settings, rel_topics, "RELJUMP1"), "no alert on a 15 % jump"

        service.stop(signal.SIGKILL)
        service.start()
        assert f"checkpoint at offset {total} ({SYMBOLS + 2} symbols)" in service.log()
        # only the restored history (six quiet trades) makes the jump a suspicious tick
        _produce(rel_topics, _jump("RELJUMP2", t0 + 2_000)[-1:])
        deadline = time.monotonic() + 60
        while not any(True for _ in _alerts_of(settings, rel_topics, "RELJUMP2")):
            service.check_alive()
            assert time.monotonic() < deadline, "no alert on the jump after the restart"
            time.sleep(0.5)
        rules_fired = {
            (a["symbol"], a["rule"])
            for a in (json.loads(v) for _, v in read_all(settings, rel_topics.alerts) if v)
            if a["symbol"].startswith("RELJUMP")
        }
        assert ("RELJUMP2", "suspicious_tick") in rules_fired, rules_fired
        failures = service.metric('tickhouse_alerts_checkpoint_failures_total{reason="too_large"}')
        assert not failures
        assert service.stop() == 0
    finally:
        service.stop()
    jumps = _alerts_of(settings, rel_topics, "RELJUMP1") + _alerts_of(settings, rel_topics, "RELJUMP2")
    scenario.kills = service.kills
    scenario.messages = total + 1
    scenario.lost = 0
    scenario.doubled = len(jumps) - len(set(jumps))
    scenario.note(f"{SYMBOLS:,} symbols checkpointed and restored; jump alerts {sorted(rules_fired)}")
    assert scenario.doubled == 0
