"""Benchmark: the fast-path alert service, produce -> alert latency and maximum sustainable rate.

Latency is measured from the trade's Kafka timestamp (CreateTime, set when the producer hands it to
the client) to the alert's timestamp on the alerts topic, which the bench creates with
`message.timestamp.type=LogAppendTime`: the moment the broker appended the alert. The producer (this
process), the broker and the alert service (`python -m alerts`, its own process) share the machine.

Per rate (default 1k, 10k, 50k trades/s, each sustained for --duration seconds, 30 by default):
fresh topics, a fresh service, a warm-up, then the timed run. The rules (bench_alerts_rules.yaml)
have every rule on but only `suspicious_tick` fires: every --alert-every-th trade is a bad print,
so alerts come at rate / alert_every per second, plus one `session_high` per symbol at the start.

  baseline     a pass-through forwarder (consume, no parsing or rules, produce every
               alert_every-th message) at 10k/s: the floor that Kafka and the Python client set
  max rate     steps of --step-seconds at rising rates on one service; a step is sustainable when
               the producer reached its rate and the service ended it less than 0.5 s of trades
               behind (lag = produced - evaluated, from the service's Prometheus counter)
  catch-up     time for a fresh service to evaluate --catchup trades already on the topic: the
               service's throughput with no producer competing for the CPU

Target: p99 <= 10 ms at 10k trades/s.

    .venv/bin/python bench/bench_alerts.py [--duration 30] [--rates 1000,10000,50000]
        [--step-seconds 10] [--no-ramp] [--no-baseline] [--catchup 200000] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tickhouse.config import load_settings

HERE = Path(__file__).resolve().parent
RULES = HERE / "bench_alerts_rules.yaml"
SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "META", "NFLX", "AMD", "INTC")

FORWARDER = r"""
import sys
from confluent_kafka import Consumer, Producer
bootstrap, src, dst, every = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "fwd-" + src,
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
c.subscribe([src])
n = 0
while True:
    m = c.poll(0.1)
    if m is None:
        p.poll(0)
        continue
    for msg in [m, *c.consume(999, 0)]:
        if msg.error():
            continue
        n += 1
        if n % every == 0:
            p.produce(dst, key=msg.key(), value=b'{"trade_kafka_ts":%d}' % msg.timestamp()[1])
    p.poll(0)
