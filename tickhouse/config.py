"""Configuration: environment variables (docs/interfaces/configuration.md), validated once at start.

Precedence, highest first: the process environment, a `.env` file in the project root (or the
file TICKHOUSE_ENV_FILE names: `make test` points it at its own stack's), the credentials that setup
generated (`<state dir>/secrets.env`), the defaults below.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tickhouse.errors import TickhouseError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SYMBOLS = "AAPL,MSFT,GOOGL,AMZN,TSLA,NVDA,META,NFLX,AMD,INTC"
DEFAULT_DRAIN_GROUP = "tickhouse-drain"

# docs/interfaces/kafka-messages.md: 1-32 chars of A-Z a-z 0-9 . : - _ / ^ =
SYMBOL = r"[A-Za-z0-9.:_/^=-]{1,32}"
SYMBOL_PATTERN = re.compile(rf"^{SYMBOL}$")
# a comma-separated list of symbols, as the DAGs' `symbols` params take it (JSON Schema regex)
SYMBOL_LIST_PATTERN = rf"^\s*{SYMBOL}(\s*,\s*{SYMBOL})*\s*$"
_TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")
_HOST_PORT_PATTERN = re.compile(r"^[A-Za-z0-9.\-]+:(\d{1,5})$")
# set to "1" in a process's environment: do not read `<state dir>/secrets.env`
NO_SECRETS_FILE = "TICKHOUSE_NO_SECRETS_FILE"
_ROLE_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ConfigError(TickhouseError, ValueError):
    """A configuration variable has a value Tickhouse cannot use."""


KAFKA_DEFAULT_MECHANISM = "SCRAM-SHA-256"
KAFKA_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
KAFKA_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
# the local stack's Kafka principals; KAFKA_<NAME>_PASSWORD holds each one's password
KAFKA_PRINCIPALS = ("admin", "producer", "drain", "alerts", "monitor")
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
# the local broker listens twice: KAFKA_BOOTSTRAP_SERVERS (docs/interfaces/configuration.md) for clients
# without a login, which its ACLs let publish and read market data only, and KAFKA_LOGIN_PORT for SCRAM logins
DEFAULT_KAFKA_LOGIN_PORT = "9094"
# KAFKA_BROKERS > 1 (the local stack as a cluster): broker n listens on each of broker 1's ports
# (KAFKA_BOOTSTRAP_SERVERS, KAFKA_LOGIN_PORT, KAFKA_CONTROLLER_PORT) plus this step times n - 1
KAFKA_BROKER_PORT_STEP = 10
# the local broker's garbage collector (KAFKA_JVM_PERFORMANCE_OPTS, the variable Kafka's own scripts read)
KAFKA_JVM_PERFORMANCE_OPTS = "-XX:+UseG1GC -XX:MaxGCPauseMillis=20"
# what a client without a login may do on the local broker: `market` (publish and read the market
# topics, read alerts: docs/interfaces/kafka-messages.md's interface) or `none`
KAFKA_ANONYMOUS_CHOICES = ("market", "none")


def kafka_password_variable(principal: str) -> str:
    """The variable holding a local-stack Kafka principal's password: KAFKA_ADMIN_PASSWORD, ..."""
    return f"KAFKA_{principal.upper()}_PASSWORD"


