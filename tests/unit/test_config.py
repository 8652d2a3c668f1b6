"""Configuration: defaults per CONTRACT §2, precedence, and errors that name the bad variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickhouse.config import ConfigError, load_settings, read_env_file


def _settings(tmp_path: Path, **env: str):
    base = {"TICKHOUSE_STATE_DIR": str(tmp_path / "state")}
    return load_settings({**base, **env}, project_root=tmp_path)


def test_defaults_match_the_contract(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.topics == ("market.trades", "market.quotes", "market.alerts", "market.candles")
    assert (s.postgres_host, s.postgres_port, s.postgres_db, s.postgres_user) == (
        "127.0.0.1",
        5432,
        "tickhouse",
        "tickhouse",
    )
    assert s.finnhub_ws_url == "wss://ws.finnhub.io"
    assert s.finnhub_api_url == "https://api.finnhub.io/api/v1"
    assert s.symbols == ("AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "NVDA", "META", "NFLX", "AMD", "INTC")
    assert s.airflow_url == "http://127.0.0.1:8080"
    assert s.finnhub_api_key == ""


def test_environment_beats_dotenv_beats_generated_secrets(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "secrets.env").write_text("POSTGRES_PASSWORD=generated\nDBT_PASSWORD=gen-dbt\n")
    (tmp_path / ".env").write_text("# comment\nexport POSTGRES_PASSWORD='from-dotenv'\nSYMBOLS=IBM\n")
    s = _settings(tmp_path)
    assert (s.postgres_password, s.dbt_password, s.symbols) == ("from-dotenv", "gen-dbt", ("IBM",))
    s = _settings(tmp_path, POSTGRES_PASSWORD="from-env")
    assert s.postgres_password == "from-env"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost"),
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:99999"),
        ("POSTGRES_PORT", "54x2"),
        ("POSTGRES_PORT", "0"),
        ("AIRFLOW_PORT", "70000"),
        ("TRADES_TOPIC", "market trades"),
        ("SYMBOLS", "AAPL,DROP TABLE"),
        ("SYMBOLS", " , "),
        ("FINNHUB_WS_URL", "https://ws.finnhub.io"),
        ("FINNHUB_API_URL", "ftp://x"),
        ("POSTGRES_DB", "Tick-House"),
        ("TOPIC_PARTITIONS", "0"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        _settings(tmp_path, **{variable: value})
    assert variable in str(err.value)
    offending = value.split(",")[-1].strip()
    assert (offending and offending in str(err.value)) or "empty" in str(err.value)


def test_env_file_syntax_errors_point_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("GOOD=1\nthis is not an assignment\n")
    with pytest.raises(ConfigError, match=r"\.env:2"):
        read_env_file(path)


def test_conninfo_quotes_passwords(tmp_path: Path) -> None:
    s = _settings(tmp_path, BI_READER_PASSWORD="it's a secret")
    assert "password='it\\'s a secret'" in s.conninfo("bi_reader")
    assert "user=bi_reader" in s.conninfo("bi_reader")
    with pytest.raises(ValueError, match="unknown warehouse role"):
        s.conninfo("root")
