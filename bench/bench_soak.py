"""Soak: a steady load through the whole local stack for half an hour, the DAGs on.

Needs the whole running local stack with its supervised services (`tickhouse up`, `make up`; `make
soak` starts it and runs this). For `--minutes` (30) it produces `--rate` (5,000) trades/s over
`--symbols` (2,000) new symbols with bench_freshness's load generator, probe and poller (a probe
symbol whose trades carry their production time as event time; trade -> counted in its 1m bar of
`marts.fct_bars`), and a few malformed trades (`--malformed-every`, one in 20,000) that the drain
must quarantine. With `ingest_market_data` and `transform_marts` unpaused as the README says, it

- prints freshness p50/p95/max per `--window` (5) minutes of event time; the first window is the
  baseline the later ones are compared to (ratio of p95), with the load average (`uptime`) of each;
- samples every `--sample-seconds` (15) the resident memory (RSS, the process and its children) of
  every long-running process: the drain task (the `ingest_market_data` task process Airflow runs),
  the alert service, the metrics exporter, the dashboard, the docs server, the apps' supervisor,
  Airflow's scheduler (with its executor, without the task processes), api-server, dag-processor
  and triggerer, PostgreSQL (postmaster and backends; also PSS, which counts the shared buffers
  once) and Kafka; prints start, end and max of each (end / start is the same-run baseline) and
  flags a process that still grows over the second half of the run;
- reports the warehouse's growth (`pg_database_size`, `raw.trades` with its partitions and
  indexes, `raw.quarantine`) and the Kafka log dir's (`<log.dirs>/<trades topic>-<partition>`) per
  million trades produced;
- reconciles: every message the broker acknowledged (delivery reports: partition, offset) is exactly
  one row of `raw.trades` or of `raw.quarantine` (same Kafka coordinates, each once), the good ones
  counted once in `marts.fct_bars` (1m `trade_count`); exits 1 if not.

The DAGs' paused state is restored and the run's rows are deleted afterwards (`--keep` keeps them).

    .venv/bin/python bench/bench_soak.py [--minutes 30] [--rate 5000] [--symbols 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import psycopg
from bench_freshness import DAGS, Phase, _active_runs, _cleanup, _poll, _produce, _runs_started, _wait
from confluent_kafka import KafkaError, Message, Producer

from ops.airflow_api import AirflowAPI
from ops.stack import airflow, kafka_broker, postgres
from ops.stack.apps import APPS
from ops.stack.processes import Service
from ops.stack.restarts import supervisor_service
from tickhouse.config import Settings, load_settings
from tickhouse.kafka import client_config
from tickhouse.warehouse import connect

MB = 1024 * 1024
DRAIN = "drain task (ingest_market_data)"
TASKS = "other Airflow tasks"
# growth over the second half that flags a process: both relative and absolute, so a 1 MB drift
# of a small process and the noise of a big one are not flagged
GROWTH_RATIO, GROWTH_MB = 1.10, 20.0


# -- reconciliation: what the broker acknowledged -------------------------------------------------


@dataclass
class Delivered:
    """Delivery reports of every message the run produced: per symbol (key) the count, per
    partition the acknowledged offsets as ranges [lo, hi] (contiguous while only this run
    produces to the topic)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    by_key: dict[str, int] = field(default_factory=dict)
    ranges: dict[int, list[list[int]]] = field(default_factory=dict)
    failed: int = 0

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self.lock:
                self.failed += 1
            return
        key = (msg.key() or b"").decode()
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None, "a delivered message has its coordinates"
        with self.lock:
            self.by_key[key] = self.by_key.get(key, 0) + 1
            spans = self.ranges.setdefault(partition, [])
            if spans and spans[-1][1] + 1 == offset:
                spans[-1][1] = offset
            else:
                spans.append([offset, offset])

    def total(self) -> int:
        with self.lock:
            return sum(self.by_key.values())

    def ends(self) -> dict[int, int]:
        """Per partition the offset after the last acknowledged message."""
        with self.lock:
            return {partition: spans[-1][1] + 1 for partition, spans in self.ranges.items() if spans}


