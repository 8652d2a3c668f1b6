"""Replay: file reading and validation, pacing, and the publish loop's timing logic."""

from __future__ import annotations

import gzip
import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.replay import (
    Pacer,
    ReadStats,
    ReplayError,
    batched,
    count_rows,
    prepare,
    prepare_file,
    publish_prepared,
    read_trades,
)
from tickhouse.schemas import now_ms, parse_trade

pytestmark = pytest.mark.unit

T0 = 1_361_000_000_000


def test_csv_rows_are_validated_and_invalid_ones_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "symbol,price,volume,ts,conditions,source\n"
        f"AAPL,437.5,100,{T0},1;12,\n"
        f"MSFT,27.8801,0,{T0 + 5},,file\n"
        f"AAPL,-1,100,{T0},,\n"
        f"AAPL,abc,100,{T0},,\n"
        f"AAPL,1,100\n"
        f"IBM,200.1,1e2,{T0 + 9},,\n"
    )
    stats = ReadStats()
    trades = list(read_trades(path, stats))
    assert [(t.symbol, t.price, t.volume, t.conditions, t.source) for t in trades] == [
        ("AAPL", Decimal("437.5"), 100, ("1", "12"), "replay"),
        ("MSFT", Decimal("27.8801"), 0, None, "file"),
        ("IBM", Decimal("200.1"), Decimal("1e2"), None, "replay"),
    ]
    assert (stats.rows, stats.invalid) == (6, 3)


def test_csv_conditions_are_codes_separated_by_semicolons_and_a_bad_cell_is_a_bad_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "symbol,price,volume,ts,conditions\n"
        f"AAPL,1,100,{T0},12\n"
        f"AAPL,2,100,{T0 + 1}, 1 ; 12 ;\n"
        f"AAPL,3,100,{T0 + 2},\n"
        f'AAPL,4,100,{T0 + 3},"1,12"\n'
        f"AAPL,5,100,{T0 + 4},1 12\n"
        f"AAPL,6,100,{T0 + 5},[1;12]\n"
        f"AAPL,7,100,{T0 + 6},9999\n"
    )
    stats = ReadStats()
    with caplog.at_level("WARNING", logger="producer.replay"):
        trades = list(read_trades(path, stats))
    assert [(t.price, t.conditions) for t in trades] == [
        (1, ("12",)),
        (2, ("1", "12")),
        (3, None),
        (7, ("9999",)),  # an unknown code is valid input: the bars take it as regular and count it
    ]
    assert (stats.rows, stats.invalid) == (7, 3)
    skipped = [r.getMessage() for r in caplog.records]
    assert len(skipped) == 3
    assert f"{path}:5: skipped: conditions: '1,12' is not a list of condition codes" in skipped[0]
    assert "separated by ';', such as 1;12" in skipped[0]
    assert f"{path}:6: skipped" in skipped[1] and "'1 12'" in skipped[1]
    assert f"{path}:7: skipped" in skipped[2] and "bad code '[1'" in skipped[2]


def test_jsonl_gz_with_contract_or_finnhub_names(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    lines = [
        {"symbol": "AAPL", "price": 1.25, "volume": 3, "ts": T0, "conditions": ["1"]},
        {"s": "MSFT", "p": 2.5, "v": 0, "t": T0 + 1},
        {"symbol": "AAPL", "price": "1.25", "volume": 3, "ts": T0},
    ]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(line) for line in lines) + "\n\n[1]\n")
    stats = ReadStats()
    trades = list(read_trades(path, stats))
    assert [t.symbol for t in trades] == ["AAPL", "MSFT"]
    assert stats.invalid == 2
    assert count_rows(path) == 4
    (ts, key, value), _ = list(prepare(trades))
    assert (ts, key) == (T0, b"AAPL")
    assert parse_trade(value) == trades[0]


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="does not exist"):
        list(read_trades(tmp_path / "missing.csv"))
    bad = tmp_path / "t.parquet"
    bad.write_text("x")
    with pytest.raises(ReplayError, match="unknown format"):
        list(read_trades(bad))
    header = tmp_path / "t.csv"
    header.write_text("symbol,price\nAAPL,1\n")
    with pytest.raises(ReplayError, match="lacks ts, volume"):
        list(read_trades(header))


