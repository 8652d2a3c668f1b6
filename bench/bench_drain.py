"""Benchmark: the drain (Kafka -> raw.trades) against the database's own limit and a naive consumer.

In one run, over the same N trades:

  drain        `drain_once` over N trades already in Kafka (one run, DQ off: timed separately)
  (a) COPY     the same rows as COPY text from a local file into the same table: the database's
               limit for this table and its indexes
  (h) heap     the same file COPYed into an index-free heap with the same columns (a plain logged
               table, no partitions, no constraint but NOT NULL): what raw.trades' indexes, unique
               constraint and partitioning cost
  (b) naive    a consumer that INSERTs row by row and commits per row, as the common tutorials do;
               time-boxed (--naive-seconds) and extrapolated to N
  formats      building + COPYing a sample as hand-made COPY text (what the drain does) vs psycopg's
               binary `write_row`: why the drain uses text

Targets: drain >= 80% of (a); (a) >= 60% of (h); drain >= 20x (b).
`--index-costs` also COPYs the file into the heap with one of raw.trades' indexes at a time (and
two alternatives), and into a partitioned copy without indexes: what each costs.

The rows get event times in 1971 (valid per docs/interfaces/kafka-messages.md, and a range no real data uses),
so the bench loads into day partitions of its own and drops them afterwards; its topic is unique.

    .venv/bin/python bench/bench_drain.py [--rows 2000000] [--naive-seconds 20] [--index-costs] [--keep]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from drain.options import DrainOptions
from drain.runner import drain_once
from drain.targets.postgres.copy_rows import trade_line
from drain.targets.postgres.loader import copy_statement
from tickhouse.config import Settings, load_settings
from tickhouse.kafka import client_config
from tickhouse.raw_tables import COLUMNS
from tickhouse.schemas import parse_trade
from tickhouse.warehouse import setup_warehouse

BASE_TS = 31_536_000_000  # 1971-01-01T00:00:00Z
SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "META", "NFLX", "AMD", "INTC")


def payloads(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        body = {
            "symbol": SYMBOLS[i % len(SYMBOLS)],
            "price": float(Decimal(10_000 + (i * 7919) % 50_000) / 100),
            "volume": 1 + (i * 31) % 900,
            "ts": BASE_TS + i * 50,  # 2M trades span ~28 hours: two day partitions
            "conditions": ["1", "12"] if i % 3 else ["1"],
            "source": "bench",
            # as the Tickhouse producer stamps every trade (producer/identity.py)
            "producer_id": "0bench0000000000",
            "producer_seq": i,
        }
        out.append(json.dumps(body, separators=(",", ":")).encode())
    return out


def produce(settings: Settings, topic: str, values: list[bytes], partitions: int) -> float:
    admin = AdminClient(client_config(settings.kafka_bootstrap_servers))
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic
    ].result(30)
    producer = Producer(
        {
            **client_config(settings.kafka_bootstrap_servers),
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "lz4",
        }
    )
    start = time.perf_counter()
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=value, key=SYMBOLS[i % len(SYMBOLS)].encode())
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0, "producer could not deliver every message"
    return time.perf_counter() - start


def drop_bench_partitions(settings: Settings) -> None:
    with psycopg.connect(settings.conninfo("loader"), autocommit=True) as conn:
        names = conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'raw.trades'::regclass and c.relname like 'trades_1971%'"
        ).fetchall()
        for (name,) in names:
            conn.execute(f"drop table raw.{name}")


def copy_from_file(settings: Settings, path: Path) -> float:
    with psycopg.connect(settings.conninfo("loader")) as conn:
        for day in ("1971-01-01", "1971-01-02"):
            conn.execute("select raw.ensure_day_partition('raw.trades', %s::date)", (day,))
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(copy_statement("trades")) as copy, path.open("rb") as f:
            while block := f.read(1 << 20):
                copy.write(block)
        conn.commit()
        return time.perf_counter() - start


# what --index-costs adds to the index-free heap, one at a time: raw.trades' own definitions
HEAP_VARIANTS = {
    "heap + unique (topic, partition, offset, event_time)": (
        "alter table {t} add unique (kafka_topic, kafka_partition, kafka_offset, event_time)"
    ),
    "heap + btree (symbol, event_time)": "create index on {t} (symbol, event_time)",
    "heap + brin (loaded_at)": "create index on {t} using brin (loaded_at)",
    "heap + partial btree (producer identity)": (
        "create index on {t} (producer_id, producer_seq, symbol, event_time) where producer_id is not null"
    ),
    # alternatives, not in the schema: the same unique key offset first (inserts near its right
    # edge), and a BRIN on event time in place of the (symbol, event_time) btree
    "heap + unique (offset, partition, topic, event_time)": (
        "alter table {t} add unique (kafka_offset, kafka_partition, kafka_topic, event_time)"
    ),
    "heap + brin (event_time)": "create index on {t} using brin (event_time)",
    # one btree for both uses: a message's coordinates always carry the same symbol and event
    # time, so this key admits each message once too, and its prefix serves the minute bars
    "heap + unique (symbol, event_time, topic, partition, offset)": (
        "alter table {t} add unique (symbol, event_time, kafka_topic, kafka_partition, kafka_offset)"
    ),
}


def _timed_copy_then_drop(conn: psycopg.Connection[Any], table: str, path: Path) -> float:
    """COPY the file into the scratch `table` (raw.trades' columns) and commit, timed; the table
    is dropped afterwards."""
    columns = ", ".join(COLUMNS["trades"])
    try:
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"copy {table} ({columns}) from stdin") as copy, \
                path.open("rb") as f:
            while block := f.read(1 << 20):
                copy.write(block)
        conn.commit()
        return time.perf_counter() - start
    finally:
        conn.rollback()
        conn.execute(f"drop table {table}")
        conn.commit()


def copy_into_heap(settings: Settings, path: Path, extra: str | None = None) -> float:
    """COPY the file into a new logged heap with raw.trades' columns (and `extra` DDL), timed;
    the table is dropped afterwards."""
    name = f"raw.bench_heap_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.conninfo("loader")) as conn:
        conn.execute(f"create table {name} (like raw.trades including defaults)")
        if extra:
            conn.execute(extra.format(t=name))
        conn.commit()
        return _timed_copy_then_drop(conn, name, path)


def copy_into_bare_partitions(settings: Settings, path: Path) -> float:
    """COPY the file into a copy of raw.trades partitioned the same way, without any index."""
    name = f"bench_parts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.conninfo("loader")) as conn:
        conn.execute(
            f"create table raw.{name} (like raw.trades including defaults) partition by range (event_time)"
        )
        conn.execute(
            f"create table raw.{name}_1971 partition of raw.{name}"
            " for values from ('1971-01-01 00:00+00') to ('1971-02-01 00:00+00')"
        )
        conn.commit()
        return _timed_copy_then_drop(conn, f"raw.{name}", path)


def naive_consumer(settings: Settings, topic: str, seconds: float) -> tuple[int, float]:
    """The tutorial consumer: poll one message, INSERT it, COMMIT, repeat."""
    consumer = Consumer(
        {
            **client_config(settings.kafka_bootstrap_servers),
            "group.id": f"bench-naive-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    rows = 0
    with psycopg.connect(settings.conninfo("loader")) as conn:
        # let the group join happen outside the timed window
        first = None
        while first is None:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                first = msg
        start = time.perf_counter()
        msg = first
        while time.perf_counter() - start < seconds:
            if msg is None or msg.error() is not None:
                msg = consumer.poll(1.0)
                continue
            trade = json.loads(msg.value() or b"null")
            conn.execute(
                "insert into raw.trades (symbol, price, volume, ts, event_time, conditions,"
                " source, kafka_topic, kafka_partition, kafka_offset, kafka_timestamp)"
                " values (%s, %s, %s, %s, to_timestamp(%s / 1000.0), %s, %s, %s, %s, %s,"
                " to_timestamp(%s / 1000.0))",
                (
                    trade["symbol"], trade["price"], trade["volume"], trade["ts"], trade["ts"],
                    trade.get("conditions"), trade.get("source"), f"{msg.topic()}.naive",
                    msg.partition(), msg.offset(), msg.timestamp()[1],
                ),
            )
            conn.commit()
            rows += 1
            msg = consumer.poll(1.0)
        elapsed = time.perf_counter() - start
    consumer.close()
    return rows, elapsed


def copy_formats(settings: Settings, values: list[bytes], topic: str) -> dict[str, float]:
    """Rows/s of building + COPYing a sample as COPY text by hand vs psycopg binary write_row."""
    results: dict[str, float] = {}
    columns = ", ".join(COLUMNS["trades"])
    with psycopg.connect(settings.conninfo("loader")) as conn:
        for day in ("1971-01-01", "1971-01-02"):
            conn.execute("select raw.ensure_day_partition('raw.trades', %s::date)", (day,))
        conn.commit()
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"copy raw.trades ({columns}) from stdin") as copy:
            buffer: list[bytes] = []
            for i, value in enumerate(values):
                line = trade_line(parse_trade(value), topic + ".text", 0, i, BASE_TS)
                buffer.append(line)
                if len(buffer) >= 8192:
                    copy.write(b"".join(buffer))
                    buffer.clear()
            copy.write(b"".join(buffer))
        conn.rollback()
        results["text"] = len(values) / (time.perf_counter() - start)

        start = time.perf_counter()
        stmt = f"copy raw.trades ({columns}) from stdin (format binary)"
        with conn.cursor() as cur, cur.copy(stmt) as copy:
            copy.set_types(
                ["text", "numeric", "numeric", "int8", "timestamptz", "text[]", "text", "text",
                 "int4", "int8", "timestamptz", "text", "int8"]
            )
            from datetime import UTC, datetime

            for i, value in enumerate(values):
                t = parse_trade(value)
                event = datetime.fromtimestamp(t.ts / 1000, UTC)
                copy.write_row(
                    (t.symbol, t.price, t.volume, t.ts, event,
                     list(t.conditions) if t.conditions is not None else None, t.source,
                     topic + ".binary", 0, i, event, t.producer_id, t.producer_seq)
                )
        conn.rollback()
        results["binary"] = len(values) / (time.perf_counter() - start)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--naive-seconds", type=float, default=20.0)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--format-sample", type=int, default=100_000)
    parser.add_argument("--parse-workers", type=int, default=0, help="DRAIN_PARSE_WORKERS")
    parser.add_argument("--index-costs", action="store_true", help="COPY into the heap with each index")
    parser.add_argument("--keep", action="store_true", help="keep the bench rows and topic")
    args = parser.parse_args(argv)

    settings = load_settings()
    setup_warehouse(settings)
    drop_bench_partitions(settings)
    topic = f"bench.trades.{uuid.uuid4().hex[:8]}"
    n = args.rows
    print(f"bench_drain: {n:,} trades, topic {topic} ({args.partitions} partitions)")

    values = payloads(n)
    produce_s = produce(settings, topic, values, args.partitions)
    print(f"  produced in {produce_s:.1f}s (not part of any figure)")

    # (a) the same rows as COPY text in a local file, loaded into the same table
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trades.copy"
        with path.open("wb") as f:
            for i, value in enumerate(values):
                # offsets per partition, as Kafka assigns them (a global counter would make every
                # insert land at the right edge of an offset-first index, which no real topic does)
                partition, offset = i % args.partitions, i // args.partitions
                f.write(trade_line(parse_trade(value), topic, partition, offset, BASE_TS + i * 50))
        size_mb = path.stat().st_size / 1e6
        heap_s = copy_into_heap(settings, path)
        copy_s = copy_from_file(settings, path)
        variants: dict[str, float] = {}
        if args.index_costs:
            variants["partitioned by month, no index"] = copy_into_bare_partitions(settings, path)
            for label, ddl in HEAP_VARIANTS.items():
                variants[label] = copy_into_heap(settings, path, ddl)
    drop_bench_partitions(settings)  # the drain then loads into the same, empty, partitions
    print(f"  (a) COPY from a {size_mb:.0f} MB file: {copy_s:.1f}s; (h) into a heap: {heap_s:.1f}s")

    options = DrainOptions(
        topics={topic: "trades"},
        group=f"bench-drain-{uuid.uuid4().hex[:8]}",
        max_messages=n,
        max_seconds=3600,
        dq_policy="off",
        parse_workers=args.parse_workers,
    )
    cpu_start = time.process_time()
    result = drain_once(settings, options)
    drain_cpu_s = time.process_time() - cpu_start
    stats = result.topics[0]
    assert stats.loaded == n and stats.quarantined == 0, stats
    drain_s = result.duration_s
    print(
        f"  drain: {drain_s:.1f}s ({drain_cpu_s:.1f}s CPU in this process, "
        f"{drain_cpu_s / n * 1e6:.1f} us/message; parse workers: {args.parse_workers})"
    )

    from drain.targets.postgres.quality import check_run

    start = time.perf_counter()
    check_run(settings, DrainOptions(topics={topic: "trades"}, dq_min_event_time=date(1970, 1, 1)), result)
    dq_s = time.perf_counter() - start

    naive_rows, naive_s = naive_consumer(settings, topic, args.naive_seconds)
    formats = copy_formats(settings, values[: args.format_sample], topic)

    drain_rate = n / drain_s
    copy_rate = n / copy_s
    naive_rate = naive_rows / naive_s
    print()
    print(f"{'method':<66}{'rows/s':>12}{'time for N':>14}")
    print(f"{'drain (Kafka -> raw.trades, exactly once)':<66}{drain_rate:>12,.0f}{drain_s:>13.1f}s")
    print(f"{'(a) COPY from local file':<66}{copy_rate:>12,.0f}{copy_s:>13.1f}s")
    print(f"{'(h) COPY into an index-free heap':<66}{n / heap_s:>12,.0f}{heap_s:>13.1f}s")
    for label, seconds in variants.items():
        print(f"{'    ' + label:<66}{n / seconds:>12,.0f}{seconds:>13.1f}s")
    print(
        f"{'(b) row by row, commit per row (extrap.)':<66}{naive_rate:>12,.0f}"
        f"{n / naive_rate:>13.1f}s"
    )
    print(f"{'GX checks of the drained batch':<66}{'':>12}{dq_s:>13.1f}s")
    print()
    print(f"drain / (a) = {drain_rate / copy_rate:.0%}   (target >= 80%)")
    print(f"(a) / (h)   = {copy_rate / (n / heap_s):.0%}   (target >= 60%)")
    print(f"drain / (b) = {drain_rate / naive_rate:.1f}x   (target >= 20x)")
    print(
        f"COPY formats over {args.format_sample:,} rows (parse + build + COPY): text "
        f"{formats['text']:,.0f} rows/s, binary write_row {formats['binary']:,.0f} rows/s"
    )

    if not args.keep:
        drop_bench_partitions(settings)
        admin = AdminClient(client_config(settings.kafka_bootstrap_servers))
        admin.delete_topics([topic])[topic].result(30)
        with psycopg.connect(settings.conninfo("loader"), autocommit=True) as conn:
            conn.execute("delete from raw.kafka_offsets where topic = %s", (topic,))
            conn.execute("delete from raw.load_stats where topic = %s", (topic,))
            conn.execute("delete from raw.dq_results where run_id = %s", (result.run_id,))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

