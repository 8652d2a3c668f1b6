"""The raw tables (docs/interfaces/warehouse.md): their names and the columns a load writes, in one place.

PostgreSQL creates them in the migrations (`tickhouse/sql/`, history that is never rewritten) and
Snowflake from `tickhouse/snowflake/sql/raw_tables.sql`; tests hold both against these lists
(`tests/unit/test_raw_tables.py`, `tests/integration/stack/test_warehouse.py`). Every raw table also
has `loaded_at`, which the warehouse fills with the load's time.
"""

from __future__ import annotations

# One raw table per kind of message (and per Kafka topic), named raw.<kind>.
KINDS = ("trades", "quotes", "alerts", "candles")
TABLES = {kind: f"raw.{kind}" for kind in KINDS}
QUARANTINE = "raw.quarantine"

KAFKA_COORDINATES = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp")

# The columns a load writes, in the order the drain sends them (then `loaded_at`).
COLUMNS: dict[str, tuple[str, ...]] = {
    "trades": (
        "symbol", "price", "volume", "ts", "event_time", "conditions", "source", *KAFKA_COORDINATES,
        "producer_id", "producer_seq",
    ),
    "quotes": (
        "symbol", "price", "change", "change_pct", "high", "low", "open", "prev_close", "ts",
        "event_time", "source", *KAFKA_COORDINATES,
    ),
    "alerts": (
        "alert_id", "symbol", "rule", "severity", "message", "trade_ts", "detected_ts",
        "event_time", "details", *KAFKA_COORDINATES,
    ),
    "candles": (
        "symbol", "resolution", "bar_start", "event_time", "open", "high", "low", "close",
        "volume", "source", *KAFKA_COORDINATES,
    ),
    "quarantine": (
        "kafka_topic", "kafka_partition", "kafka_offset", "kafka_key", "kafka_timestamp",
        "payload", "payload_length", "payload_sha256", "error",
    ),
}


def table(kind: str) -> str:
    """raw.<kind>, or raw.quarantine for "quarantine"."""
    return QUARANTINE if kind == "quarantine" else TABLES[kind]
