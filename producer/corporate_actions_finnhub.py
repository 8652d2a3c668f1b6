"""Finnhub's `/stock/split` and `/stock/dividend` (finnhub-python `stock_splits`, `stock_dividends`)
within the rate limit, with the retries of the other Finnhub calls.

`GET /stock/split?symbol=S&from=YYYY-MM-DD&to=YYYY-MM-DD&token=KEY` and the same for
`/stock/dividend`; both answer a JSON array (mapped by `producer.corporate_actions`). Calls share
the limiter of the other REST calls (Finnhub allows 60 a minute per key). A 429 waits what
Finnhub asks (`Retry-After` or `X-Ratelimit-Reset`), else an exponential backoff with jitter; 5xx
and network errors are retried with the backoff; 401 and 403 raise FinnhubAuthError at once
(retrying cannot help and only spends the key's budget); another 4xx fails that call.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import requests
from finnhub.exceptions import FinnhubAPIException, FinnhubRequestException

from producer.errors import ProducerError
from producer.finnhub_candles import retry_after_seconds
from producer.finnhub_quotes import RateLimiter
from producer.finnhub_stream import FinnhubAuthError, backoff_delays
from tickhouse.redaction import redact

log = logging.getLogger(__name__)

ENDPOINTS = {"split": "/stock/split", "dividend": "/stock/dividend"}


class ActionFetchError(ProducerError):
    """One call failed for good (after the retries, or a 4xx that retrying cannot fix)."""


# (symbol, from "YYYY-MM-DD", to "YYYY-MM-DD") -> the decoded JSON answer
Caller = Callable[[str, str, str], Any]


class CorporateActionFetcher:
    """The two calls for one symbol and date range, one at a time within `limiter`."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        max_retry_after: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        import finnhub

        if not api_key:
            raise FinnhubAuthError("FINNHUB_API_KEY is not set; it is needed for --source finnhub")
        self._api_key = api_key
        self._client = finnhub.Client(api_key=api_key)
        # finnhub-python keeps API_URL as a class attribute: set it on this instance only
        self._client.API_URL = api_url.rstrip("/")
        self._calls: dict[str, Caller] = {
            "split": lambda symbol, first, last: self._client.stock_splits(symbol, _from=first, to=last),
            "dividend": lambda symbol, first, last: self._client.stock_dividends(
                symbol, _from=first, to=last),
        }
        self.limiter = limiter or RateLimiter.finnhub_free()
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_retry_after = max_retry_after
        self._rng = rng or random.Random()
        self.calls = 0
        self.retries_429 = 0

    def close(self) -> None:
        self._client.close()

    def fetch(self, action: str, symbol: str, first: dt.date, last: dt.date) -> Any:
        """Finnhub's answer for `action` (split | dividend) of `symbol` with an ex-date in
        [first, last]; raises ActionFetchError when the call failed for good."""
        endpoint = ENDPOINTS[action]
        what = f"{symbol} {endpoint} {first}..{last}"
        delays = iter(backoff_delays(self._backoff_initial, self._backoff_max, self._rng))
        reason = ""
        for attempt in range(1, self._max_attempts + 1):
            while (wait := self.limiter.try_acquire()) > 0:
                self._sleep(wait)
            self.calls += 1
            try:
                return self._calls[action](symbol, first.isoformat(), last.isoformat())
            except FinnhubAPIException as err:
                status = err.status_code
                if status == 401:
                    raise FinnhubAuthError(f"Finnhub refused the API key (HTTP 401: {err.message}); "
                                           "check FINNHUB_API_KEY") from None
                if status == 403:
                    raise FinnhubAuthError(
                        f"Finnhub answered HTTP 403 for {endpoint} ({err.message!r}): this API key's "
                        "plan has no access to it. Use a key whose plan includes it, or load the "
                        "actions from a file with `tickhouse corporate-actions refresh --source file "
                        "--file PATH`") from None
                reason = f"HTTP {status}: {err.message}"
                if status == 429:
                    self.retries_429 += 1
                    asked = retry_after_seconds(err.response.headers)
                    delay = min(asked, self._max_retry_after) if asked is not None else next(delays)
                    if attempt < self._max_attempts:
                        log.warning("%s: HTTP 429 (rate limit), waiting %.1fs (attempt %d/%d)", what,
                                    delay, attempt, self._max_attempts)
                        self._sleep(delay)
                    continue
                if status < 500:
                    raise ActionFetchError(f"{what}: {reason}") from None
            except (requests.RequestException, FinnhubRequestException) as err:
                # requests puts the full URL, and so the token, in its errors
                reason = redact(f"{type(err).__name__}: {err}", [self._api_key])
            if attempt < self._max_attempts:
                delay = next(delays)
                log.warning("%s: %s; retrying in %.1fs (attempt %d/%d)", what, reason, delay, attempt,
                            self._max_attempts)
                self._sleep(delay)
        raise ActionFetchError(f"{what}: {reason} (gave up after {self._max_attempts} attempts)")
