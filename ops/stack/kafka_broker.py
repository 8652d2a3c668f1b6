"""Apache Kafka in KRaft mode, from the Maven Central jars that scripts/bootstrap.sh copies into
`<state>/kafka/libs`: one combined broker+controller (`<state>/kafka`), or with KAFKA_BROKERS=n a
cluster of n combined nodes that form the controller quorum together (`<state>/kafka-cluster/broker-<n>`),
whose topics get 3 copies and `min.insync.replicas=2`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from ops.stack import kafka_security
from ops.stack.credentials import generated_secret
from ops.stack.processes import (
    Service,
    StackError,
    pid_alive,
    port_open,
    require_port_free,
    stop_pid,
    wait_until,
)
from tickhouse import kafka
from tickhouse.config import KAFKA_BROKER_PORT_STEP, Settings, broker_login_addresses, kafka_password_variable

LOG4J2_CONFIG = """\
Configuration:
  name: tickhouse-kafka
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
      - name: kafka.server.BrokerServer
        level: INFO
"""


@dataclass(frozen=True, slots=True)
class Node:
    """One Kafka process of the local stack: its KRaft node id, ports, home (configuration, data) and
    the name of its pid and log files."""

    node_id: int
    host: str
    port: int
    login_port: int
    controller_port: int
    home: Path
    name: str


def kafka_dir(settings: Settings) -> Path:
    """The single broker's home; also where the jars live, whatever the mode."""
    return settings.state_dir / "kafka"


def cluster_dir(settings: Settings) -> Path:
    """The cluster's nodes' homes (KAFKA_BROKERS > 1): its own storage, never the single broker's."""
    return settings.state_dir / "kafka-cluster"


def nodes(settings: Settings) -> list[Node]:
    """The Kafka processes KAFKA_BROKERS asks for; broker n's ports are KAFKA_BROKER_PORT_STEP x (n-1)
    above broker 1's (tickhouse.config)."""
    if settings.kafka_brokers == 1:
        return [
            Node(
                1, settings.kafka_host, settings.kafka_port, settings.kafka_login_port,
                settings.kafka_controller_port, kafka_dir(settings), "kafka",
            )
        ]
    addresses = settings.kafka_bootstrap_servers.split(",")
    logins = broker_login_addresses(settings.kafka_bootstrap_servers, settings.kafka_login_port)
    return [
        Node(
            n + 1,
            host,
            int(address.rsplit(":", 1)[1]),
            login_port,
            settings.kafka_controller_port + KAFKA_BROKER_PORT_STEP * n,
            cluster_dir(settings) / f"broker-{n + 1}",
            f"kafka-{n + 1}",
        )
        for n, (address, (host, login_port)) in enumerate(zip(addresses, logins, strict=True))
    ]


def node_service(settings: Settings, node: Node) -> Service:
    return Service(node.name, settings.state_dir)


def service(settings: Settings) -> Service:
    """The first (or only) broker's process."""
    return node_service(settings, nodes(settings)[0])


def services(settings: Settings) -> list[Service]:
    """Every broker process of the configured mode."""
    return [node_service(settings, node) for node in nodes(settings)]


def libs_dir(settings: Settings) -> Path:
    """The broker's jars: $KAFKA_LIBS_DIR, or where scripts/bootstrap.sh puts them."""
    override = os.environ.get("KAFKA_LIBS_DIR")
    return Path(override) if override else kafka_dir(settings) / "libs"


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise StackError("java not found: install a Java 17 runtime or set JAVA_HOME")
    return found


def _voters(settings: Settings) -> str:
    return ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes(settings))


