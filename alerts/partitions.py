"""The trades partitions an alert service instance owns: one `OwnedPartition` record each, made when
the group assigns the partition (restored from its checkpoint), committed as its alerts are
acknowledged, dropped when the partition is revoked or lost.

Where a partition starts (see alerts/service.py for the whole protocol):

1. with a checkpoint, at its manifest's offset, skipping per symbol the trades the symbol's record
   already covers; without one, `replay_seconds` back from the committed offset, to rebuild state;
   with neither, at the beginning or the end of the partition (`from_beginning`);
2. trades before the committed offset are replayed silently (`live_from`: their alerts were
   published before);
3. alerts from `live_from` on are published, except those whose id is already on the alerts topic
   (published after the last commit, before a crash): `assign` returns those ids.

A checkpoint or committed offset beyond the end of the log belongs to an older incarnation of the
topic (deleted and re-created) and is ignored: following it would silence every alert.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from alerts import checkpoints, delivery, metrics
from alerts.errors import AlertsError
from alerts.rules import Engine
from tickhouse import kafka
from tickhouse.schemas import now_ms

log = logging.getLogger("tickhouse.alerts")

# alerts found on the alerts topic are looked for this far before the oldest checkpoint restored
PUBLISHED_MARGIN_MS = 60_000


@dataclass(slots=True, eq=False)
class OwnedPartition:
    """Where this instance is in one trades partition it owns."""

    number: int
    live_from: int = 0  # the first offset whose alerts are published (before it: replayed silently)
    next_offset: int | None = None  # the next offset to consume; None until a trade is consumed
    committed: int | None = None  # the offset last committed; None: unknown, commit again
    # symbol -> offset its restored state covers: the symbol's trades before it are skipped
    skip: dict[str, int] = field(default_factory=dict)
    # trade offset -> its alerts produced but not yet acknowledged by the broker
    inflight: dict[int, int] = field(default_factory=dict)

    def delivered_upto(self) -> int:
        """Every alert of this partition's trades before this offset is on the alerts topic."""
        position = self.next_offset or 0
        inflight = self.inflight
        return min(min(inflight), position) if inflight else position


@dataclass(slots=True)
class PartitionsConfig:
    bootstrap_servers: str
    trades_topic: str
    alerts_topic: str
    state_topic: str
    group: str
    from_beginning: bool
    replay_seconds: float
    dedupe_lookback_seconds: float


