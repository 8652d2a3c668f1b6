"""Backfills: history as candles, from Finnhub or a file, published to CANDLES_TOPIC.

`run_backfill` is what `tickhouse backfill` (`producer.backfill_cli`) and the `backfill_history`
DAG run. Finnhub: one `/stock/candle` call per symbol and chunk of the range
(`producer.finnhub_candles`), within 60 calls/min, 429 answers waited out; the range is `first`
00:00:00 UTC to `last` 23:59:59 UTC. File: CSV or JSONL candles (`producer.candle_file`), checked
in full before anything is published. Each candle goes to CANDLES_TOPIC keyed by symbol through the
project's idempotent, acks=all producer (`producer.publisher`); the run ends by waiting for Kafka to
acknowledge them all. The outcome is a `BackfillSummary`, whose `exit_code` is the command's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from producer.candle_file import BadRow, CandleFileError, read_candles
from producer.errors import ProducerError
from producer.finnhub_candles import (
    CandleFetcher,
    Chunk,
    FetchResult,
    Interrupted,
    candle_problem,
    plan_chunks,
)
from producer.metrics import ProducerStats
from producer.publisher import Publisher, PublisherError, prepare_topics
from tickhouse.config import ConfigError, Settings, parse_symbols
from tickhouse.schemas import RESOLUTIONS, Candle, now_ms, to_json

log = logging.getLogger("producer.backfill")

# the exit codes of `tickhouse backfill` (their meaning: producer.backfill_cli's docstring)
EXIT_OK, EXIT_KAFKA, EXIT_USAGE, EXIT_AUTH, EXIT_INVALID_ROWS, EXIT_FINNHUB = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
SOURCES = ("finnhub", "file")
_SHOWN_PROBLEMS = 20  # invalid Finnhub candles logged one by one; the rest are counted


class BackfillUsageError(ProducerError, ValueError):
    """The backfill cannot start: bad arguments or configuration (exit 2)."""


@dataclass(slots=True)
class BackfillSummary:
    """What one backfill did; `exit_code` is the command's (listed in producer.backfill_cli)."""

    source: str
    topic: str
    resolution: str | None = None
    first_day: str | None = None
    last_day: str | None = None
    symbols: list[str] = field(default_factory=list)
    calls: int = 0  # HTTP calls, retries included
    retries_429: int = 0
    ranges: int = 0  # chunks fetched
    served: int = 0  # distinct candles Finnhub served, or valid rows of the file
    duplicates: int = 0  # candles served again by an overlapping answer (published once)
    published: int = 0  # handed to the Kafka producer
    acknowledged: int = 0  # acknowledged by Kafka (acks=all)
    # Finnhub candles that break docs/interfaces/kafka-messages.md: published, the drain quarantines them
    invalid: int = 0
    rows: int = 0  # file rows read
    bad_rows: list[str] = field(default_factory=list)  # "line N: reason", at most `max_errors`
    bad_row_count: int = 0
    no_data: list[str] = field(default_factory=list)  # "SYMBOL FROM..TO", adjacent ranges merged
    failed: list[str] = field(default_factory=list)  # "SYMBOL FROM..TO: reason"
    unacknowledged: int = 0
    interrupted: bool = False
    kafka_error: str | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.kafka_error or self.unacknowledged or self.acknowledged < self.published:
            return EXIT_KAFKA
        if self.failed:
            return EXIT_FINNHUB
        if self.bad_row_count:
            return EXIT_INVALID_ROWS
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["exit_code"] = self.exit_code
        return out


class Progress(Protocol):
    """Where a backfill reports its advance (a rich bar on a terminal, log lines elsewhere)."""

    def start(self, total: int, unit: str) -> None: ...
    def advance(self, done: int, candles: int, label: str) -> None: ...
    def stop(self) -> None: ...


class LogProgress:
    """Progress as log lines, about every `every` seconds (Airflow task logs, pipes)."""

    def __init__(self, every: float = 10.0) -> None:
        self._every = every
        self._total = 0
        self._done = 0
        self._unit = ""
        self._last = 0.0

    def start(self, total: int, unit: str) -> None:
        self._total, self._unit, self._last = total, unit, time.monotonic()

    def advance(self, done: int, candles: int, label: str) -> None:
        self._done += done
        now = time.monotonic()
        if now - self._last >= self._every or self._done >= self._total:
            self._last = now
            log.info("backfill: %d/%d %s, %d candles published (%s)", self._done, self._total,
                     self._unit, candles, label)

    def stop(self) -> None:
        pass


# --- the work --------------------------------------------------------------------------------

Publish = Callable[[bytes, bytes], None]


