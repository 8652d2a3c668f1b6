"""`tickhouse corporate-actions refresh`: splits and dividends into `raw.corporate_actions`, from
Finnhub or a CSV file, written as the loader role.

The write is an upsert on (symbol, ex_date, action): an action served again with the same values
leaves its row untouched (`loaded_at` too, so the marts restate nothing for it), one served with
other values (a correction) replaces them and gets a new `loaded_at`. The command exits 0 only when
every action served was stored: a rejected row or entry, or a symbol whose calls failed, makes it
exit 1, after the good ones were stored.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producer.corporate_actions import (
    COLUMNS,
    CorporateAction,
    Rejected,
    dividends_from_response,
    merge,
    read_csv,
    splits_from_response,
)
from producer.corporate_actions_finnhub import ActionFetchError, CorporateActionFetcher
from tickhouse.config import ConfigError, Settings

log = logging.getLogger(__name__)

# without --from / --to: ex-dates from January 1st DEFAULT_YEARS years ago (the history a backfill
# may hold; a call costs the same whatever its range) to DEFAULT_AHEAD_DAYS ahead (ex-dates are
# announced before they happen)
DEFAULT_YEARS = 30
DEFAULT_AHEAD_DAYS = 366

# the value columns: a row whose values all equal the served ones is unchanged
_VALUES = ("from_factor", "to_factor", "cash_amount", "currency")
_UPSERT = (
    f"insert into raw.corporate_actions ({', '.join(COLUMNS)}, loaded_at)"
    f" values ({', '.join(['%s'] * len(COLUMNS))}, now())"
    " on conflict (symbol, ex_date, action) do update set "
    + ", ".join(f"{c} = excluded.{c}" for c in (*_VALUES, "source", "fetched_at"))
    + ", loaded_at = now()"
    f" where ({', '.join(f'raw.corporate_actions.{c}' for c in _VALUES)})"
    f" is distinct from ({', '.join(f'excluded.{c}' for c in _VALUES)})"
    " returning (xmax = 0) as inserted"
)


@dataclass(slots=True)
class RefreshSummary:
    """What one refresh fetched and did with it (the command's printed summary)."""

    fetched: int = 0  # actions served (rejected ones included)
    new: int = 0
    corrected: int = 0
    unchanged: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # symbol -> why its calls failed
    symbols: int = 0

    @property
    def stored(self) -> int:
        return self.new + self.corrected

    @property
    def ok(self) -> bool:
        """Every action served was stored (docs/interfaces/commands.md: the exit code)."""
        return not self.rejected and not self.failed

    def lines(self) -> list[str]:
        out = [f"fetched: {self.fetched}; stored: {self.stored} (new {self.new}, corrected "
               f"{self.corrected}); unchanged: {self.unchanged}; rejected: {len(self.rejected)}"
               + (f"; symbols: {self.symbols}, failed: {len(self.failed)}" if self.symbols else "")]
        out += [f"rejected {item}" for item in self.rejected]
        out += [f"failed {symbol}: {reason}" for symbol, reason in sorted(self.failed.items())]
        return out


def store(settings: Settings, actions: Sequence[CorporateAction], summary: RefreshSummary) -> None:
    """Upsert `actions` in one transaction, as the loader; counts new, corrected and unchanged."""
    from tickhouse.warehouse import connect

    with connect(settings, "loader") as conn:
        for action in actions:
            row = conn.execute(_UPSERT, action.row()).fetchone()
            if row is None:
                summary.unchanged += 1
            elif row[0]:
                summary.new += 1
            else:
                summary.corrected += 1


def refresh_from_file(settings: Settings, path: Path) -> RefreshSummary:
    """Store the good rows of a CSV file; the bad ones are in the summary."""
    actions, rejected = read_csv(path, dt.datetime.now(dt.UTC))
    summary = RefreshSummary(fetched=len(actions) + len(rejected), rejected=rejected)
    store(settings, actions, summary)
    return summary


def refresh_from_finnhub(settings: Settings, fetcher: CorporateActionFetcher, symbols: Sequence[str],
                         first: dt.date, last: dt.date) -> RefreshSummary:
    """Fetch the splits and dividends of each symbol with an ex-date in [first, last] and store
    them, symbol by symbol (what was fetched is stored even when a later symbol fails)."""
    if first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    summary = RefreshSummary(symbols=len(symbols))
    for symbol in symbols:
        try:
            fetched_at = dt.datetime.now(dt.UTC)
            splits = splits_from_response(symbol, fetcher.fetch("split", symbol, first, last), fetched_at)
            dividends = dividends_from_response(
                symbol, fetcher.fetch("dividend", symbol, first, last), fetched_at)
        except ActionFetchError as err:
            summary.failed[symbol] = str(err)
            log.error("%s", err)
            continue
        except ValueError as err:  # an answer that is not the documented array
            summary.failed[symbol] = f"malformed answer: {err}"
            log.error("%s: malformed answer: %s", symbol, err)
            continue
        actions = merge(splits[0], dividends[0])
        summary.fetched += len(actions) + len(splits[1]) + len(dividends[1])
        summary.rejected += [*splits[1], *dividends[1]]
        store(settings, actions, summary)
    return summary


def default_range(today: dt.date) -> tuple[dt.date, dt.date]:
    """The ex-dates a refresh asks for when none are given."""
    return dt.date(today.year - DEFAULT_YEARS, 1, 1), today + dt.timedelta(days=DEFAULT_AHEAD_DAYS)


def run_finnhub(settings: Settings, symbols: Sequence[str] | None = None, first: dt.date | None = None,
                last: dt.date | None = None) -> RefreshSummary:
    """The finnhub source: `symbols`, or the warehouse's (SYMBOLS and dim_symbols, read as the dbt
    role) when None; `default_range` for the dates not given. The CLI's and the DAG's entry point."""
    from producer.finnhub_quotes import hide_secret_in_logs
    from producer.symbols import symbols_to_refresh

    if not settings.finnhub_api_key:
        raise ConfigError("FINNHUB_API_KEY is not set; it is needed for --source finnhub (or load "
                          "the actions from a CSV with --source file --file PATH)")
    hide_secret_in_logs(settings.finnhub_api_key)
    default_first, default_last = default_range(dt.datetime.now(dt.UTC).date())
    first, last = first or default_first, last or default_last
    if first > last:
        raise ConfigError(f"--from {first} is after --to {last}")
    fetcher = CorporateActionFetcher(settings.finnhub_api_url, settings.finnhub_api_key)
    try:
        return refresh_from_finnhub(settings, fetcher, symbols_to_refresh(settings) if symbols is None
                                    else list(symbols), first, last)
    finally:
        fetcher.close()


def params_request(params: Mapping[str, Any]) -> dict[str, Any]:
    """The refresh_corporate_actions DAG's params (symbols, from, to; each may be empty) as
    `run_finnhub`'s arguments; raises ConfigError naming the bad param."""
    from tickhouse.config import parse_symbols

    def day(name: str) -> dt.date | None:
        value = params.get(name)
        if value in (None, ""):
            return None
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not a date YYYY-MM-DD") from None

    text = params.get("symbols")
    symbols = list(parse_symbols("symbols", str(text))) if text and str(text).strip() else None
    first, last = day("from"), day("to")
    if first and last and first > last:
        raise ConfigError(f"from {first} is after to {last}")
    return {"symbols": symbols, "first": first, "last": last}
