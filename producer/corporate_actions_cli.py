"""`tickhouse corporate-actions refresh`: splits and dividends into raw.corporate_actions.

    tickhouse corporate-actions refresh --source finnhub --symbols A,B --from 2000-01-01 --to 2026-12-31
    tickhouse corporate-actions refresh --source file --file actions.csv

Without --symbols: SYMBOLS and every symbol of marts.dim_symbols (the warehouse's symbols).
Without --from / --to: from January 1st DEFAULT_YEARS years ago to DEFAULT_AHEAD_DAYS days ahead
(ex-dates are announced before they happen).

Exit codes: 0 every action served was stored; 1 some were rejected or a symbol's calls failed
(the others are stored; run again after a fix); 2 bad arguments or configuration (no
FINNHUB_API_KEY, an unreadable file or header); 3 Finnhub refused the key or the plan.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from producer.corporate_actions import CorporateActionFileError
from producer.corporate_actions_refresh import (
    DEFAULT_AHEAD_DAYS,
    DEFAULT_YEARS,
    refresh_from_file,
    run_finnhub,
)
from producer.errors import ProducerError
from producer.finnhub_stream import FinnhubAuthError
from tickhouse.config import ConfigError, load_settings, parse_symbols
from tickhouse.errors import TickhouseError


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickhouse corporate-actions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    refresh = sub.add_parser("refresh", help="fetch splits and dividends into raw.corporate_actions")
    refresh.add_argument("--source", choices=("finnhub", "file"), required=True)
    refresh.add_argument("--symbols", help="comma-separated (default: SYMBOLS and dim_symbols)")
    refresh.add_argument("--from", dest="first", type=_day, metavar="YYYY-MM-DD",
                         help=f"first ex-date (default: January 1st, {DEFAULT_YEARS} years ago)")
    refresh.add_argument("--to", dest="last", type=_day, metavar="YYYY-MM-DD",
                         help=f"last ex-date, included (default: {DEFAULT_AHEAD_DAYS} days ahead)")
    refresh.add_argument("--file", type=Path, help="CSV with symbol, ex_date, action, from_factor, "
                         "to_factor, cash_amount, currency (--source file)")
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.source == "file" and (args.file is None or args.symbols or args.first or args.last):
        parser.error("--source file takes --file PATH (and no --symbols, --from, --to)")
    if args.source == "finnhub" and args.file is not None:
        parser.error("--file is for --source file")
    try:
        settings = load_settings()
        if args.source == "file":
            summary = refresh_from_file(settings, args.file)
        else:
            symbols = list(parse_symbols("--symbols", args.symbols)) if args.symbols else None
            summary = run_finnhub(settings, symbols, args.first, args.last)
    except ConfigError as err:
        print(f"tickhouse corporate-actions: configuration error: {err}", file=sys.stderr)
        return 2
    except CorporateActionFileError as err:
        print(f"tickhouse corporate-actions: {err}", file=sys.stderr)
        return 2
    except FinnhubAuthError as err:
        print(f"tickhouse corporate-actions: {err}", file=sys.stderr)
        return 3
    except (ProducerError, TickhouseError) as err:
        print(f"tickhouse corporate-actions: {err}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
