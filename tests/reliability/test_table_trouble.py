"""Table trouble under the drain: a raw partition detached, one that cannot be re-attached, and the
loader's INSERT privilege revoked. Each time: a clear error, nothing acknowledged (the data stays in
Kafka), and after the repair everything loads exactly once."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta

import pytest

from tests.reliability.conftest import Scenario
from tests.reliability.helpers import (
    RelTopics,
    caught_up,
    check_trades_exactly_once,
    drain_until_caught_up,
    kafka_committed,
    owner_conn,
    run_drain,
    stored_offsets,
)
from tickhouse.config import Settings

# serial (pyproject.toml): detaches the shared raw.trades' partitions and revokes the loader's INSERT
pytestmark = pytest.mark.serial

BATCH = 1_000


def _free_day(settings: Settings) -> date:
    """A day of a year before 1990 that no raw.trades partition covers yet: the partition the
    drain creates for it (history: that year) holds only this test's rows."""
    rng = random.Random()
    with owner_conn(settings) as conn:
        for _ in range(100):
            year = 1971 + rng.randrange(19)
            taken = conn.execute(
                "select count(*) from raw.partition_ranges('raw.trades')"
                " where lower_bound < %s and upper_bound > %s",
                (datetime(year + 1, 1, 1, tzinfo=UTC), datetime(year, 1, 1, tzinfo=UTC)),
            ).fetchone()
            if taken == (0,):
                return date(year, 1, 1) + timedelta(days=rng.randrange(365))
    raise AssertionError("no year before 1990 without a raw.trades partition")


def _partition_of(settings: Settings, topic: str) -> tuple[str, datetime]:
    """The partition holding `topic`'s rows and the end of its range."""
    with owner_conn(settings) as conn:
        row = conn.execute(
            "select r.child::text, r.upper_bound from raw.trades as t"
            " join raw.partition_ranges('raw.trades') as r on r.child = t.tableoid"
            " where t.kafka_topic = %s group by 1, 2",
            (topic,),
        ).fetchall()
    assert len(row) == 1, row
    name, upper = row[0]
    return str(name), upper


def test_table_trouble_keeps_data_in_kafka(
    settings: Settings, rel_topics: RelTopics, scenario: Scenario
) -> None:
    """raw partition detached / unattachable / privilege revoked."""
    day = _free_day(settings)
    partition = ""
    day_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    next_id = 0
    ids: set[int] = set()

    def produce() -> None:
        nonlocal next_id
        batch = range(next_id, next_id + BATCH)
        rel_topics.produce(rel_topics.trades, (
            json.dumps({"symbol": "RELT", "price": 10.5, "volume": i,
                        "ts": day_ms + 14 * 3_600_000 + i}).encode()
            for i in batch))
        ids.update(batch)
        next_id += BATCH

    env = rel_topics.env()

    def acknowledged() -> tuple[dict[int, int], dict[int, int]]:
        return (stored_offsets(settings, rel_topics.group, rel_topics.trades),
                kafka_committed(settings, rel_topics.group, rel_topics.trades))

    def rows() -> int:
        with owner_conn(settings) as conn:
            got = conn.execute("select count(*) from raw.trades where kafka_topic = %s",
                               (rel_topics.trades,)).fetchone()
        assert got is not None
        return int(got[0])

    try:
        produce()
        drain_until_caught_up(settings, rel_topics, env)
        assert rows() == BATCH
        partition, upper = _partition_of(settings, rel_topics.trades)

        # 1. the partition detached: the drain re-attaches it by itself, its rows come back
        with owner_conn(settings) as conn:
            conn.execute(f"alter table raw.trades detach partition {partition}")
        produce()
        assert rows() == 0
        drain_until_caught_up(settings, rel_topics, env)
        assert rows() == 2 * BATCH, "the detached partition was not re-attached"
        assert _partition_of(settings, rel_topics.trades)[0] == partition
        scenario.note(f"detached partition ({partition}): re-attached by the drain, rows back")

        # 2. detached and holding a row outside its range: it cannot be re-attached
        with owner_conn(settings) as conn:
            conn.execute(f"alter table raw.trades detach partition {partition}")
            conn.execute(
                f"insert into {partition} select symbol, price, volume, ts, %s,"
                " conditions, source, kafka_topic, kafka_partition, -1, kafka_timestamp, loaded_at"
                f" from {partition} limit 1",
                (upper + timedelta(days=3),),
            )
        produce()
        before = acknowledged()
        result = run_drain(env)
        assert result.returncode == 3, result.stdout + result.stderr
        assert "tickhouse drain: failed:" in result.stderr
        assert partition.split(".")[1] in result.stderr and "violated" in result.stderr, result.stderr
        assert acknowledged() == before, "a failed drain moved the offsets"
        assert not caught_up(settings, rel_topics)
        scenario.note("unattachable partition: " + result.stderr.split("failed:", 1)[1].strip()
                      .splitlines()[0][:110])
        with owner_conn(settings) as conn:  # the repair
            conn.execute(f"delete from {partition} where kafka_offset = -1")
        drain_until_caught_up(settings, rel_topics, env)
        assert rows() == 3 * BATCH

        # 3. the loader may no longer insert into raw.trades
        with owner_conn(settings) as conn:
            conn.execute(f"revoke insert on raw.trades from {settings.loader_user}")
        try:
            produce()
            before = acknowledged()
            result = run_drain(env)
            assert result.returncode == 3, result.stdout + result.stderr
            assert "permission denied for table trades" in result.stderr, result.stderr
            assert acknowledged() == before, "a failed drain moved the offsets"
            scenario.note("revoked INSERT: " + result.stderr.split("failed:", 1)[1].strip()
                          .splitlines()[0][:110])
        finally:
            with owner_conn(settings) as conn:
                conn.execute(f"grant insert on raw.trades to {settings.loader_user}")
        drain_until_caught_up(settings, rel_topics, env)

        figures = check_trades_exactly_once(settings, rel_topics.trades, ids)
        scenario.messages, scenario.lost, scenario.doubled = len(ids), figures.lost, figures.doubled
        assert figures.lost == 0 and figures.doubled == 0, figures
        assert rows() == 4 * BATCH
    finally:
        with owner_conn(settings) as conn:
            conn.execute(f"grant insert on raw.trades to {settings.loader_user}")
            if partition:  # created by this test for its own year
                conn.execute(f"drop table if exists {partition}")
