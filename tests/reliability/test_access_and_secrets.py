"""Access and secrets: database roles, Airflow's API auth, loopback-only listeners, no secret in any
log, Kafka message or Airflow page, symbols validated before SQL or a URL."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ops.airflow_api import AirflowAPI
from ops.stack import airflow, apps, kafka_broker, postgres
from ops.stack.processes import Service
from ops.suite import free_port
from tests.finnhub_server import FakeFinnhub
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import VENV_BIN, RelTopics, env_int
from tests.reliability.process_environments import (
    Backend,
    EnvironmentSampler,
    backends_by_process,
    process_table,
    tcp_connections,
)
from tickhouse.config import ConfigError, Settings, parse_symbols, read_env_file

# serial (pyproject.toml): stops the stack's apps, starts a PostgreSQL of its own, triggers the
# shared DAGs and reads every process and log of the stack
pytestmark = pytest.mark.serial

# --- database roles ------------------------------------------------------------------------------


def _denied(settings: Settings, role: str, sql: str) -> str:
    """Run `sql` as `role`; returns the error (fails the test when it succeeds)."""
    with psycopg.connect(settings.conninfo(role), autocommit=True) as conn:
        # bi_reader's sessions default to read-only; a session may switch that off, so the
        # privileges are what is tested
        conn.execute("set default_transaction_read_only = off")
        try:
            conn.execute(sql)
        except psycopg.errors.InsufficientPrivilege as err:
            return str(err)
        except psycopg.Error as err:  # e.g. "schema does not exist" is a refusal too, but say so
            pytest.fail(f"{role}: {sql!r} failed for another reason than privileges: {err}")
    pytest.fail(f"{role} was allowed to run {sql!r}")


def test_database_roles(settings: Settings, scenario: Scenario) -> None:
    """bi_reader reads marts only; the loader cannot alter marts."""
    probe = f"rel_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(settings.conninfo("dbt"), autocommit=True) as conn:
        conn.execute(f"create table marts.{probe} (id int)")
        conn.execute(f"insert into marts.{probe} values (1)")
    checks = 0
    try:
        with psycopg.connect(settings.conninfo("bi_reader"), autocommit=True) as conn:
            assert conn.execute(f"select count(*) from marts.{probe}").fetchone() == (1,)
            # every marts table is readable
            tables = [r[0] for r in conn.execute(
                "select tablename from pg_tables where schemaname = 'marts'").fetchall()]
            for t in tables:
                conn.execute(f'select * from marts."{t}" limit 1')
            # nothing outside marts is readable
            unreadable = conn.execute(
                "select n.nspname || '.' || c.relname from pg_class c"
                " join pg_namespace n on n.oid = c.relnamespace"
                " where c.relkind in ('r', 'p', 'v', 'm')"
                " and n.nspname in ('raw', 'staging', 'intermediate', 'public')"
                " and has_table_privilege(current_user, c.oid, 'select')"
            ).fetchall()
            assert unreadable == [], f"bi_reader can read outside marts: {unreadable}"
            writable = conn.execute(
                "select n.nspname || '.' || c.relname from pg_class c"
                " join pg_namespace n on n.oid = c.relnamespace"
                " where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')"
                " and (has_table_privilege(current_user, c.oid, 'insert')"
                "   or has_table_privilege(current_user, c.oid, 'update')"
                "   or has_table_privilege(current_user, c.oid, 'delete')"
                "   or has_table_privilege(current_user, c.oid, 'truncate'))"
            ).fetchall()
            assert writable == [], f"bi_reader can write: {writable}"
            creatable = conn.execute(
                "select nspname from pg_namespace"
                " where has_schema_privilege(current_user, oid, 'create')"
            ).fetchall()
            assert creatable == [], f"bi_reader can create objects in {creatable}"
            checks += len(tables) + 4
        for sql in (
            "select * from raw.trades limit 1",
            "select * from raw.kafka_offsets limit 1",
            f"insert into marts.{probe} values (2)",
            f"update marts.{probe} set id = 3",
            f"delete from marts.{probe}",
            f"create table marts.{probe}_x (id int)",
            "create table raw.rel_x (id int)",
            "create schema rel_x",
        ):
            _denied(settings, "bi_reader", sql)
            checks += 1
        for sql in (
            f"alter table marts.{probe} add column x int",
            f"drop table marts.{probe}",
            f"insert into marts.{probe} values (2)",
            f"truncate marts.{probe}",
            f"create table marts.{probe}_x (id int)",
            "create schema rel_x",
        ):
            _denied(settings, "loader", sql)
            checks += 1
        # bi_reader cannot read Airflow's metadata (connections, variables) either
        with contextlib.suppress(psycopg.OperationalError), psycopg.connect(
            settings.conninfo("bi_reader", dbname=settings.airflow_db), autocommit=True
        ) as conn:
            readable = conn.execute(
                "select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = 'public' and c.relkind = 'r'"
                " and has_table_privilege(current_user, c.oid, 'select')"
            ).fetchall()
            assert readable == [], f"bi_reader can read Airflow tables {readable[:5]}"
            scenario.note("bi_reader may CONNECT to the Airflow database (PUBLIC default) but read nothing")
    finally:
        with psycopg.connect(settings.conninfo("dbt"), autocommit=True) as conn:
            conn.execute(f"drop table if exists marts.{probe}")
    scenario.messages = checks


# --- Airflow API ----------------------------------------------------------------------------------


def test_airflow_api_auth(settings: Settings, scenario: Scenario) -> None:
    """Airflow API: 401 without a token, 403 for the viewer triggering a DAG."""
    anonymous = AirflowAPI(settings.airflow_url)
    for method, path, body in (
        ("GET", "/api/v2/dags", None),
        ("GET", "/api/v2/connections", None),
        ("POST", "/api/v2/dags/stack_healthcheck/dagRuns", {"logical_date": None}),
        ("PATCH", "/api/v2/dags/ingest_market_data", {"is_paused": False}),
    ):
        status, _ = anonymous.request(method, path, body)
        assert status == 401, f"{method} {path} without a token: {status}"
    forged = AirflowAPI(settings.airflow_url)
    forged.token = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.invalid"
    assert forged.request("GET", "/api/v2/dags")[0] in (401, 403), "a forged token was accepted"
    status, _ = anonymous.request("POST", "/auth/token", {"username": "admin", "password": "wrong"})
    assert status in (401, 403), f"a wrong password got {status}"
    viewer = AirflowAPI(settings.airflow_url, "viewer", airflow.viewer_password(settings))
    assert viewer.request("GET", "/api/v2/dags")[0] == 200
    for method, path, body in (
        ("POST", "/api/v2/dags/stack_healthcheck/dagRuns", {"logical_date": None}),
        ("POST", "/api/v2/dags/ingest_market_data/dagRuns", {"logical_date": None}),
        ("PATCH", "/api/v2/dags/ingest_market_data", {"is_paused": False}),
        ("GET", "/api/v2/connections", None),
    ):
        status, _ = viewer.request(method, path, body)
        assert status == 403, f"viewer {method} {path}: {status}"
    scenario.messages = 11


# --- listening sockets ----------------------------------------------------------------------------


def _stack_pids(settings: Settings) -> dict[int, str]:
    roots: dict[int, str] = {}
    pg = postgres.server_pid(settings)
    if pg:
        roots[pg] = "postgres"
    services = [kafka_broker.service(settings), *airflow.services(settings),
                *(Service(a.name, settings.state_dir) for a in apps.APPS)]
    for svc in services:
        pid = svc.pid()
        if pid:
            roots[pid] = svc.name
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out = dict(roots)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if pid not in out and ppid in out:
                out[pid] = out[ppid]
                changed = True
    return out


def _listening(pids: dict[int, str]) -> list[tuple[str, str, int]]:
    """(owner, address, port) of every listening TCP socket held by `pids`."""
    inodes: dict[str, str] = {}
    for pid, name in pids.items():
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes[target[8:-1]] = name
    out = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A = LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_addr)
            # /proc prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            out.append((inodes[fields[9]], socket.inet_ntop(family, raw), int(hex_port, 16)))
    return out


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or (
        address.startswith("::ffff:127."))


def test_every_service_listens_on_loopback_only(settings: Settings, scenario: Scenario) -> None:
    """every stack service binds to 127.0.0.1 only."""
    pids = _stack_pids(settings)
    if not pids:
        pytest.skip("no stack process of ours is running")
    sockets = _listening(pids)
    assert sockets, "found no listening socket of the stack (cannot read /proc?)"
    exposed = [s for s in sockets if not _loopback(s[1])]
    scenario.messages = len(sockets)
    scenario.note("listening: " + ", ".join(sorted({f"{n}@{a}:{p}" for n, a, p in sockets})))
    assert not exposed, f"listening beyond loopback: {exposed}"
    names = {n for n, _, _ in sockets}
    assert {"postgres", "kafka", "airflow-api-server"} <= names, names


# --- secrets ---------------------------------------------------------------------------------------


def _secrets(settings: Settings, finnhub_key: str) -> dict[str, str]:
    values = {
        "POSTGRES_PASSWORD": settings.postgres_password,
        "LOADER_PASSWORD": settings.loader_password,
        "DBT_PASSWORD": settings.dbt_password,
        "BI_READER_PASSWORD": settings.bi_reader_password,
        "AIRFLOW_DB_PASSWORD": settings.airflow_db_password,
        "FINNHUB_API_KEY": finnhub_key,
    }
    # the Kafka principals' passwords; the broker's own two are in its 0600
    # server.properties, which is not searched
    generated = read_env_file(settings.secrets_file)
    for name in ("admin", "producer", "drain", "alerts", "monitor", "controller"):
        variable = f"KAFKA_{name.upper()}_PASSWORD"
        values[variable] = generated[variable]
    for name, value in values.items():
        assert len(value) >= 8, f"{name} is too short to grep for reliably"
    return values


def _grep_tree(paths: list[Path], secrets: dict[str, str]) -> list[str]:
    """Files under `paths` (binary included) containing any secret: 'file: NAME'."""
    pattern_file = Path(f"/tmp/rel-secrets-{uuid.uuid4().hex}")
    pattern_file.write_text("\n".join(secrets.values()) + "\n")
    pattern_file.chmod(0o600)
    hits: list[str] = []
    try:
        existing = [str(p) for p in paths if p.exists()]
        if not existing:
            return hits
        found = subprocess.run(
            ["grep", "-rlaF", "-f", str(pattern_file), "--exclude=secrets.env", "--exclude=*.tmp",
             "--exclude=passwords.json", *existing],
            capture_output=True, text=True, check=False,
        ).stdout.split()
        for file in found:
            data = Path(file).read_bytes()
            names = [n for n, v in secrets.items() if v.encode() in data]
            hits.append(f"{file}: {', '.join(names)}")
    finally:
        pattern_file.unlink(missing_ok=True)
    return hits


def test_secrets_appear_nowhere(
    settings: Settings, airflow_api: AirflowAPI, rel_topics: RelTopics, tmp_path: Path,
    scenario: Scenario,
) -> None:
    """Finnhub key, DB and Kafka passwords in no log, message or Airflow page."""
    key = f"RELFAKEKEY{uuid.uuid4().hex}"
    secrets = _secrets(settings, key)
    # a Finnhub producer run with the fake key: trades, a dropped connection, failing /quote calls,
    # and a REST endpoint that is down (requests' errors carry the full URL, token included)
    producer_log = tmp_path / "producer.log"
    with FakeFinnhub(token=key) as server:
        server.set_quote("RELS", c=10.0, d=0.1, dp=1.0, h=11.0, l=9.0, o=10.0, pc=9.9, t=int(time.time()))
        server.fail_quotes(2, 500)
        env = rel_topics.env(FINNHUB_API_KEY=key, FINNHUB_WS_URL=server.ws_url,
                             FINNHUB_API_URL=server.api_url)
        with producer_log.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "producer.cli", "--source", "finnhub", "--symbols", "RELS",
                 "--quotes-every", "1", "--no-status", "--metrics-port", "0", "--log-level", "DEBUG"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            try:
                server.wait_subscribed(["RELS"], timeout=30)
                server.send_trades([{"s": "RELS", "p": 10.5, "v": 3, "t": int(time.time() * 1000)}])
                server.drop_connections()
                server.wait_subscribed(["RELS"], timeout=30)
                server.send_trades([{"s": "RELS", "p": 10.6, "v": 4, "t": int(time.time() * 1000)}])
                time.sleep(3)
            finally:
                proc.terminate()
                proc.wait(30)
        dead_port = free_port()
        env["FINNHUB_API_URL"] = f"http://127.0.0.1:{dead_port}/api/v1"
        with producer_log.open("a") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "producer.cli", "--source", "finnhub", "--symbols", "RELS",
                 "--quotes-every", "1", "--no-status", "--metrics-port", "0", "--log-level", "DEBUG"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
            time.sleep(4)
            proc.terminate()
            proc.wait(30)
    text = producer_log.read_text()
    assert "RELS" in text and ("retrying" in text or "attempt" in text), text[-2000:]

    # a DAG run, so that there are task logs and API pages about it
    run = airflow_api.run_dag("stack_healthcheck", timeout=180)
    assert run["state"] == "success", run
    run_id = run["dag_run_id"]

    places = [
        settings.state_dir / "logs",
        airflow.airflow_home(settings) / "logs",
        postgres.log_file(settings),
        kafka_broker.kafka_dir(settings) / "data",
        settings.project_root / "dbt_project" / "logs",
        settings.project_root / "logs",
        producer_log,
    ]
    hits = _grep_tree(places, secrets)

    pages: list[tuple[str, str]] = []
    paths = [
        "/api/v2/dags", "/api/v2/dags/stack_healthcheck", "/api/v2/dags/stack_healthcheck/details",
        "/api/v2/dags/ingest_market_data/details", f"/api/v2/dags/stack_healthcheck/dagRuns/{run_id}",
        "/api/v2/connections", "/api/v2/variables", "/api/v2/config", "/api/v2/importErrors",
        "/api/v2/plugins", "/api/v2/providers", "/api/v2/pools", "/api/v2/version",
        "/api/v2/monitor/health", "/api/v2/dagSources/stack_healthcheck",
        "/api/v2/dagSources/ingest_market_data", "/api/v2/eventLogs?limit=200",
        "/api/v2/dags/stack_healthcheck/dagRuns/~/taskInstances",
    ]
    for ti in airflow_api.task_instances("stack_healthcheck", run_id):
        base = f"/api/v2/dags/stack_healthcheck/dagRuns/{run_id}/taskInstances/{ti['task_id']}"
        paths += [base, f"{base}/logs/{max(1, ti.get('try_number') or 1)}?full_content=true",
                  f"{base}/xcomEntries"]
    for path in paths:
        _status, body = airflow_api.request("GET", path)
        pages.append((path, json.dumps(body) if not isinstance(body, str) else body))
    for path in ("/", "/dags", "/login", "/auth/login"):
        with contextlib.suppress(Exception):
            import urllib.request

            with urllib.request.urlopen(settings.airflow_url + path, timeout=10) as resp:
                pages.append((path, resp.read().decode(errors="replace")))
    task_logs = [body for p, body in pages if "/logs/" in p]
    assert task_logs and all("Pre Execute" in body for body in task_logs), (
        f"the task logs could not be read through the API: {task_logs[:1]!r:.500}")
    for path, body in pages:
        for name, value in secrets.items():
            if value in body:
                hits.append(f"Airflow {path}: {name}")
    scenario.messages = len(pages)
    scenario.note(f"grepped {len(places)} places (logs, task logs, Kafka data) and {len(pages)} "
                  "Airflow pages")
    assert not hits, "secrets found:\n" + "\n".join(hits)


# --- symbols ------------------------------------------------------------------------------------------

# outside docs/interfaces/kafka-messages.md's symbol alphabet; ("../x" and "BRK/B" are inside it: see the URL
# check below)
HOSTILE_SYMBOLS = [
    "AAPL'; drop table raw.trades; --", "A B", "AAPL&token=x", "AAPL?x=1", "AAPL#x",
    "\u0000", "ÄPPLE", "A" * 33, "", "AAP\nL", "%41APL", "<script>", "AAPL\\", '"AAPL"',
]


def test_symbols_validated_before_sql_or_url(settings: Settings, scenario: Scenario) -> None:
    """symbols validated before SQL or a URL."""
    from producer.finnhub_stream import parse_frame
    from tickhouse.schemas import InvalidMessage, parse_trade

    for symbol in HOSTILE_SYMBOLS:
        with pytest.raises(ConfigError):
            parse_symbols("SYMBOLS", symbol)
        with pytest.raises(InvalidMessage, match="symbol"):
            parse_trade(json.dumps({"symbol": symbol, "price": 1, "volume": 1, "ts": 1}).encode())
        frame = parse_frame(json.dumps({"type": "trade", "data": [
            {"s": symbol, "p": 1, "v": 1, "t": 1}]}))
        assert not frame.trades and frame.problems and "symbol" in frame.problems[0]
    # the producer refuses them before opening any connection
    for symbol in HOSTILE_SYMBOLS[:4]:
        result = subprocess.run(
            [sys.executable, "-m", "producer.cli", "--source", "finnhub", "--symbols", symbol,
             "--no-status", "--metrics-port", "0"],
            env={**os.environ, "FINNHUB_API_KEY": "x" * 20, "FINNHUB_WS_URL": "ws://127.0.0.1:9",
                 "FINNHUB_API_URL": "http://127.0.0.1:9"},
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert result.returncode == 2 and "not a valid symbol" in result.stderr, result.stderr
    # symbols the contract admits but that mean something in a URL travel as a query value only
    import asyncio

    from producer.finnhub_quotes import QuotePoller

    odd = ["../../etc/passwd", "BRK/B:^X=1", "A.B-C_D"]
    with FakeFinnhub(token="k" * 20) as server:
        for symbol in odd:
            server.set_quote(symbol, c=10.0, d=0.1, dp=1.0, h=11.0, l=9.0, o=10.0, pc=9.9,
                             t=int(time.time()))
        got: list[Any] = []
        poller = QuotePoller(server.api_url, "k" * 20, lambda: odd, got.append, every=1)
        for symbol in odd:
            asyncio.run(poller.poll_symbol(symbol))
        assert [r[1] for r in server.quote_requests] == odd, server.quote_requests
        assert [q.symbol for q in got] == odd
    # SYMBOLS in the environment is validated for every process that loads settings
    from tickhouse.config import load_settings

    with pytest.raises(ConfigError):
        load_settings({**os.environ, "SYMBOLS": "AAPL,MSFT;drop"})
    scenario.messages = len(HOSTILE_SYMBOLS) * 3 + 5


# --- least privilege -------------------------------------------------------------------


def _environ(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None


def _every_secret(settings: Settings) -> dict[str, str]:
    """Every credential of the stack by the role it belongs to."""
    from ops.stack.credentials import SUPERUSER_PASSWORD

    generated = read_env_file(settings.secrets_file)
    superuser_password = generated.get(SUPERUSER_PASSWORD, "")
    assert len(superuser_password) >= 16, "setup generated no bootstrap superuser password"
    every = {
        "owner": settings.postgres_password,
        "superuser": superuser_password,
        "loader": settings.loader_password,
        "dbt": settings.dbt_password,
        "bi_reader": settings.bi_reader_password,
        "monitor": settings.monitor_password,
        "airflow admin": airflow.admin_password(settings),
        # Kafka's principals and the broker-controller login
        **{
            f"kafka {name}": generated[f"KAFKA_{name.upper()}_PASSWORD"]
            for name in ("admin", "producer", "drain", "alerts", "monitor", "controller")
        },
    }
    for name, value in every.items():
        assert len(value) >= 8, f"{name}'s password is too short to look for reliably"
    return every


# whose passwords each kind of process may hold; Airflow's are in the connections
# tickhouse_warehouse, tickhouse_dbt, tickhouse_kafka (the drain) and tickhouse_kafka_producer
# (backfill) of every Airflow process's environment, which its tasks read
ALLOWED = {
    "airflow": {"loader", "dbt", "kafka drain", "kafka producer"},
    "alerts": {"kafka alerts"},
    "metrics": {"monitor", "bi_reader", "kafka monitor"},
    "dashboard": {"bi_reader"},
    "docs": set(),
    # a user's `tickhouse` command reads the secrets file into its memory, not its environment:
    # neither it nor anything it starts holds a password there
    "command": set(),
}
# variables that hold one role's password: none is given to Airflow, whose tasks take their
# credentials from the connections
PASSWORD_VARIABLES = {b"POSTGRES_PASSWORD", b"LOADER_PASSWORD", b"DBT_PASSWORD", b"KAFKA_PASSWORD",
                      b"BI_READER_PASSWORD", b"MONITOR_PASSWORD", b"POSTGRES_SUPERUSER_PASSWORD"}


def _leaks(every: Mapping[str, str], kind: str, environ: bytes) -> list[str]:
    """The roles other than `kind`'s own whose passwords `environ` holds."""
    return [n for n, v in every.items() if n not in ALLOWED[kind] and v.encode() in environ]


