"""Candle files for `tickhouse backfill --source file`, and the command's usage errors (no services:
every case here stops before anything would be published)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from producer.backfill import BackfillSummary, check_file
from producer.backfill_cli import main
from producer.candle_file import BadRow, CandleFileError, read_candles
from tickhouse.schemas import Candle, parse_candle, to_json

pytestmark = pytest.mark.unit

NOW = 1_800_000_000_000
GOOD_CSV = (
    "symbol,resolution,bar_start,open,high,low,close,volume\n"
    "AAPL,D,951868800000,118.56,132.06,118.5,130.31,9616100\n"
    "IBM,60,951919200000,102,105.5,100.0625,100.25,10807800\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_csv_rows_become_the_candles_the_drain_will_accept(tmp_path: Path) -> None:
    items = list(read_candles(write(tmp_path, "c.csv", GOOD_CSV), NOW))
    assert all(isinstance(i, Candle) for i in items)
    first, second = items
    assert isinstance(first, Candle) and isinstance(second, Candle)
    assert (first.symbol, first.resolution, first.bar_start, first.source) == (
        "AAPL", "D", 951868800000, "file")
    assert str(first.high) == "132.06" and second.open == 102 and str(second.low) == "100.0625"
    # exactly what the drain parses back
    assert parse_candle(to_json(first), NOW) == first


def test_columns_in_any_order_with_source_and_gzip(tmp_path: Path) -> None:
    text = ("volume,close,low,high,open,bar_start,resolution,symbol,source\n"
            "5,10,9,11,10,1000,W,BRK.B,vendor-x\n"
            "5,10,9,11,10,2000,W,BRK.B,\n")
    items = list(read_candles(write(tmp_path, "c.csv.gz", text), NOW))
    assert [(c.symbol, c.resolution, c.bar_start, c.source) for c in items  # type: ignore[union-attr]
            ] == [("BRK.B", "W", 1000, "vendor-x"), ("BRK.B", "W", 2000, "file")]


def test_jsonl_rows(tmp_path: Path) -> None:
    lines = [
        {"symbol": "MSFT", "resolution": "M", "bar_start": 946684800000, "open": 58.69,
         "high": 59.31, "low": 42.5, "close": 49.94, "volume": 1000, "source": "s"},
        {"symbol": "MSFT", "resolution": "M", "bar_start": 949363200000, "open": 49.5},
    ]
    text = "".join(json.dumps(x) + "\n" for x in lines) + "\n[1]\n{oops\n"
    items = list(read_candles(write(tmp_path, "c.jsonl", text), NOW))
    assert isinstance(items[0], Candle) and str(items[0].high) == "59.31"
    assert [str(i) for i in items[1:]] == [
        "line 2: high: missing required field",
        "line 4: not a JSON object: [1]",
        "line 5: not valid JSON: Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1)",
    ]


BAD_CSV = (
    "symbol,resolution,bar_start,open,high,low,close,volume\n"
    "AAPL,D,951868800000,118.56,132.06,118.5,130.31,9616100\n"   # 2: good
    "AAPL,D,951955200000,127.0,120.0,120.69,122.0,2779100\n"     # 3: high below low
    "AAPL,2,951955200000,127.0,127.94,120.69,122.0,2779100\n"    # 4: resolution
    "AAPL,D,951955200000,12x,127.94,120.69,122.0,2779100\n"      # 5: not a number
    "AAPL,D,951955200000,127.0,127.94,120.69,122.0\n"            # 6: a column short
    "AAPL,D,9519552000000000,127,127.94,120.69,122,2779100\n"    # 7: microseconds
    "\n"                                                         # 8: blank, ignored
    "A APL,D,951955200000,127.0,127.94,120.69,122.0,2779100\n"   # 9: symbol
    "AAPL,D,951955200000,127.0,127.94,120.69,130.0,-5\n"         # 10: the first problem wins
    "AAPL,D,951955200000,127.0,127.94,120.69,130.0,5\n"          # 11: close above high
)


def test_every_bad_row_is_named_with_its_line_field_and_value(tmp_path: Path) -> None:
    items = list(read_candles(write(tmp_path, "bad.csv", BAD_CSV), NOW))
    assert isinstance(items[0], Candle)
    assert [str(i) for i in items[1:]] == [
        "line 3: low 120.69 is above high 120.0",
        'line 4: resolution: must be one of 1, 5, 15, 30, 60, D, W, M, got "2"',
        'line 5: open: must be a JSON number, got string "12x"',
        "line 6: expected 8 columns as in the header, got 7: ['AAPL', 'D', '951955200000', "
        "'127.0', '127.94', '120.69', '122.0']",
        "line 7: bar_start: 9519552000000000 is more than one day in the future (now is "
        "1800000000000); is it in microseconds or nanoseconds instead of milliseconds?",
        'line 9: symbol: must be 1-32 chars of A-Z a-z 0-9 . : - _ / ^ =, got "A APL"',
        "line 10: volume: must be >= 0, got -5",
        "line 11: close 130.0 is outside the candle's range [low 120.69, high 127.94]",
    ]
    assert all(isinstance(i, BadRow) for i in items[1:])


def test_check_file_counts_all_and_lists_at_most_max_errors(tmp_path: Path) -> None:
    summary = BackfillSummary(source="file", topic="t")
    valid = check_file(write(tmp_path, "bad.csv", BAD_CSV), summary, max_errors=3, now=NOW)
    assert (valid, summary.rows, summary.bad_row_count, len(summary.bad_rows)) == (1, 9, 8, 3)
    assert summary.exit_code == 4


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.txt", GOOD_CSV, "unknown format"),
        ("c.csv", "symbol,resolution,bar_start,open,high,low\n", "the CSV header lacks close, volume"),
        ("missing.csv", None, "does not exist"),
        ("c.csv.gz", None, "cannot be read"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, text: str | None, message: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    elif name.endswith(".gz"):
        path.write_bytes(b"not gzip at all")
    with pytest.raises(CandleFileError, match=message):
        list(read_candles(path, NOW))


def test_a_file_with_bad_rows_publishes_nothing_and_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # an unreachable broker: had the command tried to publish, it would exit 1, not 4
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    path = write(tmp_path, "bad.csv", BAD_CSV)
    assert main(["--source", "file", "--file", str(path), "--max-errors", "2"]) == 4
    err = capsys.readouterr().err
    assert f"{path}: line 3: low 120.69 is above high 120.0" in err
    assert 'line 4: resolution: must be one of' in err
    assert "line 5" not in err and "... and 6 more invalid rows" in err
    assert "9 rows, 1 valid, 8 invalid" in err
    assert "nothing was published" in err and "(exit 4" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "finnhub", "--from", "2024-01-01"], "FINNHUB_API_KEY is not set"),
        (["--source", "finnhub", "--symbols", "AAPL"], "needs --from YYYY-MM-DD"),
        (["--source", "finnhub", "--from", "2024-02-01", "--to", "2024-01-01"],
         "--from 2024-02-01 is after --to 2024-01-01"),
        (["--source", "finnhub", "--symbols", "A B", "--from", "2024-01-01"],
         "'A B' is not a valid symbol"),
        (["--source", "file"], "--source file needs --file PATH"),
        (["--source", "file", "--file", "nope.csv"], "does not exist"),
    ],
)
def test_usage_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FINNHUB_API_KEY", "" if "FINNHUB" in message else "k")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [["--source", "finnhub", "--from", "2024-1-1"], ["--source", "finnhub", "--resolution", "2"],
     ["--source", "ftp"], []],
)
def test_argument_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert "tickhouse backfill" in capsys.readouterr().err


def test_registered_in_the_tickhouse_command(capsys: pytest.CaptureFixture[str]) -> None:
    from ops.cli import main as tickhouse

    assert tickhouse(["backfill", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--resolution {1,5,15,30,60,D,W,M}" in out and "Exit codes: 0 done" in out
