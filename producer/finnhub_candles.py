"""Finnhub's REST `/stock/candle` for backfills: date ranges in chunks, within the rate limits,
with 429 backoff, and its answers as candles.

Protocol (https://finnhub.io/docs/api/stock-candles), called through finnhub-python's
`Client.stock_candles`: `GET /stock/candle?symbol=S&resolution=R&from=T0&to=T1&token=KEY` (T0, T1 in
UNIX seconds, both inclusive) answers `{"c":[..],"h":[..],"l":[..],"o":[..],"s":"ok","t":[..],
"v":[..]}` (t in seconds; daily candles at 00:00 UTC of the trading date) or `{"s":"no_data"}` when
the range holds nothing. A wrong key gets HTTP 401, a plan without candle access 403 ("You don't
have access to this resource."; stock candles are a premium endpoint), too many calls 429.

Chunk sizes (`CHUNK_DAYS`), one call per chunk and symbol:

- intraday (1, 5, 15, 30, 60): 28 days. Finnhub returns at most one month of intraday candles per
  call ("Only 1 month of intraday will be returned at a time"); 28 days stays within a month however
  it is counted (February included), so no call is silently cut short. 28 days of 1-minute candles
  are at most ~27k candles (extended hours), a response of ~1.5 MB.
- D: 5 years (1,827 days), ~1,260 candles per call; W: 25 years, ~1,300; M: 100 years, 1,200.
  Finnhub documents no cap for these, so the chunk only bounds the size of one response (~100 kB)
  and what one failed call costs to retry, while keeping calls few: the 60 calls/min budget is what
  bounds a backfill (20 years of daily candles are 4 calls per symbol).

Chunks do not overlap: each ends one second before the next begins, so a candle is served once.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests
from finnhub.exceptions import FinnhubAPIException, FinnhubRequestException

from producer.errors import ProducerError
from producer.finnhub_quotes import RateLimiter
from producer.finnhub_stream import FinnhubAuthError, backoff_delays
from tickhouse.redaction import redact
from tickhouse.schemas import RESOLUTIONS, Candle, InvalidMessage, validate_candle

log = logging.getLogger(__name__)

SOURCE = "finnhub"
INTRADAY = ("1", "5", "15", "30", "60")
CHUNK_DAYS: dict[str, int] = {
    **dict.fromkeys(INTRADAY, 28),
    "D": 1827,  # 5 years (with up to 2 leap days)
    "W": 9132,  # 25 years
    "M": 36525,  # 100 years
}
_EPOCH = dt.date(1970, 1, 1)
SECONDS_PER_DAY = 86_400
NO_ACCESS = "You don't have access to this resource."


class FinnhubResponseError(ProducerError, ValueError):
    """A `/stock/candle` answer that does not follow Finnhub's documented shape."""


class Interrupted(Exception):
    """The backfill was asked to stop (SIGINT / SIGTERM) while waiting."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """One call's worth: `symbol`'s candles with `start <= t <= end` (UNIX seconds)."""

    symbol: str
    resolution: str
    start: int
    end: int

    @property
    def first_day(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.start, dt.UTC).date()

    @property
    def last_day(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.end, dt.UTC).date()

    def describe(self) -> str:
        return f"{self.symbol} {self.resolution} {self.first_day}..{self.last_day}"


def day_seconds(day: dt.date) -> int:
    """00:00:00 UTC of `day` in UNIX seconds."""
    return (day - _EPOCH).days * SECONDS_PER_DAY


def plan_chunks(symbol: str, resolution: str, first: dt.date, last: dt.date) -> list[Chunk]:
    """The calls that cover `first` 00:00:00 UTC to `last` 23:59:59 UTC for one symbol."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution {resolution!r}: must be one of {', '.join(RESOLUTIONS)}")
    if first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    step = CHUNK_DAYS[resolution]
    chunks: list[Chunk] = []
    day = first
    while day <= last:
        following = min(day + dt.timedelta(days=step), last + dt.timedelta(days=1))
        chunks.append(Chunk(symbol, resolution, day_seconds(day), day_seconds(following) - 1))
        day = following
    return chunks