def _kafka_identity(env: Mapping[str, str]) -> dict[str, Any]:
    """Who this process is on Kafka. KAFKA_USERNAME/KAFKA_PASSWORD when set (a user's own cluster,
    or a service the local stack started with its own principal); otherwise, where the local
    stack's secrets are readable (the user's own `tickhouse` commands), its admin principal.
    The protocol defaults to SASL_PLAINTEXT when there is a username, PLAINTEXT when not."""
    username = env.get("KAFKA_USERNAME", "").strip()
    password = env.get("KAFKA_PASSWORD", "")
    # a login of the local stack (its admin by default, or a principal named without a password):
    # it logs in at the local broker's login listener, KAFKA_LOGIN_PORT on the bootstrap host
    local_login = False
    if not username and env.get(kafka_password_variable("admin")):
        username, local_login = "admin", True
    if username and not password and username in KAFKA_PRINCIPALS:
        password = env.get(kafka_password_variable(username), "")
        local_login = True
    protocol = env.get("KAFKA_SECURITY_PROTOCOL", "").strip().upper() or (
        "SASL_PLAINTEXT" if username else "PLAINTEXT"
    )
    if protocol not in KAFKA_PROTOCOLS:
        raise ConfigError(
            f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(KAFKA_PROTOCOLS)}"
        )
    mechanism = env.get("KAFKA_SASL_MECHANISM", "").strip().upper() or KAFKA_DEFAULT_MECHANISM
    if mechanism not in KAFKA_MECHANISMS:
        raise ConfigError(
            f"KAFKA_SASL_MECHANISM={mechanism!r} is not one of {', '.join(KAFKA_MECHANISMS)}"
        )
    login_port = _port(
        "KAFKA_LOGIN_PORT", env.get("KAFKA_LOGIN_PORT", "").strip() or DEFAULT_KAFKA_LOGIN_PORT
    )
    login_servers = env.get("KAFKA_LOGIN_SERVERS", "").strip()
    if login_servers:
        login_servers = _bootstrap("KAFKA_LOGIN_SERVERS", login_servers)
    elif local_login:
        login_servers = ",".join(
            f"{host}:{port}" for host, port in broker_login_addresses(_broker_addresses(env), login_port)
        )
    anonymous = env.get("KAFKA_ANONYMOUS_ACCESS", "").strip().lower() or "market"
    if anonymous not in KAFKA_ANONYMOUS_CHOICES:
        raise ConfigError(
            f"KAFKA_ANONYMOUS_ACCESS={anonymous!r} is not one of {', '.join(KAFKA_ANONYMOUS_CHOICES)}"
        )
    return {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": mechanism,
        "kafka_username": username,
        "kafka_password": password,
        "kafka_login_port": login_port,
        "kafka_login_servers": login_servers,
        "kafka_anonymous_access": anonymous,
    }


def _servers(raw: str) -> list[str]:
    return [s.strip() for s in raw.split(",") if s.strip()]


def _broker_count(env: Mapping[str, str]) -> int:
    return _positive_int("KAFKA_BROKERS", env.get("KAFKA_BROKERS", "").strip() or "1")


def _broker_addresses(env: Mapping[str, str]) -> str:
    """KAFKA_BOOTSTRAP_SERVERS with every broker of the local stack in it: given one address and
    KAFKA_BROKERS=n, the n brokers' addresses (ports KAFKA_BROKER_PORT_STEP apart), so that a client
    still finds the cluster when any one broker is down."""
    bootstrap = _bootstrap(
        "KAFKA_BOOTSTRAP_SERVERS", env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or DEFAULT_KAFKA_BOOTSTRAP
    )
    brokers = _broker_count(env)
    servers = _servers(bootstrap)
    if brokers == 1 or len(servers) == brokers:
        return bootstrap
    if len(servers) != 1:
        raise ConfigError(
            f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r} lists {len(servers)} brokers but "
            f"KAFKA_BROKERS={brokers}; list one address per broker, or only the first (the "
            f"others follow {KAFKA_BROKER_PORT_STEP} ports apart)"
        )
    host, port = servers[0].rsplit(":", 1)
    ports = [int(port) + KAFKA_BROKER_PORT_STEP * n for n in range(brokers)]
    if ports[-1] > 65535:
        raise ConfigError(
            f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r}: broker {brokers} would need port {ports[-1]}"
        )
    return ",".join(f"{host}:{p}" for p in ports)


