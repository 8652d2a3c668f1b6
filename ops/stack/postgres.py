"""PostgreSQL 15 from the machine's server binaries: initdb, configure, start, stop.

PostgreSQL refuses to run as root, so when setup runs as root the cluster belongs to the `postgres`
system user (Debian's server package creates it) and every server command runs as that user.

The cluster's bootstrap superuser is `tickhouse_superuser` (password `POSTGRES_SUPERUSER_PASSWORD`
in the generated credentials, read by setup only); the warehouse owner `POSTGRES_USER` is an
ordinary role it creates. A cluster made by an older version, whose bootstrap superuser *was* the
owner, is split at the next `make up` (`split_legacy_owner`).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from ops.stack.processes import StackError, pid_alive, port_open, require_port_free
from tickhouse.config import Settings
from tickhouse.warehouse import admin_conninfo, superuser

SERVER_USER = "postgres"


def bin_dir() -> Path:
    """Where initdb/pg_ctl live: $PG_BIN_DIR, Debian's newest /usr/lib/postgresql/N/bin, or PATH."""
    if os.environ.get("PG_BIN_DIR"):
        return Path(os.environ["PG_BIN_DIR"])
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise StackError(
        "PostgreSQL server binaries not found (initdb); install Debian's postgresql-15 package "
        "or set PG_BIN_DIR to the directory holding initdb and pg_ctl"
    )


def _as_root() -> bool:
    return os.geteuid() == 0


def _run_as_server_user(argv: list[str]) -> subprocess.CompletedProcess[str]:
    user = SERVER_USER if _as_root() else None
    return subprocess.run(argv, user=user, text=True, capture_output=True, check=False)


def _server_user_can_use(path: Path) -> bool:
    if not _as_root():
        return True
    probe = subprocess.run(["test", "-x", str(path)], user=SERVER_USER, check=False, capture_output=True)
    return probe.returncode == 0


def cluster_dir(settings: Settings) -> Path:
    """The cluster's home: `<state>/postgres`, or a /var/tmp folder when the postgres user cannot
    reach the project directory (e.g. a clone under /root)."""
    preferred = settings.state_dir / "postgres"
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if _server_user_can_use(settings.state_dir):
        return preferred
    digest = hashlib.sha256(str(settings.state_dir).encode()).hexdigest()[:12]
    shared = Path("/var/tmp") / f"tickhouse-{digest}"
    private_dir(shared)
    return shared / "postgres"


