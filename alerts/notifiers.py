"""Notifier senders (Slack incoming webhook, generic HTTP webhook, SMTP email) and their retries.

Each delivery carries the alert's `alert_id` so that receivers can drop a repeat (delivery is
at-least-once, see `alerts/notify.py`): webhook and Slack requests have an `Idempotency-Key` header
(the webhook body is the alert itself), Slack's text ends with the id, an email's Message-ID is
`<alert_id@tickhouse.alerts>`. Transport is authenticated: Slack webhooks must be https://, a
generic webhook may be http:// only to this machine (127.0.0.1, ::1, localhost), and SMTP talks
STARTTLS with a verifying TLS context (the system's CAs, or those of SMTP_CA_FILE). Secrets (webhook
URLs, SMTP credentials) come from environment variables and are never logged: log lines name the
notifier and the variable, not its value.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from typing import Protocol

from alerts import metrics
from alerts.config import DEFAULT_URL_ENV, NotifierConfig
from alerts.errors import NotifierConfigError, NotifierError
from tickhouse.schemas import Alert, to_json

log = logging.getLogger("tickhouse.alerts.notifiers")

__all__ = ["NotifierError", "Sender", "build_sender", "deliver"]


class Sender(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


def _post_json(url: str, body: bytes, timeout: float, what: str, alert_id: str) -> None:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "tickhouse-alerts",
            "Idempotency-Key": alert_id,
            "X-Tickhouse-Alert-Id": alert_id,
        },
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
    """POSTs the docs/interfaces/kafka-messages.md alert JSON to a URL."""

    def __init__(self, name: str, url: str, timeout: float) -> None:
        self.name = name
        self._url = url
        self._timeout = timeout

    def send(self, alert: Alert) -> None:
        _post_json(self._url, to_json(alert), self._timeout, self.name, alert.alert_id)

    def __repr__(self) -> str:  # never show the URL
        return f"WebhookSender({self.name!r})"


class SlackSender:
    """Slack incoming webhook: a `text` message ending with the alert id."""

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
        body = json.dumps({"text": text}).encode()
        _post_json(self._url, body, self._timeout, self.name, alert.alert_id)

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
        tls: ssl.SSLContext | None,
        timeout: float,
    ) -> None:
        self.name = name
        self._host, self._port, self._user, self._password = host, port, user, password
        self._from, self._to = sender, recipients
        self._tls = tls  # None: plain SMTP, allowed only to a relay on this machine
        self._timeout = timeout

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = f"[tickhouse {alert.severity}] {alert.rule} {alert.symbol}"
        message["From"] = self._from
        message["To"] = ", ".join(self._to)
        message["Message-ID"] = f"<{alert.alert_id}@tickhouse.alerts>"
        message["X-Tickhouse-Alert-Id"] = alert.alert_id
        message.set_content(f"{alert.message}\n\n{json.dumps(alert.to_dict(), indent=2, default=str)}\n")
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._tls is not None:
                    smtp.starttls(context=self._tls)
                if self._user:
                    smtp.login(self._user, self._password)
                smtp.send_message(message)
        except ssl.SSLCertVerificationError as err:
            raise NotifierError(
                f"{self.name}: the SMTP server's certificate is not trusted ({err.verify_message}); "
                "set SMTP_CA_FILE to the CA that signed it"
            ) from None
        except (smtplib.SMTPException, OSError) as err:
            raise NotifierError(f"{self.name}: {type(err).__name__}: {err}") from None

    def __repr__(self) -> str:
        return f"EmailSender({self.name!r})"


def is_local_host(host: str) -> bool:
    """This machine: localhost or a loopback address."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_url(cfg: NotifierConfig, url_env: str, url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if cfg.type == "slack":
        raise NotifierConfigError(
            f"notifier {cfg.name}: {url_env} must be an https:// Slack webhook URL "
            f"(got a {parts.scheme or 'scheme-less'} URL)"
        )
    if parts.scheme == "http" and parts.hostname and is_local_host(parts.hostname):
        return
    raise NotifierConfigError(
        f"notifier {cfg.name}: {url_env} must be an https:// URL "
        "(http:// only to this machine: 127.0.0.1, ::1 or localhost)"
    )


