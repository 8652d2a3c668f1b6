"""One micro-batch drain of every topic into the raw tables, exactly once.

The order of a run, and why:

1. open one transaction; take the group's advisory lock; read the next offsets from
   `raw.kafka_offsets` (the source of truth) and assign every partition from there;
   (WAREHOUSE=snowflake: the same steps through `targets.SnowflakeTarget`, which stages the rows
   with write_pandas and moves them into RAW in one transaction with the offsets and stats; see
   `drain.snowflake_loader`)
2. consume up to `max_messages` or `max_seconds` (stopping earlier once every partition is at its
   end), validating each message in the same pass and streaming it by COPY into its raw table or
   into `raw.quarantine`;
3. in the same transaction, upsert the next offsets and write `raw.load_stats`; COMMIT;
4. only then commit the offsets to Kafka (monitoring only: a crash before this loses nothing,
   the next run starts from the warehouse's offsets);
5. check the loaded rows with the Great Expectations suite, store and log the results; apply the
   retention setting.

A partition whose log the broker now ends (or restarts) below the offset the warehouse has already
loaded up to was rewound: the topic was deleted and re-created, or the broker lost data. Its new
messages would reuse coordinates the raw tables already hold, so the run loads nothing from it,
drains and commits everything else, and then raises `TopicRewound`, which says what happened and
what to do (`tickhouse drain --reset-topic`, or a new topic name). Every later run does the same
until then, without touching that partition.

`fault_hook(stage)` is called at 'mid_copy', 'after_copy_before_commit' and
'after_commit_before_kafka_commit'; tests raise from it (or kill the process) to prove that a
crash at any point neither loses nor doubles a message.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from drain.batches import BatchParser, BatchResult, Item
from drain.consumer import KafkaSource, Position
from drain.options import DrainOptions
from drain.stats import TopicStats
from drain.targets import RowLoader, open_target
from tickhouse.config import Settings

log = logging.getLogger(__name__)

FaultHook = Callable[[str], None]
STAGES = ("mid_copy", "after_copy_before_commit", "after_commit_before_kafka_commit")
_BATCH = 5000
_TIMESTAMP_NOT_AVAILABLE = 0


class DataQualityError(RuntimeError):
    """The loaded rows failed expectations and DRAIN_DQ_POLICY=fail (the rows are committed)."""

    def __init__(self, message: str, result: DrainResult) -> None:
        super().__init__(message)
        self.result = result


class TopicRewound(RuntimeError):
    """Partitions whose broker log is behind what the warehouse loaded; the rest is committed."""

    def __init__(self, message: str, result: DrainResult) -> None:
        super().__init__(message)
        self.result = result


# (topic, partition) -> (next offset the warehouse has, offset the broker's log ends or restarts at)
Rewound = dict[Position, tuple[int, int]]


def rewound_message(rewound: Rewound, group: str) -> str:
    """What happened to the rewound partitions and what to do about it."""
    lines = [
        f"{topic}[{partition}]: the warehouse has loaded it up to offset {loaded - 1} (group "
        f"{group!r} resumes at {loaded}), but the broker's log of it now ends or restarts at "
        f"offset {broker}"
        for (topic, partition), (loaded, broker) in sorted(rewound.items())
    ]
    topics = sorted({topic for topic, _ in rewound})
    return (
        "Kafka topic rewound: " + "; ".join(lines) + ". The topic was deleted and re-created, or "
        "the broker lost data: its new messages would reuse Kafka coordinates (topic, partition, "
        "offset) that the raw tables already hold. Nothing was loaded from these partitions; the "
        "other topics were drained and committed. Every drain run stops here the same way until "
        "you choose: to keep the rows already loaded and drain the new messages under the same "
        "name, run `tickhouse drain --reset-topic "
        + " --reset-topic ".join(topics)
        + "` (the stored positions move to the broker's current start; a message re-published "
        "unchanged at an offset it had before is a duplicate of a loaded row and is refused: "
        "delete those rows first), or publish to a new topic name instead (TRADES_TOPIC, "
        "QUOTES_TOPIC, ALERTS_TOPIC, ...) and leave this one alone."
    )


@dataclass(slots=True)
class DrainResult:
    run_id: str
    started_at: datetime
    finished_at: datetime
    topics: list[TopicStats]
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    dq_failures: list[str] = field(default_factory=list)
    dq_checked: bool = False
    rewound: Rewound = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def loaded_by_table(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for s in self.topics:
            totals[s.table] = totals.get(s.table, 0) + s.loaded
        return totals

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "duration_s": round(self.duration_s, 3),
            "topics": [s.as_dict() for s in self.topics],
            "loaded_by_table": self.loaded_by_table,
            "partitions_created": self.partitions_created,
            "partitions_dropped": self.partitions_dropped,
            "dq_failures": self.dq_failures,
            "rewound": {
                f"{topic}[{partition}]": {"warehouse_next": loaded, "broker": broker}
                for (topic, partition), (loaded, broker) in sorted(self.rewound.items())
            },
        }


def drain_once(
    settings: Settings,
    options: DrainOptions,
    *,
    fault_hook: FaultHook | None = None,
    run_quality: bool = True,
) -> DrainResult:
    """Drain every configured topic once; see the module docstring for the guarantees."""
    run_id = uuid.uuid4().hex
    started_at = datetime.now(UTC)
    deadline = time.monotonic() + options.max_seconds
    stats = {topic: TopicStats(topic, kind) for topic, kind in options.topics.items()}

    target = open_target(settings, options.warehouse, fault_hook)
    source: KafkaSource | None = None
    loader: RowLoader | None = None
    rewound: Rewound = {}
    try:
        start_offsets = target.start(options.group, options.topics)
        source = KafkaSource(
            settings.kafka_bootstrap_servers, options.group, options.topics, start_offsets
        )
        source.refresh_partitions()
        loader = target.loader()
        positions = _consume(source, loader, options, stats, start_offsets, deadline, rewound)
        loader.finish()
        _fire(fault_hook, "after_copy_before_commit")

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
        _fire(fault_hook, "after_commit_before_kafka_commit")
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
    try:
        _after_commit(settings, options, target.kind, result, run_quality)
    except DataQualityError as err:
        if rewound:  # the rewound topic is the one that needs a person first
            raise TopicRewound(f"{rewound_message(rewound, options.group)} Also: {err}", result) from err
        raise
    if rewound:
        raise TopicRewound(rewound_message(rewound, options.group), result)
    return result


def _after_commit(
    settings: Settings, options: DrainOptions, kind: str, result: DrainResult, run_quality: bool
) -> None:
    """Retention and data quality: after the commit, so the rows are safe whatever happens."""
    run_id = result.run_id
    if kind != "postgres":
        if options.retention_days or (run_quality and options.dq_policy != "off"):
            log.info(
                "DRAIN_RETENTION_DAYS, QUARANTINE_RETENTION_DAYS and DRAIN_DQ_POLICY apply to "
                "PostgreSQL only; skipped on %s",
                kind,
            )
        return
    if options.retention_days or options.quarantine_retention_days:
        from drain.retention import drop_expired_partitions

        try:
            result.partitions_dropped = drop_expired_partitions(
                settings,
                options.retention_days,
                quarantine_retention_days=options.quarantine_retention_days,
            )
        except Exception:
            log.exception("retention failed (the load is committed); the next run tries again")
    if run_quality and options.dq_policy != "off":
        from drain.quality import check_run

        try:
            result.dq_failures = check_run(settings, options, result)
            result.dq_checked = True
        except Exception as err:
            log.exception("data quality checks could not run for run %s", run_id)
            result.dq_failures = [f"data quality checks could not run: {err}"]
        if result.dq_failures and options.dq_policy == "fail":
            raise DataQualityError(
                f"data quality: {len(result.dq_failures)} expectation(s) failed for run "
                f"{run_id} (rows are committed; see raw.dq_results): "
                + "; ".join(result.dq_failures),
                result,
            )


def _consume(
    source: KafkaSource,
    loader: RowLoader,
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

    def apply(result: BatchResult) -> None:
        st = stats[result.topic]
        if result.block:
            loader.add_block(result.kind, result.block, result.days)
        for line in result.quarantine:
            loader.add_quarantine(line)
        st.quarantined += len(result.quarantine)
        if result.min_event_ms is not None and (
            st.min_event_ms is None or result.min_event_ms < st.min_event_ms
        ):
            st.min_event_ms = result.min_event_ms
        if result.max_event_ms is not None and (
            st.max_event_ms is None or result.max_event_ms > st.max_event_ms
        ):
            st.max_event_ms = result.max_event_ms

    parser = BatchParser(options.parse_workers, apply)
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
                        raise RuntimeError(f"Kafka consumer failed: {error}")
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


def _fire(hook: FaultHook | None, stage: str) -> None:
    if hook is not None:
        hook(stage)


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
