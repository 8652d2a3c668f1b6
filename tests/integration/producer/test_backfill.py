"""`tickhouse backfill` as a process, against the local Finnhub-protocol server and the real broker."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ops.suite import free_port
from producer.finnhub_candles import plan_chunks
from tests.finnhub_server import DAILY_CANDLES, FakeFinnhub
from tests.integration.producer.conftest import consume_all
from tickhouse.config import PROJECT_ROOT, Settings
from tickhouse.schemas import parse_candle

pytestmark = pytest.mark.integration

Row = tuple[str, str, int, Decimal, Decimal, Decimal, Decimal, Decimal]


def backfill(args: list[str], env: dict[str, str], timeout: float = 180
             ) -> subprocess.CompletedProcess[str]:
    """`tickhouse backfill ARGS` in a child process; returns it finished."""
    shown = [] if "--progress" in args else ["--no-progress"]
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "backfill", *args, *shown],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, cwd=PROJECT_ROOT,
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def finnhub_env(server: FakeFinnhub, topic: str, token: str = "test-token") -> dict[str, str]:
    return {"FINNHUB_API_KEY": token, "FINNHUB_API_URL": server.api_url, "CANDLES_TOPIC": topic}


def bundled_rows(symbols: set[str], first: dt.date, last: dt.date) -> list[Row]:
    """The bundled daily candles of `symbols` within [first, last], read as plain CSV text."""
    low = (first - dt.date(1970, 1, 1)).days * 86_400_000
    high = (last - dt.date(1970, 1, 1)).days * 86_400_000
    with gzip.open(DAILY_CANDLES, "rt", newline="") as handle:
        return [
            (r["symbol"], "D", int(r["bar_start"]), Decimal(r["open"]), Decimal(r["high"]),
             Decimal(r["low"]), Decimal(r["close"]), Decimal(r["volume"]))
            for r in csv.DictReader(handle)
            if r["symbol"] in symbols and low <= int(r["bar_start"]) <= high
        ]


def published_rows(settings: Settings, topic: str, expect: int) -> list[Row]:
    rows: list[Row] = []
    for message in consume_all(settings, topic, expect=expect):
        candle = parse_candle(message.value)
        assert message.key == candle.symbol.encode()
        rows.append((candle.symbol, candle.resolution, candle.bar_start, Decimal(candle.open),
                     Decimal(candle.high), Decimal(candle.low), Decimal(candle.close),
                     Decimal(candle.volume)))
    return rows


def test_ten_years_of_daily_history_chunked_every_candle_served_published_once(
    settings: Settings, make_topic: Callable[[], str], fake_finnhub: FakeFinnhub
) -> None:
    topic = make_topic()
    first, last = dt.date(2003, 1, 1), dt.date(2013, 3, 1)
    done = backfill(["--source", "finnhub", "--symbols", "AAPL,GOOG,FB,NOPE", "--resolution", "D",
                     "--from", first.isoformat(), "--to", last.isoformat()],
                    finnhub_env(fake_finnhub, topic))
    assert done.returncode == 0, done.stderr
    # one call per symbol and 5-year chunk, exactly the planned ranges, in order
    planned = [(c.symbol, c.start, c.end) for s in ("AAPL", "GOOG", "FB", "NOPE")
               for c in plan_chunks(s, "D", first, last)]
    calls = fake_finnhub.candle_requests
    assert [(r.symbol, r.start, r.end) for r in calls] == planned and len(planned) == 12
    assert {r.resolution for r in calls} == {"D"} and {r.status for r in calls} == {200}
    served = sum(r.candles for r in calls)
    expected = bundled_rows({"AAPL", "GOOG", "FB"}, first, last)
    assert served == len(expected) == 4_902
    # every candle served is in Kafka once, with exactly the served values
    assert sorted(published_rows(settings, topic, served)) == sorted(expected)
    # the summary: no_data ranges reported (adjacent ones merged), not errors
    empty = [(r.symbol, r.start, r.end) for r in calls if r.candles == 0]
    assert [s for s, _, _ in empty] == ["FB", "NOPE", "NOPE", "NOPE"]  # FB lists in 2012
    assert "no_data         FB 2003-01-01..2008-01-01; NOPE 2003-01-01..2013-03-01" in done.stderr
    assert f"{served:,} to {topic}, {served:,} acknowledged by Kafka" in done.stderr
    assert "12 for 12 ranges" in done.stderr and "(exit 0" in done.stderr


def test_429_is_waited_out_and_calls_are_paced(
    settings: Settings, make_topic: Callable[[], str], fake_finnhub: FakeFinnhub
) -> None:
    topic = make_topic()
    hourly = [(1704202200 + 3600 * i, 185.0 + i, 186.0 + i, 184.5 + i, 185.5 + i, 1000 + i)
              for i in range(7)]  # 2024-01-02 13:30 UTC onwards
    fake_finnhub.set_candles("AAPL", "60", hourly)
    fake_finnhub.fail_candles(2, status=429, retry_after=1.5)
    done = backfill(["--source", "finnhub", "--symbols", "AAPL", "--resolution", "60",
                     "--from", "2024-01-01", "--to", "2024-12-31", "--progress"],
                    {**finnhub_env(fake_finnhub, topic), "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "backfill AAPL 60 2024-12-30..2024-12-31 ━━" in done.stderr  # the bar, at its end
    calls = fake_finnhub.candle_requests
    assert [r.status for r in calls[:3]] == [429, 429, 200]
    assert calls[0].start == calls[1].start == calls[2].start  # the same range, retried
    assert calls[1].time - calls[0].time >= 1.5 and calls[2].time - calls[1].time >= 1.5
    assert "HTTP 429 (rate limit), waiting 1.5s as asked" in done.stderr
    chunks = plan_chunks("AAPL", "60", dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert len(chunks) == 14 and len(calls) == 16
    assert all(r.end - r.start < 28 * 86_400 for r in calls)  # intraday: within a month a call
    # within Finnhub's limits in every window: <= 30 calls a second, <= 60 a minute. The limiter
    # is a bucket of 10 tokens refilled at 50 a minute: any span of L seconds holds at most
    # 10 + L * 50/60 calls. The two 1.5 s waits refill what the 429s took, the next calls go at
    # once until the bucket is empty, and the last 4 wait for a token each (~1.2 s apart). The
    # times are taken as the requests arrive, so allow a tenth of a call (0.12 s) of latency.
    stamps = [r.time for r in calls]
    for i, start in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s < start + 1) <= 30
        assert sum(1 for s in stamps[i:] if s < start + 60) <= 60
        for j in range(i, len(stamps)):
            assert j - i + 1 <= 10 + (stamps[j] - start) * 50 / 60 + 0.1, (i, j)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(gap >= 1.0 for gap in gaps[-4:]), [round(g, 3) for g in gaps]
    assert len(published_rows(settings, topic, 7)) == 7
    assert "2 answered 429 and were retried" in done.stderr


@pytest.mark.parametrize(
    ("token", "deny", "message"),
    [
        ("wrong-key", False, "Finnhub refused the API key (HTTP 401: Invalid API key); check "
                             "FINNHUB_API_KEY"),
        ("test-token", True, "Finnhub answered HTTP 403 for /stock/candle (\"You don't have access "
                             "to this resource.\"): this API key's plan has no access to stock "
                             "candles"),
    ],
)
def test_rejected_key_or_plan_stops_at_the_first_call_with_exit_3(
    settings: Settings, make_topic: Callable[[], str], fake_finnhub: FakeFinnhub, token: str,
    deny: bool, message: str,
) -> None:
    topic = make_topic()
    fake_finnhub.deny_candles = deny
    done = backfill(["--source", "finnhub", "--symbols", "AAPL,MSFT", "--from", "2000-01-01",
                     "--to", "2013-01-01"], finnhub_env(fake_finnhub, topic, token=token))
    assert done.returncode == 3, done.stderr
    assert message in done.stderr
    assert len(fake_finnhub.candle_requests) == 1  # no retry, no other symbol
    assert token not in done.stderr  # the key never reaches the log
    assert consume_all(settings, topic) == []


def test_the_bundled_file_is_published_row_for_row(
    settings: Settings, make_topic: Callable[[], str]
) -> None:
    topic = make_topic()
    done = backfill(["--source", "file", "--file", str(DAILY_CANDLES)], {"CANDLES_TOPIC": topic})
    assert done.returncode == 0, done.stderr
    expected = bundled_rows({"AAPL", "FB", "GOOG", "IBM", "MSFT"}, dt.date(1970, 1, 1),
                            dt.date(2100, 1, 1))
    assert len(expected) == 12_154
    rows = published_rows(settings, topic, len(expected))
    assert sorted(rows) == sorted(expected)
    assert "12,154 rows, 12,154 valid, 0 invalid" in done.stderr
    messages = consume_all(settings, topic, expect=len(expected))
    assert {json.loads(m.value)["source"] for m in messages} == {"file"}


def test_a_file_with_bad_rows_publishes_nothing_unless_told(
    settings: Settings, make_topic: Callable[[], str], tmp_path: Path
) -> None:
    path = tmp_path / "candles.jsonl"
    good: dict[str, Any] = {"symbol": "NVDA", "resolution": "D", "bar_start": 1735776000000,
                            "open": 136.0, "high": 138.88, "low": 134.63, "close": 138.31,
                            "volume": 198247166}
    lines = [good, {**good, "bar_start": 1735862400000, "low": 140.0},
             {**good, "bar_start": 1736121600000}, {**good, "volume": "many"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    topic = make_topic()
    done = backfill(["--source", "file", "--file", str(path)], {"CANDLES_TOPIC": topic})
    assert done.returncode == 4, done.stderr
    assert f"{path}: line 2: low 140.0 is above high 138.88" in done.stderr
    assert f'{path}: line 4: volume: must be a JSON number, got string "many"' in done.stderr
    assert consume_all(settings, topic) == []
    done = backfill(["--source", "file", "--file", str(path), "--skip-invalid"],
                    {"CANDLES_TOPIC": topic})
    assert done.returncode == 4, done.stderr
    assert "the valid rows were published" in done.stderr
    assert sorted(r[2] for r in published_rows(settings, topic, 2)) == [1735776000000,
                                                                        1736121600000]


def test_unacknowledged_candles_exit_1(tmp_path: Path) -> None:
    started = time.monotonic()
    done = backfill(["--source", "file", "--file", str(DAILY_CANDLES), "--flush-timeout", "3"],
                    # another (unsecured, unreachable) broker than the stack's: no local login
                    {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
                     "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
                     "CANDLES_TOPIC": "test.backfill.nowhere"}, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "12,154 candles not acknowledged by Kafka" in done.stderr
    assert "0 acknowledged by Kafka" in done.stderr
    assert time.monotonic() - started < 60


def test_sigint_stops_a_waiting_backfill_promptly_with_exit_130(
    settings: Settings, make_topic: Callable[[], str], fake_finnhub: FakeFinnhub
) -> None:
    topic = make_topic()
    fake_finnhub.fail_candles(1, status=429, retry_after=120)
    process = subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "backfill", "--source", "finnhub", "--symbols",
         "IBM,MSFT", "--from", "2001-01-01", "--to", "2012-12-31", "--no-progress"],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **finnhub_env(fake_finnhub, topic)},
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    fake_finnhub.wait_for(lambda: len(fake_finnhub.candle_requests) == 1, timeout=30)
    time.sleep(1.0)  # now waiting out the 120 s Retry-After
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 20
    assert "interrupted; run the same backfill again" in stderr
    assert len(fake_finnhub.candle_requests) == 1
