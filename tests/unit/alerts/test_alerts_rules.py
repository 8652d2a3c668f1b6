"""Every rule on crafted sequences, including values exactly at the threshold (inclusive)."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import talib

from alerts.config import (
    PriceMoveConfig,
    RsiConfig,
    RulesConfig,
    SessionExtremesConfig,
    StaleFeedConfig,
    SuspiciousTickConfig,
    SymbolRules,
    VolumeSpikeConfig,
)
from alerts.rules import Engine, Firing, WilderRsi

pytestmark = pytest.mark.unit

T0 = 1_763_640_000_000  # 2025-11-20 12:00:00 UTC, a minute boundary
MIN = 60_000


def only(**sections: object) -> Engine:
    """An engine with every rule off except the given sections (cooldown 0 unless given)."""
    off = SymbolRules(
        price_move=PriceMoveConfig(enabled=False),
        volume_spike=VolumeSpikeConfig(enabled=False),
        rsi=RsiConfig(enabled=False),
        session_extremes=SessionExtremesConfig(enabled=False),
        stale_feed=StaleFeedConfig(enabled=False),
        suspicious_tick=SuspiciousTickConfig(enabled=False),
    )
    return Engine(RulesConfig(defaults=replace(off, **sections), overrides={}))  # type: ignore[arg-type]


def feed(engine: Engine, trades: list[tuple[str, float, float, int]]) -> list[tuple[int, Firing]]:
    """(index of the trade, firing) for every alert."""
    out = []
    for i, (symbol, price, volume, ts) in enumerate(trades):
        out.extend((i, f) for f in engine.evaluate(symbol, price, volume, ts))
    return out


def rules_of(fired: list[tuple[int, Firing]]) -> list[tuple[int, str]]:
    return [(i, f.rule) for i, f in fired]


# --- price move -------------------------------------------------------------------------------


def pm(**kw: object) -> Engine:
    cfg = {"pct": 2.0, "window_seconds": 60.0, "cooldown_seconds": 0.0, **kw}
    return only(price_move=PriceMoveConfig(**cfg))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("second", "fires"),
    [(102.0, True), (101.99, False), (102.01, True)],
)
def test_price_move_up_is_inclusive_at_the_threshold(second: float, fires: bool) -> None:
    fired = feed(pm(), [("A", 100.0, 1, T0), ("A", second, 1, T0 + 1000)])
    assert rules_of(fired) == ([(1, "price_move_up")] if fires else [])
    if fires:
        d = fired[0][1].details
        assert d["reference_price"] == 100.0 and d["threshold_pct"] == 2.0
        assert d["change_pct"] == pytest.approx((second - 100) / 100 * 100)


@pytest.mark.parametrize(("second", "fires"), [(98.0, True), (98.01, False)])
def test_price_move_down_is_inclusive_at_the_threshold(second: float, fires: bool) -> None:
    fired = feed(pm(), [("A", 100.0, 1, T0), ("A", second, 1, T0 + 1000)])
    assert rules_of(fired) == ([(1, "price_move_down")] if fires else [])


def test_price_move_decimal_threshold_survives_binary_rounding() -> None:
    # 0.1 + 0.2 style: 1.1 -> 1.133 is exactly 3 % in decimal, not in binary
    fired = feed(pm(pct=3.0), [("A", 1.1, 1, T0), ("A", 1.133, 1, T0 + 1)])
    assert rules_of(fired) == [(1, "price_move_up")]


def test_price_move_window_is_inclusive_at_both_ends() -> None:
    at_edge = [("A", 100.0, 1, T0), ("A", 102.0, 1, T0 + 60_000)]
    past_edge = [("A", 100.0, 1, T0), ("A", 102.0, 1, T0 + 60_001)]
    assert rules_of(feed(pm(), at_edge)) == [(1, "price_move_up")]
    assert rules_of(feed(pm(), past_edge)) == []


def test_price_move_uses_window_extremes_not_the_last_price() -> None:
    trades = [("A", 100.0, 1, T0), ("A", 101.0, 1, T0 + 1), ("A", 101.5, 1, T0 + 2), ("A", 102.0, 1, T0 + 3)]
    assert rules_of(feed(pm(), trades)) == [(3, "price_move_up")]


def test_price_move_both_directions_on_one_trade() -> None:
    trades = [("A", 90.0, 1, T0), ("A", 110.0, 1, T0 + 1), ("A", 100.0, 1, T0 + 2)]
    fired = feed(pm(pct=5.0), trades)
    assert rules_of(fired) == [(1, "price_move_up"), (2, "price_move_up"), (2, "price_move_down")]


def test_cooldown_is_per_symbol_and_rule_and_ends_exactly_at_cooldown() -> None:
    engine = pm(cooldown_seconds=10.0)
    trades = [
        ("A", 100.0, 1, T0),
        ("A", 102.0, 1, T0 + 1000),  # fires: cooldown until T0 + 11000
        ("B", 100.0, 1, T0 + 1000),
        ("B", 102.0, 1, T0 + 2000),  # another symbol: not affected
        ("A", 98.0, 1, T0 + 3000),  # another rule (down): not affected
        ("A", 102.5, 1, T0 + 10_999),  # up again, 1 ms before the cooldown ends: suppressed
        ("A", 102.5, 1, T0 + 11_000),  # exactly at the end: fires
    ]
    assert rules_of(feed(engine, trades)) == [
        (1, "price_move_up"),
        (3, "price_move_up"),
        (4, "price_move_down"),
        (6, "price_move_up"),
    ]


def test_suppressed_firing_does_not_restart_cooldown() -> None:
    engine = pm(cooldown_seconds=10.0)
    trades = [
        ("A", 100.0, 1, T0),
        ("A", 102.0, 1, T0 + 1000),
        ("A", 103.0, 1, T0 + 9000),  # suppressed
        ("A", 104.0, 1, T0 + 11_000),
    ]  # 10 s after the alert
    assert rules_of(feed(engine, trades)) == [(1, "price_move_up"), (3, "price_move_up")]


def test_late_trade_is_evaluated_at_the_symbol_clock() -> None:
    # a print with an old ts must not evict or resurrect window entries
    trades = [("A", 100.0, 1, T0 + 60_000), ("A", 100.0, 1, T0), ("A", 102.0, 1, T0 + 120_000)]
    fired = feed(pm(), trades)
    assert rules_of(fired) == [(2, "price_move_up")]


# --- volume spike ---------------------------------------------------------------------------


def vs(**kw: object) -> Engine:
    cfg = {"factor": 2.0, "minutes": 3, "cooldown_seconds": 0.0, **kw}
    return only(volume_spike=VolumeSpikeConfig(**cfg))  # type: ignore[arg-type]


def minutes_of(volumes: list[float]) -> list[tuple[str, float, float, int]]:
    return [("A", 100.0, v, T0 + m * MIN) for m, v in enumerate(volumes)]


def test_volume_spike_inclusive_at_factor_times_trailing_mean() -> None:
    trades = [
        *minutes_of([10, 10, 10]),
        ("A", 100.0, 19.99, T0 + 3 * MIN),
        ("A", 100.0, 0.01, T0 + 3 * MIN + 1),
        ("A", 100.0, 5, T0 + 3 * MIN + 2),
    ]
    fired = feed(vs(), trades)
    assert rules_of(fired) == [(4, "volume_spike")]  # 19.99 + 0.01 = 20 = 2 x 10, once a minute
    d = fired[0][1].details
    assert d["minute_volume"] == pytest.approx(20.0)
    assert d["trailing_avg_volume"] == 10.0
    assert d["minute_start_ts"] == T0 + 3 * MIN


def test_volume_spike_needs_full_history() -> None:
    assert rules_of(feed(vs(), minutes_of([10, 10, 100]))) == []
    assert rules_of(feed(vs(), minutes_of([10, 10, 10, 100]))) == [(3, "volume_spike")]


def test_volume_spike_empty_minutes_count_as_zero() -> None:
    # minutes 0: 30, 1: none, 2: 30 -> mean 20; minute 3 needs 40
    trades = [
        ("A", 100.0, 30, T0),
        ("A", 100.0, 30, T0 + 2 * MIN),
        ("A", 100.0, 39, T0 + 3 * MIN),
        ("A", 100.0, 1, T0 + 3 * MIN + 1),
    ]
    assert rules_of(feed(vs(), trades)) == [(3, "volume_spike")]


def test_volume_spike_min_volume_and_zero_mean() -> None:
    assert rules_of(feed(vs(min_volume=50.0), minutes_of([10, 10, 10, 40]))) == []
    assert rules_of(feed(vs(), minutes_of([0, 0, 0, 40]))) == []


# --- RSI ------------------------------------------------------------------------------------


# fmt: off
CLOSES = [100, 101, 100.5, 102, 101, 103, 102.5, 104, 103, 105, 104, 106, 105, 107, 106, 108,
          107.5, 109, 104, 103, 102, 101, 100, 99, 98, 97, 99, 101, 103, 105]
# fmt: on


@pytest.mark.parametrize("seed", range(40))
def test_wilder_rsi_equals_talib(seed: int) -> None:
    rnd = random.Random(seed)
    n = rnd.randint(1, 120)
    period = rnd.choice([2, 5, 14, 14, 21])
    walk = list(np.cumsum([rnd.gauss(0, 1) for _ in range(n)]) + 200)
    closes = [100.0] * n if seed % 10 == 0 else walk  # flat: zero gains and losses
    expected = talib.RSI(np.array(closes, dtype=float), period)
    rsi = WilderRsi(period)
    for close, want in zip(closes, expected, strict=True):
        got = rsi.add(float(close))
        if np.isnan(want):
            assert got is None
        else:
            assert got == want  # bit-for-bit


def rsi_trades(closes: list[float]) -> list[tuple[str, float, float, int]]:
    """Two trades a minute: an opening one and the close; the next minute reveals the close."""
    trades = []
    for m, close in enumerate(closes):
        trades.append(("A", close + 0.25, 1, T0 + m * MIN))
        trades.append(("A", close, 1, T0 + m * MIN + 30_000))
    trades.append(("A", 1.0, 1, T0 + len(closes) * MIN))
    return trades


def test_rsi_crossings_match_talib_on_one_minute_closes() -> None:
    rnd = random.Random(7)
    closes = list(np.cumsum([rnd.gauss(0, 1) for _ in range(300)]) + 100)
    ref = talib.RSI(np.array(closes), 14)
    expected = []
    for i in range(1, len(closes)):
        if np.isnan(ref[i - 1]):
            continue
        if ref[i - 1] < 70 <= ref[i]:
            expected.append((i, "rsi_overbought"))
        elif ref[i - 1] > 30 >= ref[i]:
            expected.append((i, "rsi_oversold"))
    assert expected, "the random walk should cross at least once"
    fired = feed(only(rsi=RsiConfig(cooldown_seconds=0.0)), rsi_trades(closes))
    # the alert comes from the first trade of the next minute: index 2 * (i + 1)
    assert [(i // 2 - 1, f.rule) for i, f in fired] == expected
    for i, f in fired:
        minute = i // 2 - 1
        assert f.details["rsi"] == pytest.approx(ref[minute], abs=1e-6)
        assert f.details["bar_start_ts"] == T0 + minute * MIN
        assert f.details["close"] == closes[minute]


def test_rsi_close_is_the_latest_event_time_not_the_latest_arrival() -> None:
    closes = [float(c) for c in CLOSES]
    trades = rsi_trades(closes)
    # a late print of minute 15 (ts before the close) arrives after the close: not the close
    late = ("A", 1000.0, 1, T0 + 15 * MIN + 10_000)
    trades.insert(2 * 15 + 2, late)
    level = float(talib.RSI(np.array(closes), 14)[15])
    fired = feed(only(rsi=RsiConfig(overbought=level, cooldown_seconds=0.0)), trades)
    assert [f.details["bar_start_ts"] for _, f in fired] == [T0 + 15 * MIN, T0 + 17 * MIN]
    assert fired[0][1].details["close"] == closes[15]


def test_rsi_crossing_exactly_at_the_threshold() -> None:
    ref = talib.RSI(np.array(CLOSES, dtype=float), 14)
    level = float(ref[15])  # 70.229...: reached exactly at minute 15, left at 16, again at 17
    at = only(rsi=RsiConfig(overbought=level, cooldown_seconds=0.0))
    fired = feed(at, rsi_trades([float(c) for c in CLOSES]))
    assert [(i // 2 - 1, f.rule) for i, f in fired] == [(15, "rsi_overbought"), (17, "rsi_overbought")]
    above = only(rsi=RsiConfig(overbought=level + 1e-6, cooldown_seconds=0.0))
    fired = feed(above, rsi_trades([float(c) for c in CLOSES]))
    assert [(i // 2 - 1, f.rule) for i, f in fired] == [(17, "rsi_overbought")]


def test_rsi_oversold_crossing_and_cooldown() -> None:
    closes = [float(c) for c in CLOSES]
    ref = talib.RSI(np.array(closes), 14)
    level = float(ref[20])  # 49.557..., falling through it at minute 20
    engine = only(rsi=RsiConfig(oversold=level, overbought=99.0, cooldown_seconds=3600.0))
    fired = feed(engine, rsi_trades(closes))
    assert [(i // 2 - 1, f.rule) for i, f in fired] == [(20, "rsi_oversold")]


# --- session extremes -----------------------------------------------------------------------


def se(**kw: object) -> Engine:
    cfg = {"cooldown_seconds": 0.0, **kw}
    return only(session_extremes=SessionExtremesConfig(**cfg))  # type: ignore[arg-type]


def test_session_high_low_strictly_beyond_the_extreme() -> None:
    trades = [
        ("A", 100.0, 1, T0),
        ("A", 100.0, 1, T0 + 1),
        ("A", 100.5, 1, T0 + 2),
        ("A", 100.5, 1, T0 + 3),
        ("A", 99.0, 1, T0 + 4),
        ("A", 100.2, 1, T0 + 5),
    ]
    fired = feed(se(), trades)
    assert rules_of(fired) == [(2, "session_high"), (4, "session_low")]
    assert fired[0][1].details["previous_extreme"] == 100.0
    assert fired[0][1].details["session_date"] == "2025-11-20"


def test_session_min_trades_warm_up() -> None:
    trades = [("A", 100.0 + i, 1, T0 + i) for i in range(5)]
    assert [i for i, _ in feed(se(min_trades=3), trades)] == [3, 4]


def test_session_resets_at_new_york_midnight() -> None:
    # 2025-11-21 00:00 America/New_York (EST) = 05:00 UTC
    midnight = 1_763_701_200_000
    trades = [
        ("A", 100.0, 1, midnight - 2),
        ("A", 101.0, 1, midnight - 1),
        ("A", 50.0, 1, midnight),  # first trade of the new session: baseline, no alert
        ("A", 60.0, 1, midnight + 1),
    ]
    fired = feed(se(), trades)
    assert rules_of(fired) == [(1, "session_high"), (3, "session_high")]
    assert fired[1][1].details["session_date"] == "2025-11-21"


# --- stale feed -----------------------------------------------------------------------------


def st(seconds: float = 10.0, cooldown: float = 0.0) -> Engine:
    return only(stale_feed=StaleFeedConfig(seconds=seconds, cooldown_seconds=cooldown))


def test_stale_feed_inclusive_and_once_per_silence() -> None:
    trades = [
        ("B", 50.0, 1, T0),
        ("A", 10.0, 1, T0),
        ("A", 10.0, 1, T0 + 9_999),  # B silent 9.999 s: no
        ("A", 10.0, 1, T0 + 10_000),  # exactly 10 s: fires for B
        ("A", 10.0, 1, T0 + 20_000),  # still silent: latched, no repeat
        ("B", 50.0, 1, T0 + 21_000),  # B trades again (A silent only 1 s)
        ("A", 10.0, 1, T0 + 31_000),  # B silent 10 s again: fires again
    ]
    fired = feed(st(), trades)
    assert [(i, f.symbol, f.rule) for i, f in fired] == [(3, "B", "stale_feed"), (6, "B", "stale_feed")]
    d = fired[0][1].details
    assert d["last_trade_ts"] == T0 and d["silent_seconds"] == 10.0
    assert d["observed_via"] == "A" and d["threshold_seconds"] == 10.0


def test_stale_feed_needs_other_symbols_trading() -> None:
    # a lone symbol with a gap is not stale: nobody else trades
    assert feed(st(), [("A", 10.0, 1, T0), ("A", 10.0, 1, T0 + 60_000)]) == []


def test_stale_feed_cooldown_across_silences() -> None:
    trades = [
        ("B", 50.0, 1, T0),
        ("A", 10.0, 1, T0 + 10_000),
        ("B", 50.0, 1, T0 + 11_000),
        ("A", 10.0, 1, T0 + 21_000),  # within 60 s cooldown
        ("B", 50.0, 1, T0 + 22_000),
        ("A", 10.0, 1, T0 + 70_000),  # after it
    ]
    fired = feed(st(cooldown=60.0), trades)
    assert [i for i, _ in fired] == [1, 5]


# --- suspicious tick ------------------------------------------------------------------------


def sus(**kw: object) -> SuspiciousTickConfig:
    cfg = {"band_pct": 10.0, "samples": 5, "min_samples": 3, "cooldown_seconds": 0.0, **kw}
    return SuspiciousTickConfig(**cfg)  # type: ignore[arg-type]


@pytest.mark.parametrize(("price", "fires"), [(110.0, True), (90.0, True), (109.99, False)])
def test_suspicious_tick_band_inclusive(price: float, fires: bool) -> None:
    trades = [("A", p, 1, T0 + i) for i, p in enumerate([99.0, 100.0, 101.0])]
    trades.append(("A", price, 1, T0 + 10))
    fired = feed(only(suspicious_tick=sus()), trades)
    assert rules_of(fired) == ([(3, "suspicious_tick")] if fires else [])
    if fires:
        assert fired[0][1].details["median"] == 100.0


def test_suspicious_tick_needs_min_samples_and_uses_recent_median() -> None:
    trades = [("A", 100.0, 1, T0), ("A", 200.0, 1, T0 + 1)]  # only 1 sample before: no verdict
    assert feed(only(suspicious_tick=sus()), trades) == []
    # the median follows a real level change once it fills more than half of the 5 samples
    trades = [("A", p, 1, T0 + i) for i, p in enumerate([100, 100, 100, 120, 120, 120, 120])]
    fired = feed(only(suspicious_tick=sus()), trades)
    assert [i for i, _ in fired] == [3, 4, 5]


def test_suspicious_tick_is_kept_out_of_price_rules() -> None:
    rules = {"suspicious_tick": sus(), "price_move": PriceMoveConfig(pct=5.0, cooldown_seconds=0)}
    trades = [("A", 100.0, 1, T0 + i) for i in range(3)]
    trades += [("A", 150.0, 1, T0 + 3), ("A", 100.0, 1, T0 + 4)]
    assert rules_of(feed(only(**rules), trades)) == [(3, "suspicious_tick")]
    keep = {**rules, "suspicious_tick": sus(exclude_from_state=False)}
    assert rules_of(feed(only(**keep), trades)) == [
        (3, "suspicious_tick"),
        (3, "price_move_up"),
        (4, "price_move_down"),
    ]


# --- per-symbol config and state hand-over --------------------------------------------------


def test_per_symbol_override_applies_only_to_that_symbol() -> None:
    base = SymbolRules(price_move=PriceMoveConfig(pct=2.0, cooldown_seconds=0.0))
    rules = RulesConfig(
        defaults=base,
        overrides={"TSLA": replace(base, price_move=PriceMoveConfig(pct=5.0, cooldown_seconds=0))},
    )
    engine = Engine(rules)
    trades = [
        ("AAPL", 100.0, 1, T0),
        ("TSLA", 100.0, 1, T0),
        ("AAPL", 103.0, 1, T0 + 1),
        ("TSLA", 103.0, 1, T0 + 1),
    ]
    assert [(i, f.symbol) for i, f in feed(engine, trades) if f.rule == "price_move_up"] == [(2, "AAPL")]


def random_trades(seed: int, n: int) -> list[tuple[str, float, float, int]]:
    rnd = random.Random(seed)
    prices = {"A": 100.0, "B": 50.0, "C": 10.0}
    out = []
    ts = T0
    for _ in range(n):
        symbol = rnd.choice("AAB" if rnd.random() < 0.9 else "C")
        prices[symbol] *= 1 + rnd.gauss(0, 0.01)
        price = prices[symbol] * (1.5 if rnd.random() < 0.01 else 1.0)
        ts += rnd.randint(0, 20_000)
        out.append((symbol, round(price, 4), float(rnd.randint(1, 500)), ts))
    return out


def test_snapshot_restore_continues_exactly() -> None:
    """A checkpoint (through JSON) taken mid-stream continues with the same alerts."""
    rules = RulesConfig(
        defaults=SymbolRules(
            price_move=PriceMoveConfig(pct=1.0, cooldown_seconds=30),
            volume_spike=VolumeSpikeConfig(factor=1.5, minutes=3, cooldown_seconds=60),
            rsi=RsiConfig(overbought=60, oversold=40, cooldown_seconds=60),
            stale_feed=StaleFeedConfig(seconds=60, cooldown_seconds=120),
        ),
        overrides={},
    )
    trades = random_trades(3, 3000)
    whole = Engine(rules)
    expected = feed(whole, trades)
    assert len({f.rule for _, f in expected}) == 9, "the sequence should exercise every rule"

    first = Engine(rules)
    before = feed(first, trades[:1700])
    checkpoint = json.loads(json.dumps(first.snapshot()))
    second = Engine(rules)
    second.restore(checkpoint)
    after = [(i + 1700, f) for i, f in feed(second, trades[1700:])]
    assert [(i, f.symbol, f.rule, f.details) for i, f in before + after] == [
        (i, f.symbol, f.rule, f.details) for i, f in expected
    ]


def test_snapshot_by_partition_and_drop() -> None:
    engine = pm()
    engine.evaluate("A", 100.0, 1, T0, partition=0)
    engine.evaluate("B", 100.0, 1, T0, partition=1)
    assert set(engine.snapshot({1})) == {"B"}
    engine.drop({0})
    assert set(engine.states) == {"B"}