def server_properties(settings: Settings, node: Node | None = None) -> str:
    """A broker's configuration (the first one's by default): two client listeners, PUBLIC on
    KAFKA_BOOTSTRAP_SERVERS without a login (docs/interfaces/configuration.md: the principal
    `ANONYMOUS`) and CLIENT on KAFKA_LOGIN_PORT with SASL/SCRAM; SASL/PLAIN between broker and
    controller; the StandardAuthorizer denying what `kafka_security.acl_table` does not grant."""
    node = node or nodes(settings)[0]
    host, port, login, controller = node.host, node.port, node.login_port, node.controller_port
    admin_password = generated_secret(settings, kafka_password_variable(kafka_security.ADMIN))
    controller_password = generated_secret(settings, kafka_security.CONTROLLER_PASSWORD)
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
    ctl = kafka_security.CONTROLLER
    return f"""\
# Generated by Tickhouse from KAFKA_BOOTSTRAP_SERVERS / KAFKA_LOGIN_PORT / KAFKA_CONTROLLER_PORT and the
# generated Kafka passwords at every start (no access without an ACL; clients without a
# login only on the PUBLIC listener, whose ACLs allow market data, see kafka_security.acl_table).
process.roles=broker,controller
node.id={node.node_id}
controller.quorum.voters={_voters(settings)}
listeners=PUBLIC://{host}:{port},CLIENT://{host}:{login},CONTROLLER://{host}:{controller}
advertised.listeners=PUBLIC://{host}:{port},CLIENT://{host}:{login}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PUBLIC:PLAINTEXT,CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=CLIENT
sasl.enabled.mechanisms=SCRAM-SHA-256
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-256
listener.name.client.scram-sha-256.sasl.jaas.config={scram} required \\
  username="{kafka_security.ADMIN}" password="{admin_password}";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config={plain} required \\
  username="{ctl}" password="{controller_password}" user_{ctl}="{controller_password}";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{kafka_security.ADMIN};User:{ctl}
allow.everyone.if.no.acl.found=false
{_storage_properties(settings, node)}"""


def _storage_properties(settings: Settings, node: Node) -> str:
    """What every configuration of the broker shares: where and how it keeps the data."""
    copies, in_sync = settings.topic_replication_factor, settings.min_insync_replicas
    # a cluster: every topic (the internal ones too) with copies on 3 brokers, an acks=all write
    # acknowledged once 2 hold it, and never a leader that missed acknowledged writes
    cluster = (
        f"default.replication.factor={copies}\nmin.insync.replicas={in_sync}\n"
        "unclean.leader.election.enable=false\n"
        if settings.kafka_brokers > 1
        else ""
    )
    return f"""\
log.dirs={node.home / "data"}
num.partitions={settings.topic_partitions}
auto.create.topics.enable=false
offsets.topic.replication.factor={copies}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor={copies}
transaction.state.log.min.isr={in_sync}
{cluster}group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=168
log.segment.bytes=268435456
"""


def _classpath(settings: Settings) -> str:
    libs = libs_dir(settings)
    if not libs.is_dir() or not any(libs.glob("kafka_2.13-*.jar")):
        raise StackError(f"Kafka jars missing in {libs}; run `make up` (scripts/bootstrap.sh fetches them)")
    return f"{libs}/*"


def _users_marker(settings: Settings, node: Node) -> Path:
    """Present once the storage holds the SCRAM user `admin` (formatted with it, or upgraded)."""
    return node.home / "scram-users"


def _cluster_id(settings: Settings) -> Path:
    """The file with the id every node of this stack's Kafka is formatted with (made once)."""
    home = kafka_dir(settings) if settings.kafka_brokers == 1 else cluster_dir(settings)
    home.mkdir(parents=True, exist_ok=True)
    cluster_id = home / "cluster.id"
    if not cluster_id.exists():
        # Kafka wants a base64 UUID; uuid4's urlsafe-base64 form is what random-uuid prints. One
        # that starts with "-" would be read as an option by the storage tool: draw another.
        import base64

        value = "-"
        while value.startswith("-"):
            value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cluster_id.write_text(value + "\n")
    return cluster_id