def publish_finnhub(
    fetcher: CandleFetcher,
    chunks: Sequence[Chunk],
    publish: Publish,
    summary: BackfillSummary,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    idle: Callable[[], None] | None = None,
) -> None:
    """Fetch every chunk in order and publish what each serves, as it arrives.

    A failed chunk is recorded and the others go on; FinnhubAuthError (401/403) propagates.
    """
    seen: dict[str, set[int]] = {}
    now = now_ms()
    if progress is not None:
        progress.start(len(chunks), "calls")
    try:
        for chunk in chunks:
            if stop is not None and stop.is_set():
                summary.interrupted = True
                return
            try:
                result = fetcher.fetch(chunk)
            except Interrupted:
                summary.interrupted = True
                return
            finally:
                summary.calls, summary.retries_429 = fetcher.calls, fetcher.retries_429
            summary.ranges += 1
            _record(result, publish, summary, seen, now)
            if idle is not None:
                idle()
            if progress is not None:
                progress.advance(1, summary.published, chunk.describe())
    finally:
        if progress is not None:
            progress.stop()


def _record(
    result: FetchResult, publish: Publish, summary: BackfillSummary, seen: dict[str, set[int]],
    now: int,
) -> None:
    chunk = result.chunk
    span = f"{chunk.symbol} {chunk.first_day}..{chunk.last_day}"
    if result.status == "failed":
        summary.failed.append(f"{span}: {result.error}")
        return
    if result.status == "no_data":
        _add_span(summary.no_data, chunk)
        log.debug("%s: no_data (Finnhub has no candles in this range)", chunk.describe())
        return
    for candle in result.candles:
        starts = seen.setdefault(candle.symbol, set())
        if candle.bar_start in starts:
            summary.duplicates += 1
            continue
        starts.add(candle.bar_start)
        summary.served += 1
        problem = candle_problem(candle, now)
        if problem is not None:
            summary.invalid += 1
            if summary.invalid <= _SHOWN_PROBLEMS:
                log.warning("%s: candle at %d breaks docs/interfaces/kafka-messages.md (%s); published "
                            "anyway, the drain quarantines it with that reason", chunk.describe(),
                            candle.bar_start, problem)
        publish(candle.symbol.encode("utf-8"), to_json(candle))
        summary.published += 1


def _add_span(spans: list[str], chunk: Chunk) -> None:
    """Append "SYMBOL FIRST..LAST", or extend the last span when `chunk` continues it."""
    if spans:
        head, _, last = spans[-1].rpartition("..")
        symbol = head.split(" ", 1)[0]
        follows = dt.date.fromisoformat(last) + dt.timedelta(days=1) == chunk.first_day
        if symbol == chunk.symbol and follows:
            spans[-1] = f"{head}..{chunk.last_day}"
            return
    spans.append(f"{chunk.symbol} {chunk.first_day}..{chunk.last_day}")


def check_file(path: Path, summary: BackfillSummary, max_errors: int, now: int) -> int:
    """First pass over a candle file: count rows, collect bad ones. Returns the valid rows."""
    valid = 0
    for item in read_candles(path, now):
        summary.rows += 1
        if isinstance(item, BadRow):
            summary.bad_row_count += 1
            if len(summary.bad_rows) < max_errors:
                summary.bad_rows.append(str(item))
        else:
            valid += 1
    return valid


def publish_file(
    path: Path,
    publish: Publish,
    summary: BackfillSummary,
    now: int,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    idle: Callable[[], None] | None = None,
) -> None:
    """Second pass: publish every valid row of the file, in file order."""
    symbols: dict[str, None] = {}
    resolutions: dict[str, None] = {}
    pending = 0
    try:
        for item in read_candles(path, now):
            if not isinstance(item, Candle):
                continue
            publish(item.symbol.encode("utf-8"), to_json(item))
            summary.served += 1
            summary.published += 1
            symbols[item.symbol] = None
            resolutions[item.resolution] = None
            pending += 1
            if pending >= 1000:
                if idle is not None:
                    idle()
                if progress is not None:
                    progress.advance(pending, summary.published, path.name)
                pending = 0
                if stop is not None and stop.is_set():
                    summary.interrupted = True
                    return
        if progress is not None and pending:
            progress.advance(pending, summary.published, path.name)
    finally:
        summary.symbols = list(symbols)
        summary.resolution = ",".join(resolutions) or None


