"""Event-time partitions that survive history: months for recent data, years for
history, bounded whatever a batch holds; recent queries prune; retention drops whole partitions;
installs with the day partitions of before migration 006 keep working and are not rewritten.

Each test loads through the real drain from real Kafka topics into a database of its own, so
partition counts are exact. The expected ranges come from `expected_partitions`, a plain
re-statement of the rule in tickhouse/sql/006_partition_ranges.sql (the oracle), never from it.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from psycopg import sql

from drain.targets.postgres.retention import drop_expired_partitions
from tests.faults import crash_at
from tests.integration.dbt.conftest import drop_database
from tests.integration.drain.conftest import Topics
from tests.integration.drain.helpers import quote, trade
from tickhouse.config import Settings
from tickhouse.warehouse import (
    SQL_DIR,
    apply_migrations,
    connect,
    ensure_roles_and_databases,
    setup_warehouse,
)

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000
EPOCH = date(1970, 1, 1)


@pytest.fixture
def own_db(settings: Settings) -> Iterator[Settings]:
    """A database of this test's own (roles shared), dropped afterwards; migrations not applied."""
    mine = dataclasses.replace(settings, postgres_db=f"{settings.postgres_db}_part_{uuid.uuid4().hex[:8]}")
    yield mine
    drop_database(mine)


@pytest.fixture
def db_settings(own_db: Settings) -> Settings:
    setup_warehouse(own_db)
    return own_db


@pytest.fixture
def own_topics(admin: AdminClient) -> Iterator[Callable[[Settings], Topics]]:
    made: list[Topics] = []

    def make(settings: Settings) -> Topics:
        topics = Topics(settings, admin, 1)
        made.append(topics)
        return topics

    yield make
    for topics in made:
        topics.delete()


def owner(settings: Settings) -> psycopg.Connection[Any]:
    return connect(settings, "owner", autocommit=True)


def ms(day: date, hour: int = 14) -> int:
    return (day - EPOCH).days * DAY_MS + hour * 3_600_000


def expected_partitions(event_ms: list[int], today: date) -> set[tuple[int, int]]:
    """The oracle: (year, month) for event times from the first day of the month twelve months
    back, (year, 0) for older ones; what a fresh table gets (no partitions to clip against)."""
    first = date(today.year - 1, today.month, 1)
    keys = set()
    for value in event_ms:
        day = EPOCH + timedelta(milliseconds=value)
        keys.add((day.year, day.month) if day >= first else (day.year, 0))
    return keys


def partitions_of(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, datetime, datetime]]:
    return [
        (name, lower, upper)
        for name, lower, upper in conn.execute(
            "select child::text, greatest(lower_bound, '0001-01-01'), least(upper_bound, '9999-01-01')"
            " from raw.partition_ranges(%s::regclass) order by 2",
            (table,),
        ).fetchall()
    ]


def assert_no_overlap(parts: list[tuple[str, datetime, datetime]]) -> None:
    for (name_a, _, upper_a), (name_b, lower_b, _) in itertools.pairwise(parts):
        assert upper_a <= lower_b, f"{name_a} overlaps {name_b}"


def weekdays_back(n: int, last: date) -> list[date]:
    days: list[date] = []
    day = last
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return sorted(days)


def test_ranges_are_months_recently_and_years_for_history(db_settings: Settings) -> None:
    with owner(db_settings) as conn:
        def natural(at: str, now: str) -> tuple[str, str]:
            row = conn.execute(
                "select to_char(lower_bound at time zone 'UTC', 'YYYY-MM-DD'),"
                " to_char(upper_bound at time zone 'UTC', 'YYYY-MM-DD')"
                " from raw.natural_partition_range(%s::timestamptz, %s::timestamptz)",
                (at, now),
            ).fetchone()
            assert row is not None
            return str(row[0]), str(row[1])

        now = "2026-11-30 19:00+00"
        assert natural("2026-11-30 23:59+00", now) == ("2026-11-01", "2026-12-01")
        assert natural("2026-12-01 10:00+00", now) == ("2026-12-01", "2027-01-01")  # a day ahead
        assert natural("2025-11-01 00:00+00", now) == ("2025-11-01", "2025-12-01")  # 12 months back
        assert natural("2025-10-31 23:59+00", now) == ("2025-01-01", "2025-11-01")  # cut there
        assert natural("2019-07-04 12:00+00", now) == ("2019-01-01", "2020-01-01")
        assert natural("1970-01-01 00:00+00", now) == ("1970-01-01", "1971-01-01")
        # the bounds are UTC days whatever the session's time zone
        conn.execute("set timezone = 'America/New_York'")
        assert natural("2026-11-01 02:00+00", now) == ("2026-11-01", "2026-12-01")


