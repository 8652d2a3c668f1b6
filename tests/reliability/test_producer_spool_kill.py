"""The producer SIGKILLed while its spool drains: nothing spooled is lost.

A spool is filled the way the producer fills it (broker unreachable, then shutdown), then drained
by a producer process that SIGKILLs itself at the windows that matter, restarted each time on the
same spool, until one run finishes. Kafka then must hold every spooled trade; a resend after a kill
is at most the chunk that was in flight (`SPOOL_CHUNK`), and carries the producer identity of its
first copy. The topic is then drained into the warehouse: raw.trades holds every message (resends
included, each with its own offset), and the warehouse's trades (stg_tickhouse__trades, what the
bars are built from) hold every trade exactly once: `doubled` counts copies there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from ops.suite import free_port
from producer.publisher import SPOOL_CHUNK, Publisher
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import RelTopics, drain_until_caught_up, env_int, high_watermarks, owner_conn
from tickhouse.config import PROJECT_ROOT, Settings
from tickhouse.kafka import client_config
from tickhouse.schemas import Trade, now_ms, to_json

TRADES = env_int("RELIABILITY_SPOOL_TRADES", 20_000)

# Drain the spool (flush, then close) and SIGKILL at one point:
#   handed     - the 2nd chunk handed to librdkafka, its acknowledgements not yet awaited
#   confirmed  - the 3rd chunk acknowledged by Kafka, the spool's offset not yet moved past it
#   committed  - right after the 4th chunk's offset was written
#   removing   - the last chunk acknowledged, the spool file about to be removed
DRAIN_SCRIPT = """
import os, signal, sys
from pathlib import Path
from unittest import mock
from producer.publisher import Publisher
from producer.spool import Spool

point, bootstrap, spool = sys.argv[1], sys.argv[2], Path(sys.argv[3])
calls = {"hand": 0, "commit": 0}
kill = lambda: os.kill(os.getpid(), signal.SIGKILL)
real_hand, real_commit = Publisher._hand_unhanded, Spool.commit

def hand(self):
    done = real_hand(self)
    calls["hand"] += 1
    if point == "handed" and calls["hand"] == 2:
        kill()
    return done

def commit(self):
    calls["commit"] += 1
    if point == "confirmed" and calls["commit"] == 3:
        kill()
    if point == "removing" and self.depth == 0 and self.uncommitted:
        kill()
    real_commit(self)
    if point == "committed" and calls["commit"] == 4:
        kill()

with mock.patch.object(Publisher, "_hand_unhanded", hand), mock.patch.object(Spool, "commit", commit):
    publisher = Publisher(bootstrap, spool_path=spool)
    left = publisher.flush(120)
    left += publisher.close(10)
print(f"drained, {left} left")
sys.exit(0 if left == 0 else 1)
"""
POINTS = ("handed", "confirmed", "committed", "removing")


def _fill_spool(spool: Path, topic: str) -> None:
    """As the producer does it: nothing listens on the port, the queue fills, the rest spools;
    at shutdown the unacknowledged queue joins the spool."""
    dead = free_port()
    base = now_ms() - 3_600_000
    down = Publisher(f"127.0.0.1:{dead}", spool_path=spool, max_queue_messages=500, stall_seconds=0.3,
                     trades_topic=topic)
    symbols = ("SPK1", "SPK2", "SPK3")
    down.publish_batch(
        topic,
        [
            (0, symbols[i % 3].encode(), to_json(Trade(symbols[i % 3], 100.0, i, base + i, None, "test")))
            for i in range(TRADES)
        ],
    )
    assert down.close(timeout=0.5) == TRADES
    assert spool.exists()


def _volumes(settings: Settings, topic: str) -> tuple[Counter[int], dict[int, set[tuple[str, int]]]]:
    """How often each trade (its volume) is on the topic, and the producer identities it carries."""
    marks = high_watermarks(settings, topic)
    consumer = Consumer({**client_config(settings.kafka_bootstrap_servers),
                         "group.id": "rel-spool-check", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in marks])
    seen: Counter[int] = Counter()
    identities: dict[int, set[tuple[str, int]]] = {}
    remaining = sum(marks.values())
    try:
        while remaining > 0:
            batch = consumer.consume(5000, timeout=10)
            assert batch, f"{remaining} messages not consumed from {topic}"
            for msg in batch:
                assert msg.error() is None, msg.error()
                trade = json.loads(msg.value() or b"{}")
                seen[int(trade["volume"])] += 1
                identities.setdefault(int(trade["volume"]), set()).add(
                    (trade["producer_id"], trade["producer_seq"])
                )
                remaining -= 1
    finally:
        consumer.close()
    return seen, identities


def _warehouse_volumes(settings: Settings, rel_topics: RelTopics) -> tuple[int, Counter[int]]:
    """Drain the topic, build the trades staging view (what the bars read); returns the raw row
    count of the topic and how often each trade (its volume) is in the warehouse's trades."""
    from transform.dbt_runner import build

    topic = rel_topics.trades
    drain_until_caught_up(settings, rel_topics, rel_topics.env())
    build(["--select", "stg_tickhouse__trades"], settings)
    with owner_conn(settings) as conn:
        raw_rows = conn.execute("select count(*) from raw.trades where kafka_topic = %s", (topic,)).fetchone()
        rows = conn.execute(
            "select volume, count(*) from staging.stg_tickhouse__trades where kafka_topic = %s"
            " group by volume",
            (topic,),
        ).fetchall()
    return int(raw_rows[0] if raw_rows else 0), Counter({int(volume): int(n) for volume, n in rows})


