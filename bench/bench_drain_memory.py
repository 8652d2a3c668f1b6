"""Memory of the drain task: resident memory (RSS) of `ingest_market_data`'s loop over its iterations.

Needs PostgreSQL and Kafka (the local stack, or a test stack's env file in TICKHOUSE_ENV_FILE);
Airflow is not used, and `ingest_market_data` must be paused (it drains the same topic as the same
consumer group; it is paused unless `make demo` switched it on). Under a steady stream of trades
(bench_freshness's load generator: `--rate` 3,000 trades/s over `--symbols` 2,000 new symbols), it
runs the drain task's loop in a child process of its own, one per phase, for `--seconds` (240)
each, and records the child's RSS at every iteration:

  hot     the task's loop as the DAG runs it: `drain_continuously` with the hot dbt models
          (`HotTransform.run`) as `after_load`, after the same warm-up (`dbt parse`)
  drain   the same loop, the same stream, without the hot models (`--phases hot,drain`)

The loop limits glibc's malloc to two arenas (`tickhouse.allocator`); each phase runs a second
time (unless `--no-before`) as it ran before that limit, with glibc's default arenas (8 per core:
MALLOC_ARENA_MAX in the child's environment, which the loop leaves alone), in the same run, on the
same stream. Each phase prints its RSS after warm-up, at the `--settle` (10th) iteration and at
every quarter of the rest, and its figures: the slope of RSS after the settle point (MB per 100
iterations, least squares) and the mean RSS of the first and of the second half of those
iterations.
`--tracemalloc` also diffs Python's allocations between the settle point and the end (top 25 lines);
`--objects` counts the objects of the garbage collector per type at the same points (top growers);
`--series` prints the RSS and Python's allocated blocks at every iteration.
The run's trades are deleted afterwards from raw and the dbt tables.

    .venv/bin/python bench/bench_drain_memory.py [--seconds 240] [--rate 3000] [--symbols 2000]
        [--phases hot,drain] [--no-before] [--settle 10] [--series] [--tracemalloc] [--objects]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MB = 1024 * 1024


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / MB


def _object_counts() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def child(args: argparse.Namespace) -> int:
    """One phase: the drain task's loop in this process, one JSON line per iteration on stdout."""
    import logging
    import tracemalloc

    from drain.assets import MART_INPUTS
    from drain.loop import drain_continuously
    from drain.options import load_options
    from drain.runner import drain_once
    from drain.stats import DrainResult
    from tickhouse.config import load_settings
    from transform.hot import HotTransform

    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    options = load_options(settings)
    hot = HotTransform(settings) if args.child == "hot" else None
    if hot is not None:
        hot.warm_up()

    def emit(**record: Any) -> None:
        print(json.dumps(record), flush=True)

    emit(event="start", rss=_rss_mb())
    iteration = 0
    hot_runs = 0
    snapshot: Any = None
    objects: Counter[str] | None = None
    started = time.monotonic()

    def after_load(result: DrainResult) -> None:
        nonlocal hot_runs
        if hot is not None and any(result.loaded_by_table.get(t, 0) for t in MART_INPUTS):
            hot.run()
            hot_runs += 1

    def drain(*a: Any, **kw: Any) -> DrainResult:
        # called at the start of every iteration: what the previous one (drain + hot run) left
        nonlocal iteration, snapshot, objects
        iteration += 1
        if iteration == args.settle:
            gc.collect()
            if args.tracemalloc:
                tracemalloc.start(args.tracemalloc_frames)
                snapshot = tracemalloc.take_snapshot()
            if args.objects:
                objects = _object_counts()
        emit(event="iteration", n=iteration, hot_runs=hot_runs, rss=_rss_mb(),
             blocks=sys.getallocatedblocks(), t=time.monotonic() - started)
        return drain_once(*a, **kw)

    drain_continuously(settings, options, seconds=args.seconds, idle_seconds=30,
                       after_load=after_load, drain=drain)
    gc.collect()
    emit(event="end", n=iteration, hot_runs=hot_runs, rss=_rss_mb(), t=time.monotonic() - started)
    if snapshot is not None:
        diff = tracemalloc.take_snapshot().compare_to(snapshot, "traceback")
        for stat in diff[:25]:
            frames = " <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno}"
                                 for f in stat.traceback[:args.tracemalloc_frames])
            emit(event="tracemalloc", kb=round(stat.size_diff / 1024), count=stat.count_diff,
                 where=frames)
    if objects is not None:
        grown = _object_counts()
        grown.subtract(objects)
        for name, count in grown.most_common(20):
            emit(event="objects", type=name, grown=count)
    return 0


