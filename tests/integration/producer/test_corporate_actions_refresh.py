"""`tickhouse corporate-actions refresh` against the local Finnhub-protocol server and a warehouse of
the test's own: splits and dividends stored once however often they are fetched, a corrected value
replacing the stored one, a 429 waited out, a CSV's bad rows reported with the good ones stored,
and a refused key stopping the refresh without printing it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ops.cli import main as tickhouse
from tests.finnhub_server import FakeFinnhub
from tests.integration.dbt.conftest import fetch, own_warehouse
from tickhouse.config import Settings

pytestmark = pytest.mark.integration

HEADER = "symbol,ex_date,action,from_factor,to_factor,cash_amount,currency\n"


@pytest.fixture(scope="module")
def warehouse() -> Iterator[Settings]:
    with own_warehouse("corporate_actions") as settings:
        yield settings


@pytest.fixture(autouse=True)
def empty_table(warehouse: Settings) -> None:
    from tickhouse.warehouse import connect

    with connect(warehouse) as conn:
        conn.execute("delete from raw.corporate_actions")


def _run(monkeypatch: pytest.MonkeyPatch, settings: Settings, env: dict[str, str], *args: str) -> int:
    for key, value in {**settings.as_env(), **env}.items():
        monkeypatch.setenv(key, value)
    return tickhouse(["corporate-actions", "refresh", *args])


def _rows(settings: Settings) -> dict[tuple[str, dt.date, str], dict[str, Any]]:
    return {(r["symbol"], r["ex_date"], r["action"]): r
            for r in fetch(settings, "select * from raw.corporate_actions")}


def _values(settings: Settings) -> dict[tuple[str, dt.date, str], tuple[Any, ...]]:
    return {key: (r["from_factor"], r["to_factor"], r["cash_amount"], r["currency"], r["source"])
            for key, r in _rows(settings).items()}


def _finnhub(fake: FakeFinnhub, **extra: str) -> dict[str, str]:
    return {"FINNHUB_API_KEY": fake.token, "FINNHUB_API_URL": fake.api_url, **extra}


def test_finnhub_actions_are_stored_once_and_a_429_is_waited_out(
    warehouse: Settings, fake_finnhub: FakeFinnhub, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_finnhub.set_splits("AAPL", [{"date": "2020-08-31", "fromFactor": 1, "toFactor": 4},
                                     {"date": "2014-06-09", "fromFactor": 1, "toFactor": 7}])
    fake_finnhub.set_dividends("AAPL", [
        {"date": "2020-08-07", "amount": 0.82, "adjustedAmount": 0.205, "payDate": "2020-08-13",
         "recordDate": "2020-08-10", "declarationDate": "2020-07-30", "currency": "USD"},
        {"date": "2010-01-04", "amount": 1.0, "adjustedAmount": 1.0, "currency": "USD"},  # outside
    ])
    fake_finnhub.set_splits("NVDA", [{"date": "2024-06-10", "fromFactor": 1, "toFactor": 10}])
    fake_finnhub.fail_actions(2, 429, retry_after=0.2)
    args = ("--source", "finnhub", "--symbols", "AAPL,NVDA", "--from", "2014-01-01", "--to", "2025-12-31")

    assert _run(monkeypatch, warehouse, _finnhub(fake_finnhub), *args) == 0
    out = capsys.readouterr().out
    assert "fetched: 4; stored: 4 (new 4, corrected 0); unchanged: 0; rejected: 0" in out, out
    # the two 429s were retried: every path and symbol was answered in the end
    statuses = [(path, symbol, status) for path, symbol, status in fake_finnhub.action_requests]
    assert [s for *_, s in statuses].count(429) == 2
    assert sorted((p, s) for p, s, status in statuses if status == 200) == [
        ("/stock/dividend", "AAPL"), ("/stock/dividend", "NVDA"),
        ("/stock/split", "AAPL"), ("/stock/split", "NVDA")]
    expected = {
        ("AAPL", dt.date(2020, 8, 31), "split"): (1, 4, None, None, "finnhub"),
        ("AAPL", dt.date(2014, 6, 9), "split"): (1, 7, None, None, "finnhub"),
        ("AAPL", dt.date(2020, 8, 7), "dividend"): (None, None, Decimal("0.82"), "USD", "finnhub"),
        ("NVDA", dt.date(2024, 6, 10), "split"): (1, 10, None, None, "finnhub"),
    }
    assert _values(warehouse) == expected
    first_load = {key: r["loaded_at"] for key, r in _rows(warehouse).items()}

    # the same refresh again: the same rows, untouched (their loaded_at too)
    assert _run(monkeypatch, warehouse, _finnhub(fake_finnhub), *args) == 0
    assert "stored: 0 (new 0, corrected 0); unchanged: 4" in capsys.readouterr().out
    assert _values(warehouse) == expected
    assert {key: r["loaded_at"] for key, r in _rows(warehouse).items()} == first_load

    # Finnhub corrects NVDA's split: the row is replaced and marked as loaded again
    fake_finnhub.set_splits("NVDA", [{"date": "2024-06-10", "fromFactor": 1, "toFactor": 4}])
    assert _run(monkeypatch, warehouse, _finnhub(fake_finnhub), *args) == 0
    assert "stored: 1 (new 0, corrected 1); unchanged: 3" in capsys.readouterr().out
    rows = _rows(warehouse)
    nvda = ("NVDA", dt.date(2024, 6, 10), "split")
    assert (rows[nvda]["from_factor"], rows[nvda]["to_factor"]) == (1, 4)
    assert rows[nvda]["loaded_at"] > first_load[nvda]
    assert len(rows) == 4


def test_without_symbols_the_warehouse_symbols_are_refreshed(
    warehouse: Settings, fake_finnhub: FakeFinnhub, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_finnhub.set_splits("TSLA", [{"date": "2022-08-25", "fromFactor": 1, "toFactor": 3}])
    assert _run(monkeypatch, warehouse, _finnhub(fake_finnhub, SYMBOLS="TSLA,AMD"),
                "--source", "finnhub") == 0
    assert "symbols: 2, failed: 0" in capsys.readouterr().out
    assert sorted({s for _, s, _ in fake_finnhub.action_requests}) == ["AMD", "TSLA"]
    assert list(_values(warehouse)) == [("TSLA", dt.date(2022, 8, 25), "split")]


def test_an_entry_finnhub_serves_that_cannot_be_stored_exits_1(
    warehouse: Settings, fake_finnhub: FakeFinnhub, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_finnhub.set_splits("AMD", [{"date": "2000-08-22", "fromFactor": 0, "toFactor": 2},
                                    {"date": "2000-08-23", "fromFactor": 1, "toFactor": 2}])
    assert _run(monkeypatch, warehouse, _finnhub(fake_finnhub), "--source", "finnhub", "--symbols",
                "AMD", "--from", "2000-01-01", "--to", "2000-12-31") == 1
    out = capsys.readouterr().out
    assert "fetched: 2; stored: 1 (new 1, corrected 0); unchanged: 0; rejected: 1" in out, out
    assert "rejected AMD /stock/split[0]: from_factor is 0: expected a number > 0" in out
    assert list(_values(warehouse)) == [("AMD", dt.date(2000, 8, 23), "split")]


def test_a_refused_key_stops_without_printing_it(
    warehouse: Settings, fake_finnhub: FakeFinnhub, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = _finnhub(fake_finnhub, FINNHUB_API_KEY="wrong-key-123")
    assert _run(monkeypatch, warehouse, env, "--source", "finnhub", "--symbols", "AAPL") == 3
    captured = capsys.readouterr()
    assert "refused the API key" in captured.err
    assert "wrong-key-123" not in captured.err + captured.out
    assert _rows(warehouse) == {}
    # no key at all: a configuration error, nothing called
    monkeypatch.delenv("FINNHUB_API_KEY")
    requests = len(fake_finnhub.action_requests)
    assert _run(monkeypatch, warehouse, {"FINNHUB_API_URL": fake_finnhub.api_url},
                "--source", "finnhub", "--symbols", "AAPL") == 2
    assert "FINNHUB_API_KEY is not set" in capsys.readouterr().err
    assert len(fake_finnhub.action_requests) == requests


def test_a_file_stores_its_good_rows_and_reports_the_bad_ones(
    warehouse: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "actions.csv"
    path.write_text(HEADER + "NVDA,2024-06-10,split,1,10,,\n"
                             "AAPL,2024-08-12,dividend,,,0.25,USD\n"
                             "MSFT,2024-08-15,dividend,,,-0.75,USD\n"
                             "GE,2021-08-02,split,8,,,\n", encoding="utf-8")
    # a bad row: the good ones are stored, the command exits 1 (not every action was stored)
    assert _run(monkeypatch, warehouse, {}, "--source", "file", "--file", str(path)) == 1
    out = capsys.readouterr().out
    assert "fetched: 4; stored: 2 (new 2, corrected 0); unchanged: 0; rejected: 2" in out, out
    assert "rejected actions.csv line 4: cash_amount is '-0.75': expected a number >= 0" in out
    assert "rejected actions.csv line 5: to_factor is '': expected a number > 0 for a split" in out
    expected = {("NVDA", dt.date(2024, 6, 10), "split"): (1, 10, None, None, "file"),
                ("AAPL", dt.date(2024, 8, 12), "dividend"): (None, None, Decimal("0.25"), "USD", "file")}
    assert _values(warehouse) == expected

    # fixed, run again: the two stored rows are unchanged, the fixed ones new, exit 0
    path.write_text(HEADER + "NVDA,2024-06-10,split,1,10,,\n"
                             "AAPL,2024-08-12,dividend,,,0.25,USD\n"
                             "MSFT,2024-08-15,dividend,,,0.75,USD\n"
                             "GE,2021-08-02,split,8,1,,\n", encoding="utf-8")
    assert _run(monkeypatch, warehouse, {}, "--source", "file", "--file", str(path)) == 0
    assert "stored: 2 (new 2, corrected 0); unchanged: 2; rejected: 0" in capsys.readouterr().out
    assert len(_rows(warehouse)) == 4

    # a file that is not one: exit 2, nothing stored
    path.write_text("symbol,date,split\nNVDA,2024-06-10,10\n", encoding="utf-8")
    assert _run(monkeypatch, warehouse, {}, "--source", "file", "--file", str(path)) == 2
    assert "missing: ex_date, action, from_factor" in capsys.readouterr().err
    assert _run(monkeypatch, warehouse, {}, "--source", "file", "--file", str(tmp_path / "none.csv")) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert len(_rows(warehouse)) == 4


def test_the_refresh_needs_only_the_loader_role(
    warehouse: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # least privilege: with the owner's and dbt's passwords wrong, the file source still stores
    # (it connects as the loader only); the table is the loader's
    path = tmp_path / "actions.csv"
    path.write_text(HEADER + "NVDA,2024-06-10,split,1,10,,\n", encoding="utf-8")
    wrong = {"POSTGRES_PASSWORD": "not-the-password", "DBT_PASSWORD": "not-the-password"}
    assert _run(monkeypatch, warehouse, wrong, "--source", "file", "--file", str(path)) == 0
    assert "stored: 1" in capsys.readouterr().out
    assert list(_values(warehouse)) == [("NVDA", dt.date(2024, 6, 10), "split")]
    rows = fetch(warehouse, "select tableowner from pg_tables where schemaname = 'raw' "
                            "and tablename = 'corporate_actions'")
    assert rows == [{"tableowner": warehouse.loader_user}]
