"""`tickhouse dashboard [--port N] [--refresh S] [--max-bars N]` / `python -m dashboard`.

Serves the Streamlit app on 127.0.0.1 (never another address: the page shows warehouse data without
a login) until stopped with Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from dashboard.options import (
    HOST,
    DashboardOptions,
    load_options,
    parse_max_bars,
    parse_port,
    parse_refresh_seconds,
)
from tickhouse.config import ConfigError, load_settings
from tickhouse.listen import PortUnavailableError, require_port_free

APP_PATH = Path(__file__).resolve().parent / "app.py"


def _checked(flag: str, parse: Callable[[str, str], int]) -> Callable[[str], int]:
    """An argparse type that reports our validation message instead of "invalid value"."""

    def convert(raw: str) -> int:
        try:
            return parse(flag, raw)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from err

    return convert


def _parser(defaults: DashboardOptions) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse dashboard",
        description="Serve the Tickhouse dashboard (marts, read as bi_reader) on 127.0.0.1.",
    )

    parser.add_argument(
        "--port",
        type=_checked("--port", parse_port),
        default=defaults.port,
        help=f"TCP port (env DASHBOARD_PORT; default {defaults.port})",
    )
    parser.add_argument(
        "--refresh",
        type=_checked("--refresh", parse_refresh_seconds),
        default=defaults.refresh_seconds,
        help=f"auto-refresh every S seconds, 0 = off (env DASHBOARD_REFRESH_SECONDS; default "
        f"{defaults.refresh_seconds})",
    )
    parser.add_argument(
        "--max-bars",
        type=_checked("--max-bars", parse_max_bars),
        default=defaults.max_bars,
        help=f"newest bars per chart (env DASHBOARD_MAX_BARS; default {defaults.max_bars})",
    )
    return parser


def streamlit_argv(options: DashboardOptions) -> list[str]:
    """The `streamlit run` arguments: loopback only, headless, no telemetry, no file watching."""
    return [
        "run",
        str(APP_PATH),
        "--server.address",
        HOST,
        "--server.port",
        str(options.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
    ]


def main(argv: list[str]) -> int:
    """Start the dashboard; blocks until stopped. Returns the exit code."""
    try:
        defaults = load_options()
        try:
            options_args = _parser(defaults).parse_args(argv)
        except SystemExit as exit_:  # --help, or a usage error argparse has already printed
            return exit_.code if isinstance(exit_.code, int) else 2
        options = DashboardOptions(
            port=options_args.port, refresh_seconds=options_args.refresh, max_bars=options_args.max_bars
        )
        settings = load_settings()
    except ConfigError as err:
        print(f"tickhouse dashboard: {err}", file=sys.stderr)
        return 2
    if not settings.bi_reader_password:
        print(
            "tickhouse dashboard: BI_READER_PASSWORD is not set and setup has not generated it; "
            "run `make up` first (or export it)",
            file=sys.stderr,
        )
        return 2
    try:
        # Streamlit would log a taken port and exit without saying which variable sets it
        require_port_free(HOST, options.port, "DASHBOARD_PORT")
    except PortUnavailableError as err:
        print(f"tickhouse dashboard: {err}", file=sys.stderr)
        return 2
    # the Streamlit script runs in this process and reads its options from the environment
    os.environ.update(options.as_env())
    print(
        f"Tickhouse dashboard: http://{HOST}:{options.port}/ (marts as {settings.bi_reader_user} on "
        f"{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}, "
        f"refresh {options.refresh_seconds or 'off'} s)",
        flush=True,
    )
    from streamlit.web import cli as streamlit_cli  # heavy import, only when serving

    try:
        streamlit_cli.main.main(args=streamlit_argv(options), prog_name="streamlit", standalone_mode=False)
    except KeyboardInterrupt:
        return 0
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
