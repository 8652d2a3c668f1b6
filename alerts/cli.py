"""`tickhouse alerts [OPTIONS]`: run the fast-path alert service (and its notifiers) until stopped.
`tickhouse alerts notify [OPTIONS]`: run only the notifiers."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

from alerts.config import DEFAULT_RULES_PATH, RulesConfig, load_rules
from alerts.errors import AlertsError
from alerts.notify import NotifyOptions, NotifyService
from alerts.service import AlertService, ServiceOptions
from tickhouse.config import ConfigError, Settings, load_settings
from tickhouse.listen import PortUnavailableError, start_metrics_server

log = logging.getLogger("tickhouse.alerts")

DEFAULT_METRICS_PORT = 9103
_N = TypeVar("_N", int, float)


def _env(name: str, default: _N, convert: Callable[[str], _N]) -> _N:
    """A number from the environment (or `default`); ConfigError naming the variable if bad."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = convert(raw)
    except ValueError:
        value = None
    if value is None or value < 0:
        raise ConfigError(f"{name}={raw!r} is not a number >= 0")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules",
        default=os.environ.get("ALERTS_RULES_FILE") or str(DEFAULT_RULES_PATH),
        help="rules YAML file (env ALERTS_RULES_FILE; default: the bundled rules.yaml)",
    )
    parser.add_argument(
        "--group",
        default=os.environ.get("ALERTS_GROUP", "tickhouse-alerts"),
        help="consumer group id (env ALERTS_GROUP)",
    )
    parser.add_argument(
        "--notify-group",
        default=os.environ.get("ALERTS_NOTIFY_GROUP") or None,
        help="notifiers' consumer groups are <this>.<notifier name> (env ALERTS_NOTIFY_GROUP; "
        "default: <group>-notify)",
    )
    parser.add_argument("--alerts-topic", default=None, help="default: ALERTS_TOPIC")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help=f"Prometheus port (env ALERTS_METRICS_PORT, default {DEFAULT_METRICS_PORT}; 0 = off)",
    )
    parser.add_argument(
        "--metrics-host",
        default=os.environ.get("ALERTS_METRICS_HOST", "127.0.0.1"),
        help="address the metrics endpoint binds to (env ALERTS_METRICS_HOST)",
    )
    parser.add_argument(
        "--notify-max-age-seconds",
        type=float,
        default=_env("ALERTS_NOTIFY_MAX_AGE_SECONDS", 300.0, float),
        help="alerts on trades older than this when alerted (replays, backfills) are published and "
        "stored but not sent to the notifiers (env ALERTS_NOTIFY_MAX_AGE_SECONDS, default 300; 0 = no limit)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=None, help="stop after this many seconds (tests, demo)"
    )
    parser.add_argument("--log-level", default=os.environ.get("ALERTS_LOG_LEVEL", "INFO"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse alerts",
        description="Evaluate alert rules on every trade and publish alerts "
        "(docs/interfaces/kafka-messages.md); `tickhouse alerts notify` runs only the notifiers.",
    )
    _common(parser)
    parser.add_argument("--check", action="store_true", help="validate the rules file and exit")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="with no committed offset or checkpoint, start at the oldest trade (default: only new trades)",
    )
    parser.add_argument("--trades-topic", default=None, help="default: TRADES_TOPIC")
    parser.add_argument(
        "--state-topic",
        default=os.environ.get("ALERTS_STATE_TOPIC") or None,
        help="compacted checkpoint topic (env ALERTS_STATE_TOPIC; default: <alerts topic>.state)",
    )
    parser.add_argument(
        "--no-notify",
        action="store_true",
        help="do not run the notifiers in this process (run `tickhouse alerts notify` instead)",
    )
    parser.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=2.0,
        help="commit offsets and checkpoint state this often",
    )
    parser.add_argument(
        "--replay-seconds",
        type=float,
        default=900.0,
        help="without a checkpoint, rebuild state from this much of the topic",
    )
    parser.add_argument(
        "--max-ahead-seconds",
        type=float,
        default=_env("ALERTS_MAX_AHEAD_SECONDS", 5.0, float),
        help="a trade dated further ahead of its Kafka timestamp is left out of the rules "
        "(env ALERTS_MAX_AHEAD_SECONDS, default 5)",
    )
    parser.add_argument(
        "--evict-idle-seconds",
        type=float,
        default=_env("ALERTS_EVICT_IDLE_SECONDS", 7 * 86_400.0, float),
        help="forget a symbol without a trade for this long, in event time (env "
        "ALERTS_EVICT_IDLE_SECONDS, default 7 days)",
    )
    parser.add_argument(
        "--max-symbols",
        type=int,
        default=_env("ALERTS_MAX_SYMBOLS", 50_000, int),
        help="keep at most this many symbols, forgetting the least recently traded (env "
        "ALERTS_MAX_SYMBOLS, default 50000; ~5-10 KB each)",
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="max messages per consume()")
    return parser


