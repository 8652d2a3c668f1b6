"""tickhouse.allocator: the drain loop keeps glibc's malloc to two arenas, however many threads
its drains start (each in a process of its own: arenas are per process and never go away)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tickhouse.allocator import DEFAULT_ARENAS, limit_malloc_arenas

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="arenas are glibc's"),
]

ROOT = Path(__file__).resolve().parents[2]
THREADS = 8

# Each drain of the scripted loop starts THREADS threads that malloc at the same time (a Kafka
# consumer's and dbt's threads do), then glibc's own report (malloc_stats, on stderr) lists the
# process's arenas, one "Arena N:" line each.
SCRIPT = f"""
import ctypes, sys, threading
from datetime import UTC, datetime

from drain.loop import drain_continuously
from drain.options import DrainOptions
from drain.stats import DrainResult, TopicStats
from tickhouse.config import load_settings

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
calls = []

def threads_that_malloc():
    barrier = threading.Barrier({THREADS})
    def work():
        libc.malloc(4096)  # kept: an arena with something alive in it
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range({THREADS})]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

def drain(settings, options, defer=None):
    calls.append(1)
    threads_that_malloc()
    now = datetime.now(UTC)
    rows = 1 if len(calls) < 4 else 0
    return DrainResult(run_id=str(len(calls)), started_at=now, finished_at=now,
                       topics=[TopicStats("market.trades", "trades", consumed=rows, loaded=rows)])

if sys.argv[1] == "loop":
    drain_continuously(load_settings(), DrainOptions(topics={{"market.trades": "trades"}}),
                       seconds=30, idle_seconds=0.2, poll_seconds=0.05,
                       after_load=lambda result: threads_that_malloc(), drain=drain)
else:
    for _ in range(4):
        threads_that_malloc()
libc.malloc_stats()
"""


def _arenas(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)
    return sum(line.startswith("Arena ") for line in out.stderr.splitlines())


def test_the_drain_loop_keeps_malloc_to_two_arenas_while_its_threads_come_and_go() -> None:
    assert _arenas("loop") <= DEFAULT_ARENAS


def test_without_the_limit_the_same_threads_take_arenas_of_their_own() -> None:
    # the control: what the loop's limit prevents does happen to a process without it
    assert _arenas("plain") > DEFAULT_ARENAS


def test_an_operators_malloc_arena_max_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


def test_a_limit_below_one_arena_is_refused() -> None:
    with pytest.raises(ValueError, match="arenas=0"):
        limit_malloc_arenas(0)
