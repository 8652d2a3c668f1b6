"""The Finnhub side of `tickhouse backfill`: chunking, answers -> candles, the fetcher's rate limit,
429 backoff and error handling (pure: the HTTP call is a function the test scripts)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import requests
from finnhub.exceptions import FinnhubAPIException

from producer.backfill import BackfillSummary, publish_finnhub
from producer.finnhub_candles import (
    CHUNK_DAYS,
    CandleFetcher,
    Chunk,
    FetchResult,
    FinnhubResponseError,
    candle_problem,
    candles_from_response,
    day_seconds,
    plan_chunks,
    retry_after_seconds,
)
from producer.finnhub_quotes import RateLimiter, TokenBucket
from producer.finnhub_stream import FinnhubAuthError
from tickhouse.schemas import RESOLUTIONS, parse_candle

pytestmark = pytest.mark.unit

DAY = 86_400


# --- chunks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_chunks_cover_the_range_exactly_once(resolution: str) -> None:
    first, last = dt.date(2003, 2, 27), dt.date(2025, 12, 31)
    chunks = plan_chunks("AAPL", resolution, first, last)
    assert chunks[0].start == day_seconds(first)
    assert chunks[-1].end == day_seconds(last) + DAY - 1  # --to 23:59:59 UTC included
    for before, after in itertools.pairwise(chunks):
        assert after.start == before.end + 1  # no gap, no overlap
    limit = CHUNK_DAYS[resolution] * DAY
    assert all(c.end - c.start + 1 <= limit for c in chunks)
    assert all(c.end - c.start + 1 == limit for c in chunks[:-1])  # full chunks but the last
    assert {(c.symbol, c.resolution) for c in chunks} == {("AAPL", resolution)}


def test_intraday_chunks_stay_within_a_month_and_daily_ones_are_few() -> None:
    for resolution in ("1", "5", "15", "30", "60"):
        assert CHUNK_DAYS[resolution] <= 28  # Finnhub: at most one month of intraday per call
    two_years = (dt.date(2024, 1, 1), dt.date(2025, 12, 31))
    assert len(plan_chunks("A", "1", *two_years)) == 27  # 731 days / 28
    assert len(plan_chunks("A", "D", *two_years)) == 1
    assert len(plan_chunks("A", "D", dt.date(2006, 1, 1), dt.date(2025, 12, 31))) == 4  # 20 years
    assert len(plan_chunks("A", "M", dt.date(1980, 1, 1), dt.date(2025, 12, 31))) == 1


def test_one_day_and_bad_ranges() -> None:
    (chunk,) = plan_chunks("IBM", "60", dt.date(2024, 2, 29), dt.date(2024, 2, 29))
    assert (chunk.start, chunk.end) == (1709164800, 1709164800 + DAY - 1)
    assert chunk.describe() == "IBM 60 2024-02-29..2024-02-29"
    with pytest.raises(ValueError, match="--from 2024-03-01 is after --to 2024-02-29"):
        plan_chunks("IBM", "D", dt.date(2024, 3, 1), dt.date(2024, 2, 29))
    with pytest.raises(ValueError, match="resolution '2'"):
        plan_chunks("IBM", "2", dt.date(2024, 3, 1), dt.date(2024, 3, 1))


# --- answers ---------------------------------------------------------------------------------

OK = {"c": [217.68, 221.03], "h": [222.49, 221.5], "l": [217.19, 217.1402], "o": [221.03, 218.55],
      "s": "ok", "t": [1569297600, 1569384000], "v": [33463820, 24018876.5]}


def test_ok_answer_maps_field_by_field_with_exact_numbers() -> None:
    status, candles = candles_from_response("AAPL", "D", json.loads(json.dumps(OK)))
    assert status == "ok" and len(candles) == 2
    first = candles[0]
    assert (first.symbol, first.resolution, first.bar_start, first.source) == (
        "AAPL", "D", 1569297600000, "finnhub")
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        Decimal("221.03"), Decimal("222.49"), Decimal("217.19"), Decimal("217.68"), 33463820)
    assert candles[1].low == Decimal("217.1402") and candles[1].volume == Decimal("24018876.5")
    # what is published parses back to the same candle
    from tickhouse.schemas import to_json

    assert parse_candle(to_json(first)) == first


def test_no_data_answers() -> None:
    assert candles_from_response("X", "D", {"s": "no_data"}) == ("no_data", [])
    empty = {"c": [], "h": [], "l": [], "o": [], "s": "ok", "t": [], "v": []}
    assert candles_from_response("X", "D", empty) == ("no_data", [])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "not a JSON object"),
        ({"s": "error"}, "s is 'error'"),
        ({**OK, "v": [1]}, "arrays of different lengths"),
        ({**OK, "t": ["2019-09-24", 1569384000]}, "t[0] is '2019-09-24', not whole UNIX seconds"),
        ({**OK, "t": [1569297600.5, 1569384000]}, "not whole UNIX seconds"),
        ({key: value for key, value in OK.items() if key != "h"}, "h is not an array"),
        ({**OK, "o": [float("nan"), 1.0]}, "not a finite number"),
    ],
)
def test_malformed_answers(body: Any, message: str) -> None:
    with pytest.raises(FinnhubResponseError, match=re.escape(message)):
        candles_from_response("AAPL", "D", body)


def test_a_served_candle_that_breaks_the_contract_is_kept_and_explained() -> None:
    body = {**OK, "h": [200.0, 221.5]}  # high below low: Finnhub served a broken bar
    _, candles = candles_from_response("AAPL", "D", body)
    assert candle_problem(candles[0]) == "low 217.19 is above high 200.0"
    assert candle_problem(candles[1]) is None


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"},
                               now=1445412480.0) == 10.0
    assert retry_after_seconds({"X-Ratelimit-Reset": "1445412500"}, now=1445412480.0) == 20.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "-3"}) == 0.0


# --- the fetcher -----------------------------------------------------------------------------


class Clock:
    """A fake monotonic clock that `sleep` advances; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return False