def test_pacer_keeps_gaps_divided_by_speed() -> None:
    pacer = Pacer(speed=2.0)
    assert pacer.due(T0, now=100.0) == 100.0
    assert pacer.due(T0 + 1000, now=100.0) == pytest.approx(100.5)
    assert pacer.due(T0 + 1000, now=100.6) == pytest.approx(100.5)  # same instant: no wait
    assert pacer.due(T0 + 4000, now=100.6) == pytest.approx(102.0)
    # a row out of order is sent at once and does not move the schedule back
    assert pacer.due(T0 + 2000, now=101.0) == pytest.approx(102.0)
    assert pacer.due(T0 + 5000, now=101.0) == pytest.approx(102.5)


def test_pacer_caps_long_gaps() -> None:
    pacer = Pacer(speed=1.0, max_gap=0.5)
    pacer.due(T0, now=0.0)
    assert pacer.due(T0 + 17 * 3_600_000, now=0.0) == pytest.approx(0.5)  # overnight
    assert pacer.due(T0 + 17 * 3_600_000 + 100, now=0.0) == pytest.approx(0.6)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def idle(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_publish_loop_sends_each_message_at_its_due_time() -> None:
    fake = FakeTime()
    sent: list[tuple[float, bytes]] = []
    items = [(T0 + ms, b"K", str(ms).encode()) for ms in (0, 0, 250, 1000, 3000)]
    count = publish_prepared(
        batched(items, 2), lambda topic, key, value: sent.append((fake.now, value)), "t",
        speed=1.0, clock=fake.clock, idle=fake.idle,
    )
    assert count == 5
    assert [v for _, v in sent] == [b"0", b"0", b"250", b"1000", b"3000"]
    assert [at for at, _ in sent] == pytest.approx([0, 0, 0.25, 1.0, 3.0], abs=0.001)
    assert max(fake.waits) <= 0.1  # waits in slices so that deliveries keep being served


def test_publish_loop_speed_zero_does_not_wait_and_stops_on_request() -> None:
    fake = FakeTime()
    stop = threading.Event()
    sent: list[bytes] = []

    def publish(topic: str, key: bytes, value: bytes) -> None:
        sent.append(value)
        if len(sent) == 3:
            stop.set()

    items = [(T0 + ms * 10_000, b"K", str(ms).encode()) for ms in range(10)]
    count = publish_prepared(batched(items, 3), publish, "t", speed=0, stop=stop,
                             clock=fake.clock, idle=fake.idle)
    assert count == 3 and len(sent) == 3
    assert fake.waits == []


NUMBER_TEXTS = st.one_of(
    st.sampled_from(["0", "1", "01", "1.50", "1e2", "1E-400", "-1", "abc", "1e400", "0.0",
                     "00.5", " 2.5", "NaN", "inf", "1_0", "1.", ".5", "", "1e+20", "9" * 30,
                     "0.1", "437.52", "27.8801"]),
    st.decimals(min_value=-10, max_value=10**9, allow_nan=False, places=4).map(str),
    st.integers(min_value=0, max_value=10**7).map(str),
    st.floats(min_value=1e-6, max_value=1e6).map(repr),
)
ROWS = st.lists(
    st.tuples(
        st.sampled_from(["AAPL", "BINANCE:BTCUSDT", "BRK.B", "", "a b", "X" * 33, '"IBM"', "é"]),
        NUMBER_TEXTS,
        NUMBER_TEXTS,
        st.one_of(st.sampled_from(["0", "0001", "-1", "1.5", "99999999999999999", ""]),
                  st.integers(min_value=0, max_value=now_ms() + 10 * 86_400_000).map(str)),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS, gz=st.booleans())
def test_fast_csv_path_gives_the_schema_path_bytes(tmp_path: Path, rows: list[tuple[str, ...]],
                                                    gz: bool) -> None:
    text = "symbol,price,volume,ts\n" + "".join(",".join(r) + "\n" for r in rows)
    path = tmp_path / ("t.csv.gz" if gz else "t.csv")
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    slow_stats, fast_stats = ReadStats(), ReadStats()
    slow = list(prepare(read_trades(path, slow_stats)))
    fast = list(prepare_file(path, fast_stats))
    assert fast == slow
    assert (fast_stats.rows, fast_stats.invalid) == (slow_stats.rows, slow_stats.invalid)
