"""Notifications at least once: the alert service is SIGKILLed while its webhook notifier is busy
delivering; every alert on the topic still reaches the receiver, and a clean restart re-sends none.
Before the fix, notifications sat in an in-memory queue and a kill lost them."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.reliability.alert_process import AlertProcess, read_all, rules_file
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import RelTopics, env_int
from tickhouse.config import Settings
from tickhouse.schemas import now_ms

TRADES = env_int("RELIABILITY_NOTIFY_TRADES", 3_000)  # every 10th fires an alert
KILLS = env_int("RELIABILITY_NOTIFY_KILLS", 3)


class Receiver(BaseHTTPRequestHandler):
    """A webhook that takes 30 ms per alert and records every alert_id it was sent."""

    received: list[str] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(0.03)
        with type(self).lock:
            type(self).received.append(json.loads(body)["alert_id"])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def _count() -> int:
    with Receiver.lock:
        return len(Receiver.received)


def test_notifications_survive_sigkill(
    settings: Settings, rel_topics: RelTopics, tmp_path: Path, receiver: str, scenario: Scenario
) -> None:
    """notifier SIGKILLed while delivering, then a clean restart."""
    rules = rules_file(
        tmp_path,
        suspicious_tick={"band_pct": 5.0, "cooldown_seconds": 0},
        stale_feed={"enabled": False},
        notifiers=[{"type": "webhook", "url_env": "REL_HOOK", "max_attempts": 10, "backoff_seconds": 0.1}],
    )
    # The trades are an hour old; the age limit (its own test) would rightly hold them all back.
    env = {
        "REL_HOOK": receiver,
        "ALERTS_NOTIFY_GROUP": f"rel-notify-{rel_topics.suffix}",
        "ALERTS_NOTIFY_MAX_AGE_SECONDS": "0",
    }
    service = AlertProcess(rel_topics, rules, tmp_path / "alerts.log", env=env)
    service.start()
    start = now_ms() - 3_600_000
    trades = [
        {"symbol": f"RELN{i % 3}", "price": 110.0 if i % 10 == 9 else 100.0, "volume": 1, "ts": start + i}
        for i in range(TRADES)
    ]
    expected_alerts = TRADES // 10
    try:
        rel_topics.produce(rel_topics.trades, [json.dumps(t).encode() for t in trades])
        # kill while the notifier is part-way through its backlog
        for k in range(KILLS):
            target = expected_alerts * (k + 1) // (KILLS + 2)
            deadline = time.monotonic() + 60
            while _count() < target and time.monotonic() < deadline:
                service.check_alive()
                time.sleep(0.05)
            if _count() < target:
                break  # notifications stopped coming: the figures below say how many were lost
            service.stop(signal.SIGKILL)
            service.start()
        on_topic = {json.loads(v)["alert_id"] for _, v in read_all(settings, rel_topics.alerts) if v}
        assert len(on_topic) >= expected_alerts
        deadline = time.monotonic() + 120
        while not on_topic <= set(Receiver.received):
            if service.proc is not None and service.proc.poll() is not None:
                break  # died: the assertion below says what is missing
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert service.stop() == 0, service.log()[-3000:]
        delivered = _count()
        # a clean stop committed everything delivered: a restart sends nothing again
        service.start()
        time.sleep(5)
        assert service.stop() == 0
        resent = _count() - delivered
    finally:
        service.stop()
    received = list(Receiver.received)
    lost = on_topic - set(received)
    doubled = len(received) - len(set(received))
    scenario.kills = service.kills
    scenario.messages = len(on_topic)
    scenario.lost = len(lost)
    scenario.doubled = doubled
    scenario.note(
        f"{len(on_topic)} alerts, {len(received)} notifications; repeats {doubled} "
        "(in flight at a kill: received, never acknowledged; receivers drop them by alert_id), "
        f"after a clean restart {resent}"
    )
    assert not lost, f"{len(lost)} alerts never notified"
    assert resent == 0, f"{resent} notifications re-sent after a clean restart"
    assert doubled <= service.kills, f"{doubled} repeats for {service.kills} kills"
