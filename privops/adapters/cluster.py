"""The local Kafka cluster's shape as plain data: nodes, ports, quorum, replication.

`privops local up --brokers 3` runs three KRaft nodes in combined mode (each one broker
and controller, so the controller quorum has three voters and survives one loss). The
runtime, the settings defaults and the tests must agree on one layout, so it is computed
here from the first bootstrap address, the controller port and a port step, and nowhere
else. The broker count (and whether the listeners ask for SCRAM credentials) chosen by `up` is
kept in ``$PRIVOPS_HOME/runtime.json``: `down`, `status`, a later `up` and every client's
settings read it from there. No Kafka client
here: settings import this module.
"""

from __future__ import annotations

import base64
import json
import string
import uuid
from dataclasses import dataclass
from pathlib import Path

from privops.core.errors import ConfigError

BROKER_COUNTS = (1, 3)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
STATE_FILE = "runtime.json"
# Three copies keep a partition writable (two in sync) while one node is down; more
# copies than that buy nothing on one machine.
MAX_REPLICATION = 3
# What the local runtime can listen with (no TLS on loopback).
SECURITY_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL", "PLAINTEXT")


def replication_for(brokers: int) -> int:
    """The replication factor a cluster of ``brokers`` nodes gives every topic."""
    return max(1, min(brokers, MAX_REPLICATION))


def min_insync_for(replication: int) -> int:
    """With three copies, an acks=all write needs two: one node may die, none is lost."""
    return 2 if replication >= MAX_REPLICATION else 1


@dataclass(frozen=True)
class Node:
    node_id: int
    host: str
    broker_port: int
    controller_port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.broker_port}"

    @property
    def voter(self) -> str:
        return f"{self.node_id}@127.0.0.1:{self.controller_port}"


@dataclass(frozen=True)
class Layout:
    nodes: tuple[Node, ...]

    @property
    def brokers(self) -> int:
        return len(self.nodes)

    @property
    def bootstrap(self) -> str:
        """Every node's address: a client still connects while any one is down."""
        return ",".join(node.address for node in self.nodes)

    @property
    def voters(self) -> str:
        return ",".join(node.voter for node in self.nodes)

    @property
    def replication_factor(self) -> int:
        return replication_for(self.brokers)

    def name(self, node: Node) -> str:
        """The single node keeps the name (and directory) it always had: ``kafka``."""
        return "kafka" if self.brokers == 1 else f"kafka-{node.node_id}"

    def ports(self) -> list[int]:
        return [p for node in self.nodes for p in (node.broker_port, node.controller_port)]


def plan(bootstrap: str, controller_port: int, brokers: int, step: int) -> Layout:
    """Node n (from 0) listens on the first bootstrap port + n * step, its controller on
    the controller port + n * step; one node is exactly the single-node runtime."""
    if brokers not in BROKER_COUNTS:
        raise ConfigError(
            f"--brokers {brokers}: the local runtime runs 1 broker (the default) or 3 "
            "(a 3-voter quorum that survives losing one)"
        )
    host, port = _first_address(bootstrap)
    nodes = tuple(
        Node(n + 1, host, port + n * step, controller_port + n * step) for n in range(brokers)
    )
    layout = Layout(nodes)
    ports = layout.ports()
    if len(set(ports)) != len(ports):
        raise ConfigError(
            f"ports overlap in {ports}; set PRIVOPS_KAFKA_NODE_PORT_STEP so that no "
            "broker port + n * step meets a controller port"
        )
    if max(ports) > 65535:
        raise ConfigError(f"port {max(ports)} is out of range; lower PRIVOPS_KAFKA_BOOTSTRAP")
    return layout


def _first_address(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    if host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"the local runtime only runs on loopback; PRIVOPS_KAFKA_BOOTSTRAP starts {first!r}"
        )
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"PRIVOPS_KAFKA_BOOTSTRAP: {first!r} has no port") from None


