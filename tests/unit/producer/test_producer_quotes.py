"""The REST quote side: the rate limiter and the response mapping."""

from __future__ import annotations

from decimal import Decimal

import pytest

from producer.finnhub_quotes import RateLimiter, TokenBucket, quote_from_response
from tickhouse.schemas import InvalidMessage, parse_quote, to_json

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_limiter(limiter: RateLimiter, clock: FakeClock, calls: int) -> list[float]:
    """Acquire `calls` times, advancing the fake clock by the waits it asks for."""
    stamps: list[float] = []
    while len(stamps) < calls:
        wait = limiter.try_acquire()
        if wait == 0:
            stamps.append(clock.now)
        else:
            clock.now += wait
    return stamps


def test_finnhub_free_plan_limits_hold_in_every_window() -> None:
    clock = FakeClock()
    stamps = run_limiter(RateLimiter.finnhub_free(clock), clock, 200)
    for i, start in enumerate(stamps):
        in_second = [s for s in stamps[i:] if s < start + 1.0]
        in_minute = [s for s in stamps[i:] if s < start + 60.0]
        assert len(in_second) <= 30
        assert len(in_minute) <= 60
    # and it is not needlessly slow: a burst of 10, then 50 a minute
    assert stamps[9] == stamps[0] < stamps[10]
    assert stamps[-1] - stamps[0] == pytest.approx(190 * 60 / 50, abs=1.5)


def test_token_bucket_refills_continuously() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, capacity=2, clock=clock)
    bucket.take()
    bucket.take()
    assert bucket.wait_time() == pytest.approx(0.5)
    clock.now += 0.25
    assert bucket.wait_time() == pytest.approx(0.25)
    clock.now += 10
    assert bucket.wait_time() == 0
    bucket.take()
    bucket.take()
    assert bucket.wait_time() > 0  # capped at capacity, no hoarding


def test_quote_response_maps_fields_and_seconds_to_milliseconds() -> None:
    body = {"c": 261.74, "d": -1.23, "dp": -0.4678, "h": 263.31, "l": 260.68, "o": 261.07,
            "pc": 262.97, "t": 1763649000}
    quote = quote_from_response("AAPL", body, now=1763649000000)
    assert quote is not None
    assert quote.ts == 1763649000000
    assert (quote.price, quote.change, quote.change_pct) == (
        Decimal("261.74"), Decimal("-1.23"), Decimal("-0.4678"))
    assert parse_quote(to_json(quote), now=1763649000000) == quote


def test_unknown_symbol_quote_is_not_published() -> None:
    body = {"c": 0, "d": None, "dp": None, "h": 0, "l": 0, "o": 0, "pc": 0, "t": 0}
    assert quote_from_response("NOPE", body) is None


def test_quote_with_bad_time_is_rejected() -> None:
    with pytest.raises(InvalidMessage, match="t: must be epoch seconds"):
        quote_from_response("AAPL", {"c": 1.0, "h": 1, "l": 1, "o": 1, "pc": 1, "t": "x"})