def _produce_malformed(settings: Settings, keys: list[str], every: int, rate: int, seconds: float,
                       stop: threading.Event, delivered: Delivered) -> int:
    """About rate/every messages/s the drain must quarantine (a trade with a negative price), keyed
    by the run's symbols."""
    if every <= 0:
        return 0
    producer = Producer({**client_config(settings.kafka_bootstrap_servers), "enable.idempotence": True})
    interval = every / rate
    started, sent = time.monotonic(), 0
    while not stop.is_set() and time.monotonic() - started < seconds:
        key = keys[sent % len(keys)]
        message = {"symbol": key, "price": -1, "volume": 1, "ts": int(time.time() * 1000),
                   "conditions": ["1"], "source": "bench"}
        producer.produce(settings.trades_topic, json.dumps(message).encode(), key=key.encode(),
                         on_delivery=delivered)
        producer.poll(0)
        sent += 1
        stop.wait(max(0.0, started + sent * interval - time.monotonic()))
    producer.flush(30)
    return sent


# -- memory ---------------------------------------------------------------------------------------


def _tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def _rss(processes: list[psutil.Process]) -> float:
    total = 0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / MB


def _pss(processes: list[psutil.Process]) -> float:
    """Proportional set size (/proc/PID/smaps_rollup): shared pages divided among their users."""
    total = 0
    for proc in processes:
        with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total / MB


class TaskNames:
    """Airflow 3 names a task process `airflow worker -- <task instance id>`; which DAG it runs
    is asked of the API once per id."""

    def __init__(self, api: AirflowAPI) -> None:
        self.api = api
        self.dag_of: dict[str, str] = {}

    def dag(self, ti_id: str) -> str:
        if ti_id not in self.dag_of:
            status, body = self.api.request(
                "GET", "/api/v2/dags/~/dagRuns/~/taskInstances?state=running&state=queued&limit=100")
            if status == 200:
                for ti in body.get("task_instances", []):
                    self.dag_of[str(ti.get("id"))] = str(ti.get("dag_id"))
        return self.dag_of.get(ti_id, "?")


def _task_processes(scheduler: list[psutil.Process]) -> list[tuple[psutil.Process, str]]:
    """The task processes under the scheduler's executor, with their task instance ids."""
    out = []
    for proc in scheduler:
        with contextlib.suppress(psutil.Error):
            title = " ".join(proc.cmdline())
            if title.startswith("airflow worker -- ") and "LocalExecutor" not in title:
                out.append((proc, title.removeprefix("airflow worker -- ").strip()))
    return out


def sample_memory(settings: Settings, names: TaskNames) -> dict[str, dict[str, float]]:
    """One sample: group -> {"rss": MB, "pids": n, ...}."""
    groups: dict[str, dict[str, float]] = {}

    def add(name: str, processes: list[psutil.Process], **extra: float) -> None:
        if processes:
            groups[name] = {"rss": _rss(processes), "pss": _pss(processes), "pids": len(processes),
                            **extra}

    for app in APPS:
        pid = Service(app.name, settings.state_dir).pid()
        add(app.name if app.name != "metrics" else "metrics exporter", _tree(pid) if pid else [])
    pid = supervisor_service(settings.state_dir).pid()
    add("apps' supervisor", _tree(pid) if pid else [])
    for svc in airflow.services(settings):
        pid = svc.pid()
        tree = _tree(pid) if pid else []
        if svc.name == "airflow-scheduler":
            drain: list[psutil.Process] = []
            other: list[psutil.Process] = []
            in_tasks: set[int] = set()
            for proc, ti_id in _task_processes(tree):
                sub = _tree(proc.pid)
                in_tasks.update(p.pid for p in sub)
                (drain if names.dag(ti_id) == DAGS[0] else other).extend(sub)
            tree = [p for p in tree if p.pid not in in_tasks]
            add(DRAIN, drain, tasks=float(len({p.pid for p in drain[:1]})))
            if drain:
                groups[DRAIN]["task_pid"] = float(drain[0].pid)
            add(TASKS, other)
        add(svc.name, tree)
    pid = postgres.server_pid(settings)
    tree = _tree(pid) if pid else []
    add("postgresql (postmaster + backends)", tree)
    for svc in kafka_broker.services(settings):
        pid = svc.pid()
        add(f"kafka ({svc.name})", _tree(pid) if pid else [])
    add("this bench (load generator)", _tree(os.getpid()))
    return groups


