"""`make demo` / `tickhouse demo`: the whole pipeline on bundled data, as a newcomer sees it.

Steps: start the stack and Tickhouse's services (alert service, metrics exporter, dashboard),
unpause the DAGs, replay the bundled real trades (data/sample_trades.csv.gz) and wait until the
ingest DAG's hot dbt runs show every trading day of it in `marts.fct_bars`, then a minute of
synthetic real-time trades and a few deliberately malformed messages (the unpaused
`ingest_market_data` DAG drains them continuously and keeps the bars fresh; a probe times each
synthetic trade into `marts.fct_bars`), wait until Kafka is fully drained and `transform_marts` has
built and tested the marts from the last load (once: history and real time together), then print
a summary. Each step prints when it started. The stack stays up; `make down` stops it.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ops.stack.processes import tickhouse_command
from tickhouse.config import Settings, load_settings
from tickhouse.errors import TickhouseError


class DemoError(TickhouseError):
    """The demo could not show what it promises; the message says where to look."""


SAMPLE_FILE = Path("data/sample_trades.csv.gz")
SYNTHETIC_SYMBOLS = ("NVDA", "TSLA", "AMD")
DAGS = ("ingest_market_data", "transform_marts")
# Malformed messages published on purpose so the quarantine path is visible in the summary.
MALFORMED = (
    b'{"symbol": "AAPL", "price": "178.45", "volume": 100, "ts": 1763649000123}',
    b'{"symbol": "AAPL", "price": -1, "volume": 100, "ts": 1763649000123}',
    b"\xff\xfe not UTF-8",
    b"not JSON at all",
    b'{"symbol": "DROP TABLE trades;--", "price": 1, "volume": 1, "ts": 1763649000123}',
)


@dataclass
class MartPoller:
    """Polls the marts in a background thread, as bi_reader (like the dashboard), every
    `interval_s` until `poll` says it is done or `stop` is called. A new warehouse has no marts yet:
    a failed query is tried again after the interval."""

    settings: Settings
    symbols: tuple[str, ...]
    interval_s: float = 0.5
    done: threading.Event = field(default_factory=threading.Event)  # set when `poll` said so
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def poll(self, conn: Any) -> bool:
        """One look at the marts; True when there is nothing more to wait for."""
        raise NotImplementedError

    def _run(self) -> None:
        import psycopg

        from tickhouse.warehouse import connect

        while not self._stop.is_set():
            try:
                with connect(self.settings, "bi_reader", autocommit=True) as conn:
                    while not self._stop.is_set():
                        if self.poll(conn):
                            self.done.set()
                            return
                        self._stop.wait(self.interval_s)
            except psycopg.Error:
                self._stop.wait(self.interval_s)


@dataclass
class FreshnessProbe(MartPoller):
    """Remembers when each 1m bar of the synthetic symbols in marts.fct_bars reached each trade
    count, so every synthetic trade's event time -> visible-in-marts delay can be computed."""

    seen: dict[tuple[str, datetime], list[tuple[int, float]]] = field(default_factory=dict)
    started_ms: int = 0

    def start(self) -> None:
        self.started_ms = int(time.time() * 1000)
        super().start()

    def poll(self, conn: Any) -> bool:
        rows = conn.execute(
            "select symbol, bar_start, trade_count from marts.fct_bars "
            "where bar_interval = '1m' and symbol = any(%s) "
            "and bar_start > now() - interval '30 minutes'",
            (list(self.symbols),),
        ).fetchall()
        now = time.time()
        for symbol, bar_start, count in rows:
            history = self.seen.setdefault((symbol, bar_start), [])
            if not history or history[-1][0] != count:
                history.append((int(count), now))
        return False

    def delays(self) -> list[float]:
        """Seconds from each synthetic trade's event time to the poll that first showed it."""
        from tickhouse.warehouse import connect

        with connect(self.settings, "owner") as conn:
            trades = conn.execute(
                "select symbol, date_trunc('minute', event_time), ts from raw.trades "
                "where symbol = any(%s) and source = 'synthetic' "
                "and event_time > now() - interval '30 minutes' "
                "order by symbol, ts, kafka_partition, kafka_offset",
                (list(self.symbols),),
            ).fetchall()
        out: list[float] = []
        rank: dict[tuple[str, datetime], int] = {}
        for symbol, bar_start, ts in trades:
            key = (symbol, bar_start)
            rank[key] = rank.get(key, 0) + 1
            if ts < self.started_ms:
                continue  # an earlier demo's trade: counted in its bar, not timed
            for count, seen_at in self.seen.get(key, []):
                if count >= rank[key]:
                    out.append(max(0.0, seen_at - ts / 1000))
                    break
        return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _wait(what: str, check: Callable[[], bool], timeout: float, console: Console) -> None:
    started = time.monotonic()
    deadline = started + timeout
    with console.status(f"waiting: {what}"):
        while time.monotonic() < deadline:
            if check():
                console.print(f"    {what}: {time.monotonic() - started:.0f} s")
                return
            time.sleep(2)
    raise DemoError(
        f"timed out after {timeout:.0f} s waiting for {what}; "
        "see `tickhouse status` and the logs in .local/logs"
    )