def _notify_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse alerts notify",
        description="Deliver the alerts of the alerts topic to the configured notifiers, at least once.",
    )
    _common(parser)
    parser.add_argument(
        "--lookback-seconds",
        type=float,
        default=300.0,
        help="a notifier that never committed starts this far back on the alerts topic",
    )
    return parser


def _metrics_port(arg: int | None) -> int:
    if arg is not None:
        raw = str(arg)
    else:
        raw = os.environ.get("ALERTS_METRICS_PORT", str(DEFAULT_METRICS_PORT)).strip()
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"ALERTS_METRICS_PORT={raw!r} is not a TCP port (0 turns metrics off)")
    return int(raw)


def _notify_options(
    args: argparse.Namespace, settings: Settings, rules: RulesConfig, lookback: float = 300.0
) -> NotifyOptions:
    return NotifyOptions(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        alerts_topic=args.alerts_topic or settings.alerts_topic,
        notifiers=rules.notifiers,
        group=args.notify_group or f"{args.group}-notify",
        lookback_seconds=lookback,
        max_age_seconds=args.notify_max_age_seconds,
    )


def _on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is threading.main_thread():

        def _stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    notify_only = bool(argv) and argv[0] == "notify"
    try:
        parser = _notify_parser() if notify_only else _parser()
    except ConfigError as err:
        print(f"tickhouse alerts: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv[1:] if notify_only else argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        rules = load_rules(args.rules)
        if not notify_only and args.check:
            print(
                f"{args.rules}: OK ({len(rules.overrides)} symbol overrides, "
                f"{len(rules.notifiers)} notifiers)"
            )
            return 0
        settings = load_settings()
        port = _metrics_port(args.metrics_port)
        if not notify_only and args.batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        if not notify_only and args.max_ahead_seconds < 0:
            raise ConfigError("--max-ahead-seconds must be >= 0")
        notify = None
        if notify_only or not args.no_notify:
            lookback = args.lookback_seconds if notify_only else 300.0
            notify = NotifyService(_notify_options(args, settings, rules, lookback))
    except (AlertsError, ConfigError) as err:
        print(f"tickhouse alerts: {err}", file=sys.stderr)
        return 2
    if port:
        try:
            start_metrics_server(port, args.metrics_host, "ALERTS_METRICS_PORT")
        except PortUnavailableError as err:
            print(f"tickhouse alerts: {err}", file=sys.stderr)
            return 2
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, port)
    if notify_only:
        return _run_notify(args, notify)
    alerts_topic = args.alerts_topic or settings.alerts_topic
    options = ServiceOptions(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        trades_topic=args.trades_topic or settings.trades_topic,
        alerts_topic=alerts_topic,
        state_topic=args.state_topic or f"{alerts_topic}.state",
        rules=rules,
        group=args.group,
        from_beginning=args.from_beginning,
        max_seconds=args.max_seconds,
        checkpoint_seconds=args.checkpoint_seconds,
        replay_seconds=args.replay_seconds,
        batch_size=args.batch_size,
        topic_partitions=settings.topic_partitions,
        max_ahead_seconds=args.max_ahead_seconds,
        evict_idle_seconds=args.evict_idle_seconds,
        max_symbols=args.max_symbols,
    )
    service = AlertService(options)
    stop = threading.Event()
    _on_signals(stop)

    def _stop_service() -> None:
        stop.wait()
        service.stop()

    threading.Thread(target=_stop_service, daemon=True).start()
    log.info(
        "consuming %s as group %s, publishing to %s (rules %s)",
        options.trades_topic,
        options.group,
        options.alerts_topic,
        args.rules,
    )
    if notify is not None:
        notify.start()
    try:
        stats = service.run()
    finally:
        if notify is not None:
            notify.stop()
    log.info(
        "stopped: %d trades, %d bad messages, %d alerts %s",
        stats.trades,
        stats.bad_messages,
        stats.alerts,
        stats.by_rule,
    )
    return 0


def _run_notify(args: argparse.Namespace, notify: NotifyService | None) -> int:
    assert notify is not None
    if not notify.consumers:
        print("tickhouse alerts notify: no notifier has its secrets set; nothing to do", file=sys.stderr)
        return 2
    stop = threading.Event()
    _on_signals(stop)
    notify.start()
    stop.wait(args.max_seconds)
    notify.stop()
    failed = notify.failed()
    for line in failed:
        log.error("notifier %s", line)
    return 1 if failed else 0
