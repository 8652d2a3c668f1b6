"""SIGKILL the drain at random moments while a replay flows: 0 lost, 0 doubled."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from tests.faults import STAGES
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import (
    RelTopics,
    check_trades_exactly_once,
    drain_until_caught_up,
    env_int,
    high_watermarks,
    start_drain,
    start_replay,
    stored_offsets,
    write_replay_csv,
)
from tickhouse.config import Settings
from tickhouse.schemas import now_ms

# RELIABILITY_TRADES: the issue asks for a 1M-trade replay; 200k keeps this scenario near 90 s on a
# 2-core machine shared with the whole stack. RELIABILITY_KILLS: at least 20 SIGKILLs.
TRADES = env_int("RELIABILITY_TRADES", 200_000)
KILLS = env_int("RELIABILITY_KILLS", 20)
BUDGET_S = env_int("RELIABILITY_KILL_BUDGET_S", 150)


def test_sigkill_drain_at_random_moments(
    settings: Settings, rel_topics: RelTopics, tmp_path: Path, scenario: Scenario
) -> None:
    """drain SIGKILLed at random moments during a replay."""
    seed = env_int("RELIABILITY_SEED", int(time.time()))
    rng = random.Random(seed)
    scenario.note(
        f"{TRADES:,} trades replayed, >= {KILLS} SIGKILLs (random moments + every fault stage); "
        f"replay the moments with RELIABILITY_SEED={seed}"
    )
    csv = tmp_path / "trades.csv"
    ids = write_replay_csv(csv, TRADES, ("RELK1", "RELK2", "RELK3", "RELK4"), now_ms() - 3_600_000)
    # small batches: many commits per scenario, so kills land before, inside and after commits
    env = rel_topics.env(DRAIN_MAX_MESSAGES=str(max(5_000, TRADES // 8)))
    replay = start_replay(rel_topics.env(), csv, rel_topics.trades, log=tmp_path / "producer.log")

    kills = completed = attempts = mid_work = 0
    stage_kills = dict.fromkeys(STAGES, 0)
    deadline = time.monotonic() + BUDGET_S
    try:
        while kills < KILLS and time.monotonic() < deadline:
            attempts += 1
            if attempts % 3 == 0:
                # the exact windows between COPY, warehouse commit and Kafka commit
                stage = STAGES[(attempts // 3) % len(STAGES)]
                proc = start_drain(env, self_kill_stage=stage)
                _out, err = proc.communicate(timeout=120)
                if proc.returncode == -signal.SIGKILL:
                    kills += 1
                    stage_kills[stage] += 1
                else:
                    assert proc.returncode == 0, f"drain failed: {err[-2000:]}"
                    completed += 1
                continue
            proc = start_drain(env)
            try:
                proc.wait(timeout=rng.uniform(0.3, 3.0))
            except Exception:  # still running: the moment has come
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                kills += 1
                # work was in hand: the topic held messages past what the warehouse had committed
                loaded = stored_offsets(settings, rel_topics.group, rel_topics.trades)
                ends = high_watermarks(settings, rel_topics.trades)
                mid_work += any(end > loaded.get(p, 0) for p, end in ends.items())
                continue
            _out, err = proc.communicate()
            assert proc.returncode == 0, f"drain failed: {err[-2000:]}"
            completed += 1
        assert replay.wait(timeout=180) == 0, (tmp_path / "producer.log").read_text()[-3000:]
    finally:
        if replay.poll() is None:
            replay.kill()
    scenario.kills = kills
    scenario.messages = TRADES
    assert kills >= KILLS, f"only {kills} kills in {BUDGET_S} s ({attempts} attempts)"
    # the fault-stage kills land inside a batch by construction (mid COPY, between the warehouse and
    # the Kafka commit); the random ones that found work pending are counted in the note

    runs = drain_until_caught_up(settings, rel_topics, env)
    result = check_trades_exactly_once(settings, rel_topics.trades, ids)
    scenario.lost, scenario.doubled = result.lost, result.doubled
    scenario.note(
        f"{attempts} drain starts: {kills} killed ({stage_kills} at fault stages, {mid_work} random ones "
        f"with messages not yet committed), {completed} completed, "
        f"{runs} clean drains to catch up"
    )
    assert result.lost == 0 and result.doubled == 0, result
    assert result.rows == TRADES
    assert stored_offsets(settings, rel_topics.group, rel_topics.trades)
