"""The synthetic source: reproducible, plausible, valid."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from producer.synthetic import SyntheticConfig, generate
from tickhouse.schemas import parse_trade, to_json

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
