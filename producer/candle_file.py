"""Candles from a file for `tickhouse backfill --source file`: CSV or JSONL, optionally gzipped.

CSV: a header row naming at least `symbol,resolution,bar_start,open,high,low,close,volume`, in any
order, and optionally `source`; one candle per row. JSONL: one JSON object per line with those
fields (docs/interfaces/kafka-messages.md `market.candles`). `bar_start` is epoch milliseconds; `resolution`
one of Finnhub's 1, 5, 15, 30, 60, D, W, M. Rows are checked with the same validation the drain applies
(`tickhouse.schemas.validate_candle`), so a row that passes here is loaded, not quarantined; a bad row is
reported with its line number and the reason naming the field and the offending value. Rows without a `source`
get `"source": "file"`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TextIO

from producer.errors import ProducerError
from producer.replay import ReplayError, file_format, open_text
from tickhouse.schemas import Candle, InvalidMessage, now_ms, validate_candle

SOURCE = "file"
REQUIRED = ("symbol", "resolution", "bar_start", "open", "high", "low", "close", "volume")
NUMERIC = ("bar_start", "open", "high", "low", "close", "volume")
_INTEGER = re.compile(r"-?[0-9]+")


class CandleFileError(ProducerError, ValueError):
    """The file cannot be read as candles at all (missing, unknown format, header lacks columns)."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that is not a valid candle: where it is and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def _csv_value(column: str, text: str) -> Any:
    """A CSV cell -> what the JSON message would carry (numbers as int / Decimal, as JSON does)."""
    text = text.strip()
    if column not in NUMERIC:
        return text
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        return Decimal(text)
    except InvalidOperation:
        return text  # validation names it: "must be a JSON number, got string ..."


def _csv_objects(handle: TextIO, path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        return
    columns = [c.strip().lower() for c in header]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise CandleFileError(
            f"{path}: the CSV header lacks {', '.join(missing)}; it must name "
            f"{','.join(REQUIRED)}[,source] (got {','.join(header)})"
        )
    width = len(columns)
    for line, row in enumerate(reader, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != width:
            yield line, f"expected {width} columns as in the header, got {len(row)}: {row!r:.200}"
            continue
        obj = {name: _csv_value(name, cell) for name, cell in zip(columns, row, strict=True)}
        if obj.get("source") == "":
            del obj["source"]
        yield line, obj


def _jsonl_objects(handle: TextIO) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for line, text in enumerate(handle, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text, parse_float=Decimal)
        except ValueError as err:
            yield line, f"not valid JSON: {err}"
            continue
        if not isinstance(obj, dict):
            yield line, f"not a JSON object: {text.strip()[:80]}"
            continue
        yield line, obj


def read_candles(path: Path, now: int | None = None) -> Iterator[Candle | BadRow]:
    """Each row of the file, in order: a valid Candle or the BadRow saying what is wrong.

    Raises CandleFileError when the file cannot be read as candles at all.
    """
    try:
        fmt = file_format(path)
        handle = open_text(path)
    except ReplayError as err:
        raise CandleFileError(str(err).replace("replay file", "file")) from None
    current = now_ms() if now is None else now
    with handle:
        try:
            rows = _csv_objects(handle, path) if fmt == "csv" else _jsonl_objects(handle)
            for line, obj in rows:
                if isinstance(obj, str):
                    yield BadRow(line, obj)
                    continue
                obj.setdefault("source", SOURCE)
                try:
                    yield validate_candle(obj, current)
                except InvalidMessage as err:
                    yield BadRow(line, str(err))
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as err:
            raise CandleFileError(f"{path}: cannot be read: {err}") from None
