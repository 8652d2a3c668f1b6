"""One micro-batch drain of every topic into the raw tables, exactly once.

The order of a run, and why:

1. the target (`drain.targets`, WAREHOUSE) opens one transaction, claims the consumer group
   (PostgreSQL: an advisory lock) and reads the next offsets it stored (the source of truth);
   every partition is assigned from there;
2. consume up to `max_messages` or `max_seconds`, stopping earlier once every partition is at its
   end: end-of-log, or the high watermark the broker reported with the partition's first fetch of
   this run (under a steady stream no partition stays at end-of-log for long, and a run chasing
   the tail would hold its rows back from the marts until `max_seconds`); validating each
   message into a typed row in the same pass (`drain.batches`) and streaming the rows into the
   target's loader (PostgreSQL: COPY into the raw table or raw.quarantine; Snowflake: staging
   tables);
3. the target writes the next offsets and the run's load stats in the same transaction and
   commits (the crash windows: mid-load, after the load before the commit, after the commit
   before Kafka is told);
4. only then commit the offsets to Kafka (monitoring only: a crash before this loses nothing,
   the next run starts from the warehouse's offsets);
5. the target's steps after the commit (PostgreSQL: retention, then the Great Expectations
   checks of the rows just loaded), which can report but no longer lose anything.

A partition whose log the broker now ends (or restarts) below the offset the warehouse has already
loaded up to was rewound: the topic was deleted and re-created, or the broker lost data. Its new
messages would reuse coordinates the raw tables already hold, so the run loads nothing from it,
drains and commits everything else, and then raises `TopicRewound`, which says what happened and
what to do (`tickhouse drain --reset-topic`, or a new topic name). Every later run does the same
until then, without touching that partition.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from drain.batches import BatchParser, BatchResult, Item
from drain.consumer import KafkaSource
from drain.errors import DataQualityError, DrainError, TopicRewound, rewound_message
from drain.options import DrainOptions
from drain.stats import DrainResult, Position, Rewound, TopicStats
from drain.targets import open_target
from drain.targets.protocol import AfterCommit, Loader
from tickhouse.config import Settings

log = logging.getLogger(__name__)

_BATCH = 5000
_TIMESTAMP_NOT_AVAILABLE = 0


def drain_once(
    settings: Settings,
    options: DrainOptions,
    defer: Callable[[Callable[[], None]], object] | None = None,
) -> DrainResult:
    """Drain every configured topic once; see the module docstring for the guarantees.

    `defer`: when given, the steps after the commit (retention, data-quality checks) are handed
    to it as one callable instead of running before this returns (`drain.loop` runs them in a
    worker thread, off the way of the next drain); the callable raises `DataQualityError` as
    this function would.
    """
    run_id = uuid.uuid4().hex
    started_at = datetime.now(UTC)
    deadline = time.monotonic() + options.max_seconds
    stats = {topic: TopicStats(topic, kind) for topic, kind in options.topics.items()}

    target = open_target(settings, options)
    source: KafkaSource | None = None
    loader: Loader | None = None
    rewound: Rewound = {}
    try:
        start_offsets = target.start(options.group, options.topics)
        source = KafkaSource(
            settings.kafka_bootstrap_servers, options.group, options.topics, start_offsets
        )
        source.refresh_partitions()
        loader = target.loader()
        parser = BatchParser(options.parse_workers, target.encoding, _into(loader, stats))
        positions = _consume(source, parser, options, stats, start_offsets, deadline, rewound)
        loader.finish()

        _record_lag(source, stats, positions, start_offsets)
        finished_at = datetime.now(UTC)
        target.commit(
            options.group,
            positions,
            start_offsets,
            run_id=run_id,
            started_at=started_at,
            finished_at=finished_at,
            stats=list(stats.values()),
        )
        source.commit(positions)
    except BaseException as exc:
        if loader is not None:
            loader.abort(type(exc), exc, exc.__traceback__)
        _quietly(target.rollback)
        raise
    finally:
        if source is not None:
            _quietly(source.close)
        target.close()

    result = DrainResult(
        run_id=run_id,
        started_at=started_at,
        finished_at=finished_at,
        topics=list(stats.values()),
        partitions_created=loader.partitions_created,
        rewound=rewound,
    )
    _log_summary(result)
    steps = target.after_commit()
    if defer is not None:
        if steps:
            defer(lambda: _run_steps(steps, result))
    else:
        _after_commit(steps, result, rewound, options)
    if rewound:
        raise TopicRewound(rewound_message(rewound, options.group), result)
    return result


def _run_steps(steps: Sequence[AfterCommit], result: DrainResult) -> None:
    for step in steps:
        step(result)


def _after_commit(
    steps: Sequence[AfterCommit], result: DrainResult, rewound: Rewound,
    options: DrainOptions,
) -> None:
    try:
        _run_steps(steps, result)
    except DataQualityError as err:
        if rewound:  # the rewound topic is the one that needs a person first
            raise TopicRewound(f"{rewound_message(rewound, options.group)} Also: {err}", result) from err
        raise


def _into(loader: Loader, stats: dict[str, TopicStats]) -> Callable[[BatchResult], None]:
    """Where each parsed batch goes: into the loader, its counts into the topic's stats."""

    def apply(result: BatchResult) -> None:
        loader.add(result)
        st = stats[result.topic]
        st.quarantined += len(result.rejected)
        if result.min_event_ms is not None and (
            st.min_event_ms is None or result.min_event_ms < st.min_event_ms
        ):
            st.min_event_ms = result.min_event_ms
        if result.max_event_ms is not None and (
            st.max_event_ms is None or result.max_event_ms > st.max_event_ms
        ):
            st.max_event_ms = result.max_event_ms

    return apply


