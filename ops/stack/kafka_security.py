"""Who may do what on the local stack's Kafka: SASL/SCRAM users and their ACLs.

The broker authenticates its services (SCRAM-SHA-256 on the login listener, KAFKA_LOGIN_PORT) and
authorizes every client with the StandardAuthorizer: nothing is allowed that `acl_table` does not
grant. A client without a login (KAFKA_BOOTSTRAP_SERVERS, docs/interfaces/configuration.md) is `ANONYMOUS`,
which may publish and read market data only (KAFKA_ANONYMOUS_ACCESS=none: nothing). Each Tickhouse service has
its own principal, whose password setup generates into `<state dir>/secrets.env` (KAFKA_<NAME>_PASSWORD) and
hands only to that service's processes; `admin` is the stack's own superuser (topic creation, setup, the
user's `tickhouse` commands and the tests).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from ops.stack.credentials import generated_secret
from ops.stack.processes import StackError
from tickhouse import kafka
from tickhouse.config import (
    KAFKA_PRINCIPALS,
    Settings,
    drain_group,
    kafka_password_variable,
)

ADMIN = "admin"
# the controller listener authenticates the broker with SASL/PLAIN (KRaft keeps SCRAM users in the
# metadata log, which a controller cannot read before it has a quorum); its user is static
CONTROLLER = "controller"
CONTROLLER_PASSWORD = "KAFKA_CONTROLLER_PASSWORD"
SCRAM_ITERATIONS = 8192

READ, WRITE, DESCRIBE, CREATE = (
    AclOperation.READ,
    AclOperation.WRITE,
    AclOperation.DESCRIBE,
    AclOperation.CREATE,
)


@dataclass(frozen=True, slots=True)
class Grant:
    """Operations a principal may do on a topic or group (by exact name, or by name prefix)."""

    resource: ResourceType
    name: str
    operations: tuple[AclOperation, ...]
    prefixed: bool = False
    denied: bool = False  # a DENY binding: wins over any ALLOW


def _topic(name: str, *ops: AclOperation, prefixed: bool = False) -> Grant:
    return Grant(ResourceType.TOPIC, name, ops, prefixed)


def _group(name: str, *ops: AclOperation, prefixed: bool = False, denied: bool = False) -> Grant:
    return Grant(ResourceType.GROUP, name, ops, prefixed, denied)


# the principal of a client on the PUBLIC listener (KAFKA_BOOTSTRAP_SERVERS, no login)
ANONYMOUS = "ANONYMOUS"


def acl_table(settings: Settings) -> dict[str, tuple[Grant, ...]]:
    """Every principal's grants, least privilege, written once (docs/operations.md, "Kafka on a cluster of
    your own", shows them as `kafka-acls` commands). `admin` is a superuser and needs none."""
    trades, quotes, alerts, candles = (
        settings.trades_topic,
        settings.quotes_topic,
        settings.alerts_topic,
        settings.candles_topic,
    )
    market = (trades, quotes, candles)
    # the consumers that only read watermarks or a topic's contents (tickhouse.kafka.probe_group)
    # look up their group's coordinator, never join or commit
    probes = _group("tickhouse-probe-", DESCRIBE, prefixed=True)
    table: dict[str, tuple[Grant, ...]] = {}
    if settings.kafka_anonymous_access == "market":
        # a client without a login (docs/interfaces/configuration.md and kafka-messages.md: anyone may publish
        # market data to KAFKA_BOOTSTRAP_SERVERS and read the topics): publish and read the market topics,
        # read alerts, use a consumer group of its own; never write alerts or the alert service's topics,
        # never delete or alter anything, never join or commit a `tickhouse-*` group
        table[ANONYMOUS] = (
            *(_topic(t, WRITE, READ, DESCRIBE) for t in market),
            _topic(alerts, READ, DESCRIBE),
            _group("*", READ, DESCRIBE),
            _group("tickhouse-", READ, DESCRIBE, prefixed=True, denied=True),
        )
    return table | {
        # `tickhouse produce` / `backfill`: writes the market topics; creates them when missing
        "producer": tuple(_topic(t, WRITE, DESCRIBE, CREATE) for t in market),
        # the drain (Airflow task, `tickhouse drain`): reads every topic it loads into raw.*,
        # commits its group's offsets (lag monitoring)
        "drain": (
            *(_topic(t, READ, DESCRIBE) for t in (*market, alerts)),
            _group(drain_group(), READ, DESCRIBE),
            probes,
        ),
        # the alert service: reads trades, writes alerts; its checkpoint (`<alerts>.state`) and
        # dead-letter (`<alerts>.deadletter`) topics are its own; its groups and its notifiers'
        # (`tickhouse-alerts`, `tickhouse-alerts-notify.<name>`, `...-reader-*`) share the prefix
        "alerts": (
            _topic(trades, READ, DESCRIBE),
            _topic(alerts, READ, WRITE, DESCRIBE),
            _topic(f"{alerts}.", READ, WRITE, DESCRIBE, CREATE, prefixed=True),
            _group("tickhouse-alerts", READ, DESCRIBE, prefixed=True),
            probes,
        ),
        # the metrics exporter: the drain group's committed offsets and the topics' ends (lag)
        "monitor": (
            *(_topic(t, DESCRIBE) for t in settings.topics),
            _group(drain_group(), DESCRIBE),
            probes,
        ),
    }


