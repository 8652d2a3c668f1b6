"""The producer's identity for its trades: a producer id and a sequence number per trade.

Each trade message gets two extra JSON keys (docs/interfaces/kafka-messages.md), `producer_id` and
`producer_seq`, before it is first handed to Kafka. They travel inside the message bytes, so a
message resent from the spool after a crash carries the same identity as its first copy, and the
warehouse keeps only the first load of each (producer_id, producer_seq).

Both are kept in a small file beside the spool (`<spool>.identity`), guarded by the spool's lock:
the producer id is made once (a random UUID, hex) and kept for the life of the spool; sequence
numbers are reserved in blocks (the file holds the end of the reserved block, fsync'd before any
number of it is used), so a restart after SIGKILL skips what was left of the block and never
hands out a number twice. Numbers only grow, with gaps after a restart.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from producer.errors import ProducerError

# numbers reserved per write of the identity file: one fsync per this many trades
SEQ_BLOCK = 1_000_000


class IdentityFileError(ProducerError, ValueError):
    """The identity file beside the spool is unreadable."""


def identity_path(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name + ".identity")


class ProducerIdentity:
    """The producer id of a spool and the next sequence number; `take()` hands numbers out."""

    def __init__(self, path: Path, block: int = SEQ_BLOCK) -> None:
        self.path = path
        self._block = block
        if path.exists():
            try:
                state = json.loads(path.read_text(encoding="utf-8"))
                self.producer_id = str(state["producer_id"])
                self._next = int(state["reserved_until"])
            except (ValueError, KeyError, TypeError) as err:
                raise IdentityFileError(
                    f"producer identity file {path} is unreadable ({err}); remove it only if the "
                    "spool beside it is empty (a new id makes its resends count as new trades)"
                ) from None
        else:
            self.producer_id = uuid.uuid4().hex
            self._next = 0
        self._reserved_until = self._next
        self._reserve()

    @property
    def next_seq(self) -> int:
        return self._next

    def take(self, count: int) -> int:
        """Reserve `count` consecutive sequence numbers; returns the first."""
        first = self._next
        self._next += count
        if self._next > self._reserved_until:
            self._reserve()
        return first

    def _reserve(self) -> None:
        """Write (fsync'd) a reservation that covers `_next` plus one block, atomically."""
        until = self._next + self._block
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump({"producer_id": self.producer_id, "reserved_until": until}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
        self._reserved_until = until


def stamp(value: bytes, tail: bytes) -> bytes:
    """The JSON object `value` with the identity keys of `tail` (`,"producer_id":…}`) appended."""
    return value[:-1] + tail if value.endswith(b"}") else value


def identity_tail(producer_id: str, seq: int) -> bytes:
    return b',"producer_id":"%s","producer_seq":%d}' % (producer_id.encode("ascii"), seq)