@contextlib.contextmanager
def kafka_publisher(
    settings: Settings, topic: str, summary: BackfillSummary, flush_timeout: float
) -> Iterator[tuple[Publish, Callable[[], None]]]:
    """(publish(key, value), idle()) to `topic`; on exit waits for Kafka's acknowledgements and
    records them in `summary` (acknowledged, unacknowledged, kafka_error)."""
    prepare_topics(settings.kafka_bootstrap_servers, [topic], settings.topic_partitions)
    stats = ProducerStats()
    # The publisher's spool outlives a broker outage within this run; what is still unacknowledged
    # at the end is reported (exit 1) and the spool goes with the temporary directory: the remedy is
    # to run the backfill again, not a spool that another process would send later.
    with tempfile.TemporaryDirectory(prefix="tickhouse-backfill-") as tmp:
        publisher = Publisher(settings.kafka_bootstrap_servers, spool_path=Path(tmp) / "spool.bin",
                              stats=stats)

        def publish(key: bytes, value: bytes) -> None:
            publisher.publish(topic, key, value)

        def idle() -> None:
            publisher.service(0)

        try:
            yield publish, idle
        except PublisherError as err:
            summary.kafka_error = str(err)
        finally:
            summary.unacknowledged = publisher.close(flush_timeout)
            summary.acknowledged = min(stats.delivered, summary.published)
            if stats.delivered < summary.published and not summary.unacknowledged:
                summary.unacknowledged = summary.published - stats.delivered


def run_backfill(
    settings: Settings,
    *,
    source: str,
    symbols: Sequence[str] = (),
    resolution: str = "D",
    first: dt.date | None = None,
    last: dt.date | None = None,
    path: Path | None = None,
    topic: str | None = None,
    skip_invalid: bool = False,
    max_errors: int = 100,
    flush_timeout: float = 60.0,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    fetcher: CandleFetcher | None = None,
) -> BackfillSummary:
    """One backfill, as `tickhouse backfill` and the `backfill_history` DAG run it.

    Raises BackfillUsageError (exit 2) before anything is fetched or published when the request is
    wrong, and FinnhubAuthError (exit 3) when Finnhub refuses the key or the plan; every other
    outcome is in the summary (`exit_code`).
    """
    started = time.monotonic()
    target = topic or settings.candles_topic
    summary = BackfillSummary(source=source, topic=target)
    if source == "finnhub":
        chunks = _finnhub_plan(settings, summary, symbols, resolution, first, last)
        own_fetcher = fetcher is None
        if fetcher is None:
            fetcher = CandleFetcher(
                settings.finnhub_api_url, settings.finnhub_api_key,
                sleep=(stop.wait if stop is not None else None),
            )
        try:
            with kafka_publisher(settings, target, summary, flush_timeout) as (publish, idle):
                publish_finnhub(fetcher, chunks, publish, summary, progress=progress, stop=stop,
                                idle=idle)
        finally:
            if own_fetcher:
                fetcher.close()
    elif source == "file":
        if path is None:
            raise BackfillUsageError("--source file needs --file PATH")
        now = now_ms()
        try:
            valid = check_file(path, summary, max_errors, now)
        except CandleFileError as err:
            raise BackfillUsageError(str(err)) from None
        if summary.bad_row_count and not skip_invalid:
            summary.seconds = time.monotonic() - started
            return summary  # nothing published: fix the rows, or pass --skip-invalid
        if progress is not None:
            progress.start(valid, "rows")
        try:
            with kafka_publisher(settings, target, summary, flush_timeout) as (publish, idle):
                publish_file(path, publish, summary, now, progress=progress, stop=stop, idle=idle)
        finally:
            if progress is not None:
                progress.stop()
    else:
        raise BackfillUsageError(f"--source {source!r}: must be one of {', '.join(SOURCES)}")
    summary.seconds = time.monotonic() - started
    return summary


def _finnhub_plan(
    settings: Settings,
    summary: BackfillSummary,
    symbols: Sequence[str],
    resolution: str,
    first: dt.date | None,
    last: dt.date | None,
) -> list[Chunk]:
    if not settings.finnhub_api_key:
        raise BackfillUsageError(
            "FINNHUB_API_KEY is not set; it is required for --source finnhub (export it, or put it "
            "in .env; Finnhub's stock candles need a plan with candle access)"
        )
    if resolution not in RESOLUTIONS:
        raise BackfillUsageError(
            f"--resolution {resolution!r}: must be one of {', '.join(RESOLUTIONS)}")
    if first is None:
        raise BackfillUsageError("--source finnhub needs --from YYYY-MM-DD")
    last = last or dt.datetime.now(dt.UTC).date()
    if first > last:
        raise BackfillUsageError(f"--from {first} is after --to {last}")
    wanted = list(dict.fromkeys(symbols)) or list(settings.symbols)
    summary.symbols, summary.resolution = wanted, resolution
    summary.first_day, summary.last_day = first.isoformat(), last.isoformat()
    return [c for s in wanted for c in plan_chunks(s, resolution, first, last)]


