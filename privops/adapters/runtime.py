"""The local runtime: a real Kafka broker and schema registry from Maven Central, no Docker.

Kafka 4.x runs in KRaft combined mode from the ``kafka_2.13`` jars; the registry is
Apicurio Registry 3.x (Confluent-compatible API). Jars live under the privops home
(``~/.cache/privops`` by default), never in the repository. Every operation is idempotent
and reports what it did through a ``say`` callback so the CLI can print progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import string
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from privops.adapters.probes import BrokerProbe
from privops.adapters.settings import Settings
from privops.contract import deploy_dir
from privops.core.errors import RuntimeUnavailable

Say = Callable[[str], None]

REGISTRY_VERSION = os.environ.get("PRIVOPS_REGISTRY_VERSION", "3.0.9")
KAFKA_POM = deploy_dir() / "kafka" / "pom.xml"
KAFKA_TEMPLATE = deploy_dir() / "kafka" / "server.properties.template"
KAFKA_LOG4J = deploy_dir() / "kafka" / "log4j2.properties"
READY_TIMEOUT_S = 90.0


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    ready: bool
    pid: int | None
    address: str
    log: Path


class Component:
    """A JVM process with a pid file, a log file, a port and a readiness probe."""

    name: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.home / self.name
        self.pid_file = self.root / f"{self.name}.pid"
        self.log_file = self.root / f"{self.name}.log"

    # -- to implement -------------------------------------------------------------------
    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def address(self) -> str:
        raise NotImplementedError

    def ensure_installed(self, say: Say) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def prepare(self, say: Say) -> None:
        """Anything to do before the first start (format storage, ...)."""

    # -- shared behaviour ---------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if we started it and it has exited
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def status(self) -> ComponentStatus:
        pid = self.pid()
        return ComponentStatus(
            name=self.name,
            running=pid is not None,
            ready=pid is not None and self.is_ready(),
            pid=pid,
            address=self.address,
            log=self.log_file,
        )

    def start(self, say: Say = _quiet) -> bool:
        """Start and wait until ready. Returns False if it was already running."""
        pid = self.pid()
        if pid is not None:
            if self.is_ready():
                say(f"{self.name} already running (pid {pid}) at {self.address}")
                return False
            say(f"{self.name} process {pid} is up but not ready yet; waiting")
            self._wait_ready(say, pid)
            return False
        _require_java()
        if _port_in_use(self.port):
            raise RuntimeUnavailable(
                f"port {self.port} on 127.0.0.1 is taken by another process, so {self.name} "
                f"cannot start; stop that process or choose another port via PRIVOPS_* settings"
            )
        self.ensure_installed(say)
        self.root.mkdir(parents=True, exist_ok=True)
        self.prepare(say)
        say(f"starting {self.name} on {self.address} (log: {self.log_file})")
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        self._wait_ready(say, proc.pid)
        return True

    def _wait_ready(self, say: Say, pid: int) -> None:
        started = time.monotonic()
        deadline = started + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise RuntimeUnavailable(
                    f"{self.name} exited during start-up; see the last lines of {self.log_file}:\n"
                    + _tail(self.log_file)
                )
            if self.is_ready():
                say(f"{self.name} ready in {time.monotonic() - started:.1f}s (pid {pid})")
                return
            time.sleep(0.5)
        raise RuntimeUnavailable(
            f"{self.name} did not become ready within {READY_TIMEOUT_S:.0f}s; see {self.log_file}"
        )

    def stop(self, say: Say = _quiet) -> bool:
        """Stop gracefully (SIGTERM, then SIGKILL after 30 s). False if it was not running."""
        pid = self.pid()
        if pid is None:
            say(f"{self.name} is not running")
            self.pid_file.unlink(missing_ok=True)
            return False
        say(f"stopping {self.name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            say(f"{self.name} did not stop in 30s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        say(f"{self.name} stopped")
        return True


class Kafka(Component):
    name = "kafka"

    @property
    def port(self) -> int:
        _, _, port = self.settings.kafka_bootstrap.rpartition(":")
        return int(port)

    @property
    def address(self) -> str:
        return self.settings.kafka_bootstrap

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

    def prepare(self, say: Say) -> None:
        template = string.Template(KAFKA_TEMPLATE.read_text())
        host, _, _ = self.settings.kafka_bootstrap.rpartition(":")
        if host not in ("127.0.0.1", "localhost"):
            raise RuntimeUnavailable(
                f"the local runtime only runs on loopback; PRIVOPS_KAFKA_BOOTSTRAP={host!r}"
            )
        self.properties.write_text(
            template.substitute(
                broker_port=self.port,
                controller_port=self.settings.kafka_controller_port,
                log_dirs=self.data_dir,
            )
        )
        if (self.data_dir / "meta.properties").exists():
            return
        say("formatting Kafka storage (KRaft)")
        cluster_id = (
            _run(
                [_java(), "-cp", self.classpath(), "kafka.tools.StorageTool", "random-uuid"],
                what="generating a cluster id",
            )
            .strip()
            .splitlines()[-1]
        )
        _run(
            [
                _java(),
                "-cp",
                self.classpath(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.properties),
            ],
            what="formatting Kafka storage",
        )

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
        return broker_answers(self.settings.kafka_bootstrap)


class Registry(Component):
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


def components(settings: Settings) -> list[Component]:
    return [Kafka(settings), Registry(settings)]


def up(settings: Settings, say: Say = _quiet) -> None:
    for component in components(settings):
        component.start(say)


def down(settings: Settings, say: Say = _quiet) -> None:
    for component in reversed(components(settings)):
        component.stop(say)


def status(settings: Settings) -> list[ComponentStatus]:
    return [component.status() for component in components(settings)]


def broker_answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when the broker answers a real Metadata request (not just an open port)."""

    async def probe() -> bool:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        broker = BrokerProbe(bootstrap, timeout)
        try:
            return await broker.problem() is None
        finally:
            await broker.close()

    return asyncio.run(probe())


def _java() -> str:
    return _require_java()


def _require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeUnavailable(
            "Java 17+ is needed to run Kafka and the registry: "
            "apt-get install openjdk-17-jre-headless"
        )
    return java


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _run(cmd: list[str], *, what: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, check=False)
    if proc.returncode != 0:
        raise RuntimeUnavailable(
            f"{what} failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}"
        )
    return proc.stdout


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
