"""What a live process holds in its environment, read from /proc while it runs.

`EnvironmentSampler` reads `/proc/PID/environ` of every process below a set of roots (Airflow's
processes, a `tickhouse` command the test started) as soon as it appears, so that short-lived
children (a task process, Python's resource tracker, the drain's parse workers) are read too.
`backends_by_process` tells which process holds which PostgreSQL session: a session seen in
pg_stat_activity under a role, from a client port that a socket of that process owns, proves the
process live and connected as that role at that moment.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class Sampled:
    """One process as it was first read: its environment block, where it sits in the tree."""

    pid: int
    root: str  # the name of the tracked root it descends from
    lineage: tuple[int, ...]  # its ancestors up to (and including) that root, nearest first
    cmdline: str
    environ: bytes

    def variables(self) -> dict[bytes, bytes]:
        out = {}
        for item in self.environ.split(b"\0"):
            if item:
                name, _, value = item.partition(b"=")
                out[name] = value
        return out

    def descends_from(self, pid: int) -> bool:
        return pid == self.pid or pid in self.lineage


def read_environ(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None


class EnvironmentSampler:
    """A thread that reads the environment of every process below the roots, once per process.

    `roots()` is asked at every pass (a root may be restarted); `add_root` tracks one more (a
    command the test started). `passes` counts the finished passes over /proc: a process alive
    before pass n began has been read once pass n + 1 has finished.
    """

    def __init__(self, roots: Callable[[], Mapping[int, str]], interval: float = 0.1) -> None:
        self._roots = roots
        self._extra: dict[int, str] = {}
        self._interval = interval
        self._lock = threading.Lock()
        self._seen: dict[tuple[int, bytes], Sampled] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="environ-sampler", daemon=True)
        self.passes = 0
        self.error: BaseException | None = None

    def __enter__(self) -> EnvironmentSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def add_root(self, pid: int, name: str) -> None:
        with self._lock:
            self._extra[pid] = name

    def sampled(self) -> list[Sampled]:
        with self._lock:
            return list(self._seen.values())

    def below(self, pid: int) -> list[Sampled]:
        """`pid` and every descendant of it read so far."""
        return [s for s in self.sampled() if s.descends_from(pid)]

    def wait_passes(self, count: int = 2, timeout: float = 30) -> None:
        """Return once `count` more passes have finished: every process alive now has been read."""
        target = self.passes + count
        deadline = time.monotonic() + timeout
        while self.passes < target:
            if self.error is not None:
                raise AssertionError(f"the environment sampler failed: {self.error!r}")
            assert time.monotonic() < deadline, f"the sampler made no {count} passes in {timeout} s"
            time.sleep(self._interval)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._pass()
                self.passes += 1
                self._stop.wait(self._interval)
        except BaseException as err:  # reported by wait_passes, never lost in the thread
            self.error = err

    def _pass(self) -> None:
        with self._lock:
            roots = {**self._roots(), **self._extra}
        table = process_table()
        for pid, (_parent, started) in table.items():
            if (pid, started) in self._seen:
                continue
            lineage: list[int] = []
            node = pid
            while node not in roots and node in table and node > 1:
                node = table[node][0]
                lineage.append(node)
            if node not in roots:
                continue
            environ = read_environ(pid)
            if environ is None:  # gone, or not ours to read
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace").strip()
            except OSError:
                cmdline = ""
            with self._lock:
                self._seen[(pid, started)] = Sampled(pid, roots[node], tuple(lineage), cmdline, environ)


def process_table() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, start time in clock ticks) of every process: with the pid, the start
    time is an identity that a reused pid does not share."""
    table: dict[int, tuple[int, bytes]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                table[int(name)] = (int(fields[1]), fields[19])
            except (OSError, IndexError, ValueError):
                continue
    return table


def _socket_inodes(pids: Iterable[int]) -> dict[str, int]:
    """socket inode -> the pid whose open file it is."""
    out: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        out[target[8:-1]] = pid
    return out


def tcp_connections(pids: Iterable[int]) -> list[tuple[int, int, int]]:
    """(pid, local port, remote port) of every established TCP connection the pids hold."""
    inodes = _socket_inodes(pids)
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] != "01" or fields[9] not in inodes:  # 01 = ESTABLISHED
                    continue
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                out.append((inodes[fields[9]], local_port, remote_port))
    return out


@dataclass(frozen=True, slots=True)
class Backend:
    """A PostgreSQL session, and the client process that holds it."""

    client_pid: int
    role: str
    application: str
    state: str
    wait_event_type: str


def backends_by_process(
    conn: psycopg.Connection[Any], pids: Iterable[int], postgres_port: int
) -> list[Backend]:
    """The sessions that processes `pids` hold to the PostgreSQL server at `postgres_port`
    (`conn` must see every session's client port: the bootstrap superuser's)."""
    by_port = {
        local: pid for pid, local, remote in tcp_connections(pids) if remote == postgres_port
    }
    if not by_port:
        return []
    rows = conn.execute(
        "select client_port, usename, coalesce(application_name, ''), coalesce(state, ''),"
        " coalesce(wait_event_type, '') from pg_stat_activity where client_port = any(%s)",
        (list(by_port),),
    ).fetchall()
    return [Backend(by_port[port], role, app, state, wait) for port, role, app, state, wait in rows]