def _tls_context(cfg: NotifierConfig, env: Mapping[str, str]) -> ssl.SSLContext:
    ca_file = env.get(cfg.smtp_ca_file_env, "")
    if not ca_file:
        return ssl.create_default_context()
    if not os.path.isfile(ca_file):
        raise NotifierConfigError(f"notifier {cfg.name}: {cfg.smtp_ca_file_env}={ca_file!r} is not a file")
    try:
        return ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as err:
        raise NotifierConfigError(
            f"notifier {cfg.name}: {cfg.smtp_ca_file_env}={ca_file!r} holds no usable PEM certificate: {err}"
        ) from None


def build_sender(cfg: NotifierConfig, environ: Mapping[str, str] | None = None) -> Sender | None:
    """The sender for one configured notifier, or None (logged) when its secrets are not set;
    NotifierConfigError when its settings are unsafe or unusable."""
    env = os.environ if environ is None else environ
    if cfg.type in ("slack", "webhook"):
        url_env = cfg.url_env or DEFAULT_URL_ENV[cfg.type]
        url = env.get(url_env, "")
        if not url:
            log.info("notifier %s off: %s is not set", cfg.name, url_env)
            return None
        _check_url(cfg, url_env, url)
        cls = SlackSender if cfg.type == "slack" else WebhookSender
        return cls(cfg.name, url, cfg.timeout_seconds)
    host = env.get(cfg.smtp_host_env, "")
    recipients = [r.strip() for r in env.get(cfg.email_to_env, "").split(",") if r.strip()]
    if not host or not recipients:
        log.info("notifier %s off: %s or %s is not set", cfg.name, cfg.smtp_host_env, cfg.email_to_env)
        return None
    port_raw = env.get(cfg.smtp_port_env, "587")
    if not port_raw.isdigit():
        raise NotifierConfigError(f"notifier {cfg.name}: {cfg.smtp_port_env}={port_raw!r} is not a port")
    if not cfg.smtp_starttls and not is_local_host(host):
        raise NotifierConfigError(
            f"notifier {cfg.name}: smtp_starttls is off, which sends alerts and the SMTP password in "
            f"clear text; that is allowed only to a relay on this machine, not {cfg.smtp_host_env}={host!r}"
        )
    return EmailSender(
        cfg.name,
        host,
        int(port_raw),
        env.get(cfg.smtp_user_env, ""),
        env.get(cfg.smtp_password_env, ""),
        env.get(cfg.email_from_env, "") or "tickhouse-alerts@localhost",
        recipients,
        _tls_context(cfg, env) if cfg.smtp_starttls else None,
        cfg.timeout_seconds,
    )


def deliver(
    sender: Sender,
    alert: Alert,
    cfg: NotifierConfig,
    sleep: Callable[[float], object] = time.sleep,
    stopping: threading.Event | None = None,
) -> tuple[bool, int, str]:
    """Send with up to `max_attempts` tries, exponential backoff and jitter between them; returns
    (delivered, attempts, last error). Gives up early when `stopping` is set."""
    delay = cfg.backoff_seconds
    error = ""
    for attempt in range(1, cfg.max_attempts + 1):
        try:
            sender.send(alert)
        except Exception as err:
            # the error text names the notifier and the failure, never the URL
            error = str(err) if isinstance(err, NotifierError) else type(err).__name__
            metrics.NOTIFY_ATTEMPT_FAILURES.labels(cfg.name).inc()
            log.warning(
                "notifier %s: attempt %d/%d for alert %s failed: %s",
                cfg.name,
                attempt,
                cfg.max_attempts,
                alert.alert_id,
                error,
            )
            if attempt == cfg.max_attempts or (stopping is not None and stopping.is_set()):
                return False, attempt, error
            sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 60.0)
        else:
            return True, attempt, ""
    return False, cfg.max_attempts, error
