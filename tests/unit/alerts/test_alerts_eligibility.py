"""The rules follow the trade-condition eligibility: prints that do not update last move no price
rule, session extremes take the prints that update high/low, volume rules count eligible volume."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from alerts.config import (
    PriceMoveConfig,
    RsiConfig,
    SessionExtremesConfig,
    StaleFeedConfig,
    SuspiciousTickConfig,
    VolumeSpikeConfig,
)
from alerts.rules import Engine, Firing
from tests.unit.alerts.test_alerts_rules import CLOSES, only
from tickhouse.trade_conditions import default_table

pytestmark = pytest.mark.unit

T0 = 1_763_640_000_000  # a minute boundary
MIN = 60_000
Trade = tuple[str, float, float, int, list[str] | None]


def feed(engine: Engine, trades: Sequence[Trade]) -> list[tuple[int, str]]:
    """(index of the trade, rule) for every alert, each trade with its conditions applied."""
    table = default_table()
    out: list[tuple[int, Firing]] = []
    for i, (symbol, price, volume, ts, conditions) in enumerate(trades):
        out.extend(
            (i, f) for f in engine.evaluate(symbol, price, volume, ts, -1, table.eligibility(conditions))
        )
    return [(i, f.rule) for i, f in out]


def sus() -> SuspiciousTickConfig:
    return SuspiciousTickConfig(band_pct=10.0, samples=5, min_samples=3, cooldown_seconds=0.0)


@pytest.mark.parametrize("codes", [["12"], ["3"], ["5"], ["1", "12"], ["24"], ["21"], ["16"]])
def test_a_print_that_does_not_update_last_fires_no_suspicious_tick(codes: list[str]) -> None:
    regular = [("A", p, 100.0, T0 + i, ["1"]) for i, p in enumerate([99.0, 100.0, 101.0])]
    trades = [*regular, ("A", 150.0, 10.0, T0 + 10, codes)]
    assert feed(only(suspicious_tick=sus()), trades) == []
    # the same print as a regular trade fires
    assert feed(only(suspicious_tick=sus()), [*trades[:3], ("A", 150.0, 10.0, T0 + 10, ["1"])]) == [
        (3, "suspicious_tick")
    ]


def test_an_ineligible_print_does_not_enter_the_median_window() -> None:
    # three odd lots at 200 between regular prints at 100: the median stays 100, 111 is suspicious
    trades: list[Trade] = [("A", 100.0, 100.0, T0 + i, None) for i in range(3)]
    trades += [("A", 200.0, 10.0, T0 + 10 + i, ["12"]) for i in range(3)]
    trades.append(("A", 111.0, 100.0, T0 + 20, None))
    assert feed(only(suspicious_tick=sus()), trades) == [(6, "suspicious_tick")]


def test_an_odd_lot_neither_fires_a_price_move_nor_becomes_its_reference() -> None:
    engine = only(price_move=PriceMoveConfig(pct=2.0, window_seconds=60.0, cooldown_seconds=0.0))
    trades: list[Trade] = [
        ("A", 100.0, 100.0, T0, ["1"]),
        ("A", 90.0, 10.0, T0 + 1000, ["12"]),  # 10 % down, odd lot: nothing
        ("A", 91.0, 500.0, T0 + 2000, ["3"]),  # average price: nothing
        ("A", 101.0, 100.0, T0 + 3000, ["1"]),  # 1 % above 100; 12 % above 90 had the odd lot counted
        ("A", 102.0, 100.0, T0 + 4000, None),  # 2 % above the regular low 100: fires
    ]
    assert feed(engine, trades) == [(4, "price_move_up")]


def test_rsi_closes_are_the_last_eligible_price_of_each_minute() -> None:
    engine = only(rsi=RsiConfig(period=14, overbought=70.0, oversold=30.0, cooldown_seconds=0.0))
    regular: list[Trade] = [("A", float(c), 100.0, T0 + m * MIN, None) for m, c in enumerate(CLOSES)]
    fired = feed(engine, regular)
    # an odd lot at an off price at the end of every minute changes no close, so no crossing
    with_odd_lots: list[Trade] = []
    for symbol, price, volume, ts, conditions in regular:
        with_odd_lots += [
            (symbol, price, volume, ts, conditions),
            (symbol, price * 3, 5.0, ts + 59_000, ["12"]),
        ]
    assert fired
    assert [rule for _, rule in feed(Engine(engine.rules), with_odd_lots)] == [r for _, r in fired]


def test_session_extremes_follow_high_low_eligibility() -> None:
    engine = only(session_extremes=SessionExtremesConfig(cooldown_seconds=0.0))
    trades: list[Trade] = [
        ("A", 100.0, 100.0, T0, None),
        ("A", 120.0, 10.0, T0 + 1, ["12"]),  # odd lot: not a session high
        ("A", 80.0, 10.0, T0 + 2, ["5"]),  # cash sale: not a session low
        ("A", 105.0, 50.0, T0 + 3, ["21"]),  # prior reference price updates high/low: a new high
        ("A", 104.0, 50.0, T0 + 4, ["1"]),
    ]
    assert feed(engine, trades) == [(3, "session_high")]


def test_volume_spike_counts_only_volume_eligible_prints() -> None:
    engine = only(volume_spike=VolumeSpikeConfig(factor=2.0, minutes=3, min_volume=0.0, cooldown_seconds=0.0))
    history: list[Trade] = [("A", 100.0, 10.0, T0 + m * MIN, None) for m in range(3)]
    # an official close print carries no volume: 1000 shares of it are not a spike
    official_close = [*history, ("A", 100.0, 1000.0, T0 + 3 * MIN, ["16"])]
    assert feed(engine, official_close) == []
    # odd lots do count in volume
    odd_lots = [*history, ("A", 100.0, 20.0, T0 + 3 * MIN, ["12"])]
    assert feed(Engine(engine.rules), odd_lots) == [(3, "volume_spike")]


def test_any_print_keeps_its_symbol_from_going_stale() -> None:
    engine = only(stale_feed=StaleFeedConfig(seconds=10.0, cooldown_seconds=0.0))
    trades: list[Trade] = [
        ("B", 50.0, 1.0, T0, None),
        ("A", 10.0, 1.0, T0, None),
        ("B", 50.0, 1.0, T0 + 8_000, ["16"]),  # updates nothing, but B's feed is alive
        ("A", 10.0, 1.0, T0 + 12_000, None),
    ]
    assert feed(engine, trades) == []


def test_unknown_codes_are_evaluated_as_regular() -> None:
    regular = [("A", p, 100.0, T0 + i, None) for i, p in enumerate([99.0, 100.0, 101.0])]
    trades = [*regular, ("A", 150.0, 10.0, T0 + 10, ["9999"])]
    assert feed(only(suspicious_tick=sus()), trades) == [(3, "suspicious_tick")]
