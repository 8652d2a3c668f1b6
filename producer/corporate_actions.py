"""Corporate actions (splits and dividends) as rows of `raw.corporate_actions`, from Finnhub's
answers or from a CSV file. Pure: no network, no database.

Finnhub (https://finnhub.io/docs/api/splits, https://finnhub.io/docs/api/stock-dividends):
`/stock/split` answers `[{"symbol", "date", "fromFactor", "toFactor"}]` (`date` = the ex-date;
`fromFactor` old shares become `toFactor` new ones: 1 -> 4 is a 4:1 split) and `/stock/dividend`
`[{"symbol", "date", "amount", "adjustedAmount", "payDate", "recordDate", "declarationDate",
"currency"}]` (`date` = the ex-date). A dividend is stored with `amount`, the cash per share as
declared on the share basis of its ex-date (`adjustedAmount` is Finnhub's split-adjusted figure,
derived, not what was paid). Two dividends Finnhub lists on the same ex-date (a regular and a
special one) are both paid that day: they are stored as one row with their sum.

CSV (`--source file`): a header row with `symbol, ex_date, action, from_factor, to_factor,
cash_amount, currency` in any order; `action` is `split` (needs `from_factor` and `to_factor`,
both > 0) or `dividend` (needs `cash_amount` >= 0; `currency` optional). A bad row is reported with
its line number, the column, the value and what is expected; the good rows are kept.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from producer.errors import ProducerError
from tickhouse.config import SYMBOL_PATTERN

ACTIONS = ("split", "dividend")
CSV_COLUMNS = ("symbol", "ex_date", "action", "from_factor", "to_factor", "cash_amount", "currency")
# the columns of raw.corporate_actions this module fills (loaded_at is the warehouse's)
COLUMNS = (*CSV_COLUMNS, "source", "fetched_at")


class CorporateActionFileError(ProducerError, ValueError):
    """The file cannot be read as corporate actions at all (missing, no header, columns lacking)."""


class BadAction(ProducerError, ValueError):
    """One action that cannot be stored: the column, the value, what is expected."""

    def __init__(self, column: str, value: Any, expected: str) -> None:
        super().__init__(f"{column} is {value!r}: expected {expected}")
        self.column = column
        self.value = value
        self.expected = expected


@dataclass(frozen=True, slots=True)
class CorporateAction:
    """One row of raw.corporate_actions."""

    symbol: str
    ex_date: dt.date
    action: str  # split | dividend
    from_factor: Decimal | None
    to_factor: Decimal | None
    cash_amount: Decimal | None
    currency: str | None
    source: str
    fetched_at: dt.datetime

    @property
    def key(self) -> tuple[str, dt.date, str]:
        """The warehouse's primary key: one row per (symbol, ex_date, action)."""
        return self.symbol, self.ex_date, self.action

    @property
    def split_ratio(self) -> Decimal | None:
        """New shares per old share (to_factor / from_factor); None for a dividend."""
        if self.from_factor is None or self.to_factor is None:
            return None
        return self.to_factor / self.from_factor

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)


@dataclass(frozen=True, slots=True)
class Rejected:
    """An action that was served but cannot be stored: where it came from and why."""

    where: str  # "file.csv line 7", "AAPL /stock/split[2]"
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


# --- values ---------------------------------------------------------------------------------------

def _symbol(value: Any) -> str:
    if not isinstance(value, str) or not SYMBOL_PATTERN.fullmatch(value.strip()):
        raise BadAction("symbol", value, "1-32 chars of A-Z a-z 0-9 . : - _ / ^ =")
    return value.strip()