def http_error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
               ) -> FinnhubAPIException:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers.update({"Content-Type": "application/json", **(headers or {})})
    return FinnhubAPIException(response)


Script = list[FinnhubAPIException | Exception | dict[str, Any]]


def scripted(script: Script, clock: Clock, calls: list[tuple[float, str, int, int]]
             ) -> Callable[[str, str, int, int], Any]:
    """A stand-in for Client.stock_candles answering from `script`, then {"s": "no_data"}."""

    def call(symbol: str, resolution: str, start: int, end: int) -> Any:
        calls.append((clock.now, symbol, start, end))
        answer = script.pop(0) if script else {"s": "no_data"}
        if isinstance(answer, Exception):
            raise answer
        return answer

    return call


def fetcher(script: Script, clock: Clock, calls: list[tuple[float, str, int, int]],
            **kwargs: Any) -> CandleFetcher:
    return CandleFetcher("http://unused", "key", call=scripted(script, clock, calls),
                         limiter=kwargs.pop("limiter", RateLimiter.finnhub_free(clock)),
                         sleep=clock.sleep, **kwargs)


CHUNK = Chunk("AAPL", "D", 1569283200, 1569369599)


def test_429_waits_what_retry_after_asks_then_succeeds() -> None:
    clock, calls = Clock(), []
    limit = {"error": "API limit reached. Please try again later. Remaining Limit: 0"}
    f = fetcher([http_error(429, limit, {"Retry-After": "7"}),
                 http_error(429, limit, {"Retry-After": "2.5"}), OK], clock, calls)
    result = f.fetch(CHUNK)
    assert (result.status, len(result.candles), result.calls) == ("ok", 2, 3)
    assert f.retries_429 == 2
    assert clock.sleeps == [7.0, 2.5]
    assert [t - calls[0][0] for t, *_ in calls] == [0.0, 7.0, 9.5]