def _consume(
    source: KafkaSource,
    parser: BatchParser,
    options: DrainOptions,
    stats: dict[str, TopicStats],
    start_offsets: dict[Position, int],
    deadline: float,
    rewound: Rewound,
) -> dict[Position, int]:
    """The hot loop: consume and track offsets here, validate + format in `parse_batch`.

    Returns the next offset per partition; fills `rewound` with the partitions it stopped because
    the broker's log is behind the warehouse (see the module docstring). Kept lean on purpose (it
    runs once per message): per-topic state in locals, one batch per topic per `consume` call.
    """
    at_end = source.at_end

    def stop(position: Position, loaded: int, broker: int) -> None:
        rewound[position] = (loaded, broker)
        source.stop(position)

    items: dict[str, list[Item]] = {topic: [] for topic in stats}
    # topic -> partition -> next offset expected
    nexts: dict[str, dict[int, int]] = {topic: {} for topic in stats}
    # the end this run drains each partition to: its high watermark at the first fetch
    ends: dict[Position, int] = {}

    try:
        remaining = options.max_messages
        while remaining > 0 and time.monotonic() < deadline:
            if source.refresh_due(options.partition_refresh_seconds):
                source.refresh_partitions()
            timeout = max(0.0, min(0.25, deadline - time.monotonic()))
            messages = source.consume(min(_BATCH, remaining), timeout)
            if not messages:
                # before calling it done, look once more for partitions added since the last look
                if source.caught_up() and not source.refresh_partitions():
                    break
                continue
            for msg in messages:
                error = msg.error()
                if error is not None:
                    if source.is_end_of_partition(error):
                        position: Position = (msg.topic(), msg.partition())  # type: ignore[assignment]
                        end = msg.offset()
                        if position not in rewound and end is not None:
                            loaded = nexts[position[0]].get(position[1])
                            if loaded is None:
                                loaded = start_offsets.get(position)
                            if loaded is not None and end < loaded:
                                stop(position, loaded, end)
                                continue
                        at_end.add(position)
                        continue
                    if error.fatal():
                        raise DrainError(f"Kafka consumer failed: {error}")
                    log.warning("Kafka reported %s on %s[%s]; continuing", error, msg.topic(),
                                msg.partition())
                    continue
                # a message without an error always has these (the stubs say "| None")
                topic: str = msg.topic()  # type: ignore[assignment]
                partition: int = msg.partition()  # type: ignore[assignment]
                offset: int = msg.offset()  # type: ignore[assignment]
                partition_next = nexts[topic]
                expected = partition_next.get(partition)
                if expected is None:
                    if rewound and (topic, partition) in rewound:
                        continue  # fetched before the partition was stopped
                    loaded = start_offsets.get((topic, partition))
                    if loaded is not None and offset < loaded:
                        # the broker reset a fetch position beyond its log to the log's start
                        stop((topic, partition), loaded, offset)
                        continue
                    st = stats[topic]
                    st.offsets[partition] = [offset, offset]
                    end = source.end_of_first_fetch(topic, partition)
                    if end is not None:
                        ends[(topic, partition)] = end
                    expected = start_offsets.get((topic, partition))
                    if expected is None:
                        expected = offset
                    else:
                        st.resumed_from[partition] = expected
                if offset != expected:
                    # deleted by Kafka retention before it was drained, or transaction markers
                    stats[topic].gaps += offset - expected
                partition_next[partition] = offset + 1
                if at_end:
                    at_end.discard((topic, partition))
                ts_type, kafka_ts = msg.timestamp()
                items[topic].append(
                    (
                        msg.value(),
                        partition,
                        offset,
                        None if ts_type == _TIMESTAMP_NOT_AVAILABLE else kafka_ts,
                        msg.key(),
                    )
                )
            for topic, batch in items.items():
                if batch:
                    stats[topic].consumed += len(batch)
                    remaining -= len(batch)
                    parser.submit(stats[topic].kind, topic, batch)
                    items[topic] = []
            for position in [p for p, end in ends.items() if nexts[p[0]].get(p[1], -1) >= end]:
                del ends[position]
                source.reach(position)
            if source.caught_up() and not source.refresh_partitions():
                break
        parser.drain()
    finally:
        parser.close()

    positions: dict[Position, int] = {}
    for topic, partition_next in nexts.items():
        st = stats[topic]
        st.loaded = st.consumed - st.quarantined
        for partition, nxt in partition_next.items():
            positions[(topic, partition)] = nxt
            st.offsets[partition][1] = nxt - 1
    return positions