@dataclass
class Sample:
    at: float
    load: tuple[float, float, float]
    groups: dict[str, dict[str, float]]
    backlog: int | None = None  # acknowledged messages the drain has not committed yet


def backlog(settings: Settings, delivered: list[Delivered]) -> int | None:
    """Messages acknowledged by the broker beyond the drain's committed offsets (raw.kafka_offsets,
    written with the rows): how far the drain is behind the run, in messages."""
    ends: dict[int, int] = {}
    for d in delivered:
        for partition, end in d.ends().items():
            ends[partition] = max(ends.get(partition, 0), end)
    if not ends:
        return 0
    with contextlib.suppress(psycopg.Error):
        committed = _committed(settings)
        return sum(max(0, end - committed.get(p, 0)) for p, end in ends.items())
    return None


def _sampler(settings: Settings, api: AirflowAPI, every: float, samples: list[Sample],
             stop: threading.Event, delivered: list[Delivered]) -> None:
    names = TaskNames(api)
    while not stop.is_set():
        with contextlib.suppress(Exception):  # a sample lost to a process exiting mid-read
            samples.append(Sample(time.time(), os.getloadavg(), sample_memory(settings, names),
                                  backlog(settings, delivered)))
        stop.wait(every)


def _growth(series: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope of the series' second half in MB/h and its fit's rise over that half."""
    half = series[len(series) // 2:]
    if len(half) < 3:
        return 0.0, 0.0
    xs = [t for t, _ in half]
    ys = [v for _, v in half]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return slope * 3600, slope * (xs[-1] - xs[0])


def _report_memory(samples: list[Sample]) -> list[str]:
    """Prints the memory table; returns the groups flagged as growing."""
    print(f"\nresident memory, {len(samples)} samples over "
          f"{(samples[-1].at - samples[0].at) / 60:.1f} min (RSS of each process with its children, MB;"
          " PSS counts pages shared between them once: PostgreSQL's shared buffers, the scheduler's"
          " forked executor workers)")
    print("| process | start | end | max | end / start | second half | PSS start / end | pids |")
    print("|---|---|---|---|---|---|---|---|")
    names: list[str] = []
    for sample in samples:
        names += [n for n in sample.groups if n not in names]
    flagged = []
    for name in names:
        series = [(s.at, s.groups[name]["rss"]) for s in samples if name in s.groups]
        if not series:
            continue
        start, end, peak = series[0][1], series[-1][1], max(v for _, v in series)
        per_hour, rise = _growth(series)
        pids = [s.groups[name]["pids"] for s in samples if name in s.groups]
        transient = name in (DRAIN, TASKS, "this bench (load generator)")
        grows = (not transient and rise > GROWTH_MB and end > start * GROWTH_RATIO)
        note = f"{per_hour:+.0f} MB/h" + (" **GROWS**" if grows else "")
        if grows:
            flagged.append(name)
        pss = [s.groups[name]["pss"] for s in samples if name in s.groups]
        print(f"| {name} | {start:.0f} | {end:.0f} | {peak:.0f} | {end / max(start, 1e-9):.2f} "
              f"| {note} | {pss[0]:.0f} / {pss[-1]:.0f} | {min(pids):.0f}-{max(pids):.0f} |")
    # the drain task is a new process every DRAIN_LOOP_SECONDS: its figure is per task
    tasks: dict[float, list[float]] = {}
    for s in samples:
        if DRAIN in s.groups and "task_pid" in s.groups[DRAIN]:
            tasks.setdefault(s.groups[DRAIN]["task_pid"], []).append(s.groups[DRAIN]["rss"])
    if tasks:
        print(f"  drain tasks seen: {len(tasks)}; per task first / last / max sample (MB): "
              + ", ".join(f"{v[0]:.0f}/{v[-1]:.0f}/{max(v):.0f}" for v in tasks.values()))
    return flagged


# -- disk -----------------------------------------------------------------------------------------


def _kafka_dirs(settings: Settings) -> list[Path]:
    dirs = []
    for node in kafka_broker.nodes(settings):
        data = node.home / "data"
        dirs += [p for p in data.glob(f"{settings.trades_topic}-*") if p.name.rsplit("-", 1)[1].isdigit()]
    return dirs


def _du(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        for file in path.rglob("*"):
            with contextlib.suppress(OSError):
                total += file.stat().st_blocks * 512
    return total


def disk(settings: Settings) -> dict[str, int]:
    with connect(settings, "owner", autocommit=True) as conn:
        row = conn.execute(
            "select pg_database_size(current_database()),"
            " (select coalesce(sum(pg_total_relation_size(relid)), 0)"
            "    from pg_partition_tree('raw.trades'::regclass)),"
            " pg_total_relation_size('raw.quarantine'::regclass)"
        ).fetchone()
        assert row is not None
    return {"database": int(row[0]), "raw.trades": int(row[1]), "raw.quarantine": int(row[2]),
            "kafka log dir (trades topic)": _du(_kafka_dirs(settings))}


def _report_disk(before: dict[str, int], after: dict[str, int], produced: int) -> None:
    millions = produced / 1e6
    print(f"\ndisk, growth over the run per million trades produced ({produced:,} produced)")
    print("| where | before | after | growth | per million trades |")
    print("|---|---|---|---|---|")
    for name in before:
        grew = after[name] - before[name]
        print(f"| {name} | {before[name] / MB:,.1f} MB | {after[name] / MB:,.1f} MB "
              f"| {grew / MB:,.1f} MB | {grew / MB / max(millions, 1e-9):,.1f} MB |")


# -- freshness per window -------------------------------------------------------------------------


def _report_windows(phase: Phase, started: float, window: float, samples: list[Sample]) -> None:
    timed = phase.timed_delays()
    print(f"\nfreshness per {window / 60:.0f}-minute window (event time -> counted in marts.fct_bars "
          "1m; first window = baseline; target p95 <= 10 s, issue 24)")
    print("| window | probes | p50 | p95 | max | not seen | p95 / first | drain backlog at end / max "
          "| load (1-min avg) |")
    print("|---|---|---|---|---|---|---|---|---|")
    first_p95 = None
    n_windows = max(1, int(max((t for t, _ in timed), default=started) - started) // int(window) + 1)
    for k in range(n_windows):
        lo, hi = started + k * window, started + (k + 1) * window
        delays = sorted(d for t, d in timed if lo <= t < hi and d is not None)
        unseen = sum(1 for t, d in timed if lo <= t < hi and d is None)
        loads = [s.load[0] for s in samples if lo <= s.at < hi]
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "n/a"
        backlogs = [s.backlog for s in samples if lo <= s.at < hi and s.backlog is not None]
        behind = f"{backlogs[-1]:,} / {max(backlogs):,}" if backlogs else "n/a"
        if not delays:
            print(f"| {k * window / 60:.0f}-{(k + 1) * window / 60:.0f} min | {unseen} | | | "
                  f"| {unseen} | | {behind} | {load} |")
            continue
        p50 = statistics.median(delays)
        p95 = delays[min(len(delays) - 1, round(0.95 * (len(delays) - 1)))]
        first_p95 = p95 if first_p95 is None else first_p95
        print(f"| {k * window / 60:.0f}-{(k + 1) * window / 60:.0f} min | {len(delays) + unseen:,} "
              f"| {p50:.1f} s | {p95:.1f} s | {delays[-1]:.1f} s | {unseen} "
              f"| {p95 / max(first_p95, 1e-3):.2f} | {behind} | {load} |")
    delays = sorted(d for _, d in timed if d is not None)
    if delays:
        p95 = delays[min(len(delays) - 1, round(0.95 * (len(delays) - 1)))]
        print(f"| whole run | {len(timed):,} | {statistics.median(delays):.1f} s | {p95:.1f} s "
              f"| {delays[-1]:.1f} s | {len(timed) - len(delays)} | | | |")


# -- reconciliation -------------------------------------------------------------------------------


def _counts(settings: Settings, symbols: list[str]) -> tuple[int, int]:
    with connect(settings, "owner", autocommit=True) as conn:
        raw = conn.execute("select count(*) from raw.trades where symbol = any(%s)", (symbols,)).fetchone()
        quarantined = conn.execute(
            "select count(*) from raw.quarantine where kafka_topic = %s and kafka_key = any(%s)",
            (settings.trades_topic, [s.encode() for s in symbols]),
        ).fetchone()
    assert raw is not None and quarantined is not None
    return int(raw[0]), int(quarantined[0])


_IN_RANGES = (
    "count(*) filter (where exists (select 1 from unnest(%s::int[], %s::bigint[], %s::bigint[])"
    " r(p, lo, hi) where t.kafka_partition = r.p and t.kafka_offset between r.lo and r.hi))"
)


def _range_arrays(delivered: Delivered, below: dict[int, int] | None = None,
                  ) -> tuple[list[int], list[int], list[int]]:
    """The acknowledged offset ranges as three arrays (partition, lo, hi), clipped to the offsets
    below `below[partition]` when given (what the drain has committed)."""
    parts, los, his = [], [], []
    with delivered.lock:
        items = [(p, list(map(tuple, spans))) for p, spans in delivered.ranges.items()]
    for partition, spans in items:
        limit = None if below is None else below.get(partition, 0) - 1
        for lo, hi in spans:
            hi = hi if limit is None else min(hi, limit)
            if hi >= lo:
                parts.append(partition)
                los.append(lo)
                his.append(hi)
    return parts, los, his


def _committed(settings: Settings) -> dict[int, int]:
    from drain.options import load_options

    with connect(settings, "owner", autocommit=True) as conn:
        return dict(conn.execute(
            "select partition, next_offset from raw.kafka_offsets where consumer_group = %s"
            " and topic = %s", (load_options(settings).group, settings.trades_topic)).fetchall())


def reconcile(settings: Settings, symbols: list[str], good: Delivered, bad: Delivered) -> bool:
    """Every acknowledged message the drain has committed past is one row of raw.trades (the good
    ones) or of raw.quarantine (the malformed ones), each once, at its own Kafka coordinates; when
    the drain has caught up, that is every acknowledged message, and the trades are counted once in
    the 1m bars. Prints what it found; True if everything reconciles."""
    keys = [s.encode() for s in symbols]
    committed = _committed(settings)
    good_ranges, bad_ranges = _range_arrays(good, committed), _range_arrays(bad, committed)
    expect_good = sum(hi - lo + 1 for _, lo, hi in zip(*good_ranges, strict=True))
    expect_bad = sum(hi - lo + 1 for _, lo, hi in zip(*bad_ranges, strict=True))
    acked_good, acked_bad = good.total(), bad.total()
    caught_up = (expect_good, expect_bad) == (acked_good, acked_bad)
    with connect(settings, "owner", autocommit=True) as conn:
        raw_rows, raw_distinct, raw_at_good = conn.execute(
            "select count(*), count(distinct (kafka_partition, kafka_offset)), " + _IN_RANGES
            + " from raw.trades t where symbol = any(%s) and kafka_topic = %s",
            (*good_ranges, symbols, settings.trades_topic),
        ).fetchone() or (0, 0, 0)
        q_rows, q_distinct, q_at_bad = conn.execute(
            "select count(*), count(distinct (kafka_partition, kafka_offset)), " + _IN_RANGES
            + " from raw.quarantine t where kafka_topic = %s and kafka_key = any(%s)",
            (*bad_ranges, settings.trades_topic, keys),
        ).fetchone() or (0, 0, 0)
        in_bars = conn.execute(
            "select coalesce(sum(trade_count), 0) from marts.fct_bars where bar_interval = '1m'"
            " and symbol = any(%s)", (symbols,),
        ).fetchone() or (0,)
    print(f"\nreconciliation (the run's {len(symbols):,} symbols): the broker acknowledged "
          f"{acked_good:,} trades and {acked_bad:,} malformed messages; delivery failures: "
          f"{good.failed + bad.failed}; acknowledged offset ranges: "
          f"{len(_range_arrays(good)[0])} + {len(_range_arrays(bad)[0])}")
    if not caught_up:
        print(f"  the drain had not caught up: {acked_good - expect_good:,} trades and "
              f"{acked_bad - expect_bad:,} malformed messages are beyond its committed offsets; "
              "the checks below cover the messages before them")
    checks = [
        ("raw.trades rows", raw_rows, expect_good),
        ("raw.trades distinct Kafka coordinates", raw_distinct, raw_rows),
        ("raw.trades rows at an acknowledged trade's offset", raw_at_good, raw_rows),
        ("raw.quarantine rows", q_rows, expect_bad),
        ("raw.quarantine distinct Kafka coordinates", q_distinct, q_rows),
        ("raw.quarantine rows at an acknowledged malformed message's offset", q_at_bad, q_rows),
    ]
    ok = good.failed + bad.failed == 0
    for name, got, want in checks:
        ok &= int(got) == int(want)
        print(f"  {name}: {int(got):,} (expected {int(want):,}) "
              f"{'ok' if int(got) == int(want) else 'MISMATCH'}")
    bars_ok = int(in_bars[0]) == int(raw_rows)
    if caught_up:
        ok &= bars_ok
    print(f"  trades counted in marts.fct_bars (1m trade_count): {int(in_bars[0]):,} (expected "
          f"{int(raw_rows):,}) "
          + ("ok" if bars_ok else "MISMATCH" if caught_up else "(not checked: the hot path is behind)"))
    print(f"  reconciled: {'yes: nothing lost, nothing doubled' if ok else 'NO'}"
          + ("" if caught_up else ", up to the drain's committed offsets"))
    return ok


def _cleanup_quarantine(settings: Settings, symbols: list[str]) -> None:
    with contextlib.suppress(psycopg.Error), connect(settings, "owner", autocommit=True) as conn:
        conn.execute("delete from raw.quarantine where kafka_topic = %s and kafka_key = any(%s)",
                     (settings.trades_topic, [s.encode() for s in symbols]))


# -- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30, help="how long to produce (min)")
    parser.add_argument("--rate", type=int, default=5000, help="trades per second")
    parser.add_argument("--symbols", type=int, default=2000, help="background symbols (plus the probe)")
    parser.add_argument("--window", type=float, default=5, help="freshness window (min)")
    parser.add_argument("--sample-seconds", type=float, default=15, help="memory sampling period (s)")
    parser.add_argument("--malformed-every", type=int, default=20000,
                        help="one malformed trade (to be quarantined) per this many; 0: none")
    parser.add_argument("--settle", type=float, default=1800,
                        help="after producing, wait at most this long (s) for the rows and bars")
    parser.add_argument("--keep", action="store_true", help="keep the run's rows")
    args = parser.parse_args()

    # stopped early (Ctrl-C, kill, or nohup's ignored SIGINT): still restore the DAGs, delete the rows
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings = load_settings()
    api = AirflowAPI(settings.airflow_url, "admin", airflow.admin_password(settings))
    paused = {dag: bool(api.wait_for_dag(dag)["is_paused"]) for dag in DAGS}
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"SK{tag}{i}" for i in range(args.symbols)]
    probe = f"SP{tag}"
    everything = [*symbols, probe]
    seconds = args.minutes * 60
    # the docs server starts only once `tickhouse docs` generated the site
    missing = [a.name for a in APPS if a.name != "docs" and Service(a.name, settings.state_dir).pid() is None]
    if missing:
        print(f"note: not running: {', '.join(missing)} (`tickhouse up` starts the supervised services)")
    print(f"soak: {args.minutes:g} min at {args.rate:,} trades/s over {args.symbols:,} symbols "
          f"(symbols SK{tag}*, probe {probe}), one malformed in {args.malformed_every:,}; "
          f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    delivered, malformed = Delivered(), Delivered()
    samples: list[Sample] = []
    ok = True
    try:
        for dag in DAGS:
            api.request("PATCH", f"/api/v2/dags/{dag}", {"is_paused": False})
        _wait("a running ingest_market_data run", lambda: _active_runs(api, DAGS[0]) > 0, 300)
        disk_before = disk(settings)
        stop_sampling, stop_poll, stop_produce = threading.Event(), threading.Event(), threading.Event()
        sampler = threading.Thread(target=_sampler, args=(settings, api, args.sample_seconds, samples,
                                                          stop_sampling, [delivered, malformed]),
                                   daemon=True)
        sampler.start()
        phase = Phase("soak", probe)
        poller = threading.Thread(target=_poll, args=(settings, phase, stop_poll), daemon=True)
        poller.start()
        malformed_sent: list[int] = []
        bad = threading.Thread(
            target=lambda: malformed_sent.append(_produce_malformed(
                settings, symbols, args.malformed_every, args.rate, seconds, stop_produce, malformed)),
            daemon=True)
        bad.start()
        started_at, started = datetime.now(UTC), time.time()
        sent = _produce(settings, phase, symbols, args.rate, seconds, stop_produce, on_delivery=delivered)
        bad.join(60)
        produced_for = time.time() - started
        print(f"  produced {sent:,} trades in {produced_for:.0f} s ({sent / produced_for:,.0f}/s) and "
              f"{sum(malformed_sent):,} malformed; acknowledged {delivered.total():,} + "
              f"{malformed.total():,}")
        # settle: until every acknowledged message is a row and the probe's bars are complete
        deadline = time.monotonic() + args.settle
        next_note = time.monotonic() + 60
        while time.monotonic() < deadline:
            behind = backlog(settings, [delivered, malformed])
            if behind == 0:
                raw_rows, q_rows = _counts(settings, everything)
                if raw_rows + q_rows >= delivered.total() + malformed.total() and phase.complete():
                    break
            if time.monotonic() > next_note:
                print(f"    settling: the drain is {behind} messages behind", flush=True)
                next_note += 60
            time.sleep(5)
        raw_rows, q_rows = _counts(settings, everything)
        settled = args.settle - (deadline - time.monotonic())
        print(f"  settled after {settled:.0f} s: {raw_rows:,} raw rows + {q_rows:,} quarantined")
        stop_poll.set()
        poller.join(10)
        # the marts' 1m bars of the last minutes: the hot path's, give it a moment past the rows
        time.sleep(min(30.0, max(0.0, deadline - time.monotonic())))
        stop_sampling.set()
        sampler.join(30)
        disk_after = disk(settings)
        print(f"  new drain tasks (ingest_market_data runs) started in the run: "
              f"{_runs_started(api, DAGS[0], started_at)}")
        _report_windows(phase, started, args.window * 60, samples)
        flagged = _report_memory(samples) if samples else []
        print("  growing over the second half (> {:.0f} MB and end > {:.0%} of start): {}".format(
            GROWTH_MB, GROWTH_RATIO, ", ".join(flagged) or "none"))
        _report_disk(disk_before, disk_after, sent + sum(malformed_sent))
        ok = reconcile(settings, everything, delivered, malformed)
        loads = [s.load[0] for s in samples]
        if loads:
            print(f"\nload average (1-min) over the run: min {min(loads):.1f}, median "
                  f"{statistics.median(loads):.1f}, max {max(loads):.1f} on {os.cpu_count()} cores")
    finally:
        for dag, was_paused in paused.items():
            api.request("PATCH", f"/api/v2/dags/{dag}", {"is_paused": was_paused})
        if not args.keep:
            print("deleting the run's rows ...")
            _cleanup(settings, everything)
            _cleanup_quarantine(settings, everything)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
