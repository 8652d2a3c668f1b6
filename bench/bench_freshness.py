"""Freshness through Airflow: trade event time -> the trade is counted in its 1m bar of marts.fct_bars.

Needs the running local stack with Airflow (`make up`). Two phases, each with a steady background
of trades (default 1,000 trades/s over 10 symbols, docs/interfaces/kafka-messages.md messages keyed by symbol,
on the trades topic) and a probe symbol among them whose trades carry their production time as event time:

1. Airflow: `ingest_market_data` (continuous drain loop with the hot dbt models) and
   `transform_marts` unpaused, nothing else, for longer than one drain task's loop: the window
   holds a task's end and the next one's cold start (printed: the new tasks in the window);
2. baseline: the DAGs paused, this process drains and transforms the way the old path worked at
   best, `drain_once` then a full `dbt build` (`tickhouse transform`), back to back, no cron wait.

A poller reads the probe's 1m bars every 0.25 s; a probe trade is visible at the first poll whose
`trade_count` for its minute reaches its rank in that minute (the drain loads a partition in
offset order). Prints p50/p95/max per phase and the ratios baseline / Airflow. The DAGs are left
paused or unpaused as they were found; the probe and background rows are deleted afterwards.

    .venv/bin/python bench/bench_freshness.py [--seconds 360] [--baseline-seconds 90] [--rate 1000]
        [--symbols 10] [--rows 1000/10,10000/5000]

`--rows RATE/SYMBOLS,...` measures each row of the table in turn (both phases each, new symbols
each) and prints the table of this build next to the baseline's, from the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from confluent_kafka import KafkaError, Message, Producer

from ops.airflow_api import AirflowAPI
from ops.stack import airflow
from tickhouse.config import Settings, load_settings
from tickhouse.kafka import client_config
from tickhouse.warehouse import connect

DAGS = ("ingest_market_data", "transform_marts")
MINUTE_MS = 60_000
PROBE_EVERY = 20  # one probe trade in every 20 messages (50/s at 1k/s)


@dataclass
class Phase:
    """One measurement: what the probe produced and when the marts first showed each count."""

    name: str
    probe: str
    produced: dict[int, list[int]] = field(default_factory=dict)  # minute -> event ts in order
    seen: dict[int, list[tuple[int, float]]] = field(default_factory=dict)  # minute -> (count, t)

    def timed_delays(self) -> list[tuple[float, float | None]]:
        """(event time in s, seconds from it to the poll that showed the trade, None if never)
        for each probe trade, in production order within its minute."""
        out: list[tuple[float, float | None]] = []
        for minute, stamps in self.produced.items():
            history = self.seen.get(minute, [])
            for rank, ts in enumerate(stamps, start=1):
                at = next((t for count, t in history if count >= rank), None)
                out.append((ts / 1000, None if at is None else max(0.0, at - ts / 1000)))
        return out

    def delays(self) -> tuple[list[float], int]:
        """Seconds from each probe trade's event time to the poll that showed it; and how many
        were never seen."""
        timed = self.timed_delays()
        out = [delay for _, delay in timed if delay is not None]
        return out, len(timed) - len(out)

    def complete(self) -> bool:
        return all(
            any(count >= len(stamps) for count, _ in self.seen.get(minute, []))
            for minute, stamps in self.produced.items()
        )


def _produce(settings: Settings, phase: Phase, symbols: list[str], rate: int, seconds: float,
             stop: threading.Event,
             on_delivery: Callable[[KafkaError | None, Message], None] | None = None) -> int:
    """Produce `rate` trades/s over `symbols` plus the probe for `seconds`; `on_delivery` (the
    soak's reconciliation) gets every message's delivery report."""
    producer = Producer({**client_config(settings.kafka_bootstrap_servers), "linger.ms": 5,
                         "enable.idempotence": True})
    sent = 0
    started = time.monotonic()
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    while not stop.is_set() and time.monotonic() - started < seconds:
        for _ in range(per_tick):
            probe = sent % PROBE_EVERY == 0
            symbol = phase.probe if probe else symbols[sent % len(symbols)]
            ts = int(time.time() * 1000)
            message = {"symbol": symbol, "price": 100 + (sent % 100) / 10, "volume": 1, "ts": ts,
                       "conditions": ["1"], "source": "bench"}
            producer.produce(settings.trades_topic, json.dumps(message).encode(), key=symbol.encode(),
                             on_delivery=on_delivery)
            if probe:
                phase.produced.setdefault(ts // MINUTE_MS * MINUTE_MS, []).append(ts)
            sent += 1
        producer.poll(0)
        # steady rate: sleep until the next tick of the schedule, not a fixed pause
        time.sleep(max(0.0, started + sent / rate - time.monotonic()))
    producer.flush(30)
    return sent


def _poll(settings: Settings, phase: Phase, stop: threading.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(psycopg.Error), connect(settings, "owner", autocommit=True) as conn:
            while not stop.is_set():
                rows = conn.execute(
                    "select bar_start, trade_count from marts.fct_bars"
                    " where symbol = %s and bar_interval = '1m'", (phase.probe,),
                ).fetchall()
                now = time.time()
                for bar_start, count in rows:
                    history = phase.seen.setdefault(int(bar_start.timestamp() * 1000), [])
                    if not history or history[-1][0] != count:
                        history.append((int(count or 0), now))
                stop.wait(0.25)
        stop.wait(0.5)


def _measure(settings: Settings, phase: Phase, symbols: list[str], rate: int, seconds: float,
             settle: float = 90) -> tuple[list[float], int]:
    stop_poll, stop_produce = threading.Event(), threading.Event()
    poller = threading.Thread(target=_poll, args=(settings, phase, stop_poll), daemon=True)
    poller.start()
    sent = _produce(settings, phase, symbols, rate, seconds, stop_produce)
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline and not phase.complete():
        time.sleep(0.5)
    stop_poll.set()
    poller.join(10)
    delays, unseen = phase.delays()
    print(f"  {phase.name}: {sent:,} trades in {seconds:.0f} s ({sent / seconds:,.0f}/s), "
          f"{len(delays) + unseen:,} probe trades, {unseen} not visible within {settle:.0f} s after")
    return delays, unseen


def _baseline_loop(settings: Settings, stop: threading.Event, cycles: list[float]) -> None:
    from drain.options import load_options
    from drain.runner import drain_once
    from transform.dbt_runner import build

    options = load_options(settings)
    while not stop.is_set():
        started = time.monotonic()
        drain_once(settings, options)
        build(settings=settings)
        cycles.append(time.monotonic() - started)


def _loop_in_process(settings: Settings, stop: threading.Event) -> None:
    """What the ingest DAG's drain task runs, in loops of 10 s until `stop`."""
    from drain.loop import drain_continuously
    from drain.options import load_options
    from transform.hot import HotTransform

    hot = HotTransform(settings)
    hot.warm_up()
    options = load_options(settings)
    while not stop.is_set():
        drain_continuously(settings, options, seconds=10, idle_seconds=10,
                           after_load=lambda result: hot.run())


def _runs_started(api: AirflowAPI, dag_id: str, since: datetime) -> int:
    """Runs of `dag_id` that started at or after `since`: each is a new drain task, whose
    start (imports, dbt parse, a cold first hot run) the measured window then includes."""
    status, body = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=50&order_by=-run_after")
    if status != 200:
        return 0
    return sum(
        1
        for r in body.get("dag_runs", [])
        if r.get("start_date") and datetime.fromisoformat(r["start_date"]) >= since
    )


def _active_runs(api: AirflowAPI, dag_id: str) -> int:
    status, body = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=20&order_by=-run_after")
    return sum(r["state"] in ("queued", "running") for r in body.get("dag_runs", [])) if status == 200 else 0


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(2)


def _cleanup(settings: Settings, symbols: list[str]) -> None:
    """Remove the bench's trades from raw and from every dbt table that has a symbol column."""
    with contextlib.suppress(psycopg.Error), connect(settings, "owner", autocommit=True) as conn:
        conn.execute("delete from raw.trades where symbol = any(%s)", (symbols,))
    with contextlib.suppress(psycopg.Error), connect(settings, "dbt", autocommit=True) as conn:
        tables = conn.execute(
            "select c.table_schema, c.table_name from information_schema.columns c"
            " join information_schema.tables t using (table_schema, table_name)"
            " where c.column_name = 'symbol' and t.table_type = 'BASE TABLE'"
            " and c.table_schema in ('staging', 'intermediate', 'marts')"
        ).fetchall()
        for schema, table in tables:
            conn.execute(f'delete from {schema}."{table}" where symbol = any(%s)', (symbols,))


def _summary(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, ordered[-1]


def _parse_rows(text: str) -> list[tuple[int, int]]:
    """`1000/10,10000/5000` -> [(1000, 10), (10000, 5000)]: trades/s and background symbols."""
    rows = []
    for item in text.split(","):
        rate, _, symbols = item.strip().partition("/")
        try:
            rows.append((int(rate), int(symbols or 10)))
        except ValueError:
            raise SystemExit(f"--rows: {item!r} is not RATE/SYMBOLS (e.g. 10000/5000)") from None
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=360,
                        help="Airflow phase (s); the default outlasts one drain task's loop "
                             "(DRAIN_LOOP_SECONDS, 300), so the window holds a task's end and the "
                             "next one's cold start, as a day of steady flow does every loop")
    parser.add_argument("--baseline-seconds", type=float, default=90, help="baseline phase (s)")
    parser.add_argument("--rate", type=int, default=1000, help="trades per second")
    parser.add_argument("--symbols", type=int, default=10,
                        help="background symbols (the probe symbol comes on top)")
    parser.add_argument("--rows", default="",
                        help="RATE/SYMBOLS[,RATE/SYMBOLS...]: measure each as a row of one table "
                             "(overrides --rate and --symbols), e.g. 1000/10,10000/5000")
    parser.add_argument("--no-baseline", action="store_true", help="measure the Airflow path only")
    parser.add_argument("--in-process", action="store_true",
                        help="run the DAG task's loop (drain.loop + transform.hot) in this process "
                             "instead of through Airflow, the DAGs paused: the path without Airflow")
    args = parser.parse_args()

    settings = load_settings()
    api = AirflowAPI(settings.airflow_url, "admin", airflow.admin_password(settings))
    paused = {dag: bool(api.wait_for_dag(dag)["is_paused"]) for dag in DAGS}
    rows = _parse_rows(args.rows) if args.rows else [(args.rate, args.symbols)]
    table: list[tuple[int, int, dict[str, tuple[float, float, float]]]] = []
    try:
        for rate, n_symbols in rows:
            results = _measure_row(settings, api, args, rate, n_symbols)
            _report(results)
            table.append((rate, n_symbols, results))
    finally:
        for dag, was_paused in paused.items():
            api.request("PATCH", f"/api/v2/dags/{dag}", {"is_paused": was_paused})
    if len(table) > 1 or args.rows:
        _print_table(table, "in-process" if args.in_process else "airflow")
    return 0


def _print_table(table: list[tuple[int, int, dict[str, tuple[float, float, float]]]],
                 name: str) -> None:
    def cell(result: tuple[float, float, float] | None) -> str:
        return "n/a" if result is None else " / ".join(f"{v:.1f} s" for v in result)

    print(f"\n| background | {name} p50 / p95 / max | baseline p50 / p95 / max |")
    print("|---|---|---|")
    for rate, n_symbols, results in table:
        print(f"| {rate:,} trades/s, {n_symbols:,} symbols | {cell(results.get(name))} "
              f"| {cell(results.get('baseline'))} |")


def _measure_row(settings: Settings, api: AirflowAPI, args: argparse.Namespace, rate: int,
                 n_symbols: int) -> dict[str, tuple[float, float, float]]:
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"FB{tag}{i}" for i in range(n_symbols)]
    probes = [f"FP{tag}B", f"FP{tag}A"]
    print(f"freshness: event time -> counted in marts.fct_bars (1m), {rate:,} trades/s over "
          f"{n_symbols:,} symbols, probe every {PROBE_EVERY}th trade")
    results: dict[str, tuple[float, float, float]] = {}
    try:
        # 1. Airflow: the DAGs unpaused; wait until the drain loop runs, then produce
        if args.in_process:
            for dag in DAGS:
                api.request("PATCH", f"/api/v2/dags/{dag}", {"is_paused": True})
            # no wait: a drain task still running holds the drain group's lock, and the loop
            # below waits for it
            stop_loop = threading.Event()
            looping = threading.Thread(target=_loop_in_process, args=(settings, stop_loop),
                                       daemon=True)
            looping.start()
        else:
            for dag in DAGS:
                api.request("PATCH", f"/api/v2/dags/{dag}", {"is_paused": False})
            _wait("a running ingest_market_data run", lambda: _active_runs(api, DAGS[0]) > 0, 300)
        flowing = Phase("in-process drain loop + hot dbt models" if args.in_process
                        else "Airflow (continuous drain loop + hot dbt models)", probes[1])
        window_start = datetime.now(UTC)
        delays, _ = _measure(settings, flowing, symbols, rate, args.seconds)
        if not args.in_process:
            print(f"    new drain tasks (ingest_market_data runs) started in the window: "
                  f"{_runs_started(api, DAGS[0], window_start)}")
        if args.in_process:
            stop_loop.set()
            looping.join(600)
        if delays:
            results["in-process" if args.in_process else "airflow"] = _summary(delays)

        # 2. baseline: the DAGs paused, the drain loop ended; drain_once + full dbt build back to
        # back in this process
        if args.no_baseline:
            return results
        for dag in DAGS:
            api.request("PATCH", f"/api/v2/dags/{dag}", {"is_paused": True})
        # a paused DAG's run may never finish its last tasks; the drain group's lock is what
        # keeps two drains apart, so a bounded wait for the loop is enough
        with contextlib.suppress(SystemExit):
            _wait("the drain loop to end", lambda: not _active_runs(api, DAGS[0]), 60)
        with contextlib.suppress(SystemExit):
            _wait("transform_marts to finish", lambda: not _active_runs(api, DAGS[1]), 120)
        if _active_runs(api, DAGS[1]):
            print("    note: transform_marts still runs; its tasks and the baseline's builds take "
                  "turns on the build lock")
        # catch up first (a fresh warehouse's first build creates every model): not measured
        from drain.options import load_options
        from drain.runner import drain_once
        from transform.dbt_runner import build

        drain_once(settings, load_options(settings))
        build(settings=settings)
        stop, cycles = threading.Event(), list[float]()
        loop = threading.Thread(target=_baseline_loop, args=(settings, stop, cycles), daemon=True)
        loop.start()
        baseline = Phase("baseline (drain_once + tickhouse transform, back to back)", probes[0])
        delays, _ = _measure(settings, baseline, symbols, rate, args.baseline_seconds)
        stop.set()
        loop.join(600)
        if cycles:
            print(f"    {len(cycles)} cycles, {statistics.median(cycles):.1f} s each (median)")
        if delays:
            results["baseline"] = _summary(delays)
    finally:
        _cleanup(settings, symbols + probes)
    return results


def _report(results: dict[str, tuple[float, float, float]]) -> None:
    for name, (p50, p95, worst) in results.items():
        print(f"  {name:>8}: p50 {p50:6.1f} s   p95 {p95:6.1f} s   max {worst:6.1f} s")
    if len(results) == 2 and "baseline" in results:
        name = next(n for n in results if n != "baseline")
        (b50, b95, bmax), (a50, a95, amax) = results["baseline"], results[name]
        print(f"  ratio baseline / {name}: p50 {b50 / max(a50, 1e-3):.1f}x, "
              f"p95 {b95 / max(a95, 1e-3):.1f}x, max {bmax / max(amax, 1e-3):.1f}x "
              "(target at 10,000 trades/s over 5,000 symbols: p50 <= 5 s, p95 <= 10 s; "
              "at 1,000 trades/s: p95 <= 5 s)")


if __name__ == "__main__":
    raise SystemExit(main())