def broker_login_addresses(bootstrap_servers: str, login_port: int) -> list[tuple[str, int]]:
    """(host, login port) of each local broker: broker n's login listener is KAFKA_LOGIN_PORT plus
    KAFKA_BROKER_PORT_STEP times n - 1, on the host of its KAFKA_BOOTSTRAP_SERVERS address."""
    return [
        (server.rsplit(":", 1)[0], login_port + KAFKA_BROKER_PORT_STEP * n)
        for n, server in enumerate(_servers(bootstrap_servers))
    ]


def _security_settings(identity: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    protocol = str(identity["kafka_security_protocol"])
    if protocol == "PLAINTEXT":
        return {}
    out = {"security.protocol": protocol}
    if protocol.startswith("SASL"):
        if not (identity["kafka_username"] and identity["kafka_password"]):
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_USERNAME and KAFKA_PASSWORD; set "
                "both (or run `make up`, which generates the local stack's Kafka users)"
            )
        out.update(
            {
                "sasl.mechanism": identity["kafka_sasl_mechanism"],
                "sasl.username": identity["kafka_username"],
                "sasl.password": identity["kafka_password"],
            }
        )
    if protocol.endswith("SSL") and env.get("KAFKA_SSL_CA_LOCATION"):
        out["ssl.ca.location"] = env["KAFKA_SSL_CA_LOCATION"]
    return out