def _holds(every: Mapping[str, str], environ: bytes) -> set[str]:
    return {n for n, v in every.items() if v.encode() in environ}


def test_each_process_holds_only_its_own_role(
    settings: Settings, scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Least privilege: owner no superuser, each app holds only its own role's password
    (PostgreSQL roles and Kafka principals)."""
    from exporter.pipeline import topic_loads

    every = _every_secret(settings)
    with psycopg.connect(settings.conninfo("owner"), autocommit=True) as conn:
        row = conn.execute(
            "select rolsuper, rolcreaterole, rolcreatedb, rolbypassrls from pg_roles"
            " where rolname = current_user").fetchone()
        assert row == (False, False, False, False), f"the owner role has {row}"
        assert conn.execute("select count(*) from pg_roles where rolsuper").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("alter role current_user superuser")
    # the exporter's role reads the drain's bookkeeping and nothing else of raw
    assert isinstance(topic_loads(settings), list)
    with psycopg.connect(settings.conninfo("monitor"), autocommit=True) as conn, pytest.raises(
        psycopg.errors.InsufficientPrivilege
    ):
        conn.execute("select 1 from raw.trades limit 1")

    # the apps, on free ports, as `make demo` starts them
    for app in apps.APPS:
        monkeypatch.setenv(app.port_variable, str(free_port()))
    started = apps.start_apps(settings)
    found: list[str] = []
    checked: dict[str, int] = {}
    try:
        # every app `make up` starts (started here or by an earlier test; docs only once its site
        # was generated)
        for app in apps.APPS:
            pid = Service(app.name, settings.state_dir).pid()
            if app.name == "docs" and pid is None:
                continue
            assert pid, f"{app.name} is not running"
            environ = _environ(pid)
            assert environ is not None and b"TICKHOUSE_NO_SECRETS_FILE=1" in environ
            found += [f"{app.name}: {n}" for n in _leaks(every, app.name, environ)]
            checked[app.name] = 1
    finally:
        for name in started:
            Service(name, settings.state_dir).stop(timeout=20)
    scenario.messages = sum(checked.values())
    scenario.note(f"environments read: {checked}; owner is no superuser; exporter reads "
                  "raw.load_stats as the monitor role")
    assert not found, "passwords of other roles found in process environments:\n" + "\n".join(found)


# --- least privilege while the pipeline runs -----------------------------------------------------

INGEST_DAG, TRANSFORM_DAG = "ingest_market_data", "transform_marts"
# how long all of them may take to be seen live (task starts and a cold dbt parse on a busy
# 2-core host included: ~60-75 s on a quiet one); the test polls and goes on at once
LIVE_TIMEOUT = env_int("RELIABILITY_LIVE_TIMEOUT", 600)
LIVE_SYMBOL = "LPRIV"
CLI_DRAIN_TRADES = 3000


def _command_env(base: Mapping[str, str], **extra: str) -> dict[str, str]:
    """A user's shell configured as docs/operations.md says: settings in .env, the generated
    credentials in the state dir's secrets file (read by the command itself)."""
    from ops.stack.credentials import GENERATED, KAFKA_IDENTITY

    env = {k: v for k, v in base.items() if k not in (*GENERATED, *KAFKA_IDENTITY)}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def _running_tasks(api: AirflowAPI, dag_id: str) -> list[dict[str, Any]]:
    status, body = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances?state=running")
    assert status == 200, f"task instances of {dag_id}: {status} {body}"
    return [ti for ti in body["task_instances"] if ti.get("pid")]


def _trees(pids: Mapping[str, int]) -> dict[str, set[int]]:
    """Each named process with its descendants, now."""
    table = process_table()
    out = {name: {pid} for name, pid in pids.items()}
    for child in table:
        lineage = []
        node = child
        while node in table and node > 1:
            node = table[node][0]
            lineage.append(node)
        for tree in out.values():
            if tree & set(lineage):
                tree.add(child)
    return out


def _session(
    backends: list[Backend], role: str, waiting: bool = False, application: str | None = None
) -> Backend | None:
    """A session as `role` (waiting for a lock, with `waiting`; of `application`, with that)."""
    return next((b for b in backends if b.role == role and (not waiting or b.wait_event_type == "Lock")
                 and application in (None, b.application)), None)


def _trade(i: int) -> bytes:
    return json.dumps({"symbol": LIVE_SYMBOL, "price": 10.0 + i % 7, "volume": 1 + i % 5,
                       "ts": int(time.time() * 1000) - i, "source": "lpriv"}).encode()


def test_live_pipeline_processes_hold_only_their_own_role(
    settings: Settings, airflow_api: AirflowAPI, rel_topics: RelTopics, scenario: Scenario,
    tmp_path: Path,
) -> None:
    """Least privilege while it runs: drain and dbt tasks, producer, CLI drain hold only their own."""
    from drain.targets.postgres.offsets import lock_key
    from tests.reliability.helpers import admin_conn, high_watermarks
    from tickhouse.config import drain_group

    every = _every_secret(settings)
    dags = (INGEST_DAG, TRANSFORM_DAG)
    paused = {dag: bool(airflow_api.wait_for_dag(dag)["is_paused"]) for dag in dags}
    roots = {svc.pid(): svc.name for svc in airflow.services(settings)}
    assert None not in roots, f"an Airflow component is not running: {roots}"

    # the commands start from a shell that holds no secret (the precondition of what is asserted)
    shell = _command_env(os.environ)
    assert not _holds(every, "\0".join(f"{k}={v}" for k, v in shell.items()).encode())
    rel_topics.produce(rel_topics.trades, (_trade(i) for i in range(CLI_DRAIN_TRADES)), key=b"LPRIV")
    login_port = settings.kafka_login_port
    evidence: dict[str, str] = {}
    producer: subprocess.Popen[bytes] | None = None
    cli_drain: subprocess.Popen[bytes] | None = None
    t0 = time.monotonic()

    def airflow_roots() -> dict[int, str]:
        found = {svc.pid(): svc.name for svc in airflow.services(settings)}
        return {pid: name for pid, name in found.items() if pid is not None}

    with contextlib.ExitStack() as stack:
        sampler = stack.enter_context(EnvironmentSampler(airflow_roots))
        watch = stack.enter_context(admin_conn(settings))  # sees every session's client port
        # the drains wait for their group's lock, which this session (in the warehouse's database:
        # advisory locks are per database) holds: each is caught live, connected as the loader,
        # for as long as the test needs
        gate = stack.enter_context(psycopg.connect(settings.conninfo("owner"), autocommit=True))
        locks = {"ingest": lock_key(drain_group()), "cli drain": lock_key(rel_topics.group)}
        for key in locks.values():
            gate.execute("select pg_advisory_lock(%s)", (key,))

        def unlock(name: str) -> None:
            gate.execute("select pg_advisory_unlock(%s)", (locks.pop(name),))

        @stack.callback
        def _stop_everything() -> None:
            for name in list(locks):
                with contextlib.suppress(psycopg.Error):
                    unlock(name)
            for proc in (producer, cli_drain):
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(30)
                    if proc.poll() is None:
                        proc.kill()
            # the DAGs as they were: a DAG this test switched on is switched off again, and its
            # runs end now rather than loop (the drain) or build for minutes (dbt)
            for dag, was_paused in paused.items():
                if not was_paused:
                    continue
                airflow_api.request("PATCH", f"/api/v2/dags/{dag}", {"is_paused": True})
                for state in ("running", "queued"):
                    _, body = airflow_api.request("GET", f"/api/v2/dags/{dag}/dagRuns?state={state}")
                    for run in (body or {}).get("dag_runs", []):
                        airflow_api.request("PATCH", f"/api/v2/dags/{dag}/dagRuns/{run['dag_run_id']}",
                                            {"state": "failed"})

        # a producer as a user runs it, logged in as the producer principal; its trades keep the
        # ingest DAG's drain (and its hot dbt runs) busy
        producer = subprocess.Popen(
            [str(VENV_BIN / "tickhouse"), "produce", "--source", "synthetic", "--symbols", LIVE_SYMBOL,
             "--rate", "50", "--duration", str(LIVE_TIMEOUT * 3), "--metrics-port", "0", "--no-status"],
            env=_command_env(os.environ, KAFKA_USERNAME="producer"), cwd=settings.project_root,
            stdout=subprocess.DEVNULL, stderr=stack.enter_context((tmp_path / "produce.log").open("w")),
        )
        sampler.add_root(producer.pid, "tickhouse produce")
        # a drain from the shell, of its own topics, validating in worker processes (its children)
        cli_drain = subprocess.Popen(
            [str(VENV_BIN / "tickhouse"), "drain", "--once"],
            env=_command_env(
                os.environ, TRADES_TOPIC=rel_topics.trades, QUOTES_TOPIC=rel_topics.quotes,
                ALERTS_TOPIC=rel_topics.alerts, CANDLES_TOPIC=rel_topics.candles,
                DRAIN_GROUP=rel_topics.group, DRAIN_DQ_POLICY="off", DRAIN_PARSE_WORKERS="2",
            ),
            cwd=settings.project_root, stdout=subprocess.DEVNULL,
            stderr=stack.enter_context((tmp_path / "drain.log").open("w")),
        )
        sampler.add_root(cli_drain.pid, "tickhouse drain")
        for dag in dags:
            status, body = airflow_api.request("PATCH", f"/api/v2/dags/{dag}", {"is_paused": False})
            assert status == 200, f"unpause {dag}: {status} {body}"
            status, body = airflow_api.request(
                "POST", f"/api/v2/dags/{dag}/dagRuns", {"logical_date": None, "conf": {}})
            assert status in (200, 201), f"trigger {dag}: {status} {body}"
        trades_start = sum(high_watermarks(settings, settings.trades_topic).values())

        task_pid: dict[str, int] = {}
        deadline = time.monotonic() + LIVE_TIMEOUT
        wanted = {"ingest task waits", "ingest task runs dbt", "cli drain waits", "cli drain done",
                  "transform task runs dbt", "producer publishes"}
        while wanted - evidence.keys():
            assert time.monotonic() < deadline, (
                f"not seen live within {LIVE_TIMEOUT} s: {sorted(wanted - evidence.keys())}; "
                f"seen: {evidence}")
            if sampler.error is not None:
                raise AssertionError(f"the environment sampler failed: {sampler.error!r}")
            # a task is followed from its first running instance until it was seen live; one that
            # ended before that (a transform task that built no model, say) gives way to the next
            for dag, name in ((INGEST_DAG, "ingest"), (TRANSFORM_DAG, "transform")):
                frozen = any(key.startswith(name) for key in evidence)
                if not frozen and (name not in task_pid or not Path(f"/proc/{task_pid[name]}").exists()):
                    for ti in _running_tasks(airflow_api, dag):
                        if dag == TRANSFORM_DAG or ti["task_id"] == "drain":
                            task_pid[name] = int(ti["pid"])
                            break
            followed = dict(task_pid)
            if cli_drain.poll() is None:
                followed["cli drain"] = cli_drain.pid
            followed["producer"] = producer.pid
            trees = _trees(followed)
            pids = set().union(*trees.values())
            held = backends_by_process(watch, pids, settings.postgres_port)
            sessions = {name: [b for b in held if b.client_pid in tree] for name, tree in trees.items()}
            loader, dbt = settings.loader_user, settings.dbt_user
            ingest, cli, transform = (sessions.get(n, []) for n in ("ingest", "cli drain", "transform"))

            if "ingest task waits" not in evidence and (b := _session(ingest, loader, True)):
                sampler.wait_passes()  # the task process and every child of it read while it waits
                evidence["ingest task waits"] = (f"{INGEST_DAG}.drain pid {task_pid['ingest']} (task "
                                                 f"instance running) waits for the group lock as {b.role}")
                unlock("ingest")
            elif "ingest task waits" in evidence and "ingest task runs dbt" not in evidence and (
                    b := _session(ingest, dbt, application="dbt")):
                sampler.wait_passes()
                evidence["ingest task runs dbt"] = f"its hot dbt run, connected as {b.role} ({b.application})"
            if "cli drain waits" not in evidence and (b := _session(cli, loader, True)):
                sampler.wait_passes()
                evidence["cli drain waits"] = f"tickhouse drain pid {cli_drain.pid} waits as {b.role}"
                unlock("cli drain")
            elif "cli drain waits" in evidence and "cli drain done" not in evidence and (
                    cli_drain.poll() is not None):
                assert cli_drain.returncode == 0, (
                    f"tickhouse drain failed: {(tmp_path / 'drain.log').read_text()[-3000:]}")
                evidence["cli drain done"] = "exited 0"
            if "transform task runs dbt" not in evidence and (
                    b := _session(transform, dbt, application="dbt")):
                sampler.wait_passes()
                evidence["transform task runs dbt"] = (f"{TRANSFORM_DAG} task pid {task_pid['transform']}"
                                                       f" connected as {b.role} ({b.application})")
            if "producer publishes" not in evidence and producer.poll() is None:
                to_broker = [c for c in tcp_connections(trees["producer"]) if c[2] == login_port]
                published = sum(high_watermarks(settings, settings.trades_topic).values()) - trades_start
                if to_broker and published > 0 and producer.poll() is None:
                    sampler.wait_passes()
                    evidence["producer publishes"] = (f"tickhouse produce pid {producer.pid} logged in at "
                                                      f"port {login_port}, {published} trades so far")
            assert producer.poll() is None, (
                f"the producer stopped: {(tmp_path / 'produce.log').read_text()[-3000:]}")
            time.sleep(0.2)
        live_seconds = time.monotonic() - t0
        sampled = sampler.sampled()

    with psycopg.connect(settings.conninfo("owner"), autocommit=True) as conn:
        loaded = conn.execute("select count(*) from raw.trades where kafka_topic = %s",
                              (rel_topics.trades,)).fetchone()
    assert loaded == (CLI_DRAIN_TRADES,), f"the CLI drain loaded {loaded} of {CLI_DRAIN_TRADES}"

    found: list[str] = []
    # a process that sets its title (setproctitle: Airflow's API server, its workers and task
    # processes) writes it over its environment block, which /proc then shows empty: what such a
    # process holds is what it started with (its parent's) and what it passes on, read from the
    # children it starts (Python's resource tracker gets the environment as it is at that moment)
    readable = [s for s in sampled if s.variables()]
    titled = len(sampled) - len(readable)
    [scheduler] = [s for s in readable if s.pid in roots and roots[s.pid] == "airflow-scheduler"]
    inherited = scheduler.variables()  # what every worker and task starts from
    assert inherited.get(b"TICKHOUSE_NO_SECRETS_FILE") == b"1", "Airflow's tasks may read the secrets file"
    # what they hold: the loader's, dbt's and the drain's and producer's Kafka logins, in the
    # connections the tasks read
    assert _holds(every, scheduler.environ) == ALLOWED["airflow"], _holds(every, scheduler.environ)
    by_kind: dict[str, int] = {}
    for s in readable:
        kind = "airflow" if s.root.startswith("airflow-") else "command"
        by_kind[kind] = by_kind.get(kind, 0) + 1
        found += [f"{s.root} pid {s.pid} ({s.cmdline[:80]}): {n}" for n in _leaks(every, kind, s.environ)]
        if kind == "airflow":
            # the loader's and dbt's passwords are in the connections only, not variables
            found += [f"{s.root} pid {s.pid}: variable {n.decode()}"
                      for n in s.variables().keys() & PASSWORD_VARIABLES]
            # and no process below Airflow's gets a credential beyond the environment Airflow
            # started with: what a task puts into its own environment while it runs (a Kafka
            # login, dbt's password) stays in it
            found += [f"{s.root} pid {s.pid} ({s.cmdline[:80]}): variable {n.decode()}"
                      for n, v in s.variables().items() if _holds(every, v) and inherited.get(n) != v]
    children_of = {name: sum(1 for s in readable if pid in s.lineage) for name, pid in task_pid.items()}
    trackers = sum(1 for s in readable if s.root.startswith("airflow-") and "resource_tracker" in s.cmdline)
    for name, pid in (("cli drain", cli_drain.pid), ("producer", producer.pid)):
        children_of[name] = sum(1 for s in readable if pid in s.lineage)
        assert any(s.pid == pid for s in readable), f"the {name}'s environment was not read"
    assert children_of["cli drain"] >= 1, "saw no parse worker of the CLI drain"
    scenario.messages = len(readable)
    scenario.note(f"environments read: {by_kind} ({titled} overwritten by a process title; "
                  f"{trackers} resource trackers below Airflow), children: {children_of}; "
                  f"live for {live_seconds:.0f} s: " + "; ".join(evidence.values()))
    assert not found, "passwords found in process environments that must not hold them:\n" + "\n".join(found)


def test_cluster_dir_in_var_tmp_refuses_planted_paths(settings: Settings, scenario: Scenario) -> None:
    """Cluster dir in /var/tmp: a planted symlink or foreign-owned dir is refused, never followed."""
    import dataclasses
    import hashlib
    import pwd
    import shutil
    import stat
    import tempfile

    from ops.stack.processes import StackError

    if os.geteuid() != 0:
        pytest.skip("the /var/tmp cluster home is used only when setup runs as root")
    server = pwd.getpwnam(postgres.SERVER_USER)
    unreachable = Path(tempfile.mkdtemp(prefix="rel-state-"))  # 0700 root: `postgres` cannot enter
    settings_for = dataclasses.replace(settings, state_dir=unreachable)
    shared = Path("/var/tmp") / f"tickhouse-{hashlib.sha256(str(unreachable).encode()).hexdigest()[:12]}"
    victim = Path(tempfile.mkdtemp(prefix="rel-victim-"))
    victim_mode = victim.stat().st_mode
    try:
        os.symlink(victim, shared)
        with pytest.raises(StackError, match="not a plain directory"):
            postgres.cluster_dir(settings_for)
        assert os.lstat(shared).st_mode & stat.S_IFLNK and victim.stat().st_mode == victim_mode
        assert victim.stat().st_uid == 0 and not any(victim.iterdir()), "setup followed the link"
        shared.unlink()
        os.mkdir(shared, 0o777)
        os.chown(shared, 65534, 65534)  # another local user's (nobody's) directory
        with pytest.raises(StackError, match="belongs to"):
            postgres.cluster_dir(settings_for)
        assert os.lstat(shared).st_uid == 65534
        shared.rmdir()
        home = postgres.cluster_dir(settings_for)
        info = os.lstat(shared)
        assert home.parent == shared and stat.S_ISDIR(info.st_mode)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (server.pw_uid, 0o700)
    finally:
        if shared.is_symlink() or shared.is_file():
            shared.unlink()
        elif shared.exists():
            shutil.rmtree(shared)
        shutil.rmtree(unreachable)
        shutil.rmtree(victim)
    scenario.messages = 3
    scenario.note("a symlink and a nobody-owned /var/tmp/tickhouse-<hash> refused; "
                  "created 0700, owned by postgres")


def test_dags_take_warehouse_credentials_from_connections(
    settings: Settings, airflow_api: AirflowAPI, scenario: Scenario
) -> None:
    """DAG credentials from Airflow connections: a transform_marts task builds, no password variable."""
    env = airflow.airflow_env(settings)
    assert "LOADER_PASSWORD" not in env and "DBT_PASSWORD" not in env
    assert env["TICKHOUSE_NO_SECRETS_FILE"] == "1"
    assert settings.dbt_password in env["AIRFLOW_CONN_TICKHOUSE_DBT"]
    assert settings.loader_password in env["AIRFLOW_CONN_TICKHOUSE_WAREHOUSE"]
    # the drain's DAG runs (and loads) in tests/integration/drain/test_airflow_dag.py; the dbt
    # build of transform_marts here (its one task), in a worker's environment
    task = "dbt_build"
    # the view's owner, and the row version of its query (a rebuild replaces it in place)
    relation = "select pg_get_userbyid(c.relowner), r.xmin::text from pg_class as c" \
        " join pg_rewrite as r on r.ev_class = c.oid" \
        " where c.oid = to_regclass('staging.stg_tickhouse__trades')"
    with psycopg.connect(settings.conninfo("dbt"), autocommit=True) as conn:
        before = conn.execute(relation).fetchone()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "tasks", "test", "transform_marts", task],
        env=env, cwd=airflow.airflow_home(settings), capture_output=True, text=True, timeout=600,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    with psycopg.connect(settings.conninfo("dbt"), autocommit=True) as conn:
        after = conn.execute(relation).fetchone()
    # dbt replaced the view's query in place; only the dbt role (the connection's) may: the loader's
    # is the only other password in the worker's environment, and it cannot
    assert after is not None and after != before and after[0] == settings.dbt_user, (before, after)
    assert settings.dbt_password not in out, "dbt's password in the task's output"
    scenario.messages = 1
    scenario.note(f"transform_marts.{task} built as {settings.dbt_user} from connection tickhouse_dbt"
                  ", no password variable in the worker's environment")


