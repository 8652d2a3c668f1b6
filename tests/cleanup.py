"""Tests own their data: what a test put into Kafka and the warehouse goes again afterwards."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import psycopg
from confluent_kafka import KafkaError, KafkaException

from tickhouse import kafka
from tickhouse.config import Settings
from tickhouse.raw_tables import QUARANTINE, TABLES


def forget_topics(settings: Settings, topics: Sequence[str], group: str | None = None) -> None:
    """Delete `topics` from the broker and their rows from raw.* (and `group`'s offsets and load
    stats), so that no later test, dbt run or dashboard sees them.

    A test that broke the stack on purpose may leave a server unreachable or a topic already gone:
    those are expected, and an unreachable server is reported as a warning (the rows stay behind).
    Any other failure (a statement that no longer matches the schema, say) is an error of the test."""
    names = list(topics)
    try:
        conn = psycopg.connect(settings.conninfo("owner"), autocommit=True)
    except psycopg.OperationalError as err:
        warnings.warn(f"cleanup: the warehouse is unreachable, rows of {names} stay: {err}", stacklevel=2)
    else:
        with conn:
            for table in (*TABLES.values(), QUARANTINE):
                conn.execute(f"delete from {table} where kafka_topic = any(%s)", (names,))
            conn.execute("delete from raw.quarantine_replays where kafka_topic = any(%s)", (names,))
            conn.execute("delete from raw.kafka_offsets where topic = any(%s)", (names,))
            conn.execute("delete from raw.load_stats where topic = any(%s)", (names,))
            if group is not None:
                conn.execute("delete from raw.kafka_offsets where consumer_group = %s", (group,))
                conn.execute("delete from raw.load_stats where consumer_group = %s", (group,))
    admin = kafka.admin(settings.kafka_bootstrap_servers)  # held: a destroyed client fails its futures
    futures = admin.delete_topics(names, operation_timeout=30)
    for topic, future in futures.items():
        try:
            future.result(timeout=30)
        except KafkaException as err:
            code = err.args[0].code() if err.args and isinstance(err.args[0], KafkaError) else None
            if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue  # never created, or already deleted by the test
            warnings.warn(f"cleanup: topic {topic} not deleted: {err}", stacklevel=2)