def kafka_security(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The librdkafka security settings of this process's Kafka identity (see `_kafka_identity`),
    from the merged configuration; {} on PLAINTEXT."""
    env = merged_environment(environ)
    return _security_settings(_kafka_identity(env), env)


def kafka_client_settings(bootstrap_servers: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a client of this process told `bootstrap_servers` adds to its librdkafka settings,
    from one read of the configuration: the security settings of its identity ({} on PLAINTEXT)
    and, for a login to the configured KAFKA_BOOTSTRAP_SERVERS where there are login servers (the
    local broker's login listener, or KAFKA_LOGIN_SERVERS), `bootstrap.servers` = those. Any other
    address (a test's unreachable broker, a user's second cluster) is taken as it is."""
    env = merged_environment(environ)
    identity = _kafka_identity(env)
    out = _security_settings(identity, env)
    login = identity["kafka_login_servers"]
    configured = _broker_addresses(env)
    if out and login and _servers(bootstrap_servers) == _servers(configured):
        out["bootstrap.servers"] = login
    return out


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a `KEY=value` file (comments, blank lines, optional quotes, `export `)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw_line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"{path}:{number}: expected KEY=value, got {raw_line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _port(name: str, raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"{name}={raw!r} is not a TCP port; set it to a number from 1 to 65535")
    return int(raw)


def _positive_int(name: str, raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name}={raw!r} must be a whole number >= 1")
    return int(raw)


def _positive_seconds(name: str, raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 86_400:
        raise ConfigError(f"{name}={raw!r} must be a number of seconds > 0 (e.g. 10 or 0.5)")
    return seconds


def _topic(name: str, raw: str) -> str:
    if not _TOPIC_PATTERN.fullmatch(raw) or raw in {".", ".."}:
        raise ConfigError(
            f"{name}={raw!r} is not a valid Kafka topic name (1-249 chars of A-Z a-z 0-9 . _ -)"
        )
    return raw


def _role(name: str, raw: str) -> str:
    if not _ROLE_PATTERN.fullmatch(raw):
        raise ConfigError(
            f"{name}={raw!r} is not a usable PostgreSQL role/database name "
            "(lower-case letters, digits and _, starting with a letter or _)"
        )
    return raw


def _bootstrap(name: str, raw: str) -> str:
    servers = [s.strip() for s in raw.split(",") if s.strip()]
    if not servers:
        raise ConfigError(f"{name} is empty; set it to host:port[,host:port...], e.g. 127.0.0.1:9092")
    for server in servers:
        match = _HOST_PORT_PATTERN.fullmatch(server)
        if not match or not 1 <= int(match.group(1)) <= 65535:
            raise ConfigError(f"{name}={raw!r}: {server!r} is not host:port; use e.g. 127.0.0.1:9092")
    return ",".join(servers)


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    if not raw.startswith(tuple(f"{s}://" for s in schemes)) or len(raw) <= len("wss://"):
        raise ConfigError(f"{name}={raw!r} must be a URL starting with {' or '.join(schemes)}://")
    return raw.rstrip("/")


def parse_symbols(name: str, raw: str) -> tuple[str, ...]:
    """Split and validate a comma-separated symbol list (docs/interfaces/kafka-messages.md symbol rule)."""
    symbols = tuple(s.strip() for s in raw.split(",") if s.strip())
    if not symbols:
        raise ConfigError(f"{name} is empty; give at least one symbol, e.g. AAPL,MSFT")
    for symbol in symbols:
        if not SYMBOL_PATTERN.fullmatch(symbol):
            raise ConfigError(
                f"{name}: {symbol!r} is not a valid symbol (1-32 chars of A-Z a-z 0-9 . : - _ / ^ =)"
            )
    return tuple(dict.fromkeys(symbols))


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective configuration of one Tickhouse process."""

    project_root: Path
    state_dir: Path
    kafka_bootstrap_servers: str
    kafka_controller_port: int
    kafka_heap_opts: str
    kafka_jvm_performance_opts: str
    topic_partitions: int
    trades_topic: str
    quotes_topic: str
    alerts_topic: str
    candles_topic: str
    postgres_host: str
    postgres_port: int
    postgres_db: str
    postgres_user: str
    postgres_password: str
    loader_user: str
    loader_password: str
    dbt_user: str
    dbt_password: str
    bi_reader_user: str
    bi_reader_password: str
    monitor_user: str
    monitor_password: str
    airflow_db: str
    airflow_db_user: str
    airflow_db_password: str
    airflow_host: str
    airflow_port: int
    airflow_admin_password: str
    airflow_parallelism: int
    airflow_dag_parse_seconds: int
    finnhub_api_key: str
    finnhub_ws_url: str
    finnhub_api_url: str
    symbols: tuple[str, ...]
    # the Kafka identity of this process: KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
    # KAFKA_USERNAME, KAFKA_PASSWORD; see `kafka_security`
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = KAFKA_DEFAULT_MECHANISM
    kafka_username: str = ""
    kafka_password: str = ""
    # the local broker's login listener (KAFKA_LOGIN_PORT), where this process logs in
    # (KAFKA_LOGIN_SERVERS, "" = KAFKA_BOOTSTRAP_SERVERS), and what it allows without a login
    kafka_login_port: int = int(DEFAULT_KAFKA_LOGIN_PORT)
    kafka_login_servers: str = ""
    kafka_anonymous_access: str = "market"
    # how long a dbt statement waits for a lock a BI query holds (DBT_LOCK_TIMEOUT_SECONDS), and
    # how many times a build that timed out is run again (DBT_LOCK_RETRIES)
    dbt_lock_timeout_seconds: float = 10.0
    dbt_lock_retries: int = 3
    # KAFKA_BROKERS: how many brokers the local stack runs (1, or a cluster: docs/operations.md)
    kafka_brokers: int = 1

    @property
    def topic_replication_factor(self) -> int:
        """Copies of each partition the local stack's topics get: one per broker, at most 3."""
        return min(self.kafka_brokers, 3)

    @property
    def min_insync_replicas(self) -> int:
        """Copies an `acks=all` write waits for: 2 of 3, so one broker may be down without loss."""
        return max(1, self.topic_replication_factor - 1)

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1])

    @property
    def kafka_host(self) -> str:
        return self.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[0]

    @property
    def kafka_login_listener(self) -> str:
        """host:port of each local broker's login listener (KAFKA_LOGIN_PORT on the bootstrap host)."""
        return ",".join(
            f"{host}:{port}"
            for host, port in broker_login_addresses(self.kafka_bootstrap_servers, self.kafka_login_port)
        )

    @property
    def topics(self) -> tuple[str, str, str, str]:
        return (self.trades_topic, self.quotes_topic, self.alerts_topic, self.candles_topic)

    @property
    def airflow_url(self) -> str:
        return f"http://{self.airflow_host}:{self.airflow_port}"

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.env"

    def conninfo(self, role: str = "owner", dbname: str | None = None) -> str:
        """libpq connection string for one of the warehouse roles: owner, loader, dbt, bi_reader,
        monitor (the metrics exporter), airflow (Airflow's metadata database)."""
        users = {
            "owner": (self.postgres_user, self.postgres_password),
            "loader": (self.loader_user, self.loader_password),
            "dbt": (self.dbt_user, self.dbt_password),
            "bi_reader": (self.bi_reader_user, self.bi_reader_password),
            "monitor": (self.monitor_user, self.monitor_password),
            "airflow": (self.airflow_db_user, self.airflow_db_password),
        }
        if role not in users:
            raise ValueError(f"unknown warehouse role {role!r}; expected one of {sorted(users)}")
        user, password = users[role]
        database = dbname or (self.airflow_db if role == "airflow" else self.postgres_db)
        return (
            f"host={self.postgres_host} port={self.postgres_port} dbname={database} "
            f"user={user} password={_libpq_quote(password)} connect_timeout=5"
        )

    def as_env(self) -> dict[str, str]:
        """The configuration as environment variables (what `tickhouse env` prints)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "KAFKA_BROKERS": str(self.kafka_brokers),
            "KAFKA_HEAP_OPTS": self.kafka_heap_opts,
            "KAFKA_JVM_PERFORMANCE_OPTS": self.kafka_jvm_performance_opts,
            "TOPIC_PARTITIONS": str(self.topic_partitions),
            "TRADES_TOPIC": self.trades_topic,
            "QUOTES_TOPIC": self.quotes_topic,
            "ALERTS_TOPIC": self.alerts_topic,
            "CANDLES_TOPIC": self.candles_topic,
            "POSTGRES_HOST": self.postgres_host,
            "POSTGRES_PORT": str(self.postgres_port),
            "POSTGRES_DB": self.postgres_db,
            "POSTGRES_USER": self.postgres_user,
            "POSTGRES_PASSWORD": self.postgres_password,
            "LOADER_USER": self.loader_user,
            "LOADER_PASSWORD": self.loader_password,
            "DBT_USER": self.dbt_user,
            "DBT_PASSWORD": self.dbt_password,
            "BI_READER_USER": self.bi_reader_user,
            "BI_READER_PASSWORD": self.bi_reader_password,
            "MONITOR_USER": self.monitor_user,
            "MONITOR_PASSWORD": self.monitor_password,
            "AIRFLOW_DB": self.airflow_db,
            "AIRFLOW_DB_USER": self.airflow_db_user,
            "AIRFLOW_DB_PASSWORD": self.airflow_db_password,
            "AIRFLOW_HOST": self.airflow_host,
            "AIRFLOW_PORT": str(self.airflow_port),
            "AIRFLOW_ADMIN_PASSWORD": self.airflow_admin_password,
            "AIRFLOW_PARALLELISM": str(self.airflow_parallelism),
            "AIRFLOW_DAG_PARSE_SECONDS": str(self.airflow_dag_parse_seconds),
            "FINNHUB_API_KEY": self.finnhub_api_key,
            "FINNHUB_WS_URL": self.finnhub_ws_url,
            "FINNHUB_API_URL": self.finnhub_api_url,
            "SYMBOLS": ",".join(self.symbols),
            "KAFKA_SECURITY_PROTOCOL": self.kafka_security_protocol,
            "KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "KAFKA_USERNAME": self.kafka_username,
            "KAFKA_PASSWORD": self.kafka_password,
            "KAFKA_LOGIN_PORT": str(self.kafka_login_port),
            "KAFKA_LOGIN_SERVERS": self.kafka_login_servers,
            "KAFKA_ANONYMOUS_ACCESS": self.kafka_anonymous_access,
            "TICKHOUSE_STATE_DIR": str(self.state_dir),
        }


def _libpq_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def env_file(environ: Mapping[str, str] | None = None, project_root: Path = PROJECT_ROOT) -> Path:
    """The `.env` file the configuration reads: TICKHOUSE_ENV_FILE, else `<project root>/.env`."""
    env = os.environ if environ is None else environ
    return Path(env.get("TICKHOUSE_ENV_FILE") or project_root / ".env")


def merged_environment(
    environ: Mapping[str, str] | None = None, project_root: Path = PROJECT_ROOT
) -> dict[str, str]:
    """All configuration sources merged by precedence (environment wins)."""
    env = dict(os.environ if environ is None else environ)
    state_dir = Path(env.get("TICKHOUSE_STATE_DIR") or project_root / ".local")
    merged: dict[str, str] = {}
    # the local stack starts its services with only their own role's credentials in the
    # environment and this switch on, so they do not pick up the other roles' from the file
    if env.get(NO_SECRETS_FILE) != "1":
        merged.update(read_env_file(state_dir / "secrets.env"))
    merged.update(read_env_file(env_file(env, project_root)))
    merged.update({k: v for k, v in env.items() if v != ""})
    merged.setdefault("TICKHOUSE_STATE_DIR", str(state_dir))
    return merged


def load_settings(environ: Mapping[str, str] | None = None, project_root: Path = PROJECT_ROOT) -> Settings:
    """Read and validate the configuration; raises ConfigError naming the bad variable."""
    env = merged_environment(environ, project_root)

    def get(name: str, default: str) -> str:
        return env.get(name, default).strip()

    return Settings(
        project_root=project_root,
        state_dir=Path(env["TICKHOUSE_STATE_DIR"]).resolve(),
        kafka_bootstrap_servers=_broker_addresses(env),
        kafka_brokers=_broker_count(env),
        kafka_controller_port=_port("KAFKA_CONTROLLER_PORT", get("KAFKA_CONTROLLER_PORT", "9093")),
        # a cluster's three brokers share the machine: a quarter of the single broker's heap each
        kafka_heap_opts=get(
            "KAFKA_HEAP_OPTS", "-Xms256m -Xmx1g" if _broker_count(env) == 1 else "-Xms128m -Xmx256m"
        ),
        # the garbage collector and JIT flags of the local broker (the name Kafka's scripts read)
        kafka_jvm_performance_opts=get("KAFKA_JVM_PERFORMANCE_OPTS", KAFKA_JVM_PERFORMANCE_OPTS),
        topic_partitions=_positive_int("TOPIC_PARTITIONS", get("TOPIC_PARTITIONS", "3")),
        trades_topic=_topic("TRADES_TOPIC", get("TRADES_TOPIC", "market.trades")),
        quotes_topic=_topic("QUOTES_TOPIC", get("QUOTES_TOPIC", "market.quotes")),
        alerts_topic=_topic("ALERTS_TOPIC", get("ALERTS_TOPIC", "market.alerts")),
        candles_topic=_topic("CANDLES_TOPIC", get("CANDLES_TOPIC", "market.candles")),
        postgres_host=get("POSTGRES_HOST", "127.0.0.1"),
        postgres_port=_port("POSTGRES_PORT", get("POSTGRES_PORT", "5432")),
        postgres_db=_role("POSTGRES_DB", get("POSTGRES_DB", "tickhouse")),
        postgres_user=_role("POSTGRES_USER", get("POSTGRES_USER", "tickhouse")),
        postgres_password=get("POSTGRES_PASSWORD", ""),
        loader_user=_role("LOADER_USER", get("LOADER_USER", "tickhouse_loader")),
        loader_password=get("LOADER_PASSWORD", ""),
        dbt_user=_role("DBT_USER", get("DBT_USER", "tickhouse_dbt")),
        dbt_password=get("DBT_PASSWORD", ""),
        bi_reader_user=_role("BI_READER_USER", get("BI_READER_USER", "bi_reader")),
        bi_reader_password=get("BI_READER_PASSWORD", ""),
        monitor_user=_role("MONITOR_USER", get("MONITOR_USER", "tickhouse_monitor")),
        monitor_password=get("MONITOR_PASSWORD", ""),
        airflow_db=_role("AIRFLOW_DB", get("AIRFLOW_DB", "airflow")),
        airflow_db_user=_role("AIRFLOW_DB_USER", get("AIRFLOW_DB_USER", "airflow")),
        airflow_db_password=get("AIRFLOW_DB_PASSWORD", ""),
        airflow_host=get("AIRFLOW_HOST", "127.0.0.1"),
        airflow_port=_port("AIRFLOW_PORT", get("AIRFLOW_PORT", "8080")),
        airflow_admin_password=get("AIRFLOW_ADMIN_PASSWORD", ""),
        airflow_parallelism=_positive_int("AIRFLOW_PARALLELISM", get("AIRFLOW_PARALLELISM", "4")),
        airflow_dag_parse_seconds=_positive_int("AIRFLOW_DAG_PARSE_SECONDS",
                                                get("AIRFLOW_DAG_PARSE_SECONDS", "30")),
        finnhub_api_key=get("FINNHUB_API_KEY", ""),
        finnhub_ws_url=_url("FINNHUB_WS_URL", get("FINNHUB_WS_URL", "wss://ws.finnhub.io"), ("ws", "wss")),
        finnhub_api_url=_url(
            "FINNHUB_API_URL",
            get("FINNHUB_API_URL", "https://api.finnhub.io/api/v1"),
            ("http", "https"),
        ),
        symbols=parse_symbols("SYMBOLS", get("SYMBOLS", DEFAULT_SYMBOLS)),
        dbt_lock_timeout_seconds=_positive_seconds(
            "DBT_LOCK_TIMEOUT_SECONDS", get("DBT_LOCK_TIMEOUT_SECONDS", "10")
        ),
        dbt_lock_retries=_positive_int("DBT_LOCK_RETRIES", get("DBT_LOCK_RETRIES", "3")),
        **_kafka_identity(env),
    )


def dbt_lock_retries(environ: Mapping[str, str] | None = None) -> int:
    """DBT_LOCK_RETRIES (environment, then .env), validated: for the DAG file, which sets its
    tasks' retries when it is parsed, before any settings are loaded."""
    raw = merged_environment(environ).get("DBT_LOCK_RETRIES", "").strip() or "3"
    return _positive_int("DBT_LOCK_RETRIES", raw)


def drain_group(environ: Mapping[str, str] | None = None) -> str:
    """DRAIN_GROUP: the drain's consumer group, whose lag `tickhouse status` and the exporter show."""
    return (os.environ if environ is None else environ).get("DRAIN_GROUP", "").strip() or DEFAULT_DRAIN_GROUP


def require_credentials(settings: Settings) -> None:
    """Fail clearly when the generated credentials are missing (setup has not run)."""
    missing = [
        name
        for name, value in (
            ("POSTGRES_PASSWORD", settings.postgres_password),
            ("LOADER_PASSWORD", settings.loader_password),
            ("DBT_PASSWORD", settings.dbt_password),
            ("BI_READER_PASSWORD", settings.bi_reader_password),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set and no credentials in {settings.secrets_file}; "
            "run `make up` (setup generates them) or export them"
        )
