"""History as candles through the exactly-once path: fake Finnhub -> `tickhouse backfill` ->
Kafka -> `drain_once` -> raw.candles, on the real daily series bundled in data/."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import gzip
import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from drain.errors import DataQualityError
from producer.backfill import run_backfill
from tests.finnhub_server import DAILY_CANDLES, FakeFinnhub
from tests.integration.drain.conftest import Topics
from tests.integration.drain.helpers import NOW_MS
from tickhouse.config import Settings

pytestmark = pytest.mark.integration

FIRST, LAST = dt.date(2011, 3, 1), dt.date(2013, 3, 1)
SYMBOLS = ["AAPL", "IBM", "FB", "NOPE"]
# IBM's real candle of 2012-06-01, served broken: its high below its low
BROKEN_T = 1338508800
BROKEN = (BROKEN_T, 192.0, 185.0, 189.5, 189.08, 5980000)


def expected_rows() -> dict[tuple[str, int], tuple[Decimal, ...]]:
    """(symbol, bar_start) -> (open, high, low, close, volume), read from the bundled file."""
    low = (FIRST - dt.date(1970, 1, 1)).days * 86_400_000
    high = (LAST - dt.date(1970, 1, 1)).days * 86_400_000
    with gzip.open(DAILY_CANDLES, "rt", newline="") as handle:
        return {
            (r["symbol"], int(r["bar_start"])): tuple(
                Decimal(r[c]) for c in ("open", "high", "low", "close", "volume"))
            for r in csv.DictReader(handle)
            if r["symbol"] in SYMBOLS and low <= int(r["bar_start"]) <= high
        }


def test_backfilled_history_lands_in_raw_candles_exactly_once(
    topics: Topics, settings: Settings, db: psycopg.Connection[Any]
) -> None:
    with FakeFinnhub() as server:
        server.set_candles("IBM", "D", [BROKEN])
        finnhub = dataclasses.replace(settings, finnhub_api_key="test-token",
                                      finnhub_api_url=server.api_url)
        summary = run_backfill(finnhub, source="finnhub", symbols=SYMBOLS, resolution="D",
                               first=FIRST, last=LAST, topic=topics.candles)
        served = sum(r.candles for r in server.candle_requests)
    assert summary.exit_code == 0, summary.as_dict()
    expected = expected_rows()
    assert served == summary.served == summary.published == summary.acknowledged == len(expected)
    assert len(expected) == 1_204  # AAPL and IBM 2 years, FB since its listing
    assert summary.invalid == 1 and summary.no_data == ["NOPE 2011-03-01..2013-03-01"]

    [first, *_] = topics.drain_until_caught_up()
    stats = next(s for s in first.topics if s.topic == topics.candles)
    assert (stats.kind, stats.table) == ("candles", "raw.candles")
    assert (stats.consumed, stats.loaded, stats.quarantined) == (served, served - 1, 1)

    rows = db.execute(
        "select symbol, resolution, bar_start, open, high, low, close, volume, source,"
        " (extract(epoch from event_time) * 1000)::bigint = bar_start"
        " from raw.candles where kafka_topic = %s",
        (topics.candles,),
    ).fetchall()
    loaded = {(r[0], r[2]): tuple(r[3:8]) for r in rows}
    assert len(rows) == len(loaded) == served - 1  # one row per candle
    assert {(r[1], r[8], r[9]) for r in rows} == {("D", "finnhub", True)}
    broken_key = ("IBM", BROKEN_T * 1000)
    assert broken_key not in loaded
    assert loaded == {k: v for k, v in expected.items() if k != broken_key}  # exact values

    [(payload, error)] = db.execute(
        "select payload, error from raw.quarantine where kafka_topic = %s", (topics.candles,)
    ).fetchall()
    assert error == "low 189.5 is above high 185.0"
    assert json.loads(bytes(payload)) == {
        "symbol": "IBM", "resolution": "D", "bar_start": BROKEN_T * 1000, "open": 192.0,
        "high": 185.0, "low": 189.5, "close": 189.08, "volume": 5980000, "source": "finnhub"}

    # a second drain finds nothing new and adds nothing
    again = topics.drain()
    assert [s.consumed for s in again.topics] == [0, 0, 0, 0]
    assert db.execute("select count(*) from raw.candles where kafka_topic = %s",
                      (topics.candles,)).fetchone() == (served - 1,)
    assert db.execute("select count(*) from raw.quarantine where kafka_topic = %s",
                      (topics.candles,)).fetchone() == (1,)
    recorded = db.execute(
        "select sum(consumed), sum(loaded), sum(quarantined) from raw.load_stats"
        " where consumer_group = %s and topic = %s and target_table = 'raw.candles'",
        (topics.group, topics.candles),
    ).fetchone()
    assert recorded == (served, served - 1, 1)


def test_quality_suite_checks_candle_batches(
    topics: Topics, db: psycopg.Connection[Any]
) -> None:
    good = {"symbol": "NVDA", "resolution": "D", "bar_start": NOW_MS - NOW_MS % 86_400_000,
            "open": 136.0, "high": 138.88, "low": 134.63, "close": 138.31, "volume": 198247166}
    topics.produce(topics.candles, [json.dumps(good).encode()], partition=0)
    result = topics.drain(dq_policy="fail")
    assert result.dq_checked and not result.dq_failures
    checks = db.execute(
        "select expectation, column_name, success from raw.dq_results"
        " where run_id = %s and target_table = 'raw.candles'",
        (result.run_id,),
    ).fetchall()
    assert ("expect_column_pair_values_a_to_be_greater_than_b", "high>=low", True) in checks
    assert ("expect_column_values_to_be_in_set", "resolution", True) in checks
    assert all(success for _, _, success in checks) and len(checks) >= 15

    # valid per docs/interfaces/kafka-messages.md but above the data-quality price ceiling: loaded, then
    # flagged
    topics.produce(topics.candles, [json.dumps({**good, "high": 5e7, "close": 5e7}).encode()],
                   partition=0)
    with pytest.raises(DataQualityError) as failed:
        topics.drain(dq_policy="fail")
    assert "raw.candles expect_column_values_to_be_between(high)" in " ".join(
        failed.value.result.dq_failures)
    assert db.execute("select count(*) from raw.candles where kafka_topic = %s",
                      (topics.candles,)).fetchone() == (2,)