def test_ten_years_of_daily_history_make_two_dozen_partitions_and_reads_work(
    db_settings: Settings, own_topics: Callable[[Settings], Topics]
) -> None:
    """Issue 12 §3: 2,608 daily trades (one per weekday for ten years) made 2,613 partitions and
    every dbt run then failed with "out of shared memory"."""
    topics = own_topics(db_settings)
    today = datetime.now(UTC).date()
    days = weekdays_back(2_608, today - timedelta(days=1))
    stamps = [ms(day) for day in days]
    topics.produce(topics.trades, [trade(i, ts=t, symbol="HIST") for i, t in enumerate(stamps)])
    topics.produce(topics.quotes, [quote(i) for i in range(10)])
    runs = topics.drain_until_caught_up()
    created = [name for run in runs for name in run.partitions_created]

    with owner(db_settings) as conn:
        assert conn.execute("select count(*), count(distinct kafka_offset) from raw.trades").fetchone() == (
            2_608, 2_608
        )
        parts = partitions_of(conn, "raw.trades")
        assert_no_overlap(parts)
        expected = expected_partitions(stamps, today)
        assert len(parts) == len(expected) == len(set(created) & {p[0] for p in parts})
        assert len(parts) <= 11 + 13, [p[0] for p in parts]  # years of history + the monthly window
        holding = conn.execute("select count(distinct tableoid) from raw.trades").fetchone()
        assert holding == (len(expected),)

    # a dbt-like read: every raw table in full, in one transaction, as the dbt role
    with connect(db_settings, "dbt") as conn:
        daily = conn.execute(
            "select symbol, date_trunc('day', event_time), count(*), min(price), max(price)"
            " from (select *, row_number() over (partition by kafka_topic, kafka_partition,"
            "  kafka_offset, event_time order by loaded_at) as copy from raw.trades) as t"
            " where copy = 1 group by 1, 2"
        ).fetchall()
        assert len(daily) == 2_608
        for table in ("raw.quotes", "raw.alerts", "raw.quarantine"):
            conn.execute(f"select count(*) from {table}").fetchone()
        locks = conn.execute("select count(*) from pg_locks where pid = pg_backend_pid()").fetchone()
        assert locks is not None
        # a couple of locks per partition and index, not per day of history
        assert locks[0] < 400, f"{locks[0]} locks held by one read of the raw tables"
    print(f"ten years of daily trades: {len(parts)} partitions, {locks[0]} locks for a full read")


def test_a_hostile_spread_since_1970_creates_a_bounded_number_of_partitions(
    db_settings: Settings, own_topics: Callable[[Settings], Topics]
) -> None:
    topics = own_topics(db_settings)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    today = datetime.now(UTC).date()
    stamps = [day * DAY_MS + 43_200_000 for day in range((today - EPOCH).days + 1)]
    stamps = [t for t in stamps if t <= now_ms]  # one trade on every day since 1970-01-01
    topics.produce(topics.trades, [trade(i, ts=t, symbol="SPREAD") for i, t in enumerate(stamps)])
    drain_locks: list[int] = []

    def count_locks() -> None:
        # after the load, before the commit: the drain's transaction, everything in it
        with owner(db_settings) as conn:
            row = conn.execute(
                "select count(*) from pg_locks as l join pg_stat_activity as a using (pid)"
                " where a.application_name = 'tickhouse-drain' and a.datname = current_database()"
            ).fetchone()
            assert row is not None
            drain_locks.append(int(row[0]))

    from drain.runner import drain_once

    with crash_at("after_copy_before_commit", count_locks):
        result = drain_once(db_settings, topics.options())  # one run
    [trades] = [s for s in result.topics if s.topic == topics.trades]
    assert (trades.consumed, trades.loaded) == (len(stamps), len(stamps))
    years = today.year - 1970 + 1
    expected = expected_partitions(stamps, today)
    assert len(result.partitions_created) == len(expected) <= years + 13
    with owner(db_settings) as conn:
        assert conn.execute("select count(*), count(distinct ts) from raw.trades").fetchone() == (
            len(stamps), len(stamps)
        )
        parts = partitions_of(conn, "raw.trades")
        assert_no_overlap(parts)
        assert len(parts) == len(expected)
    assert drain_locks and drain_locks[0] < 1_000, drain_locks
    print(f"{len(stamps)} trades on every day since 1970 in one run: {len(parts)} partitions, "
          f"{drain_locks[0]} locks in the drain's transaction")


