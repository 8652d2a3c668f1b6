"""Notifiers stay off the hot path: bounded queues, retries with backoff, secrets never logged."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts.config import NotifierConfig
from alerts.notifiers import (
    Dispatcher,
    NotifierError,
    NotifierWorker,
    SlackSender,
    WebhookSender,
    build_sender,
)
from alerts.service import alert_id
from tickhouse.schemas import Alert, parse_alert, to_json

pytestmark = pytest.mark.unit


def make_alert(n: int = 0, severity: str = "warning") -> Alert:
    return Alert(
        alert_id=f"id{n}",
        symbol="AAPL",
        rule="price_move_up",
        severity=severity,
        message="AAPL rose 2.00%",
        trade_ts=1_763_640_000_000,
        detected_ts=1_763_640_000_005,
        details={"change_pct": 2.0},
    )


class Hanging:
    name = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def send(self, alert: Alert) -> None:
        self.calls += 1
        self.release.wait(10)


class Flaky:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def send(self, alert: Alert) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise NotifierError("flaky: HTTP 500 Internal Server Error")


def test_hanging_notifier_never_blocks_submit_and_full_queue_drops() -> None:
    sender = Hanging()
    worker = NotifierWorker(sender, NotifierConfig(type="webhook", name="hanging", queue_size=5))
    dispatcher = Dispatcher([worker])
    dispatcher.start()
    try:
        started = time.perf_counter()
        for n in range(100):
            dispatcher.submit(make_alert(n))
        elapsed = time.perf_counter() - started
        assert elapsed < 0.05, f"submit blocked for {elapsed:.3f}s"
        # one in the hanging send, five queued, the rest dropped
        assert worker.dropped in (94, 95)
    finally:
        sender.release.set()
        dispatcher.stop(timeout=5)


def test_retries_with_growing_backoff_then_succeeds() -> None:
    sleeps: list[float] = []
    sender = Flaky(failures=3)
    cfg = NotifierConfig(type="webhook", name="flaky", max_attempts=5, backoff_seconds=0.1)
    worker = NotifierWorker(sender, cfg, sleep=sleeps.append)
    worker._deliver(make_alert())
    assert sender.calls == 4 and worker.sent == 1 and worker.failed == 0
    assert len(sleeps) == 3
    # jittered in [0.5, 1.5) x 0.1, 0.2, 0.4
    for base, slept in zip([0.1, 0.2, 0.4], sleeps, strict=True):
        assert 0.5 * base <= slept < 1.5 * base


def test_gives_up_after_max_attempts() -> None:
    sender = Flaky(failures=100)
    cfg = NotifierConfig(type="webhook", name="flaky", max_attempts=3, backoff_seconds=0.01)
    worker = NotifierWorker(sender, cfg, sleep=lambda s: None)
    worker._deliver(make_alert())
    assert sender.calls == 3 and worker.failed == 1 and worker.sent == 0


def test_min_severity_filters() -> None:
    sender = Flaky(failures=0)
    worker = NotifierWorker(sender, NotifierConfig(type="slack", name="s", min_severity="warning"))
    worker.submit(make_alert(1, "info"))
    worker.submit(make_alert(2, "critical"))
    assert worker.queue.qsize() == 1


def test_notifiers_without_their_secret_are_off() -> None:
    assert build_sender(NotifierConfig(type="slack", name="s", url_env="SLACK_X"), {}) is None
    assert build_sender(NotifierConfig(type="email", name="e"), {"SMTP_HOST": "h"}) is None
    sender = build_sender(
        NotifierConfig(type="webhook", name="w", url_env="HOOK"), {"HOOK": "http://127.0.0.1:9/x"}
    )
    assert isinstance(sender, WebhookSender)
    with pytest.raises(ValueError, match="HOOK must be an http"):
        build_sender(NotifierConfig(type="webhook", name="w", url_env="HOOK"), {"HOOK": "ftp://x"})


class Receiver(BaseHTTPRequestHandler):
    status = 200
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    Receiver.bodies = []
    Receiver.status = 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_webhook_and_slack_payloads(server: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    WebhookSender("webhook", url, 2).send(make_alert())
    SlackSender("slack", url, 2).send(make_alert())
    assert parse_alert(Receiver.bodies[0]) == make_alert()
    text = json.loads(Receiver.bodies[1])["text"]
    assert "price_move_up" in text and "AAPL rose" in text


def test_failure_logs_never_contain_the_secret_url(
    server: ThreadingHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    Receiver.status = 500
    url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/SECRETTOKEN"
    sender = build_sender(NotifierConfig(type="slack", name="slack"), {"SLACK_WEBHOOK_URL": url})
    assert sender is not None
    cfg = NotifierConfig(type="slack", name="slack", max_attempts=2)
    worker = NotifierWorker(sender, cfg, sleep=lambda s: None)
    with caplog.at_level(logging.DEBUG):
        worker._deliver(make_alert())
    assert worker.failed == 1 and len(Receiver.bodies) == 2
    assert "HTTP 500" in caplog.text
    assert "SECRETTOKEN" not in caplog.text and "SECRETTOKEN" not in repr(sender)


def test_alert_id_is_deterministic_and_distinct() -> None:
    a = alert_id("AAPL", "price_move_up", "market.trades", 0, 42)
    assert a == alert_id("AAPL", "price_move_up", "market.trades", 0, 42)
    others = {
        alert_id("AAPL", "price_move_down", "market.trades", 0, 42),
        alert_id("AAPL", "price_move_up", "market.trades", 1, 42),
        alert_id("AAPL", "price_move_up", "market.trades", 0, 43),
        alert_id("MSFT", "price_move_up", "market.trades", 0, 42),
    }
    assert a not in others and len(others) == 4
    assert len(a) == 32
    assert parse_alert(to_json(make_alert())).alert_id == "id0"
