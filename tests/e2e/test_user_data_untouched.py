"""`make test` leaves a user's stack and data alone.

A user has a running stack with data in it (as after `make demo`): trades in Kafka, drained into
raw.trades. `make test`'s runner (ops/suite.py, what scripts/run_tests.sh runs) then runs tests
that write to the stack they are given: the drain CLI tests (topics of their own, raw rows,
offsets, load stats) and a test that publishes to the default trades topic and drains it. Afterwards
the user's topics, offsets, raw rows and databases are exactly as before, the user's stack is still
running, and the test stack is stopped again.

The user's stack here is Kafka and PostgreSQL in a state dir of their own on free ports, with its
ports in the user's env file, as `make up` would start them; the runner gets the environment a user's
shell would have (TICKHOUSE_STATE_DIR and that env file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ops.stack import postgres
from ops.stack.processes import pid_alive, tickhouse_command
from ops.suite import free_port, passed_on
from tickhouse import kafka
from tickhouse.config import PROJECT_ROOT, Settings, load_settings

# serial (pyproject.toml): starts a user's stack and a whole `make test` stack of its own
pytestmark = pytest.mark.serial

SYMBOL = "USERS"
# A test that writes to the stack it runs against: the default trades topic, the drain, a topic of
# its own. Run by the runner below, it must reach the test stack only.
WRITER = textwrap.dedent(
    """
    import json
    from drain.options import load_options
    from drain.runner import drain_once
    from tickhouse import kafka
    from tickhouse.config import load_settings
    from tickhouse.warehouse import connect


    def test_writes_to_the_stack_it_is_given():
        settings = load_settings()
        kafka.ensure_topics(settings.kafka_bootstrap_servers, {"test.writer": kafka.TopicSpec(1)})
        producer = kafka.producer(settings.kafka_bootstrap_servers, "writer")
        for i in range(5):
            body = {"symbol": "WRITER", "price": 10 + i, "volume": 1, "ts": 1_763_649_000_000 + i}
            producer.produce(settings.trades_topic, value=json.dumps(body).encode(), key=b"WRITER")
        assert producer.flush(30) == 0
        drain_once(settings, load_options(settings, dq_policy="off", max_seconds=20))
        with connect(settings, "owner") as conn:
            row = conn.execute("select count(*) from raw.trades where symbol = 'WRITER'").fetchone()
        assert row is not None and row[0] >= 5
    """
)


def _run(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def workdir(settings: Settings) -> Iterator[Path]:
    """A folder for this test's two stacks: under the state dir of the stack the suite runs on,
    where PostgreSQL's server user may create a cluster (unlike pytest's private tmp_path)."""
    path = settings.state_dir / f"untouched-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def users_stack(
    workdir: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[dict[str, str], Settings]]:
    """A user's running stack (PostgreSQL, Kafka) with trades drained into raw.trades."""
    state = workdir / "user-state"
    env_file = workdir / "user.env"
    env_file.write_text(
        f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{free_port()}\nKAFKA_CONTROLLER_PORT={free_port()}\n"
        f"KAFKA_LOGIN_PORT={free_port()}\n"
        f"POSTGRES_PORT={free_port()}\nKAFKA_HEAP_OPTS=-Xms64m -Xmx256m\n"
    )
    env = {
        **passed_on(os.environ),
        "TICKHOUSE_STATE_DIR": str(state),
        "TICKHOUSE_ENV_FILE": str(env_file),
        "KAFKA_LIBS_DIR": os.environ.get("KAFKA_LIBS_DIR") or str(settings.state_dir / "kafka" / "libs"),
    }
    try:
        started = _run([tickhouse_command(), "up", "--only", "postgres,kafka"], env)
        assert started.returncode == 0, started.stdout + started.stderr
        user = load_settings(env)
        # this process's Kafka clients log in to the user's broker as its admin, at its
        # login listener
        monkeypatch.setenv("KAFKA_USERNAME", user.kafka_username)
        monkeypatch.setenv("KAFKA_PASSWORD", user.kafka_password)
        producer = kafka.producer(user.kafka_login_listener, "user")
        for i in range(20):
            body = {"symbol": SYMBOL, "price": 100 + i, "volume": 1, "ts": 1_763_649_000_000 + i}
            producer.produce(user.trades_topic, value=json.dumps(body).encode(), key=SYMBOL.encode())
        assert producer.flush(30) == 0
        del producer
        drained = _run([tickhouse_command(), "drain", "--once", "--dq-policy", "off"], env)
        assert drained.returncode == 0, drained.stdout + drained.stderr
        yield env, user
    finally:
        _run([tickhouse_command(), "down", "--only", "postgres,kafka"], env)


def snapshot(user: Settings) -> dict[str, Any]:
    """What a test run could change in the user's stack: topics and their end offsets, the raw
    rows by table and topic, the drain's bookkeeping, the databases."""
    topics = kafka.admin(user.kafka_login_listener).list_topics(timeout=10).topics
    ends = {
        name: kafka.watermarks(user.kafka_login_listener, name)
        for name in sorted(topics) if not name.startswith("__")
    }
    with psycopg.connect(user.conninfo("owner"), autocommit=True) as conn:
        raw = {
            table: conn.execute(
                f"select kafka_topic, count(*), max(loaded_at)::text from {table} group by 1 order by 1"
            ).fetchall()
            for table in ("raw.trades", "raw.quotes", "raw.alerts", "raw.candles", "raw.quarantine")
        }
        offsets = conn.execute(
            "select consumer_group, topic, partition, next_offset from raw.kafka_offsets order by 1, 2, 3"
        ).fetchall()
        stats = conn.execute("select count(*), max(finished_at)::text from raw.load_stats").fetchall()
        databases = conn.execute("select datname from pg_database order by 1").fetchall()
    return {"topics": ends, "raw": raw, "offsets": offsets, "load_stats": stats, "databases": databases}


def test_make_test_leaves_a_users_stack_and_data_alone(
    users_stack: tuple[dict[str, str], Settings], workdir: Path
) -> None:
    env, user = users_stack
    before = snapshot(user)
    assert before["raw"]["raw.trades"] and before["topics"][user.trades_topic]
    writer = workdir / "test_writer.py"
    writer.write_text(WRITER)
    test_state = workdir / "test-stack"
    done = _run(
        [
            sys.executable, "-m", "ops.suite", "-q", f"--rootdir={PROJECT_ROOT}",
            "-c", str(PROJECT_ROOT / "pyproject.toml"), "tests/integration/drain/test_cli.py",
            str(writer),
        ],
        {
            **env,
            "TICKHOUSE_TEST_STATE_DIR": str(test_state),
            "TICKHOUSE_TEST_COMPONENTS": "postgres,kafka",
            "TICKHOUSE_TEST_LINT": "0",
        },
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "3 passed" in done.stdout

    assert snapshot(user) == before
    # the user's stack still runs; the test stack was stopped again
    assert postgres.server_pid(user) is not None
    assert pid_alive(int((user.state_dir / "run" / "kafka.pid").read_text()))
    tested = load_settings({"TICKHOUSE_STATE_DIR": str(test_state)}, project_root=workdir)
    assert postgres.server_pid(tested) is None
    assert not any((test_state / "run").glob("*.pid"))
