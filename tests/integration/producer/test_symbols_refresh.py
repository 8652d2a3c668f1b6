"""`tickhouse symbols refresh` against the local Finnhub-protocol server, into a warehouse of the
test's own, and dim_symbols built by dbt over it: Finnhub's profiles where it has them (a symbol
with bars too), the seed where it has none or is unreachable, a seed row never replacing a
Finnhub profile, a refused key stopping the refresh.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.cli import main as tickhouse
from tests.finnhub_server import FakeFinnhub
from tests.integration.dbt.conftest import fetch, own_warehouse
from tickhouse.config import Settings
from transform.dbt_runner import build

pytestmark = pytest.mark.integration


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[tuple[Settings, Path]]:
    with own_warehouse("symbols") as settings:
        yield settings, tmp_path


def _run(monkeypatch: pytest.MonkeyPatch, settings: Settings, env: dict[str, str], *args: str) -> int:
    for key, value in {**settings.as_env(), **env}.items():
        monkeypatch.setenv(key, value)
    return tickhouse(["symbols", "refresh", *args])


def _dim(settings: Settings) -> dict[str, dict[str, Any]]:
    return {r["symbol"]: r for r in fetch(settings, "select * from marts.dim_symbols")}


def test_profiles_reach_dim_symbols_and_the_seed_fills_offline(
    warehouse: tuple[Settings, Path], fake_finnhub: FakeFinnhub, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, target = warehouse
    fake_finnhub.set_profile("AAPL", name="Apple Inc", exchange="NASDAQ NMS - GLOBAL MARKET",
                             currency="USD", country="US", finnhubIndustry="Technology",
                             marketCapitalization=3456789.12, ipo="1980-12-12",
                             weburl="https://www.apple.com/")
    fake_finnhub.set_profile("TESTPROF", name="Test Profile Corp",
                             exchange="NEW YORK STOCK EXCHANGE, INC.",
                             currency="USD", finnhubIndustry="Technology", marketCapitalization=250000)
    online = {"FINNHUB_API_KEY": fake_finnhub.token, "FINNHUB_API_URL": fake_finnhub.api_url,
              "SYMBOLS": "AAPL,MSFT"}

    # before any build: SYMBOLS and --symbols; MSFT has no profile at Finnhub -> the seed's row
    started = dt.datetime.now(dt.UTC)
    assert _run(monkeypatch, settings, online, "--symbols", "TESTPROF") == 0
    out = capsys.readouterr().out
    assert "profiles from Finnhub: 2; no profile at Finnhub: 1" in out, out
    assert sorted(s for s, _ in fake_finnhub.profile_requests) == ["AAPL", "MSFT", "TESTPROF"]
    build(["--target-path", str(target)], settings)
    dim = _dim(settings)
    apple = dim["AAPL"]
    assert (apple["company_name"], apple["exchange"], apple["currency"], apple["industry"]) == (
        "Apple Inc", "NASDAQ NMS - GLOBAL MARKET", "USD", "Technology")
    assert float(apple["market_cap_millions"]) == 3456789.12
    assert apple["profile_updated_at"] >= started and apple["is_in_reference"]
    assert apple["sector"] == "Information Technology"  # the seed's, Finnhub has no sector
    profiled = dim["TESTPROF"]  # not in the seed: known from its profile alone
    assert (profiled["company_name"], profiled["is_in_reference"], profiled["calendar"]) == (
        "Test Profile Corp", False, "XNYS")
    msft = dim["MSFT"]
    assert msft["company_name"] == "Microsoft Corporation" and msft["currency"] is None
    assert msft["profile_updated_at"] is not None  # the seed's row, written offline-style
    # every seed symbol is in dim_symbols, profiled or not
    assert {"NVDA", "TSLA"} <= set(dim)

    # offline (no key): the seed fills gaps only; Apple's Finnhub profile stays
    offline = {**online, "FINNHUB_API_KEY": "", "SYMBOLS": "AAPL,NVDA"}
    monkeypatch.delenv("FINNHUB_API_KEY", raising=False)
    assert _run(monkeypatch, settings, {k: v for k, v in offline.items() if v}, "--symbols", "AAPL,NVDA",
                "--only") == 0
    assert "offline: FINNHUB_API_KEY is not set" in capsys.readouterr().out
    dim = _dim(settings)  # a view: no build needed
    assert dim["AAPL"]["currency"] == "USD" and dim["NVDA"]["company_name"] == "NVIDIA Corporation"
    rows = fetch(settings, "select symbol, source from raw.symbol_profiles")
    sources = {r["symbol"]: r["source"] for r in rows}
    assert sources == {"AAPL": "finnhub", "TESTPROF": "finnhub", "MSFT": "seed", "NVDA": "seed"}

    # unreachable Finnhub: the seed fills, exit 0
    unreachable = {**online, "FINNHUB_API_URL": "http://127.0.0.1:9/api/v1"}
    assert _run(monkeypatch, settings, unreachable, "--symbols", "TSLA", "--only") == 0
    assert "Finnhub unreachable" in capsys.readouterr().out
    assert _dim(settings)["TSLA"]["company_name"] == "Tesla, Inc."

    # a refused key stops at once, exit 3, the key not printed
    assert _run(monkeypatch, settings, {**online, "FINNHUB_API_KEY": "wrong-key-123"}, "--symbols", "AMD",
                "--only") == 3
    err = capsys.readouterr().err
    assert "refused the key" in err and "wrong-key-123" not in err
    assert os.environ.get("FINNHUB_API_KEY") == "wrong-key-123"