def test_429_without_retry_after_backs_off_exponentially_and_gives_up() -> None:
    clock, calls = Clock(), []
    f = fetcher([http_error(429, {"error": "limit"})] * 10, clock, calls, max_attempts=4,
                backoff_initial=1.0, backoff_max=60.0)
    result = f.fetch(CHUNK)
    assert result.status == "failed" and result.calls == 4
    assert result.error == "HTTP 429: limit (gave up after 4 attempts)"
    assert len(clock.sleeps) == 3  # no wait after the last attempt
    for delay, nominal in zip(clock.sleeps, (1.0, 2.0, 4.0), strict=True):
        assert nominal / 2 <= delay <= nominal  # equal jitter


def test_retry_after_is_capped() -> None:
    clock, calls = Clock(), []
    f = fetcher([http_error(429, {"error": "x"}, {"Retry-After": "86400"}), OK], clock, calls,
                max_retry_after=120.0)
    assert f.fetch(CHUNK).status == "ok"
    assert clock.sleeps == [120.0]


def test_401_and_403_stop_at_once_with_what_to_do() -> None:
    clock, calls = Clock(), []
    with pytest.raises(FinnhubAuthError, match=r"refused the API key \(HTTP 401: Invalid API key\)"):
        fetcher([http_error(401, {"error": "Invalid API key"})], clock, calls).fetch(CHUNK)
    with pytest.raises(FinnhubAuthError) as err:
        fetcher([http_error(403, {"error": "You don't have access to this resource."})],
                clock, calls).fetch(CHUNK)
    assert "HTTP 403" in str(err.value) and "no access to stock candles" in str(err.value)
    assert "--source file" in str(err.value)
    assert len(calls) == 2 and clock.sleeps == []  # one call each, no retry


def test_server_and_network_errors_are_retried_other_4xx_are_not() -> None:
    clock, calls = Clock(), []
    f = fetcher([http_error(502, {"error": "bad gateway"}),
                 requests.ConnectionError("http://x/stock/candle?token=key refused"), OK],
                clock, calls)
    assert f.fetch(CHUNK).status == "ok"
    assert len(calls) == 3 and len(clock.sleeps) == 2
    wrong = fetcher([http_error(422, {"error": "Wrong resolution"})], clock, calls).fetch(CHUNK)
    assert (wrong.status, wrong.calls, wrong.error) == ("failed", 1, "HTTP 422: Wrong resolution")


def test_malformed_answer_fails_the_chunk_without_retrying() -> None:
    clock, calls = Clock(), []
    result = fetcher([{**OK, "v": [1]}], clock, calls).fetch(CHUNK)
    assert result.status == "failed" and result.calls == 1
    assert result.error is not None and "arrays of different lengths" in result.error


def test_calls_stay_within_60_per_minute_and_30_per_second() -> None:
    clock, calls = Clock(), []
    f = fetcher([], clock, calls)
    chunks = plan_chunks("AAPL", "1", dt.date(2016, 1, 1), dt.date(2025, 12, 31))
    assert len(chunks) == 131
    for chunk in chunks:
        assert f.fetch(chunk).status == "no_data"
    stamps = [t for t, *_ in calls]
    for i, start in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s < start + 60) <= 60
        assert sum(1 for s in stamps[i:] if s < start + 1) <= 30
    # and no slower than needed: 10 at once, then 50 a minute
    assert stamps[-1] - stamps[0] == pytest.approx((131 - 10) * 60 / 50, abs=1.5)


def test_a_429_in_the_middle_of_a_paced_run_keeps_both_limits() -> None:
    clock, calls = Clock(), []
    script: Script = [{"s": "no_data"}] * 20 + [http_error(429, {"error": "x"}, {"Retry-After": "30"})]
    f = fetcher(script, clock, calls, limiter=RateLimiter([TokenBucket(50 / 60, 10, clock)]))
    for chunk in plan_chunks("AAPL", "5", dt.date(2023, 1, 1), dt.date(2024, 12, 31))[:25]:
        f.fetch(chunk)
    assert 30.0 in clock.sleeps
    stamps = [t for t, *_ in calls]
    assert len(stamps) == 26  # 25 chunks, one of them answered 429 once
    retry_index = 21
    assert stamps[retry_index] - stamps[retry_index - 1] >= 30.0
    for i, start in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s < start + 60) <= 60


