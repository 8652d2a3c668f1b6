"""parse_batch: one validation, typed rows encoded for either target, event times and rejects (pure)."""

from __future__ import annotations

import json
import pickle

import pytest

from drain.batches import parse_batch
from drain.rows import QUARANTINE_PAYLOAD_BYTES
from drain.targets.postgres.copy_rows import ENCODING as POSTGRES
from drain.targets.snowflake.staging_rows import ENCODING as SNOWFLAKE
from tickhouse.raw_tables import COLUMNS

pytestmark = pytest.mark.unit

DAY = 86_400_000


def trade(ts: int, **extra: object) -> bytes:
    return json.dumps({"symbol": "AAPL", "price": 1.5, "volume": 2, "ts": ts, **extra}).encode()


ITEMS = [
    (trade(3 * DAY + 5), 0, 10, 1000, b"AAPL"),
    (b"not json", 0, 11, None, b"k"),
    # docs/interfaces/kafka-messages.md admits it, no warehouse stores it
    (trade(DAY + 7, source="x\u0000"), 1, 12, None, None),
    (trade(DAY + 1), 1, 13, None, None),
]


@pytest.mark.parametrize("encoding", [POSTGRES, SNOWFLAKE], ids=["postgres", "snowflake"])
def test_both_targets_get_the_same_rows_and_rejects(encoding: object) -> None:
    result = parse_batch("trades", "market.trades", ITEMS, encoding)  # type: ignore[arg-type]
    assert (result.loaded, len(result.rejected)) == (2, 2)
    assert (result.min_event_ms, result.max_event_ms) == (DAY + 1, 3 * DAY + 5)
    assert result.days == {1, 3}


def test_postgres_rows_are_one_copy_block_in_column_order() -> None:
    result = parse_batch("trades", "market.trades", ITEMS, POSTGRES)
    lines = result.rows.decode().splitlines()
    assert [len(line.split("\t")) for line in lines] == [len(COLUMNS["trades"])] * 2
    assert [line.split("\t")[9] for line in lines] == ["10", "13"]  # kafka_offset
    reasons = [line.split("\t")[-1].strip() for line in (r.decode() for r in result.rejected)]
    assert reasons[0] == "not valid JSON: Expecting value at position 0"
    assert reasons[1].startswith("source: contains a NUL character")


def test_snowflake_rows_are_typed_values_not_split_copy_text() -> None:
    result = parse_batch("trades", "market.trades", ITEMS, SNOWFLAKE)
    first = dict(zip(COLUMNS["trades"], result.rows[0], strict=True))
    assert first == {
        "symbol": "AAPL", "price": "1.5", "volume": "2", "ts": str(3 * DAY + 5),
        "event_time": str(3 * DAY + 5), "conditions": None, "source": None,
        "kafka_topic": "market.trades", "kafka_partition": "0", "kafka_offset": "10",
        "kafka_timestamp": "1000", "producer_id": None, "producer_seq": None,
    }
    rejected = dict(zip(COLUMNS["quarantine"], result.rejected[0], strict=True))
    assert rejected["payload"] == b"not json".hex() and rejected["payload_length"] == "8"
    assert rejected["kafka_key"] == b"k".hex() and rejected["kafka_offset"] == "11"


def test_a_rejected_message_keeps_at_most_64_kib_with_its_length() -> None:
    huge = b"x" * (QUARANTINE_PAYLOAD_BYTES + 10)
    result = parse_batch("trades", "t", [(huge, 0, 0, None, None)], SNOWFLAKE)
    rejected = dict(zip(COLUMNS["quarantine"], result.rejected[0], strict=True))
    assert rejected["payload"] == huge[:QUARANTINE_PAYLOAD_BYTES].hex()
    assert rejected["payload_length"] == str(len(huge))


def test_encodings_travel_to_worker_processes() -> None:
    for encoding in (POSTGRES, SNOWFLAKE):
        assert pickle.loads(pickle.dumps(encoding)) == encoding


@pytest.mark.parametrize("encoding", [POSTGRES, SNOWFLAKE], ids=["postgres", "snowflake"])
def test_a_malformed_producer_identity_is_quarantined_with_the_reason(encoding: object) -> None:
    items = [
        (trade(DAY, producer_id="0f3a9c", producer_seq=1), 0, 1, None, None),
        (trade(DAY, producer_id="0f3a9c"), 0, 2, None, None),
        (trade(DAY, producer_id="0f 3a", producer_seq=2), 0, 3, None, None),
    ]
    result = parse_batch("trades", "market.trades", items, encoding)  # type: ignore[arg-type]
    assert result.loaded == 1
    reasons = [dict(zip(COLUMNS["quarantine"], r, strict=True))["error"] if isinstance(r, (list, tuple))
               else r.decode().split("\t")[-1].strip() for r in result.rejected]
    assert reasons == [
        "producer_seq: missing, but producer_id is set; a trade's producer identity needs both",
        'producer_id: must be 1-64 chars of A-Z a-z 0-9 _ -, got string "0f 3a"',
    ]
