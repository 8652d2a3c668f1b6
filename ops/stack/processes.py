"""Background processes of the local stack: start detached, track by pid file, stop and wait."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tickhouse.errors import TickhouseError


class StackError(TickhouseError, RuntimeError):
    """A local-stack component could not be set up, started or stopped; the message says why."""


def tickhouse_command() -> str:
    """The `tickhouse` console script of this installation (beside the running Python)."""
    return str(Path(sys.executable).parent / "tickhouse")


@dataclass(frozen=True, slots=True)
class Service:
    """One process of the stack: its pid file and log file live under the state dir."""

    name: str
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the running process we started, or None (stale pid files are removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if pid_alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None = None,
        user: str | None = None,
    ) -> int:
        """Start `argv` detached in its own session, stdout+stderr appended to the log file."""
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- starting {self.name} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                user=user,
            )
        self.pid_file.write_text(f"{process.pid}\n")
        return process.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the process group, wait up to `timeout`, then SIGKILL. True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        stop_pid(pid, timeout)
        self.pid_file.unlink(missing_ok=True)
        return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours still "exists"; reap it if we can
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def stop_pid(pid: int, timeout: float) -> None:
    """Stop a process we started (and its process group), waiting for it to exit."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 10)
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.1)
    raise StackError(f"process {pid} did not exit after SIGTERM and SIGKILL")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_port_free(host: str, port: int, variable: str) -> None:
    """Fail with a message naming the port and the variable to change when the port is taken."""
    if port_open(host, port):
        raise StackError(
            f"port {port} on {host} is already in use by another program; stop it, or set "
            f"{variable} to a free port (e.g. in .env) and run again"
        )


def wait_until(check: object, timeout: float, what: str, log_file: Path | None = None) -> None:
    """Poll `check()` until it is true or fail after `timeout` seconds with the log's tail."""
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    hint = ""
    if log_file and log_file.exists():
        tail = log_file.read_text(errors="replace").splitlines()[-15:]
        hint = f"\nlast lines of {log_file}:\n  " + "\n  ".join(tail)
    raise StackError(f"{what} did not become ready within {timeout:.0f} s{hint}")
