"""Notifier senders: retries with backoff, payloads that carry the alert_id, transport rules
(https for Slack, http only to this machine, no plain SMTP to a remote relay), secrets never logged."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts.config import NotifierConfig
from alerts.errors import AlertsError, NotifierConfigError, NotifierError
from alerts.notifiers import SlackSender, WebhookSender, build_sender, deliver, is_local_host
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


class Flaky:
    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def send(self, alert: Alert) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise NotifierError("flaky: HTTP 500 Internal Server Error")


def test_retries_with_growing_backoff_then_succeeds() -> None:
    sleeps: list[float] = []
    sender = Flaky(failures=3)
    cfg = NotifierConfig(type="webhook", name="flaky", max_attempts=5, backoff_seconds=0.1)
    assert deliver(sender, make_alert(), cfg, sleep=sleeps.append) == (True, 4, "")
    assert sender.calls == 4 and len(sleeps) == 3
    # jittered in [0.5, 1.5) x 0.1, 0.2, 0.4
    for base, slept in zip([0.1, 0.2, 0.4], sleeps, strict=True):
        assert 0.5 * base <= slept < 1.5 * base


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    sender = Flaky(failures=100)
    cfg = NotifierConfig(type="webhook", name="flaky", max_attempts=3, backoff_seconds=0.01)
    ok, attempts, error = deliver(sender, make_alert(), cfg, sleep=lambda s: None)
    assert (ok, attempts, sender.calls) == (False, 3, 3)
    assert "HTTP 500" in error


def test_stopping_ends_the_retries_early() -> None:
    sender = Flaky(failures=100)
    stopping = threading.Event()
    cfg = NotifierConfig(type="webhook", name="flaky", max_attempts=10, backoff_seconds=0.01)

    def sleep(seconds: float) -> None:
        stopping.set()

    assert deliver(sender, make_alert(), cfg, sleep=sleep, stopping=stopping)[:2] == (False, 2)


def test_notifiers_without_their_secret_are_off() -> None:
    assert build_sender(NotifierConfig(type="slack", name="s", url_env="SLACK_X"), {}) is None
    assert build_sender(NotifierConfig(type="email", name="e"), {"SMTP_HOST": "h"}) is None
    sender = build_sender(
        NotifierConfig(type="webhook", name="w", url_env="HOOK"), {"HOOK": "http://127.0.0.1:9/x"}
    )
    assert isinstance(sender, WebhookSender)


@pytest.mark.parametrize(
    ("kind", "url", "allowed"),
    [
        ("slack", "https://hooks.slack.com/services/T/B/X", True),
        ("slack", "http://hooks.slack.com/services/T/B/X", False),
        ("slack", "http://127.0.0.1:8080/services/T/B/X", False),  # https only, even locally
        ("webhook", "https://example.com/hook", True),
        ("webhook", "http://127.0.0.1:8080/hook", True),
        ("webhook", "http://127.9.9.9/hook", True),
        ("webhook", "http://[::1]:8080/hook", True),
        ("webhook", "http://localhost:8080/hook", True),
        ("webhook", "http://example.com/hook", False),
        ("webhook", "http://10.0.0.5/hook", False),
        ("webhook", "ftp://127.0.0.1/hook", False),
        ("webhook", "127.0.0.1:8080/hook", False),
    ],
)
def test_webhook_transport_rules(kind: str, url: str, allowed: bool) -> None:
    cfg = NotifierConfig(type=kind, name=kind, url_env="URL")
    if allowed:
        assert build_sender(cfg, {"URL": url}) is not None
    else:
        with pytest.raises(NotifierConfigError, match="URL must be an https://") as err:
            build_sender(cfg, {"URL": url})
        assert isinstance(err.value, AlertsError)
        assert "services/T/B/X" not in str(err.value)  # the secret part of the URL is not shown


def test_plain_smtp_only_to_a_local_relay(tmp_path: object) -> None:
    env = {"SMTP_HOST": "smtp.example.com", "ALERTS_EMAIL_TO": "ops@example.com"}
    plain = NotifierConfig(type="email", name="mail", smtp_starttls=False)
    with pytest.raises(NotifierConfigError, match="clear text"):
        build_sender(plain, env)
    assert build_sender(plain, {**env, "SMTP_HOST": "127.0.0.1"}) is not None
    with pytest.raises(NotifierConfigError, match="SMTP_CA_FILE="):
        build_sender(NotifierConfig(type="email", name="mail"), {**env, "SMTP_CA_FILE": "/nonexistent.pem"})
    assert is_local_host("localhost") and is_local_host("::1") and not is_local_host("10.1.1.1")


class Receiver(BaseHTTPRequestHandler):
    status = 200
    requests: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).requests.append((dict(self.headers), self.rfile.read(length)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    Receiver.requests = []
    Receiver.status = 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_webhook_and_slack_payloads_carry_the_alert_id(server: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    WebhookSender("webhook", url, 2).send(make_alert())
    SlackSender("slack", url, 2).send(make_alert())  # the class itself; build_sender wants https
    (hook_headers, hook_body), (slack_headers, slack_body) = Receiver.requests
    assert parse_alert(hook_body) == make_alert()
    text = json.loads(slack_body)["text"]
    assert "price_move_up" in text and "AAPL rose" in text and text.endswith("(`id0`)")
    for headers in (hook_headers, slack_headers):
        assert headers["Idempotency-Key"] == "id0"
        assert headers["X-Tickhouse-Alert-Id"] == "id0"


def test_failure_logs_never_contain_the_secret_url(
    server: ThreadingHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    Receiver.status = 500
    url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/SECRETTOKEN"
    sender = build_sender(NotifierConfig(type="webhook", name="hook", url_env="HOOK"), {"HOOK": url})
    assert sender is not None
    cfg = NotifierConfig(type="webhook", name="hook", max_attempts=2)
    with caplog.at_level(logging.DEBUG):
        ok, _, error = deliver(sender, make_alert(), cfg, sleep=lambda s: None)
    assert not ok and len(Receiver.requests) == 2
    assert "HTTP 500" in caplog.text and "HTTP 500" in error
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
