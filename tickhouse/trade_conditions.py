"""Trade-condition eligibility by the consolidated (CTA/UTP) rules, read from the dbt seed
`trade_conditions` (dbt_project/seeds/trade_conditions.csv), the one table the bars use too.

The rule, the same as the bars' macro `trade_condition_sets`: a trade qualifies for a field (last
price, high/low, volume) only if every one of its codes does; a trade with no conditions is
regular; a code the table does not list counts as regular (it qualifies for every field) and is
reported in `unknown_codes`, so that the table can be extended.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tickhouse.config import PROJECT_ROOT

TABLE_FILE = PROJECT_ROOT / "dbt_project" / "seeds" / "trade_conditions.csv"
COLUMNS = ("code", "name", "updates_open_close", "updates_high_low", "updates_volume")
_BOOLEANS = {"true": True, "false": False}


class ConditionTableError(ValueError):
    """The table file is not a valid trade-condition table."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One row of the table."""

    code: str
    name: str
    updates_last: bool
    updates_high_low: bool
    updates_volume: bool


@dataclass(frozen=True, slots=True)
class Eligibility:
    """What a trade with a given condition list updates, and the codes the table does not know."""

    updates_last: bool
    updates_high_low: bool
    updates_volume: bool
    unknown_codes: tuple[str, ...] = ()


REGULAR = Eligibility(True, True, True)


class ConditionTable:
    """The code table; `eligibility` is cached per distinct condition list (a feed uses few)."""

    def __init__(self, conditions: Mapping[str, Condition]) -> None:
        self.conditions = dict(conditions)
        self._cache: dict[tuple[str, ...], Eligibility] = {}

    def eligibility(self, conditions: Iterable[str] | None) -> Eligibility:
        if not conditions:
            return REGULAR
        key = tuple(conditions)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._combine(key)
        return found

    def _combine(self, codes: tuple[str, ...]) -> Eligibility:
        last = high_low = volume = True
        unknown: list[str] = []
        for code in codes:
            row = self.conditions.get(code)
            if row is None:
                unknown.append(code)
                continue
            last = last and row.updates_last
            high_low = high_low and row.updates_high_low
            volume = volume and row.updates_volume
        if last and high_low and volume and not unknown:
            return REGULAR
        return Eligibility(last, high_low, volume, tuple(unknown))


def _flag(row: dict[str, str], column: str, line: int) -> bool:
    value = (row.get(column) or "").strip().lower()
    if value not in _BOOLEANS:
        raise ConditionTableError(f"line {line}: {column} must be true or false, got {row.get(column)!r}")
    return _BOOLEANS[value]


def load(path: Path = TABLE_FILE) -> ConditionTable:
    """Read a table in the seed's format (header `code,name,updates_open_close,updates_high_low,
    updates_volume`, flags `true`/`false`)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ConditionTableError(f"{path}: header must be {','.join(COLUMNS)}, got {reader.fieldnames}")
        conditions: dict[str, Condition] = {}
        for row in reader:
            line = reader.line_num
            code = (row.get("code") or "").strip()
            if not code:
                raise ConditionTableError(f"line {line}: code is empty")
            if code in conditions:
                raise ConditionTableError(f"line {line}: code {code} is listed twice")
            conditions[code] = Condition(
                code,
                (row.get("name") or "").strip(),
                _flag(row, "updates_open_close", line),
                _flag(row, "updates_high_low", line),
                _flag(row, "updates_volume", line),
            )
    return ConditionTable(conditions)


@functools.cache
def default_table() -> ConditionTable:
    """The project's table (the dbt seed), read once per process."""
    return load()
