"""`tickhouse symbols refresh`: company profiles from Finnhub into raw.symbol_profiles (dim_symbols)."""

from __future__ import annotations

import argparse
import sys

from producer.finnhub_stream import FinnhubAuthError
from tickhouse.config import ConfigError, load_settings, parse_symbols
from tickhouse.errors import TickhouseError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickhouse symbols", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    refresh = sub.add_parser(
        "refresh",
        help="fetch Finnhub's /stock/profile2 for SYMBOLS and every symbol of dim_symbols; "
        "offline, the seed fills the gaps",
    )
    refresh.add_argument("--symbols", help="also these (comma-separated)")
    refresh.add_argument("--only", action="store_true", help="only --symbols, not SYMBOLS nor dim_symbols")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from producer.finnhub_quotes import hide_secret_in_logs
    from producer.symbols import ProfileFetcher, refresh, symbols_to_refresh

    try:
        settings = load_settings()
        extra = list(parse_symbols("--symbols", args.symbols)) if args.symbols else []
        symbols = extra if args.only else symbols_to_refresh(settings, extra)
        hide_secret_in_logs(settings.finnhub_api_key)
        fetcher = (ProfileFetcher(settings.finnhub_api_url, settings.finnhub_api_key)
                   if settings.finnhub_api_key else None)
        try:
            summary = refresh(settings, symbols, fetcher)
        finally:
            if fetcher is not None:
                fetcher.close()
    except ConfigError as err:
        print(f"tickhouse symbols: configuration error: {err}", file=sys.stderr)
        return 2
    except FinnhubAuthError as err:
        print(f"tickhouse symbols: {err}", file=sys.stderr)
        return 3
    except TickhouseError as err:
        print(f"tickhouse symbols: {err}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
