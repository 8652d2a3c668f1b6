"""The alert service's Kafka clients: the trades consumer, the alerts producer and the checkpoint
writer, tuned for latency on top of the shared configurations of `tickhouse.kafka`."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import Consumer, Producer

from tickhouse import kafka


def trades_consumer(bootstrap: str, group: str, from_beginning: bool, extra: dict[str, Any]) -> Consumer:
    return kafka.consumer(
        bootstrap,
        group,
        **{
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            # One fetch every 3 ms, not one per producer request that reaches the broker: the
            # broker answers when 64 KB are there (~15 ms of trades at 50,000/s) or after 3 ms.
            # Answering at the first byte (fetch.min.bytes 1) meant ~1,000 fetches a second, each
            # waking the broker and this client: that cost more CPU than the trades themselves,
            # on 2 cores shared with the broker and the producer, and CPU is what the latency tail
            # at 50,000 trades/s is made of. A catch-up (64 KB already there) is not slowed; a
            # trade on a quiet feed waits up to 3 ms here
            # (docs/performance.md#the-alert-service-where-the-latency-goes).
            "fetch.wait.max.ms": 3,
            "fetch.min.bytes": 65_536,
            "client.id": f"tickhouse-alerts-{uuid.uuid4().hex[:8]}",
            # A killed instance keeps its partitions until its session expires: the default
            # 45 s would silence alerts that long. 10 s (heartbeats every 2 s) is the trade-off
            # between a quick hand-over and false expiry on a busy 2-core machine.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            **kafka.LOW_LATENCY,
            **extra,
        },
    )


def alerts_producer(bootstrap: str, extra: dict[str, Any]) -> Producer:
    return kafka.producer(
        bootstrap,
        "tickhouse-alerts",
        **{
            "linger.ms": 0,  # alerts are few; send each at once
            "compression.type": "none",
            **kafka.LOW_LATENCY,
            **extra,
        },
    )


def state_producer(bootstrap: str, extra: dict[str, Any]) -> Producer:
    """The checkpoint writer's own producer: its batches never queue in front of an alert.
    Idempotent, so the records of a round stay in order before their manifest."""
    return kafka.producer(
        bootstrap,
        "tickhouse-alerts-state",
        **{"linger.ms": 20, "compression.type": "lz4", **extra},
    )


def dead_letter_producer(bootstrap: str) -> Producer:
    """Where a notifier writes an alert it could not deliver after its retries."""
    return kafka.producer(bootstrap, "tickhouse-alerts-deadletter")
