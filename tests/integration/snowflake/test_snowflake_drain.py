"""The drain into Snowflake (fakesnow) from a real Kafka topic: exactly once, quarantine, merges."""

from __future__ import annotations

import json

import pytest

from drain.targets.snowflake import loader as snowflake_loader
from tests.faults import SNOWFLAKE_STAGES, STAGES, crash_at
from tests.integration.drain.helpers import NOW_MS, alert, candle, quote, trade
from tests.integration.snowflake.conftest import Snow, SnowTopics
from tickhouse import kafka
from tickhouse.config import read_env_file

pytestmark = pytest.mark.integration


def high_watermarks(topics: SnowTopics, topic: str) -> dict[int, int]:
    """One past the last offset of each partition of `topic`."""
    marks = kafka.watermarks(topics.settings.kafka_bootstrap_servers, topic)
    return {p: high for p, (_low, high) in marks.items()}


def assert_exactly_once(snow: Snow, topics: SnowTopics, table: str, topic: str) -> None:
    """Every offset Kafka has for `topic` is in `table` or RAW.QUARANTINE, exactly once."""
    marks = high_watermarks(topics, topic)
    seen = snow.coordinates(table, topic) + snow.coordinates("raw.quarantine", topic)
    expected = sorted((p, o) for p, high in marks.items() for o in range(high))
    assert sorted(seen) == expected, f"{topic}: rows do not match Kafka offsets 1:1"
    stored = {
        int(p): int(o)
        for p, o in snow.query(
            "select partition, next_offset from raw.kafka_offsets"
            " where consumer_group = %s and topic = %s",
            (topics.group, topic),
        )
    }
    assert stored == {p: h for p, h in marks.items() if h > 0}


def test_counts_match_offsets_across_capped_runs(snow: Snow, topics: SnowTopics) -> None:
    messages: list[bytes | None] = [trade(i) for i in range(500)]
    topics.produce(topics.trades, [*messages, b"not json", None])
    topics.produce(topics.quotes, [*map(quote, range(30))])
    topics.produce(topics.alerts, [*map(alert, range(20)), b"{}"])
    topics.produce(topics.candles, [*map(candle, range(40)), candle(40, high=1)])

    runs = [topics.drain(max_messages=200)]
    assert sum(s.consumed for s in runs[0].topics) == 200
    runs += topics.drain_until_caught_up(max_messages=200)

    totals: dict[str, list[int]] = {}
    for s in (s for r in runs for s in r.topics):
        assert s.consumed == s.loaded + s.quarantined
        total = totals.setdefault(s.topic, [0, 0])
        total[0] += s.loaded
        total[1] += s.quarantined
    assert totals == {topics.trades: [500, 2], topics.quotes: [30, 0], topics.alerts: [20, 1],
                      topics.candles: [40, 1]}
    assert_exactly_once(snow, topics, "raw.trades", topics.trades)
    assert_exactly_once(snow, topics, "raw.quotes", topics.quotes)
    assert_exactly_once(snow, topics, "raw.alerts", topics.alerts)
    assert_exactly_once(snow, topics, "raw.candles", topics.candles)
    assert snow.query(
        "select count(*), min(bar_start), max(bar_start), sum(volume) from raw.candles"
        " where kafka_topic = %s and resolution = 'D'"
        " and date_part(epoch_millisecond, event_time) = bar_start",
        (topics.candles,),
    ) == [(40, NOW_MS - NOW_MS % 86_400_000 - 39 * 86_400_000, NOW_MS - NOW_MS % 86_400_000,
           sum(1000 * i for i in range(40)))]
    assert snow.query("select error from raw.quarantine where kafka_topic = %s",
                      (topics.candles,)) == [("low 139.5 is above high 1",)]
    stats = snow.query(
        "select sum(consumed), sum(loaded), sum(quarantined), count(distinct run_id)"
        " from raw.load_stats where topic = %s",
        (topics.trades,),
    )
    assert [tuple(int(v) for v in row) for row in stats] == [(502, 500, 2, len(runs))]


class Crash(Exception):
    pass


@pytest.mark.parametrize("stage", [*STAGES, *SNOWFLAKE_STAGES])
def test_crash_at_each_stage_then_rerun(
    stage: str, snow: Snow, topics: SnowTopics, monkeypatch: pytest.MonkeyPatch
) -> None:
    # stage in chunks of 300 rows so that 'mid_copy' fires with more rows still to come
    monkeypatch.setattr(snowflake_loader, "FLUSH_ROWS", 300)
    topics.produce(topics.trades, [*map(trade, range(1_000)), b"\xff"])
    topics.produce(topics.quotes, [quote(i) for i in range(5)])
    fired: list[str] = []

    def crash() -> None:
        fired.append(stage)
        raise Crash(stage)

    with pytest.raises(Crash), crash_at(stage, crash):
        topics.drain()
    assert fired == [stage]

    loaded = len(snow.coordinates("raw.trades", topics.trades))
    if stage == "after_commit_before_kafka_commit":
        assert loaded == 1_000  # committed in the warehouse, Kafka not told
    else:
        assert loaded == 0  # nothing moved into RAW, no offsets
        assert snow.query(
            "select count(*) from raw.kafka_offsets where consumer_group = %s", (topics.group,)
        ) == [(0,)]
        assert snow.query("select count(*) from raw.quarantine") == [(0,)]

    topics.drain_until_caught_up()
    assert_exactly_once(snow, topics, "raw.trades", topics.trades)
    assert_exactly_once(snow, topics, "raw.quotes", topics.quotes)


