"""`tickhouse alerts [OPTIONS]`: run the fast-path alert service until stopped."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from types import FrameType

from prometheus_client import start_http_server

from alerts.config import DEFAULT_RULES_PATH, RulesError, load_rules
from alerts.service import AlertService, ServiceOptions
from tickhouse.config import ConfigError, load_settings

log = logging.getLogger("tickhouse.alerts")

DEFAULT_METRICS_PORT = 9103


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse alerts",
        description="Evaluate alert rules on every trade and publish alerts (CONTRACT §3).",
    )
    parser.add_argument(
        "--rules",
        default=os.environ.get("ALERTS_RULES_FILE") or str(DEFAULT_RULES_PATH),
        help="rules YAML file (env ALERTS_RULES_FILE; default: the bundled rules.yaml)",
    )
    parser.add_argument("--check", action="store_true", help="validate the rules file and exit")
    parser.add_argument(
        "--group",
        default=os.environ.get("ALERTS_GROUP", "tickhouse-alerts"),
        help="consumer group id (env ALERTS_GROUP)",
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="with no committed offset or checkpoint, start at the oldest trade (default: only new trades)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=None, help="stop after this many seconds (tests, demo)"
    )
    parser.add_argument("--trades-topic", default=None, help="default: TRADES_TOPIC")
    parser.add_argument("--alerts-topic", default=None, help="default: ALERTS_TOPIC")
    parser.add_argument(
        "--state-topic",
        default=os.environ.get("ALERTS_STATE_TOPIC") or None,
        help="compacted checkpoint topic (env ALERTS_STATE_TOPIC; default: <alerts topic>.state)",
    )
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
    parser.add_argument("--batch-size", type=int, default=1000, help="max messages per consume()")
    parser.add_argument("--log-level", default=os.environ.get("ALERTS_LOG_LEVEL", "INFO"))
    return parser


def _metrics_port(arg: int | None) -> int:
    if arg is not None:
        raw = str(arg)
    else:
        raw = os.environ.get("ALERTS_METRICS_PORT", str(DEFAULT_METRICS_PORT)).strip()
    if not raw.isdigit() or int(raw) > 65535:
        raise ConfigError(f"ALERTS_METRICS_PORT={raw!r} is not a TCP port (0 turns metrics off)")
    return int(raw)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        rules = load_rules(args.rules)
        if args.check:
            print(
                f"{args.rules}: OK ({len(rules.overrides)} symbol overrides, "
                f"{len(rules.notifiers)} notifiers)"
            )
            return 0
        settings = load_settings()
        port = _metrics_port(args.metrics_port)
    except (RulesError, ConfigError) as err:
        print(f"tickhouse alerts: {err}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("tickhouse alerts: --batch-size must be >= 1", file=sys.stderr)
        return 2
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
    )
    try:
        service = AlertService(options)
    except ValueError as err:  # e.g. a notifier URL variable that is not a URL
        print(f"tickhouse alerts: {err}", file=sys.stderr)
        return 2
    if port:
        start_http_server(port, addr=args.metrics_host)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, port)

    if threading.current_thread() is threading.main_thread():

        def _stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            service.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    log.info(
        "consuming %s as group %s, publishing to %s (rules %s)",
        options.trades_topic,
        options.group,
        options.alerts_topic,
        args.rules,
    )
    stats = service.run()
    log.info(
        "stopped: %d trades, %d bad messages, %d alerts %s",
        stats.trades,
        stats.bad_messages,
        stats.alerts,
        stats.by_rule,
    )
    return 0