def _format_storage(settings: Settings, node: Node, config: Path) -> None:
    """Format a node's empty storage (a new stack, or a node whose disk was lost: it then copies
    every partition back from the other brokers)."""
    data = node.home / "data"
    if (data / "meta.properties").exists():
        return
    cluster_id = _cluster_id(settings)
    # the admin's password goes through a 0600 argument file, not the command line that any local
    # user may read in `ps`
    arguments = node.home / "format.args"
    admin_password = generated_secret(settings, kafka_password_variable(kafka_security.ADMIN))
    _write_private(
        arguments,
        "\n".join(
            [
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id.read_text().strip(),
                "-c",
                f'"{config}"',
                "--ignore-formatted",
                # the superuser the broker itself logs in as; setup adds the others over the API
                "--add-scram",
                f"SCRAM-SHA-256=[name={kafka_security.ADMIN},password={admin_password}]",
            ]
        ),
    )
    try:
        result = subprocess.run(
            [java(), "-cp", _classpath(settings), f"@{arguments}"],
            text=True,
            capture_output=True,
            check=False,
        )
    finally:
        arguments.unlink(missing_ok=True)
    if result.returncode != 0:
        raise StackError(f"Kafka storage format failed:\n{result.stdout}{result.stderr}")
    _users_marker(settings, node).write_text("admin\n")


def legacy_properties(settings: Settings) -> str:
    """How an older Tickhouse ran the broker: no authentication, no authorizer. Used only for the
    moment it takes to add the `admin` SCRAM user to a storage formatted without it."""
    host, port = settings.kafka_host, settings.kafka_port
    controller = settings.kafka_controller_port
    return f"""\
# Generated by Tickhouse for a one-off start that adds the SCRAM users (upgrade to authenticated Kafka).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
{_storage_properties(settings, nodes(settings)[0])}"""


def _add_admin_user(settings: Settings, home: Path, log4j: Path) -> None:
    """A storage formatted by an older Tickhouse has no SCRAM user, and a SCRAM listener would let
    nobody in: start the broker once as it ran before, add `admin` over the API, stop it."""
    legacy = home / "server-upgrade.properties"
    _write_private(legacy, legacy_properties(settings))
    svc = service(settings)
    svc.start(_argv(settings, legacy, log4j), env=os.environ, cwd=home)
    try:
        wait_until(
            lambda: port_open(settings.kafka_host, settings.kafka_port), 90, "Kafka broker (upgrade)",
            svc.log_file,
        )
        client = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers, **kafka.QUIET})
        password = generated_secret(settings, kafka_password_variable(kafka_security.ADMIN))
        kafka_security.upsert_users(client, {kafka_security.ADMIN: password}, timeout=60)
    finally:
        svc.stop(timeout=60)
        legacy.unlink(missing_ok=True)
    _users_marker(settings, nodes(settings)[0]).write_text("admin\n")


def _write_private(path: Path, text: str) -> None:
    """A file only its owner reads (the broker's configuration holds the admin's password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    path.chmod(0o600)


def _argv(settings: Settings, config: Path, log4j: Path) -> list[str]:
    return [
        java(),
        *settings.kafka_heap_opts.split(),
        *settings.kafka_jvm_performance_opts.split(),
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        _classpath(settings),
        "kafka.Kafka",
        str(config),
    ]


def _node_needs_restart(settings: Settings, node: Node) -> bool:
    config = node.home / "server.properties"
    if node_service(settings, node).pid() is None:
        return False
    return not config.exists() or config.read_text() != server_properties(settings, node)


def needs_restart(settings: Settings) -> bool:
    """Whether a running broker runs another configuration than this checkout's (e.g. an older
    Tickhouse's, without authentication): `start` will restart it."""
    return any(_node_needs_restart(settings, node) for node in nodes(settings))


def _node_label(settings: Settings, node: Node) -> str:
    return "Kafka broker" if settings.kafka_brokers == 1 else f"Kafka broker {node.node_id}"


def _require_ports_free(settings: Settings, node: Node) -> None:
    suffix = "" if settings.kafka_brokers == 1 else f" (broker {node.node_id} of KAFKA_BROKERS)"
    require_port_free(node.host, node.port, f"KAFKA_BOOTSTRAP_SERVERS{suffix}")
    require_port_free(node.host, node.login_port, f"KAFKA_LOGIN_PORT{suffix}")
    require_port_free(node.host, node.controller_port, f"KAFKA_CONTROLLER_PORT{suffix}")


