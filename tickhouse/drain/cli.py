"""`tickhouse drain --once [--max-messages N] [--max-seconds T]`: one drain run from the shell.

The same code the Airflow task runs; prints the per-topic stats table. Exit status: 0 on success,
1 when the data-quality policy is `fail` and an expectation failed (the rows are committed), 2 on
bad arguments or configuration, 3 when the drain itself failed.
"""

from __future__ import annotations

import argparse
import logging
import sys

from rich.console import Console
from rich.table import Table

from tickhouse.config import ConfigError, load_settings, require_credentials
from tickhouse.drain.options import DQ_POLICIES, load_options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse drain",
        description="Drain the Kafka topics into the raw tables, exactly once (one micro-batch).",
    )
    parser.add_argument(
        "--once", action="store_true", required=True, help="run one micro-batch and exit"
    )
    parser.add_argument(
        "--max-messages", type=int, help="most messages to consume (DRAIN_MAX_MESSAGES)"
    )
    parser.add_argument(
        "--max-seconds", type=float, help="most seconds to consume (DRAIN_MAX_SECONDS)"
    )
    parser.add_argument("--dq-policy", choices=DQ_POLICIES, help="DRAIN_DQ_POLICY for this run")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def stats_table(result: object) -> Table:
    from tickhouse.drain.runner import DrainResult

    assert isinstance(result, DrainResult)
    table = Table(title=f"drain run {result.run_id[:8]} ({result.duration_s:.2f}s)")
    for header in ("topic", "table", "consumed", "loaded", "quarantined", "lag after",
                   "min event time", "max event time"):
        justify = "right" if header in ("consumed", "loaded", "quarantined", "lag after") else "left"
        table.add_column(header, justify=justify)  # type: ignore[arg-type]
    for s in result.topics:
        table.add_row(
            s.topic, s.table, f"{s.consumed:,}", f"{s.loaded:,}", f"{s.quarantined:,}",
            "?" if s.lag_after is None else f"{s.lag_after:,}",
            "" if s.min_event_time is None else f"{s.min_event_time:%Y-%m-%d %H:%M:%S.%f}"[:-3],
            "" if s.max_event_time is None else f"{s.max_event_time:%Y-%m-%d %H:%M:%S.%f}"[:-3],
        )
    return table


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code in (0, None) else 2
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    console = Console()
    try:
        settings = load_settings()
        options = load_options(
            settings,
            max_messages=args.max_messages,
            max_seconds=args.max_seconds,
            dq_policy=args.dq_policy,
        )
        if options.warehouse == "postgres":
            require_credentials(settings)
    except ConfigError as err:
        print(f"tickhouse drain: {err}", file=sys.stderr)
        return 2

    from tickhouse.drain.runner import DataQualityError, drain_once

    try:
        result = drain_once(settings, options)
    except DataQualityError as err:
        console.print(stats_table(err.result))
        print(f"tickhouse drain: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        print(
            f"tickhouse drain: failed: {err}\n(rows and offsets are committed together, so the "
            "next run resumes exactly after the last committed run)",
            file=sys.stderr,
        )
        return 3
    console.print(stats_table(result))
    for failure in result.dq_failures:
        console.print(f"[yellow]data quality warning:[/yellow] {failure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
