"""Checkpoints of the rule state on a compacted Kafka topic: one record per symbol, one manifest per
trades partition, each record far below Kafka's 1 MB message limit however many symbols there are.

Keys (the state topic has one partition, so records stay in the order they were written)::

    <group>|<trades topic>|<partition>           manifest  {"version": 2, "next_offset": X, ...}
    <group>|<trades topic>|<partition>|<symbol>  symbol    {"version": 2, "offset": Y, "state": {...}}
                                                           (a tombstone once the symbol is evicted)

A symbol record holds the symbol's state after every trade of its partition before offset Y. A round
starts at T, the partition's position at that moment, and takes the symbols changed since their last
record (`Engine.dirty`); it writes them a slice at a time between consumed batches, so a round over
20,000 symbols never stalls the stream, each with the partition's position at the moment it is
written (Y >= T), and only while no alert of the trades before Y is still unacknowledged (a restore
skips those trades: their alerts must be on the alerts topic). Once every record is acknowledged,
and every alert of the trades before T too, the manifest says next_offset = T. Every symbol's
state as of T is then known: a symbol not written in the round has not changed since its record;
one written in it is ahead, at Y, and a restore skips its trades before Y. A round that loses a
record to an error writes no manifest; its symbols go into the next round. Failures are metered,
never fatal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from alerts import metrics
from alerts.rules import Engine
from tickhouse.kafka import read_topic
from tickhouse.schemas import now_ms

log = logging.getLogger("tickhouse.alerts.checkpoints")

VERSION = 2
# Kafka's default message limit is 1 MB; a symbol whose state alone is larger (a price window of
# tens of thousands of trades) is written without state, so it restarts fresh instead of breaking
# the round.
MAX_RECORD_BYTES = 900_000

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def manifest_key(group: str, topic: str, partition: int) -> bytes:
    return f"{group}|{topic}|{partition}".encode()


def symbol_key(group: str, topic: str, partition: int, symbol: str) -> bytes:
    return f"{group}|{topic}|{partition}|{symbol}".encode()


@dataclass
class PartitionCheckpoint:
    """What a restore needs of one partition: where to start, and each symbol's state with the
    offset it covers (its trades before `covers[symbol]` are in the state)."""

    next_offset: int
    written_ms: int
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    covers: dict[str, int] = field(default_factory=dict)


def read(
    bootstrap: str, state_topic: str, group: str, topic: str, partitions: Iterable[int]
) -> dict[int, PartitionCheckpoint]:
    """The newest complete checkpoint of each of `partitions` (raises TopicReadError)."""
    return assemble(read_topic(bootstrap, state_topic), group, topic, partitions)


def assemble(
    records: Iterable[tuple[bytes | None, bytes | None]], group: str, topic: str, partitions: Iterable[int]
) -> dict[int, PartitionCheckpoint]:
    """The checkpoints of `partitions` from the state topic's records (key, value), in order."""
    wanted = {manifest_key(group, topic, p): p for p in partitions}
    latest: dict[bytes, bytes | None] = {}
    for key, value in records:
        if key is not None:
            latest[key] = value  # compaction keeps the last one; until it runs, so do we
    found: dict[int, PartitionCheckpoint] = {}
    newest: dict[str, int] = {}  # symbol -> written_ms of the record taken (a symbol may have moved)
    for key, value in latest.items():
        if value is None:
            continue
        if key in wanted:
            manifest = _record(value, key)
            if manifest is None:
                continue
            p = wanted[key]
            checkpoint = found.setdefault(p, PartitionCheckpoint(0, 0))
            checkpoint.next_offset = int(manifest["next_offset"])
            checkpoint.written_ms = int(manifest["written_ms"])
            if manifest.get("version") == 1:  # one message per partition, before 2
                for symbol, state in manifest.get("symbols", {}).items():
                    checkpoint.states[symbol] = state
            continue
        head, _, raw_symbol = key.rpartition(b"|")
        p_of = wanted.get(head)
        if p_of is None:
            continue
        record = _record(value, key)
        if record is None or record.get("state") is None:
            continue
        symbol = raw_symbol.decode()
        written = int(record.get("written_ms", 0))
        if newest.get(symbol, -1) > written:
            continue
        for other in found.values():
            other.states.pop(symbol, None)
            other.covers.pop(symbol, None)
        newest[symbol] = written
        checkpoint = found.setdefault(p_of, PartitionCheckpoint(-1, 0))
        checkpoint.states[symbol] = record["state"]
        checkpoint.covers[symbol] = int(record["offset"])
    # records without a manifest belong to a first round that never finished: unusable
    return {p: c for p, c in found.items() if c.next_offset >= 0 and c.written_ms > 0}


