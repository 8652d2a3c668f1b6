"""Rule state: the generic dataclass codec, the engine's bookkeeping for checkpoints (dirty and
evicted symbols, bounded memory), and how per-symbol checkpoint records are assembled on restore."""

from __future__ import annotations

import json
from dataclasses import replace

import msgspec
import pytest

from alerts import codec
from alerts.checkpoints import VERSION, assemble, manifest_key, symbol_key
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
from alerts.rules import Engine, SymbolState

pytestmark = pytest.mark.unit

T0 = 1_763_640_000_000
RULES = SymbolRules(
    price_move=PriceMoveConfig(pct=1.0, cooldown_seconds=30),
    volume_spike=VolumeSpikeConfig(factor=1.5, minutes=3, cooldown_seconds=60),
    rsi=RsiConfig(period=3, overbought=60, oversold=40, cooldown_seconds=60),
    session_extremes=SessionExtremesConfig(cooldown_seconds=120),
    stale_feed=StaleFeedConfig(seconds=60, cooldown_seconds=120),
    suspicious_tick=SuspiciousTickConfig(band_pct=20, samples=7, min_samples=3),
)


def fed(rules: SymbolRules = RULES, n: int = 400) -> SymbolState:
    engine = Engine(RulesConfig(defaults=rules, overrides={}))
    for i in range(n):
        engine.evaluate("A", 100 + (i % 7) - 3 * (i % 2), 10 + i % 5, T0 + i * 7_000, 2)
    return engine.states["A"]


def test_every_rule_state_round_trips_through_json() -> None:
    state = fed()
    data = json.loads(json.dumps(codec.dump(state)))
    assert set(data) == {
        "clock",
        "partition",
        "stale",
        "cooldowns",
        "price_move",
        "volume",
        "rsi",
        "session",
        "suspicious",
    }
    assert (
        "cfg" not in data["price_move"]
        and "tz" not in data["session"]
        and "ordered" not in data["suspicious"]
    )
    again = SymbolState("A", RULES)
    codec.load(again, data)
    assert codec.dump(again) == codec.dump(state)
    assert again.suspicious is not None and again.suspicious.ordered == sorted(again.suspicious.recent)
    assert again.volume is not None and again.volume.history.maxlen == 3  # maxlen from the config
    assert again.rsi is not None and again.rsi.rsi.inverse == 1 / 3  # derived fields rebuilt


def test_restore_follows_the_running_rules_file() -> None:
    data = json.loads(json.dumps(codec.dump(fed())))
    # a rule switched off since the checkpoint: its old state is ignored; one switched on: fresh
    changed = replace(
        RULES,
        price_move=PriceMoveConfig(enabled=False),
        suspicious_tick=SuspiciousTickConfig(band_pct=20, samples=4, min_samples=3),
    )
    state = SymbolState("A", changed)
    codec.load(state, {k: v for k, v in data.items() if k != "rsi"})
    assert state.price_move is None
    assert state.rsi is not None and state.rsi.rsi.count == 0
    assert state.suspicious is not None and len(state.suspicious.recent) == 4  # fewer samples now
    assert state.suspicious.ordered == sorted(state.suspicious.recent)


def test_engine_marks_changed_symbols_dirty_including_stale_latches() -> None:
    engine = Engine(RulesConfig(defaults=RULES, overrides={}))
    engine.evaluate("A", 100, 1, T0, 0)
    engine.evaluate("B", 100, 1, T0, 1)
    assert engine.dirty == {"A", "B"}
    engine.dirty.clear()
    fired = engine.evaluate("A", 100, 1, T0 + 61_000, 0)  # B silent for 61 s: stale, latched
    assert [f.rule for f in fired] == ["stale_feed"] and engine.states["B"].stale
    assert engine.dirty == {"A", "B"}


def test_evict_idle_and_beyond_max_symbols() -> None:
    engine = Engine(RulesConfig(defaults=RULES, overrides={}))
    for i in range(10):
        engine.evaluate(f"S{i}", 100, 1, T0 + i * 1000, i % 3)
    engine.dirty.clear()
    assert engine.evict(idle_before=T0 + 2000, max_symbols=100) == 2  # S0, S1 idle
    assert engine.evicted == {"S0": 0, "S1": 1}
    assert engine.evict(idle_before=0, max_symbols=5) == 3  # the least recently traded go
    assert sorted(engine.states) == ["S5", "S6", "S7", "S8", "S9"]
    assert set(engine.evicted) == {"S0", "S1", "S2", "S3", "S4"}
    # an evicted symbol that trades again starts fresh
    engine.evaluate("S0", 100, 1, T0 + 20_000, 0)
    assert engine.states["S0"].price_move is not None and len(engine.states["S0"].price_move.minq) == 1


def test_a_symbol_that_moves_partition_leaves_a_tombstone_behind() -> None:
    engine = Engine(RulesConfig(defaults=RULES, overrides={}))
    engine.evaluate("A", 100, 1, T0, 0)
    assert engine.evicted == {}
    engine.evaluate("A", 100, 1, T0 + 1, 2)
    assert engine.evicted == {"A": 0} and engine.states["A"].partition == 2


def _record(offset: int, state: object, written: int = 1) -> bytes:
    return msgspec.json.encode({"version": VERSION, "offset": offset, "written_ms": written, "state": state})


def _manifest(next_offset: int, written: int = 5) -> bytes:
    return msgspec.json.encode({"version": VERSION, "next_offset": next_offset, "written_ms": written})


def test_assemble_takes_the_newest_records_and_the_manifest() -> None:
    g, t = "grp", "trades"
    records = [
        (symbol_key(g, t, 0, "A"), _record(10, {"clock": 1})),
        (symbol_key(g, t, 0, "B"), _record(10, {"clock": 2})),
        (manifest_key(g, t, 0), _manifest(10)),
        (symbol_key(g, t, 0, "A"), _record(25, {"clock": 3})),  # a round that did not finish
        (symbol_key(g, t, 0, "B"), None),  # evicted
        (symbol_key(g, t, 1, "C"), _record(4, {"clock": 4})),  # partition 1 has no manifest yet
        (symbol_key("other", t, 0, "D"), _record(1, {"clock": 5})),
        (manifest_key(g, t, 2), b"{not json"),
    ]
    found = assemble(records, g, t, [0, 1, 2])
    assert set(found) == {0}
    cp = found[0]
    assert (cp.next_offset, cp.written_ms) == (10, 5)
    assert cp.states == {"A": {"clock": 3}}
    assert cp.covers == {"A": 25}  # its trades before 25 are in the state: skipped on restore


def test_assemble_reads_the_one_message_checkpoints_of_version_1() -> None:
    old = json.dumps(
        {"version": 1, "next_offset": 7, "written_ms": 3, "symbols": {"A": {"clock": 1}}}
    ).encode()
    found = assemble([(manifest_key("g", "t", 0), old)], "g", "t", [0])
    assert (found[0].next_offset, found[0].states, found[0].covers) == (7, {"A": {"clock": 1}}, {})


def test_assemble_keeps_a_moved_symbol_where_it_was_written_last() -> None:
    g, t = "g", "t"
    records = [
        (manifest_key(g, t, 0), _manifest(3)),
        (manifest_key(g, t, 1), _manifest(9)),
        (symbol_key(g, t, 1, "A"), _record(9, {"clock": 2}, written=20)),
        (symbol_key(g, t, 0, "A"), _record(3, {"clock": 1}, written=10)),
    ]
    found = assemble(records, g, t, [0, 1])
    assert found[0].states == {} and found[1].states == {"A": {"clock": 2}}