# --- fetch + publish -------------------------------------------------------------------------


class ScriptedFetcher:
    """Answers chunks from a dict (chunk index -> FetchResult pieces)."""

    def __init__(self, answers: dict[int, tuple[str, Any]]) -> None:
        self.answers = answers
        self.calls = 0
        self.retries_429 = 0
        self.seen: list[Chunk] = []

    def fetch(self, chunk: Chunk) -> FetchResult:
        index = len(self.seen)
        self.seen.append(chunk)
        self.calls += 1
        status, value = self.answers.get(index, ("no_data", None))
        if status == "ok":
            _, candles = candles_from_response(chunk.symbol, chunk.resolution, value)
            return FetchResult(chunk, "ok", candles, calls=1)
        if status == "failed":
            return FetchResult(chunk, "failed", calls=1, error=value)
        return FetchResult(chunk, "no_data", calls=1)


def test_publish_reports_no_data_failures_invalid_and_duplicate_candles() -> None:
    chunks = [c for s in ("AAPL", "MSFT") for c in
              plan_chunks(s, "D", dt.date(2015, 1, 1), dt.date(2025, 12, 31))]
    assert len(chunks) == 6
    broken = {**OK, "h": [200.0, 221.5]}
    source = ScriptedFetcher({
        0: ("ok", OK),
        1: ("ok", OK),  # the same two candles again: published once
        3: ("ok", broken),
        5: ("failed", "HTTP 502: bad gateway (gave up after 8 attempts)"),
    })
    published: list[tuple[bytes, bytes]] = []
    summary = BackfillSummary(source="finnhub", topic="t")
    publish_finnhub(source, chunks, lambda k, v: published.append((k, v)), summary)  # type: ignore[arg-type]
    assert source.seen == chunks
    assert (summary.calls, summary.ranges) == (6, 6)
    assert (summary.served, summary.duplicates, summary.published, summary.invalid) == (4, 2, 4, 1)
    assert [k for k, _ in published] == [b"AAPL", b"AAPL", b"MSFT", b"MSFT"]
    assert [parse_candle(v).bar_start for k, v in published if k == b"AAPL"] == [
        1569297600000, 1569384000000]
    assert summary.no_data == ["AAPL 2025-01-02..2025-12-31", "MSFT 2020-01-02..2025-01-01"]
    assert summary.failed == [
        "MSFT 2025-01-02..2025-12-31: HTTP 502: bad gateway (gave up after 8 attempts)"]
    summary.acknowledged = summary.published
    assert summary.exit_code == 5


def test_exit_codes_follow_the_documented_order() -> None:
    s = BackfillSummary(source="finnhub", topic="t", published=3, acknowledged=3)
    assert s.exit_code == 0
    s.failed.append("x")
    assert s.exit_code == 5
    s.acknowledged = 2
    assert s.exit_code == 1
    s.interrupted = True
    assert s.exit_code == 130
    f = BackfillSummary(source="file", topic="t", bad_row_count=1)
    assert f.exit_code == 4


def test_adjacent_no_data_ranges_are_reported_as_one_span() -> None:
    chunks = [c for s in ("NEW", "OLD") for c in
              plan_chunks(s, "60", dt.date(2024, 1, 1), dt.date(2024, 12, 31))]
    answers: dict[int, tuple[str, Any]] = {10: ("ok", OK)}  # NEW lists in October
    answers.update({14 + i: ("ok", OK) for i in range(14) if i != 5})  # OLD: one quiet month
    summary = BackfillSummary(source="finnhub", topic="t")
    publish_finnhub(ScriptedFetcher(answers), chunks, lambda k, v: None, summary)  # type: ignore[arg-type]
    assert summary.no_data == ["NEW 2024-01-01..2024-10-06", "NEW 2024-11-04..2024-12-31",
                               "OLD 2024-05-20..2024-06-16"]
