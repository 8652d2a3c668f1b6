"""The `tickhouse` console script (docs/interfaces/commands.md).

`up | down | status | env | demo` manage the local stack; `produce | backfill | drain | quarantine |
transform | alerts | dashboard | metrics` hand their remaining arguments to the service that
implements them (each service's `main(argv) -> exit code`, imported when it runs).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tickhouse.config import ConfigError, load_settings
from tickhouse.errors import TickhouseError


def _produce(argv: list[str]) -> int:
    from producer.cli import main

    return main(argv)


def _backfill(argv: list[str]) -> int:
    from producer.backfill_cli import main

    return main(argv)


def _symbols(argv: list[str]) -> int:
    from producer.symbols_cli import main

    return main(argv)


def _corporate_actions(argv: list[str]) -> int:
    from producer.corporate_actions_cli import main

    return main(argv)


def _drain(argv: list[str]) -> int:
    from drain.cli import main

    return main(argv)


def _quarantine(argv: list[str]) -> int:
    from drain.quarantine_cli import main

    return main(argv)


def _transform(argv: list[str]) -> int:
    from transform.cli import main

    return main(argv)


def _docs(argv: list[str]) -> int:
    from transform.docs_cli import main

    return main(argv)


def _alerts(argv: list[str]) -> int:
    from alerts.cli import main

    return main(argv)


def _dashboard(argv: list[str]) -> int:
    from dashboard.cli import main

    return main(argv)


def _metrics(argv: list[str]) -> int:
    from exporter.cli import main

    return main(argv)


# subcommand -> (the service's main, what it does)
SERVICES: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "produce": (_produce, "publish trades and quotes to Kafka (finnhub, replay, synthetic)"),
    "backfill": (_backfill, "publish history as candles to Kafka (finnhub, file)"),
    "symbols": (_symbols, "`symbols refresh`: company profiles from Finnhub into dim_symbols"),
    "corporate-actions": (_corporate_actions, "`corporate-actions refresh`: splits and dividends "
                          "from Finnhub or a CSV file into raw.corporate_actions"),
    "drain": (_drain, "drain Kafka into the raw tables (`--once`: one micro-batch)"),
    "quarantine": (_quarantine, "list the messages the drain quarantined, or replay them after a fix"),
    "transform": (_transform, "`dbt build` of the whole project"),
    "docs": (_docs, "generate dbt's docs site (lineage, column docs) and serve it on 127.0.0.1"),
    "alerts": (_alerts, "the fast-path alert service (runs until stopped)"),
    "dashboard": (_dashboard, "the web dashboard over the marts (reads as bi_reader)"),
    "metrics": (_metrics, "Prometheus exporter of drain lag, loads and freshness"),
}
COMPONENT_HELP = "postgres, kafka, airflow (default: all)"


def _components(raw: str | None) -> list[str]:
    from ops.stack.manager import COMPONENTS

    return [c.strip() for c in raw.split(",") if c.strip()] if raw else list(COMPONENTS)


def cmd_up(args: argparse.Namespace) -> int:
    from ops.stack.manager import up

    started: list[str] = []
    try:
        # the whole stack (no --only) brings Tickhouse's own services too, supervised
        up(_components(args.only), started=started, apps=not args.only)
    finally:
        if args.record:
            Path(args.record).write_text("".join(f"{name}\n" for name in started))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from ops.stack.manager import down

    down(_components(args.only) if args.only else None)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ops.stack import airflow
    from ops.stack.manager import status

    settings = load_settings()
    rows = status()
    table = Table(title="Tickhouse local stack")
    for column in ("component", "address", "running", "answers", "detail"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.name,
            row.address,
            "[green]yes[/]" if row.running else "[red]no[/]",
            "[green]yes[/]" if row.answers else "[red]no[/]",
            row.detail,
        )
    from ops.stack.apps import app_status

    for app in app_status(settings):
        if app.running or app.restarts:
            table.add_row(
                app.name,
                app.url,
                "[green]yes[/]" if app.running else "[red]no[/]",
                "[green]yes[/]" if app.answers else "[red]no[/]",
                f"restarts: {app.restarts}"
                + ("" if app.supervised else " [yellow](no supervisor running)[/]"),
            )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
    _print_pipeline(console, settings)
    try:
        console.print(
            f"Airflow UI: {settings.airflow_url}  login: admin / {airflow.admin_password(settings)}"
        )
    except Exception:
        console.print(f"Airflow UI: {settings.airflow_url}  (run `make up` to set up the login)")
    return 0 if all(r.running and r.answers for r in rows) else 1


def _print_pipeline(console: Any, settings: Any) -> None:
    """Lag per topic and freshness of the raw tables, when the services answer."""
    from rich.table import Table

    from exporter.pipeline import drain_lag, seconds_since, topic_loads

    try:
        lags = drain_lag(settings, timeout=3)
        loads = {load.topic: load for load in topic_loads(settings)}
    except Exception as err:
        console.print(
            f"pipeline: not available ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        )
        return
    table = Table(title="Pipeline (drain)")
    for column in ("topic", "in Kafka", "lag", "loaded", "quarantined", "last drain", "newest event"):
        table.add_column(column, justify="right" if column not in ("topic",) else "left")
    for topic in settings.topics:
        parts = [p for p in lags if p.topic == topic]
        load = loads.get(topic)
        last = seconds_since(load.last_run_at) if load else None
        table.add_row(
            topic,
            str(sum(p.end_offset for p in parts)),
            str(sum(p.lag for p in parts)),
            str(load.loaded) if load else "0",
            str(load.quarantined) if load else "0",
            f"{last:.0f} s ago" if last is not None else "never",
            load.max_event_time.isoformat(timespec="seconds") if load and load.max_event_time else "-",
        )
    console.print(table)
    _print_marts_coverage(console, settings)
    _print_unknown_conditions(console, settings)


def _print_marts_coverage(console: Any, settings: Any, limit: int = 15) -> None:
    """Per symbol: the oldest and newest bar in the marts, and rows raw holds that they do not yet."""
    from rich.table import Table

    from exporter.pipeline import marts_coverage

    try:
        coverage = marts_coverage(settings, limit)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        console.print(f"marts: not available ({reason})")
        return
    if coverage is None:
        console.print("marts: not built yet (the first transform creates them)")
        return

    def moment(value: Any) -> str:
        return value.isoformat(timespec="minutes") if value is not None else "-"

    behind = (
        f"[yellow]{coverage.symbols_behind} behind raw, {coverage.rows_pending:,} rows not yet "
        "transformed[/]"
        if coverage.symbols_behind
        else "[green]up to date with raw[/]"
    )
    table = Table(
        title=f"Marts per symbol ({coverage.symbol_count} symbols, {behind}; "
        f"{min(limit, coverage.symbol_count)} shown)"
    )
    for column in ("symbol", "oldest bar", "newest bar", "newest 1d bar", "rows pending", "oldest pending"):
        table.add_column(column, justify="left" if column == "symbol" else "right")
    for item in coverage.symbols:
        table.add_row(
            item.symbol,
            moment(item.first_bar_start),
            moment(item.last_bar_start),
            moment(item.last_daily_bar_start),
            f"[yellow]{item.rows_pending:,}[/]" if item.rows_pending else "0",
            moment(item.oldest_pending_event_time),
        )
    console.print(table)


def _print_unknown_conditions(console: Any, settings: Any, limit: int = 15) -> None:
    """The trade-condition codes the eligibility table does not list (taken as regular trades)."""
    from rich.table import Table

    from exporter.pipeline import unknown_conditions

    try:
        unknown = unknown_conditions(settings, limit)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        console.print(f"trade conditions: not available ({reason})")
        return
    if unknown is None:
        return  # the marts are not built yet: _print_marts_coverage said so
    if not unknown.code_count:
        console.print("trade conditions: [green]every code in the warehouse is in the table[/]")
        return

    def moment(value: Any) -> str:
        return value.isoformat(timespec="seconds") if value is not None else "-"

    table = Table(
        title=f"[yellow]Trade-condition codes not in the table ({unknown.code_count} codes, "
        f"{unknown.prints:,} prints taken as regular; {min(limit, unknown.code_count)} shown)[/]",
        caption="add each code's rule to dbt_project/seeds/trade_conditions.csv "
        "(docs/interfaces/warehouse.md, trade-condition eligibility)",
    )
    for column in ("code", "prints", "symbols", "first seen", "last seen"):
        table.add_column(column, justify="left" if column == "code" else "right")
    for item in unknown.codes:
        table.add_row(
            item.code,
            f"{item.prints:,}",
            f"{item.symbols:,}",
            moment(item.first_event_time),
            moment(item.last_event_time),
        )
    console.print(table)


def cmd_env(args: argparse.Namespace) -> int:
    from tickhouse.config import read_env_file

    settings = load_settings()
    values = settings.as_env()
    generated = read_env_file(settings.secrets_file)
    for name in ("AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_VIEWER_PASSWORD"):
        if not values.get(name) and generated.get(name):
            values[name] = generated[name]
    prefix = "export " if args.export else ""
    for name, value in values.items():
        print(f"{prefix}{name}={shlex.quote(value)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ops.demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse", description=__doc__.splitlines()[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "up",
        help="start the local stack (PostgreSQL, Kafka, Airflow) and, without --only, the alert "
        "service, exporter and dashboard under a supervisor that restarts them",
    )
    p.add_argument("--only", help=COMPONENT_HELP)
    p.add_argument("--record", help="write the components this call started to FILE")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop the local stack")
    p.add_argument("--only", help=COMPONENT_HELP)
    p.set_defaults(func=cmd_down)
    sub.add_parser("status", help="each component and whether it answers").set_defaults(func=cmd_status)
    env = sub.add_parser("env", help="the effective configuration as KEY=value lines")
    env.add_argument(
        "--export",
        action="store_true",
        help="prefix each line with `export `: eval \"$(tickhouse env --export)\" prepares a shell for dbt",
    )
    env.set_defaults(func=cmd_env)
    sub.add_parser("demo", help="the end-to-end demo on bundled data").set_defaults(func=cmd_demo)
    for name, (_, help_text) in SERVICES.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = args_list[0] if args_list else ""
    try:
        if command in SERVICES:
            run, _ = SERVICES[command]
            return run(args_list[1:])
        parser = build_parser()
        args = parser.parse_args(args_list)
        result: int = args.func(args)
        return result
    except ConfigError as err:
        print(f"tickhouse: configuration error: {err}", file=sys.stderr)
        return 2
    except TickhouseError as err:
        # every package's exception root derives from TickhouseError; the message says what to do
        print(f"tickhouse {command}: {err}" if command else f"tickhouse: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
