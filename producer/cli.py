"""`tickhouse produce`: publish trades (and quotes) from Finnhub, a file, or a generator to Kafka.

Exit codes: 0 done or stopped by SIGTERM/SIGINT (after flushing), 1 Kafka failure, 2 bad usage or
configuration, 3 Finnhub refused the API key.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from producer.finnhub_quotes import QuotePoller, hide_secret_in_logs
from producer.finnhub_stream import FinnhubAuthError, FinnhubStream, KeyLock
from producer.identity import IdentityFileError
from producer.metrics import ProducerMetrics, ProducerStats, StatusLine, metrics_port_from_env
from producer.publisher import Publisher, PublisherError, prepare_topics
from producer.replay import (
    Prepared,
    ReadStats,
    ReplayError,
    batched,
    count_rows,
    prepare,
    prepare_file,
    publish_prepared,
)
from producer.spool import SpoolBusy
from producer.synthetic import SyntheticConfig, generate
from tickhouse.config import ConfigError, Settings, env_file, load_settings, parse_symbols, read_env_file
from tickhouse.schemas import Quote, Trade, now_ms, to_json

log = logging.getLogger("producer")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_AUTH = 0, 1, 2, 3
BATCH = 5_000


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be > 0")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickhouse produce",
        description="Publish market trades (and quotes) to Kafka "
        "(docs/interfaces/commands.md, docs/interfaces/kafka-messages.md).",
    )
    parser.add_argument("--source", required=True, choices=("finnhub", "replay", "synthetic"))
    parser.add_argument("--symbols", help="comma-separated symbols (default: SYMBOLS)")
    replay = parser.add_argument_group("replay")
    replay.add_argument("--file", type=Path, help="CSV or JSONL trades file (optionally .gz)")
    replay.add_argument("--speed", type=_non_negative_float, default=0.0,
                        help="0 = as fast as possible, 1 = real time, N = N times faster")
    replay.add_argument("--max-gap", type=_positive_float, default=None,
                        help="cap any single wait between two trades at this many seconds")
    synthetic = parser.add_argument_group("synthetic")
    synthetic.add_argument("--rate", type=_positive_float, default=100.0,
                           help="trades per second over all symbols (default 100)")
    synthetic.add_argument("--duration", type=_positive_float, default=60.0,
                           help="seconds to run (default 60)")
    synthetic.add_argument("--seed", type=int, default=None, help="seed for reproducible trades")
    synthetic.add_argument("--start-ts", type=int, default=None,
                           help="epoch ms of the first trade (default: now)")
    synthetic.add_argument("--fast", action="store_true",
                           help="publish generated trades as fast as possible (no pacing)")
    finnhub = parser.add_argument_group("finnhub")
    finnhub.add_argument("--quotes-every", type=_positive_float, default=None,
                         metavar="SECONDS", help="also poll REST /quote for each symbol")
    finnhub.add_argument("--symbols-file", type=Path, default=None,
                         help="file with the symbols; re-read on SIGHUP")
    finnhub.add_argument("--silence-timeout", type=_positive_float, default=30.0,
                         help="reconnect when nothing arrives for this long (default 30 s)")
    kafka = parser.add_argument_group("kafka")
    kafka.add_argument("--trades-topic", default=None, help="default: TRADES_TOPIC")
    kafka.add_argument("--quotes-topic", default=None, help="default: QUOTES_TOPIC")
    kafka.add_argument("--spool", type=Path, default=None,
                       help="spool file (default: $TICKHOUSE_STATE_DIR/producer/spool-SOURCE.bin)")
    kafka.add_argument("--max-queue", type=int, default=100_000,
                       help="in-memory queue bound before spooling (messages)")
    kafka.add_argument("--stall-seconds", type=_positive_float, default=2.0,
                       help="queue full with no ack for this long = broker down: spool")
    kafka.add_argument("--flush-timeout", type=_non_negative_float, default=15.0,
                       help="seconds to wait for acknowledgements at exit")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="Prometheus port (default PRODUCER_METRICS_PORT or 9101; 0 = off)")
    parser.add_argument("--no-status", action="store_true", help="no live status line")
    parser.add_argument("--progress", action="store_true",
                        help="show the replay progress bar even when not on a terminal")
    parser.add_argument("--log-level", default="INFO")
    return parser


@dataclass(slots=True)
class Runtime:
    settings: Settings
    publisher: Publisher
    stats: ProducerStats
    trades_topic: str
    quotes_topic: str
    stop: threading.Event


def main(argv: list[str]) -> int:
    """Entry point of `tickhouse produce ARGS` (argv excludes the word `produce`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level.upper(), stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        settings = load_settings()
        symbols = parse_symbols("--symbols", args.symbols) if args.symbols else settings.symbols
        port = args.metrics_port if args.metrics_port is not None else metrics_port_from_env()
    except (ConfigError, ValueError) as err:
        print(f"tickhouse produce: {err}", file=sys.stderr)
        return EXIT_USAGE
    hide_secret_in_logs(settings.finnhub_api_key)
    if args.source == "replay" and args.file is None:
        parser.error("--source replay needs --file PATH")
    if args.source == "finnhub" and not settings.finnhub_api_key:
        print("tickhouse produce: FINNHUB_API_KEY is not set; it is required for "
              "--source finnhub (get a free key at https://finnhub.io)", file=sys.stderr)
        return EXIT_USAGE

    stats = ProducerStats()
    metrics = ProducerMetrics(stats)
    served = metrics.serve(port)
    if served:
        log.info("metrics on http://127.0.0.1:%d/metrics", served)
    trades_topic = args.trades_topic or settings.trades_topic
    quotes_topic = args.quotes_topic or settings.quotes_topic
    topics = [trades_topic] + ([quotes_topic] if args.quotes_every else [])
    prepare_topics(settings.kafka_bootstrap_servers, topics, settings.topic_partitions)
    try:
        publisher = Publisher(
            settings.kafka_bootstrap_servers,
            spool_path=args.spool or settings.state_dir / "producer" / f"spool-{args.source}.bin",
            stats=stats,
            metrics=metrics,
            max_queue_messages=args.max_queue,
            stall_seconds=args.stall_seconds,
            trades_topic=trades_topic,
        )
    except (SpoolBusy, IdentityFileError) as err:
        print(f"tickhouse produce: {err}", file=sys.stderr)
        metrics.close()
        return EXIT_USAGE
    runtime = Runtime(settings, publisher, stats, trades_topic, quotes_topic, threading.Event())
    status = StatusLine(stats)
    if not args.no_status:
        status.start()
    started = time.monotonic()
    code = EXIT_OK
    restore = _install_stop_handlers(runtime.stop) if args.source != "finnhub" else None
    try:
        if args.source == "replay":
            code = run_replay(runtime, args.file, args.speed, args.max_gap, args.progress)
        elif args.source == "synthetic":
            code = run_synthetic(runtime, symbols, args)
        else:
            code = asyncio.run(run_finnhub(runtime, symbols, args))
    except PublisherError as err:
        log.error("%s", err)
        code = EXIT_FAILURE
    except FinnhubAuthError as err:
        log.error("%s", err)
        code = EXIT_AUTH
    except ReplayError as err:
        log.error("%s", err)
        code = EXIT_USAGE
    finally:
        left = publisher.close(args.flush_timeout)
        if publisher.refused and code == EXIT_OK:
            code = EXIT_FAILURE  # not an outage that the spool rides out: the rights are missing
        status.stop()
        metrics.close()
        if restore is not None:
            restore()
    elapsed = time.monotonic() - started
    print(
        f"tickhouse produce: {stats.published:,} published, {stats.delivered:,} acknowledged, "
        f"{left:,} kept in the spool, {stats.delivery_errors:,} delivery errors, "
        f"{stats.malformed_frames:,} invalid inputs skipped in {elapsed:.1f}s",
        file=sys.stderr,
    )
    return code


def _install_stop_handlers(stop: threading.Event) -> Callable[[], None] | None:
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: flushing and exiting", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


# --- replay ----------------------------------------------------------------------------------


def run_replay(
    runtime: Runtime, path: Path, speed: float, max_gap: float | None, progress: bool
) -> int:
    read_stats = ReadStats()
    publisher = runtime.publisher
    batches = batched(prepare_file(path, read_stats), BATCH)
    show = progress or sys.stderr.isatty()

    def publish_all(on_batch: Callable[[int], None] | None) -> int:
        def counted(n: int) -> None:
            runtime.stats.trades_in += n
            if on_batch is not None:
                on_batch(n)

        return publish_prepared(
            batches, publisher.publish, runtime.trades_topic, speed=speed, max_gap=max_gap,
            stop=runtime.stop, on_batch=counted, idle=publisher.service,
            publish_batch=publisher.publish_batch,
        )

    if show:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        total = count_rows(path)
        columns = (
            TextColumn("replay {task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>10} msg/s"), TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(path.name, total=total, rate="-")
            started = time.monotonic()
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                rate = done[0] / max(time.monotonic() - started, 1e-9)
                bar.update(task, advance=n, rate=f"{rate:,.0f}")

            sent = publish_all(advance)
    else:
        sent = publish_all(None)
    runtime.stats.malformed_frames += read_stats.invalid
    log.info("replayed %d trades from %s (%d rows, %d invalid skipped)", sent, path,
             read_stats.rows, read_stats.invalid)
    return EXIT_OK


# --- synthetic -------------------------------------------------------------------------------


def run_synthetic(runtime: Runtime, symbols: tuple[str, ...], args: argparse.Namespace) -> int:
    start_ts = args.start_ts if args.start_ts is not None else now_ms()
    config = SyntheticConfig(
        symbols=symbols, rate=args.rate, duration=args.duration,
        seed=args.seed if args.seed is not None else int(time.time()), start_ts=start_ts,
    )
    log.info("synthetic: %s at %.0f trades/s for %.0fs (seed %d)", ",".join(symbols),
             args.rate, args.duration, config.seed)

    def prepared() -> Iterator[Prepared]:
        for item in prepare(generate(config)):
            runtime.stats.trades_in += 1
            yield item

    publish_prepared(
        batched(prepared(), 1 if not args.fast and args.rate < BATCH else BATCH),
        runtime.publisher.publish, runtime.trades_topic,
        speed=0.0 if args.fast else 1.0, stop=runtime.stop, idle=runtime.publisher.service,
        publish_batch=runtime.publisher.publish_batch,
    )
    return EXIT_OK


# --- finnhub ---------------------------------------------------------------------------------


def symbols_for_reload(symbols_file: Path | None, settings: Settings) -> tuple[str, ...]:
    """What SIGHUP switches to: the --symbols-file, else SYMBOLS from .env (TICKHOUSE_ENV_FILE),
    else the settings."""
    if symbols_file is not None:
        text = symbols_file.read_text(encoding="utf-8").replace("\n", ",")
        return parse_symbols(str(symbols_file), text)
    from_env_file = read_env_file(env_file(project_root=settings.project_root)).get("SYMBOLS")
    if from_env_file:
        return parse_symbols("SYMBOLS (.env)", from_env_file)
    return load_settings().symbols


async def run_finnhub(
    runtime: Runtime,
    symbols: tuple[str, ...],
    args: argparse.Namespace,
    stop: asyncio.Event | None = None,
) -> int:
    settings = runtime.settings
    publisher = runtime.publisher
    stopper = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if args.symbols_file is not None:
        symbols = symbols_for_reload(args.symbols_file, settings)
    trades_topic, quotes_topic = runtime.trades_topic, runtime.quotes_topic
    publish = publisher.publish

    def on_trades(trades: list[Trade]) -> None:
        for trade in trades:
            publish(trades_topic, trade.symbol.encode(), to_json(trade))

    def on_quote(quote: Quote) -> None:
        publish(quotes_topic, quote.symbol.encode(), to_json(quote))

    stream = FinnhubStream(
        settings.finnhub_ws_url, settings.finnhub_api_key, symbols, on_trades,
        stats=runtime.stats, silence_timeout=args.silence_timeout,
    )

    async def reload() -> None:
        try:
            wanted = symbols_for_reload(args.symbols_file, settings)
        except (ConfigError, OSError) as err:
            log.error("SIGHUP: symbols not changed: %s", err)
            return
        log.info("SIGHUP: symbols now %s", ",".join(wanted))
        await stream.set_symbols(wanted)

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopper.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload()))

    async def serve_deliveries() -> None:
        while not stopper.is_set():
            publisher.service(0)
            await asyncio.sleep(0.02)

    lock = KeyLock(settings.state_dir, settings.finnhub_api_key)
    lock.acquire()
    tasks = [asyncio.ensure_future(stream.run(stopper)), asyncio.ensure_future(serve_deliveries())]
    if args.quotes_every:
        poller = QuotePoller(
            settings.finnhub_api_url, settings.finnhub_api_key, lambda: stream.symbols, on_quote,
            every=args.quotes_every, stats=runtime.stats,
        )
        tasks.append(asyncio.ensure_future(poller.run(stopper)))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stopper.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        lock.release()
        if in_main:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
