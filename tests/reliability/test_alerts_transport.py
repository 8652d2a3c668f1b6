"""Notifier transport security: SMTP STARTTLS verifies the server's certificate,
against a real local SMTP server with a self-signed one; Slack webhooks are https:// only and a
generic webhook may use http:// only to this machine."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alerts.config import NotifierConfig
from alerts.notifiers import NotifierError, build_sender
from tests.reliability.conftest import Scenario
from tickhouse.schemas import Alert

ALERT = Alert("a1b2c3", "AAPL", "price_move_up", "critical", "AAPL rose 5%", 1, 2, {"pct": 5})


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tickhouse test SMTP")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp.pem", directory / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class Mailbox:
    messages: list[bytes] = field(default_factory=list)
    refused_handshakes: int = 0
    plain_mail_commands: int = 0  # MAIL FROM before STARTTLS: a downgrade


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough ESMTP with STARTTLS for smtplib: EHLO, STARTTLS, MAIL, RCPT, DATA, QUIT."""

    tls: ssl.SSLContext
    box: Mailbox

    def handle(self) -> None:
        conn = self.request
        reader, tls_on = self.rfile, False

        def send(line: str) -> None:
            conn.sendall(line.encode() + b"\r\n")

        send("220 localhost ESMTP test")
        while True:
            line = reader.readline()
            if not line:
                return
            verb = line.decode(errors="replace").strip().upper()
            if verb.startswith(("EHLO", "HELO")):
                send("250-localhost" if not tls_on else "250 localhost")
                if not tls_on:
                    send("250 STARTTLS")
            elif verb == "STARTTLS":
                send("220 ready for TLS")
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    self.box.refused_handshakes += 1
                    return
                reader, tls_on = conn.makefile("rb"), True
            elif verb.startswith("MAIL"):
                if not tls_on:
                    self.box.plain_mail_commands += 1
                send("250 ok")
            elif verb.startswith("RCPT"):
                send("250 ok")
            elif verb == "DATA":
                send("354 go ahead")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = reader.readline()
                    if not chunk:
                        return
                    data += chunk
                self.box.messages.append(data)
                send("250 queued")
            elif verb == "QUIT":
                send("221 bye")
                return
            else:
                send("500 unknown")


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[int, Path, Mailbox]]:
    cert, key = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    box = Mailbox()
    handler = type("Handler", (_Smtp,), {"tls": tls, "box": box})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert, box
    server.shutdown()
    server.server_close()


def test_smtp_starttls_verifies_the_server_certificate(
    smtp: tuple[int, Path, Mailbox], scenario: Scenario
) -> None:
    """SMTP STARTTLS to a server with an untrusted certificate."""
    port, cert, box = smtp
    env = {"SMTP_HOST": "localhost", "SMTP_PORT": str(port), "ALERTS_EMAIL_TO": "ops@example.com"}
    cfg = NotifierConfig(type="email", name="mail", timeout_seconds=20)
    scenario.messages = 2
    untrusted = build_sender(cfg, env)
    assert untrusted is not None
    with pytest.raises(NotifierError) as err:
        untrusted.send(ALERT)
    scenario.note(f"untrusted certificate: {err.value}")
    assert box.messages == [], "the alert went to a server whose certificate nobody checked"
    deadline = time.monotonic() + 5  # the server's thread sees the refused handshake a moment later
    while box.refused_handshakes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert box.refused_handshakes == 1 and box.plain_mail_commands == 0
    assert "SMTP_CA_FILE" in str(err.value)

    trusted = build_sender(cfg, {**env, "SMTP_CA_FILE": str(cert)})
    assert trusted is not None
    trusted.send(ALERT)
    assert len(box.messages) == 1 and box.plain_mail_commands == 0
    message = box.messages[0].decode()
    assert "Message-ID: <a1b2c3@tickhouse.alerts>" in message
    assert "X-Tickhouse-Alert-Id: a1b2c3" in message
    scenario.lost, scenario.doubled = 0, 0
    scenario.note("with SMTP_CA_FILE naming its CA: delivered over TLS, Message-ID from the alert_id")


WEBHOOKS = [
    ("slack", "http://hooks.slack.com/services/T0/B0/SECRET", False),
    ("slack", "http://127.0.0.1:9/services/T0/B0/SECRET", False),
    ("slack", "https://hooks.slack.com/services/T0/B0/SECRET", True),
    ("webhook", "http://alerts.example.com/SECRET", False),
    ("webhook", "https://alerts.example.com/SECRET", True),
    ("webhook", "http://127.0.0.1:9/SECRET", True),
]


def test_webhooks_refuse_cleartext_to_other_machines(scenario: Scenario) -> None:
    """Slack webhook https only; generic webhook http only locally."""
    scenario.messages = len(WEBHOOKS)
    refused = []
    for kind, url, allowed in WEBHOOKS:
        cfg = NotifierConfig(type=kind, name=kind, url_env="HOOK_URL")
        if allowed:
            assert build_sender(cfg, {"HOOK_URL": url}) is not None, url
            continue
        with pytest.raises(ValueError, match="HOOK_URL must be an https://") as err:
            build_sender(cfg, {"HOOK_URL": url})
        assert "SECRET" not in str(err.value)
        refused.append(f"{kind} {url.split('/services')[0].split('/SECRET')[0]}")
    scenario.lost, scenario.doubled = 0, 0
    scenario.note("refused at start: " + ", ".join(refused))
