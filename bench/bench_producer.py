"""Producer throughput: replaying >= 1M trades into Kafka, against a bare confluent-kafka loop.

In the same run and against the same broker, with the same producer settings (idempotence,
acks=all, lz4, linger.ms=5) and the same pre-serialized messages:

- bare:      a plain `produce()` loop with `poll(0)` every 1000 messages and a final `flush()`;
- publisher: `producer.publisher.Publisher` (delivery reports checked, spool logic, counters)
             driven by the replay publish loop at --speed 0, until every message is acknowledged;
- replay:    the whole `--source replay` path from the CSV file (read, validate against
             docs/interfaces/kafka-messages.md, serialize, publish, flush until acknowledged), end to end.

Targets: publisher >= 80% of bare and >= 200k msgs/s. Each variant runs `--rounds` times in
alternation; the best round of each is compared (the machine is shared, so single rounds are
noisy), and the per-round ratios are printed too. Topics are throwaway (`bench.producer.<uuid>`).
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from producer.publisher import Publisher, producer_config
from producer.replay import Prepared, ReadStats, batched, prepare_file, publish_prepared
from producer.synthetic import SyntheticConfig, generate
from tickhouse.config import load_settings
from tickhouse.kafka import client_config

SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "META", "NFLX", "AMD", "INTC")


def make_file(path: Path, count: int) -> None:
    config = SyntheticConfig(symbols=SYMBOLS, rate=10_000, duration=count / 10_000 * 1.2,
                             seed=1, start_ts=1_763_649_000_000)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["symbol", "price", "volume", "ts"])
        for n, trade in enumerate(generate(config)):
            if n >= count:
                break
            writer.writerow([trade.symbol, trade.price, trade.volume, trade.ts])


def bare(bootstrap: str, topic: str, messages: list[Prepared]) -> float:
    producer = Producer(producer_config(bootstrap))
    producer.produce(topic, b"warm-up", b"X")
    producer.flush(30)
    produce, poll = producer.produce, producer.poll
    started = time.perf_counter()
    for i, (_ts, key, value) in enumerate(messages):
        try:
            produce(topic, value, key)
        except BufferError:
            poll(0.005)
            produce(topic, value, key)
        if i % 1000 == 0:
            poll(0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    assert remaining == 0, f"bare loop: {remaining} messages not delivered"
    return len(messages) / elapsed


def with_publisher(bootstrap: str, topic: str, messages: list[Prepared], spool: Path) -> float:
    publisher = Publisher(bootstrap, spool_path=spool)
    publisher.publish(topic, b"X", b"warm-up")
    publisher.flush(30)
    before = publisher.stats.delivered
    started = time.perf_counter()
    publish_prepared(batched_list(messages), publisher.publish, topic, speed=0,
                     publish_batch=publisher.publish_batch)
    remaining = publisher.flush(120)
    elapsed = time.perf_counter() - started
    delivered = publisher.stats.delivered - before
    publisher.close()
    assert remaining == 0 and delivered == len(messages), (remaining, delivered)
    assert publisher.stats.delivery_errors == 0
    return len(messages) / elapsed


def batched_list(messages: list[Prepared], size: int = 5000) -> list[list[Prepared]]:
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def end_to_end(bootstrap: str, topic: str, path: Path, spool: Path) -> tuple[float, int]:
    publisher = Publisher(bootstrap, spool_path=spool)
    started = time.perf_counter()
    stats = ReadStats()
    sent = publish_prepared(batched(prepare_file(path, stats), 5000), publisher.publish,
                            topic, speed=0, publish_batch=publisher.publish_batch)
    remaining = publisher.flush(120)
    elapsed = time.perf_counter() - started
    publisher.close()
    assert remaining == 0
    return sent / elapsed, sent


def timed(label: str, run: Callable[[], float]) -> float:
    gc.collect()
    rate = run()
    print(f"  {label:<10} {rate:>12,.0f} msgs/s", flush=True)
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    settings = load_settings()
    bootstrap = settings.kafka_bootstrap_servers
    admin = AdminClient(client_config(bootstrap))
    run_id = uuid.uuid4().hex[:8]
    topics = [f"bench.producer.{run_id}.{name}" for name in ("bare", "publisher", "replay")]
    partitions = settings.topic_partitions
    for future in admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics]
    ).values():
        future.result(30)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-producer-") as tmp:
            path = Path(tmp) / "trades.csv"
            started = time.perf_counter()
            make_file(path, args.trades)
            print(f"bench_producer: {args.trades:,} synthetic trades, {len(SYMBOLS)} symbols, "
                  f"{path.stat().st_size / 1e6:.0f} MB CSV (made in "
                  f"{time.perf_counter() - started:.1f}s); broker {bootstrap}, "
                  f"{partitions} partitions, {os.cpu_count()} CPUs")
            started = time.perf_counter()
            messages = list(prepare_file(path))
            load_seconds = time.perf_counter() - started
            print(f"  load      {len(messages) / load_seconds:>12,.0f} trades/s parsed, "
                  f"validated and serialized ({load_seconds:.1f}s)")
            bare_rates, publisher_rates = [], []
            for round_number in range(1, args.rounds + 1):
                print(f"round {round_number}:")
                bare_rates.append(timed("bare", lambda: bare(bootstrap, topics[0], messages)))
                publisher_rates.append(timed("publisher", lambda: with_publisher(
                    bootstrap, topics[1], messages, Path(tmp) / "spool.bin")))
            messages.clear()  # free ~250 MB before the end-to-end run
            e2e_rate, sent = end_to_end(bootstrap, topics[2], path, Path(tmp) / "spool2.bin")
            best_bare, best_publisher = max(bare_rates), max(publisher_rates)
            ratio = best_publisher / best_bare
            print("result:")
            print(f"  bare confluent-kafka loop       {best_bare:>12,.0f} msgs/s")
            print(f"  producer (replay publish loop)  {best_publisher:>12,.0f} msgs/s")
            paired = sorted(p / b for p, b in zip(publisher_rates, bare_rates, strict=True))
            print(f"  ratio producer / bare           {ratio:>12.1%}   (target >= 80%; best of "
                  f"each; per round: {', '.join(f'{r:.0%}' for r in paired)})")
            print(f"  producer >= 200k msgs/s         {'yes' if best_publisher >= 200_000 else 'NO'}")
            print(f"  replay end to end from CSV      {e2e_rate:>12,.0f} msgs/s ({sent:,} trades, "
                  "incl. parse + validate + serialize)")
    finally:
        for future in admin.delete_topics(topics).values():
            try:
                future.result(30)
            except Exception as err:  # a leftover throwaway topic is not worth failing for
                print(f"warning: could not delete a bench topic: {err}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
