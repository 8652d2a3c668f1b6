"""Company profiles: Finnhub's `/stock/profile2` (finnhub-python `company_profile2`) into
`raw.symbol_profiles`, for the configured symbols and every symbol dim_symbols lists.

Offline (no FINNHUB_API_KEY, or Finnhub unreachable) the seed `symbol_reference` fills the
symbols that have no profile yet (`source = 'seed'`); a Finnhub profile always replaces a seed
row, a seed row never replaces a Finnhub one. Calls share the limiter of quote polling (Finnhub
allows 60 a minute per key); a 429 or 5xx is retried with backoff, a 401 stops the refresh.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producer.finnhub_quotes import RateLimiter
from producer.finnhub_stream import FinnhubAuthError
from tickhouse.config import PROJECT_ROOT, Settings

log = logging.getLogger("tickhouse.producer.symbols")

SEED_FILE = PROJECT_ROOT / "dbt_project" / "seeds" / "symbol_reference.csv"
COLUMNS = ("symbol", "name", "exchange", "currency", "country", "industry", "market_cap", "ipo",
           "weburl", "source", "fetched_at")


@dataclass(frozen=True, slots=True)
class Profile:
    symbol: str
    name: str | None
    exchange: str | None
    currency: str | None
    country: str | None
    industry: str | None
    market_cap: float | None
    ipo: dt.date | None
    weburl: str | None
    source: str
    fetched_at: dt.datetime

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)


@dataclass(slots=True)
class RefreshSummary:
    symbols: list[str]
    fetched: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # Finnhub answered {} (no profile)
    failed: dict[str, str] = field(default_factory=dict)
    from_seed: list[str] = field(default_factory=list)
    offline: str = ""  # why Finnhub was not used, if it was not

    def lines(self) -> list[str]:
        out = [f"symbols: {len(self.symbols)}; profiles from Finnhub: {len(self.fetched)}; "
               f"no profile at Finnhub: {len(self.unknown)}; failed: {len(self.failed)}; "
               f"filled from the seed: {len(self.from_seed)}"]
        if self.offline:
            out.append(f"offline: {self.offline}")
        out += [f"failed {symbol}: {reason}" for symbol, reason in sorted(self.failed.items())]
        return out


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def profile_from_response(symbol: str, body: Any, now: dt.datetime) -> Profile | None:
    """A Profile from Finnhub's answer; None for `{}` (Finnhub has no profile for the symbol)."""
    if not isinstance(body, dict) or not body:
        return None
    cap = body.get("marketCapitalization")
    ipo = _text(body.get("ipo"))
    try:
        ipo_date = dt.date.fromisoformat(ipo) if ipo else None
    except ValueError:
        ipo_date = None
    return Profile(
        symbol=symbol,
        name=_text(body.get("name")),
        exchange=_text(body.get("exchange")),
        currency=_text(body.get("currency")),
        country=_text(body.get("country")),
        industry=_text(body.get("finnhubIndustry")),
        market_cap=float(cap) if isinstance(cap, int | float) and not isinstance(cap, bool) else None,
        ipo=ipo_date,
        weburl=_text(body.get("weburl")),
        source="finnhub",
        fetched_at=now,
    )


def seed_profiles(now: dt.datetime, path: Path = SEED_FILE) -> dict[str, Profile]:
    with path.open(newline="", encoding="utf-8") as handle:
        return {
            row["symbol"]: Profile(row["symbol"], _text(row.get("company_name")), _text(row.get("exchange")),
                                   None, None, _text(row.get("industry")), None, None, None, "seed", now)
            for row in csv.DictReader(handle)
        }


def symbols_to_refresh(settings: Settings, extra: Iterable[str] = ()) -> list[str]:
    """The configured SYMBOLS, the given ones and every symbol of marts.dim_symbols (the seed's and
    those with bars) once the marts exist."""
    from tickhouse.warehouse import connect

    symbols = [*settings.symbols, *extra]
    with connect(settings, "dbt") as conn:
        exists = conn.execute("select to_regclass('marts.dim_symbols')").fetchone()
        if exists and exists[0]:
            symbols += [row[0] for row in conn.execute("select symbol from marts.dim_symbols order by 1")]
    return list(dict.fromkeys(symbols))


