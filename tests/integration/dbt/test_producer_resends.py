"""Producer resends in the warehouse: a trade the Tickhouse producer sent again after a crash
(same producer_id and producer_seq, a new Kafka offset) is kept in raw.trades as its own row but
counted once in the bars, whether the repeat arrives in the same load or a later one, through the
hot path, an incremental build and a full refresh alike; genuine trades that look the same (same
symbol, price, size and millisecond) all count."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.dbt.conftest import Feed, Transformer, fetch, own_feed, own_warehouse
from tests.integration.dbt.parsed_project import manifest_for
from tickhouse.config import Settings
from tickhouse.schemas import Trade, to_json
from tickhouse.warehouse import connect
from transform.hot import HotTransform

pytestmark = pytest.mark.integration

MINUTE = 60_000
BASE = 1_764_000_000_000 // MINUTE * MINUTE  # 2025-11-24 16:00 UTC
PRODUCER = "0f3a9c5e"


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Settings]:
    with own_warehouse("resends") as settings:
        yield settings


def _trade(symbol: str, minute: int, ms: int, seq: int | None, volume: int = 2) -> Trade:
    return Trade(symbol, Decimal("10.5"), volume, BASE + minute * MINUTE + ms, None, "test",
                 PRODUCER if seq is not None else None, seq)


def _send(feed: Feed, trades: list[Trade]) -> None:
    """As the producer sends them: its compact JSON (the drain's fast path)."""
    for trade in trades:
        feed.producer.produce(feed.trades_topic, to_json(trade), key=trade.symbol.encode())
    assert feed.producer.flush(60) == 0


def _bars(settings: Settings, symbol: str) -> dict[int, tuple[int, Decimal]]:
    rows = fetch(settings, "select bar_start, trade_count, volume from marts.fct_bars"
                 " where symbol = %s and bar_interval = '1m'", (symbol,))
    return {int(r["bar_start"].timestamp() * 1000): (r["trade_count"], r["volume"]) for r in rows}


def _raw_rows(settings: Settings, symbol: str) -> int:
    return int(fetch(settings, "select count(*) as n from raw.trades where symbol = %s", (symbol,))[0]["n"])


def test_a_resent_trade_counts_once_and_lookalike_genuine_trades_all_count(
    warehouse: Settings, tmp_path: Path
) -> None:
    originals = [_trade("RSND", 0, i, seq=100 + i) for i in range(4)]
    # the same symbol, price, size and millisecond: two trades each time, with or without identity
    twins = [_trade("TWIN", 0, 7, seq=None), _trade("TWIN", 0, 7, seq=None),
             _trade("TWIN", 1, 7, seq=200), _trade("TWIN", 1, 7, seq=201)]
    with own_feed(warehouse, kinds=("trades",)) as feed:
        # a repeat in the same load as its original
        _send(feed, [*originals, originals[0], *twins])
        feed.drain()
        build = Transformer(warehouse, tmp_path / "build")
        build()
        expected = {BASE: (4, Decimal(8))}
        assert _bars(warehouse, "RSND") == expected
        assert _bars(warehouse, "TWIN") == {BASE: (2, Decimal(4)), BASE + MINUTE: (2, Decimal(4))}

        # repeats in a later load (the producer's resend after a crash), each a new Kafka offset,
        # and a genuine new trade in the same minute
        _send(feed, [originals[1], originals[2], originals[1], _trade("RSND", 0, 50, seq=104, volume=5)])
        feed.drain()
        HotTransform(warehouse, target_path=tmp_path / "hot", manifest=manifest_for(warehouse)).run()
        expected = {BASE: (5, Decimal(13))}
        assert _bars(warehouse, "RSND") == expected, "the hot path counted a resend"
        build()
        assert _bars(warehouse, "RSND") == expected, "an incremental build counted a resend"
        build("--full-refresh")
        assert _bars(warehouse, "RSND") == expected
        assert _bars(warehouse, "TWIN") == {BASE: (2, Decimal(4)), BASE + MINUTE: (2, Decimal(4))}

    # every message is one raw row: the repeats stay in raw with their own coordinates
    assert _raw_rows(warehouse, "RSND") == 9
    kept = fetch(warehouse, "select producer_seq, kafka_offset from staging.stg_tickhouse__trades"
                 " where symbol = 'RSND' order by producer_seq")
    first_offsets = fetch(warehouse, "select producer_seq, min(kafka_offset) as kafka_offset from raw.trades"
                          " where symbol = 'RSND' group by producer_seq order by producer_seq")
    assert kept == first_offsets, "the first copy of each identity must be the one kept"


def test_the_resend_check_reads_raw_through_indexes_only(warehouse: Settings) -> None:
    """A per-minute read of the staging view (what the incremental models do) can be served by
    indexes alone: the (symbol, event_time) range, and the identity probe through the partial
    index, never a scan of all of raw.trades."""
    with connect(warehouse, "owner") as conn:
        conn.execute("set enable_seqscan = off")  # a scan stays only where no index can serve
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "explain select count(*) from staging.stg_tickhouse__trades where symbol = 'RSND'"
                " and event_time >= to_timestamp(%s / 1000.0) and event_time < to_timestamp(%s / 1000.0)",
                (BASE, BASE + MINUTE),
            )
        )
    assert "Seq Scan" not in plan, plan
    assert "producer_id_producer_seq" in plan, plan
