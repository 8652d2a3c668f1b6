"""Bad input is quarantined with its reason and original bytes; the GX suite checks each batch."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import psycopg
import pytest

from drain.errors import DataQualityError
from tests.integration.drain.conftest import Topics
from tests.integration.drain.helpers import NOW_MS, alert, quote, trade

pytestmark = pytest.mark.integration

GOOD = trade(1)
# (payload, a phrase the quarantine reason must contain)
BAD_TRADES: list[tuple[bytes | None, str]] = [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{\"symbol\": \"AAPL\",", "not valid JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b'{"symbol": 42, "price": 1, "volume": 1, "ts": 1}', "symbol: must be a string"),
    (b'{"symbol": "AAPL", "price": "178.45", "volume": 1, "ts": 1}', "price: must be a JSON number"),
    (b'{"symbol": "AAPL", "price": 1, "volume": "100", "ts": 1}', "volume: must be a JSON number"),
    (b'{"symbol": "AAPL", "price": 1, "volume": 1, "ts": "1763649000123"}', "ts: must be integer"),
    (b'{"symbol": "AAPL", "price": NaN, "volume": 1, "ts": 1}', "NaN"),
    (b'{"symbol": "AAPL", "price": Infinity, "volume": 1, "ts": 1}', "Infinity"),
    (b'{"symbol": "AAPL", "price": 0, "volume": 1, "ts": 1}', "price: must be > 0"),
    (b'{"symbol": "AAPL", "price": -1.5, "volume": 1, "ts": 1}', "price: must be > 0"),
    (b'{"symbol": "AAPL", "price": 1, "volume": -1, "ts": 1}', "volume: must be >= 0"),
    (trade(2, ts=NOW_MS + 3 * 86_400_000), "more than one day in the future"),
    (trade(3, ts=NOW_MS * 1000), "more than one day in the future"),
    (b'{"symbol": "AAPL", "price": 1, "volume": 1, "ts": 1, "pad": "' + b"x" * 70_000 + b'"}',
     "payload too large"),
    (b'{"symbol": "AAPL", "price": 1, "price": 2, "volume": 1, "ts": 1}', "duplicated key 'price'"),
    (None, "the Kafka value is null"),
    (b"", "0 bytes"),
    (b'{"symbol": "AAPL", "volume": 1, "ts": 1}', "price: missing required field"),
    (trade(4, conditions="1"), "conditions: must be a list"),
    (trade(5, source="bad\u0000source"), "NUL character"),
    (b'{"symbol": "AAPL", "price": 1, "volume": 1, "ts": 1, "source": "\\ud800"}', "surrogate"),
    (b'{"symbol": "AAPL", "price": 1e-20000, "volume": 1, "ts": 1}', "digits after the decimal"),
    (b'{"symbol": "AAPL", "price": 1e400, "volume": 1, "ts": 1}', "out of range for a double"),
    (trade(6, symbol="AA PL"), "symbol: must be 1-32 chars"),
]


def test_every_kind_of_bad_message_is_quarantined_with_its_reason(
    topics: Topics, db: psycopg.Connection[Any]
) -> None:
    values = []
    for bad, _ in BAD_TRADES:
        values += [GOOD, bad]
    topics.produce(topics.trades, values, partition=0)
    topics.produce(topics.quotes, [quote(1), quote(2, high="12"), quote(3, low=-1)], partition=0)
    topics.produce(
        topics.alerts,
        [alert(1), alert(2, severity="fatal"), alert(3, details=[1]), alert(4, message="m\u0000")],
        partition=0,
    )
    [result, *_] = topics.drain_until_caught_up()

    trades = next(s for s in result.topics if s.topic == topics.trades)
    assert (trades.consumed, trades.loaded, trades.quarantined) == (
        2 * len(BAD_TRADES), len(BAD_TRADES), len(BAD_TRADES)
    )
    rows = db.execute(
        "select kafka_offset, payload, error, payload_length, payload_sha256 from raw.quarantine"
        " where kafka_topic = %s order by kafka_offset",
        (topics.trades,),
    ).fetchall()
    assert [row[0] for row in rows] == [2 * i + 1 for i in range(len(BAD_TRADES))]
    for (offset, payload, error, length, sha256), (bad, phrase) in zip(rows, BAD_TRADES, strict=True):
        # docs/interfaces/warehouse.md: the original bytes, at most the first 64 KiB, full length and sha256
        # beside
        kept = None if bad is None else bad[:65_536]
        assert (bytes(payload) if payload is not None else None) == kept, f"offset {offset}"
        if bad is None:
            assert (length, sha256) == (None, None)
        else:
            assert (length, bytes(sha256)) == (len(bad), hashlib.sha256(bad).digest())
        assert phrase in error, f"offset {offset}: {error!r} does not mention {phrase!r}"
    loaded = db.execute(
        "select count(*), count(distinct kafka_offset) from raw.trades where kafka_topic = %s",
        (topics.trades,),
    ).fetchone()
    assert loaded == (len(BAD_TRADES), len(BAD_TRADES))

    errors = dict(
        db.execute(
            "select kafka_topic || ':' || kafka_offset, error from raw.quarantine"
            " where kafka_topic in (%s, %s)",
            (topics.quotes, topics.alerts),
        ).fetchall()
    )
    assert "high: must be a JSON number" in errors[f"{topics.quotes}:1"]
    assert "low: must be >= 0" in errors[f"{topics.quotes}:2"]
    assert "severity: must be one of" in errors[f"{topics.alerts}:1"]
    assert "details: must be a JSON object" in errors[f"{topics.alerts}:2"]
    assert "NUL" in errors[f"{topics.alerts}:3"]


def test_text_round_trips_exactly(topics: Topics, db: psycopg.Connection[Any]) -> None:
    awkward = 'tab\there\\back"quote\nnew\rret ünï €'
    topics.produce(
        topics.trades,
        [trade(1, price=178.4500, conditions=[awkward, "", "{x}"], source=awkward,
               volume=0.000001)],
    )
    topics.produce(topics.alerts, [alert(1, message=awkward, details={"k": awkward, "n": 1.25})])
    topics.drain_until_caught_up()
    assert db.execute(
        "select conditions, source, price::text, volume::text from raw.trades"
        " where kafka_topic = %s",
        (topics.trades,),
    ).fetchone() == ([awkward, "", "{x}"], awkward, "178.45", "0.000001")
    message, details = db.execute(
        "select message, details from raw.alerts where kafka_topic = %s", (topics.alerts,)
    ).fetchone()
    assert message == awkward
    assert details == {"k": awkward, "n": 1.25}


def test_quality_suite_warns_or_fails_but_keeps_rows(
    topics: Topics, db: psycopg.Connection[Any]
) -> None:
    # valid per docs/interfaces/kafka-messages.md but suspicious: high < low, a price above the DQ ceiling
    topics.produce(topics.quotes, [quote(1), quote(2, high=5, low=9)], partition=0)
    topics.produce(topics.trades, [trade(1), trade(2, price=5e7)], partition=0)

    with pytest.raises(DataQualityError) as failed:
        topics.drain(dq_policy="fail")
    result = failed.value.result
    assert {s.topic: s.loaded for s in result.topics}[topics.quotes] == 2  # committed anyway
    failures = " | ".join(result.dq_failures)
    assert "raw.quotes expect_column_pair_values_a_to_be_greater_than_b" in failures
    assert "raw.trades expect_column_values_to_be_between(price)" in failures
    stored = db.execute(
        "select target_table, expectation, column_name, success from raw.dq_results"
        " where run_id = %s",
        (result.run_id,),
    ).fetchall()
    assert ("raw.quotes", "expect_column_pair_values_a_to_be_greater_than_b", "high>=low", False) in stored
    assert ("raw.trades", "unexpected_rows_expectation", None, True) in stored  # contiguous
    assert db.execute(
        "select count(*) from raw.quotes where kafka_topic = %s", (topics.quotes,)
    ).fetchone() == (2,)

    # warn: the same kind of problem is logged and stored, the run succeeds
    topics.produce(topics.quotes, [quote(3, high=1, low=2)], partition=0)
    warned = topics.drain(dq_policy="warn")
    assert any("greater_than_b" in f for f in warned.dq_failures)
    stats = db.execute(
        "select consumed, loaded, quarantined, partitions from raw.load_stats"
        " where run_id = %s and topic = %s",
        (warned.run_id, topics.quotes),
    ).fetchone()
    assert stats[:3] == (1, 1, 0)
    assert stats[3] == {"0": {"from": 2, "to": 2}}


def test_contiguity_check_catches_messages_kafka_deleted_before_the_drain(
    topics: Topics, db: psycopg.Connection[Any]
) -> None:
    from confluent_kafka import TopicPartition

    topics.produce(topics.trades, [trade(i) for i in range(10)], partition=0)
    first = topics.drain(max_messages=5, dq_policy="warn")
    assert not first.dq_failures, first.dq_failures
    # Kafka retention removes offsets 5..7 before the next run could drain them
    futures = topics.admin.delete_records([TopicPartition(topics.trades, 0, 8)])
    for future in futures.values():
        future.result(timeout=30)
    second = topics.drain(dq_policy="warn")
    trades = next(s for s in second.topics if s.topic == topics.trades)
    assert (trades.consumed, trades.gaps) == (2, 3)
    assert any("raw.trades unexpected_rows_expectation" in f for f in second.dq_failures), (
        json.dumps(second.dq_failures)
    )