def start(settings: Settings, say: Callable[[str], None] | None = None) -> bool:
    """Start every broker that is not running (restart one that runs another configuration, e.g. an
    older Tickhouse's without authentication); then its users and ACLs are in place. Returns True
    when this call started one. In a cluster the nodes start together: each waits for a quorum."""
    log4j = kafka_dir(settings) / "log4j2.yaml"
    missing: list[Node] = []
    for node in nodes(settings):
        svc = node_service(settings, node)
        if svc.pid() is not None:
            if not _node_needs_restart(settings, node):
                continue
            if say:
                say("Kafka       restarting: its configuration changed (authentication and ACLs)")
            svc.stop(timeout=60)
        missing.append(node)
    for node in missing:
        _require_ports_free(settings, node)
    if missing:
        kafka_dir(settings).mkdir(parents=True, exist_ok=True)
        log4j.write_text(LOG4J2_CONFIG)
    for node in missing:
        node.home.mkdir(parents=True, exist_ok=True)
        _write_private(node.home / "server.properties", server_properties(settings, node))
    if missing:
        _cluster_id(settings)
    # one JVM per storage to format: side by side
    with ThreadPoolExecutor(max_workers=len(missing) or 1) as pool:
        for done in [
            pool.submit(_format_storage, settings, node, node.home / "server.properties") for node in missing
        ]:
            done.result()
    for node in missing:
        if not _users_marker(settings, node).exists():
            if say:
                say("Kafka       upgrading: adding the SCRAM users to the existing storage (once)")
            _add_admin_user(settings, node.home, log4j)
    for node in missing:
        node_service(settings, node).start(
            _argv(settings, node.home / "server.properties", log4j), env=os.environ, cwd=node.home
        )
    for node in nodes(settings):
        log_file = node_service(settings, node).log_file
        label = _node_label(settings, node)
        wait_until(lambda n=node: port_open(n.host, n.port), 90, label, log_file)
        wait_until(lambda n=node: port_open(n.host, n.login_port), 30, f"{label}'s login listener", log_file)
    kafka_security.provision(settings)
    if missing:
        create_topics(settings)
    return bool(missing)


def stop(settings: Settings) -> bool:
    """Stop every Kafka process of the stack (of either mode); True if one was running. The nodes
    of a cluster are told to stop together: one left alone would wait for a quorum that is gone."""
    run = settings.state_dir / "run"
    names = {"kafka", *(p.stem for p in run.glob("kafka-*.pid") if p.stem[len("kafka-"):].isdigit())}
    running = [(svc, pid) for svc in (Service(n, settings.state_dir) for n in sorted(names))
               if (pid := svc.pid()) is not None]
    for _svc, pid in running:
        _signal_group(pid)
    for svc, pid in running:
        stop_pid(pid, 60)
        svc.pid_file.unlink(missing_ok=True)
    return bool(running)


def _signal_group(pid: int) -> None:
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)


def create_topics(settings: Settings, timeout: float = 60) -> None:
    """Once the brokers answer: the four topics with TOPIC_PARTITIONS partitions each (a topic with
    fewer gets more; Kafka never shrinks one), on every broker of a cluster (up to 3 copies)."""
    wait_until(
        lambda: kafka.broker_answers(settings.kafka_bootstrap_servers), timeout, "Kafka broker metadata"
    )
    config = {"min.insync.replicas": str(settings.min_insync_replicas)} if settings.kafka_brokers > 1 else {}
    specs = {
        topic: kafka.TopicSpec(settings.topic_partitions, config, settings.topic_replication_factor)
        for topic in settings.topics
    }
    kafka.ensure_topics(settings.kafka_bootstrap_servers, specs, grow=True, timeout=30)


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Partition count per configured topic (0 when missing)."""
    return kafka.partition_counts(settings.kafka_bootstrap_servers, settings.topics)


def under_replicated(settings: Settings, topics: Iterable[str] | None = None) -> list[tuple[str, int]]:
    """(topic, partition) of every partition whose in-sync replicas are fewer than its replicas
    (all topics but Kafka's own by default): a cluster is whole again when this is empty."""
    metadata = kafka.admin(settings.kafka_bootstrap_servers).list_topics(timeout=10)
    wanted = set(topics) if topics is not None else None
    return [
        (name, pid)
        for name, topic in metadata.topics.items()
        if (wanted is None or name in wanted) and topic.error is None
        for pid, partition in topic.partitions.items()
        if partition.error is not None or len(partition.isrs) < len(partition.replicas)
    ]