class ProfileFetcher:
    """`company_profile2` with the shared rate limiter and retries of 429 / 5xx / network errors."""

    def __init__(self, api_url: str, api_key: str, *, max_attempts: int = 5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import finnhub

        if not api_key:
            raise FinnhubAuthError("FINNHUB_API_KEY is not set")
        self._client = finnhub.Client(api_key=api_key)
        # finnhub-python keeps API_URL as a class attribute: set it on this instance only
        self._client.API_URL = api_url.rstrip("/")
        self.limiter = RateLimiter.finnhub_free()
        self._max_attempts = max_attempts
        self._sleep = sleep
        self.answered = 0  # calls Finnhub answered: before the first, a network error means offline

    def close(self) -> None:
        self._client.close()

    def fetch(self, symbol: str) -> Any:
        from finnhub.exceptions import FinnhubAPIException, FinnhubRequestException
        from requests import RequestException

        delay = 1.0
        for attempt in range(1, self._max_attempts + 1):
            while (wait := self.limiter.try_acquire()) > 0:
                self._sleep(wait)
            try:
                body = self._client.company_profile2(symbol=symbol)
                self.answered += 1
                return body
            except FinnhubAPIException as err:
                self.answered += 1
                if err.status_code in (401, 403):
                    raise FinnhubAuthError(f"Finnhub refused the key (HTTP {err.status_code})") from None
                if (err.status_code != 429 and err.status_code < 500) or attempt == self._max_attempts:
                    raise
            except (FinnhubRequestException, RequestException):
                if attempt == self._max_attempts or not self.answered:
                    raise
            self._sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")


def write_profiles(settings: Settings, profiles: Sequence[Profile]) -> None:
    """Upsert into raw.symbol_profiles: a Finnhub profile replaces any row, a seed row only fills a gap."""
    from tickhouse.warehouse import connect

    columns = ", ".join(COLUMNS)
    marks = ", ".join(["%s"] * len(COLUMNS))
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "symbol")
    with connect(settings, "loader") as conn:
        for profile in profiles:
            conn.execute(
                f"insert into raw.symbol_profiles ({columns}, loaded_at) values ({marks}, now())"
                f" on conflict (symbol) do update set {updates}, loaded_at = now()"
                " where excluded.source = 'finnhub' or raw.symbol_profiles.source = 'seed'",
                profile.row(),
            )


def refresh(settings: Settings, symbols: Sequence[str], fetcher: ProfileFetcher | None) -> RefreshSummary:
    """Fetch and write the profiles of `symbols`; without a fetcher (offline) only the seed fills."""
    now = dt.datetime.now(dt.UTC)
    summary = RefreshSummary(list(symbols))
    profiles: list[Profile] = []
    if fetcher is None:
        summary.offline = "FINNHUB_API_KEY is not set"
    else:
        from finnhub.exceptions import FinnhubRequestException
        from requests import RequestException

        for index, symbol in enumerate(symbols):
            try:
                body = fetcher.fetch(symbol)
            except (FinnhubRequestException, RequestException) as err:
                if index == 0 and not profiles:
                    summary.offline = f"Finnhub unreachable ({type(err).__name__})"
                    break
                summary.failed[symbol] = type(err).__name__
                continue
            except FinnhubAuthError:
                raise
            except Exception as err:
                summary.failed[symbol] = f"{type(err).__name__}: {err}"
                continue
            profile = profile_from_response(symbol, body, now)
            if profile is None:
                summary.unknown.append(symbol)
            else:
                profiles.append(profile)
                summary.fetched.append(symbol)
    fetched = {p.symbol for p in profiles}
    seeds = seed_profiles(now)
    for symbol in symbols:
        if symbol not in fetched and symbol in seeds:
            profiles.append(seeds[symbol])
            summary.from_seed.append(symbol)
    write_profiles(settings, profiles)
    return summary
