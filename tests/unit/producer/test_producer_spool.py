"""The on-disk spool: FIFO, durable across instances, tolerant of a torn last record."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.spool import Spool, SpoolBusy

pytestmark = pytest.mark.unit


def records(n: int, start: int = 0) -> list[tuple[str, bytes | None, bytes]]:
    return [("market.trades", f"S{i % 3}".encode(), f'{{"n":{i}}}'.encode())
            for i in range(start, start + n)]


def test_fifo_in_batches_and_removed_when_empty(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.bin")
    spool.append_many(records(10))
    assert spool.depth == 10
    assert spool.read(4) == records(4)
    spool.append_many(records(3, start=10))
    assert spool.read(100) == records(9, start=4)
    assert spool.depth == 0
    assert not spool.path.exists()


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
    assert again.read(10) == [*records(5), ("market.quotes", None, b"{}")]


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
