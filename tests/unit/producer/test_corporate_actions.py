"""Corporate actions from a CSV file and from Finnhub's answers, without services: what is kept,
what is rejected and why, and the split ratio the marts are built on."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from producer.corporate_actions import (
    CorporateActionFileError,
    dividends_from_response,
    merge,
    read_csv,
    splits_from_response,
)
from producer.corporate_actions_refresh import default_range, params_request
from tickhouse.config import ConfigError

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
HEADER = "symbol,ex_date,action,from_factor,to_factor,cash_amount,currency\n"


def _csv(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "actions.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_good_rows_become_actions_with_exact_numbers(tmp_path: Path) -> None:
    path = _csv(tmp_path, "NVDA,2024-06-10,split,1,10,,\n"
                          "AAPL,2024-08-12,dividend,,,0.25,usd\n"
                          " TSLA , 2022-08-25 , SPLIT , 1 , 3 , , \n")
    actions, rejected = read_csv(path, NOW)
    assert rejected == []
    nvda, aapl, tsla = actions
    assert (nvda.symbol, nvda.ex_date, nvda.action) == ("NVDA", dt.date(2024, 6, 10), "split")
    assert nvda.split_ratio == 10 and nvda.cash_amount is None
    assert (aapl.cash_amount, aapl.currency, aapl.split_ratio) == (Decimal("0.25"), "USD", None)
    assert (tsla.symbol, tsla.action, tsla.split_ratio) == ("TSLA", "split", Decimal(3))
    assert {a.source for a in actions} == {"file"} and {a.fetched_at for a in actions} == {NOW}


def test_a_reverse_split_has_a_ratio_below_one(tmp_path: Path) -> None:
    actions, _ = read_csv(_csv(tmp_path, "GE,2021-08-02,split,8,1,,\n"), NOW)
    assert actions[0].split_ratio == Decimal("0.125")


@pytest.mark.parametrize(
    ("row", "column", "expected"),
    [
        ("NVDA,2024-13-10,split,1,10,,", "ex_date", "a date YYYY-MM-DD"),
        ("NVDA,10/06/2024,split,1,10,,", "ex_date", "a date YYYY-MM-DD"),
        ("NVDA,2024-06-10,merger,1,10,,", "action", "split or dividend"),
        ("NVDA,2024-06-10,split,0,10,,", "from_factor", "a number > 0"),
        ("NVDA,2024-06-10,split,1,-4,,", "to_factor", "a number > 0"),
        ("NVDA,2024-06-10,split,1,ten,,", "to_factor", "a number > 0"),
        ("NVDA,2024-06-10,split,1,,,", "to_factor", "a number > 0 for a split"),
        ("NVDA,2024-06-10,split,1,10,0.5,USD", "cash_amount", "empty for a split"),
        ("AAPL,2024-08-12,dividend,,,,USD", "cash_amount", "a number >= 0 for a dividend"),
        ("AAPL,2024-08-12,dividend,,,-0.25,USD", "cash_amount", "a number >= 0"),
        ("AAPL,2024-08-12,dividend,,,NaN,USD", "cash_amount", "a number >= 0"),
        ("AAPL,2024-08-12,dividend,1,2,0.25,USD", "from_factor", "empty for a dividend"),
        ("AAPL,2024-08-12,dividend,,,0.25,US Dollar", "currency", "an ISO 4217 code"),
        ("AA PL,2024-08-12,dividend,,,0.25,USD", "symbol", "1-32 chars"),
        (",2024-08-12,dividend,,,0.25,USD", "symbol", "1-32 chars"),
    ],
)
def test_a_bad_row_names_its_line_column_value_and_what_is_expected(
    tmp_path: Path, row: str, column: str, expected: str
) -> None:
    path = _csv(tmp_path, f"MSFT,2024-08-15,dividend,,,0.75,USD\n{row}\n")
    actions, rejected = read_csv(path, NOW)
    assert [a.symbol for a in actions] == ["MSFT"]  # the good row is kept
    assert len(rejected) == 1
    message = str(rejected[0])
    assert message.startswith("actions.csv line 3: ") and f"{column} is " in message
    assert expected in message
    value = row.split(",")[["symbol", "ex_date", "action", "from_factor", "to_factor",
                            "cash_amount", "currency"].index(column)]
    assert repr(value) in message


def test_a_row_with_too_many_cells_is_rejected(tmp_path: Path) -> None:
    actions, rejected = read_csv(_csv(tmp_path, "NVDA,2024-06-10,split,1,10,,,extra\n"), NOW)
    assert actions == [] and "line 2: 8 cells, the header has 7" in str(rejected[0])


def test_a_repeated_action_is_kept_once_and_a_contradicting_one_rejected(tmp_path: Path) -> None:
    path = _csv(tmp_path, "NVDA,2024-06-10,split,1,10,,\n"
                          "NVDA,2024-06-10,split,1.0,10.00,,\n"
                          "NVDA,2024-06-10,split,1,4,,\n"
                          "NVDA,2024-06-10,dividend,,,0.01,USD\n")
    actions, rejected = read_csv(path, NOW)
    assert [(a.action, a.split_ratio) for a in actions] == [("split", 10), ("dividend", None)]
    assert [str(r) for r in rejected] == [
        "actions.csv line 4: split of NVDA on 2024-06-10 differs from line 2"]


def test_columns_in_any_order_and_a_missing_column_fails_the_file(tmp_path: Path) -> None:
    header = "action,symbol,ex_date,currency,cash_amount,to_factor,from_factor\n"
    actions, _ = read_csv(_csv(tmp_path, "split,NVDA,2024-06-10,,,10,1\n", header), NOW)
    assert actions[0].split_ratio == 10
    with pytest.raises(CorporateActionFileError, match="missing: to_factor, currency"):
        read_csv(_csv(tmp_path, "NVDA,2024-06-10,split,1,\n",
                      "symbol,ex_date,action,from_factor,cash_amount\n"), NOW)
    with pytest.raises(CorporateActionFileError, match="cannot be read"):
        read_csv(tmp_path / "absent.csv", NOW)


def test_finnhub_splits_map_to_new_shares_per_old() -> None:
    body = [{"symbol": "AAPL", "date": "2020-08-31", "fromFactor": 1, "toFactor": 4},
            {"symbol": "AAPL", "date": "2014-06-09", "fromFactor": 1, "toFactor": 7},
            {"symbol": "XYZ", "date": "2023-01-03", "fromFactor": 3, "toFactor": 2},
            {"symbol": "AAPL", "date": "2000-06-21", "fromFactor": 0, "toFactor": 2},
            {"symbol": "AAPL", "fromFactor": 1, "toFactor": 2}]
    actions, rejected = splits_from_response("AAPL", body, NOW)
    assert [(a.ex_date, a.split_ratio) for a in actions] == [
        (dt.date(2020, 8, 31), 4), (dt.date(2014, 6, 9), 7),
        (dt.date(2023, 1, 3), Decimal(2) / Decimal(3))]
    assert {(a.symbol, a.action, a.source) for a in actions} == {("AAPL", "split", "finnhub")}
    assert [str(r) for r in rejected] == [
        "AAPL /stock/split[3]: from_factor is 0: expected a number > 0",
        "AAPL /stock/split[4]: ex_date is None: expected a date YYYY-MM-DD"]


def test_finnhub_dividends_keep_the_declared_amount_and_sum_one_days() -> None:
    body: list[dict[str, Any]] = [
        {"symbol": "AAPL", "date": "2020-08-07", "amount": 0.82, "adjustedAmount": 0.205,
         "payDate": "2020-08-13", "recordDate": "2020-08-10", "declarationDate": "2020-07-30",
         "currency": "USD"},
        {"symbol": "COST", "date": "2023-12-27", "amount": 15, "adjustedAmount": 15,
         "currency": "USD"},
        {"symbol": "COST", "date": "2023-12-27", "amount": 1.02, "adjustedAmount": 1.02,
         "currency": "USD"},
        {"symbol": "AAPL", "date": "2021-02-05", "amount": None, "currency": "USD"},
    ]
    actions, rejected = dividends_from_response("AAPL", body, NOW)
    assert [(a.ex_date, a.cash_amount, a.currency) for a in actions] == [
        (dt.date(2020, 8, 7), Decimal("0.82"), "USD"),  # not adjustedAmount, and exactly 0.82
        (dt.date(2023, 12, 27), Decimal("16.02"), "USD")]
    assert [str(r) for r in rejected] == [
        "AAPL /stock/dividend[3]: cash_amount is None: expected a number >= 0 for a dividend"]


def test_an_empty_answer_is_no_actions_and_a_wrong_shape_is_an_error() -> None:
    assert splits_from_response("AAPL", [], NOW) == ([], [])
    assert dividends_from_response("AAPL", {}, NOW) == ([], [])
    with pytest.raises(ValueError, match="expected a JSON array"):
        splits_from_response("AAPL", {"error": "x"}, NOW)


def test_merge_keeps_one_action_per_key() -> None:
    first, _ = splits_from_response("A", [{"date": "2020-01-02", "fromFactor": 1, "toFactor": 2}], NOW)
    second, _ = splits_from_response("A", [{"date": "2020-01-02", "fromFactor": 1, "toFactor": 3}], NOW)
    assert [a.split_ratio for a in merge(first, second)] == [3]


def test_dag_params_become_the_refresh_arguments() -> None:
    assert params_request({"symbols": None, "from": None, "to": ""}) == {
        "symbols": None, "first": None, "last": None}
    assert params_request({"symbols": " NVDA, AAPL ,NVDA", "from": "2020-01-01", "to": "2026-01-01"}) == {
        "symbols": ["NVDA", "AAPL"], "first": dt.date(2020, 1, 1), "last": dt.date(2026, 1, 1)}
    with pytest.raises(ConfigError, match="from 2026-01-02 is after to 2026-01-01"):
        params_request({"from": "2026-01-02", "to": "2026-01-01"})
    with pytest.raises(ConfigError, match="to: '2026-02-30' is not a date"):
        params_request({"to": "2026-02-30"})


def test_default_range_reaches_back_decades_and_a_year_ahead() -> None:
    assert default_range(dt.date(2026, 12, 6)) == (dt.date(1996, 1, 1), dt.date(2027, 12, 7))
