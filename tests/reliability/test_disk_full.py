"""PostgreSQL's disk full during a drain: the drain fails cleanly and is retried, nothing is
acknowledged while the rows cannot be written, and everything loads exactly once when space returns.

The disk is a real one: a small tmpfs mounted for the test, holding a tablespace that is the default
of a database of this test's own (migrations applied, as `make up` does). A filler file leaves it
nearly full, so the drain's COPY into raw.trades fails with "No space left on device"; removing the
filler gives the space back. Mounting needs root (CAP_SYS_ADMIN): elsewhere the test is skipped.
(WAL stays on the cluster's own disk: a full pg_wal makes PostgreSQL stop, which this does not test.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.stack import postgres
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import (
    RelTopics,
    admin_conn,
    caught_up,
    check_trades_exactly_once,
    drain_until_caught_up,
    owner_conn,
    run_drain,
    start_replay,
    write_replay_csv,
)
from tickhouse.config import Settings
from tickhouse.schemas import now_ms
from tickhouse.warehouse import apply_migrations, load_reference_data

# serial (pyproject.toml): fills a disk
pytestmark = pytest.mark.serial

TRADES = 40_000
DISK_MB = 40


@contextlib.contextmanager
def _tiny_disk(root: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem for the tablespace needs root")
    root.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0755", "tmpfs", str(root)],
        capture_output=True, text=True, check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        space = root / "tablespace"
        space.mkdir()
        server = pwd.getpwnam(postgres.SERVER_USER)
        os.chown(space, server.pw_uid, server.pw_gid)
        yield space
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False, capture_output=True)
        with contextlib.suppress(OSError):
            root.rmdir()


def _fill(root: Path, leave_bytes: int) -> Path:
    """A filler file that leaves `leave_bytes` free on the filesystem of `root`."""
    filler = root / "filler"
    free = shutil.disk_usage(root).free
    with filler.open("wb") as out:
        out.truncate(0)
        chunk = b"\0" * (1 << 20)
        remaining = max(free - leave_bytes, 0)
        while remaining > 0:
            written = out.write(chunk[: min(len(chunk), remaining)])
            remaining -= written
        out.flush()
        os.fsync(out.fileno())
    return filler


def test_postgres_disk_full_during_a_drain(
    settings: Settings, rel_topics: RelTopics, tmp_path: Path, scenario: Scenario
) -> None:
    """PostgreSQL disk full during a drain, then space returns."""
    suffix = uuid.uuid4().hex[:8]
    db, tablespace = f"rel_diskfull_{suffix}", f"rel_tiny_{suffix}"
    mount_root = Path("/tmp") / f"tickhouse-rel-disk-{suffix}"  # reachable by the postgres user
    csv = tmp_path / "trades.csv"
    ids = write_replay_csv(csv, TRADES, ("RDF1", "RDF2", "RDF3"), now_ms() - 3_600_000, step_ms=5)
    mine = dataclasses.replace(settings, postgres_db=db)
    with _tiny_disk(mount_root) as space:
        with admin_conn(settings) as conn:
            conn.execute(f"create tablespace {tablespace} location '{space}'")
        try:
            with admin_conn(settings) as conn:
                conn.execute(f'create database {db} owner "{settings.postgres_user}" tablespace {tablespace}')
            apply_migrations(mine)
            load_reference_data(mine)
            # the trades go to Kafka first (the drain's input), then the disk is nearly full
            log = tmp_path / "producer.log"
            replay = start_replay(rel_topics.env(), csv, rel_topics.trades, log=log)
            assert replay.wait(timeout=300) == 0, log.read_text()[-3000:]
            filler = _fill(mount_root, leave_bytes=256 * 1024)
            env = rel_topics.env(POSTGRES_DB=db)
            failures = []
            for _ in range(3):  # what Airflow's task retries do
                attempt = run_drain(env, timeout=180)
                failures.append(attempt)
                assert attempt.returncode != 0, "the drain succeeded on a full disk"
                assert not caught_up(mine, rel_topics)
            errors = " ".join(r.stderr for r in failures)
            assert "No space left on device" in errors or "could not extend file" in errors, errors[-3000:]
            with owner_conn(mine) as conn:
                loaded = conn.execute(
                    "select count(*) from raw.trades where kafka_topic = %s", (rel_topics.trades,)
                ).fetchone()
            assert loaded == (0,), f"rows committed while the disk was full: {loaded}"
            filler.unlink()  # space returns
            runs = drain_until_caught_up(mine, rel_topics, env)
            result = check_trades_exactly_once(mine, rel_topics.trades, ids)
            scenario.messages, scenario.lost, scenario.doubled = TRADES, result.lost, result.doubled
            last_error = next(
                (ln for ln in failures[-1].stderr.splitlines() if "space" in ln or "extend" in ln), ""
            )
            scenario.note(
                f"{len(failures)} drains failed on the full disk ({last_error.strip()[:120]}); "
                f"{runs} drain(s) after the space returned"
            )
            assert result.lost == 0 and result.doubled == 0, result
        finally:
            with admin_conn(settings) as conn:
                conn.execute(f"drop database if exists {db} with (force)")
                conn.execute(f"drop tablespace if exists {tablespace}")
