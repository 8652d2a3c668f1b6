"""`tickhouse backfill`: history as candles, from Finnhub or a file, published to CANDLES_TOPIC.

    tickhouse backfill --source finnhub --symbols A,B --resolution D --from 2024-01-01 --to 2025-12-31
    tickhouse backfill --source file --file PATH

The work is `producer.backfill.run_backfill`; this module is the command around it: arguments, a
rich progress bar on a terminal (log lines elsewhere), SIGINT/SIGTERM, the summary, the exit code.

Exit codes:
  0    done: every candle served (or every row of the file) was published and acknowledged
  1    Kafka did not acknowledge every candle (broker unreachable or a fatal producer error)
  2    bad usage or configuration (arguments, FINNHUB_API_KEY unset, unreadable file or header)
  3    Finnhub refused the key (HTTP 401) or the key's plan has no candle access (HTTP 403)
  4    the file has invalid rows: nothing was published (or, with --skip-invalid, the valid rows were)
  5    some Finnhub ranges failed after retries (network, 5xx, 429s, malformed answers); the
       candles of the other ranges were published
  130  interrupted (SIGINT / SIGTERM); what was published before is flushed
Running the same backfill again publishes the same candles again; exit 1, 5 and 130 say to do so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from producer.backfill import (
    EXIT_AUTH,
    EXIT_OK,
    EXIT_USAGE,
    SOURCES,
    BackfillUsageError,
    LogProgress,
    Progress,
    parse_day,
    report,
    run_backfill,
)
from producer.finnhub_quotes import hide_secret_in_logs
from producer.finnhub_stream import FinnhubAuthError
from tickhouse.config import ConfigError, load_settings, parse_symbols
from tickhouse.schemas import RESOLUTIONS

log = logging.getLogger("producer.backfill")


class RichProgress:
    """A rich progress bar on stderr: calls (or rows) done, candles published, time left."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichBar

        self._bar = RichBar(
            TextColumn("backfill {task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[candles]:>10,} candles"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )
        self._task: Any = None

    def start(self, total: int, unit: str) -> None:
        self._bar.start()
        self._task = self._bar.add_task("", total=total, unit=unit, candles=0)

    def advance(self, done: int, candles: int, label: str) -> None:
        self._bar.update(self._task, advance=done, candles=candles, description=label)

    def stop(self) -> None:
        self._bar.stop()


def _day(text: str) -> dt.date:
    try:
        return parse_day(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse backfill",
        description="Publish history as candles to CANDLES_TOPIC "
        "(docs/interfaces/commands.md, docs/interfaces/kafka-messages.md).",
        epilog="Exit codes: 0 done, 1 Kafka did not acknowledge every candle, 2 bad usage or "
        "configuration, 3 Finnhub refused the key or the plan (401/403), 4 invalid rows in the "
        "file, 5 Finnhub ranges failed after retries, 130 interrupted.",
    )
    parser.add_argument("--source", required=True, choices=SOURCES)
    finnhub = parser.add_argument_group("finnhub")
    finnhub.add_argument("--symbols", help="comma-separated symbols (default: SYMBOLS)")
    finnhub.add_argument("--resolution", default="D", choices=RESOLUTIONS,
                         help="candle resolution: minutes 1, 5, 15, 30, 60, or D, W, M (default D)")
    finnhub.add_argument("--from", dest="first", type=_day, metavar="YYYY-MM-DD",
                         help="first day (from 00:00:00 UTC)")
    finnhub.add_argument("--to", dest="last", type=_day, metavar="YYYY-MM-DD",
                         help="last day, included (to 23:59:59 UTC; default: today)")
    from_file = parser.add_argument_group("file")
    from_file.add_argument("--file", type=Path, help="CSV or JSONL candles, optionally .gz")
    from_file.add_argument("--skip-invalid", action="store_true",
                           help="publish the valid rows even if some rows are invalid (exit 4 still)")
    from_file.add_argument("--max-errors", type=int, default=100,
                           help="bad rows listed one by one (default 100; all are counted)")
    parser.add_argument("--topic", default=None, help="default: CANDLES_TOPIC")
    parser.add_argument("--flush-timeout", type=_positive_float, default=60.0,
                        help="seconds to wait for Kafka's acknowledgements at the end (default 60)")
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", default=None,
                       help="show the progress bar even when stderr is not a terminal")
    shown.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of `tickhouse backfill ARGS` (argv excludes the word `backfill`)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_OK if exit_.code in (0, None) else EXIT_USAGE
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    console = _setup_logging(args.log_level, show)
    try:
        settings = load_settings()
        symbols = parse_symbols("--symbols", args.symbols) if args.symbols else ()
    except ConfigError as err:
        print(f"tickhouse backfill: {err}", file=sys.stderr)
        return EXIT_USAGE
    if args.source == "finnhub" and args.file is not None:
        print("tickhouse backfill: --file is for --source file", file=sys.stderr)
        return EXIT_USAGE
    hide_secret_in_logs(settings.finnhub_api_key)
    stop = threading.Event()
    restore = _install_stop_handlers(stop)
    progress: Progress = RichProgress(console) if show else LogProgress()
    try:
        summary = run_backfill(
            settings, source=args.source, symbols=symbols, resolution=args.resolution,
            first=args.first, last=args.last, path=args.file, topic=args.topic,
            skip_invalid=args.skip_invalid, max_errors=args.max_errors,
            flush_timeout=args.flush_timeout, progress=progress, stop=stop,
        )
    except BackfillUsageError as err:
        print(f"tickhouse backfill: {err}", file=sys.stderr)
        return EXIT_USAGE
    except FinnhubAuthError as err:
        print(f"tickhouse backfill: {err}", file=sys.stderr)
        return EXIT_AUTH
    finally:
        if restore is not None:
            restore()
    print("\n".join(report(summary, args.file)), file=sys.stderr)
    return summary.exit_code


def _setup_logging(level: str, rich_console: bool) -> Any:
    console = None
    if rich_console:
        from rich.console import Console

        console = Console(stderr=True)
    if not logging.getLogger().handlers:
        if console is not None:
            from rich.logging import RichHandler

            logging.basicConfig(level=level.upper(), format="%(message)s",
                                handlers=[RichHandler(console=console, show_path=False)])
        else:
            logging.basicConfig(level=level.upper(), stream=sys.stderr,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return console


def _install_stop_handlers(stop: threading.Event) -> Callable[[], None] | None:
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.warning("%s received: stopping after the current call, then flushing",
                    signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
