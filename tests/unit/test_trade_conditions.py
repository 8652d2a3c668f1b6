"""The trade-condition table and its rule: every code must allow a field, unknown codes are regular."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tickhouse.trade_conditions import (
    REGULAR,
    ConditionTableError,
    Eligibility,
    default_table,
    load,
)

pytestmark = pytest.mark.unit

NOT_PRICED = Eligibility(False, False, True)  # volume only: odd lot, average price, cash sale


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        (None, REGULAR),
        ([], REGULAR),
        (["1"], REGULAR),
        (["12"], NOT_PRICED),  # odd lot
        (["3"], NOT_PRICED),  # average price
        (["5"], NOT_PRICED),  # cash sale
        (["24"], NOT_PRICED),  # Form T (extended hours)
        (["1", "12"], NOT_PRICED),  # every code must allow the field
        (["12", "1"], NOT_PRICED),
        (["21"], Eligibility(False, True, True)),  # prior reference price: high/low, not last
        (["30"], Eligibility(False, True, True)),  # sold out of sequence
        (["16"], Eligibility(False, False, False)),  # market center official close: nothing
        (["39"], Eligibility(True, True, False)),  # corrected consolidated close: no volume
        (["1", "8", "41"], REGULAR),  # ISO, trade-through exempt
        (["9999"], Eligibility(True, True, True, ("9999",))),  # unknown: regular, reported
        (["12", "9999"], Eligibility(False, False, True, ("9999",))),
        (["777", "1", "888"], Eligibility(True, True, True, ("777", "888"))),
    ],
)
def test_the_project_table_by_the_consolidated_rule(
    conditions: list[str] | None, expected: Eligibility
) -> None:
    assert default_table().eligibility(conditions) == expected


def test_the_table_lists_finnhubs_codes_1_to_41_with_their_names() -> None:
    table = default_table()
    assert sorted(table.conditions, key=int) == [str(n) for n in range(1, 42)]
    names = {code: table.conditions[code].name for code in ("1", "3", "5", "12", "24", "41")}
    assert names == {
        "1": "Regular",
        "3": "Average Price Trade",
        "5": "Cash Sale",
        "12": "Odd Lot Trade",
        "24": "Form-T Trade (extended hours)",
        "41": "Trade Through Exempt",
    }


def test_the_same_condition_list_gives_the_same_cached_answer() -> None:
    table = default_table()
    first = table.eligibility(["1", "12"])
    assert table.eligibility(("1", "12")) is first
    assert table.eligibility(["12", "1"]) == first


def _write(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


HEADER = ["code", "name", "updates_open_close", "updates_high_low", "updates_volume"]


def test_an_edited_table_is_what_eligibility_follows(tmp_path: Path) -> None:
    table = load(
        _write(
            tmp_path / "t.csv",
            [HEADER, ["1", "Regular", "true", "true", "true"], ["12", "Odd Lot", "TRUE", "false", "true"]],
        )
    )
    assert table.eligibility(["12"]) == Eligibility(True, False, True)
    assert table.eligibility(["3"]) == Eligibility(True, True, True, ("3",))


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ([["code", "name", "last", "updates_high_low", "updates_volume"]], "header must be"),
        (
            [HEADER, ["1", "Regular", "yes", "true", "true"]],
            "line 2: updates_open_close must be true or false",
        ),
        (
            [HEADER, ["1", "a", "true", "true", "true"], ["1", "b", "true", "true", "true"]],
            "line 3: code 1 is listed twice",
        ),
        ([HEADER, ["", "a", "true", "true", "true"]], "line 2: code is empty"),
    ],
)
def test_a_malformed_table_is_refused_with_the_line(
    tmp_path: Path, rows: list[list[str]], error: str
) -> None:
    with pytest.raises(ConditionTableError, match=error):
        load(_write(tmp_path / "t.csv", rows))