def test_rerun_on_the_same_data_inserts_nothing_twice(snow: Snow, topics: SnowTopics) -> None:
    """Snowflake enforces no unique key: the coordinates check alone must keep rows single."""
    topics.produce(topics.trades, [*map(trade, range(300)), b"[1]"])
    topics.produce(topics.alerts, [alert(i) for i in range(10)])
    topics.drain_until_caught_up()
    # forget the offsets, as if they had been lost: the next run reads everything again
    snow.query("delete from raw.kafka_offsets where consumer_group = %s", (topics.group,))
    again = topics.drain()
    assert {s.topic: s.consumed for s in again.topics}[topics.trades] == 301
    assert_exactly_once(snow, topics, "raw.trades", topics.trades)
    assert_exactly_once(snow, topics, "raw.alerts", topics.alerts)
    # and the offsets are back where the data ends
    assert topics.drain().topics[0].consumed == 0


def test_quarantine_keeps_original_bytes_and_reasons(snow: Snow, topics: SnowTopics) -> None:
    bad: list[bytes | None] = [
        b"\x00\xff\xfe not utf-8",
        b"not json",
        b'{"symbol": "AAPL", "price": "1.5", "volume": 1, "ts": 1}',
        json.dumps({"symbol": "AAPL", "price": -1, "volume": 1, "ts": NOW_MS}).encode(),
        None,
    ]
    topics.produce(topics.trades, bad, partition=0)
    topics.produce(topics.trades, [trade(1)], partition=0)
    topics.drain_until_caught_up()
    rows = snow.query(
        "select kafka_offset, payload, error, kafka_key from raw.quarantine"
        " where kafka_topic = %s order by kafka_offset",
        (topics.trades,),
    )
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3, 4]
    assert [r[1] for r in rows] == bad  # byte for byte, NULL for a tombstone
    assert all(r[3] == b"k" for r in rows)
    reasons = [r[2] for r in rows]
    assert "UTF-8" in reasons[0]
    assert "price" in reasons[2] and "price" in reasons[3]
    assert all(reasons)
    assert snow.coordinates("raw.trades", topics.trades) == [(0, 5)]


def test_values_arrive_with_their_types(snow: Snow, topics: SnowTopics) -> None:
    topics.produce(
        topics.trades,
        [trade(3, conditions=["1", 'a"b\\c', "tab\there"], source="ünï")],
        partition=0,
    )
    topics.produce(
        topics.alerts, [alert(1, message="line\nbreak\ttab", details={"z": 3.5, "w": [1, "x"]})]
    )
    topics.produce(topics.quotes, [quote(2)])
    topics.drain_until_caught_up()

    [(price, volume, ts, event_ms, conditions, source)] = snow.query(
        "select price, volume, ts, date_part(epoch_millisecond, event_time), conditions, source"
        " from raw.trades"
    )
    body = json.loads(trade(3))
    assert (price, volume, int(ts)) == (body["price"], body["volume"], body["ts"])
    assert int(event_ms) == body["ts"]
    assert json.loads(conditions) == ["1", 'a"b\\c', "tab\there"]
    assert source == "ünï"
    [(message, details, trade_ts)] = snow.query("select message, details, trade_ts from raw.alerts")
    assert message == "line\nbreak\ttab"
    assert json.loads(details) == {"z": 3.5, "w": [1, "x"]}
    assert int(trade_ts) == json.loads(alert(1))["trade_ts"]
    [(change_pct, high)] = snow.query("select change_pct, high from raw.quotes")
    assert change_pct is None and high == 14


def test_a_drain_that_lost_the_race_writes_nothing(snow: Snow, topics: SnowTopics) -> None:
    """Two drains of one group: the one whose offsets moved under it rolls back."""
    from drain.errors import OffsetConflict

    topics.produce(topics.trades, [trade(i) for i in range(50)], partition=0)
    topics.drain_until_caught_up()
    topics.produce(topics.trades, [trade(i) for i in range(50, 80)], partition=0)

    def other_drain_commits_first() -> None:
        snow.query(
            "update raw.kafka_offsets set next_offset = next_offset + 1"
            " where consumer_group = %s",
            (topics.group,),
        )

    with pytest.raises(OffsetConflict), crash_at("after_copy_before_commit", other_drain_commits_first):
        topics.drain()
    assert len(snow.coordinates("raw.trades", topics.trades)) == 50


def test_drain_cli_loads_into_snowflake_without_postgres_credentials(
    snow: Snow, topics: SnowTopics, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from drain.cli import main

    # no state dir, so no secrets file: the Kafka login comes from the environment, as on a worker
    secrets = read_env_file(topics.settings.secrets_file)
    for name, value in {
        **topics.env(), "DRAIN_MAX_SECONDS": "20",
        "LOADER_PASSWORD": "", "POSTGRES_PASSWORD": "", "DBT_PASSWORD": "",
        "BI_READER_PASSWORD": "", "TICKHOUSE_STATE_DIR": "/nonexistent/tickhouse-state",
        "KAFKA_USERNAME": "admin", "KAFKA_PASSWORD": secrets["KAFKA_ADMIN_PASSWORD"],
        "KAFKA_LOGIN_SERVERS": topics.settings.kafka_login_listener,
    }.items():
        monkeypatch.setenv(name, value)
    topics.produce(topics.trades, [*map(trade, range(40)), b"nope"])
    assert main(["--once"]) == 0, capsys.readouterr().err
    assert "drain run" in capsys.readouterr().out
    assert_exactly_once(snow, topics, "raw.trades", topics.trades)
