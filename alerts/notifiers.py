"""Notifiers (Slack incoming webhook, generic HTTP webhook, SMTP email), off the hot path.

The consumer only calls `Dispatcher.submit(alert)`, which never blocks: every notifier has its
own bounded queue and worker thread, so a notifier that hangs or fails delays nobody but itself.
A full queue drops the alert for that notifier (counted). Sends are retried with exponential
backoff and jitter. Secrets (webhook URLs, SMTP credentials) come from environment variables and
are never logged: log lines name the notifier and the variable, not its value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import smtplib
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import Protocol

from prometheus_client import Counter

from alerts.config import DEFAULT_URL_ENV, NotifierConfig
from tickhouse.schemas import SEVERITIES, Alert, to_json

log = logging.getLogger("tickhouse.alerts.notifiers")

NOTIFICATIONS = Counter(
    "tickhouse_alerts_notifications_total",
    "Notifier deliveries by outcome (sent, failed after retries, dropped on a full queue)",
    ["notifier", "outcome"],
)


class NotifierError(RuntimeError):
    """A send failed; the message never contains the secret URL."""


class Sender(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


def _post_json(url: str, body: bytes, timeout: float, what: str) -> None:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "tickhouse-alerts"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1024)
    except urllib.error.HTTPError as err:
        raise NotifierError(f"{what}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise NotifierError(f"{what}: {type(reason).__name__}: {reason}") from None


class WebhookSender:
    """POSTs the CONTRACT §3 alert JSON to a URL."""

    def __init__(self, name: str, url: str, timeout: float) -> None:
        self.name = name
        self._url = url
        self._timeout = timeout

    def send(self, alert: Alert) -> None:
        _post_json(self._url, to_json(alert), self._timeout, self.name)

    def __repr__(self) -> str:  # never show the URL
        return f"WebhookSender({self.name!r})"


class SlackSender:
    """Slack incoming webhook: a `text` message."""

    def __init__(self, name: str, url: str, timeout: float) -> None:
        self.name = name
        self._url = url
        self._timeout = timeout

    def send(self, alert: Alert) -> None:
        icon = {
            "info": ":information_source:",
            "warning": ":warning:",
            "critical": ":rotating_light:",
        }
        text = f"{icon.get(alert.severity, '')} *{alert.rule}* {alert.message} (`{alert.alert_id}`)"
        _post_json(self._url, json.dumps({"text": text}).encode(), self._timeout, self.name)

    def __repr__(self) -> str:
        return f"SlackSender({self.name!r})"


class EmailSender:
    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        user: str,
        password: str,
        sender: str,
        recipients: list[str],
        starttls: bool,
        timeout: float,
    ) -> None:
        self.name = name
        self._host, self._port, self._user, self._password = host, port, user, password
        self._from, self._to = sender, recipients
        self._starttls = starttls
        self._timeout = timeout

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = f"[tickhouse {alert.severity}] {alert.rule} {alert.symbol}"
        message["From"] = self._from
        message["To"] = ", ".join(self._to)
        message.set_content(f"{alert.message}\n\n{json.dumps(alert.to_dict(), indent=2, default=str)}\n")
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls()
                if self._user:
                    smtp.login(self._user, self._password)
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as err:
            raise NotifierError(f"{self.name}: {type(err).__name__}") from None

    def __repr__(self) -> str:
        return f"EmailSender({self.name!r})"


def build_sender(cfg: NotifierConfig, environ: Mapping[str, str] | None = None) -> Sender | None:
    """The sender for one configured notifier, or None (logged) when its secrets are not set."""
    env = os.environ if environ is None else environ
    if cfg.type in ("slack", "webhook"):
        url_env = cfg.url_env or DEFAULT_URL_ENV[cfg.type]
        url = env.get(url_env, "")
        if not url:
            log.info("notifier %s off: %s is not set", cfg.name, url_env)
            return None
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"notifier {cfg.name}: {url_env} must be an http(s) URL")
        cls = SlackSender if cfg.type == "slack" else WebhookSender
        return cls(cfg.name, url, cfg.timeout_seconds)
    host = env.get(cfg.smtp_host_env, "")
    recipients = [r.strip() for r in env.get(cfg.email_to_env, "").split(",") if r.strip()]
    if not host or not recipients:
        log.info("notifier %s off: %s or %s is not set", cfg.name, cfg.smtp_host_env, cfg.email_to_env)
        return None
    port_raw = env.get(cfg.smtp_port_env, "587")
    if not port_raw.isdigit():
        raise ValueError(f"notifier {cfg.name}: {cfg.smtp_port_env}={port_raw!r} is not a port")
    return EmailSender(
        cfg.name,
        host,
        int(port_raw),
        env.get(cfg.smtp_user_env, ""),
        env.get(cfg.smtp_password_env, ""),
        env.get(cfg.email_from_env, "") or "tickhouse-alerts@localhost",
        recipients,
        cfg.smtp_starttls,
        cfg.timeout_seconds,
    )


_STOP = object()


class NotifierWorker:
    """One sender, its bounded queue and its thread."""

    def __init__(
        self,
        sender: Sender,
        cfg: NotifierConfig,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sender = sender
        self.cfg = cfg
        self.min_rank = SEVERITIES.index(cfg.min_severity)
        self.queue: queue.Queue[object] = queue.Queue(maxsize=cfg.queue_size)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._sleep = sleep
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"notifier-{cfg.name}", daemon=True)

    def submit(self, alert: Alert) -> None:
        if SEVERITIES.index(alert.severity) < self.min_rank:
            return
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            NOTIFICATIONS.labels(self.cfg.name, "dropped").inc()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            assert isinstance(item, Alert)
            self._deliver(item)

    def _deliver(self, alert: Alert) -> None:
        delay = self.cfg.backoff_seconds
        for attempt in range(1, self.cfg.max_attempts + 1):
            try:
                self.sender.send(alert)
            except Exception as err:
                # the error text names the notifier and the failure, never the URL
                log.warning(
                    "notifier %s: attempt %d/%d for alert %s failed: %s",
                    self.cfg.name,
                    attempt,
                    self.cfg.max_attempts,
                    alert.alert_id,
                    err if isinstance(err, NotifierError) else type(err).__name__,
                )
                if attempt == self.cfg.max_attempts or self._stopping.is_set():
                    break
                self._sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 60.0)
            else:
                self.sent += 1
                NOTIFICATIONS.labels(self.cfg.name, "sent").inc()
                return
        self.failed += 1
        NOTIFICATIONS.labels(self.cfg.name, "failed").inc()


class Dispatcher:
    """Fans alerts out to every notifier without ever blocking the caller."""

    def __init__(self, workers: list[NotifierWorker]) -> None:
        self.workers = workers

    @classmethod
    def from_config(
        cls, configs: tuple[NotifierConfig, ...], environ: Mapping[str, str] | None = None
    ) -> Dispatcher:
        workers = []
        for cfg in configs:
            sender = build_sender(cfg, environ)
            if sender is not None:
                log.info("notifier %s on (%s)", cfg.name, cfg.type)
                workers.append(NotifierWorker(sender, cfg))
        return cls(workers)

    def start(self) -> None:
        for worker in self.workers:
            worker.thread.start()

    def submit(self, alert: Alert) -> None:
        for worker in self.workers:
            worker.submit(alert)

    def stop(self, timeout: float = 5.0) -> None:
        """Let the workers finish what is queued, up to `timeout` seconds in all."""
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker._stopping.set()
            with contextlib.suppress(queue.Full):
                worker.queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            if worker.thread.is_alive():
                worker.thread.join(max(0.0, deadline - time.monotonic()))