def _record(value: bytes, key: bytes) -> dict[str, Any] | None:
    try:
        data = _decode(value)
    except msgspec.DecodeError:
        log.warning("ignoring an unreadable checkpoint record %r", key[:200])
        return None
    if not isinstance(data, dict) or data.get("version") not in (1, VERSION):
        log.warning("ignoring a checkpoint record of an unknown version: %r", key[:200])
        return None
    return data


_DONE, _BLOCKED, _OUT_OF_TIME = object(), object(), object()


class _Round:
    __slots__ = (
        "acked",
        "failed",
        "manifest",
        "outstanding",
        "pending",
        "started",
        "target",
        "tombstones",
        "written",
    )

    def __init__(self, target: int, pending: list[str], tombstones: list[str]) -> None:
        self.target = target
        self.pending = pending  # symbols still to write, popped from the end
        self.tombstones = tombstones
        self.written: list[str] = []
        self.outstanding = 0  # produced, not acknowledged yet
        self.failed = False
        self.manifest = False  # produced
        self.acked = False  # the manifest is on the topic
        self.started = time.monotonic()

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        self.outstanding -= 1
        if err is not None:
            self.failed = True
            metrics.CHECKPOINT_FAILURES.labels("delivery").inc()
            log.warning("checkpoint record not written to %s: %s", msg.topic(), err)
        elif self.manifest and self.outstanding == 0:
            self.acked = True