def _produce_malformed(settings: Settings) -> int:
    from tickhouse import kafka

    producer = kafka.producer(settings.kafka_bootstrap_servers, "tickhouse-demo", log_level=3)
    for payload in MALFORMED:
        producer.produce(settings.trades_topic, value=payload, key=b"demo-malformed")
    producer.flush(30)
    return len(MALFORMED)


def _run(argv: list[str], what: str, timeout: float = 600) -> None:
    result = subprocess.run(argv, text=True, capture_output=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise DemoError(
            f"{what} failed (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )


def _fully_drained(settings: Settings) -> bool:
    from exporter.pipeline import drain_lag

    parts = drain_lag(settings)
    return bool(parts) and all(p.lag == 0 for p in parts if p.end_offset > 0)


def _latest_run(api: Any, dag_id: str) -> dict[str, Any] | None:
    status, body = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after&limit=1")
    if status != 200 or not body.get("dag_runs"):
        return None
    run: dict[str, Any] = body["dag_runs"][0]
    return run


def _marts_summary(settings: Settings) -> dict[str, Any]:
    from tickhouse.warehouse import connect

    with connect(settings, "bi_reader") as conn:
        bars = dict(
            conn.execute("select bar_interval, count(*) from marts.fct_bars group by 1 order by 1").fetchall()
        )
        days = conn.execute(
            "select count(distinct bar_start) from marts.fct_bars where bar_interval = '1d'"
        ).fetchone()
        alerts = conn.execute("select count(*) from marts.fct_alerts").fetchone()
        technicals = conn.execute("select count(*) from marts.fct_technicals").fetchone()
    return {
        "bars": bars,
        "trading_days": days[0] if days else 0,
        "alerts_in_marts": alerts[0] if alerts else 0,
        "technicals": technicals[0] if technicals else 0,
    }


@dataclass(frozen=True, slots=True)
class ConditionsApplied:
    """How the trade-condition table treated a set of prints, read from the warehouse."""

    prints: int
    without_price: int  # prints whose conditions let them set no price (neither open/close nor high/low)
    by_condition: dict[str, int]  # of those, per condition name (a print with several: names joined)

    def summary(self) -> str:
        names = ", ".join(f"{name} {count:,}" for name, count in self.by_condition.items())
        return (
            f"{self.without_price:,} of {self.prints:,} kept out of open/high/low/close"
            + (f" ({names})" if names else "")
            + "; their volume is in the bars"
        )


def _conditions_applied(
    settings: Settings, symbols: tuple[str, ...], since_ms: int, source: str = "synthetic"
) -> ConditionsApplied:
    """The prints of `symbols` from `source` since `since_ms` in raw.trades, with the eligibility the
    bars give them: the table the bars use (the trade_conditions seed in the warehouse), a print
    qualifying for a field only if every one of its codes does, an unknown code as regular."""
    from tickhouse.warehouse import connect

    with connect(settings, "owner") as conn:
        rows = conn.execute(
            """
            with prints as (
                select kafka_topic, kafka_partition, kafka_offset, conditions
                from raw.trades
                where symbol = any(%s) and source = %s and ts >= %s
            ),
            eligibility as (
                select
                    prints.kafka_topic,
                    prints.kafka_partition,
                    prints.kafka_offset,
                    coalesce(bool_and(coalesce(known.updates_open_close, true)), true) as updates_last,
                    coalesce(bool_and(coalesce(known.updates_high_low, true)), true) as updates_high_low,
                    string_agg(distinct known.name, ' + ' order by known.name)
                        filter (where not known.updates_open_close) as names
                from prints
                left join lateral unnest(prints.conditions) as codes (code) on true
                left join intermediate.trade_conditions as known on known.code = codes.code
                group by 1, 2, 3
            )
            select
                case when updates_last or updates_high_low then null else coalesce(names, '') end,
                count(*)
            from eligibility
            group by 1
            order by 2 desc, 1
            """,
            (list(symbols), source, since_ms),
        ).fetchall()
    by_condition = {name: int(count) for name, count in rows if name is not None}
    return ConditionsApplied(sum(int(count) for _, count in rows), sum(by_condition.values()), by_condition)


@dataclass(frozen=True, slots=True)
class SampleInfo:
    path: Path
    trades: int
    symbols: tuple[str, ...]
    first_ts: int
    last_ts: int


def _sample_info(path: Path) -> SampleInfo:
    import csv
    import gzip

    symbols: set[str] = set()
    count, first, last = 0, None, None
    with gzip.open(path, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            ts = int(row["ts"])
            symbols.add(row["symbol"])
            count += 1
            first = ts if first is None else min(first, ts)
            last = ts if last is None else max(last, ts)
    if first is None or last is None:
        raise DemoError(f"{path} holds no trades")
    return SampleInfo(path, count, tuple(sorted(symbols)), first, last)


def _sample_rows_loaded(settings: Settings, sample: SampleInfo) -> int:
    from tickhouse.warehouse import connect

    with connect(settings, "owner") as conn:
        row = conn.execute(
            "select count(*) from raw.trades where source = 'replay' and symbol = any(%s) "
            "and ts between %s and %s",
            (list(sample.symbols), sample.first_ts, sample.last_ts),
        ).fetchone()
    return int(row[0]) if row else 0


@dataclass
class FirstBars(MartPoller):
    """Waits until marts.fct_bars shows a bar of the sample's symbols: when the history first
    became visible."""

    seen_at: float | None = None  # time.monotonic()

    def poll(self, conn: Any) -> bool:
        row = conn.execute(
            "select 1 from marts.fct_bars where symbol = any(%s) and bar_source = 'trades' limit 1",
            (list(self.symbols),),
        ).fetchone()
        if row:
            self.seen_at = time.monotonic()
        return row is not None


def _sample_visible(settings: Settings, sample: SampleInfo) -> bool:
    """Whether marts.fct_bars holds a daily bar of every trading day of the sample that raw holds."""
    import psycopg

    try:
        in_marts, in_raw = _sample_days(settings, sample)
    except psycopg.Error:  # the marts do not exist yet on a new warehouse
        return False
    return in_raw > 0 and in_marts >= in_raw


def _sample_days(settings: Settings, sample: SampleInfo) -> tuple[int, int]:
    """(trading days of the sample in marts.fct_bars 1d, distinct trading days in raw)."""
    from tickhouse.warehouse import connect

    with connect(settings, "owner") as conn:
        in_raw = conn.execute(
            "select count(distinct (event_time at time zone 'America/New_York')::date) from raw.trades "
            "where source = 'replay' and symbol = any(%s) and ts between %s and %s",
            (list(sample.symbols), sample.first_ts, sample.last_ts),
        ).fetchone()
        in_marts = conn.execute(
            "select count(distinct bar_start) from marts.fct_bars where bar_interval = '1d' "
            "and symbol = any(%s) and bar_start between to_timestamp(%s / 1000.0) - interval '1 day' "
            "and to_timestamp(%s / 1000.0)",
            (list(sample.symbols), sample.first_ts, sample.last_ts),
        ).fetchone()
    return (int(in_marts[0]) if in_marts else 0, int(in_raw[0]) if in_raw else 0)


def _drain_and_transform(settings: Settings, api: Any, console: Console) -> None:
    """Wait until Kafka is empty, then until transform_marts ran after the load (the unpaused
    ingest DAG drains continuously and publishes the raw Assets when its loop goes idle)."""
    _wait("Kafka drained into raw (lag 0)", lambda: _fully_drained(settings), 600, console)
    last_load = _last_load_finished(settings)

    def transformed() -> bool:
        run = _latest_run(api, "transform_marts")
        if run is None or run.get("state") != "success" or not run.get("start_date"):
            return False
        return last_load is None or datetime.fromisoformat(run["start_date"]) >= last_load

    _wait("transform_marts (dbt via Cosmos) to succeed after the last load", transformed, 900, console)


def run_demo(synthetic_seconds: float | None = None) -> int:
    """Run the demo; returns the process exit code."""
    from exporter.pipeline import topic_loads
    from ops.airflow_api import AirflowAPI
    from ops.stack import airflow
    from ops.stack.apps import APPS, start_apps
    from ops.stack.manager import up
    from transform.docs import generate as generate_docs

    console = Console()
    seconds = (
        synthetic_seconds
        if synthetic_seconds is not None
        else float(os.environ.get("DEMO_SYNTHETIC_SECONDS", "60"))
    )
    t_start = time.monotonic()

    def at() -> str:
        """The step's start, in seconds since the demo started (where its time goes)."""
        return f"[dim]{time.monotonic() - t_start:4.0f} s[/] "

    console.rule("[bold]Tickhouse demo")
    console.print(f"{at()}[bold]1/6[/] starting the local stack (PostgreSQL, Kafka, Airflow)")
    up(say=lambda line: console.print(f"    {line}"))
    t_up = time.monotonic()
    settings = load_settings()
    console.print(f"{at()}[bold]2/6[/] starting the alert service, the metrics exporter and the dashboard")
    start_apps(settings, ("alerts", "metrics", "dashboard"))
    api = AirflowAPI(settings.airflow_url, "admin", airflow.admin_password(settings))
    for dag_id in DAGS:
        api.wait_for_dag(dag_id, timeout=180)
        api.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    before = {load.topic: load for load in topic_loads(settings)}

    sample = _sample_info(settings.project_root / SAMPLE_FILE)
    first_bars = FirstBars(settings, sample.symbols)
    first_bars.start()
    console.print(
        f"{at()}[bold]3/6[/] history: {SAMPLE_FILE} ({sample.trades:,} trades of "
        f"{', '.join(sample.symbols)}, real daily bars expanded into trades)"
    )
    replayed = 0
    if _sample_rows_loaded(settings, sample) >= sample.trades:
        console.print("    already in the warehouse from an earlier demo: not replayed again")
    else:
        _run(
            [
                tickhouse_command(),
                "produce",
                "--source",
                "replay",
                "--file",
                str(sample.path),
                "--speed",
                "0",
                "--metrics-port",
                "0",
                "--no-status",
            ],
            "replay of the sample file",
        )
        replayed = sample.trades
        console.print(f"    {replayed:,} trades published to {settings.trades_topic}")
    # the ingest DAG's hot dbt runs put every load into marts.fct_bars as it lands: the history
    # is on the dashboard now; transform_marts' full build (analytics, tests) runs once, in step 5
    _wait("Kafka drained into raw (lag 0)", lambda: _fully_drained(settings), 600, console)
    _wait(
        "every trading day of the history in marts.fct_bars (the ingest DAG's hot dbt runs)",
        lambda: _sample_visible(settings, sample),
        600,
        console,
    )
    # one hot run can bring the whole history: the poller's next look (0.5 s) may come after the
    # check above has already seen every day
    first_bars.done.wait(5 * first_bars.interval_s)
    if first_bars.seen_at is not None:
        console.print(
            f"    the history's first bars were in marts.fct_bars (and on the dashboard) "
            f"{first_bars.seen_at - t_up:.0f} s after the stack was up"
        )

    first_bars.stop()

    console.print(
        f"{at()}[bold]4/6[/] real time: {seconds:.0f} s of synthetic trades for "
        f"{', '.join(SYNTHETIC_SYMBOLS)} plus {len(MALFORMED)} malformed messages"
    )
    probe = FreshnessProbe(settings, SYNTHETIC_SYMBOLS)
    probe.start()
    synthetic_since_ms = probe.started_ms
    malformed = _produce_malformed(settings)
    synthetic = subprocess.Popen(
        [
            tickhouse_command(),
            "produce",
            "--source",
            "synthetic",
            "--symbols",
            ",".join(SYNTHETIC_SYMBOLS),
            "--rate",
            "20",
            "--duration",
            str(int(seconds)),
            "--metrics-port",
            "0",
            "--no-status",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with console.status("synthetic trades flowing; Airflow's drain loop keeps the bars fresh"):
        _, err = synthetic.communicate(timeout=seconds + 120)
    if synthetic.returncode != 0:
        raise DemoError(f"synthetic producer failed: {err[-2000:]}")

    console.print(f"{at()}[bold]5/6[/] waiting for the drain to empty Kafka and dbt to build the marts")
    _drain_and_transform(settings, api, console)
    time.sleep(2)
    probe.stop()
    console.print(f"{at()}    dbt docs generate (the docs site: lineage, model and column docs)")
    generate_docs(settings=settings)
    start_apps(settings, ("docs",))

    console.print(f"{at()}[bold]6/6[/] summary")
    after = {load.topic: load for load in topic_loads(settings)}
    marts = _marts_summary(settings)
    in_marts, in_raw = _sample_days(settings, sample)
    delays = probe.delays()
    conditions = _conditions_applied(settings, SYNTHETIC_SYMBOLS, synthetic_since_ms)
    trades = settings.trades_topic

    def grew(topic: str, field_name: str) -> int:
        new = getattr(after[topic], field_name) if topic in after else 0
        old = getattr(before[topic], field_name) if topic in before else 0
        return int(new - old)

    table = Table(title="Tickhouse demo", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row(
        "trades produced (this run)",
        f"{replayed:,} replayed + {grew(trades, 'loaded') - replayed:,} synthetic, {malformed} malformed",
    )
    table.add_row("trades loaded into raw.trades (this run)", f"{grew(trades, 'loaded'):,}")
    table.add_row("messages quarantined (this run, raw.quarantine)", f"{grew(trades, 'quarantined'):,}")
    for interval in ("1m", "5m", "15m", "1h", "1d"):
        table.add_row(f"bars {interval} (marts.fct_bars)", f"{marts['bars'].get(interval, 0):,}")
    table.add_row("sample trading days in marts", f"{in_marts} of {in_raw}")
    table.add_row("trade conditions (synthetic prints, this run)", conditions.summary())
    table.add_row("technicals rows (marts.fct_technicals)", f"{marts['technicals']:,}")
    table.add_row(
        "alerts raised (this run / all in marts.fct_alerts)",
        f"{grew(settings.alerts_topic, 'loaded'):,} / {marts['alerts_in_marts']:,}",
    )
    if delays:
        table.add_row(
            "freshness: trade event time -> visible in marts.fct_bars",
            f"p50 {statistics.median(delays):.1f} s, p95 {_percentile(delays, 0.95):.1f} s, "
            f"max {max(delays):.1f} s ({len(delays):,} synthetic trades, polled every "
            f"{probe.interval_s:g} s)",
        )
    else:
        table.add_row("freshness", "no synthetic trades observed in marts")
    table.add_row("Airflow UI", f"{settings.airflow_url}  (admin / {airflow.admin_password(settings)})")
    urls = {app.name: app.url() for app in APPS}
    table.add_row("dashboard", urls["dashboard"])
    table.add_row("docs (dbt: lineage, column docs)", urls["docs"])
    table.add_row("metrics (Prometheus)", f"pipeline {urls['metrics']}, alerts {urls['alerts']}")
    table.add_row("demo took", f"{time.monotonic() - t_start:.0f} s")
    console.print(table)
    console.print("The stack keeps running: `make down` stops it, `tickhouse status` shows it.")
    ok = in_marts == in_raw and in_raw > 0 and bool(delays)
    if not ok:
        console.print("[red]the marts do not cover everything the demo produced; see the table above[/]")
    return 0 if ok else 1


def _last_load_finished(settings: Settings) -> datetime | None:
    """When the last drain run that loaded rows committed (transform must start after it)."""
    from tickhouse.warehouse import connect

    with connect(settings, "owner") as conn:
        row = conn.execute("select max(finished_at) from raw.load_stats where loaded > 0").fetchone()
    return row[0] if row else None
