"""Drain options, the GX batch/contiguity queries, retention and the offset lock key (pure)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from drain.options import DrainOptions, load_options
from drain.rows import MS_PER_DAY
from drain.stats import TopicStats
from drain.targets.postgres.loader import copy_statement
from drain.targets.postgres.offsets import lock_key
from drain.targets.postgres.partitions import Partition
from drain.targets.postgres.quality import batch_query, contiguity_query, partition_ranges
from drain.targets.postgres.retention import expired
from tickhouse.config import ConfigError, load_settings

pytestmark = pytest.mark.unit


def test_defaults_and_env_overrides(tmp_path: Path) -> None:
    settings = load_settings({}, project_root=tmp_path)
    options = load_options(settings, {})
    assert options.topics == {
        "market.trades": "trades", "market.quotes": "quotes", "market.alerts": "alerts",
        "market.candles": "candles",
    }
    assert (options.max_messages, options.max_seconds, options.dq_policy) == (500_000, 45.0, "warn")
    assert options.group == "tickhouse-drain" and options.retention_days == 0
    assert options.quarantine_retention_days == 30 and options.lock_timeout_seconds == 60
    env = {"DRAIN_MAX_MESSAGES": "1000", "DRAIN_MAX_SECONDS": "2.5", "DRAIN_DQ_POLICY": "FAIL",
           "DRAIN_GROUP": "g", "DRAIN_RETENTION_DAYS": "30", "DRAIN_DQ_MIN_EVENT_TIME": "2000-01-01",
           "QUARANTINE_RETENTION_DAYS": "0", "DRAIN_LOCK_TIMEOUT_S": "7"}
    options = load_options(settings, env, max_messages=7)
    assert (options.max_messages, options.max_seconds, options.dq_policy) == (7, 2.5, "fail")
    assert (options.group, options.retention_days) == ("g", 30)
    assert options.quarantine_retention_days == 0
    assert options.dq_min_event_time == date(2000, 1, 1)
    assert options.lock_timeout_seconds == 7


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DRAIN_MAX_MESSAGES": "many"}, "DRAIN_MAX_MESSAGES='many' must be a whole number"),
        ({"DRAIN_MAX_MESSAGES": "0"}, "DRAIN_MAX_MESSAGES=0 must be >= 1"),
        ({"DRAIN_MAX_SECONDS": "-1"}, "DRAIN_MAX_SECONDS=-1.0 must be > 0"),
        ({"DRAIN_DQ_POLICY": "ignore"}, "DRAIN_DQ_POLICY='ignore' must be one of warn, fail, off"),
        ({"DRAIN_RETENTION_DAYS": "-3"}, "DRAIN_RETENTION_DAYS=-3"),
        ({"QUARANTINE_RETENTION_DAYS": "-1"}, "QUARANTINE_RETENTION_DAYS=-1"),
        ({"DRAIN_DQ_MIN_EVENT_TIME": "yesterday"}, "must be a date"),
        ({"DRAIN_LOCK_TIMEOUT_S": "0"}, "DRAIN_LOCK_TIMEOUT_S=0 must be >= 1"),
    ],
)
def test_bad_options_name_the_variable(env: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_options(load_settings({}, project_root=tmp_path), env)


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ConfigError, match="kind 'bars'"):
        DrainOptions(topics={"t": "bars"})


def stats() -> TopicStats:
    s = TopicStats("market.trades", "trades", consumed=7, loaded=6, quarantined=1)
    s.offsets = {0: [10, 14], 2: [0, 1]}
    s.resumed_from = {0: 10}
    s.min_event_ms, s.max_event_ms = 1000, 2000
    return s


def test_partition_ranges_start_where_the_previous_run_stopped() -> None:
    s = stats()
    assert partition_ranges(s) == [(0, 10, 14), (2, 0, 1)]
    s.resumed_from = {0: 8}  # a hole of 8..9 before this run's first message
    assert partition_ranges(s)[0] == (0, 8, 14)


def test_batch_query_selects_the_runs_rows_and_prunes_by_event_time() -> None:
    q = batch_query(stats())
    assert q.startswith("select * from raw.trades where kafka_topic = 'market.trades'")
    assert "(kafka_partition = 0 and kafka_offset between 10 and 14)" in q
    assert "(kafka_partition = 2 and kafka_offset between 0 and 1)" in q
    assert "event_time between to_timestamp(1000 / 1000.0) and to_timestamp(2000 / 1000.0)" in q


def test_contiguity_query_covers_raw_rows_and_quarantine() -> None:
    q = contiguity_query(stats())
    assert "{batch} as batch" in q and "raw.quarantine" in q
    assert "(0, 10::bigint, 14::bigint), (2, 0::bigint, 1::bigint)" in q


def test_quotes_in_topic_names_cannot_break_the_sql() -> None:
    s = TopicStats("a'b", "trades")
    assert "kafka_topic = 'a''b'" in batch_query(s)


def _ms(day: date) -> int:
    return (day - date(1970, 1, 1)).days * MS_PER_DAY


def test_retention_drops_only_partitions_wholly_before_the_cutoff() -> None:
    today = date(2025, 11, 20)  # 10 days: the cutoff is 2025-11-10 00:00 UTC
    days = [Partition(f"d{d}", _ms(date(2025, 11, d)), _ms(date(2025, 11, d + 1)))
            for d in (1, 9, 10, 19, 20, 21)]
    october = Partition("m10", _ms(date(2025, 10, 1)), _ms(date(2025, 11, 1)))
    november = Partition("m11", _ms(date(2025, 11, 1)), _ms(date(2025, 12, 1)))
    since_1970 = Partition("old", float("-inf"), _ms(date(2025, 11, 10)))
    names = [p.name for p in expired([*days, october, november, since_1970], 10, today)]
    assert names == ["d1", "d9", "m10", "old"]  # November is kept: it is not over yet
    assert expired(days, 1000, today) == []


def test_copy_statement_lists_columns_and_leaves_loaded_at_to_the_default() -> None:
    stmt = copy_statement("trades")
    assert stmt.startswith("copy raw.trades (symbol, price, volume, ts, event_time,")
    assert "loaded_at" not in stmt


def test_lock_key_is_stable_and_per_group() -> None:
    assert lock_key("tickhouse-drain") == lock_key("tickhouse-drain")
    assert lock_key("a") != lock_key("b")
    assert 0 <= lock_key("a") < 2**63
