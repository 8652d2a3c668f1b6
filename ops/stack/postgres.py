"""PostgreSQL 15 from the machine's server binaries: initdb, configure, start, stop.

PostgreSQL refuses to run as root, so when setup runs as root the cluster belongs to the `postgres`
system user (Debian's server package creates it) and every server command runs as that user.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from ops.stack.processes import StackError, pid_alive, port_open, require_port_free
from tickhouse.config import Settings

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
    return Path("/var/tmp") / f"tickhouse-{digest}" / "postgres"


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
    home.mkdir(parents=True, exist_ok=True)
    _chown_to_server_user(home)
    if _as_root():
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise StackError(
                "running as root but there is no 'postgres' system user to own the cluster; "
                "install Debian's postgresql package or run as a non-root user"
            ) from None
    with tempfile.NamedTemporaryFile("w", dir=home, delete=False) as pwfile:
        pwfile.write(settings.postgres_password + "\n")
    pw_path = Path(pwfile.name)
    _chown_to_server_user(pw_path)
    try:
        result = _run_as_server_user(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(data),
                "-U",
                settings.postgres_user,
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