def bindings(settings: Settings) -> list[AclBinding]:
    out = []
    for principal, grants in acl_table(settings).items():
        for grant in grants:
            pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
            for operation in grant.operations:
                out.append(
                    AclBinding(
                        grant.resource, grant.name, pattern, f"User:{principal}", "*", operation,
                        AclPermissionType.DENY if grant.denied else AclPermissionType.ALLOW,
                    )
                )
    return out


def passwords(settings: Settings) -> dict[str, str]:
    """Each local-stack principal's password (KAFKA_<NAME>_PASSWORD)."""
    return {p: generated_secret(settings, kafka_password_variable(p)) for p in KAFKA_PRINCIPALS}


def admin_client(settings: Settings) -> AdminClient:
    """An admin client logged in as the stack's `admin`, whatever this process's own identity."""
    return kafka.admin(
        settings.kafka_login_listener,
        **{
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": ADMIN,
            "sasl.password": generated_secret(settings, kafka_password_variable(ADMIN)),
        },
    )


def _wait(check: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except KafkaException as err:
            last = err
        time.sleep(0.2)
    raise StackError(f"Kafka: {what} not in effect after {timeout:.0f} s{f' ({last})' if last else ''}")


def upsert_users(client: AdminClient, users: dict[str, str], timeout: float = 30) -> None:
    """Create (or re-key) SCRAM-SHA-256 users, and wait until the broker knows them."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, SCRAM_ITERATIONS)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(u, info, p.encode()) for u, p in users.items()
    ]
    for user, future in client.alter_user_scram_credentials(upserts).items():
        try:
            future.result(timeout)
        except KafkaException as err:
            raise StackError(f"Kafka: could not set the SCRAM credentials of {user}: {err}") from err

    def known() -> bool:
        futures = client.describe_user_scram_credentials(list(users))
        assert isinstance(futures, dict)  # one future per user named
        for future in futures.values():
            future.result(timeout)  # raises while the user is unknown
        return True

    _wait(known, "the SCRAM users", timeout)


def apply_acls(settings: Settings, client: AdminClient, timeout: float = 30) -> None:
    """Create the ACLs of `acl_table` (idempotent) and wait until the broker enforces them."""
    wanted = bindings(settings)
    for binding, future in client.create_acls(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as err:
            raise StackError(f"Kafka: could not create the ACL {binding}: {err}") from err
    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
        AclOperation.ANY, AclPermissionType.ANY,
    )

    def enforced() -> bool:
        present = set(client.describe_acls(everything, request_timeout=timeout).result(timeout))
        return all(b in present for b in wanted)

    _wait(enforced, "the ACLs", timeout)


def provision(settings: Settings, timeout: float = 60) -> None:
    """As `admin`: every service principal's SCRAM user and the ACLs of `acl_table`."""
    client = admin_client(settings)
    _wait(lambda: bool(client.list_topics(timeout=2).brokers), "the admin login", timeout)
    users = {p: pw for p, pw in passwords(settings).items() if p != ADMIN}
    upsert_users(client, users, timeout)
    if settings.kafka_anonymous_access == "none":
        revoke_anonymous(client, timeout)
    apply_acls(settings, client, timeout)


def revoke_anonymous(client: AdminClient, timeout: float = 30) -> None:
    """Remove every ACL of clients without a login (KAFKA_ANONYMOUS_ACCESS=none)."""
    theirs = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, f"User:{ANONYMOUS}", None,  # type: ignore[arg-type]
        AclOperation.ANY, AclPermissionType.ANY,
    )
    for future in client.delete_acls([theirs], request_timeout=timeout).values():
        try:
            future.result(timeout)
        except KafkaException as err:
            raise StackError(f"Kafka: could not remove the ACLs of {ANONYMOUS}: {err}") from err
