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
            # the broker answers a fetch as soon as one message is there, or after 10 ms
            "fetch.wait.max.ms": 10,
            "fetch.min.bytes": 1,
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