def _run_phase(name: str, args: argparse.Namespace, before: bool) -> list[dict[str, Any]]:
    command = [sys.executable, __file__, "--child", name, "--seconds", str(args.seconds),
               "--settle", str(args.settle)]
    if args.tracemalloc:
        command += ["--tracemalloc", "--tracemalloc-frames", str(args.tracemalloc_frames)]
    if args.objects:
        command.append("--objects")
    env = dict(os.environ)
    env.pop("MALLOC_ARENA_MAX", None)
    if before:
        env["MALLOC_ARENA_MAX"] = str(8 * (os.cpu_count() or 1))  # glibc's default
    out = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=False)
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0:
        print(f"  phase {name}: exited {out.returncode}", flush=True)
    return records


def _report(
    label: str, records: list[dict[str, Any]], settle: int, series: bool = False
) -> float | None:
    start = next((r for r in records if r["event"] == "start"), None)
    its = [r for r in records if r["event"] == "iteration"]
    end = next((r for r in records if r["event"] == "end"), None)
    if start is None or end is None or len(its) <= settle:
        print(f"  {label}: too few iterations ({len(its)}) for a figure")
        return None
    base = its[settle - 1]
    points = [base] + [its[min(len(its) - 1, settle - 1 + (len(its) - settle) * q // 4)]
                       for q in (1, 2, 3)] + [end]
    print(f"  {label}: {end['n']} iterations, {end['hot_runs']} hot runs in {end['t']:.0f} s; "
          f"RSS after warm-up {start['rss']:.0f} MB")
    print("    iteration " + " ".join(f"{p['n']:>7}" for p in points))
    print("    RSS (MB)  " + " ".join(f"{p['rss']:>7.0f}" for p in points))
    # least squares over the iterations after the settle point: one iteration's sawtooth (a
    # drain's peak, then a hot run's) does not decide the figure as the two end points would
    after = its[settle - 1:]
    fit = statistics.linear_regression([r["n"] for r in after], [r["rss"] for r in after])
    rate = fit.slope * 100
    half = len(after) // 2
    print(f"    after iteration {settle}: mean RSS {statistics.mean(r['rss'] for r in after[:half]):.0f}"
          f" MB over the first half, {statistics.mean(r['rss'] for r in after[half:]):.0f} MB over"
          f" the second; {rate:+.1f} MB per 100 iterations (least squares)")
    if series:
        print("    every iteration: " + " ".join(f"{r['rss']:.0f}" for r in its))
        print("    Python blocks (k): " + " ".join(f"{r['blocks'] // 1000}" for r in its))
    for r in records:
        if r["event"] == "tracemalloc":
            print(f"    tracemalloc {r['kb']:+8d} KiB {r['count']:+7d} blocks  {r['where']}")
        elif r["event"] == "objects":
            print(f"    objects {r['grown']:+8d}  {r['type']}")
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=240, help="each phase's loop (s)")
    parser.add_argument("--rate", type=int, default=3000, help="trades per second")
    parser.add_argument("--symbols", type=int, default=2000, help="symbols of the stream")
    parser.add_argument("--phases", default="hot", help="hot, drain or both, in order")
    parser.add_argument("--before", action=argparse.BooleanOptionalAction, default=True,
                        help="also each phase with glibc's default arenas (as before the limit)")
    parser.add_argument("--settle", type=int, default=10, help="iterations before the baseline point")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--tracemalloc-frames", type=int, default=4)
    parser.add_argument("--objects", action="store_true")
    parser.add_argument("--series", action="store_true",
                        help="print RSS and Python's allocated blocks at every iteration")
    parser.add_argument("--child", choices=("hot", "drain"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from bench_freshness import Phase, _cleanup, _produce

    from tickhouse.config import load_settings

    settings = load_settings()
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"M{tag}{i}" for i in range(args.symbols)]
    phase = Phase("memory", f"MPROBE{tag}")
    stop = threading.Event()
    producer = threading.Thread(
        target=_produce, args=(settings, phase, symbols, args.rate, 1e9, stop), daemon=True
    )
    print(f"drain task memory: {args.rate:,} trades/s over {args.symbols:,} symbols, "
          f"{args.seconds:.0f} s per phase (load average {os.getloadavg()[0]:.1f})", flush=True)
    producer.start()
    rates: dict[str, float | None] = {}
    try:
        for name in [p.strip() for p in args.phases.split(",") if p.strip()]:
            for before in (False, True) if args.before else (False,):
                label = f"{name}{', glibc default arenas (before)' if before else ''}"
                records = _run_phase(name, args, before)
                rates[label] = _report(label, records, args.settle, args.series)
                print(f"    (load average {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        stop.set()
        producer.join(60)
        _cleanup(settings, [*symbols, phase.probe])
    print("RSS slope after the settle point, MB per 100 iterations (least squares): "
          + ", ".join(f"{k} {v:+.1f}" for k, v in rates.items() if v is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
