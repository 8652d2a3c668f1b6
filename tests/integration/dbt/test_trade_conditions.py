"""Bars follow the trade-condition table (seed trade_conditions), the session label of a bucket
is the session of all its trades or `mixed`, and `v = 0` price updates add no volume. The codes the
table does not list are shown per code (marts.pipeline_unknown_conditions, `tickhouse status`,
the metrics exporter), counted once however often their loads are transformed.

One hand-built minute holds every flag combination; the bars of every interval are compared
with the oracle (tests/integration/dbt/oracles.py, which reads the table as data) after each
incremental run, after late and out-of-order prints, and after a full refresh.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from exporter.collector import PipelineCollector
from exporter.pipeline import unknown_conditions
from ops.cli import _print_unknown_conditions
from ops.demo import ConditionsApplied, _conditions_applied
from tests.integration.dbt.conftest import Feed, Transformer, fetch, own_feed, own_warehouse, raw_trades
from tests.integration.dbt.oracles import (
    TRADE_CONDITIONS_CSV,
    Eligibility,
    condition_table,
    eligibility_of,
    pandas_bars,
)
from tests.integration.dbt.raw_rows import RawTrade, ms
from tickhouse.config import Settings
from tickhouse.warehouse import connect

pytestmark = pytest.mark.integration

# Monday 2025-03-10, New York on daylight time: 13:30 UTC is the 09:30 open
MINUTE = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)
OPEN = datetime(2025, 3, 10, 13, 30, tzinfo=UTC)
BAR_COLUMNS = ("trading_date", "session", "open", "high", "low", "close", "volume", "vwap", "trade_count")

Print = tuple[str, Decimal, Decimal, datetime, list[str] | None]


def _print(symbol: str, price: str, volume: int, at: datetime, conditions: list[str] | None) -> Print:
    return (symbol, Decimal(price), Decimal(volume), at, conditions)


def _the_issue_minute() -> list[Print]:
    """Regular 100, 101, 102; an odd lot first, an average-price print, a cash sale, and a
    regular + odd-lot print last: open 100, high 102, low 100, close 102, all the volume."""
    s = timedelta(seconds=1)
    return [
        _print("CND", "150", 10, MINUTE + 1 * s, ["12"]),
        _print("CND", "100", 100, MINUTE + 2 * s, ["1"]),
        _print("CND", "101", 200, MINUTE + 3 * s, None),
        _print("CND", "90", 500, MINUTE + 4 * s, ["3"]),
        _print("CND", "102", 100, MINUTE + 5 * s, []),
        _print("CND", "200", 300, MINUTE + 6 * s, ["5"]),
        _print("CND", "50", 20, MINUTE + 7 * s, ["1", "12"]),
    ]


def _code_with(flags: Eligibility) -> str:
    """A code of the table with exactly these flags: the test reads the table, not its numbering."""
    codes = [code for code, eligibility in condition_table().items() if eligibility == flags]
    assert codes, f"trade_conditions.csv has no code with {flags}"
    return codes[0]


def _other_minutes() -> list[Print]:
    s = timedelta(seconds=1)
    m = timedelta(minutes=1)
    high_low_only = _code_with(Eligibility(last=False, high_low=True, volume=True))
    no_update = _code_with(Eligibility(last=False, high_low=False, volume=False))
    return [
        # odd lots only: volume, no prices, in every interval's view of this minute
        _print("CND", "300", 40, MINUTE + m + s, ["12"]),
        _print("CND", "10", 60, MINUTE + m + 2 * s, ["12", "1"]),
        # a code that updates high/low and volume only (such as a prior reference price), and
        # one that updates nothing (such as a market center's official close)
        _print("CND", "103", 50, MINUTE + 2 * m + s, [high_low_only]),
        _print("CND", "104", 50, MINUTE + 2 * m + 2 * s, [no_update]),
        # an unknown code counts as regular
        _print("CND", "99", 30, MINUTE + 3 * m + s, ["9999"]),
        # a zero-volume price update: moves the close, adds no volume and no VWAP weight
        _print("CND", "98", 70, MINUTE + 4 * m + s, ["1"]),
        _print("CND", "97.5", 0, MINUTE + 4 * m + 2 * s, None),
        # across the open: pre-market prints at 09:28 and 09:29 New York, regular at 09:31
        _print("CND", "80", 100, OPEN - 2 * m, ["24"]),
        _print("CND", "81", 100, OPEN - m, None),
        _print("CND", "82", 100, OPEN + m, None),
    ]


def _price_updates() -> list[Print]:
    """Finnhub's `v = 0` forex and crypto updates, a price and no trade: a minute of them only, and
    a minute where they follow a trade, under the same rules as any print."""
    s = timedelta(seconds=1)
    m = timedelta(minutes=1)
    return [
        _print("ZVOL", "50", 0, MINUTE + 1 * s, None),
        _print("ZVOL", "52", 0, MINUTE + 2 * s, []),
        _print("ZVOL", "70", 0, MINUTE + 3 * s, ["12"]),  # an odd-lot update sets no price
        _print("ZVOL", "51", 0, MINUTE + 4 * s, ["1"]),
        _print("ZVOL", "51.5", 100, MINUTE + m + 1 * s, ["1"]),
        _print("ZVOL", "53", 0, MINUTE + m + 2 * s, None),
    ]


def _random_prints(rng: random.Random, count: int) -> list[Print]:
    codes = [*condition_table(), "777"]
    out = []
    for _ in range(count):
        at = MINUTE + timedelta(minutes=10, milliseconds=rng.randrange(0, 50 * 60_000))
        conditions = rng.choice([None, [], ["1"], ["12"], rng.sample(codes, rng.randint(1, 3))])
        volume = 0 if rng.random() < 0.05 else rng.randint(1, 400)
        out.append(_print("RND", f"{rng.uniform(50, 60):.2f}", volume, at, conditions))
    return out


def _publish(feed: Feed, prints: list[Print]) -> None:
    feed.publish(
        feed.trades_topic,
        (
            (
                symbol,
                {
                    "symbol": symbol,
                    "price": float(price),
                    "volume": int(volume),
                    "ts": ms(at),
                    "source": "test",
                    **({} if conditions is None else {"conditions": conditions}),
                },
            )
            for symbol, price, volume, at, conditions in prints
        ),
    )
    feed.drain()


def _bars(settings: Settings) -> dict[tuple[str, str, datetime], dict[str, Any]]:
    rows = fetch(settings, "select * from intermediate.int_bars order by symbol, bar_interval, bar_start")
    return {(r["symbol"], r["bar_interval"], r["bar_start"]): r for r in rows}


def _assert_bars_match_oracle(settings: Settings) -> dict[tuple[str, str, datetime], dict[str, Any]]:
    got = _bars(settings)
    expected = pandas_bars(raw_trades(settings))
    want = {(r.symbol, r.bar_interval, r.bar_start.to_pydatetime()): r for r in expected.itertuples()}
    assert set(got) == set(want), (sorted(set(got) - set(want))[:5], sorted(set(want) - set(got))[:5])
    for key, row in got.items():
        ref = want[key]
        for column in BAR_COLUMNS:
            value = getattr(ref, column)
            if column == "vwap" and value is not None:
                assert abs(row["vwap"] - value) <= abs(value) * Decimal("1e-15"), (key, row["vwap"], value)
            else:
                assert row[column] == value, (key, column, row[column], value)
    return got


def _unknown_prints(settings: Settings) -> int:
    rows = fetch(
        settings,
        "select sum(unknown_condition_prints) as n from intermediate.int_trades_aggregated_to_minute_bars",
    )
    return int(rows[0]["n"])


def _as_built_before_the_rules(settings: Settings) -> None:
    """The bars as the release before trade conditions left them: minute bars without
    vwap_volume and unknown_condition_prints, with a price wherever the minute had a print, and
    intraday bars labelled with the session at their start, never `mixed`."""
    with connect(settings, "dbt", autocommit=True) as conn:
        conn.execute(
            "alter table intermediate.int_trades_aggregated_to_minute_bars"
            " drop column vwap_volume, drop column unknown_condition_prints"
        )
        conn.execute(
            "update intermediate.int_trades_aggregated_to_minute_bars"
            " set open = coalesce(open, 1), high = coalesce(high, 1), low = coalesce(low, 1),"
            " close = coalesce(close, 1)"
        )
        conn.execute("update intermediate.int_bars set session = 'pre' where session = 'mixed'")


# (code, prints, symbols, first event time, last event time)
UnknownCode = tuple[str, int, int, datetime, datetime]


def _unknown_codes_of(trades: list[RawTrade]) -> list[UnknownCode]:
    """The oracle: per code the table does not list, the prints carrying it (once per print),
    their symbols and event-time span, from the raw rows."""
    known = condition_table()
    seen: dict[str, list[RawTrade]] = {}
    for trade in trades:
        for code in set(trade.conditions or ()) - set(known):
            seen.setdefault(code, []).append(trade)
    return sorted(
        (
            code,
            len(prints),
            len({t.symbol for t in prints}),
            min(t.event_time for t in prints),
            max(t.event_time for t in prints),
        )
        for code, prints in seen.items()
    )


def _unknown_codes_shown(settings: Settings) -> list[UnknownCode]:
    """What marts.pipeline_unknown_conditions shows, as `tickhouse status` and the exporter read it."""
    shown = unknown_conditions(settings)
    assert shown is not None
    assert shown.code_count == len(shown.codes) and shown.prints == sum(c.prints for c in shown.codes)
    rows = []
    for c in shown.codes:
        assert c.first_event_time is not None and c.last_event_time is not None
        rows.append((c.code, c.prints, c.symbols, c.first_event_time, c.last_event_time))
    return sorted(rows)


@dataclass
class Runs:
    settings: Settings
    first: dict[tuple[str, str, datetime], dict[str, Any]]
    after_late: dict[tuple[str, str, datetime], dict[str, Any]]
    full_refresh: dict[tuple[str, str, datetime], dict[str, Any]]
    unknown_prints: int
    upgraded: dict[tuple[str, str, datetime], dict[str, Any]]
    unknown_prints_refreshed_upgraded: tuple[int, int]
    # the unknown codes (shown, from the oracle) after each run
    unknown_codes: dict[str, tuple[list[UnknownCode], list[UnknownCode]]]
    exported: str  # the exporter's exposition after the late prints
    printed: str  # `tickhouse status`'s table of them
    demo_line: ConditionsApplied  # what the demo's summary says of the prints


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    with own_warehouse("dbt_conditions") as settings, own_feed(settings, ("trades",)) as feed:
        transform = Transformer(settings, tmp_path_factory.mktemp("dbt-target"))
        # the bars only: how the indicators skip a bar without a close is tested with them
        bars_only = ("--exclude", "int_technicals+")
        rng = random.Random(20251206)
        _publish(feed, _the_issue_minute() + _other_minutes() + _price_updates() + _random_prints(rng, 400))
        transform(*bars_only)
        first = _assert_bars_match_oracle(settings)
        unknown = _unknown_prints(settings)
        codes = {"first": (_unknown_codes_shown(settings), _unknown_codes_of(raw_trades(settings)))}
        # late and out of order: a regular print before the minute's first one (the new open), an
        # odd lot after its last one, and more random prints, in reverse time order
        late = [
            _print("CND", "99.5", 10, MINUTE + timedelta(milliseconds=500), ["1"]),
            _print("CND", "500", 10, MINUTE + timedelta(seconds=59), ["12"]),
            *sorted(_random_prints(rng, 100), key=lambda p: p[3], reverse=True),
        ]
        _publish(feed, late)
        transform(*bars_only)
        after_late = _assert_bars_match_oracle(settings)
        codes["after_late"] = (_unknown_codes_shown(settings), _unknown_codes_of(raw_trades(settings)))
        registry = CollectorRegistry()
        registry.register(PipelineCollector(settings))
        console = Console(record=True, width=200)
        _print_unknown_conditions(console, settings)
        exported, printed = generate_latest(registry).decode(), console.export_text()
        # every load pending again, as after a run that failed once the counts were written
        with connect(settings, "dbt", autocommit=True) as conn:
            conn.execute("delete from intermediate.int_raw_loads_transformed")
        transform(*bars_only)
        codes["loads_again"] = (_unknown_codes_shown(settings), _unknown_codes_of(raw_trades(settings)))
        transform("--full-refresh", *bars_only)
        full_refresh = _bars(settings)
        refreshed_unknown = _unknown_prints(settings)
        codes["full_refresh"] = (_unknown_codes_shown(settings), _unknown_codes_of(raw_trades(settings)))
        _as_built_before_the_rules(settings)
        transform(*bars_only)
        upgraded = _assert_bars_match_oracle(settings)
        yield Runs(
            settings, first, after_late, full_refresh, unknown, upgraded,
            (refreshed_unknown, _unknown_prints(settings)), codes, exported, printed,
            _conditions_applied(settings, ("CND", "RND"), 0, source="test"),
        )


def test_the_issue_minute_takes_prices_from_eligible_prints_and_volume_from_all(runs: Runs) -> None:
    minute = runs.first[("CND", "1m", MINUTE)]
    assert (minute["open"], minute["high"], minute["low"], minute["close"]) == (100, 102, 100, 102)
    assert minute["volume"] == 10 + 100 + 200 + 500 + 100 + 300 + 20
    # VWAP over the prints that update last and volume: 100*100 + 101*200 + 102*100 over 400
    assert minute["vwap"] == Decimal(40400) / 400
    assert minute["trade_count"] == 7


def test_a_minute_of_ineligible_prints_keeps_its_volume_with_null_prices(runs: Runs) -> None:
    bar = runs.first[("CND", "1m", MINUTE + timedelta(minutes=1))]
    assert [bar[c] for c in ("open", "high", "low", "close", "vwap")] == [None] * 5
    assert (bar["volume"], bar["trade_count"]) == (100, 2)
    # the 5m bar around it takes its prices from the priced minutes only
    five = runs.first[("CND", "5m", MINUTE)]
    assert (five["open"], five["close"]) == (100, Decimal("97.5"))
    assert (five["high"], five["low"]) == (103, Decimal("97.5"))


def test_high_low_only_and_volume_less_codes(runs: Runs) -> None:
    bar = runs.first[("CND", "1m", MINUTE + timedelta(minutes=2))]
    assert (bar["open"], bar["close"], bar["high"], bar["low"]) == (None, None, 103, 103)
    assert bar["volume"] == 50 and bar["trade_count"] == 2


def test_unknown_codes_count_as_regular_and_are_counted(runs: Runs) -> None:
    bar = runs.first[("CND", "1m", MINUTE + timedelta(minutes=3))]
    assert (bar["open"], bar["close"], bar["volume"]) == (99, 99, 30)
    assert runs.unknown_prints >= 1


def test_a_zero_volume_update_moves_the_close_and_adds_no_volume_or_weight(runs: Runs) -> None:
    bar = runs.first[("CND", "1m", MINUTE + timedelta(minutes=4))]
    assert (bar["open"], bar["close"], bar["low"]) == (98, Decimal("97.5"), Decimal("97.5"))
    assert (bar["volume"], bar["vwap"], bar["trade_count"]) == (70, 98, 2)


def test_a_minute_of_zero_volume_updates_has_prices_but_no_volume_or_vwap(runs: Runs) -> None:
    only_updates = runs.first[("ZVOL", "1m", MINUTE)]
    assert [only_updates[c] for c in ("open", "high", "low", "close")] == [50, 52, 50, 51]
    assert (only_updates["volume"], only_updates["vwap"], only_updates["trade_count"]) == (0, None, 4)
    after_a_trade = runs.first[("ZVOL", "1m", MINUTE + timedelta(minutes=1))]
    assert (after_a_trade["open"], after_a_trade["close"], after_a_trade["high"]) == (
        Decimal("51.5"), 53, 53)
    assert (after_a_trade["volume"], after_a_trade["vwap"], after_a_trade["trade_count"]) == (
        100, Decimal("51.5"), 2)
    for interval in ("5m", "15m", "1h"):
        bar = runs.first[("ZVOL", interval, MINUTE)]
        assert [bar[c] for c in ("open", "high", "low", "close")] == [50, 53, 50, 53], interval
        # VWAP weighs volume only: the updates' prices are not in it
        assert (bar["volume"], bar["vwap"], bar["trade_count"]) == (100, Decimal("51.5"), 6), interval


def test_a_bucket_across_the_open_is_labelled_mixed(runs: Runs) -> None:
    hour = runs.first[("CND", "1h", OPEN - timedelta(minutes=30))]
    assert hour["session"] == "mixed" and hour["volume"] == 300
    assert runs.first[("CND", "15m", OPEN - timedelta(minutes=15))]["session"] == "pre"
    assert runs.first[("CND", "15m", OPEN)]["session"] == "regular"
    assert runs.first[("CND", "1m", OPEN - timedelta(minutes=1))]["session"] == "pre"
    # the Form-T print is pre-market volume without a price
    assert runs.first[("CND", "1m", OPEN - timedelta(minutes=2))]["open"] is None


def test_late_and_out_of_order_prints_move_open_but_not_close(runs: Runs) -> None:
    bar = runs.after_late[("CND", "1m", MINUTE)]
    assert (bar["open"], bar["close"], bar["high"]) == (Decimal("99.5"), 102, 102)
    assert bar["volume"] == 1230 + 10 + 10


def test_full_refresh_equals_the_incremental_runs(runs: Runs) -> None:
    columns = ("open", "high", "low", "close", "volume", "vwap", "trade_count", "session", "trading_date")
    assert set(runs.full_refresh) == set(runs.after_late)
    for key, row in runs.after_late.items():
        assert {c: row[c] for c in columns} == {c: runs.full_refresh[key][c] for c in columns}, key


def test_a_warehouse_built_before_the_rules_is_rebuilt_by_the_next_incremental_run(runs: Runs) -> None:
    columns = ("open", "high", "low", "close", "volume", "vwap", "trade_count", "session", "trading_date")
    assert set(runs.upgraded) == set(runs.full_refresh)
    for key, row in runs.full_refresh.items():
        assert {c: row[c] for c in columns} == {c: runs.upgraded[key][c] for c in columns}, key
    refreshed, upgraded = runs.unknown_prints_refreshed_upgraded
    assert upgraded == refreshed >= runs.unknown_prints >= 1


def test_unknown_codes_are_shown_per_code_after_every_run(runs: Runs) -> None:
    for run, (shown, expected) in runs.unknown_codes.items():
        assert shown == expected, run
    codes = {code for code, *_ in runs.unknown_codes["after_late"][0]}
    assert {"9999", "777"} <= codes
    nine = next(row for row in runs.unknown_codes["first"][0] if row[0] == "9999")
    assert nine[1:3] == (1, 1)
    # no print carries two unknown codes here: the per-code prints add up to the minute bars' count
    assert sum(prints for _, prints, *_ in runs.unknown_codes["first"][0]) == runs.unknown_prints


def test_status_and_the_exporter_name_the_unknown_codes(runs: Runs) -> None:
    shown = {code: prints for code, prints, *_ in runs.unknown_codes["after_late"][0]}
    assert f"tickhouse_unknown_condition_codes {float(len(shown))}" in runs.exported
    for code, prints in shown.items():
        assert f'tickhouse_unknown_condition_prints_total{{code="{code}"}} {float(prints)}' in runs.exported
        assert f'tickhouse_unknown_condition_last_seen_timestamp_seconds{{code="{code}"}}' in runs.exported
    assert f"Trade-condition codes not in the table ({len(shown)} codes" in runs.printed
    for code, prints in shown.items():
        assert re.search(rf"^.*\b{code}\b\s*│\s*{prints:,}\s*│", runs.printed, re.M), runs.printed


def test_the_demo_summary_counts_the_prints_kept_out_of_the_prices(runs: Runs) -> None:
    table = condition_table()
    with TRADE_CONDITIONS_CSV.open(newline="") as handle:
        names = {row["code"]: row["name"] for row in csv.DictReader(handle)}
    prints = [t for t in raw_trades(runs.settings) if t.symbol in ("CND", "RND")]
    without_price: dict[str, int] = {}
    for trade in prints:
        eligibility = eligibility_of(trade.conditions, table)
        if not eligibility.last and not eligibility.high_low:
            codes = {c for c in trade.conditions or () if c in table and not table[c].last}
            key = " + ".join(sorted({names[c] for c in codes}))
            without_price[key] = without_price.get(key, 0) + 1
    line = runs.demo_line
    assert (line.prints, line.without_price) == (len(prints), sum(without_price.values()))
    assert line.by_condition == without_price
    assert line.by_condition["Odd Lot Trade"] > 0 and line.by_condition["Average Price Trade"] > 0
    summary = line.summary()
    assert summary.startswith(f"{line.without_price:,} of {len(prints):,} kept out of open/high/low/close (")
    assert f"Odd Lot Trade {without_price['Odd Lot Trade']:,}" in summary
