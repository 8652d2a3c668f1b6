"""The Snowflake indicator table function (`ta_indicators`, JavaScript) run under Node.js.

fakesnow cannot execute JavaScript functions, so the body of the function that
`snowflake__create_technicals_functions` creates is rendered from the macro file and run by
udtf_harness.js with Snowflake's table-function calling convention (a fresh handler per
partition, upper-case arguments, SQL NULL as undefined, rows written through rowWriter).
Its rows are checked against TA-Lib, for a whole series and for a series resumed from the
`ta_state` the function wrote on an earlier bar (what an incremental int_technicals does).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import pytest

from tests.integration.dbt.oracles import talib_indicators
from tickhouse.config import PROJECT_ROOT

MACROS = PROJECT_ROOT / "dbt_project" / "macros" / "technicals" / "create_technicals_functions.sql"
HARNESS = Path(__file__).with_name("udtf_harness.js")
OUTPUTS = ("sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "macd", "macd_signal", "macd_hist",
           "rsi_14")
REL = 1e-13

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")


def rendered_create_statement() -> str:
    """The macro's SQL as dbt renders it for a snowflake target with the project's defaults."""
    env = jinja2.Environment(extensions=["jinja2.ext.do"])
    template = env.from_string(MACROS.read_text() + "{{ snowflake__create_technicals_functions() }}")
    return template.render(
        target={"type": "snowflake", "database": "TICKHOUSE"},
        var=lambda name, default=None: default,
        # dbt's `return` ends the macro with its argument as the value
        **{"return": lambda value: value},
    )


def function_body() -> str:
    sql = rendered_create_statement()
    match = re.search(r"language javascript\s+as\s+\$\$(.*?)\$\$", sql, re.S | re.I)
    assert match, "no `language javascript as $$ ... $$` in the rendered macro"
    return match.group(1)


def run_udtf(partitions: Sequence[Sequence[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    request = {"body": function_body(), "partitions": partitions, "timestamp_columns": ["BAR_START"]}
    done = subprocess.run(["node", str(HARNESS)], input=json.dumps(request), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result: list[list[dict[str, Any]]] = json.loads(done.stdout)
    return result


def input_rows(closes: Sequence[float], seed_state: list[float] | None = None,
               first: int = 0) -> list[dict[str, Any]]:
    """int_technicals' `recomputed` rows for bars first.. of one series: lags over the whole
    series, the seed state on every row (as the left join to the prior state gives it)."""
    start = datetime(2020, 1, 2, tzinfo=UTC)

    def lag(index: int, n: int) -> float | None:
        return closes[index - n] if index >= n else None

    return [
        {
            "SYMBOL": "AAPL",
            "BAR_INTERVAL": "1d",
            "BAR_START": (start + timedelta(days=index)).isoformat(),
            "SEED_STATE": seed_state,
            "CLOSE": closes[index],
            "CLOSE_LAG_19": lag(index, 19),
            "CLOSE_LAG_49": lag(index, 49),
            "CLOSE_LAG_199": lag(index, 199),
        }
        for index in range(first, len(closes))
    ]


def mismatches(rows: Sequence[dict[str, Any]], closes: Sequence[float], first: int = 0) -> list[str]:
    """Rows that differ from TA-Lib over the whole series: NULL where TA-Lib has NaN, else
    within REL relative."""
    expected = talib_indicators(closes)
    problems = []
    for offset, row in enumerate(rows):
        index = first + offset
        for name in OUTPUTS:
            want, got = float(expected[name][index]), row[name.upper()]
            if np.isnan(want):
                if got is not None:
                    problems.append(f"{name}[{index}]: TA-Lib NaN, got {got!r}")
            elif got is None:
                problems.append(f"{name}[{index}]: TA-Lib {want!r}, got NULL")
            elif abs(got - want) > REL * abs(want):
                problems.append(f"{name}[{index}]: TA-Lib {want!r}, got {got!r}")
    return problems


def random_walk(seed: int, bars: int) -> list[float]:
    rng = random.Random(seed)
    price, closes = 100.0, []
    for _ in range(bars):
        price = max(0.01, price * (1 + rng.gauss(0, 0.02)))
        closes.append(round(price, 4))
    return closes


def bundled_daily_closes(symbol: str) -> list[float]:
    candles = pd.read_csv(PROJECT_ROOT / "data" / "daily_candles.csv.gz")
    series = candles[candles["symbol"] == symbol].sort_values("bar_start")
    return [float(c) for c in series["close"]]


SERIES = {
    "random walk": random_walk(7, 400),
    # flat stretches: RSI's zero-movement branch and equal closes in every sum
    "with flat runs": [100.0] * 30 + random_walk(8, 150) + [55.5] * 40 + random_walk(9, 150),
    "bundled IBM daily closes": bundled_daily_closes("IBM"),
}


@pytest.mark.parametrize("closes", SERIES.values(), ids=SERIES.keys())
def test_whole_series_equals_talib(closes: list[float]) -> None:
    assert len(closes) >= 300
    [rows] = run_udtf([input_rows(closes)])

    assert len(rows) == len(closes)
    assert [row["BAR_NUMBER"] for row in rows] == list(range(1, len(closes) + 1))
    assert mismatches(rows, closes) == []


@pytest.mark.parametrize("resume_at", [1, 13, 20, 26, 34, 200, 350])
def test_resumed_from_stored_state_equals_talib(resume_at: int) -> None:
    closes = SERIES["random walk"]
    [whole] = run_udtf([input_rows(closes)])
    # the state column as Snowflake stores it (an ARRAY of doubles) and reads it back
    stored_state = json.loads(json.dumps(whole[resume_at - 1]["TA_STATE"]))
    assert len(stored_state) == 11

    [resumed] = run_udtf([input_rows(closes, stored_state, first=resume_at)])

    assert [row["BAR_NUMBER"] for row in resumed] == list(range(resume_at + 1, len(closes) + 1))
    assert mismatches(resumed, closes, first=resume_at) == []
    # bit for bit the rows of the whole run
    assert resumed == whole[resume_at:]


def test_partitions_do_not_share_state() -> None:
    a, b = SERIES["random walk"], SERIES["with flat runs"]
    first, second = run_udtf([input_rows(a), input_rows(b)])

    assert mismatches(first, a) == []
    assert mismatches(second, b) == []
    assert second[0]["BAR_NUMBER"] == 1


def test_output_columns_are_the_declared_table() -> None:
    declared = re.search(r"returns table \((.*?)\)\s*language", rendered_create_statement(), re.S)
    assert declared
    columns = [line.split()[0].upper() for line in declared.group(1).split(",") if line.strip()]
    [rows] = run_udtf([input_rows(SERIES["random walk"][:40])])

    assert all(sorted(row) == sorted(columns) for row in rows)
    assert rows[0]["SYMBOL"] == "AAPL" and rows[0]["BAR_INTERVAL"] == "1d"
    assert rows[0]["BAR_START"] == "2020-01-02T00:00:00.000Z"
