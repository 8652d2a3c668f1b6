"""An append-only on-disk queue of Kafka messages, kept while the broker is unreachable.

File layout: a 16-byte file header (the magic `THSPOOL1`, then the confirmed offset: u64
big-endian, the byte position up to which Kafka has acknowledged every record), then the records.
Record layout: a 10-byte big-endian header (topic length u16, key length u32, value length u32)
followed by the topic (UTF-8), key and value bytes. Records are read back in the order written.

Reading a record does not remove it: the publisher hands a chunk to Kafka, waits until the broker
has acknowledged all of it, and only then calls `commit()`, which moves the confirmed offset (one
8-byte in-place write, fsync'd). The file is removed once every record in it is confirmed. So a
SIGKILL at any moment loses nothing; the next run resends from the confirmed offset (a chunk that
was acknowledged but not yet committed is sent again: at most one chunk of duplicates per kill).

A truncated last record (the process died mid-write) is ignored with a warning and cut off, so that
what is appended later is read correctly. A spool written before the file header existed (it starts
with a record) is read from its first byte and rewritten in the current layout.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import IO, BinaryIO

from producer.errors import ProducerError

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">HII")
_MAGIC = b"THSPOOL1"
_FILE_HEADER = struct.Struct(">8sQ")

Record = tuple[str, bytes | None, bytes]


def encode_record(topic: str, key: bytes | None, value: bytes) -> bytes:
    raw_topic = topic.encode("utf-8")
    raw_key = key or b""
    return _HEADER.pack(len(raw_topic), len(raw_key), len(value)) + raw_topic + raw_key + value


class SpoolBusy(ProducerError, RuntimeError):
    """Another process holds the spool."""


class Spool:
    """FIFO of (topic, key, value) records in one file; `depth` counts unread records.

    `read()` hands records out; `commit()` says every record handed out so far was acknowledged
    by Kafka (moves the confirmed offset on disk, removes the file once all is confirmed).
    One process at a time: an exclusive lock on `<path>.lock` is held until `close()`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock: IO[bytes] | None = path.with_name(path.name + ".lock").open("wb")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise SpoolBusy(
                f"spool {path} is in use by another producer; give this one its own with --spool"
            ) from None
        self._writer: BinaryIO | None = None
        self._read_offset = _FILE_HEADER.size
        self._confirmed = _FILE_HEADER.size
        self.depth = self._open_existing()

    def _open_existing(self) -> int:
        """Count the unconfirmed records; cut a torn tail; convert a spool of the old layout."""
        if not self.path.exists():
            return 0
        with self.path.open("rb") as handle:
            head = handle.read(_FILE_HEADER.size)
            legacy = len(head) < _FILE_HEADER.size or head[:8] != _MAGIC
            confirmed = _FILE_HEADER.size if legacy else max(_FILE_HEADER.unpack(head)[1], _FILE_HEADER.size)
            handle.seek(0 if legacy else confirmed)
            records: list[Record] = []
            while (record := self._read_one(handle)) is not None:
                records.append(record)
            end = handle.tell()
        if legacy:
            self.rewrite(records)
            return len(records)
        if end < self.path.stat().st_size:
            with self.path.open("r+b") as handle:
                handle.truncate(end)  # the torn tail: later appends must start on a record boundary
        self._confirmed = self._read_offset = confirmed
        if not records:
            self.reset()
        return len(records)

    def append(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self._writer is None:
            fresh = not self.path.exists()
            self._writer = self.path.open("ab")
            if fresh or self._writer.tell() == 0:
                self._writer.write(_FILE_HEADER.pack(_MAGIC, _FILE_HEADER.size))
                self._read_offset = self._confirmed = _FILE_HEADER.size
        self._writer.write(encode_record(topic, key, value))
        self.depth += 1

    def append_many(self, records: Iterable[Record]) -> None:
        for topic, key, value in records:
            self.append(topic, key, value)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            os.fsync(self._writer.fileno())

    def read(self, limit: int) -> list[Record]:
        """Up to `limit` unread records, oldest first; they count as read once returned (they stay
        on disk until `commit()`)."""
        if self.depth == 0:
            return []
        if self._writer is not None:
            self._writer.flush()
        out: list[Record] = []
        with self.path.open("rb") as handle:
            handle.seek(self._read_offset)
            while len(out) < limit:
                record = self._read_one(handle)
                if record is None:
                    break
                out.append(record)
            self._read_offset = handle.tell()
        self.depth -= len(out)
        if not out:
            self.depth = 0
        return out

    @property
    def uncommitted(self) -> bool:
        """Records were read that `commit()` has not yet confirmed."""
        return self._read_offset > self._confirmed

    def commit(self) -> None:
        """Every record read so far is acknowledged by Kafka: record that on disk (fsync'd), and
        remove the file when nothing unread is left in it."""
        if self._read_offset <= self._confirmed:
            return
        if self.depth == 0:
            self.reset()
            return
        # Appended records must be on disk before the offset that skips what precedes them is.
        self.flush()
        with self.path.open("r+b") as handle:
            handle.seek(len(_MAGIC))
            handle.write(struct.pack(">Q", self._read_offset))
            handle.flush()
            os.fsync(handle.fileno())
        self._confirmed = self._read_offset

    def unread(self) -> list[Record]:
        """All unread records (for rewriting the spool at shutdown)."""
        return self.read(self.depth) if self.depth else []

    def reset(self) -> None:
        """Forget everything: the file is removed."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._read_offset = self._confirmed = _FILE_HEADER.size
        self.depth = 0
        self.path.unlink(missing_ok=True)

    def rewrite(self, records: list[Record]) -> None:
        """Replace the spool's content by `records` atomically (used at shutdown)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not records:
            self.reset()
            return
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("wb") as handle:
            handle.write(_FILE_HEADER.pack(_MAGIC, _FILE_HEADER.size))
            for topic, key, value in records:
                handle.write(encode_record(topic, key, value))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        self._read_offset = self._confirmed = _FILE_HEADER.size
        self.depth = len(records)

    def close(self) -> None:
        if self._writer is not None:
            self.flush()
            self._writer.close()
            self._writer = None
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def _read_one(self, handle: BinaryIO) -> Record | None:
        start = handle.tell()
        header = handle.read(_HEADER.size)
        if not header:
            return None
        if len(header) < _HEADER.size:
            log.warning("spool %s: ignoring a truncated record at byte %d", self.path, start)
            handle.seek(start)
            return None
        topic_len, key_len, value_len = _HEADER.unpack(header)
        body = handle.read(topic_len + key_len + value_len)
        if len(body) < topic_len + key_len + value_len:
            log.warning("spool %s: ignoring a truncated record at byte %d", self.path, start)
            handle.seek(start)
            return None
        topic = body[:topic_len].decode("utf-8")
        key = body[topic_len : topic_len + key_len] or None
        value = body[topic_len + key_len :]
        return topic, key, value
