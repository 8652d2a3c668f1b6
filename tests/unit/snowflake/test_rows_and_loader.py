"""Typed rows -> Snowflake staging rows, and the loader's SQL on fakesnow (in-process)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from drain.batches import BatchResult, Item, parse_batch
from drain.errors import OffsetConflict
from drain.stats import TopicStats
from drain.targets.snowflake.loader import (
    SnowflakeLoader,
    read_offsets,
    save_offsets,
    write_load_stats,
)
from drain.targets.snowflake.staging_rows import ENCODING
from tickhouse.raw_tables import COLUMNS
from tickhouse.snowflake.schema import ddl_statements, setup_raw

pytestmark = pytest.mark.unit

TRADE = json.dumps({
    "symbol": "BRK.B", "price": 412.5, "volume": 0, "ts": 1763649000123,
    "conditions": ["1", 'q"uote', "back\\slash", "tab\tnew\nline"], "source": "ünï\\code",
}).encode()


def batch(kind: str, topic: str, items: list[Item]) -> BatchResult:
    return parse_batch(kind, topic, items, ENCODING)


def row(kind: str, payload: bytes, topic: str, partition: int, offset: int,
        kafka_ts: int | None) -> list[str | None]:
    [staged] = batch(kind, topic, [(payload, partition, offset, kafka_ts, None)]).rows
    assert len(staged) == len(COLUMNS[kind])
    return list(staged)


def test_trade_values_are_staged_as_text_in_column_order() -> None:
    assert row("trades", TRADE, "market.trades", 2, 41, 1763649000200) == [
        "BRK.B", "412.5", "0", "1763649000123", "1763649000123",
        json.dumps(["1", 'q"uote', "back\\slash", "tab\tnew\nline"], ensure_ascii=False),
        "ünï\\code", "market.trades", "2", "41", "1763649000200", None, None,
    ]
    with_identity = TRADE[:-1] + b',"producer_id":"0f3a9c","producer_seq":7}'
    assert row("trades", with_identity, "market.trades", 2, 42, None)[-2:] == ["0f3a9c", "7"]


def test_quarantine_bytes_are_staged_as_hex() -> None:
    rejected = batch("trades", "t", [(b"\x00\xff\\N\t", 0, 7, None, None)]).rejected
    assert [r[:8] for r in rejected] == [[
        "t", "0", "7", None, None, "00ff5c4e09", "5", hashlib.sha256(b"\x00\xff\\N\t").hexdigest(),
    ]]
    assert rejected[0][8].startswith("not UTF-8")


def test_quote_and_alert_rows() -> None:
    quote = row(
        "quotes",
        b'{"symbol":"AAPL","price":1,"change":null,"change_pct":0.5,"high":2,"low":0.5,'
        b'"open":1,"prev_close":1,"ts":1000}', "q", 0, 1, None,
    )
    assert quote[1:4] == ["1", None, "0.5"]
    alert = row(
        "alerts",
        json.dumps({"alert_id": "x", "symbol": "A", "rule": "r", "severity": "info",
                    "message": "m\tn", "trade_ts": 5, "detected_ts": 6,
                    "details": {"k": "v\\"}}).encode(), "a", 0, 1, None,
    )
    assert alert[4] == "m\tn" and json.loads(alert[8]) == {"k": "v\\"}  # type: ignore[arg-type]


CANDLE = (b'{"symbol":"IBM","resolution":"D","bar_start":951868800000,"open":102.0,"high":105.5,'
          b'"low":100.06,"close":100.25,"volume":10807800}')


def test_candle_rows() -> None:
    assert row("candles", CANDLE, "market.candles", 1, 3, None) == [
        "IBM", "D", "951868800000", "951868800000", "102.0", "105.5", "100.06", "100.25",
        "10807800", None, "market.candles", "1", "3", None,
    ]


def test_staged_candles_land_in_raw_candles_with_their_types(conn: Any) -> None:
    loader = SnowflakeLoader(conn)
    loader.add(batch("candles", "market.candles", [(CANDLE, 0, o, 1763649000200, None) for o in range(3)]))
    loader.finish()
    cur = conn.cursor()
    assert loader.move_staged_rows(cur) == {"candles": 3}
    assert loader.move_staged_rows(cur) == {"candles": 0}
    cur.execute("select symbol, resolution, bar_start, date_part(epoch_millisecond, event_time),"
                " open, high, low, close, volume, kafka_offset from raw.candles order by kafka_offset")
    rows = cur.fetchall()
    assert [tuple(r[:9]) for r in rows] == [
        ("IBM", "D", 951868800000, 951868800000, 102.0, 105.5, 100.06, 100.25, 10807800.0)] * 3
    assert [int(r[9]) for r in rows] == [0, 1, 2]


def test_ddl_file_splits_into_statements() -> None:
    statements = ddl_statements()
    assert statements[0] == "create schema if not exists raw"
    # the seven Kafka-fed tables and the reference data (trading calendar, symbol profiles,
    # corporate actions)
    assert sum(s.startswith("create table if not exists raw.") for s in statements) == 10
    assert not any("--" in s for s in statements)


@pytest.fixture
def conn() -> Iterator[Any]:
    import fakesnow
    import snowflake.connector

    with fakesnow.patch():
        connection = snowflake.connector.connect(database="TICKHOUSE", schema="RAW")
        setup_raw(connection)
        setup_raw(connection)  # idempotent
        yield connection
        connection.close()


def _stage(conn: Any, offsets: range) -> SnowflakeLoader:
    loader = SnowflakeLoader(conn)
    loader.add(batch("trades", "market.trades", [(TRADE, 0, o, None, None) for o in offsets]))
    loader.add(batch("trades", "market.trades", [(b"\xff", 0, 99, None, b"k")]))
    loader.finish()
    return loader


def test_staged_rows_are_inserted_once_however_often_they_are_moved(conn: Any) -> None:
    loader = _stage(conn, range(5))
    cur = conn.cursor()
    assert loader.move_staged_rows(cur) == {"trades": 5, "quarantine": 1}
    assert loader.move_staged_rows(cur) == {"trades": 0, "quarantine": 0}
    _stage(conn, range(3, 8)).move_staged_rows(cur)
    cur.execute("select kafka_offset from raw.trades order by 1")
    assert [int(o) for (o,) in cur.fetchall()] == list(range(8))
    cur.execute("select payload, kafka_key, error, payload_length, payload_sha256 from raw.quarantine")
    assert [(*row[:3], int(row[3]), row[4]) for row in cur.fetchall()] == [
        (b"\xff", b"k", "not UTF-8: invalid byte at position 0", 1,
         hashlib.sha256(b"\xff").digest())
    ]


def test_offsets_move_only_from_where_the_run_found_them(conn: Any) -> None:
    cur = conn.cursor()
    save_offsets(cur, "g", {("t", 0): 10, ("t", 1): 3}, {})
    assert read_offsets(conn, "g", ["t", "other"]) == {("t", 0): 10, ("t", 1): 3}
    save_offsets(cur, "g", {("t", 0): 15}, {("t", 0): 10})
    assert read_offsets(conn, "g", ["t"])[("t", 0)] == 15
    with pytest.raises(OffsetConflict, match=r"t\[0\] is no longer 10"):
        save_offsets(cur, "g", {("t", 0): 20}, {("t", 0): 10})
    with pytest.raises(OffsetConflict, match=r"t\[1\] is no longer None"):
        save_offsets(cur, "g", {("t", 1): 20}, {})


def test_load_stats_rows(conn: Any) -> None:
    stats = TopicStats("market.trades", "trades", consumed=3, loaded=2, quarantined=1,
                       lag_after=0, min_event_ms=1000, max_event_ms=2000, offsets={0: [0, 2]})
    start = datetime(2025, 11, 20, 14, 30, tzinfo=UTC)
    cur = conn.cursor()
    write_load_stats(cur, run_id="r1", group="g", started_at=start,
                     finished_at=datetime(2025, 11, 20, 14, 30, 1, tzinfo=UTC), stats=[stats])
    cur.execute("select target_table, duration_ms, consumed, loaded, quarantined, partitions,"
                " date_part(epoch_millisecond, max_event_time) from raw.load_stats")
    [(table, duration, consumed, loaded, quarantined, partitions, max_ms)] = cur.fetchall()
    assert (table, duration, int(consumed), int(loaded), int(quarantined)) == (
        "raw.trades", 1000, 3, 2, 1)
    assert json.loads(partitions) == {"0": {"from": 0, "to": 2}}
    assert int(max_ms) == 2000