def _scanned_partitions(plan: str) -> list[str]:
    return re.findall(r" on (trades_\w+)", plan)


def test_recent_queries_prune_to_a_few_partitions(
    db_settings: Settings, own_topics: Callable[[Settings], Topics]
) -> None:
    topics = own_topics(db_settings)
    now = datetime.now(UTC)
    today = now.date()
    history = [ms(date(year, 6, 15)) for year in range(1995, today.year)]
    recent = [int((now - timedelta(days=d, minutes=5)).timestamp() * 1000) for d in range(0, 400, 3)]
    topics.produce(topics.trades, [trade(i, ts=t) for i, t in enumerate(history + recent)])
    topics.drain_until_caught_up()
    with owner(db_settings) as conn:
        total = len(partitions_of(conn, "raw.trades"))
        assert total >= 40

        def explain(where: str, *values: Any) -> str:
            query = sql.SQL("explain (costs off) select * from raw.trades where " + where).format(
                *(sql.Literal(v) for v in values)
            )
            return "\n".join(r[0] for r in conn.execute(query).fetchall())

        hour_ago = now - timedelta(hours=1)
        plan = explain("event_time >= {}", hour_ago)
        assert 1 <= len(_scanned_partitions(plan)) <= 2, plan
        plan = explain("symbol = 'AAPL' and event_time between {} and {}", now - timedelta(days=7), now)
        assert 1 <= len(_scanned_partitions(plan)) <= 2, plan
        plan = explain("event_time >= '2012-03-01' and event_time < '2012-03-02'")
        assert _scanned_partitions(plan) == ["trades_2012"], plan
        # now() is pruned when the query starts (PostgreSQL's run-time pruning)
        rows = conn.execute(
            "explain (analyze, costs off, timing off, summary off)"
            " select count(*) from raw.trades where event_time >= now() - interval '1 hour'"
        ).fetchall()
        plan = "\n".join(r[0] for r in rows)
        removed = re.search(r"Subplans Removed: (\d+)", plan)
        assert removed is not None and int(removed.group(1)) >= total - 2, plan
        last_hour = _scanned_partitions(explain("event_time >= {}", hour_ago))
        print(f"{total} partitions; the last hour scans {last_hour}")


