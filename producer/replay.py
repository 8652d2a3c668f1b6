"""Replaying trades from a file (CSV or JSONL, optionally gzipped) at a chosen speed.

CSV: a header row with `symbol,price,volume,ts` and optionally `conditions` and `source`.
`conditions` holds the trade's condition codes separated by `;` (`1;12`; spaces around a code are
ignored, an empty cell is a trade without conditions); a code is letters and digits (Finnhub's
are numbers), so a cell such as `1,12` or `[1, 12]` is a bad row, not one unknown code.
JSONL: one JSON object per line with the trade fields of docs/interfaces/kafka-messages.md
(Finnhub's short names `s,p,v,t,c` are accepted too). Rows that do not validate are logged and counted, not
sent.

`speed` 0 publishes as fast as possible; `speed` X > 0 keeps the file's inter-arrival gaps divided
by X (1 = real time). `max_gap` caps any single wait (e.g. overnight gaps in a multi-day file).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from producer.errors import ProducerError
from tickhouse.schemas import InvalidMessage, Trade, now_ms, to_json, validate_trade

log = logging.getLogger(__name__)

SOURCE = "replay"
Prepared = tuple[int, bytes, bytes]  # (event ts ms, key, value): ready for produce()
_SHORT_NAMES = {"s": "symbol", "p": "price", "v": "volume", "t": "ts", "c": "conditions"}


class ReplayError(ProducerError, ValueError):
    """The replay file cannot be read at all (missing, unknown format, no header)."""


def open_text(path: Path) -> TextIO:
    if not path.is_file():
        raise ReplayError(f"replay file {path} does not exist")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def open_binary(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def file_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise ReplayError(f"{path}: unknown format; name it .csv, .jsonl or .ndjson (optionally .gz)")


def _csv_number(text: str) -> int | Decimal | str:
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        return Decimal(text)
    except InvalidOperation:
        return text  # validation reports it as a string


CONDITION_SEPARATOR = ";"
_CONDITION_CODE = re.compile(r"[A-Za-z0-9]+")


def _csv_conditions(cell: str) -> list[str] | str:
    """The codes of a CSV `conditions` cell, or the reason it is not a list of codes."""
    codes = [code.strip() for code in cell.split(CONDITION_SEPARATOR) if code.strip()]
    bad = [code for code in codes if not _CONDITION_CODE.fullmatch(code)]
    if bad:
        return (
            f"conditions: {cell.strip()!r:.100} is not a list of condition codes; write codes of letters "
            f"and digits separated by {CONDITION_SEPARATOR!r}, such as 1{CONDITION_SEPARATOR}12 "
            f"(bad code {bad[0]!r:.40})"
        )
    return codes


def _csv_rows(handle: TextIO, path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        return
    columns = [c.strip().lower() for c in header]
    missing = {"symbol", "price", "volume", "ts"} - set(columns)
    if missing:
        raise ReplayError(f"{path}: CSV header lacks {', '.join(sorted(missing))}: {header}")
    index = {name: columns.index(name) for name in columns}
    i_symbol, i_price, i_volume, i_ts = (index[c] for c in ("symbol", "price", "volume", "ts"))
    i_cond = index.get("conditions")
    i_source = index.get("source")
    width = len(columns)
    for line_number, row in enumerate(reader, start=2):
        if not row:
            continue  # a blank line is not a trade
        if len(row) != width:
            yield line_number, f"expected {width} columns, got {len(row)}: {row!r:.200}"
            continue
        obj: dict[str, Any] = {
            "symbol": row[i_symbol].strip(),
            "price": _csv_number(row[i_price]),
            "volume": _csv_number(row[i_volume]),
            "ts": _csv_number(row[i_ts]),
        }
        if i_cond is not None and row[i_cond].strip():
            conditions = _csv_conditions(row[i_cond])
            if isinstance(conditions, str):
                yield line_number, conditions
                continue
            obj["conditions"] = conditions
        if i_source is not None and row[i_source].strip():
            obj["source"] = row[i_source].strip()
        yield line_number, obj


def _jsonl_rows(handle: TextIO) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for line_number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_float=Decimal)
        except ValueError as err:
            yield line_number, f"not valid JSON: {err}"
            continue
        if not isinstance(obj, dict):
            yield line_number, "not a JSON object"
            continue
        for short, long in _SHORT_NAMES.items():
            if short in obj and long not in obj:
                obj[long] = obj.pop(short)
        yield line_number, obj


@dataclass(slots=True)
class ReadStats:
    rows: int = 0
    invalid: int = 0


def read_trades(path: Path, stats: ReadStats | None = None) -> Iterator[Trade]:
    """Valid trades of the file in file order; invalid rows are logged, counted and skipped."""
    counts = stats if stats is not None else ReadStats()
    fmt = file_format(path)
    now = now_ms()
    with open_text(path) as handle:
        rows = _csv_rows(handle, path) if fmt == "csv" else _jsonl_rows(handle)
        for line_number, obj in rows:
            counts.rows += 1
            if isinstance(obj, str):
                counts.invalid += 1
                log.warning("%s:%d: skipped: %s", path, line_number, obj)
                continue
            obj.setdefault("source", SOURCE)
            try:
                yield validate_trade(obj, now)
            except InvalidMessage as err:
                counts.invalid += 1
                log.warning("%s:%d: skipped: %s", path, line_number, err)


def prepare(trades: Iterable[Trade]) -> Iterator[Prepared]:
    """Trades -> (ts, key, value) with the message bytes serialized once, up front."""
    keys: dict[str, bytes] = {}
    for trade in trades:
        key = keys.get(trade.symbol)
        if key is None:
            key = keys[trade.symbol] = trade.symbol.encode("utf-8")
        yield trade.ts, key, to_json(trade)


# The fast path for plain `symbol,price,volume,ts` CSV rows. A row this pattern matches (and
# whose numbers pass the checks below) yields exactly the bytes `to_json(validate_trade(row))`
# would; anything else goes through that slow path, which validates it and names the problem.
# tests/unit/producer/test_producer_replay.py checks the equivalence on generated rows.
_PLAIN_HEADER = b"symbol,price,volume,ts"
_NUMBER = rb"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_FAST_ROW = re.compile(
    rb"([A-Za-z0-9.:\-_/^=]{1,32}),(" + _NUMBER + rb"),(" + _NUMBER + rb"),(0|[1-9][0-9]{0,14})\r?\n?"
)
_FAST_VALUE = b'{"symbol":"%b","price":%b,"volume":%b,"ts":%b,"source":"replay"}'
_MAX_FUTURE_MS = 24 * 60 * 60 * 1000


def _fast_number(text: bytes, positive: bool) -> bytes | None:
    """The JSON rendering to_json gives this number, or None to take the slow path."""
    if text.isdigit():  # an int: rendered as is (no leading zeros, the pattern saw to that)
        return None if positive and text == b"0" else text
    value = float(text)
    if not math.isfinite(value) or value == 0:  # zero and underflow: let the slow path decide
        return None
    return repr(value).encode()


def prepare_file(path: Path, stats: ReadStats | None = None) -> Iterator[Prepared]:
    """The file's valid trades as (ts, key, value), like `prepare(read_trades(path))`, faster.

    Plain `symbol,price,volume,ts` CSV files take a fast path that avoids building and
    validating a Trade per row when the row's text already satisfies docs/interfaces/kafka-messages.md.
    """
    counts = stats if stats is not None else ReadStats()
    if file_format(path) != "csv":
        yield from prepare(read_trades(path, counts))
        return
    with open_text(path) as probe:
        header = probe.readline().strip().encode()
    if header != _PLAIN_HEADER:
        yield from prepare(read_trades(path, counts))
        return
    limit = now_ms() + _MAX_FUTURE_MS
    keys: dict[bytes, bytes] = {}
    match = _FAST_ROW.fullmatch
    with open_binary(path) as handle:
        handle.readline()
        for line_number, line in enumerate(handle, start=2):
            found = match(line)
            if found is not None:
                symbol, price, volume, ts = found.groups()
                stamp = int(ts)
                price_json = _fast_number(price, positive=True)
                volume_json = _fast_number(volume, positive=False)
                if stamp <= limit and price_json is not None and volume_json is not None:
                    counts.rows += 1
                    key = keys.get(symbol)
                    if key is None:
                        key = keys[symbol] = bytes(symbol)
                    yield stamp, key, _FAST_VALUE % (symbol, price_json, volume_json, ts)
                    continue
            if not line.strip():
                continue
            counts.rows += 1
            prepared = _slow_row(path, line_number, line, counts)
            if prepared is not None:
                yield prepared


def _slow_row(path: Path, line_number: int, line: bytes, counts: ReadStats) -> Prepared | None:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        counts.invalid += 1
        log.warning("%s:%d: skipped: not UTF-8 (%s)", path, line_number, err)
        return None
    row = next(csv.reader([text]), [])
    if len(row) != 4:
        counts.invalid += 1
        log.warning("%s:%d: skipped: expected 4 columns, got %d: %r", path, line_number,
                    len(row), text[:200])
        return None
    obj: dict[str, Any] = {
        "symbol": row[0].strip(),
        "price": _csv_number(row[1]),
        "volume": _csv_number(row[2]),
        "ts": _csv_number(row[3]),
        "source": SOURCE,
    }
    try:
        trade = validate_trade(obj)
    except InvalidMessage as err:
        counts.invalid += 1
        log.warning("%s:%d: skipped: %s", path, line_number, err)
        return None
    return trade.ts, trade.symbol.encode("utf-8"), to_json(trade)


def batched(items: Iterable[Prepared], size: int) -> Iterator[list[Prepared]]:
    batch: list[Prepared] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def count_rows(path: Path) -> int:
    """Data rows in the file (for the progress bar)."""
    with open_text(path) as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if file_format(path) == "csv" and lines else lines


class Pacer:
    """When each event is due (wall clock): gaps divided by `speed`, capped by `max_gap`."""

    def __init__(self, speed: float, max_gap: float | None = None) -> None:
        if speed < 0:
            raise ValueError(f"speed={speed}: must be >= 0 (0 = as fast as possible)")
        self.speed = speed
        self.max_gap = max_gap
        self._start_wall: float | None = None
        self._prev_ts = 0
        self._due = 0.0

    def due(self, ts: int, now: float) -> float:
        """Wall-clock time (same clock as `now`) at which the event with `ts` should be sent."""
        if self._start_wall is None:
            self._start_wall = now
            self._prev_ts = ts
            self._due = now
            return now
        if self.speed == 0:
            return now
        gap = max(ts - self._prev_ts, 0) / 1000 / self.speed  # out-of-order rows: no waiting
        if self.max_gap is not None:
            gap = min(gap, self.max_gap)
        self._prev_ts = max(self._prev_ts, ts)
        self._due += gap
        return self._due


def publish_prepared(
    batches: Iterable[list[Prepared]],
    publish: Callable[[str, bytes, bytes], None],
    topic: str,
    *,
    speed: float = 0.0,
    max_gap: float | None = None,
    stop: threading.Event | None = None,
    on_batch: Callable[[int], None] | None = None,
    idle: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    publish_batch: Callable[[str, list[Prepared]], None] | None = None,
) -> int:
    """Publish prepared messages in order, paced by their timestamps. Returns how many were sent.

    `idle(seconds)` is called instead of sleeping while waiting for the next event (so that the
    caller can serve delivery reports); it must return after at most that many seconds.
    `publish_batch(topic, batch)`, when given, replaces `publish` at speed 0.
    """
    halt = stop or threading.Event()
    wait = idle or halt.wait
    sent = 0
    if speed == 0:
        for batch in batches:
            if publish_batch is not None:
                publish_batch(topic, batch)
            else:
                for _ts, key, value in batch:
                    publish(topic, key, value)
            sent += len(batch)
            if on_batch is not None:
                on_batch(len(batch))
            if halt.is_set():
                break
        return sent
    pacer = Pacer(speed, max_gap)
    for batch in batches:
        done = 0
        for ts, key, value in batch:
            due_at = pacer.due(ts, clock())
            while (delay := due_at - clock()) > 0.0005 and not halt.is_set():
                wait(min(delay, 0.1))
            if halt.is_set():
                break
            publish(topic, key, value)
            done += 1
        sent += done
        if on_batch is not None:
            on_batch(done)
        if halt.is_set():
            break
    return sent