def private_dir(path: Path) -> None:
    """Make `path` a directory only the server user can enter (0700, owned by it), created
    atomically; refuse a symlink or a directory someone else owns, checked with lstat and fixed
    through a descriptor opened without following links (/var/tmp is shared)."""
    entry = pwd.getpwnam(SERVER_USER) if _as_root() else pwd.getpwuid(os.geteuid())
    # fails if anything, a planted link included, is there already
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise StackError(
            f"{path} exists and is not a plain directory (a symlink or a file someone planted?); "
            "setup will not use it: remove it, or set TICKHOUSE_STATE_DIR to a directory the "
            f"'{SERVER_USER}' user can reach"
        )
    if info.st_uid not in (0, entry.pw_uid):
        try:
            owner = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            owner = str(info.st_uid)
        raise StackError(
            f"{path} belongs to {owner!r}, not to {entry.pw_name!r} or root: someone else "
            "created it; setup will not use it. Remove it, or set TICKHOUSE_STATE_DIR to a "
            f"directory the '{entry.pw_name}' user can reach"
        )
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        # the same directory lstat saw, not one swapped in since
        if os.fstat(fd).st_ino != info.st_ino:
            raise StackError(f"{path} changed while setup checked it; run `make up` again")
        os.fchown(fd, entry.pw_uid, entry.pw_gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def data_dir(settings: Settings) -> Path:
    return cluster_dir(settings) / "data"


def log_file(settings: Settings) -> Path:
    return cluster_dir(settings) / "postgres.log"


def server_pid(settings: Settings) -> int | None:
    """The postmaster's pid from postmaster.pid, if that process is alive."""
    pid_path = data_dir(settings) / "postmaster.pid"
    try:
        pid = int(pid_path.read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError, PermissionError):
        return None
    return pid if pid_alive(pid) else None


def _chown_to_server_user(path: Path) -> None:
    if _as_root():
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def initdb(settings: Settings) -> bool:
    """Create the cluster if it does not exist; returns True when it was created."""
    data = data_dir(settings)
    if (data / "PG_VERSION").exists():
        return False
    home = cluster_dir(settings)
    home.parent.mkdir(parents=True, exist_ok=True)
    if home.is_symlink():
        raise StackError(f"{home} is a symlink; setup will not create the cluster through it")
    home.mkdir(mode=0o700, exist_ok=True)
    _chown_to_server_user(home)
    if _as_root():
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise StackError(
                "running as root but there is no 'postgres' system user to own the cluster; "
                "install Debian's postgresql package or run as a non-root user"
            ) from None
    admin = superuser()
    if admin is None:
        raise StackError("POSTGRES_SUPERUSER_PASSWORD is missing; run `make up` to generate it")
    with tempfile.NamedTemporaryFile("w", dir=home, delete=False) as pwfile:
        pwfile.write(admin[1] + "\n")
    pw_path = Path(pwfile.name)
    _chown_to_server_user(pw_path)
    try:
        result = _run_as_server_user(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(data),
                "-U",
                admin[0],
                f"--pwfile={pw_path}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
    finally:
        pw_path.unlink(missing_ok=True)
    if result.returncode != 0:
        raise StackError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
    _write_config(settings)
    return True


def _write_config(settings: Settings) -> None:
    conf = data_dir(settings) / "postgresql.conf"
    # Sized for a 2-core machine shared with Kafka and Airflow.
    extra = f"""
# --- Tickhouse local stack ---
listen_addresses = '{settings.postgres_host}'
port = {settings.postgres_port}
unix_socket_directories = ''
max_connections = 150
shared_buffers = 256MB
work_mem = 32MB
maintenance_work_mem = 256MB
max_wal_size = 2GB
checkpoint_timeout = 10min
timezone = 'UTC'
log_timezone = 'UTC'
log_min_messages = warning
log_line_prefix = '%m [%p] %u@%d '
"""
    with open(conf, "a", encoding="utf-8") as out:
        out.write(extra)


# The shared lock table holds max_locks_per_transaction x (connections + workers) locks. A query
# locks every partition it cannot prune and each of their indexes, and dbt runs several at once; a
# drain run whose batch spreads over every year since 1970 holds ~700 per raw table (creating and
# filling ~70 partitions). The partition scheme keeps those figures bounded (migration 006) so the
# default of 64 is enough; 128 is headroom for the Airflow, dbt and BI sessions of the same stack.
MAX_LOCKS_PER_TRANSACTION = 128


def _sync_listen_settings(settings: Settings) -> None:
    """Keep host/port (and the settings Tickhouse relies on) in postgresql.auto.conf, at every
    start, so clusters created by older versions get them too."""
    auto = data_dir(settings) / "postgresql.auto.conf"
    lines = [
        "# Written by Tickhouse at every start from POSTGRES_HOST / POSTGRES_PORT.\n",
        f"listen_addresses = '{settings.postgres_host}'\n",
        f"port = {settings.postgres_port}\n",
        f"max_locks_per_transaction = {MAX_LOCKS_PER_TRANSACTION}\n",
    ]
    auto.write_text("".join(lines))
    _chown_to_server_user(auto)


def start(settings: Settings) -> bool:
    """Start the server if it is not running; returns True when this call started it."""
    if server_pid(settings) is not None:
        if not port_open(settings.postgres_host, settings.postgres_port):
            raise StackError(
                f"PostgreSQL of this stack is running (pid {server_pid(settings)}) but not on "
                f"{settings.postgres_host}:{settings.postgres_port}; run `make down` then `make up`"
            )
        return False
    require_port_free(settings.postgres_host, settings.postgres_port, "POSTGRES_PORT")
    _sync_listen_settings(settings)
    log = log_file(settings)
    log.touch(exist_ok=True)
    _chown_to_server_user(log)
    result = _run_as_server_user(
        [str(bin_dir() / "pg_ctl"), "-D", str(data_dir(settings)), "-l", str(log), "-w", "-t", "60", "start"]
    )
    if result.returncode != 0:
        tail = "\n  ".join(log.read_text(errors="replace").splitlines()[-10:])
        raise StackError(f"PostgreSQL did not start:\n{result.stdout}{result.stderr}\n  {tail}")
    return True


def stop(settings: Settings) -> bool:
    """Stop the server (fast shutdown, waiting for exit); returns True if it was running."""
    if server_pid(settings) is None:
        return False
    result = _run_as_server_user(
        [str(bin_dir() / "pg_ctl"), "-D", str(data_dir(settings)), "-m", "fast", "-w", "-t", "60", "stop"]
    )
    if result.returncode != 0:
        raise StackError(f"PostgreSQL did not stop:\n{result.stdout}{result.stderr}")
    return True


def _connects(conninfo: str) -> bool:
    try:
        psycopg.connect(conninfo).close()
    except psycopg.OperationalError:
        return False
    return True


def split_legacy_owner(settings: Settings) -> bool:
    """Upgrade a cluster whose bootstrap superuser is the warehouse owner (older versions):
    that role is renamed to the bootstrap superuser (it stays the superuser, with its new
    password), a new ordinary owner role takes POSTGRES_USER's name and password, and it is given
    what the old one owned in the warehouse. No data moves. Returns True when it did so."""
    admin = superuser()
    if admin is None or admin[0] == settings.postgres_user or _connects(admin_conninfo(settings)):
        return False
    with psycopg.connect(settings.conninfo("owner", "postgres"), autocommit=True) as conn:
        row = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
        if not row or not row[0]:
            raise StackError(
                f"cannot log in as the bootstrap superuser {admin[0]!r} and the owner "
                f"{settings.postgres_user!r} is no superuser: was POSTGRES_SUPERUSER_PASSWORD "
                f"removed from {settings.secrets_file}?"
            )
        # a session's own role cannot be renamed: a one-off superuser does it
        helper = f"tickhouse_setup_{secrets.token_hex(4)}"
        helper_password = secrets.token_hex(16)
        conn.execute(
            sql.SQL("create role {} superuser login password {}").format(
                sql.Identifier(helper), sql.Literal(helper_password)
            )
        )
    helper_info = (
        f"host={settings.postgres_host} port={settings.postgres_port} dbname=postgres "
        f"user={helper} password={helper_password} connect_timeout=5"
    )
    try:
        with psycopg.connect(helper_info, autocommit=True) as conn:
            conn.execute(
                sql.SQL("alter role {} rename to {}").format(
                    sql.Identifier(settings.postgres_user), sql.Identifier(admin[0])
                )
            )
            conn.execute(
                sql.SQL("alter role {} password {}").format(sql.Identifier(admin[0]), sql.Literal(admin[1]))
            )
            conn.execute(
                sql.SQL(
                    "create role {} login nosuperuser nocreaterole nocreatedb password {}"
                ).format(sql.Identifier(settings.postgres_user), sql.Literal(settings.postgres_password))
            )
    finally:
        with psycopg.connect(admin_conninfo(settings), autocommit=True) as conn:
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(helper)))
    transfer_ownership(settings)
    return True


