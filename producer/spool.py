"""An append-only on-disk queue of Kafka messages, kept while the broker is unreachable.

Record layout: a 10-byte big-endian header (topic length u16, key length u32, value length u32)
followed by the topic (UTF-8), key and value bytes. Records are read back in the order written.
A truncated last record (the process died mid-write) is ignored with a warning.
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

Record = tuple[str, bytes | None, bytes]


def encode_record(topic: str, key: bytes | None, value: bytes) -> bytes:
    raw_topic = topic.encode("utf-8")
    raw_key = key or b""
    return _HEADER.pack(len(raw_topic), len(raw_key), len(value)) + raw_topic + raw_key + value


class SpoolBusy(ProducerError, RuntimeError):
    """Another process holds the spool."""


class Spool:
    """FIFO of (topic, key, value) records in one file; `depth` counts unread records.

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
        self._read_offset = 0
        self.depth = self._count_existing()

    def _count_existing(self) -> int:
        if not self.path.exists():
            return 0
        count = 0
        with self.path.open("rb") as handle:
            while self._read_one(handle) is not None:
                count += 1
        return count

    def append(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self._writer is None:
            self._writer = self.path.open("ab")
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
        """Up to `limit` unread records, oldest first; they count as read once returned."""
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
        if self.depth <= 0 or not out:
            self.depth = 0
            self.reset()
        return out

    def unread(self) -> list[Record]:
        """All unread records (for rewriting the spool at shutdown)."""
        return self.read(self.depth) if self.depth else []

    def reset(self) -> None:
        """Forget everything: the file is removed."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._read_offset = 0
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
            for topic, key, value in records:
                handle.write(encode_record(topic, key, value))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        self._read_offset = 0
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
