"""`tickhouse quarantine list|replay`: what the drain rejected, and re-driving it after a fix.

    tickhouse quarantine list [--topic T] [--since TIME] [--until TIME] [--error TEXT] [--messages]
    tickhouse quarantine replay [same filters] [--limit N] [--dry-run] [--retry-unconfirmed]

`list` prints counts per topic and kind of reason (and with `--messages` the newest matching
messages). `replay` publishes the kept bytes of the matching messages again to their topic, once
each (see `drain.quarantine`); run it after fixing whatever rejected them, then let the
drain load them. TIME is an ISO date or timestamp (UTC unless it says otherwise). Exit status: 0
on success, 1 when some messages could not be published, 2 on bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from drain.quarantine import (
    QuarantineFilter,
    ReasonCount,
    messages,
    replay,
    summarize,
)
from tickhouse.config import ConfigError, load_settings, require_credentials


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or time; use e.g. 2026-11-30 or 2026-11-30T14:00:00+00:00"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse quarantine",
        description="List the messages the drain quarantined, or publish them again after a fix.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--topic", help="only messages of this Kafka topic")
    filters.add_argument("--since", type=_time, help="only messages quarantined at or after TIME")
    filters.add_argument("--until", type=_time, help="only messages quarantined before TIME")
    filters.add_argument("--error", metavar="TEXT", help="only reasons containing TEXT (any case)")
    listing = sub.add_parser("list", parents=[filters], help="counts per topic and reason")
    listing.add_argument("--messages", action="store_true", help="also list the messages")
    listing.add_argument("--limit", type=int, default=50, help="messages listed (default 50)")
    again = sub.add_parser("replay", parents=[filters], help="publish the kept bytes again")
    again.add_argument("--limit", type=int, default=100_000, help="most messages (default 100000)")
    again.add_argument("--dry-run", action="store_true", help="count what would be replayed")
    again.add_argument(
        "--retry-unconfirmed",
        action="store_true",
        help="also publish messages an interrupted replay claimed without a confirmation from "
        "Kafka (they may be published twice)",
    )
    return parser


def _summary_table(rows: list[ReasonCount]) -> Table:
    table = Table(title="raw.quarantine")
    for header in ("topic", "reason", "messages", "replayable", "replayed", "unconfirmed",
                   "first", "last", "example"):
        justify = "right" if header in ("messages", "replayable", "replayed", "unconfirmed") else "left"
        table.add_column(header, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r.topic, r.reason, f"{r.messages:,}", f"{r.replayable:,}", f"{r.replayed:,}",
            f"{r.unconfirmed:,}", f"{r.first_loaded:%Y-%m-%d %H:%M}", f"{r.last_loaded:%Y-%m-%d %H:%M}",
            r.example[:120],
        )
    return table


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return 0 if exit_.code in (0, None) else 2
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    try:
        settings = load_settings()
        require_credentials(settings)
    except ConfigError as err:
        print(f"tickhouse quarantine: {err}", file=sys.stderr)
        return 2
    where = QuarantineFilter(topic=args.topic, since=args.since, until=args.until, error=args.error)

    from tickhouse.warehouse import connect

    with connect(settings, "loader") as conn:
        if args.action == "list":
            rows = summarize(conn, where)
            console.print(_summary_table(rows))
            console.print(f"{sum(r.messages for r in rows):,} quarantined message(s) match")
            if args.messages:
                listed = Table(title=f"newest {args.limit} matching messages")
                for header in ("topic", "partition", "offset", "quarantined at", "bytes", "whole",
                               "replay", "error"):
                    listed.add_column(header, overflow="fold")
                for m in messages(conn, where, args.limit):
                    listed.add_row(
                        m.topic, str(m.partition), str(m.offset), f"{m.loaded_at:%Y-%m-%d %H:%M:%S}",
                        "-" if m.length is None else str(m.length), "yes" if m.whole else "no",
                        m.replay or "-", m.error[:200],
                    )
                console.print(listed)
            return 0
        result = replay(
            settings.kafka_bootstrap_servers,
            conn,
            where,
            limit=args.limit,
            dry_run=args.dry_run,
            retry_unconfirmed=args.retry_unconfirmed,
        )
    replayable = result.matched - result.not_whole - result.already
    console.print(
        f"{result.matched:,} message(s) match; {result.not_whole:,} not kept whole (over 64 KiB, "
        f"a null value, or bytes that no longer match their sha256), not replayable; "
        f"{result.already:,} replayed before; "
        + (f"{replayable:,} would be published" if args.dry_run
           else f"{len(result.published):,} published again")
    )
    for topic, partition, offset, why in result.failed[:20]:
        print(f"tickhouse quarantine: {topic}[{partition}]@{offset} not published: {why}",
              file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
