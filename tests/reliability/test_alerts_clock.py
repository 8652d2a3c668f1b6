"""A trade dated up to a day ahead is valid input (docs/interfaces/kafka-messages.md), but the alert service's
rules run in event time: such a trade must not move their clock. Before the fix, one trade of one symbol dated
23 h ahead fired stale_feed for every other symbol and froze that symbol's RSI minutes."""

from __future__ import annotations

import json
from pathlib import Path

from alerts.config import load_rules
from alerts.rules import Engine
from alerts.service import alert_id
from tests.reliability.alert_process import AlertProcess, read_all, rules_file
from tests.reliability.conftest import Scenario
from tests.reliability.helpers import RelTopics
from tickhouse.config import Settings
from tickhouse.schemas import now_ms

MINUTE = 60_000


def _trades(now: int) -> tuple[list[dict[str, object]], int]:
    """Five symbols trade in the last minute; then RELC8's last 40 minutes: 16 sideways (RSI warms
    up), 8 rising (RSI crosses 70), 16 falling (RSI crosses 30), with one trade dated 23 h ahead
    after the rise. Returns the trades and the index of the future-dated one."""
    start = now - 40 * MINUTE - 30_000  # RELC8's last trades 88 s before now: not stale
    trades: list[dict[str, object]] = [
        {"symbol": f"RELC{i % 5}", "price": 50.0, "volume": 5, "ts": now - 50_000 + i * 1_000}
        for i in range(30)
    ]
    price = 100.0
    future = -1
    for minute in range(40):
        if minute < 16:
            price *= 1.003 if minute % 2 else 0.997
        else:
            price *= 1.006 if minute < 24 else 0.994
        for k in range(3):
            trades.append({"symbol": "RELC8", "price": round(price + k * 0.01, 4), "volume": 10,
                           "ts": start + minute * MINUTE + k * 1_000})  # fmt: skip
        if minute == 24:
            future = len(trades)
            trades.append(
                {"symbol": "RELC8", "price": round(price, 4), "volume": 10, "ts": now + 23 * 3_600_000}
            )
    return trades, future


def test_a_trade_dated_a_day_ahead_does_not_move_the_clock(
    settings: Settings, rel_topics: RelTopics, tmp_path: Path, scenario: Scenario
) -> None:
    """a trade dated 23 h ahead: no stale_feed storm, RSI minutes keep going."""
    rules = rules_file(tmp_path)
    service = AlertProcess(rel_topics, rules, tmp_path / "alerts.log")
    service.start()
    trades, future = _trades(now_ms())
    producer = rel_topics.producer()
    offsets: list[int] = []

    def delivered(err: object, msg: object) -> None:
        assert err is None, err
        offsets.append(msg.offset())  # type: ignore[attr-defined]

    try:
        for t in trades:  # one partition: stale_feed compares symbols in partition order
            producer.produce(rel_topics.trades, key=str(t["symbol"]).encode(), value=json.dumps(t).encode(),
                             partition=0, on_delivery=delivered)  # fmt: skip
            producer.flush(10)  # one at a time: offsets in list order
        service.wait_metric("tickhouse_alerts_trades_evaluated_total", len(trades) - 1, timeout=60)
        left_out = service.metric("tickhouse_alerts_future_trades_total")
        assert service.stop() == 0
    finally:
        service.stop()

    # the oracle: the rules over every trade except the one they cannot place in time
    engine = Engine(load_rules(rules))
    expected = {}
    for i, (t, offset) in enumerate(zip(trades, offsets, strict=True)):
        if i == future:
            continue
        for f in engine.evaluate(str(t["symbol"]), float(t["price"]), float(t["volume"]), int(t["ts"]), 0):
            expected[alert_id(f.symbol, f.rule, rel_topics.trades, 0, offset)] = (f.symbol, f.rule)
    published = {a["alert_id"]: (a["symbol"], a["rule"]) for a in (json.loads(v) for _, v in
                 read_all(settings, rel_topics.alerts) if v)}  # fmt: skip
    stale = sorted(s for s, rule in published.values() if rule == "stale_feed")
    scenario.messages = len(trades)
    scenario.lost = len(set(expected) - set(published))
    scenario.doubled = len(set(published) - set(expected))
    scenario.note(f"{len(expected)} alerts expected, {len(published)} published, stale_feed for {stale}")
    assert {rule for _, rule in expected.values()} >= {"rsi_overbought", "rsi_oversold"}
    assert not stale, f"stale_feed fired for {stale}: the future trade moved the clock"
    assert published == expected
    assert left_out == 1