def _record_lag(
    source: KafkaSource,
    stats: dict[str, TopicStats],
    positions: dict[Position, int],
    start_offsets: dict[Position, int],
) -> None:
    try:
        marks = source.watermarks()
    except Exception as err:  # lag is for monitoring; never fail a load over it
        log.warning("could not read watermarks, lag unknown: %s", err)
        return
    for st in stats.values():
        if st.topic not in source.missing_topics:
            st.lag_after = 0
    for position, (low, high) in marks.items():
        nxt = positions.get(position, start_offsets.get(position, low))
        st = stats[position[0]]
        st.lag_after = (st.lag_after or 0) + max(0, high - max(nxt, low))


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as err:
        log.debug("ignored during cleanup: %s", err)


def _log_summary(result: DrainResult) -> None:
    for s in result.topics:
        log.info(
            "drain %s %s -> %s: consumed=%d loaded=%d quarantined=%d lag_after=%s "
            "event_time=[%s, %s] duration=%.2fs",
            result.run_id[:8], s.topic, s.table, s.consumed, s.loaded, s.quarantined,
            s.lag_after, s.min_event_time, s.max_event_time, result.duration_s,
        )
        if s.gaps:
            log.warning(
                "%s: %d offset(s) skipped: Kafka deleted them before they were drained "
                "(retention) or they are transaction markers",
                s.topic, s.gaps,
            )