def parse_day(text: str) -> dt.date:
    """YYYY-MM-DD -> date; ValueError for anything else (also 20240101, which fromisoformat takes)."""
    cleaned = text.strip()
    if len(cleaned) != 10:
        raise ValueError(f"{text!r}: not a date, use YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"{text!r}: not a date, use YYYY-MM-DD") from None


def finnhub_request(params: Mapping[str, Any]) -> dict[str, Any]:
    """The `backfill_history` DAG's params (`symbols`, `resolution`, `from`, `to`) -> the keyword
    arguments of `run_backfill(source="finnhub", ...)`; BackfillUsageError names a bad param."""
    raw_symbols = params.get("symbols")
    if isinstance(raw_symbols, list | tuple):
        raw_symbols = ",".join(str(s) for s in raw_symbols)
    try:
        symbols = parse_symbols("symbols", str(raw_symbols or ""))
    except ConfigError as err:
        raise BackfillUsageError(str(err)) from None
    resolution = str(params.get("resolution") or "D")
    if resolution not in RESOLUTIONS:
        raise BackfillUsageError(
            f"resolution {resolution!r}: must be one of {', '.join(RESOLUTIONS)}")
    days: dict[str, dt.date] = {}
    for name in ("from", "to"):
        value = params.get(name)
        try:
            days[name] = parse_day(str(value))
        except ValueError:
            raise BackfillUsageError(f"{name}: {value!r} is not a date, use YYYY-MM-DD") from None
    if days["from"] > days["to"]:
        raise BackfillUsageError(f"from {days['from']} is after to {days['to']}")
    return {"symbols": symbols, "resolution": resolution, "first": days["from"],
            "last": days["to"]}


def report(summary: BackfillSummary, path: Path | None = None) -> list[str]:
    """The end-of-run report as lines: the bad rows of a file (if any), then the figures."""
    out = [f"{path}: {row}" for row in summary.bad_rows]
    if summary.bad_row_count > len(summary.bad_rows):
        out.append(f"{path}: ... and {summary.bad_row_count - len(summary.bad_rows):,} more "
                   "invalid rows (--max-errors N lists more)")
    lines: list[tuple[str, str]] = []
    if summary.source == "finnhub":
        lines += [
            ("request", f"finnhub /stock/candle resolution {summary.resolution}, "
                        f"{summary.first_day}..{summary.last_day} (UTC)"),
            ("symbols", ", ".join(summary.symbols)),
            ("calls", f"{summary.calls:,} for {summary.ranges:,} ranges "
                      f"({summary.retries_429:,} answered 429 and were retried)"),
            ("candles served", f"{summary.served:,}"
             + (f" (+{summary.duplicates:,} served twice, published once)"
                if summary.duplicates else "")),
        ]
    else:
        lines += [
            ("file", f"{path}: {summary.rows:,} rows, "
                     f"{summary.rows - summary.bad_row_count:,} valid, "
                     f"{summary.bad_row_count:,} invalid"),
            ("symbols", ", ".join(summary.symbols) or "-"),
        ]
    lines.append(("published", f"{summary.published:,} to {summary.topic}, "
                               f"{summary.acknowledged:,} acknowledged by Kafka"))
    if summary.invalid:
        lines.append(("invalid candles", f"{summary.invalid:,} (published; the drain quarantines "
                                         "them with the reason)"))
    if summary.source == "finnhub":
        lines.append(("no_data", "; ".join(summary.no_data) or "none"))
        lines.append(("failed ranges", "; ".join(summary.failed) or "none"))
    if summary.kafka_error:
        lines.append(("kafka error", summary.kafka_error))
    lines.append(("result", _verdict(summary) + f" (exit {summary.exit_code}, "
                                                 f"{summary.seconds:.1f}s)"))
    out.append("tickhouse backfill:")
    out += [f"  {name:<16}{text}" for name, text in lines]
    return out


def _verdict(summary: BackfillSummary) -> str:
    code = summary.exit_code
    if code == EXIT_OK:
        return "done: every candle was published and acknowledged"
    if code == EXIT_INTERRUPTED:
        return "interrupted; run the same backfill again to complete it"
    if code == EXIT_KAFKA:
        return (f"{summary.published - summary.acknowledged:,} candles not acknowledged by Kafka; "
                "run the same backfill again when the broker is back")
    if code == EXIT_FINNHUB:
        return (f"{len(summary.failed)} ranges could not be fetched; run the same backfill again "
                "(or just those ranges)")
    if summary.published:
        return "invalid rows skipped (--skip-invalid); the valid rows were published"
    return "the file has invalid rows: nothing was published; fix them or pass --skip-invalid"
