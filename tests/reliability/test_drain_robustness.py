"""The drain's robustness, second pass, each
through the real `tickhouse drain --once` process against the real broker and database:

- a new DRAIN_GROUP, and one whose bookkeeping was deleted, start where the warehouse is instead
  of reloading the topic into the unique constraint (which failed every later run);
- a topic deleted and re-created stops with a message that says what happened and what to do,
  the other topics keep loading, and `tickhouse drain --reset-topic` resolves it;
- raw.quarantine keeps at most 64 KiB of a message (with its length and sha256), and
  `tickhouse quarantine replay` re-publishes quarantined messages once, however often it runs;
- DRAIN_LOCK_TIMEOUT_S still applies after the drain took its group lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import subprocess
import threading
import time

import psycopg
import pytest
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from tests.reliability.conftest import Scenario
from tests.reliability.helpers import (
    VENV_BIN,
    RelTopics,
    check_trades_exactly_once,
    drain_until_caught_up,
    high_watermarks,
    owner_conn,
    run_drain,
    stored_offsets,
)
from tickhouse.config import PROJECT_ROOT, Settings
from tickhouse.schemas import now_ms

DAY_MS = 86_400_000


def _trade(i: int, ts: int | None = None, symbol: str = "RELR") -> bytes:
    return json.dumps({"symbol": symbol, "price": 10 + i % 50, "volume": i,
                       "ts": now_ms() - 3_600_000 + i if ts is None else ts}).encode()


def _trade_ids(settings: Settings, topic: str) -> list[int]:
    with owner_conn(settings) as conn:
        return [int(v) for (v,) in conn.execute(
            "select volume from raw.trades where kafka_topic = %s", (topic,)).fetchall()]


def _tickhouse(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "tickhouse"), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=PROJECT_ROOT)


def _coordinates_once(settings: Settings, topic: str) -> tuple[int, int]:
    """(lost, doubled): every offset Kafka holds for `topic` against raw.trades + raw.quarantine."""
    marks = high_watermarks(settings, topic)
    with owner_conn(settings) as conn:
        coords = conn.execute(
            "select kafka_partition, kafka_offset from raw.trades where kafka_topic = %s union all"
            " select kafka_partition, kafka_offset from raw.quarantine where kafka_topic = %s",
            (topic, topic),
        ).fetchall()
    kafka = {(p, o) for p, high in marks.items() for o in range(high)}
    return len(kafka - set(coords)), len(coords) - len(set(coords))


def _forget_groups(settings: Settings, topics: RelTopics) -> None:
    with contextlib.suppress(psycopg.Error), owner_conn(settings) as conn:
        conn.execute("delete from raw.kafka_offsets where topic = any(%s)", (list(topics.names),))
        conn.execute("delete from raw.load_stats where topic = any(%s)", (list(topics.names),))


def test_new_drain_group_starts_where_the_warehouse_is(
    settings: Settings, rel_topics: RelTopics, scenario: Scenario
) -> None:
    """new DRAIN_GROUP / lost bookkeeping: starts where loaded."""
    try:
        ids = set(range(3_000))
        rel_topics.produce(rel_topics.trades, (_trade(i) for i in sorted(ids)))
        drain_until_caught_up(settings, rel_topics, rel_topics.env())

        # a second group: nothing to do, and it succeeds (it used to COPY offset 0 again and fail)
        group_b = f"{rel_topics.group}-b"
        env_b = rel_topics.env(DRAIN_GROUP=group_b)
        result = run_drain(env_b)
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(_trade_ids(settings, rel_topics.trades)) == len(ids)
        more = set(range(3_000, 3_500))
        rel_topics.produce(rel_topics.trades, (_trade(i) for i in sorted(more)))
        result = run_drain(env_b)
        assert result.returncode == 0, result.stderr[-3000:]
        ids |= more
        assert stored_offsets(settings, group_b, rel_topics.trades) == {
            p: h for p, h in high_watermarks(settings, rel_topics.trades).items() if h
        }

        # every group's bookkeeping deleted: a third group starts past the rows already present
        # (in raw.trades, then in raw.quarantine)
        _forget_groups(settings, rel_topics)
        rel_topics.produce(rel_topics.trades, [b"{not json"])
        result = run_drain(rel_topics.env(DRAIN_GROUP=f"{rel_topics.group}-c"))
        assert result.returncode == 0, result.stderr[-3000:]
        _forget_groups(settings, rel_topics)
        last = set(range(3_500, 3_600))
        rel_topics.produce(rel_topics.trades, (_trade(i) for i in sorted(last)))
        result = run_drain(rel_topics.env(DRAIN_GROUP=f"{rel_topics.group}-c"))
        assert result.returncode == 0, result.stderr[-3000:]
        ids |= last

        lost, doubled = _coordinates_once(settings, rel_topics.trades)
        loaded = _trade_ids(settings, rel_topics.trades)
        scenario.messages = len(ids) + 1
        scenario.lost = max(lost, len(ids - set(loaded)))
        scenario.doubled = doubled + len(loaded) - len(set(loaded))
        assert (scenario.lost, scenario.doubled) == (0, 0)
        assert sorted(loaded) == sorted(ids)
        scenario.note("groups b (new) and c (after all offsets were deleted) resumed where the "
                      "warehouse was: 0 rows loaded twice, 0 failed runs")
    finally:
        _forget_groups(settings, rel_topics)


def _recreate_topic(topics: RelTopics, topic: str) -> None:
    topics.admin.delete_topics([topic])[topic].result(timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            topics.admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[
                topic
            ].result(timeout=30)
            return
        except Exception:  # still being deleted
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_recreated_topic_stops_with_a_clear_message(
    settings: Settings, rel_topics: RelTopics, scenario: Scenario
) -> None:
    """re-created topic: stops clearly, others load; --reset-topic."""
    env = rel_topics.env()
    old_ids = set(range(200))
    rel_topics.produce(rel_topics.trades, (_trade(i) for i in sorted(old_ids)))
    drain_until_caught_up(settings, rel_topics, env)
    before = stored_offsets(settings, rel_topics.group, rel_topics.trades)

    _recreate_topic(rel_topics, rel_topics.trades)
    base = now_ms() - 7_200_000  # new event times: not the old rows' coordinates + event time
    new_ids = set(range(1_000, 1_020))
    rel_topics.produce(rel_topics.trades, (_trade(i, ts=base + i) for i in sorted(new_ids)))
    rel_topics.produce(rel_topics.quotes, [json.dumps({
        "symbol": "RELR", "price": 10, "change": 0, "change_pct": 0, "high": 11, "low": 9, "open": 10,
        "prev_close": 10, "ts": now_ms() - i, "source": "rel"}).encode() for i in range(5)])

    messages = []
    for _ in range(2):  # every run stops the same clear way, not with a duplicate-key error
        result = run_drain(env)
        assert result.returncode == 3, result.stdout + result.stderr
        err = result.stderr
        assert "rewound" in err and rel_topics.trades in err and "--reset-topic" in err, err
        assert "duplicate key" not in err
        assert stored_offsets(settings, rel_topics.group, rel_topics.trades) == before
        assert sorted(_trade_ids(settings, rel_topics.trades)) == sorted(old_ids)
        messages.append(err.split("stopped:", 1)[1].strip().splitlines()[0])
    with owner_conn(settings) as conn:  # the healthy topic was drained and committed
        assert conn.execute("select count(*) from raw.quotes where kafka_topic = %s",
                            (rel_topics.quotes,)).fetchone() == (5,)
    scenario.note("stopped: " + messages[0][:150] + "...")

    reset = _tickhouse(env, "drain", "--reset-topic", rel_topics.trades)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    drain_until_caught_up(settings, rel_topics, env)
    loaded = _trade_ids(settings, rel_topics.trades)
    scenario.messages = len(old_ids) + len(new_ids) + 5
    lost = len(new_ids - set(loaded))
    doubled = len(loaded) - len(set(loaded))
    scenario.lost, scenario.doubled = lost, doubled
    assert sorted(loaded) == sorted(old_ids | new_ids)
    scenario.note("after --reset-topic the re-created topic's 20 messages loaded once; 200 old rows kept")


def test_quarantine_is_bounded_and_replayed_exactly_once(
    settings: Settings, rel_topics: RelTopics, scenario: Scenario
) -> None:
    """quarantine: 64 KiB bound + sha256, replay exactly once."""
    env = rel_topics.env()
    good = set(range(100))
    # rejected now ("more than one day in the future"), valid once the clock has caught up
    ahead_at = now_ms() + DAY_MS + 25_000
    early = set(range(1_000, 1_030))
    hostile = [b'{"symbol": "RELR", "pad": "' + bytes([65 + i]) * 1_000_000 + b'"}' for i in range(8)]
    values: list[bytes | None] = [_trade(i) for i in sorted(good)]
    values += [_trade(i, ts=ahead_at + i) for i in sorted(early)]
    values += [*hostile, b"\xff" * 65_537, None]
    rel_topics.produce(rel_topics.trades, values)
    drain_until_caught_up(settings, rel_topics, env)
    assert now_ms() < ahead_at - DAY_MS, "the drain took too long: the early trades became valid"

    with owner_conn(settings) as conn:
        rows = conn.execute(
            "select payload, payload_length, payload_sha256, error from raw.quarantine"
            " where kafka_topic = %s",
            (rel_topics.trades,),
        ).fetchall()
    by_sha = {bytes(sha): (bytes(p), length) for p, length, sha, _ in rows if sha is not None}
    assert len(rows) == len(early) + len(hostile) + 2
    for message in hostile:  # docs/interfaces/warehouse.md: the first 64 KiB, with the full length and sha256
        assert by_sha[hashlib.sha256(message).digest()] == (message[:65_536], len(message))
    kept = sum(len(p) for p, *_ in rows if p is not None)
    received = sum(len(v) for v in values[len(good):] if v is not None)
    scenario.note(f"quarantine kept {kept:,} of {received:,} bytes received "
                  f"({len(hostile)} hostile 1 MB messages: 64 KiB each + length + sha256)")

    listing = _tickhouse(env, "quarantine", "list", "--topic", rel_topics.trades)
    assert listing.returncode == 0, listing.stderr
    assert "payload too large" in listing.stdout, listing.stdout
    assert re.search(r"│ ts\s*│\s*30 │\s*30 │\s*0 │", listing.stdout), listing.stdout

    time.sleep(max(0.0, (ahead_at + len(early) - DAY_MS - now_ms()) / 1000 + 1))  # the "fix"
    published = []
    for _ in range(2):  # the second replay publishes nothing: no message twice
        replay = _tickhouse(env, "quarantine", "replay", "--topic", rel_topics.trades,
                            "--error", "in the future")
        assert replay.returncode == 0, replay.stdout + replay.stderr
        published.append(replay.stdout)
        drain_until_caught_up(settings, rel_topics, env)
    assert "30 published again" in published[0] and "0 published again" in published[1], published
    retry = _tickhouse(env, "quarantine", "replay", "--topic", rel_topics.trades, "--retry-unconfirmed")
    assert retry.returncode == 0 and "0 published again" in retry.stdout, retry.stdout + retry.stderr

    loaded = _trade_ids(settings, rel_topics.trades)
    expected = good | early
    scenario.messages = len(values)
    scenario.lost = len(expected - set(loaded))
    scenario.doubled = len(loaded) - len(set(loaded))
    assert sorted(loaded) == sorted(expected)
    with owner_conn(settings) as conn:
        replays = conn.execute(
            "select count(*), count(published_at) from raw.quarantine_replays where kafka_topic = %s",
            (rel_topics.trades,),
        ).fetchone()
        conn.execute("delete from raw.quarantine_replays where kafka_topic = %s", (rel_topics.trades,))
    assert replays == (30, 30)
    scenario.note("30 quarantined trades replayed after their time came: loaded once, over 2 replays")


# serial (pyproject.toml): holds an ACCESS EXCLUSIVE lock on the shared raw.trades (every
# other drain would wait) and times the drain
@pytest.mark.serial
def test_lock_timeout_still_applies_after_the_group_lock(
    settings: Settings, rel_topics: RelTopics, scenario: Scenario
) -> None:
    """DRAIN_LOCK_TIMEOUT_S after the group lock (was reset to 0)."""
    ids = set(range(50))
    rel_topics.produce(rel_topics.trades, (_trade(i) for i in sorted(ids)))
    env = rel_topics.env(DRAIN_LOCK_TIMEOUT_S="2")
    holder = psycopg.connect(settings.conninfo("owner"))
    # a drain that ignores DRAIN_LOCK_TIMEOUT_S waits until this lets go (and then loads)
    release = threading.Timer(20, holder.rollback)
    try:
        holder.execute("lock table raw.trades in access exclusive mode")  # a manual ALTER, say
        release.start()
        started = time.monotonic()
        result = run_drain(env, timeout=90)
        waited = time.monotonic() - started
    finally:
        release.cancel()
        holder.rollback()
        holder.close()
    assert result.returncode == 3, result.stdout + result.stderr
    assert "lock timeout" in result.stderr, result.stderr
    assert waited < 20, f"the drain waited {waited:.0f} s behind the lock (DRAIN_LOCK_TIMEOUT_S=2)"
    assert stored_offsets(settings, rel_topics.group, rel_topics.trades) == {}
    drain_until_caught_up(settings, rel_topics, rel_topics.env())
    figures = check_trades_exactly_once(settings, rel_topics.trades, ids)
    scenario.messages, scenario.lost, scenario.doubled = len(ids), figures.lost, figures.doubled
    assert (figures.lost, figures.doubled) == (0, 0)
    scenario.note(f"behind an ACCESS EXCLUSIVE lock the drain gave up after {waited:.1f} s "
                  "(DRAIN_LOCK_TIMEOUT_S=2), nothing acknowledged; the next run loaded all")

