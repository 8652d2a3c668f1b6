"""Configuration: defaults per docs/interfaces/configuration.md, precedence, and errors that name the bad
variable."""

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


def test_kafka_identity_of_a_process(tmp_path: Path) -> None:
    """Issue 14: no login and PLAINTEXT by default (a user's own cluster); the local stack's admin
    where its secrets are read; a service's own principal when the stack gives it KAFKA_USERNAME."""
    from tickhouse.config import kafka_security

    base = {"TICKHOUSE_STATE_DIR": str(tmp_path / "state"), "TICKHOUSE_ENV_FILE": str(tmp_path / ".env")}
    assert kafka_security(base) == {}
    assert _settings(tmp_path).kafka_security_protocol == "PLAINTEXT"
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "secrets.env").write_text("KAFKA_ADMIN_PASSWORD=a1\nKAFKA_DRAIN_PASSWORD=d1\n")
    assert kafka_security(base) == {
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "admin", "sasl.password": "a1",
    }
    # a principal's name alone takes its generated password
    assert kafka_security({**base, "KAFKA_USERNAME": "drain"})["sasl.password"] == "d1"
    # a process started by the stack: its own login, and the secrets file is not read
    own = {**base, "KAFKA_USERNAME": "alerts", "KAFKA_PASSWORD": "x", "TICKHOUSE_NO_SECRETS_FILE": "1"}
    assert kafka_security(own)["sasl.username"] == "alerts"
    # a user's secured cluster
    ssl = kafka_security({**base, "KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_USERNAME": "me",
                          "KAFKA_PASSWORD": "pw", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                          "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem"})
    assert ssl == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                   "sasl.username": "me", "sasl.password": "pw", "ssl.ca.location": "/etc/ca.pem"}
    # an unsecured cluster of the user's in a checkout with local-stack secrets
    assert kafka_security({**base, "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}) == {}
    with pytest.raises(ConfigError, match="KAFKA_SECURITY_PROTOCOL"):
        _settings(tmp_path, KAFKA_SECURITY_PROTOCOL="TLS")
    with pytest.raises(ConfigError, match="KAFKA_USERNAME and KAFKA_PASSWORD"):
        kafka_security({**base, "TICKHOUSE_NO_SECRETS_FILE": "1", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"})


def test_a_local_login_goes_to_the_login_listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/interfaces/configuration.md's KAFKA_BOOTSTRAP_SERVERS stays the address of clients without a
    login; a local stack's login (its admin, a principal named alone, a service started with
    KAFKA_LOGIN_SERVERS) connects at KAFKA_LOGIN_PORT of the same host; a user's own secured cluster at its
    bootstrap."""
    from tickhouse.config import kafka_client_settings

    def kafka_login_servers(env: dict[str, str]) -> str:
        """Where a client told the configured bootstrap connects to log in ("" = that bootstrap)."""
        return kafka_client_settings(env["KAFKA_BOOTSTRAP_SERVERS"], env).get("bootstrap.servers", "")
    from tickhouse.kafka import client_config

    base = {"TICKHOUSE_STATE_DIR": str(tmp_path / "state"), "TICKHOUSE_ENV_FILE": str(tmp_path / ".env"),
            "KAFKA_BOOTSTRAP_SERVERS": "10.0.0.5:7092"}
    assert kafka_login_servers(base) == ""
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "secrets.env").write_text("KAFKA_ADMIN_PASSWORD=a1\nKAFKA_DRAIN_PASSWORD=d1\n")
    assert kafka_login_servers(base) == "10.0.0.5:9094"
    assert kafka_login_servers({**base, "KAFKA_LOGIN_PORT": "7094"}) == "10.0.0.5:7094"
    assert kafka_login_servers({**base, "KAFKA_USERNAME": "drain"}) == "10.0.0.5:9094"
    # an unsecured cluster of the user's: no login, its bootstrap
    assert kafka_login_servers({**base, "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}) == ""
    # a user's own login on their secured cluster: where they pointed KAFKA_BOOTSTRAP_SERVERS
    mine = {**base, "KAFKA_USERNAME": "me", "KAFKA_PASSWORD": "pw", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    assert kafka_login_servers(mine) == ""
    # a service the stack started: told where to log in
    service = {**base, "TICKHOUSE_NO_SECRETS_FILE": "1", "KAFKA_USERNAME": "alerts", "KAFKA_PASSWORD": "x",
               "KAFKA_LOGIN_SERVERS": "10.0.0.5:9094"}
    assert kafka_login_servers(service) == "10.0.0.5:9094"
    with pytest.raises(ConfigError, match="KAFKA_LOGIN_PORT"):
        _settings(tmp_path, KAFKA_LOGIN_PORT="70000")
    with pytest.raises(ConfigError, match="KAFKA_ANONYMOUS_ACCESS"):
        _settings(tmp_path, KAFKA_ANONYMOUS_ACCESS="everything")

    # every client config: a login connects at the login listener, a PLAINTEXT override does not
    for name in ("KAFKA_USERNAME", "KAFKA_PASSWORD", "KAFKA_SECURITY_PROTOCOL", "KAFKA_LOGIN_SERVERS",
                 "KAFKA_LOGIN_PORT", "KAFKA_ADMIN_PASSWORD", "TICKHOUSE_NO_SECRETS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in base.items():
        monkeypatch.setenv(name, value)
    config = client_config("10.0.0.5:7092")
    assert config["bootstrap.servers"] == "10.0.0.5:9094" and config["sasl.username"] == "admin"
    plain = client_config("10.0.0.5:7092", **{"security.protocol": "PLAINTEXT"})
    assert plain["bootstrap.servers"] == "10.0.0.5:7092"
    # another address than the configured one (a test's unreachable broker) is taken as it is
    assert client_config("127.0.0.1:1")["bootstrap.servers"] == "127.0.0.1:1"


def test_clients_without_a_login_may_publish_and_read_market_data_only(tmp_path: Path) -> None:
    """The ACLs of ANONYMOUS (the PUBLIC listener): write and read the market topics, read alerts,
    any group but the services' (a DENY on `tickhouse-*`); none with KAFKA_ANONYMOUS_ACCESS=none."""
    from confluent_kafka.admin import AclOperation, AclPermissionType  # type: ignore[attr-defined]

    from ops.stack.kafka_security import ANONYMOUS, acl_table, bindings

    settings = _settings(tmp_path)
    grants = acl_table(settings)[ANONYMOUS]
    by_name = {g.name: g for g in grants}
    for topic in ("market.trades", "market.quotes", "market.candles"):
        assert set(by_name[topic].operations) == {
            AclOperation.WRITE, AclOperation.READ, AclOperation.DESCRIBE
        }
    assert set(by_name["market.alerts"].operations) == {AclOperation.READ, AclOperation.DESCRIBE}
    assert by_name["tickhouse-"].denied and by_name["tickhouse-"].prefixed
    anonymous = [b for b in bindings(settings) if b.principal == f"User:{ANONYMOUS}"]
    assert not any(b.operation in (AclOperation.DELETE, AclOperation.ALTER, AclOperation.CREATE,
                                   AclOperation.ALL) for b in anonymous)
    assert not any(b.name == "market.alerts" and b.operation == AclOperation.WRITE for b in anonymous)
    assert any(b.permission_type == AclPermissionType.DENY for b in anonymous)
    assert ANONYMOUS not in acl_table(_settings(tmp_path, KAFKA_ANONYMOUS_ACCESS="none"))
