"""The Finnhub key never reaches a log line: requests' error texts and third-party DEBUG lines."""

from __future__ import annotations

import io
import logging

import pytest
import requests

from producer.finnhub_quotes import RedactingFilter, hide_secret_in_logs
from tickhouse.redaction import redact

pytestmark = pytest.mark.unit

KEY = "abc/def+ghi=42"


def test_redact_plain_and_url_encoded_forms() -> None:
    text = f"url: /quote?token={KEY}&x=1 or /quote?token=abc%2Fdef%2Bghi%3D42"
    out = redact(text, [KEY])
    assert "abc" not in out and out.count("***") == 2
    assert redact("nothing here", [""]) == "nothing here"


def test_filter_masks_messages_args_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(KEY))
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("GET /?token=%s HTTP/1.1", KEY)
        try:
            raise requests.ConnectionError(f"Max retries exceeded with url: /quote?token={KEY}")
        except requests.ConnectionError:
            log.exception("quote failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert KEY not in text
    assert "token=***" in text and "Max retries exceeded" in text


def test_hide_secret_installs_once_on_root_handlers() -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        hide_secret_in_logs(KEY)
        hide_secret_in_logs(KEY)
        hide_secret_in_logs("")
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    finally:
        root.removeHandler(handler)
