"""The on-disk spool: FIFO, durable across instances, tolerant of a torn last record."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.spool import Spool, SpoolBusy

pytestmark = pytest.mark.unit


def records(n: int, start: int = 0) -> list[tuple[str, bytes | None, bytes]]:
    return [("market.trades", f"S{i % 3}".encode(), f'{{"n":{i}}}'.encode())
            for i in range(start, start + n)]


def test_fifo_in_batches_and_removed_only_once_confirmed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.bin")
    spool.append_many(records(10))
    assert spool.depth == 10
    assert spool.read(4) == records(4)
    spool.append_many(records(3, start=10))
    assert spool.read(100) == records(9, start=4)
    assert spool.depth == 0
    assert spool.path.exists(), "removed before Kafka confirmed what was read"
    spool.commit()
    assert not spool.path.exists()


def test_a_kill_resends_from_the_confirmed_offset(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    spool = Spool(path)
    spool.append_many(records(10))
    spool.flush()
    assert spool.read(3) == records(3)
    spool.commit()  # the first 3 are acknowledged
    assert spool.read(4) == records(4, start=3)  # read and sent, not confirmed: then the kill
    spool.close()
    again = Spool(path)
    assert again.depth == 7
    assert again.read(100) == records(7, start=3)


def test_a_spool_of_the_old_layout_is_read_and_converted(tmp_path: Path) -> None:
    from producer.spool import encode_record

    path = tmp_path / "spool.bin"
    path.write_bytes(b"".join(encode_record(*r) for r in records(4)))
    spool = Spool(path)
    assert spool.depth == 4
    assert path.read_bytes().startswith(b"THSPOOL1")
    assert spool.read(10) == records(4)


def test_survives_a_restart_and_ignores_a_torn_record(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    spool = Spool(path)
    spool.append_many(records(5))
    spool.append("market.quotes", None, b"{}")
    spool.close()
    with path.open("ab") as handle:
        handle.write(b"\x00\x0dmarket")  # a record cut short by a crash
    again = Spool(path)
    assert again.depth == 6
    again.append_many(records(1, start=5))  # after the torn tail was cut off
    assert again.read(10) == [*records(5), ("market.quotes", None, b"{}"), *records(1, start=5)]


def test_rewrite_puts_records_in_front(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.bin")
    spool.append_many(records(5, start=2))
    spool.rewrite(records(2) + spool.unread())
    spool.close()
    assert Spool(spool.path).read(100) == records(7)


def test_one_process_per_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path / "spool.bin")
    with pytest.raises(SpoolBusy, match="in use by another producer"):
        Spool(tmp_path / "spool.bin")
    first.close()
    Spool(tmp_path / "spool.bin").close()