def _number(value: Any) -> Any:
    """A JSON number as served -> int or the exact Decimal of its shortest repr."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FinnhubResponseError(f"a candle value is {value}, not a finite number")
        return Decimal(repr(value))
    return value  # ints as they are; anything else is published as served and quarantined


def candles_from_response(symbol: str, resolution: str, body: Any) -> tuple[str, list[Candle]]:
    """A `/stock/candle` answer -> ("ok", candles) or ("no_data", []).

    The candles are what Finnhub served, mapped field by field (`t` seconds -> `bar_start` ms,
    `source` "finnhub"), not validated: one that breaks docs/interfaces/kafka-messages.md is still published,
    and the drain quarantines it with the reason (see `candle_problem`). Raises FinnhubResponseError when the
    answer itself is malformed (not the documented arrays, of different lengths, `t` not whole seconds).
    """
    if not isinstance(body, Mapping):
        raise FinnhubResponseError(f"not a JSON object: {body!r:.200}")
    status = body.get("s")
    if status == "no_data":
        return "no_data", []
    if status != "ok":
        raise FinnhubResponseError(f"s is {status!r}, expected 'ok' or 'no_data': {body!r:.200}")
    arrays: dict[str, list[Any]] = {}
    for key in ("t", "o", "h", "l", "c", "v"):
        value = body.get(key)
        if not isinstance(value, list):
            raise FinnhubResponseError(f"{key} is not an array: {value!r:.100}")
        arrays[key] = value
    lengths = {key: len(value) for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise FinnhubResponseError(f"arrays of different lengths: {lengths}")
    if not arrays["t"]:
        return "no_data", []
    candles: list[Candle] = []
    for i, seconds in enumerate(arrays["t"]):
        if isinstance(seconds, float) and seconds.is_integer():
            seconds = int(seconds)
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            raise FinnhubResponseError(f"t[{i}] is {seconds!r}, not whole UNIX seconds")
        candles.append(Candle(
            symbol=symbol,
            resolution=resolution,
            bar_start=seconds * 1000,
            open=_number(arrays["o"][i]),
            high=_number(arrays["h"][i]),
            low=_number(arrays["l"][i]),
            close=_number(arrays["c"][i]),
            volume=_number(arrays["v"][i]),
            source=SOURCE,
        ))
    return "ok", candles


def candle_problem(candle: Candle, now: int | None = None) -> str | None:
    """Why the drain will quarantine this candle (docs/interfaces/kafka-messages.md), or None when it is
    valid."""
    try:
        validate_candle(candle.to_dict(), now)
    except InvalidMessage as err:
        return str(err)
    return None


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """How long a 429 asks to wait: `Retry-After` (seconds or an HTTP date), else Finnhub's
    `X-Ratelimit-Reset` (UNIX seconds when the window resets); None when neither is usable."""
    current = time.time() if now is None else now
    value = (headers.get("Retry-After") or "").strip()
    if value:
        try:
            return max(float(value), 0.0)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            return max(when.timestamp() - current, 0.0)
    reset = (headers.get("X-Ratelimit-Reset") or "").strip()
    if reset:
        try:
            return max(float(reset) - current, 0.0)
        except ValueError:
            return None
    return None


@dataclass(slots=True)
class FetchResult:
    chunk: Chunk
    status: str  # ok | no_data | failed
    candles: list[Candle] = field(default_factory=list)
    calls: int = 0
    error: str | None = None


Caller = Callable[[str, str, int, int], Any]


class CandleFetcher:
    """Fetches chunks one call at a time within `limiter`, retrying 429, 5xx and network errors.

    A 429 waits what Finnhub asks (`Retry-After`, capped at `max_retry_after`), else an exponential
    backoff with jitter; 401 and 403 raise FinnhubAuthError at once (retrying cannot help and only
    spends the key's budget); other 4xx answers fail the chunk without retrying. `sleep(seconds)`
    waits and returns True when the backfill is being stopped.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        limiter: RateLimiter | None = None,
        call: Caller | None = None,
        sleep: Callable[[float], bool] | None = None,
        max_attempts: int = 8,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        max_retry_after: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key:
            raise FinnhubAuthError("FINNHUB_API_KEY is not set; it is needed for --source finnhub")
        self._api_key = api_key
        self._client: Any = None
        if call is None:
            import finnhub

            self._client = finnhub.Client(api_key=api_key)
            # finnhub-python keeps API_URL as a class attribute: set it on this instance only
            self._client.API_URL = api_url.rstrip("/")
            call = self._client.stock_candles
        self._call = call
        self.limiter = limiter or RateLimiter.finnhub_free()
        self._sleep = sleep or _plain_sleep
        self._max_attempts = max_attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_retry_after = max_retry_after
        self._rng = rng or random.Random()
        self.calls = 0
        self.retries_429 = 0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self._sleep(seconds):
            raise Interrupted()

    def _acquire(self) -> None:
        while (wait := self.limiter.try_acquire()) > 0:
            self._wait(wait)

    def fetch(self, chunk: Chunk) -> FetchResult:
        """One chunk: its candles, no_data, or failed (with the reason) after the retries."""
        result = FetchResult(chunk, "failed")
        delays = iter(backoff_delays(self._backoff_initial, self._backoff_max, self._rng))
        reason = ""
        for attempt in range(1, self._max_attempts + 1):
            self._acquire()
            self.calls += 1
            result.calls += 1
            try:
                body = self._call(chunk.symbol, chunk.resolution, chunk.start, chunk.end)
            except FinnhubAPIException as err:
                status = err.status_code
                if status == 401:
                    raise FinnhubAuthError(
                        f"Finnhub refused the API key (HTTP 401: {err.message}); check "
                        "FINNHUB_API_KEY"
                    ) from None
                if status == 403:
                    raise FinnhubAuthError(
                        f"Finnhub answered HTTP 403 for /stock/candle ({err.message!r}): this API "
                        "key's plan has no access to stock candles (a premium endpoint). Use a key "
                        "whose plan includes them, or load history from a file with "
                        "`tickhouse backfill --source file --file PATH`"
                    ) from None
                reason = f"HTTP {status}: {err.message}"
                if status == 429:
                    self.retries_429 += 1
                    asked = retry_after_seconds(err.response.headers)
                    delay = min(asked, self._max_retry_after) if asked is not None else next(delays)
                    if attempt < self._max_attempts:
                        log.warning("%s: HTTP 429 (rate limit), waiting %.1fs as %s (attempt %d/%d)",
                                    chunk.describe(), delay,
                                    "asked" if asked is not None else "backoff", attempt,
                                    self._max_attempts)
                        self._wait(delay)
                    continue
                if status < 500:
                    result.error = reason
                    log.error("%s: %s; not retried", chunk.describe(), reason)
                    return result
            except (requests.RequestException, FinnhubRequestException) as err:
                # requests puts the full URL, and so the token, in its errors
                reason = redact(f"{type(err).__name__}: {err}", [self._api_key])
            else:
                try:
                    result.status, result.candles = candles_from_response(
                        chunk.symbol, chunk.resolution, body)
                except FinnhubResponseError as err:
                    result.error = f"malformed answer: {err}"
                    log.error("%s: %s", chunk.describe(), result.error)
                    return result
                return result
            if attempt < self._max_attempts:
                delay = next(delays)
                log.warning("%s: %s; retrying in %.1fs (attempt %d/%d)", chunk.describe(), reason,
                            delay, attempt, self._max_attempts)
                self._wait(delay)
        result.error = f"{reason} (gave up after {self._max_attempts} attempts)"
        log.error("%s: %s", chunk.describe(), result.error)
        return result


def _plain_sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False