class Checkpointer:
    """Writes the checkpoint rounds of one service instance (see the module docstring)."""

    def __init__(
        self,
        producer: Producer,
        state_topic: str,
        group: str,
        trades_topic: str,
        engine: Engine,
        position: Callable[[int], int | None],
        delivered_upto: Callable[[int], int],
        settle: Callable[[], object],
    ) -> None:
        self.producer = producer
        self.state_topic = state_topic
        self.group = group
        self.trades_topic = trades_topic
        self.engine = engine
        self.position = position  # partition -> next offset to consume (None: nothing consumed)
        self.delivered_upto = delivered_upto
        self.settle = settle
        self.rounds: dict[int, _Round] = {}
        self.manifested: dict[int, int] = {}  # partition -> next_offset of its newest manifest
        self.records = 0

    @property
    def busy(self) -> bool:
        return bool(self.rounds)

    def begin(self, partitions: Iterable[int]) -> None:
        """Start a round for each of `partitions` that has none running and something new."""
        positions = {p: self.position(p) for p in partitions if p not in self.rounds}
        free = {p for p, position in positions.items() if position is not None}
        if not free:
            return
        engine = self.engine
        states = engine.states
        dirty: dict[int, list[str]] = {}
        for symbol in engine.dirty:
            state = states.get(symbol)
            if state is not None and state.partition in free:
                dirty.setdefault(state.partition, []).append(symbol)
        gone: dict[int, list[str]] = {}
        for symbol, p in engine.evicted.items():
            if p in free:
                gone.setdefault(p, []).append(symbol)
        for p in free:
            pending, tombstones = dirty.get(p, []), gone.get(p, [])
            position = positions[p]
            assert position is not None
            if not pending and not tombstones and self.manifested.get(p) == position:
                continue
            engine.dirty.difference_update(pending)
            for symbol in tombstones:
                del engine.evicted[symbol]
            self.rounds[p] = _Round(position, pending, tombstones)

    def work(self, until: float) -> bool:
        """Write pending records until `time.perf_counter()` passes `until`, then produce the
        manifest of every round whose records are all on the topic. True when it stopped for time
        with records left to write now (rather than waiting for acknowledgements)."""
        for p, rnd in list(self.rounds.items()):
            step = self._write(p, rnd, until)
            if step is _OUT_OF_TIME:
                return True
            if step is _BLOCKED or rnd.outstanding or rnd.pending or rnd.tombstones:
                continue
            if rnd.failed:
                self._abandon(p, rnd)
            elif rnd.acked:
                del self.rounds[p]
                self.manifested[p] = rnd.target
                metrics.CHECKPOINT_SECONDS.observe(time.monotonic() - rnd.started)
                metrics.LAST_CHECKPOINT.labels(str(p)).set(time.time())
            elif not rnd.manifest and self.delivered_upto(p) >= rnd.target:
                self._produce_manifest(p, rnd)
        return False

    def _write(self, p: int, rnd: _Round, until: float) -> object:
        """Produce the round's records: _DONE, _BLOCKED (alerts in flight, or the producer's queue
        is full) or _OUT_OF_TIME."""
        produce = self.producer.produce
        topic = self.state_topic
        while rnd.tombstones:
            symbol = rnd.tombstones[-1]
            if not self._produce(symbol_key(self.group, self.trades_topic, p, symbol), None, rnd):
                return _BLOCKED
            rnd.tombstones.pop()
            metrics.CHECKPOINT_RECORDS.labels("tombstone").inc()
        states = self.engine.states
        position = self.position(p)
        assert position is not None  # a round starts at a position, and ends when its partition goes
        if rnd.pending and self.delivered_upto(p) < position:
            # A record at `position` says every trade before it is done, alerts included (a restore
            # skips them). While alerts are in flight, wait: a second at most, then flush.
            if time.monotonic() - rnd.started < 1.0:
                return _BLOCKED
            self.settle()
            if self.delivered_upto(p) < position:
                return _BLOCKED
        written_ms = now_ms()
        n = 0
        while rnd.pending:
            n += 1
            if n % 16 == 0 and time.perf_counter() > until:
                return _OUT_OF_TIME
            symbol = rnd.pending[-1]
            state = states.get(symbol)
            if state is None or state.partition != p:
                rnd.pending.pop()  # evicted or moved since: a tombstone follows in a later round
                continue
            value = _encode(
                {"version": VERSION, "offset": position, "written_ms": written_ms, "state": state.to_dict()}
            )
            if len(value) > MAX_RECORD_BYTES:
                metrics.CHECKPOINT_FAILURES.labels("too_large").inc()
                log.warning(
                    "state of %s is %d bytes, over the %d-byte record limit: checkpointed without "
                    "state (a restore starts it fresh)",
                    symbol,
                    len(value),
                    MAX_RECORD_BYTES,
                )
                value = _encode(
                    {"version": VERSION, "offset": position, "written_ms": written_ms, "state": None}
                )
            try:
                produce(
                    topic,
                    key=symbol_key(self.group, self.trades_topic, p, symbol),
                    value=value,
                    on_delivery=rnd.delivered,
                )
            except BufferError:
                self.producer.poll(0)
                return _BLOCKED
            except KafkaException as err:
                metrics.CHECKPOINT_FAILURES.labels("produce").inc()
                log.warning("checkpoint record for %s not produced: %s", symbol, err)
                rnd.failed = True
                rnd.pending.pop()
                rnd.written.append(symbol)
                continue
            rnd.outstanding += 1
            rnd.pending.pop()
            rnd.written.append(symbol)
            self.records += 1
            metrics.CHECKPOINT_RECORDS.labels("symbol").inc()
        return _DONE

    def _produce(self, key: bytes, value: bytes | None, rnd: _Round) -> bool:
        try:
            self.producer.produce(self.state_topic, key=key, value=value, on_delivery=rnd.delivered)
        except BufferError:
            self.producer.poll(0)
            return False
        except KafkaException as err:
            metrics.CHECKPOINT_FAILURES.labels("produce").inc()
            log.warning("checkpoint record not produced: %s", err)
            rnd.failed = True
            return True
        rnd.outstanding += 1
        return True

    def _produce_manifest(self, p: int, rnd: _Round) -> None:
        value = _encode(
            {
                "version": VERSION,
                "group": self.group,
                "topic": self.trades_topic,
                "partition": p,
                "next_offset": rnd.target,
                "written_ms": now_ms(),
            }
        )
        rnd.manifest = True
        if self._produce(manifest_key(self.group, self.trades_topic, p), value, rnd):
            metrics.CHECKPOINT_RECORDS.labels("manifest").inc()
        else:
            rnd.manifest = False  # queue full: again on the next call

    def _abandon(self, p: int, rnd: _Round) -> None:
        """A round that lost a record: its symbols go into the next round, no manifest."""
        del self.rounds[p]
        states = self.engine.states
        for symbol in (*rnd.written, *rnd.pending):
            state = states.get(symbol)
            if state is not None and state.partition == p:
                self.engine.dirty.add(symbol)

    def complete(self, partitions: Iterable[int], timeout: float = 30.0) -> bool:
        """Checkpoint `partitions` at their current positions and wait for the manifests (on
        rebalance and shutdown, after the alerts are flushed). False when it ran out of time."""
        wanted = set(partitions)
        for p in wanted & set(self.rounds):
            self._abandon(p, self.rounds[p])  # restart at the current position
        self.begin(wanted)
        deadline = time.monotonic() + timeout
        while wanted & set(self.rounds):
            if time.monotonic() >= deadline:
                log.warning("checkpoint of partitions %s did not finish in %.0f s", sorted(wanted), timeout)
                return False
            self.work(time.perf_counter() + 0.05)
            self.producer.poll(0.005)
        return True

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self.rounds.pop(p, None)
            self.manifested.pop(p, None)

    def restored(self, p: int, next_offset: int) -> None:
        self.manifested[p] = next_offset
