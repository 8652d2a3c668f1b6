"""Exactly once: counts against Kafka offsets, crashes at every stage, partitions added live."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewPartitions

from tests.faults import STAGES, crash_at
from tests.integration.drain.conftest import Topics, coordinates
from tests.integration.drain.helpers import NOW_MS, alert, quote, trade
from tickhouse import kafka
from tickhouse.config import PROJECT_ROOT
from tickhouse.kafka import client_config

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def high_watermarks(topics: Topics, topic: str) -> dict[int, int]:
    """One past the last offset of each partition of `topic`."""
    marks = kafka.watermarks(topics.settings.kafka_bootstrap_servers, topic)
    return {p: high for p, (_low, high) in marks.items()}


def kafka_committed(topics: Topics, topic: str) -> dict[int, int]:
    consumer = Consumer(
        {**client_config(topics.settings.kafka_bootstrap_servers), "group.id": topics.group}
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in committed}
    finally:
        consumer.close()


def assert_exactly_once(db: psycopg.Connection[Any], topics: Topics, table: str, topic: str) -> None:
    """Every offset Kafka has for `topic` is in `table` or quarantine, exactly once."""
    marks = high_watermarks(topics, topic)
    seen = coordinates(db, table, topic) + coordinates(db, "raw.quarantine", topic)
    expected = sorted((p, o) for p, high in marks.items() for o in range(high))
    assert sorted(seen) == expected, f"{topic}: rows do not match Kafka offsets 1:1"
    stored = dict(
        db.execute(
            "select partition, next_offset from raw.kafka_offsets"
            " where consumer_group = %s and topic = %s",
            (topics.group, topic),
        ).fetchall()
    )
    assert stored == {p: h for p, h in marks.items() if h > 0}


def test_counts_match_offsets_across_capped_runs(topics: Topics, db: psycopg.Connection[Any]) -> None:
    topics.produce(topics.trades, [trade(i) for i in range(700)] + [b"not json", None])
    topics.produce(topics.quotes, [quote(i) for i in range(30)])
    topics.produce(topics.alerts, [alert(i) for i in range(20)] + [b"{}"])

    first = topics.drain(max_messages=300)
    assert sum(s.consumed for s in first.topics) == 300
    runs = [first, *topics.drain_until_caught_up(max_messages=300)]

    for s in (s for r in runs for s in r.topics):
        assert s.consumed == s.loaded + s.quarantined
    by_topic: dict[str, list[int]] = {}
    for r in runs:
        for s in r.topics:
            totals = by_topic.setdefault(s.topic, [0, 0])
            totals[0] += s.loaded
            totals[1] += s.quarantined
    assert by_topic[topics.trades] == [700, 2]
    assert by_topic[topics.quotes] == [30, 0]
    assert by_topic[topics.alerts] == [20, 1]
    assert_exactly_once(db, topics, "raw.trades", topics.trades)
    assert_exactly_once(db, topics, "raw.quotes", topics.quotes)
    assert_exactly_once(db, topics, "raw.alerts", topics.alerts)
    stats = db.execute(
        "select sum(consumed), sum(loaded), sum(quarantined) from raw.load_stats where topic = %s",
        (topics.trades,),
    ).fetchone()
    assert stats == (702, 700, 2)
    # Kafka's committed offsets follow the warehouse's (for lag monitoring)
    committed = kafka_committed(topics, topics.trades)
    for partition, high in high_watermarks(topics, topics.trades).items():
        assert committed[partition] == (high if high else -1001)  # -1001: never committed
    assert runs[-1].topics[0].lag_after == 0


class Crash(Exception):
    pass


@pytest.mark.parametrize("stage", STAGES)
def test_crash_at_each_stage_then_rerun(
    stage: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    # ~2.5 MB of trades so that a COPY is mid-stream when 'mid_copy' fires
    topics.produce(topics.trades, [trade(i) for i in range(20_000)] + [b"\xff"])
    topics.produce(topics.quotes, [quote(i) for i in range(5)])

    def crash() -> None:
        raise Crash(stage)

    with pytest.raises(Crash), crash_at(stage, crash):
        topics.drain()

    loaded = len(coordinates(db, "raw.trades", topics.trades))
    if stage == "after_commit_before_kafka_commit":
        assert loaded == 20_000  # committed in the warehouse, Kafka not told
        assert all(o < 0 for o in kafka_committed(topics, topics.trades).values())
    else:
        assert loaded == 0  # rolled back: no rows, no offsets
        assert not db.execute(
            "select 1 from raw.kafka_offsets where consumer_group = %s", (topics.group,)
        ).fetchall()

    topics.drain_until_caught_up()
    assert_exactly_once(db, topics, "raw.trades", topics.trades)
    assert_exactly_once(db, topics, "raw.quotes", topics.quotes)


@pytest.mark.parametrize("stage", ["mid_copy", "after_commit_before_kafka_commit"])
def test_process_killed_at_stage_then_rerun(
    stage: str, topics: Topics, db: psycopg.Connection[Any]
) -> None:
    """A hard kill (os._exit: no cleanup, no rollback sent) behaves like the raised crash."""
    topics.produce(topics.trades, [trade(i) for i in range(12_000)])
    script = textwrap.dedent(
        f"""
        import os
        from tickhouse.config import load_settings
        from drain.options import DrainOptions
        from drain.runner import drain_once
        from tests.faults import crash_at

        options = DrainOptions(topics={topics.mapping!r}, group={topics.group!r}, dq_policy="off")
        with crash_at({stage!r}, lambda: os._exit(17)):
            drain_once(load_settings(), options)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ), cwd=PROJECT_ROOT, timeout=120,
        check=False,
    )
    assert done.returncode == 17
    topics.drain_until_caught_up()
    assert_exactly_once(db, topics, "raw.trades", topics.trades)


