"""Polling Finnhub's REST `/quote` endpoint within the free plan's limits (60 calls/min, 30/s)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import finnhub
import requests
from finnhub.exceptions import FinnhubAPIException, FinnhubRequestException

from producer.finnhub_stream import FinnhubAuthError, backoff_delays
from producer.metrics import ProducerStats
from tickhouse.redaction import redact
from tickhouse.schemas import InvalidMessage, Quote, validate_quote

log = logging.getLogger(__name__)

SOURCE = "finnhub"


class TokenBucket:
    """`capacity` tokens, refilled continuously at `rate` per second."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def wait_time(self) -> float:
        """Seconds until one token is available (0 if now)."""
        self._refill()
        # the epsilon absorbs float rounding, which could otherwise ask for a wait too small to
        # move the clock
        return 0.0 if self._tokens >= 1 - 1e-9 else (1 - self._tokens) / self.rate

    def take(self) -> None:
        self._refill()
        self._tokens -= 1


class RateLimiter:
    """All buckets must have a token for a call: e.g. 60 per minute and 30 per second."""

    def __init__(self, buckets: Iterable[TokenBucket]) -> None:
        self.buckets = list(buckets)

    @classmethod
    def finnhub_free(cls, clock: Callable[[], float] = time.monotonic) -> RateLimiter:
        """At most 60 calls in any 60 s and 30 in any 1 s (Finnhub's free plan).

        A bucket of capacity C refilled at r/s lets C + r*W calls through in a window of W
        seconds, so each bucket is sized for C + r*W to equal the limit: 10 + 50/min * 60 s = 60
        and 15 + 15/s * 1 s = 30. The sustained rate is 50 calls a minute.
        """
        return cls([TokenBucket(50 / 60, 10, clock), TokenBucket(15, 15, clock)])

    def wait_time(self) -> float:
        return max((bucket.wait_time() for bucket in self.buckets), default=0.0)

    def try_acquire(self) -> float:
        """Take a token from every bucket and return 0, or return how long to wait first."""
        wait = self.wait_time()
        if wait > 0:
            return wait
        for bucket in self.buckets:
            bucket.take()
        return 0.0

    async def acquire(self) -> None:
        while (wait := self.try_acquire()) > 0:
            await asyncio.sleep(wait)


class RedactingFilter(logging.Filter):
    """Masks a secret in every record a handler emits, whichever library logged it: at DEBUG,
    websockets and urllib3 log request lines that carry the Finnhub key as `token=`."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, [self.secret])
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, [self.secret])
        return True


def hide_secret_in_logs(secret: str) -> None:
    """Install a RedactingFilter for `secret` on every handler of the root logger."""
    if not secret:
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) and f.secret == secret for f in handler.filters):
            handler.addFilter(RedactingFilter(secret))


def _number(value: Any) -> Any:
    if value is None or (isinstance(value, (int, Decimal)) and not isinstance(value, bool)):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return value  # let validation name the wrong type


def quote_from_response(
    symbol: str, body: Mapping[str, Any], now: int | None = None
) -> Quote | None:
    """A `/quote` response -> Quote; None when `c == 0` (Finnhub's answer for an unknown symbol).

    Raises InvalidMessage when the response does not fit docs/interfaces/kafka-messages.md.
    """
    if not isinstance(body, Mapping):
        raise InvalidMessage(f"quote response is not a JSON object: {body!r:.200}")
    if body.get("c") in (0, None):
        return None
    seconds = body.get("t")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise InvalidMessage(f"t: must be epoch seconds, got {seconds!r}")
    obj = {
        "symbol": symbol,
        "price": _number(body.get("c")),
        "change": _number(body.get("d")),
        "change_pct": _number(body.get("dp")),
        "high": _number(body.get("h")),
        "low": _number(body.get("l")),
        "open": _number(body.get("o")),
        "prev_close": _number(body.get("pc")),
        "ts": int(seconds) * 1000,
        "source": SOURCE,
    }
    return validate_quote(obj, now)


class QuotePoller:
    """Fetches `/quote` for each symbol every `every` seconds and hands valid quotes on."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        symbols: Callable[[], list[str]],
        on_quote: Callable[[Quote], None],
        *,
        every: float,
        stats: ProducerStats | None = None,
        limiter: RateLimiter | None = None,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        max_attempts: int = 6,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key:
            raise FinnhubAuthError("FINNHUB_API_KEY is not set; it is needed for /quote polling")
        self.client = finnhub.Client(api_key=api_key)
        self._api_key = api_key
        # finnhub-python keeps API_URL as a class attribute: set it on this instance only.
        self.client.API_URL = api_url.rstrip("/")
        self._symbols = symbols
        self._on_quote = on_quote
        self._every = every
        self.stats = stats if stats is not None else ProducerStats()
        self.limiter = limiter or RateLimiter.finnhub_free()
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_attempts = max_attempts
        self._rng = rng or random.Random()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                started = time.monotonic()
                for symbol in self._symbols():
                    if stop.is_set():
                        return
                    await self.poll_symbol(symbol, stop)
                remaining = self._every - (time.monotonic() - started)
                if remaining > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), remaining)
        finally:
            self.client.close()

    async def poll_symbol(self, symbol: str, stop: asyncio.Event | None = None) -> Quote | None:
        """Fetch one quote with retries; publishes it and returns it (None if not published)."""
        delays = iter(backoff_delays(self._backoff_initial, self._backoff_max, self._rng))
        for attempt in range(1, self._max_attempts + 1):
            await self.limiter.acquire()
            try:
                body = await asyncio.to_thread(self.client.quote, symbol)
            except FinnhubAPIException as err:
                self.stats.quote_errors += 1
                if err.status_code in (401, 403):
                    raise FinnhubAuthError(
                        f"Finnhub refused the API key for /quote (HTTP {err.status_code}: "
                        f"{err.message}); check FINNHUB_API_KEY"
                    ) from None
                if err.status_code != 429 and err.status_code < 500:
                    log.error("quote %s: HTTP %s %s; not retried", symbol, err.status_code,
                              err.message)
                    return None
                reason = f"HTTP {err.status_code}"
            except (requests.RequestException, FinnhubRequestException) as err:
                self.stats.quote_errors += 1
                # requests puts the full URL in its errors, and finnhub-python sends the key as
                # the `token` query parameter: keep the key out of the log
                reason = redact(f"{type(err).__name__}: {err}", [self._api_key])
            else:
                return self._publish(symbol, body)
            delay = next(delays)
            log.warning("quote %s: %s (attempt %d/%d); retrying in %.1fs", symbol, reason,
                        attempt, self._max_attempts, delay)
            if stop is not None:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return None
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(delay)
        log.error("quote %s: giving up for this round after %d attempts", symbol,
                  self._max_attempts)
        return None

    def _publish(self, symbol: str, body: Any) -> Quote | None:
        try:
            quote = quote_from_response(symbol, body)
        except InvalidMessage as err:
            self.stats.malformed_frames += 1
            log.warning("quote %s: invalid response (%s): %r", symbol, err, body)
            return None
        if quote is None:
            self.stats.quotes_skipped += 1
            log.warning("quote %s: c == 0, Finnhub does not know this symbol; not published",
                        symbol)
            return None
        self.stats.quotes_in += 1
        self._on_quote(quote)
        return quote
