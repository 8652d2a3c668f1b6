"""raw.quarantine after the fact: what was rejected and why, and re-driving it after a fix.

`summarize` and `messages` read the quarantine through one filter (topic, load time, error text).
`replay` publishes the kept bytes of quarantined messages again, to the topic they came from with
their key, so that a drain whose validation was fixed (or a message that was rejected only for a
time, such as one dated more than a day ahead) loads them like any other message. Only messages
whose payload and key were kept whole are replayed (a message over 64 KiB keeps only its first
64 KiB, docs/interfaces/warehouse.md) and only when the kept bytes still match the sha256 recorded with them.

Replays are recorded in raw.quarantine_replays, one row per quarantined message, so that a second
replay never publishes a message again: a message is claimed (and committed) before it is
published, and marked published with its new partition and offset once Kafka acknowledged it. A
replay that dies between the two leaves claims without `published_at`; they are listed as
unconfirmed and replayed again only with `retry_unconfirmed` (they may have reached Kafka).
Replayed messages carry a `tickhouse-replay-of` header naming the original coordinates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer
from psycopg import sql

from drain.rows import QUARANTINE_KEY_BYTES
from tickhouse import kafka

REPLAY_HEADER = "tickhouse-replay-of"

# a quarantined message can be replayed when what was kept is the whole message
_WHOLE = sql.SQL(
    "q.payload is not null"
    " and (q.payload_length is null or q.payload_length = octet_length(q.payload))"
    " and (q.payload_sha256 is null or q.payload_sha256 = sha256(q.payload))"
    " and (q.kafka_key is null or octet_length(q.kafka_key) < {key_bytes})"
).format(key_bytes=sql.Literal(QUARANTINE_KEY_BYTES))


@dataclass(frozen=True, slots=True)
class QuarantineFilter:
    """Which quarantined messages: all given conditions hold (loaded_at in [since, until))."""

    topic: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error: str | None = None  # a piece of the reason, case-insensitive

    def where(self) -> sql.Composed:
        conditions: list[sql.Composable] = [sql.SQL("true")]
        if self.topic is not None:
            conditions.append(sql.SQL("q.kafka_topic = {}").format(sql.Literal(self.topic)))
        if self.since is not None:
            conditions.append(sql.SQL("q.loaded_at >= {}").format(sql.Literal(self.since)))
        if self.until is not None:
            conditions.append(sql.SQL("q.loaded_at < {}").format(sql.Literal(self.until)))
        if self.error is not None:
            conditions.append(
                sql.SQL("strpos(lower(q.error), lower({})) > 0").format(sql.Literal(self.error))
            )
        return sql.SQL(" and ").join(conditions)


@dataclass(frozen=True, slots=True)
class ReasonCount:
    """Quarantined messages of one topic with one kind of reason (the reason up to its first ':')."""

    topic: str
    reason: str
    messages: int
    replayable: int
    replayed: int
    unconfirmed: int
    first_loaded: datetime
    last_loaded: datetime
    example: str


def summarize(conn: psycopg.Connection[Any], where: QuarantineFilter) -> list[ReasonCount]:
    """Counts per topic and kind of reason, most frequent first."""
    query = sql.SQL(
        "select q.kafka_topic, split_part(q.error, ':', 1) as reason, count(*),"
        " count(*) filter (where {whole}),"
        " count(r.published_at), count(r.kafka_offset) - count(r.published_at),"
        " min(q.loaded_at), max(q.loaded_at), min(q.error)"
        " from raw.quarantine as q"
        " left join raw.quarantine_replays as r using (kafka_topic, kafka_partition, kafka_offset)"
        " where {where} group by 1, 2 order by 3 desc, 1, 2"
    ).format(whole=_WHOLE, where=where.where())
    return [ReasonCount(*row) for row in conn.execute(query).fetchall()]


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    topic: str
    partition: int
    offset: int
    loaded_at: datetime
    length: int | None
    whole: bool
    replay: str  # '' (never), 'published', 'unconfirmed'
    error: str


def messages(
    conn: psycopg.Connection[Any], where: QuarantineFilter, limit: int = 50
) -> list[QuarantinedMessage]:
    """The matching messages themselves, newest first."""
    query = sql.SQL(
        "select q.kafka_topic, q.kafka_partition, q.kafka_offset, q.loaded_at,"
        " coalesce(q.payload_length, octet_length(q.payload)), {whole},"
        " case when r.published_at is not null then 'published'"
        "      when r.kafka_offset is not null then 'unconfirmed' else '' end,"
        " q.error"
        " from raw.quarantine as q"
        " left join raw.quarantine_replays as r using (kafka_topic, kafka_partition, kafka_offset)"
        " where {where} order by q.loaded_at desc, 1, 2, 3 limit {limit}"
    ).format(whole=_WHOLE, where=where.where(), limit=sql.Literal(limit))
    return [QuarantinedMessage(*row) for row in conn.execute(query).fetchall()]


@dataclass(slots=True)
class ReplayResult:
    matched: int = 0  # messages the filter selects
    not_whole: int = 0  # of those, kept only in part, null, or not matching their sha256
    already: int = 0  # of those, replayed before (published, or unconfirmed and not retried)
    # (topic, partition, offset, new partition, new offset)
    published: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    # (topic, partition, offset, why); claims of messages Kafka did not confirm stay unconfirmed
    failed: list[tuple[str, int, int, str]] = field(default_factory=list)


_BATCH = 500  # messages claimed, published and recorded at a time (at most ~32 MB of payloads)


def replay(
    bootstrap_servers: str,
    conn: psycopg.Connection[Any],
    where: QuarantineFilter,
    *,
    limit: int = 100_000,
    dry_run: bool = False,
    retry_unconfirmed: bool = False,
    producer: Producer | None = None,
) -> ReplayResult:
    """Re-publish the kept bytes of up to `limit` matching messages; see the module docstring.

    `conn` must not be in a transaction: every step commits on its own.
    """
    result = ReplayResult()
    retry = sql.Literal(retry_unconfirmed)
    counts = conn.execute(
        sql.SQL(
            "select count(*), count(*) filter (where not ({whole})),"
            " count(*) filter (where ({whole}) and r.kafka_offset is not null"
            "  and (r.published_at is not null or not {retry}))"
            " from raw.quarantine as q"
            " left join raw.quarantine_replays as r using (kafka_topic, kafka_partition, kafka_offset)"
            " where {where}"
        ).format(whole=_WHOLE, where=where.where(), retry=retry)
    ).fetchone()
    conn.commit()
    assert counts is not None
    result.matched, result.not_whole, result.already = (int(c) for c in counts)
    if dry_run:
        return result
    producer = producer or kafka.producer(
        bootstrap_servers, "tickhouse-quarantine-replay", **{"linger.ms": 5}
    )
    claim_template = sql.SQL(
        "with candidates as ("
        " select q.kafka_topic, q.kafka_partition, q.kafka_offset from raw.quarantine as q"
        " left join raw.quarantine_replays as r using (kafka_topic, kafka_partition, kafka_offset)"
        " where {where} and {whole}"
        "  and (r.kafka_offset is null or (r.published_at is null and {retry} and r.claimed_at < {t}))"
        " group by 1, 2, 3 order by 1, 2, 3 limit %s),"
        " claimed as ("
        " insert into raw.quarantine_replays as r (kafka_topic, kafka_partition, kafka_offset)"
        " select * from candidates"
        " on conflict (kafka_topic, kafka_partition, kafka_offset) do update set claimed_at = now()"
        "  where r.published_at is null and {retry}"
        " returning kafka_topic, kafka_partition, kafka_offset)"
        " select distinct on (c.kafka_topic, c.kafka_partition, c.kafka_offset)"
        " c.kafka_topic, c.kafka_partition, c.kafka_offset, q.kafka_key, q.payload"
        " from claimed as c join raw.quarantine as q using (kafka_topic, kafka_partition, kafka_offset)"
        " order by c.kafka_topic, c.kafka_partition, c.kafka_offset, q.loaded_at"
    )
    row = conn.execute("select now()").fetchone()
    conn.commit()
    assert row is not None
    # claims retried in this call are not retried again by its next batch
    claim = claim_template.format(
        where=where.where(), whole=_WHOLE, retry=retry, t=sql.Literal(row[0])
    )
    while len(result.published) + len(result.failed) < limit:
        with conn.transaction():
            batch = conn.execute(
                claim, (min(_BATCH, limit - len(result.published) - len(result.failed)),)
            ).fetchall()
        if not batch:
            break
        published, failed = _publish(producer, batch)
        with conn.transaction():
            for topic, partition, offset, new_partition, new_offset in published:
                conn.execute(
                    "update raw.quarantine_replays set published_at = now(), new_partition = %s,"
                    " new_offset = %s where kafka_topic = %s and kafka_partition = %s"
                    " and kafka_offset = %s",
                    (new_partition, new_offset, topic, partition, offset),
                )
            for topic, partition, offset, refused in failed:
                if refused:  # Kafka said no: nothing was published, a later replay may try again
                    conn.execute(
                        "delete from raw.quarantine_replays where kafka_topic = %s"
                        " and kafka_partition = %s and kafka_offset = %s and published_at is null",
                        (topic, partition, offset),
                    )
        result.published += published
        result.failed += [
            (t, p, o, why or "no answer from Kafka within 60 s: left unconfirmed")
            for t, p, o, why in failed
        ]
        if any(not refused for *_, refused in failed):
            break  # Kafka does not answer: stop here, the unconfirmed claims say where
    return result


def _publish(
    producer: Producer, batch: list[tuple[str, int, int, bytes | None, bytes]]
) -> tuple[list[tuple[str, int, int, int, int]], list[tuple[str, int, int, str]]]:
    """Produce one batch and wait for Kafka; (published, failed) where a failure says why (a
    refused message) or is '' (no answer: delivery unknown)."""
    published: list[tuple[str, int, int, int, int]] = []
    refused: dict[tuple[str, int, int], str] = {}

    def report(origin: tuple[str, int, int], err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            refused[origin] = str(err)
        else:
            published.append((*origin, int(msg.partition() or 0), int(msg.offset() or 0)))

    for topic, partition, offset, key, payload in batch:
        origin = (topic, partition, offset)
        while True:
            try:
                producer.produce(
                    topic,
                    value=bytes(payload),
                    key=None if key is None else bytes(key),
                    headers=[(REPLAY_HEADER, f"{topic}/{partition}/{offset}".encode())],
                    on_delivery=functools.partial(report, origin),
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(60)
    done = {p[:3] for p in published}
    failed = [(*origin, why) for origin, why in refused.items()]
    failed += [(t, p, o, "") for t, p, o, *_ in batch if (t, p, o) not in done and (t, p, o) not in refused]
    return published, failed