@dataclass(frozen=True)
class Security:
    """What a secured node adds: SASL on every listener, the authorizer, and the password
    the nodes authenticate to each other with as ``admin``; with ``tls`` (SASL_SSL), the
    client listener's certificate, key and CA (PEM texts)."""

    template: str
    admin_password: str
    tls: BrokerTls | None = None


@dataclass(frozen=True)
class BrokerTls:
    chain: str
    key: str
    ca: str


TLS_DIR = "tls"
KAFKA_TLS_PREFIX = "kafka"


def kafka_ca(home: Path) -> Path:
    """The CA of the local runtime's SASL_SSL listener (made at its first start)."""
    return home / TLS_DIR / f"{KAFKA_TLS_PREFIX}-ca.pem"


def render_properties(
    template: str, layout: Layout, node: Node, log_dirs: Path, security: Security | None = None
) -> str:
    """One node's server.properties from the shared template; open (PLAINTEXT, no
    authorizer) without ``security``."""
    replication = layout.replication_factor
    listener = "PLAINTEXT"
    secured = ""
    if security:
        listener = "SASL_SSL" if security.tls else "SASL_PLAINTEXT"
        secured = string.Template(security.template).substitute(
            admin_password=security.admin_password, listener_name=listener.lower()
        )
    if security and security.tls:
        # PEM in the properties themselves (a PEM key file would need a key password).
        secured += (
            "\n# SASL_SSL: the client listener's certificate (the brokers trust its CA too,\n"
            "# as clients of each other)\n"
            "ssl.keystore.type=PEM\n"
            f"ssl.keystore.certificate.chain={_property(security.tls.chain)}\n"
            f"ssl.keystore.key={_property(security.tls.key)}\n"
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.certificates={_property(security.tls.ca)}\n"
        )
    return string.Template(template).substitute(
        listener=listener,
        controller_protocol="SASL_PLAINTEXT" if security else "PLAINTEXT",
        security=secured,
        node_id=node.node_id,
        voters=layout.voters,
        broker_port=node.broker_port,
        controller_port=node.controller_port,
        log_dirs=log_dirs,
        replication_factor=replication,
        min_insync_replicas=min_insync_for(replication),
    )


def _property(text: str) -> str:
    """A multi-line value as one line of a Java properties file."""
    return text.strip().replace("\\", "\\\\").replace("\n", "\\n")


def parse_properties(text: str) -> dict[str, str]:
    """``key=value`` lines (no continuation lines: the template has none)."""
    pairs = (
        line.split("=", 1)
        for line in text.splitlines()
        if "=" in line and not line.lstrip().startswith(("#", "!"))
    )
    return {key.strip(): value.strip() for key, value in pairs}


def new_cluster_id() -> str:
    """A KRaft cluster id as ``StorageTool random-uuid`` prints one (16 random bytes,
    URL-safe base64 without padding, never starting with "-"), without starting a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


@dataclass(frozen=True)
class RuntimeState:
    """What `privops local up` last ran: how many brokers, reachable where."""

    brokers: int
    bootstrap: str
    security_protocol: str | None = None


def state_path(home: Path) -> Path:
    return home / STATE_FILE


def read_state(home: Path) -> RuntimeState | None:
    """None when no `up` ran under this home (or its file is unreadable: then 1 broker)."""
    try:
        data = json.loads(state_path(home).read_text())
        protocol = data.get("security_protocol")
        state = RuntimeState(
            int(data["brokers"]),
            str(data["bootstrap"]),
            str(protocol) if protocol in SECURITY_PROTOCOLS else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if state.brokers in BROKER_COUNTS else None


def write_state(home: Path, layout: Layout, security_protocol: str | None = None) -> None:
    home.mkdir(parents=True, exist_ok=True)
    state: dict[str, object] = {"brokers": layout.brokers, "bootstrap": layout.bootstrap}
    if security_protocol is not None:
        state["security_protocol"] = security_protocol
    path = state_path(home)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)
