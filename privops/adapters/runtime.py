"""The local runtime: a real Kafka cluster and schema registry from Maven Central, no Docker.

Kafka 4.x runs in KRaft combined mode from the ``kafka_2.13`` jars: one node by default,
or three (``up(brokers=3)``: a 3-voter quorum, replication 3, min ISR 2; the layout is
``privops.adapters.cluster``). The registry is Apicurio Registry 3.x (Confluent-compatible
API). Jars live under the privops cache (``~/.cache/privops`` by default), never in the
repository. Every operation is idempotent and reports what it did through a ``say``
callback so the CLI can print progress.

Security is on unless PRIVOPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT: every listener asks for
credentials (SCRAM-SHA-512 for clients, generated per home, see
``privops.adapters.credentials``), and once the brokers answer, the runtime grants the
ACLs of ``privops.adapters.acls`` as ``admin``, the only super user.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from privops.adapters import cluster, dev_certs
from privops.adapters.acls import ADMIN
from privops.adapters.cluster import BrokerTls, Layout, Node, Security
from privops.adapters.credentials import MECHANISM, write_private
from privops.adapters.probes import BrokerProbe
from privops.adapters.processes import (
    READY_TIMEOUT_S,
    STOP_TIMEOUT_S,
    JvmProcess,
    Say,
    quiet,
    require_java,
)
from privops.adapters.processes import Component as Component
from privops.adapters.processes import ComponentStatus as ComponentStatus
from privops.adapters.runtime_security import (
    admin_options,
    grant_acls,
    is_secure,
    passwords_for,
)
from privops.adapters.runtime_security import (
    client_settings as client_settings,
)
from privops.adapters.settings import Settings
from privops.contract import deploy_dir
from privops.core.errors import ConfigError, RuntimeUnavailable

REGISTRY_VERSION = os.environ.get("PRIVOPS_REGISTRY_VERSION", "3.0.9")
KAFKA_POM = deploy_dir() / "kafka" / "pom.xml"
KAFKA_TEMPLATE = deploy_dir() / "kafka" / "server.properties.template"
SECURITY_TEMPLATE = deploy_dir() / "kafka" / "security.properties.template"
KAFKA_LOG4J = deploy_dir() / "kafka" / "log4j2.properties"


class Kafka(JvmProcess):
    """One KRaft node (broker and controller): the single node, or one of a cluster's."""

    def __init__(self, settings: Settings, layout: Layout | None = None, node_id: int = 1) -> None:
        self.layout = layout or layout_of(settings, 1)
        self.node: Node = self.layout.nodes[node_id - 1]
        self.name = self.layout.name(self.node)
        # Every node of a cluster is formatted with the same id (set by KafkaCluster).
        self.cluster_id: str | None = None
        super().__init__(settings)

    @property
    def port(self) -> int:
        return self.node.broker_port

    @property
    def address(self) -> str:
        return self.node.address

    def ports(self) -> list[int]:
        return [self.node.broker_port, self.node.controller_port]

    @property
    def jars(self) -> Path:
        return self.settings.cache / "jars" / "kafka"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    def classpath(self) -> str:
        return f"{self.jars}/*"

    def ensure_installed(self, say: Say) -> None:
        if any(self.jars.glob("kafka_2.13-*.jar")):
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeUnavailable(
                "Maven (mvn) is needed once to fetch the Kafka jars from Maven Central: "
                "apt-get install maven"
            )
        say(f"fetching Kafka jars from Maven Central into {self.jars} (first run only)")
        self.jars.mkdir(parents=True, exist_ok=True)
        _run(
            [
                mvn,
                "-q",
                "-B",
                "--strict-checksums",
                "-f",
                str(KAFKA_POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={self.jars}",
            ],
            what="fetching the Kafka jars",
        )

    def formatted_id(self) -> str | None:
        """The cluster id this node's storage was formatted with, if it was."""
        try:
            meta = cluster.parse_properties((self.data_dir / "meta.properties").read_text())
        except FileNotFoundError:
            return None
        return meta.get("cluster.id")

    def prepare(self, say: Say) -> None:
        # A format step killed before it could remove its argument file left it behind.
        (self.root / FORMAT_ARGS).unlink(missing_ok=True)
        passwords = passwords_for(self.settings, formatted=self.formatted_id() is not None)
        security = (
            Security(SECURITY_TEMPLATE.read_text(), passwords[ADMIN], broker_tls(self.settings))
            if is_secure(self.settings)
            else None
        )
        write_private(
            self.properties,
            cluster.render_properties(
                KAFKA_TEMPLATE.read_text(), self.layout, self.node, self.data_dir, security
            ),
        )
        if self.formatted_id() is not None:
            return
        say(f"formatting {self.name} storage (KRaft)")
        # The SCRAM credentials go into the storage: the brokers authenticate each other
        # with them before any client could add one.
        scram = [f"{MECHANISM}=[name={user},password={pw}]" for user, pw in passwords.items()]
        tool = [
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id or cluster.new_cluster_id(),
            "-c",
            str(self.properties),
            *(arg for entry in scram for arg in ("--add-scram", entry)),
        ]
        # The tool and its arguments go in a java argument file (mode 0600, removed once
        # read): on the command line, `ps` showed the passwords to anyone on the machine.
        argfile = self.root / FORMAT_ARGS
        write_private(argfile, "".join(f"{java_argument(arg)}\n" for arg in tool))
        try:
            _run(
                [_java(), "-cp", self.classpath(), f"@{argfile}"],
                what=f"formatting {self.name} storage",
            )
        finally:
            argfile.unlink(missing_ok=True)

    def start(self, say: Say = quiet) -> bool:
        launched = super().start(say)
        grant_acls(self.settings, self.layout, say)
        return launched

    def command(self) -> list[str]:
        return [
            _java(),
            "-Xms256m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
            "-Dkafka.logs.dir=" + str(self.root),
            "-cp",
            self.classpath(),
            "kafka.Kafka",
            str(self.properties),
        ]

    def is_ready(self) -> bool:
        try:
            options = admin_options(self.settings, self.node.address)
        except OSError:  # its CA not there yet
            return False
        return broker_answers(options)


class KafkaCluster(Component):
    """The nodes of a multi-broker runtime, started and stopped together."""

    name = "kafka"

    def __init__(self, settings: Settings, layout: Layout) -> None:
        super().__init__(settings)
        self.layout = layout
        self.nodes = [Kafka(settings, layout, node.node_id) for node in layout.nodes]

    def start(self, say: Say = quiet) -> bool:
        running = all(node.pid() is not None for node in self.nodes)
        if running and self.brokers_seen() == self.layout.brokers:
            say(f"{self.layout.brokers} brokers already running at {self.layout.bootstrap}")
            grant_acls(self.settings, self.layout, say)
            return False
        self.nodes[0].ensure_installed(say)
        # Before the nodes prepare in parallel: each would otherwise write the file.
        passwords_for(self.settings, formatted=any(n.formatted_id() for n in self.nodes))
        cluster_id = self.cluster_id()
        for node in self.nodes:
            node.cluster_id = cluster_id
        self.format_in_parallel(say)
        launched = False
        for node in self.nodes:
            launched = node.launch(say) or launched
        for node in self.nodes:
            node.wait_ready(say)
        self.wait_for_every_broker(say)
        grant_acls(self.settings, self.layout, say)
        return launched

    def brokers_seen(self) -> int:
        return brokers_seen(admin_options(self.settings, self.layout.bootstrap))

    def cluster_id(self) -> str:
        """The id some node was already formatted with, else a new one."""
        for node in self.nodes:
            found = node.formatted_id()
            if found:
                return found
        return cluster.new_cluster_id()

    def format_in_parallel(self, say: Say) -> None:
        """Each format starts a JVM: three at once instead of one after the other."""
        fresh = [node for node in self.nodes if node.pid() is None and not node.formatted_id()]
        for node in fresh:
            node.root.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=max(1, len(fresh))) as pool:
            list(pool.map(lambda node: node.prepare(say), fresh))

    def wait_for_every_broker(self, say: Say, timeout: float = READY_TIMEOUT_S) -> None:
        """Ready means every broker is registered: replication 3 needs three."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.brokers_seen()
            if seen == self.layout.brokers:
                say(f"{seen} brokers ready at {self.layout.bootstrap}")
                return
            time.sleep(0.5)
        raise RuntimeUnavailable(
            f"only {self.brokers_seen()} of {self.layout.brokers} brokers "
            f"registered within {timeout:.0f}s; see the logs under {self.settings.home}/kafka-*"
        )

    def stop(self, say: Say = quiet) -> bool:
        """All nodes at once: one by one, the last would wait for a quorum already gone."""
        pids = [(node, node.terminate(say)) for node in reversed(self.nodes)]
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for node, pid in pids:
            if pid is not None:
                node.await_exit(say, pid, deadline)
        return any(pid is not None for _, pid in pids)

    def statuses(self) -> list[ComponentStatus]:
        return [node.status() for node in self.nodes]


class Registry(JvmProcess):
    name = "registry"

    @property
    def port(self) -> int:
        return self.settings.registry_port

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}/apis/ccompat/v7"

    @property
    def install_dir(self) -> Path:
        return self.settings.cache / "jars" / f"apicurio-registry-{REGISTRY_VERSION}"

    def runner_jar(self) -> Path | None:
        for name in ("quarkus-run.jar", f"apicurio-registry-app-{REGISTRY_VERSION}-runner.jar"):
            found = next(iter(self.install_dir.rglob(name)), None)
            if found:
                return found
        return None

    def ensure_installed(self, say: Say) -> None:
        if self.runner_jar() is not None:
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeUnavailable("Maven (mvn) is needed once to fetch Apicurio Registry")
        say(f"fetching Apicurio Registry {REGISTRY_VERSION} from Maven Central (first run only)")
        self.install_dir.mkdir(parents=True, exist_ok=True)
        _run(
            [
                mvn,
                "-q",
                "-B",
                "--strict-checksums",
                # No pom here to pin it: the plugin version is spelled out (as in KAFKA_POM).
                "org.apache.maven.plugins:maven-dependency-plugin:3.10.0:copy",
                f"-Dartifact=io.apicurio:apicurio-registry-app:{REGISTRY_VERSION}:tar.gz:all",
                f"-DoutputDirectory={self.install_dir}",
            ],
            what="fetching Apicurio Registry",
            cwd=self.install_dir,
        )
        archive = next(self.install_dir.glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(self.install_dir, filter="data")
        archive.unlink()
        if self.runner_jar() is None:
            raise RuntimeUnavailable(f"no runnable jar found in {self.install_dir}")

    def command(self) -> list[str]:
        jar = self.runner_jar()
        assert jar is not None
        db = self.root / "db" / "registry"
        return [
            _java(),
            "-Xms64m",
            "-Xmx384m",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.management.host=127.0.0.1",
            f"-Dquarkus.management.port={self.settings.registry_management_port}",
            f"-Dapicurio.datasource.url=jdbc:h2:file:{db};MODE=PostgreSQL",
            "-Dquarkus.log.level=WARN",
            "-jar",
            str(jar),
        ]

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.address}/subjects", timeout=2) as resp:  # noqa: S310
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def layout_of(settings: Settings, brokers: int | None = None) -> Layout:
    """The layout for ``brokers`` nodes; None: the count the last `up` chose, else 1."""
    if brokers is None:
        state = cluster.read_state(settings.home)
        brokers = state.brokers if state else 1
    return cluster.plan(
        settings.kafka_bootstrap,
        settings.kafka_controller_port,
        brokers,
        settings.kafka_node_port_step,
    )


def kafka_of(settings: Settings, layout: Layout) -> Component:
    return Kafka(settings, layout) if layout.brokers == 1 else KafkaCluster(settings, layout)


def components(settings: Settings, brokers: int | None = None) -> list[Component]:
    return [kafka_of(settings, layout_of(settings, brokers)), Registry(settings)]


def up(settings: Settings, say: Say = quiet, brokers: int | None = None) -> Layout:
    """Start Kafka (``brokers`` nodes, else as many as last time) and the registry."""
    layout = layout_of(settings, brokers)
    protocol = settings.kafka_security_protocol
    if protocol not in cluster.SECURITY_PROTOCOLS:
        raise ConfigError(
            f"PRIVOPS_KAFKA_SECURITY_PROTOCOL={protocol}: the local runtime listens on "
            f"loopback with {', '.join(cluster.SECURITY_PROTOCOLS)}"
        )
    last = cluster.read_state(settings.home)
    nodes = [Kafka(settings, layout, node.node_id) for node in layout.nodes]
    ran = (last.security_protocol or "SASL_PLAINTEXT") if last is not None else protocol
    if ran != protocol and any(node.pid() is not None for node in nodes):
        raise ConfigError(
            f"the local runtime under {settings.home} runs {ran}; stop it with `privops "
            f"local down` before `up` with {protocol}"
        )
    running = [p for p in _other_layouts(settings, layout) if p.pid() is not None]
    if running:
        current = running[0].layout.brokers
        raise ConfigError(
            f"the local runtime under {settings.home} runs {current} broker(s); "
            f"stop it with `privops local down` before `privops local up --brokers "
            f"{layout.brokers}`"
        )
    cluster.write_state(settings.home, layout, protocol)
    for component in components(settings, layout.brokers):
        component.start(say)
    return layout


def down(settings: Settings, say: Say = quiet) -> None:
    """Stop the registry and every Kafka node, whichever broker count started them."""
    for component in reversed(components(settings)):
        component.stop(say)
    for stray in _other_layouts(settings, layout_of(settings)):
        if stray.pid() is not None:
            stray.stop(say)


def status(settings: Settings) -> list[ComponentStatus]:
    return [row for component in components(settings) for row in component.statuses()]


def _other_layouts(settings: Settings, layout: Layout) -> list[Kafka]:
    """The nodes of the broker counts not chosen now: leftovers of an earlier `up`."""
    others = [layout_of(settings, n) for n in cluster.BROKER_COUNTS if n != layout.brokers]
    return [Kafka(settings, other, node.node_id) for other in others for node in other.nodes]


def broker_answers(client: Mapping[str, Any], timeout: float = 3.0) -> bool:
    """True when the broker answers a real Metadata request (not just an open port)."""

    async def probe() -> bool:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        broker = BrokerProbe(client, timeout)
        try:
            return await broker.problem() is None
        finally:
            await broker.close()

    return asyncio.run(probe())


def brokers_seen(options: Mapping[str, Any], timeout: float = 3.0) -> int:
    """How many brokers the cluster's metadata lists (0 when none answers)."""

    async def count() -> int:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        client = AIOKafkaClient(**options, request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(client.bootstrap(), timeout)
            metadata = await asyncio.wait_for(client.fetch_all_metadata(), timeout)
        except (TimeoutError, KafkaError, OSError):
            return 0
        finally:
            await client.close()
        return len(metadata.brokers())

    return asyncio.run(count())


def _java() -> str:
    return require_java()


FORMAT_ARGS = "format.args"
TLS_RENEW_BEFORE = timedelta(days=30)
log = logging.getLogger(__name__)
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
"""What the local runtime's SASL_SSL certificate names: its nodes listen on loopback."""


def broker_tls(settings: Settings) -> BrokerTls | None:
    """The SASL_SSL listener's certificate for 127.0.0.1 and localhost, signed by a CA
    made at the runtime's first SASL_SSL start (``cluster.kafka_ca``: what its clients
    trust by default); None for another protocol. Kept across restarts: a client holds
    the CA it connected with."""
    if settings.kafka_security_protocol != "SASL_SSL":
        return None
    where = settings.home / cluster.TLS_DIR
    prefix = cluster.KAFKA_TLS_PREFIX
    where.mkdir(parents=True, exist_ok=True)
    # The nodes of `--brokers 3` are prepared in parallel: one makes the set, the others
    # wait and read it (three different CAs would leave the brokers unable to talk).
    with (where / f".{prefix}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = dev_certs.usable(where, prefix, LOOPBACK_NAMES, margin=TLS_RENEW_BEFORE)
        if made is None:
            # A new set is a new CA: nodes still running hold the old one, and would no
            # longer reach the restarted one. Renewed early, at a start with none running.
            still = dev_certs.usable(where, prefix, LOOPBACK_NAMES, margin=timedelta(0))
            if still is not None and _nodes_running(settings):
                log.warning(
                    "the local runtime's SASL_SSL certificate expires within %d days: it is "
                    "renewed at the next `privops local up` after `privops local down`",
                    TLS_RENEW_BEFORE.days,
                )
                made = still
            else:
                made = dev_certs.development_certificates(where, LOOPBACK_NAMES, prefix=prefix)
        return BrokerTls(made.cert.read_text(), made.key.read_text(), made.ca.read_text())


def _nodes_running(settings: Settings) -> bool:
    layout = layout_of(settings)
    return any(Kafka(settings, layout, node.node_id).pid() is not None for node in layout.nodes)


def java_argument(arg: str) -> str:
    """``arg`` as one argument of a java ``@argfile``: quoted, its backslashes, quotes
    and line ends escaped (a raw line end ends an argument even inside quotes)."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def _run(cmd: list[str], *, what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if proc.returncode != 0:
        raise RuntimeUnavailable(
            f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}"
        )
    return proc.stdout
