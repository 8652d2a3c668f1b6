"""The drain's COPY text lines (rows.py) -> staging rows for Snowflake, all fields as text.

Validation and formatting happen once, in `batches.parse_batch`, for both warehouses; the
Snowflake loader takes the same lines and splits them back into fields here, so there is one
validation path. The conversions Snowflake needs on top (epoch ms for timestamps, JSON for the
conditions array, hex for binary) are done here; casts to the column types are done in SQL by
the loader.
"""

from __future__ import annotations

import calendar
import json
import re
import time

from drain.rows import COLUMNS

NULL = "\\N"
_UNESCAPES = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_ESCAPE = re.compile(r"\\(.)")
_ARRAY_ITEM = re.compile(r'"((?:[^"\\]|\\.)*)"')


def split_copy_line(line: str) -> list[str | None]:
    """One line of COPY text format -> its fields (None for \\N), escapes undone."""
    fields: list[str | None] = []
    for raw in line.rstrip("\n").split("\t"):
        if raw == NULL:
            fields.append(None)
        elif "\\" in raw:
            fields.append(_ESCAPE.sub(lambda m: _UNESCAPES.get(m.group(1), m.group(1)), raw))
        else:
            fields.append(raw)
    return fields


_second_cache: dict[str, int] = {}


def timestamp_ms(text: str | None) -> str | None:
    """rows.copy_timestamp's '2025-11-20 14:30:00.123+00' -> epoch milliseconds (as text)."""
    if text is None:
        return None
    seconds = _second_cache.get(text[:19])
    if seconds is None:
        if len(_second_cache) > 100_000:
            _second_cache.clear()
        seconds = calendar.timegm(time.strptime(text[:19], "%Y-%m-%d %H:%M:%S"))
        _second_cache[text[:19]] = seconds
    return str(seconds * 1000 + int(text[20:23]))


_array_cache: dict[str, str] = {}


def text_array_json(text: str | None) -> str | None:
    """A PostgreSQL text[] literal ('{"1","12"}') -> a JSON array ('["1", "12"]')."""
    if text is None:
        return None
    cached = _array_cache.get(text)
    if cached is None:
        items = [_ESCAPE.sub(r"\1", m.group(1)) for m in _ARRAY_ITEM.finditer(text)]
        cached = json.dumps(items, ensure_ascii=False)
        if len(_array_cache) < 10_000:
            _array_cache[text] = cached
    return cached


def bytea_hex(text: str | None) -> str | None:
    """bytea hex form ('\\x00ff') -> plain hex ('00ff') for TO_BINARY(.., 'HEX')."""
    return None if text is None else text[2:]


_TIMESTAMP_COLUMNS = {"kafka_timestamp", "event_time"}


def staging_row(kind: str, line: str) -> list[str | None]:
    """One COPY line of raw.<kind> (or quarantine) -> the staging row, in COLUMNS[kind] order."""
    fields = split_copy_line(line)
    columns = COLUMNS[kind]
    if len(fields) != len(columns):
        raise ValueError(f"{kind}: expected {len(columns)} fields, got {len(fields)}: {line!r}")
    for index, column in enumerate(columns):
        value = fields[index]
        if column in _TIMESTAMP_COLUMNS:
            fields[index] = timestamp_ms(value)
        elif column == "conditions":
            fields[index] = text_array_json(value)
        elif column in ("payload", "kafka_key", "payload_sha256"):
            fields[index] = bytea_hex(value)
    return fields
