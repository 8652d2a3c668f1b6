"""The producer's trade identity: kept beside the spool, carried by spooled messages, never reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.suite import free_port
from producer.identity import IdentityFileError, ProducerIdentity, identity_path
from producer.publisher import Publisher
from producer.spool import Spool
from tickhouse.schemas import Trade, parse_trade, to_json

pytestmark = pytest.mark.unit

TOPIC = "market.trades"


def _dead_broker() -> str:
    return f"127.0.0.1:{free_port()}"


def _trade(i: int) -> bytes:
    return to_json(Trade("AAPL", 100.5, i, 1_700_000_000_000 + i, None, "test"))


def test_sequence_numbers_grow_and_survive_a_restart_without_reuse(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin.identity"
    first = ProducerIdentity(path, block=10)
    taken = [first.take(1) for _ in range(4)] + [first.take(8)]
    assert taken == [0, 1, 2, 3, 4]
    assert first.next_seq == 12
    # a SIGKILL now: the next run starts past everything reserved, so nothing is handed out twice
    second = ProducerIdentity(path, block=10)
    assert second.producer_id == first.producer_id
    assert second.take(1) >= 12
    assert ProducerIdentity(tmp_path / "other.identity").producer_id != first.producer_id


def test_an_unreadable_identity_file_is_an_error_that_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin.identity"
    path.write_text("{not json")
    with pytest.raises(IdentityFileError, match="remove it only if the spool beside it is empty"):
        ProducerIdentity(path)


def test_spooled_trades_keep_their_identity_across_a_producer_restart(tmp_path: Path) -> None:
    spool = tmp_path / "spool.bin"
    down = Publisher(_dead_broker(), spool_path=spool, max_queue_messages=50, stall_seconds=0.2,
                     trades_topic=TOPIC)
    down.publish_batch(TOPIC, [(0, b"AAPL", _trade(i)) for i in range(80)])
    down.publish(TOPIC, b"AAPL", _trade(80))
    down.publish("market.quotes", b"AAPL", b'{"symbol":"AAPL"}')
    producer_id = down.identity.producer_id if down.identity else None
    assert down.close(timeout=0.2) == 82

    stored = Spool(spool)
    records = stored.read(100)
    stored.close()
    trades = [parse_trade(value) for topic, _key, value in records if topic == TOPIC]
    assert sorted(t.volume for t in trades) == list(range(81)), "a trade was lost or stamped twice"
    assert {t.producer_id for t in trades} == {producer_id}
    seqs = [t.producer_seq for t in sorted(trades, key=lambda t: t.volume)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 81, "sequence numbers must grow in publish order"
    assert [value for topic, _key, value in records if topic != TOPIC] == [b'{"symbol":"AAPL"}']

    # the next run resends those bytes as they are, and numbers its new trades after them
    again = Publisher(_dead_broker(), spool_path=spool, trades_topic=TOPIC)
    assert again.identity is not None
    assert again.identity.producer_id == producer_id
    assert again.identity.next_seq > max(s for s in seqs if s is not None)
    again.close(timeout=0.1)
    assert json.loads(identity_path(spool).read_text())["producer_id"] == producer_id


def test_without_a_trades_topic_nothing_is_stamped(tmp_path: Path) -> None:
    spool = tmp_path / "spool.bin"
    down = Publisher(_dead_broker(), spool_path=spool, trades_topic=None)
    down.publish(TOPIC, b"AAPL", _trade(1))
    down.close(timeout=0.1)
    stored = Spool(spool)
    assert [value for _t, _k, value in stored.read(10)] == [_trade(1)]
    stored.close()
    assert not identity_path(spool).exists()
