"""Secrets out of text a person or a log will read: the one redaction every service uses.

Standard library only, so a DAG's failure callback can import it at parse time.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

MASK = "***"
# credentials in any URI: scheme://user:password@host
_URI_CREDENTIALS = re.compile(r"(\w+://[^:/@\s]+):[^@\s]+@")


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret, as written or URL-encoded (a key in a query string), replaced by
    `***`, and the password of any `scheme://user:password@host` masked too."""
    forms = {form for secret in secrets if secret
             for form in (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret))}
    for form in sorted(forms, key=len, reverse=True):  # a secret inside a longer one: longest first
        text = text.replace(form, MASK)
    return _URI_CREDENTIALS.sub(rf"\1:{MASK}@", text)