def test_late_and_out_of_order_trades_are_kept(
    topics: Topics, db: psycopg.Connection[Any]
) -> None:
    stamps = [
        NOW_MS,
        NOW_MS - 3 * DAY_MS,   # three days late
        NOW_MS - 1,            # out of order within the day
        978_307_200_000,       # 2001-01-01, a historical replay
        NOW_MS + 3_600_000,    # an hour ahead (allowed: up to one day)
        NOW_MS - 3 * DAY_MS - 5,
    ]
    topics.produce(topics.trades, [trade(i, ts=t) for i, t in enumerate(stamps)], partition=0)
    topics.drain_until_caught_up()
    rows = db.execute(
        "select kafka_offset, ts, event_time = to_timestamp(ts / 1000.0) from raw.trades"
        " where kafka_topic = %s order by kafka_offset",
        (topics.trades,),
    ).fetchall()
    assert [(o, t) for o, t, _ in rows] == list(enumerate(stamps))
    assert all(same for _, _, same in rows)
    # the 2001 trade sits in a partition of history (a year, or what of 2001 no other partition
    # held), never in a partition of its own day
    row = db.execute(
        "select extract(epoch from r.lower_bound) * 1000, extract(epoch from r.upper_bound) * 1000"
        " from raw.trades as t join raw.partition_ranges('raw.trades') as r on r.child = t.tableoid"
        " where t.kafka_topic = %s and t.ts = 978307200000",
        (topics.trades,),
    ).fetchone()
    assert row is not None
    lower, upper = row
    assert lower <= 978_307_200_000 < upper and upper - lower >= 28 * DAY_MS


def test_partitions_added_while_running_are_drained(
    make_topics: Any, db: psycopg.Connection[Any]
) -> None:
    topics: Topics = make_topics(1)
    topics.produce(topics.trades, [trade(i) for i in range(20_000)], partition=0)
    added: list[bool] = []

    def grow() -> None:
        added.append(True)
        futures = topics.admin.create_partitions([NewPartitions(topics.trades, 3)])
        for future in futures.values():
            future.result(timeout=30)
        # a fresh producer sees the new partitions at once
        from confluent_kafka import Producer

        producer = Producer(client_config(topics.settings.kafka_bootstrap_servers))
        for partition in (1, 2):
            for i in range(50):
                producer.produce(topics.trades, value=trade(i), partition=partition)
        assert producer.flush(30) == 0

    with crash_at("mid_copy", grow):
        result = topics.drain()
    assert added
    trades = next(s for s in result.topics if s.topic == topics.trades)
    assert trades.consumed == 20_100, "the new partitions were not drained in the same run"
    assert sorted(trades.offsets) == [0, 1, 2]
    assert_exactly_once(db, topics, "raw.trades", topics.trades)


def test_parse_workers_load_the_same_rows_exactly_once(
    topics: Topics, db: psycopg.Connection[Any]
) -> None:
    """DRAIN_PARSE_WORKERS > 0 validates in worker processes; the result must not change."""
    topics.produce(topics.trades, [trade(i) for i in range(12_000)] + [b"{bad", None])
    topics.produce(topics.alerts, [alert(i) for i in range(10)] + [b"[]"])

    def crash() -> None:
        raise Crash("mid_copy")

    with pytest.raises(Crash), crash_at("mid_copy", crash):
        topics.drain(parse_workers=2)
    assert not coordinates(db, "raw.trades", topics.trades)
    [result, *_] = topics.drain_until_caught_up(parse_workers=2)
    by_topic = {s.topic: (s.consumed, s.loaded, s.quarantined) for s in result.topics}
    assert by_topic[topics.trades] == (12_002, 12_000, 2)
    assert by_topic[topics.alerts] == (11, 10, 1)
    assert_exactly_once(db, topics, "raw.trades", topics.trades)
    assert_exactly_once(db, topics, "raw.alerts", topics.alerts)


# serial (pyproject.toml): times the run (< 15 s)
@pytest.mark.serial
def test_a_run_under_a_steady_stream_ends_at_the_end_it_found(
    topics: Topics, db: psycopg.Connection[Any]
) -> None:
    """While trades keep arriving, no partition stays at end-of-log: a run drains each partition
    to the end its first fetch saw and commits, instead of chasing the tail until max_seconds
    (which held every row back from the marts for that long); the next runs take the rest."""
    topics.produce(topics.trades, [trade(i) for i in range(2_000)])
    stop = threading.Event()
    sent = [0]

    def stream() -> None:
        while not stop.is_set():
            for _ in range(20):
                topics.producer.produce(topics.trades, value=trade(sent[0]), key=b"k")
                sent[0] += 1
            topics.producer.poll(0)
            time.sleep(0.02)  # about 1,000 trades/s
        topics.producer.flush(30)

    streaming = threading.Thread(target=stream, daemon=True)
    streaming.start()
    try:
        time.sleep(1.0)
        started = time.monotonic()
        first = topics.drain(max_seconds=60.0)
        took = time.monotonic() - started
    finally:
        stop.set()
        streaming.join(30)
    loaded = {s.topic: s.loaded for s in first.topics}[topics.trades]
    assert loaded >= 2_000 + 500  # the backlog and what the first second streamed
    assert took < 15, f"the run chased the stream for {took:.1f} s"
    topics.drain_until_caught_up()
    assert_exactly_once(db, topics, "raw.trades", topics.trades)
    assert len(coordinates(db, "raw.trades", topics.trades)) == 2_000 + sent[0]