def _date(column: str, value: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except (AttributeError, TypeError, ValueError):
        raise BadAction(column, value, "a date YYYY-MM-DD") from None


def _decimal(column: str, value: Any, *, positive: bool) -> Decimal | None:
    """A number as served (JSON number or CSV text) -> its exact Decimal; None when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    expected = "a number > 0" if positive else "a number >= 0"
    if isinstance(value, bool):
        raise BadAction(column, value, expected)
    try:
        if isinstance(value, float):
            if not math.isfinite(value):
                raise BadAction(column, value, expected)
            number = Decimal(repr(value))  # the shortest repr: 0.24, not 0.2399999...
        elif isinstance(value, int | str):
            number = Decimal(str(value).strip())
        else:
            raise BadAction(column, value, expected)
    except InvalidOperation:
        raise BadAction(column, value, expected) from None
    if not number.is_finite() or number < 0 or (positive and number == 0):
        raise BadAction(column, value, expected)
    return number


def _currency(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or not (value.strip().isalpha() and len(value.strip()) == 3):
        raise BadAction("currency", value, "an ISO 4217 code such as USD, or empty")
    return value.strip().upper()


def make_action(fields: Mapping[str, Any], source: str, fetched_at: dt.datetime) -> CorporateAction:
    """A CorporateAction from the CSV columns' values; raises BadAction naming the first bad one."""
    symbol = _symbol(fields.get("symbol"))
    ex_date = _date("ex_date", fields.get("ex_date"))
    action = fields.get("action")
    action = action.strip().lower() if isinstance(action, str) else action
    if action not in ACTIONS:
        raise BadAction("action", fields.get("action"), "split or dividend")
    from_factor = _decimal("from_factor", fields.get("from_factor"), positive=True)
    to_factor = _decimal("to_factor", fields.get("to_factor"), positive=True)
    cash_amount = _decimal("cash_amount", fields.get("cash_amount"), positive=False)
    currency = _currency(fields.get("currency"))
    if action == "split":
        for column, value in (("from_factor", from_factor), ("to_factor", to_factor)):
            if value is None:
                raise BadAction(column, fields.get(column), "a number > 0 for a split")
        if cash_amount is not None:
            raise BadAction("cash_amount", fields.get("cash_amount"), "empty for a split")
    else:
        if cash_amount is None:
            raise BadAction("cash_amount", fields.get("cash_amount"), "a number >= 0 for a dividend")
        for column, value in (("from_factor", from_factor), ("to_factor", to_factor)):
            if value is not None:
                raise BadAction(column, fields.get(column), "empty for a dividend")
    return CorporateAction(symbol, ex_date, action, from_factor, to_factor, cash_amount, currency,
                           source, fetched_at)


# --- CSV --------------------------------------------------------------------------------------------

def read_csv(path: Path, fetched_at: dt.datetime, source: str = "file"
             ) -> tuple[list[CorporateAction], list[Rejected]]:
    """The actions of a CSV file and its rejected rows (line numbers as an editor shows them).

    A row repeating an earlier row's (symbol, ex_date, action) with other values is rejected: the
    file contradicts itself; an identical repeat is the same action and is kept once.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as err:
        raise CorporateActionFileError(f"{path}: cannot be read ({err.strerror})") from None
    with handle:
        reader = csv.DictReader(handle, skipinitialspace=True)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise CorporateActionFileError(
                f"{path}: the header row must name {', '.join(CSV_COLUMNS)}; missing: "
                f"{', '.join(missing)} (found: {', '.join(header) or 'no header'})")
        reader.fieldnames = header
        actions: dict[tuple[str, dt.date, str], tuple[int, CorporateAction]] = {}
        rejected: list[Rejected] = []
        for row in reader:
            line = reader.line_num
            where = f"{path.name} line {line}"
            if None in row:  # more cells than the header names
                rejected.append(Rejected(where, f"{len(header) + len(row[None])} cells, the header "
                                                f"has {len(header)}"))
                continue
            try:
                action = make_action(row, source, fetched_at)
            except BadAction as err:
                rejected.append(Rejected(where, str(err)))
                continue
            earlier = actions.get(action.key)
            if earlier is not None and earlier[1] != action:
                rejected.append(Rejected(where, f"{action.action} of {action.symbol} on "
                                                f"{action.ex_date} differs from line {earlier[0]}"))
                continue
            actions.setdefault(action.key, (line, action))
    return [action for _, action in actions.values()], rejected


# --- Finnhub ----------------------------------------------------------------------------------------

def _entries(body: Any, what: str) -> list[Any]:
    if body is None or body == {}:  # nothing for the symbol
        return []
    if not isinstance(body, list):
        raise BadAction(what, body, "a JSON array")
    return body


def splits_from_response(symbol: str, body: Any, fetched_at: dt.datetime
                         ) -> tuple[list[CorporateAction], list[Rejected]]:
    """`/stock/split`'s answer -> split actions and the entries that cannot be stored."""
    actions: list[CorporateAction] = []
    rejected: list[Rejected] = []
    for index, entry in enumerate(_entries(body, "/stock/split")):
        where = f"{symbol} /stock/split[{index}]"
        try:
            if not isinstance(entry, Mapping):
                raise BadAction("entry", entry, "a JSON object")
            actions.append(make_action({
                "symbol": symbol, "ex_date": entry.get("date"), "action": "split",
                "from_factor": entry.get("fromFactor"), "to_factor": entry.get("toFactor"),
            }, "finnhub", fetched_at))
        except BadAction as err:
            rejected.append(Rejected(where, str(err)))
    return actions, rejected


def dividends_from_response(symbol: str, body: Any, fetched_at: dt.datetime
                            ) -> tuple[list[CorporateAction], list[Rejected]]:
    """`/stock/dividend`'s answer -> dividend actions (one per ex-date, amounts summed) and the
    entries that cannot be stored."""
    by_date: dict[dt.date, CorporateAction] = {}
    rejected: list[Rejected] = []
    for index, entry in enumerate(_entries(body, "/stock/dividend")):
        where = f"{symbol} /stock/dividend[{index}]"
        try:
            if not isinstance(entry, Mapping):
                raise BadAction("entry", entry, "a JSON object")
            action = make_action({
                "symbol": symbol, "ex_date": entry.get("date"), "action": "dividend",
                "cash_amount": entry.get("amount"), "currency": entry.get("currency"),
            }, "finnhub", fetched_at)
        except BadAction as err:
            rejected.append(Rejected(where, str(err)))
            continue
        same_day = by_date.get(action.ex_date)
        if same_day is not None:
            if same_day.currency != action.currency:
                rejected.append(Rejected(where, f"a second dividend on {action.ex_date} in "
                                                f"{action.currency}, the first is in {same_day.currency}"))
                continue
            assert same_day.cash_amount is not None and action.cash_amount is not None
            action = CorporateAction(symbol, action.ex_date, "dividend", None, None,
                                     same_day.cash_amount + action.cash_amount, action.currency,
                                     "finnhub", fetched_at)
        by_date[action.ex_date] = action
    return list(by_date.values()), rejected


def merge(*parts: Iterable[CorporateAction]) -> list[CorporateAction]:
    """The actions once per (symbol, ex_date, action), the last one winning."""
    merged: dict[tuple[str, dt.date, str], CorporateAction] = {}
    for part in parts:
        for action in part:
            merged[action.key] = action
    return list(merged.values())