"""


@dataclass
class RunResult:
    name: str
    target_rate: int
    achieved_rate: float
    seconds: float
    trades: int
    alerts: int
    expected_alerts: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    final_lag: int | None
    lag_samples: list[int] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class Trades:
    """Pre-encoded trade payloads; every `alert_every`-th one is a bad print (+10 %)."""

    def __init__(self, alert_every: int) -> None:
        self.alert_every = alert_every
        self.i = 0
        self.heads = [(s.encode(), b'{"symbol":"%s","price":' % s.encode()) for s in SYMBOLS]

    def next(self, ts: bytes) -> tuple[bytes, bytes]:
        i = self.i
        self.i = i + 1
        n = len(SYMBOLS)
        if i % self.alert_every == self.alert_every - 1:
            key, head = self.heads[(i // self.alert_every) % n]
            price = b"110.0"
        else:
            key, head = self.heads[i % n]
            price = b"100.01" if (i // n) % 2 else b"100.0"
        return key, head + price + b',"volume":100,"ts":' + ts + b"}"


class LagSampler:
    """Samples lag = trades produced - trades evaluated (the service's counter) every 0.5 s."""

    def __init__(self, bench: Bench, port: int, base: int, counter: list[int]) -> None:
        self.bench, self.port, self.base, self.counter = bench, port, base, counter
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            done = self.bench.evaluated(self.port)
            if done is not None:
                self.samples.append(self.base + self.counter[0] - done)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        return self.samples


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.bootstrap = load_settings().kafka_bootstrap_servers
        self.admin = AdminClient({"bootstrap.servers": self.bootstrap})
        self.created: list[str] = []
        self.groups: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    # --- topics and processes ----------------------------------------------------------------

    def topics(self, tag: str) -> dict[str, str]:
        suffix = f"{tag}.{uuid.uuid4().hex[:8]}"
        names = {
            "trades": f"bench.alerts.trades.{suffix}",
            "alerts": f"bench.alerts.alerts.{suffix}",
            "state": f"bench.alerts.state.{suffix}",
            "group": f"bench-alerts-{suffix}",
        }
        new = [
            NewTopic(names["trades"], self.args.partitions, 1),
            NewTopic(names["alerts"], 1, 1, config={"message.timestamp.type": "LogAppendTime"}),
        ]
        for future in self.admin.create_topics(new).values():
            future.result(30)
        self.created += [names["trades"], names["alerts"], names["state"]]
        self.groups += [names["group"], f"fwd-{names['trades']}"]
        return names

    def start_service(self, names: dict[str, str], port: int) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable, "-m", "alerts",
            "--rules", str(RULES),
            "--trades-topic", names["trades"],
            "--alerts-topic", names["alerts"],
            "--state-topic", names["state"],
            "--group", names["group"],
            "--from-beginning",
            "--metrics-port", str(port),
            "--log-level", "WARNING",
            "--checkpoint-seconds", str(self.args.checkpoint_seconds),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, env={**os.environ, "ALERTS_LOG_LEVEL": "WARNING"})
        self.processes.append(proc)
        return proc

    def start_forwarder(self, names: dict[str, str]) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable, "-c", FORWARDER, self.bootstrap, names["trades"], names["alerts"],
            str(self.args.alert_every),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd)
        self.processes.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def cleanup(self) -> None:
        for proc in self.processes:
            self.stop(proc)
        if self.created and not self.args.keep:
            for future in self.admin.delete_topics(self.created).values():
                with contextlib.suppress(KafkaException):  # e.g. a state topic never created
                    future.result(30)
        if self.groups and not self.args.keep:
            for future in self.admin.delete_consumer_groups(self.groups).values():
                with contextlib.suppress(KafkaException):
                    future.result(30)

    # --- measuring ---------------------------------------------------------------------------

    @staticmethod
    def evaluated(port: int) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        match = re.search(r"^tickhouse_alerts_trades_evaluated_total (\S+)$", text, re.M)
        return int(float(match.group(1))) if match else None

    def producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "linger.ms": self.args.linger_ms,
                "queue.buffering.max.messages": 2_000_000,
                "acks": 1,
            }
        )

    def produce_at(
        self,
        producer: Producer,
        topic: str,
        trades: Trades,
        rate: int,
        seconds: float,
        counter: list[int],
    ) -> tuple[int, float]:
        """Produce at `rate`/s for `seconds`, paced in ~1 ms slices; returns (sent, elapsed)."""
        start = time.perf_counter()
        sent = 0
        produce = producer.produce
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            due = int(rate * elapsed) - sent
            if due <= 0:
                producer.poll(0)
                time.sleep(0.0005)
                continue
            ts = b"%d" % (time.time_ns() // 1_000_000)
            for _ in range(min(due, 2000)):
                key, value = trades.next(ts)
                while True:
                    try:
                        produce(topic, value=value, key=key)
                        break
                    except BufferError:
                        producer.poll(0.001)
                sent += 1
            counter[0] = sent
            producer.poll(0)
        producer.flush(30)
        counter[0] = sent
        return sent, time.perf_counter() - start

    def alert_latencies(self, topic: str, since_ms: int, forwarder: bool) -> list[float]:
        """Latency (ms) of every alert on `topic` whose trade was produced at/after `since_ms`."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"bench-{uuid.uuid4().hex}"})
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
            if high <= low:
                return []
            consumer.assign([TopicPartition(topic, 0, low)])
            out: list[float] = []
            seen = low
            while seen < high:
                for msg in consumer.consume(5000, 1.0):
                    if msg.error():
                        continue
                    seen = cast(int, msg.offset()) + 1
                    data = json.loads(cast(bytes, msg.value()))
                    trade_ts = data["trade_kafka_ts"] if forwarder else data["details"]["trade"]["kafka_ts"]
                    if trade_ts >= since_ms and (forwarder or data["rule"] == "suspicious_tick"):
                        out.append(float(msg.timestamp()[1] - trade_ts))
            return sorted(out)
        finally:
            consumer.close()

    def wait_ready(self, port: int, at_least: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = self.evaluated(port)
            if done is not None and done >= at_least:
                return
            time.sleep(0.1)
        raise RuntimeError(f"the alert service did not evaluate {at_least} warm-up trades")

    def wait_drained(self, port: int, total: int, timeout: float = 60) -> int | None:
        deadline = time.monotonic() + timeout
        done = None
        while time.monotonic() < deadline:
            done = self.evaluated(port)
            if done is not None and done >= total:
                return done
            time.sleep(0.1)
        return done

    # --- runs --------------------------------------------------------------------------------

    def latency_run(self, rate: int, seconds: float, forwarder: bool = False) -> RunResult:
        names = self.topics(f"{'fwd' if forwarder else 'svc'}{rate}")
        port = free_port()
        proc = self.start_forwarder(names) if forwarder else self.start_service(names, port)
        producer = self.producer()
        trades = Trades(self.args.alert_every)
        counter = [0]
        try:
            # warm-up: group join, first fetches, JIT-less but cache-warm Python
            warm = max(1000, rate)
            warm_sent, _ = self.produce_at(producer, names["trades"], trades, warm, 1.0, counter)
            if forwarder:
                time.sleep(5)  # the forwarder has no metrics; its group join takes a few s
            else:
                self.wait_ready(port, warm_sent)
            since = time.time_ns() // 1_000_000
            counter[0] = 0
            sampler = LagSampler(self, port, warm_sent, counter)
            sent, elapsed = self.produce_at(producer, names["trades"], trades, rate, seconds, counter)
            lags = sampler.stop()
            total = warm_sent + sent
            final = None
            if not forwarder:
                done = self.evaluated(port)
                final = None if done is None else total - done
                self.wait_drained(port, total)
            else:
                time.sleep(3)
            latencies = self.alert_latencies(names["alerts"], since, forwarder)
        finally:
            self.stop(proc)
        return RunResult(
            name="forwarder" if forwarder else "alerts",
            target_rate=rate,
            achieved_rate=sent / elapsed,
            seconds=elapsed,
            trades=sent,
            alerts=len(latencies),
            expected_alerts=sent // self.args.alert_every,
            p50_ms=percentile(latencies, 0.50),
            p99_ms=percentile(latencies, 0.99),
            max_ms=latencies[-1] if latencies else None,
            final_lag=final,
            lag_samples=lags,
        )

    def ramp(self, rates: list[int], seconds: float) -> list[RunResult]:
        names = self.topics("ramp")
        port = free_port()
        proc = self.start_service(names, port)
        producer = self.producer()
        trades = Trades(self.args.alert_every)
        counter = [0]
        results = []
        try:
            total, _ = self.produce_at(producer, names["trades"], trades, 1000, 1.0, counter)
            self.wait_ready(port, total)
            for rate in rates:
                # let the previous step drain so every step starts without lag
                self.wait_drained(port, total, timeout=30)
                since = time.time_ns() // 1_000_000
                counter[0] = 0
                sampler = LagSampler(self, port, total, counter)
                sent, elapsed = self.produce_at(producer, names["trades"], trades, rate, seconds, counter)
                lags = sampler.stop()
                total += sent
                done = self.evaluated(port)
                lag = None if done is None else total - done
                latencies = self.alert_latencies(names["alerts"], since, False)
                results.append(
                    RunResult(
                        name="ramp",
                        target_rate=rate,
                        achieved_rate=sent / elapsed,
                        seconds=elapsed,
                        trades=sent,
                        alerts=len(latencies),
                        expected_alerts=sent // self.args.alert_every,
                        p50_ms=percentile(latencies, 0.5),
                        p99_ms=percentile(latencies, 0.99),
                        max_ms=latencies[-1] if latencies else None,
                        final_lag=lag,
                        lag_samples=lags,
                    )
                )
                print(f"  ramp {rate:>7,}/s: {fmt(results[-1])}", flush=True)
                if not sustainable(results[-1]):
                    break
        finally:
            self.stop(proc)
        return results

    def catchup(self, n: int) -> tuple[int, float]:
        names = self.topics("catchup")
        producer = self.producer()
        trades = Trades(self.args.alert_every)
        ts = b"%d" % (time.time_ns() // 1_000_000)
        for _ in range(n):
            key, value = trades.next(ts)
            while True:
                try:
                    producer.produce(names["trades"], value=value, key=key)
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.flush(60)
        port = free_port()
        proc = self.start_service(names, port)
        try:
            started = None
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                done = self.evaluated(port) or 0
                if started is None and done > 0:
                    started, first = time.perf_counter(), done
                if done >= n:
                    assert started is not None
                    return n - first, time.perf_counter() - started
                time.sleep(0.02)
            raise RuntimeError("catch-up did not finish in 300 s")
        finally:
            self.stop(proc)


def sustainable(r: RunResult) -> bool:
    """The producer kept its rate and the service stayed within 0.1 s of trades behind through
    the second half of the run (lag that grows shows there first)."""
    second_half = r.lag_samples[len(r.lag_samples) // 2 :] or [r.final_lag or 0]
    return (
        r.achieved_rate >= 0.97 * r.target_rate
        and r.final_lag is not None
        and max([*second_half, r.final_lag]) <= 0.1 * r.target_rate
    )


def fmt(r: RunResult) -> str:
    def ms(v: float | None) -> str:
        return "   -  " if v is None else f"{v:6.1f}"

    lag = "-" if r.final_lag is None else f"{r.final_lag:,}"
    if r.lag_samples:
        lag += f" (max {max(r.lag_samples):,})"
    return (
        f"achieved {r.achieved_rate:>9,.0f}/s  p50 {ms(r.p50_ms)} ms  p99 {ms(r.p99_ms)} ms  "
        f"max {ms(r.max_ms)} ms  alerts {r.alerts:,}/{r.expected_alerts:,}  lag at end {lag}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,10000,50000")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per rate")
    parser.add_argument("--alert-every", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--linger-ms", type=float, default=1.0, help="the bench producer's")
    parser.add_argument("--ramp", default="10000,20000,30000,40000,50000,60000,80000")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--no-ramp", action="store_true")
    parser.add_argument(
        "--checkpoint-seconds", type=float, default=2.0, help="the service's checkpoint interval"
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--catchup", type=int, default=200_000, help="0 = skip")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the bench topics")
    args = parser.parse_args(argv)

    bench = Bench(args)
    results: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "duration": args.duration,
    }
    print(
        f"alert service bench: broker {bench.bootstrap}, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f} (shared machine: producer, broker and service compete)",
        flush=True,
    )
    try:
        runs = []
        for rate in [int(r) for r in args.rates.split(",") if r]:
            r = bench.latency_run(rate, args.duration)
            runs.append(r)
            ok = (
                ""
                if r.p99_ms is None or rate != 10_000
                else ("  target p99 <= 10 ms: " + ("met" if r.p99_ms <= 10 else "MISSED"))
            )
            print(f"alerts  {rate:>7,}/s x {args.duration:g}s: {fmt(r)}{ok}", flush=True)
        results["runs"] = [asdict(r) for r in runs]
        if not args.no_baseline:
            base = bench.latency_run(10_000, min(args.duration, 15.0), forwarder=True)
            print(f"baseline forwarder 10,000/s: {fmt(base)}", flush=True)
            svc = next((r for r in runs if r.target_rate == 10_000), None)
            if svc and svc.p99_ms and base.p99_ms:
                print(f"  alert service p99 / forwarder p99 = {svc.p99_ms / base.p99_ms:.2f}")
            results["baseline"] = asdict(base)
        if not args.no_ramp:
            print(f"max sustainable rate (steps of {args.step_seconds:g}s):", flush=True)
            steps = bench.ramp([int(r) for r in args.ramp.split(",") if r], args.step_seconds)
            good = [s.target_rate for s in steps if sustainable(s)]
            best = max(good) if good else None
            print(f"  max sustainable: {f'{best:,}/s' if best else 'below the first step'}")
            results["ramp"] = [asdict(s) for s in steps]
            results["max_sustainable_rate"] = best
        if args.catchup:
            n, seconds = bench.catchup(args.catchup)
            print(f"catch-up: {n:,} trades in {seconds:.2f}s = {n / seconds:,.0f} trades/s")
            results["catchup_rate"] = n / seconds
    except KafkaException as err:
        print(f"bench_alerts: Kafka error: {err}", file=sys.stderr)
        return 1
    finally:
        bench.cleanup()
    results["load_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