def test_retention_drops_whole_partitions_older_than_the_cutoff(
    db_settings: Settings, own_topics: Callable[[Settings], Topics]
) -> None:
    topics = own_topics(db_settings)
    now = datetime.now(UTC)
    today = now.date()
    old = [ms(date(today.year - 3, 2, 1)), ms(date(today.year - 3, 9, 1))]
    two_months_ago = ms(today - timedelta(days=62))
    recent = int((now - timedelta(hours=1)).timestamp() * 1000)
    topics.produce(topics.trades, [trade(i, ts=t) for i, t in enumerate([*old, two_months_ago, recent])])
    topics.produce(topics.trades, [b"not json"])
    topics.drain_until_caught_up()
    with owner(db_settings) as conn:
        names = [p[0] for p in partitions_of(conn, "raw.trades")]
        quarantine = [p[0] for p in partitions_of(conn, "raw.quarantine")]
    year = f"raw.trades_{today.year - 3}"
    assert year in names and len(names) == 3

    dropped = drop_expired_partitions(db_settings, 30, today=today)
    month = EPOCH + timedelta(milliseconds=two_months_ago)
    assert sorted(dropped) == sorted([year, f"raw.trades_{month:%Y_%m}"])  # the current month stays
    with owner(db_settings) as conn:
        assert [t for (t,) in conn.execute("select ts from raw.trades")] == [recent]
        assert conn.execute("select count(*) from raw.quarantine").fetchone() == (1,)
    # QUARANTINE_RETENTION_DAYS by load time: a year on, the quarantine partition goes too
    dropped = drop_expired_partitions(db_settings, 0, today=today + timedelta(days=400),
                                      quarantine_retention_days=30)
    assert dropped == quarantine
    with owner(db_settings) as conn:
        assert conn.execute("select count(*) from raw.quarantine").fetchone() == (0,)
        assert conn.execute("select count(*) from raw.trades").fetchone() == (1,)
    # a late row for a dropped range gets a partition again
    topics.produce(topics.trades, [trade(9, ts=old[0]), b"[]"])
    topics.drain_until_caught_up()
    with owner(db_settings) as conn:
        assert conn.execute("select count(*) from raw.trades").fetchone() == (2,)
        assert conn.execute("select count(*) from raw.quarantine").fetchone() == (1,)


def _relfilenodes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(
        conn.execute(
            "select relname::text, relfilenode::bigint from pg_class where relnamespace = 'raw'::regnamespace"
            " and relkind = 'r'"
        ).fetchall()
    )


def test_an_install_with_day_partitions_migrates_without_rewriting_and_keeps_loading(
    own_db: Settings, own_topics: Callable[[Settings], Topics], tmp_path: Path
) -> None:
    """Migrations 006 and 007 on a database made by 001-005 and loaded the old way."""
    before = tmp_path / "sql"
    before.mkdir()
    for path in sorted(SQL_DIR.glob("*.sql")):
        if path.name < "006":
            shutil.copy(path, before / path.name)
    ensure_roles_and_databases(own_db)
    apply_migrations(own_db, sql_dir=before)
    legacy_days = [date(2019, 7, 3), date(2019, 7, 4), date(2019, 7, 8)]
    big = b'{"pad": "' + b"x" * 100_000 + b'"}'
    with connect(own_db, "loader", autocommit=True) as conn:
        for i, day in enumerate(legacy_days):  # what the drain did before 006
            conn.execute("select raw.ensure_day_partition('raw.trades', %s)", (day,))
            conn.execute(
                "insert into raw.trades (symbol, price, volume, ts, event_time, kafka_topic,"
                " kafka_partition, kafka_offset) values ('OLD', 1, 1, %s, to_timestamp(%s / 1000.0),"
                " 'old.topic', 0, %s)",
                (ms(day), ms(day), i),
            )
        conn.execute(
            "insert into raw.quarantine (kafka_topic, kafka_partition, kafka_offset, payload, error)"
            " values ('old.topic', 0, 9, %s, 'payload too large')",
            (big,),
        )
    with owner(own_db) as conn:
        files_before = _relfilenodes(conn)

    assert apply_migrations(own_db)[:2] == ["006_partition_ranges.sql", "007_bounded_quarantine.sql"]

    with owner(own_db) as conn:
        files_after = _relfilenodes(conn)
        for day in legacy_days:  # the day partitions and the old quarantine: the same files
            assert files_after[f"trades_{day:%Y%m%d}"] == files_before[f"trades_{day:%Y%m%d}"]
        assert files_after["quarantine_before_007"] == files_before["quarantine"]
        assert conn.execute("select count(*) from raw.trades").fetchone() == (3,)
        row = conn.execute(
            "select payload, payload_length from raw.quarantine where kafka_topic = 'old.topic'"
        ).fetchone()
        assert row is not None
        payload, length = row
        assert (bytes(payload), length) == (big, None)  # kept whole before 007

    # new trades around and on the old days: clipped around them, never overlapping
    topics = own_topics(own_db)
    around = [date(2019, 7, 2), date(2019, 7, 4), date(2019, 7, 5), date(2019, 7, 6), date(2019, 12, 31),
              date(2019, 1, 1)]
    topics.produce(topics.trades, [trade(i, ts=ms(day)) for i, day in enumerate(around)])
    topics.produce(topics.trades, [b"\xff", b'{"pad": "' + b"y" * 70_000 + b'"}'])
    topics.drain_until_caught_up()
    with owner(own_db) as conn:
        parts = partitions_of(conn, "raw.trades")
        assert_no_overlap(parts)
        assert [p[0] for p in parts] == [
            "raw.trades_20190101_20190703", "raw.trades_20190703", "raw.trades_20190704",
            "raw.trades_20190705_20190708", "raw.trades_20190708", "raw.trades_20190709_20200101",
        ]
        placed = dict(conn.execute(
            "select ts, tableoid::regclass::text from raw.trades where kafka_topic = %s", (topics.trades,)
        ).fetchall())
        assert placed[ms(date(2019, 7, 4))] == "raw.trades_20190704"
        assert placed[ms(date(2019, 7, 6))] == "raw.trades_20190705_20190708"
        rows = conn.execute(
            "select octet_length(payload), payload_length, tableoid::regclass::text from raw.quarantine"
            " where kafka_topic = %s order by kafka_offset",
            (topics.trades,),
        ).fetchall()
        # the old table takes the rest of the month in which 007 ran, the months after get their own
        month = f"raw.quarantine_{datetime.now(UTC):%Y_%m}"
        assert [r[:2] for r in rows] == [(1, 1), (65_536, 70_011)]
        assert {r[2] for r in rows} <= {"raw.quarantine_before_007", month}