class Partitions:
    """Assign (restore), commit and forget the partitions an instance owns; `owned` holds the
    records, keyed by partition number."""

    def __init__(self, config: PartitionsConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.owned: dict[int, OwnedPartition] = {}
        self._consumer: Consumer | None = None
        self._checkpointer: checkpoints.Checkpointer | None = None

    def bind(self, consumer: Consumer, checkpointer: checkpoints.Checkpointer) -> None:
        """The consumer that commits, and the checkpoint writer told of restores and revocations."""
        self._consumer = consumer
        self._checkpointer = checkpointer

    # --- what the other parts ask -----------------------------------------------------------

    def position(self, partition: int) -> int | None:
        """The next offset to consume of `partition`; None before its first trade (or not owned)."""
        owned = self.owned.get(partition)
        return None if owned is None else owned.next_offset

    def delivered_upto(self, partition: int) -> int:
        owned = self.owned.get(partition)
        return 0 if owned is None else owned.delivered_upto()

    def prune_skips(self) -> None:
        """Drop the skip offsets of partitions consumed past all of them."""
        for owned in self.owned.values():
            if owned.skip and owned.next_offset is not None and owned.next_offset > max(owned.skip.values()):
                owned.skip = {}

    # --- commits -----------------------------------------------------------------------------

    def commit(self, synchronous: bool, partitions: Iterable[int] | None = None) -> None:
        """Commit, per partition, up to the first trade whose alert is not yet acknowledged."""
        consumer = self._consumer
        assert consumer is not None
        if partitions is None:
            records: Iterable[OwnedPartition] = self.owned.values()
        else:
            records = [self.owned[p] for p in partitions if p in self.owned]
        topic = self.config.trades_topic
        pending: list[tuple[OwnedPartition, int]] = []
        for owned in records:
            if owned.next_offset is None:
                continue
            upto = owned.delivered_upto()
            if upto != owned.committed:
                pending.append((owned, upto))
        if not pending:
            return
        offsets = [TopicPartition(topic, owned.number, upto) for owned, upto in pending]
        try:
            if synchronous:
                consumer.commit(offsets=offsets, asynchronous=False)
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as err:
            log.warning("offset commit failed: %s", err)
            return
        for owned, upto in pending:
            owned.committed = upto

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """An asynchronous commit that failed (its group's coordinator moved to another broker, say)
        is made again at the next tick: without this, a partition with no new trades would keep
        its old committed offset until the next trade."""
        for tp in partitions:
            if (err is not None or tp.error is not None) and tp.topic == self.config.trades_topic:
                owned = self.owned.get(tp.partition)
                if owned is not None and owned.committed == tp.offset:
                    owned.committed = None
                log.warning("offset commit of partition %d failed: %s; retrying", tp.partition,
                            err or tp.error)

    # --- rebalance ---------------------------------------------------------------------------

    def assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> set[str]:
        """Own `partitions`: restore each and assign it at its starting offset. Returns the ids of
        alerts already on the alerts topic that a replay would fire again."""
        try:
            return self._restore(consumer, partitions)
        except Exception:
            log.exception("restoring state failed; starting these partitions with empty state")
            # whatever the restore had set up for them is partial: forget it, then own the
            # partitions from their committed offsets (their alerts are published, so a trade
            # replayed since the last commit may alert again: at least once on this path), and
            # keep committing them
            numbers = {tp.partition for tp in partitions}
            self.forget(numbers)
            for p in numbers:
                self.owned[p] = OwnedPartition(p)
            consumer.assign(partitions)
            return set()
        finally:
            metrics.PARTITIONS.set(len(self.owned))

    def _restore(self, consumer: Consumer, partitions: list[TopicPartition]) -> set[str]:
        cfg = self.config
        numbers = {tp.partition for tp in partitions}
        committed = {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
        try:
            found = checkpoints.read(
                cfg.bootstrap_servers, cfg.state_topic, cfg.group, cfg.trades_topic, numbers
            )
        except (AlertsError, kafka.TopicReadError) as err:
            log.warning("could not read the checkpoints (%s); rebuilding state from the topic", err)
            found = {}
        now = now_ms()
        assign: list[TopicPartition] = []
        oldest_checkpoint = now
        for tp in partitions:
            p = tp.partition
            done = committed.get(p, -1)
            checkpoint = found.get(p)
            _low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, p), timeout=10)
            if checkpoint is not None and checkpoint.next_offset > high:
                log.warning(
                    "partition %d: ignoring checkpoint at offset %d beyond the log end %d "
                    "(was the topic re-created?)",
                    p,
                    checkpoint.next_offset,
                    high,
                )
                checkpoint = None
            if done > high:
                log.warning("partition %d: ignoring committed offset %d beyond the log end", p, done)
                done = -1
            owned = OwnedPartition(p, committed=done if done >= 0 else None)
            if checkpoint is not None:
                self.engine.restore(checkpoint.states)
                start = checkpoint.next_offset
                owned.skip = {s: y for s, y in checkpoint.covers.items() if y > start}
                assert self._checkpointer is not None
                self._checkpointer.restored(p, start)
                owned.live_from = max(done, start)
                oldest_checkpoint = min(oldest_checkpoint, checkpoint.written_ms)
                how = f"checkpoint at offset {start} ({len(checkpoint.states)} symbols)"
            elif done >= 0:
                since = TopicPartition(tp.topic, p, now - int(cfg.replay_seconds * 1000))
                found_offset = consumer.offsets_for_times([since], timeout=10)[0].offset
                start = done if found_offset < 0 else min(found_offset, done)
                owned.live_from = done
                oldest_checkpoint = min(oldest_checkpoint, now - int(cfg.dedupe_lookback_seconds * 1000))
                how = f"no checkpoint; re-reading from offset {start}"
            else:
                start = OFFSET_BEGINNING if cfg.from_beginning else OFFSET_END
                how = "no checkpoint, no committed offset; " + (
                    "from the beginning" if cfg.from_beginning else "from the end"
                )
                if cfg.from_beginning:
                    oldest_checkpoint = min(oldest_checkpoint, now - int(cfg.dedupe_lookback_seconds * 1000))
            self.owned[p] = owned
            assign.append(TopicPartition(tp.topic, p, start))
            log.info(
                "partition %d: %s, alerts published from offset %s",
                p,
                how,
                owned.live_from if owned.live_from else "start",
            )
        published = delivery.published_ids(
            cfg.bootstrap_servers,
            cfg.alerts_topic,
            cfg.trades_topic,
            {p: self.owned[p].live_from for p in numbers},
            oldest_checkpoint - PUBLISHED_MARGIN_MS,
        )
        if published:
            log.info("%d alerts already on %s will not be re-sent", len(published), cfg.alerts_topic)
        metrics.SYMBOLS.set(len(self.engine.states))
        consumer.assign(assign)
        return published

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop `partitions`: their records, their symbols' state, their checkpoint rounds."""
        numbers = set(partitions)
        self.engine.drop(numbers)
        if self._checkpointer is not None:
            self._checkpointer.forget(numbers)
        for p in numbers:
            self.owned.pop(p, None)
        metrics.PARTITIONS.set(len(self.owned))
