"""`tickhouse drain --once [--max-messages N] [--max-seconds T]`: one drain run from the shell.

The same code the Airflow task runs; prints the per-topic stats table. Exit status: 0 on success,
1 when the data-quality policy is `fail` and an expectation failed (the rows are committed), 2 on
bad arguments or configuration, 3 when the drain itself failed (also when a topic was rewound:
the other topics' rows are committed, the message says what to do).

`tickhouse drain --reset-topic TOPIC` is that "what to do" for a topic that was deleted and
re-created: the warehouse's stored positions of TOPIC move to the broker's current log start, so
the next run drains the new topic from its beginning (the rows loaded before stay).

`tickhouse drain --merge-day-partitions` merges the one-day partitions of an install from before
migration 006 into the months and years of the current scheme (rows are copied; one transaction
per merged range, each blocking readers of that table only for its last catalog steps).
"""

from __future__ import annotations

import argparse
import logging
import sys

from rich.console import Console
from rich.table import Table

from drain.errors import DataQualityError, TopicRewound
from drain.options import DQ_POLICIES, load_options
from drain.stats import DrainResult
from tickhouse.config import ConfigError, Settings, load_settings, require_credentials


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse drain",
        description="Drain the Kafka topics into the raw tables, exactly once (one micro-batch).",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--once", action="store_true", help="run one micro-batch and exit")
    action.add_argument(
        "--reset-topic",
        action="append",
        metavar="TOPIC",
        help="after TOPIC was deleted and re-created: drain it again from the broker's current "
        "start (repeatable)",
    )
    action.add_argument(
        "--merge-day-partitions",
        action="store_true",
        help="merge the day partitions of an install from before migration 006 into months and "
        "years (copies their rows)",
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


def stats_table(result: DrainResult) -> Table:
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

    if args.reset_topic:
        return _reset_topics(settings, options.group, options.warehouse, args.reset_topic, console)
    if args.merge_day_partitions:
        return _merge_day_partitions(settings, options.warehouse, console)

    from drain.runner import drain_once

    try:
        result = drain_once(settings, options)
    except DataQualityError as err:
        console.print(stats_table(err.result))
        print(f"tickhouse drain: {err}", file=sys.stderr)
        return 1
    except TopicRewound as err:
        console.print(stats_table(err.result))
        print(f"tickhouse drain: stopped: {err}", file=sys.stderr)
        return 3
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


def _reset_topics(
    settings: Settings, group: str, warehouse: str, topics: list[str], console: Console
) -> int:
    if warehouse != "postgres":
        print(
            "tickhouse drain: --reset-topic updates PostgreSQL's raw.kafka_offsets; on Snowflake "
            "set NEXT_OFFSET in RAW.KAFKA_OFFSETS to the topic's first offsets yourself",
            file=sys.stderr,
        )
        return 2
    from drain.consumer import log_starts
    from drain.targets.postgres.offsets import lock_group, reset_topic
    from tickhouse.warehouse import connect

    try:
        starts = {topic: log_starts(settings.kafka_bootstrap_servers, topic) for topic in topics}
        with connect(settings, "loader") as conn:
            lock_group(conn, group)  # not while this group's drain is running
            changes = [(t, *change) for t in topics for change in reset_topic(conn, group, t, starts[t])]
    except Exception as err:
        print(f"tickhouse drain: --reset-topic failed, nothing changed: {err}", file=sys.stderr)
        return 3
    table = Table(title="stored positions reset (raw.kafka_offsets)")
    for header in ("topic", "group", "partition", "next offset before", "next offset now"):
        table.add_column(header)
    for topic, grp, partition, old, new in changes:
        table.add_row(topic, grp, str(partition), "-" if old is None else str(old), str(new))
    console.print(table if changes else "nothing to reset: the stored positions are already there")
    return 0


def _merge_day_partitions(settings: Settings, warehouse: str, console: Console) -> int:
    if warehouse != "postgres":
        print("tickhouse drain: --merge-day-partitions is for PostgreSQL", file=sys.stderr)
        return 2
    from datetime import UTC, datetime

    from drain.targets.postgres.partitions import merge, natural_range, plan_day_merges, read_ranges
    from tickhouse.raw_tables import TABLES
    from tickhouse.warehouse import connect

    def day(ms: float) -> str:
        return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d}"

    table = Table(title="day partitions merged")
    for header in ("table", "from", "to", "day partitions", "into"):
        table.add_column(header)
    merged = 0
    try:
        with connect(settings, "loader", autocommit=True) as conn:
            for raw_table in TABLES.values():
                plans = plan_day_merges(
                    read_ranges(conn, raw_table), lambda ms: natural_range(conn, ms)
                )
                for plan in plans:
                    with conn.transaction():
                        conn.execute("set local lock_timeout = '30s'")
                        name = merge(conn, raw_table, plan)
                    merged += len(plan.days)
                    table.add_row(raw_table, day(plan.lower_ms), day(plan.upper_ms),
                                  str(len(plan.days)), name)
                    console.print(f"{raw_table}: {len(plan.days)} day partitions -> {name}")
    except Exception as err:
        print(f"tickhouse drain: --merge-day-partitions stopped (what was merged stays merged, "
              f"the rest is unchanged; run it again): {err}", file=sys.stderr)
        return 3
    console.print(table if merged else "no day partitions to merge")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