def test_merge_day_partitions_of_an_old_install_into_months_and_years(
    own_db: Settings, own_topics: Callable[[Settings], Topics], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An install that already made a day partition per weekday of history (the state earlier versions
    found) merges them with `tickhouse drain --merge-day-partitions`; no row changes."""
    before = tmp_path / "sql"
    before.mkdir()
    for path in sorted(SQL_DIR.glob("*.sql")):
        if path.name < "006":
            shutil.copy(path, before / path.name)
    ensure_roles_and_databases(own_db)
    apply_migrations(own_db, sql_dir=before)
    today = datetime.now(UTC).date()
    history = [d for d in (date(2018, 1, 1) + timedelta(days=i) for i in range(730)) if d.weekday() < 5]
    recent = [today - timedelta(days=i) for i in range(1, 40)]
    days = history + recent
    with connect(own_db, "loader", autocommit=True) as conn:
        for i, day in enumerate(days):
            conn.execute("select raw.ensure_day_partition('raw.trades', %s)", (day,))
            conn.execute(
                "insert into raw.trades (symbol, price, volume, ts, event_time, kafka_topic,"
                " kafka_partition, kafka_offset) values ('OLD', 1, %s, %s, to_timestamp(%s / 1000.0),"
                " 'old.topic', 0, %s)",
                (i, ms(day), ms(day), i),
            )
    apply_migrations(own_db)
    rows_sql = "select ts, volume, kafka_offset, event_time from raw.trades order by ts"
    with owner(own_db) as conn:
        rows_before = conn.execute(rows_sql).fetchall()
        assert len(partitions_of(conn, "raw.trades")) == len(days)

    monkeypatch.setenv("POSTGRES_DB", own_db.postgres_db)
    from drain.cli import main

    assert main(["--merge-day-partitions"]) == 0
    with owner(own_db) as conn:
        parts = partitions_of(conn, "raw.trades")
        assert_no_overlap(parts)
        assert conn.execute(rows_sql).fetchall() == rows_before
        names = [p[0] for p in parts]
        assert {"raw.trades_2018", "raw.trades_2019"} <= set(names)
        assert len(parts) == len(expected_partitions([ms(d) for d in days], today)), names
    assert main(["--merge-day-partitions"]) == 0  # nothing left to merge: a no-op

    topics = own_topics(own_db)  # the drain goes on loading into the merged ranges
    topics.produce(topics.trades, [trade(i, ts=ms(d)) for i, d in enumerate([date(2018, 3, 3), recent[0]])])
    topics.drain_until_caught_up()
    with owner(own_db) as conn:
        assert len(partitions_of(conn, "raw.trades")) == len(parts)
        assert conn.execute("select count(*) from raw.trades").fetchone() == (len(days) + 2,)
