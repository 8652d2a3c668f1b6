"""The synthetic source: reproducible, plausible, valid."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from producer.synthetic import SyntheticConfig, generate
from tickhouse.schemas import parse_trade, to_json
from tickhouse.trade_conditions import default_table

pytestmark = pytest.mark.unit

START = 1_763_649_000_000


def config(seed: int) -> SyntheticConfig:
    return SyntheticConfig(symbols=("AAPL", "MSFT", "NVDA"), rate=200, duration=60, seed=seed,
                           start_ts=START)


def test_same_seed_same_trades_other_seed_other_trades() -> None:
    first = list(generate(config(7)))
    assert first == list(generate(config(7)))
    assert first != list(generate(config(8)))


def test_trades_are_valid_ordered_and_plausible() -> None:
    trades = list(generate(config(3)))
    # about rate x duration trades
    assert 11_000 < len(trades) < 13_000
    assert [t.ts for t in trades] == sorted(t.ts for t in trades)
    assert trades[0].ts >= START and trades[-1].ts < START + 60_000
    for trade in trades[:2000]:
        assert parse_trade(to_json(trade), now=START) == trade
    volumes = Counter("zero" if t.volume == 0 else "round" if t.volume % 100 == 0 else "odd"
                      for t in trades)
    assert volumes["round"] > 0.85 * len(trades)
    assert 0 < volumes["zero"] < 0.03 * len(trades)
    assert volumes["odd"] > 0
    assert {t.symbol for t in trades} == {"AAPL", "MSFT", "NVDA"}
    # per symbol the price moves, but not absurdly within a minute
    for symbol in ("AAPL", "MSFT", "NVDA"):
        prices = [float(t.price) for t in trades if t.symbol == symbol]
        assert len(set(prices)) > 10
        assert max(prices) / min(prices) < 1.2


def test_arrivals_are_bursty_at_the_given_mean_rate() -> None:
    trades = list(generate(SyntheticConfig(symbols=("A", "B"), rate=100, duration=300, seed=1,
                                           start_ts=START)))
    assert len(trades) == pytest.approx(30_000, rel=0.05)
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(trades)]
    mean = sum(gaps) / len(gaps)
    std = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert std / mean > 1.3  # Poisson arrivals would have a coefficient of variation of 1
    assert sum(1 for g in gaps if g <= 2) > 0.5 * len(gaps)  # clusters: most gaps are tiny


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="rate"):
        next(generate(SyntheticConfig(symbols=("A",), rate=0, duration=1)))


def test_conditions_are_realistic_and_follow_the_table() -> None:
    cfg = SyntheticConfig(symbols=("A", "B"), rate=200, duration=300, seed=5, start_ts=START)
    trades = list(generate(cfg))
    kinds = Counter(t.conditions for t in trades)
    assert set(kinds) == {("1",), ("12",), ("3",), None}
    assert kinds[("1",)] > 0.85 * len(trades)
    assert 0.06 * len(trades) < kinds[("12",)] < 0.10 * len(trades)
    assert 0 < kinds[("3",)] < 0.01 * len(trades)
    assert all(t.volume == 0 for t in trades if t.conditions is None)
    assert all(0 < t.volume < 100 for t in trades if t.conditions == ("12",))
    assert all(t.volume >= 1000 and t.volume % 100 == 0 for t in trades if t.conditions == ("3",))
    table = default_table()
    assert table.eligibility(["1"]).updates_last
    assert not table.eligibility(["12"]).updates_last and not table.eligibility(["3"]).updates_last


def test_odd_lots_print_off_the_market_price() -> None:
    trades = list(generate(SyntheticConfig(symbols=("A",), rate=100, duration=600, seed=9, start_ts=START)))
    last_regular: float | None = None
    offsets = []
    for trade in trades:
        if trade.conditions == ("1",):
            last_regular = float(trade.price)
        elif trade.conditions == ("12",) and last_regular is not None:
            offsets.append(abs(float(trade.price) / last_regular - 1))
    assert len(offsets) > 100
    mean = sum(offsets) / len(offsets)
    assert 0.0005 < mean < 0.005  # off the market by tenths of a percent on average, never wildly
    assert max(offsets) < 0.03