def test_legacy_superuser_owner_is_split_without_data_loss(
    settings: Settings, scenario: Scenario, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Upgrade: a cluster whose owner was the bootstrap superuser is split, data and logins kept."""
    import dataclasses
    import shutil

    from tickhouse.warehouse import setup_warehouse

    old = dataclasses.replace(settings, state_dir=tmp_path / "state", postgres_port=free_port())
    # the cluster as versions before least privilege made it: the owner is the bootstrap superuser
    monkeypatch.setenv("POSTGRES_SUPERUSER", old.postgres_user)
    monkeypatch.setenv("POSTGRES_SUPERUSER_PASSWORD", old.postgres_password)
    home = postgres.cluster_dir(old)
    try:
        postgres.initdb(old)
        postgres.start(old)
        setup_warehouse(old)
        with psycopg.connect(old.conninfo("owner"), autocommit=True) as conn:
            assert conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone() == (
                True,)
            conn.execute("create table public.legacy_probe (id int)")
            conn.execute("insert into public.legacy_probe select generate_series(1, 1000)")
        with psycopg.connect(old.conninfo("loader"), autocommit=True) as conn:
            conn.execute(
                "insert into raw.load_stats (run_id, consumer_group, topic, target_table, started_at,"
                " finished_at, duration_ms, consumed, loaded, quarantined, partitions)"
                " values ('legacy', 'legacy', 'legacy', 'raw.trades', now(), now(), 1, 1, 1, 0, '{}')"
            )
        new_password = uuid.uuid4().hex
        monkeypatch.delenv("POSTGRES_SUPERUSER")
        monkeypatch.setenv("POSTGRES_SUPERUSER_PASSWORD", new_password)
        assert postgres.split_legacy_owner(old)
        setup_warehouse(old)
        postgres.transfer_ownership(old)
        assert not postgres.split_legacy_owner(old), "a second make up split again"
        with psycopg.connect(old.conninfo("owner"), autocommit=True) as conn:  # same password
            assert conn.execute(
                "select rolsuper, rolcreaterole from pg_roles where rolname = current_user"
            ).fetchone() == (False, False)
            assert conn.execute("select count(*) from public.legacy_probe").fetchone() == (1000,)
            assert conn.execute("select pg_get_userbyid(relowner) from pg_class"
                                " where relname = 'legacy_probe'").fetchone() == (old.postgres_user,)
            assert conn.execute("select pg_get_userbyid(datdba) from pg_database"
                                " where datname = current_database()").fetchone() == (old.postgres_user,)
            assert conn.execute("select rolname from pg_roles where oid = 10").fetchone() == (
                "tickhouse_superuser",)
            assert conn.execute("select count(*) from raw.load_stats where topic = 'legacy'"
                                ).fetchone() == (1,)
            conn.execute("drop table public.legacy_probe")  # the owner owns what it had
        with psycopg.connect(old.conninfo("monitor"), autocommit=True) as conn:
            assert conn.execute("select count(*) from raw.load_stats").fetchone() == (1,)
    finally:
        postgres.stop(old)
        shutil.rmtree(home.parent if home.parent.name.startswith("tickhouse-") else home,
                      ignore_errors=True)
    scenario.messages = 1001
    scenario.lost = 0
    scenario.note("owner renamed away from the bootstrap superuser (oid 10 -> tickhouse_superuser); "
                  "a new ordinary owner with the same password owns the database and its tables")
