"""Drain options: the DRAIN_* environment variables, validated once.

| variable | default | meaning |
|---|---|---|
| `DRAIN_MAX_MESSAGES` | 500000 | most messages one run consumes (all topics together) |
| `DRAIN_MAX_SECONDS` | 45 | most seconds one run spends consuming; it stops earlier once caught up |
| `DRAIN_GROUP` | `tickhouse-drain` | Kafka consumer group (offsets for lag monitoring) and offset owner |
| `DRAIN_DQ_POLICY` | `warn` | `warn`: log failures; `fail`: fail the run (rows stay committed); `off` |
| `DRAIN_RETENTION_DAYS` | 0 | drop raw partitions whose whole range is older than N days (0 keeps all) |
| `QUARANTINE_RETENTION_DAYS` | 30 | the same for raw.quarantine, by load time (0 keeps everything) |
| `DRAIN_PARSE_WORKERS` | 0 | worker processes validating messages; 0 validates in the drain's process |
| `DRAIN_DQ_MIN_EVENT_TIME` | `1990-01-01` | lower bound of the data-quality timestamp check |
| `DRAIN_DQ_MAX_PRICE` | 10000000 | upper bound of the data-quality price check |
| `DRAIN_DQ_MAX_VOLUME` | 10000000000 | upper bound of the data-quality volume check |
| `DRAIN_LOCK_TIMEOUT_S` | 60 | seconds a statement may wait behind a lock, then the run fails |
| `WAREHOUSE` | `postgres` | where the drain loads: `postgres` or `snowflake` (tickhouse.snowflake.settings) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from tickhouse.config import DEFAULT_DRAIN_GROUP, ConfigError, Settings, drain_group
from tickhouse.raw_tables import KINDS
from tickhouse.snowflake.settings import WAREHOUSES, selected_warehouse

DQ_POLICIES = ("warn", "fail", "off")


@dataclass(frozen=True, slots=True)
class DrainOptions:
    """What one drain run does; `topics` maps each Kafka topic to its kind (`KINDS`)."""

    topics: Mapping[str, str]
    group: str = DEFAULT_DRAIN_GROUP
    max_messages: int = 500_000
    max_seconds: float = 45.0
    dq_policy: str = "warn"
    retention_days: int = 0
    quarantine_retention_days: int = 30
    dq_min_event_time: date = date(1990, 1, 1)
    dq_max_price: float = 1e7
    dq_max_volume: float = 1e10
    # worker processes validating messages (0: in the drain's own process)
    parse_workers: int = 0
    # how often (seconds) the consumer looks for partitions added to a topic while it runs
    partition_refresh_seconds: float = 2.0
    # where the rows go: "postgres" or "snowflake" (WAREHOUSE)
    warehouse: str = "postgres"
    # a statement waits this long behind someone else's lock (a manual ALTER, a long migration),
    # then the run fails clearly and Airflow retries, instead of hanging to the task's timeout
    lock_timeout_seconds: int = 60

    def __post_init__(self) -> None:
        for topic, kind in self.topics.items():
            if kind not in KINDS:
                raise ConfigError(f"topic {topic!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
        if self.max_messages < 1:
            raise ConfigError(f"DRAIN_MAX_MESSAGES={self.max_messages} must be >= 1")
        if self.max_seconds <= 0:
            raise ConfigError(f"DRAIN_MAX_SECONDS={self.max_seconds} must be > 0")
        if self.dq_policy not in DQ_POLICIES:
            raise ConfigError(
                f"DRAIN_DQ_POLICY={self.dq_policy!r} must be one of {', '.join(DQ_POLICIES)}"
            )
        if not 0 <= self.parse_workers <= 64:
            raise ConfigError(f"DRAIN_PARSE_WORKERS={self.parse_workers} must be from 0 to 64")
        if self.warehouse not in WAREHOUSES:
            raise ConfigError(
                f"WAREHOUSE={self.warehouse!r} must be one of {', '.join(WAREHOUSES)}"
            )
        if self.lock_timeout_seconds < 1:
            raise ConfigError(f"DRAIN_LOCK_TIMEOUT_S={self.lock_timeout_seconds} must be >= 1")
        if self.retention_days < 0:
            raise ConfigError(f"DRAIN_RETENTION_DAYS={self.retention_days} must be >= 0 (0 = keep)")
        if self.quarantine_retention_days < 0:
            raise ConfigError(
                f"QUARANTINE_RETENTION_DAYS={self.quarantine_retention_days} must be >= 0 (0 = keep)"
            )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a whole number") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a number") from None


def load_options(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    **overrides: object,
) -> DrainOptions:
    """Options from DRAIN_* variables (environment over defaults), then explicit `overrides`."""
    env = os.environ if environ is None else environ
    raw_min = env.get("DRAIN_DQ_MIN_EVENT_TIME", "").strip()
    try:
        min_event = date.fromisoformat(raw_min) if raw_min else date(1990, 1, 1)
    except ValueError:
        raise ConfigError(f"DRAIN_DQ_MIN_EVENT_TIME={raw_min!r} must be a date, YYYY-MM-DD") from None
    values: dict[str, object] = {
        "topics": {
            settings.trades_topic: "trades",
            settings.quotes_topic: "quotes",
            settings.alerts_topic: "alerts",
            settings.candles_topic: "candles",
        },
        "group": drain_group(env),
        "max_messages": _int(env, "DRAIN_MAX_MESSAGES", 500_000),
        "max_seconds": _float(env, "DRAIN_MAX_SECONDS", 45.0),
        "dq_policy": (env.get("DRAIN_DQ_POLICY", "").strip() or "warn").lower(),
        "retention_days": _int(env, "DRAIN_RETENTION_DAYS", 0),
        "quarantine_retention_days": _int(env, "QUARANTINE_RETENTION_DAYS", 30),
        "parse_workers": _int(env, "DRAIN_PARSE_WORKERS", 0),
        "dq_min_event_time": min_event,
        "dq_max_price": _float(env, "DRAIN_DQ_MAX_PRICE", 1e7),
        "dq_max_volume": _float(env, "DRAIN_DQ_MAX_VOLUME", 1e10),
        "warehouse": selected_warehouse(env),
        "lock_timeout_seconds": _int(env, "DRAIN_LOCK_TIMEOUT_S", 60),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return DrainOptions(**values)  # type: ignore[arg-type]