def test_producer_sigkill_while_the_spool_drains(
    settings: Settings, rel_topics: RelTopics, tmp_path: Path, scenario: Scenario
) -> None:
    """Producer SIGKILLed while its spool drains (4 kill points)."""
    spool = tmp_path / "spool.bin"
    _fill_spool(spool, rel_topics.trades)
    env = rel_topics.env()
    outcomes = []
    for point in (*POINTS, None):
        run = subprocess.run(
            [sys.executable, "-c", DRAIN_SCRIPT, point or "none", settings.kafka_bootstrap_servers,
             str(spool)],
            env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False,
        )
        in_kafka = sum(high_watermarks(settings, rel_topics.trades).values())
        outcomes.append(f"{point or 'final run'}: exit {run.returncode}, Kafka holds {in_kafka}")
        if point is None:
            assert run.returncode == 0, run.stdout + run.stderr[-3000:]
        else:
            assert run.returncode == -9, f"{point}: not killed there\n{run.stdout}{run.stderr[-3000:]}"
            assert spool.exists(), f"{point}: the spool was removed before Kafka confirmed it all"
            scenario.kills += 1
    assert not spool.exists(), "the spool is still there after a complete drain"
    seen, identities = _volumes(settings, rel_topics.trades)
    lost = sum(1 for i in range(TRADES) if seen[i] == 0)
    resent = sum(n - 1 for n in seen.values() if n > 1)
    scenario.messages, scenario.lost, scenario.resent_in_kafka = TRADES, lost, resent
    scenario.note("; ".join(outcomes))
    assert lost == 0, f"{lost} spooled trades never reached Kafka"
    assert set(seen) == set(range(TRADES)), "Kafka holds trades that were never spooled"
    # 'committed' resends nothing; the other three at most the chunk in flight each
    assert resent <= 3 * SPOOL_CHUNK, resent
    changed = [volume for volume, ids in identities.items() if len(ids) != 1]
    assert not changed, f"{len(changed)} resent trades carry another identity than their first copy"
    assert len({seq for ids in identities.values() for _id, seq in ids}) == TRADES

    raw_rows, kept = _warehouse_volumes(settings, rel_topics)
    doubled = sum(n - 1 for n in kept.values() if n > 1)
    scenario.lost = max(lost, sum(1 for i in range(TRADES) if kept[i] == 0))
    scenario.doubled = doubled
    scenario.note(
        f"Kafka holds {resent} resent copies (at most one chunk of {SPOOL_CHUNK} per kill in flight), "
        f"raw.trades {raw_rows} rows (one per message); the warehouse's trades count each of the "
        f"{TRADES} once, by producer identity: doubled {doubled}"
    )
    assert raw_rows == TRADES + resent, "every message must end as exactly one raw row"
    assert scenario.lost == 0 and doubled == 0, (scenario.lost, doubled)
