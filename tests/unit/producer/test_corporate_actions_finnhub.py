"""The corporate-action fetcher through finnhub-python against the local Finnhub-protocol server:
the documented queries, 429s waited out as asked, 5xx and network errors retried, other answers
stopping at once, and the key never in a message. Waits are recorded, not slept."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from producer.corporate_actions_finnhub import ActionFetchError, CorporateActionFetcher
from producer.finnhub_stream import FinnhubAuthError
from tests.finnhub_server import FakeFinnhub

pytestmark = pytest.mark.unit

FIRST, LAST = dt.date(2020, 1, 1), dt.date(2020, 12, 31)


@pytest.fixture
def server() -> Iterator[FakeFinnhub]:
    with FakeFinnhub(token="unit-token-42") as fake:
        yield fake


def _fetcher(url: str, sleeps: list[float], key: str = "unit-token-42", **kwargs: float
             ) -> CorporateActionFetcher:
    return CorporateActionFetcher(url, key, sleep=sleeps.append, **kwargs)  # type: ignore[arg-type]


def test_the_documented_answers_within_the_asked_range(server: FakeFinnhub) -> None:
    server.set_splits("AAPL", [{"date": "2020-08-31", "fromFactor": 1, "toFactor": 4},
                               {"date": "2014-06-09", "fromFactor": 1, "toFactor": 7}])
    server.set_dividends("AAPL", [{"date": "2020-08-07", "amount": 0.82, "adjustedAmount": 0.205,
                                   "currency": "USD"}])
    sleeps: list[float] = []
    fetcher = _fetcher(server.api_url, sleeps)
    assert fetcher.fetch("split", "AAPL", FIRST, LAST) == [
        {"symbol": "AAPL", "date": "2020-08-31", "fromFactor": 1, "toFactor": 4}]
    assert fetcher.fetch("dividend", "AAPL", FIRST, LAST)[0]["amount"] == 0.82
    assert fetcher.fetch("split", "MSFT", FIRST, LAST) == []
    assert server.action_requests == [("/stock/split", "AAPL", 200), ("/stock/dividend", "AAPL", 200),
                                      ("/stock/split", "MSFT", 200)]
    assert sleeps == [] and fetcher.calls == 3


def test_429_waits_what_finnhub_asks_and_5xx_backs_off(server: FakeFinnhub) -> None:
    server.fail_actions(1, 429, retry_after=7)
    server.fail_actions(1, 502)
    sleeps: list[float] = []
    fetcher = _fetcher(server.api_url, sleeps, backoff_initial=2.0)
    assert fetcher.fetch("split", "AAPL", FIRST, LAST) == []
    assert [s for *_, s in server.action_requests] == [429, 502, 200]
    assert sleeps[0] == 7.0 and 1.0 <= sleeps[1] <= 2.0  # Retry-After, then the jittered backoff
    assert fetcher.retries_429 == 1


def test_it_gives_up_after_the_attempts(server: FakeFinnhub) -> None:
    server.fail_actions(10, 429)
    sleeps: list[float] = []
    with pytest.raises(ActionFetchError, match=r"AAPL /stock/dividend 2020-01-01..2020-12-31: HTTP 429"
                                               r".*gave up after 3 attempts"):
        _fetcher(server.api_url, sleeps, max_attempts=3).fetch("dividend", "AAPL", FIRST, LAST)
    assert len(server.action_requests) == 3 and len(sleeps) == 2


def test_a_refused_key_or_plan_and_a_bad_request_stop_at_once(server: FakeFinnhub) -> None:
    sleeps: list[float] = []
    with pytest.raises(FinnhubAuthError, match="refused the API key") as refused:
        _fetcher(server.api_url, sleeps, key="wrong-key-99").fetch("split", "AAPL", FIRST, LAST)
    assert "wrong-key-99" not in str(refused.value)
    server.fail_actions(1, 403)
    with pytest.raises(FinnhubAuthError, match=r"HTTP 403 for /stock/dividend.*--source file"):
        _fetcher(server.api_url, sleeps).fetch("dividend", "AAPL", FIRST, LAST)
    with pytest.raises(ActionFetchError, match="HTTP 422"):
        _fetcher(server.api_url, sleeps).fetch("split", "", FIRST, LAST)
    assert len(server.action_requests) == 3 and sleeps == []


def test_network_errors_are_retried_without_showing_the_key() -> None:
    sleeps: list[float] = []
    fetcher = _fetcher("http://127.0.0.1:9/api/v1", sleeps, key="secret-key-77", max_attempts=2)
    with pytest.raises(ActionFetchError) as failed:
        fetcher.fetch("split", "AAPL", FIRST, LAST)
    assert "ConnectionError" in str(failed.value) and "secret-key-77" not in str(failed.value)
    assert fetcher.calls == 2 and len(sleeps) == 1