def transfer_ownership(settings: Settings) -> int:
    """Give the owner role what the bootstrap superuser owns in the warehouse database (its
    database, schemas, tables, views, sequences, functions, types); idempotent, returns how many
    objects changed hands."""
    admin = superuser()
    if admin is None or admin[0] == settings.postgres_user:
        return 0
    owner = sql.Identifier(settings.postgres_user)
    with psycopg.connect(admin_conninfo(settings, settings.postgres_db), autocommit=True) as conn:
        su = "(select oid from pg_roles where rolname = %s)"
        system = "not in ('pg_catalog', 'information_schema', 'pg_toast')"
        statements: list[sql.Composed] = []
        if conn.execute(f"select 1 from pg_database where datname = current_database() and datdba = {su}",
                        (admin[0],)).fetchone():
            statements.append(sql.SQL("alter database {} owner to {}").format(
                sql.Identifier(settings.postgres_db), owner))
        for (name,) in conn.execute(
            f"select nspname from pg_namespace where nspowner = {su} and nspname {system}"
            " and nspname not like 'pg_temp%%' and nspname not like 'pg_toast%%'", (admin[0],)
        ).fetchall():
            statements.append(sql.SQL("alter schema {} owner to {}").format(sql.Identifier(name), owner))
        for schema, name, kind in conn.execute(
            f"select n.nspname, c.relname, c.relkind from pg_class c"
            f" join pg_namespace n on n.oid = c.relnamespace"
            f" where c.relowner = {su} and n.nspname {system} and c.relkind in ('r','p','v','m','S','f')"
            # a sequence owned by a column follows its table
            " and not (c.relkind = 'S' and exists (select 1 from pg_depend d where d.objid = c.oid"
            "  and d.classid = 'pg_class'::regclass and d.deptype in ('a', 'i')))",
            (admin[0],),
        ).fetchall():
            what = {"v": "view", "m": "materialized view", "S": "sequence", "f": "foreign table"}
            statements.append(sql.SQL("alter {} {}.{} owner to {}").format(
                sql.SQL(what.get(kind, "table")), sql.Identifier(schema), sql.Identifier(name), owner))
        for (signature,) in conn.execute(
            f"select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            f" where p.proowner = {su} and n.nspname {system}", (admin[0],)
        ).fetchall():
            statements.append(sql.SQL("alter routine {} owner to {}").format(sql.SQL(signature), owner))
        for (name,) in conn.execute(
            f"select t.oid::regtype::text from pg_type t join pg_namespace n on n.oid = t.typnamespace"
            f" where t.typowner = {su} and n.nspname {system} and t.typtype in ('d', 'e', 'r')",
            (admin[0],),
        ).fetchall():
            statements.append(sql.SQL("alter type {} owner to {}").format(sql.SQL(name), owner))
        if statements:
            # what migration 001 granted on the owner's future tables in raw, for the new owner
            raw_defaults = "alter default privileges for role {} in schema raw grant {} on tables to {}"
            if conn.execute("select 1 from pg_namespace where nspname = 'raw'").fetchone():
                statements.append(sql.SQL(raw_defaults).format(
                    owner, sql.SQL("select"), sql.Identifier(settings.dbt_user)))
                statements.append(sql.SQL(raw_defaults).format(
                    owner, sql.SQL("select, insert, update, delete"), sql.Identifier(settings.loader_user)))
        for statement in statements:
            conn.execute(statement)
    return len(statements)
