"""Test-session wiring: one real Kafka broker + registry per session, on ports of its own.

The environment is set before anything reads settings, so every client, the CLI and
worker subprocesses all talk to the session's broker, never to a developer's running
`privops local up`. Integration fixtures start the runtime on first use and stop it at
the end; if it cannot start, the tests error (they never skip).

The runtime is secured as `privops local up` secures it (SASL/SCRAM and ACLs): every
client of the session, in this process or a subprocess, connects as a principal whose
password it finds in the runtime's credentials file under PRIVOPS_HOME (PRIVOPS_ENV=dev):
the worker as ``privops``, the CLI's DPO verbs as ``dpo``, connectors as ``system-<name>``,
and the helpers as whoever writes the topic (``acls.writer_of``).

Under pytest-xdist (`make test` runs the suite on several workers) each worker is a
session of its own: its own block of ports, home, broker and registry, so test modules
on different workers never see each other's topics, groups or workers.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis  # noqa: F401  # see the note below
import pytest

# hypothesis imported here, at collection, not first by its pytest plugin in the terminal
# summary, where pytest compiles it (assert rewriting) after the tests: on CPython 3.11
# that compile can fail with "SystemError: AST constructor recursion depth mismatch"
# (a known misfire: CPython gh-106905, pytest #10763), which failed a run of
# tests/agents/test_batching.py alone after all its tests had passed.

# Every port of a session lies in its own block from its base: the broker, its controller
# and the registry on fixed offsets below 100 (the layout `privops bench` uses), whatever a
# test starts (workers, extra brokers, Prometheus) at port(offset) above them. xdist worker
# gwN takes the Nth block above PRIVOPS_TEST_PORT_BASE, so blocks never overlap, and
# separate runs need bases at least PORT_BLOCK * workers apart. A fixed home per block: a
# session that died without stopping its broker is found (pid file) and stopped by the next.
PORT_BLOCK = 1000
_FIXED = 100  # the block's first ports, for the session's own broker and registry
_EPHEMERAL = 32768  # Linux's client ports start here: a listener there may find it taken
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
_BASE = int(os.environ.get("PRIVOPS_TEST_PORT_BASE", "29000")) + _WORKER * PORT_BLOCK
_HOME = Path(tempfile.gettempdir()) / f"privops-test-{_BASE}"


def _below_ephemeral(number: int) -> int:
    if not 1024 <= number < _EPHEMERAL:
        raise ValueError(
            f"test port {number} is outside 1024..{_EPHEMERAL - 1}: choose a "
            f"PRIVOPS_TEST_PORT_BASE (now {_BASE - _WORKER * PORT_BLOCK}) that leaves "
            f"{PORT_BLOCK} ports per xdist worker below {_EPHEMERAL}"
        )
    return number


def _java_options(given: str) -> str:
    """The test brokers and registries live for minutes and carry little traffic: the
    JIT's first tier only halves their start-up on two cores (measured: Kafka + registry
    41-56 s -> 17-26 s). Added once: xdist workers inherit the controller's environment."""
    first_tier = "-XX:TieredStopAtLevel=1"
    return given if first_tier in given else f"{first_tier} {given}".strip()


_below_ephemeral(_BASE + _FIXED - 1)
TEST_ENV = {
    "PRIVOPS_KAFKA_BOOTSTRAP": f"127.0.0.1:{_BASE + 92}",
    "PRIVOPS_KAFKA_CONTROLLER_PORT": str(_BASE + 93),
    "PRIVOPS_REGISTRY_URL": f"http://127.0.0.1:{_BASE + 81}/apis/ccompat/v7",
    "PRIVOPS_REGISTRY_PORT": str(_BASE + 81),
    "PRIVOPS_REGISTRY_MANAGEMENT_PORT": str(_BASE + 1),
    "PRIVOPS_HOME": str(_HOME),
    "PRIVOPS_TOPIC_PARTITIONS": "4",
    "PRIVOPS_PSEUDONYM_KEY": "test-pseudonym-key-0123456789",
    "JDK_JAVA_OPTIONS": _java_options(os.environ.get("JDK_JAVA_OPTIONS", "")),
}
os.environ.update(TEST_ENV)
# An xdist worker starts with COLUMNS=80 and LINES=24 in its environment, which a serial
# run does not have; the CLI's rich consoles would read them once, at import, and then
# ignore the width the CLI tests give CliRunner.
if "PYTEST_XDIST_WORKER" in os.environ:
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)

from privops.adapters import runtime  # noqa: E402
from privops.adapters.acls import principals  # noqa: E402
from privops.adapters.credentials import (  # noqa: E402
    CREDENTIALS_FILE,
    credentials_path,
    ensure_credentials,
)
from privops.adapters.kafka import client_options, create_topics  # noqa: E402
from privops.adapters.settings import Settings, get_settings  # noqa: E402
from privops.core.pii import looks_like_pii  # noqa: E402
from privops.core.topics import catalogue  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# The session's passwords exist before anything imports the worker's app (it reads its
# own at import) and stay for the whole session: the runtime is formatted with them.
ensure_credentials(credentials_path(_HOME), principals())


def _clear_home() -> None:
    """A previous session's broker data, logs and tables go; the passwords stay."""
    for child in _HOME.iterdir() if _HOME.exists() else ():
        if child.name == CREDENTIALS_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def port(offset: int) -> int:
    """A port of this session's own block (moves with PRIVOPS_TEST_PORT_BASE and the xdist
    worker); an offset past the block would land in another worker's."""
    if not 0 <= offset < PORT_BLOCK - _FIXED:
        raise ValueError(f"port offset {offset} is outside 0..{PORT_BLOCK - _FIXED - 1}")
    return _below_ephemeral(_BASE + _FIXED + offset)


@pytest.fixture
def holds_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connector runners made in the test start with the legal holds at their system
    read (none held), as a running runner's hold reader has them before an erasure goes
    ahead: for tests of the task path that do not run the reader (it has tests of its
    own, tests/unit/test_connector_holds.py)."""
    from privops.connectors.holds import HoldReader

    made = HoldReader.__init__

    def read(self: HoldReader, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        self.ready.set()

    monkeypatch.setattr(HoldReader, "__init__", read)


@pytest.fixture(scope="session")
def runtime_installed() -> None:
    """The Kafka jars and the registry in the shared cache, fetched by one session at a
    time: xdist workers start their brokers at once, and one that found another's
    half-copied jars would start from them."""
    settings = get_settings()
    settings.cache.mkdir(parents=True, exist_ok=True)
    with (settings.cache / "install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        runtime.Kafka(settings).ensure_installed(print)
        runtime.Registry(settings).ensure_installed(print)


@pytest.fixture(scope="session")
def local_runtime(runtime_installed: None) -> Iterator[Settings]:
    """The session's real Kafka broker and schema registry, with every topic created."""
    settings = get_settings()
    runtime.down(settings, print)  # a previous session's leftovers, if any
    _clear_home()
    try:
        # The registry's JVM boots while Kafka's does; `up` then finds it running and
        # only waits for it to be ready.
        runtime.Registry(settings).launch(print)
        runtime.up(settings, print)
        asyncio.run(create_topics(client_options(settings), catalogue(settings.topic_partitions)))
    except Exception:
        runtime.down(settings, print)
        raise
    yield settings
    for proc in _STARTED:  # a test that failed before its own `finally`
        proc.stop(kill=True)
    runtime.down(settings, print)  # logs stay under _HOME for post-mortems


_STARTED: list[WorkerProcess] = []


@dataclass
class WorkerProcess:
    """A real `privops worker` subprocess with its own web port and table directory."""

    proc: subprocess.Popen[bytes]
    web_port: int
    log: Path
    env: dict[str, str]

    @property
    def url(self) -> str:
        """https when the worker was given a certificate (PRIVOPS_WEB_TLS_CERT)."""
        scheme = "https" if self.env.get("PRIVOPS_WEB_TLS_CERT") else "http"
        return f"{scheme}://127.0.0.1:{self.web_port}"

    @property
    def trust(self) -> ssl.SSLContext | None:
        """What a client of this worker trusts: its PRIVOPS_WEB_CA (None: plain HTTP)."""
        if not self.url.startswith("https"):
            return None
        return ssl.create_default_context(cafile=self.env["PRIVOPS_WEB_CA"])

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_worker(
    settings: Settings,
    name: str,
    *,
    web_port: int,
    data_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> WorkerProcess:
    data_dir = data_dir or (settings.home / f"worker-{name}")
    log = settings.home / f"worker-{name}.log"
    env = {
        **os.environ,
        "PRIVOPS_WEB_PORT": str(web_port),
        "PRIVOPS_DATA_DIR": str(data_dir),
        "PRIVOPS_APP_ID": f"privops-{name}",
        # A new worker reads only what is produced after it is up: the topics already
        # hold every earlier test's traffic, which it must neither replay nor act on.
        "PRIVOPS_CONSUMER_OFFSET_RESET": "latest",
        # A CLI run given this env waits up to 40 s for the answer (a DPO's default is
        # 10): CI runs two sessions, each with brokers, workers and connectors, on two
        # cores. 40, so it stays under the tests' 60 s subprocess timeouts.
        "PRIVOPS_COMMAND_WAIT": "40",
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "privops.cli.main", "worker"],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=REPO,
    )
    worker = WorkerProcess(proc, web_port, log, env)
    _STARTED.append(worker)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"worker exited ({proc.returncode}); log:\n{log.read_text()[-4000:]}"
            )
        try:
            with urllib.request.urlopen(
                f"{worker.url}/health", timeout=2, context=worker.trust
            ) as resp:
                if resp.status == 200:
                    time.sleep(2)  # let the first fetch fix the "latest" positions
                    return worker
        except OSError:
            pass
        time.sleep(0.5)
    worker.stop(kill=True)
    raise RuntimeError(f"worker not healthy in 120 s; log:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def worker(local_runtime: Settings, request: pytest.FixtureRequest) -> Iterator[WorkerProcess]:
    """A worker shared by one module's tests (unique ids per test). Module-scoped, so no
    other test module's own worker ever runs beside it and acts on the same commands."""
    module = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    proc = start_worker(local_runtime, f"shared-{module}", web_port=port(66))
    yield proc
    proc.stop()


@pytest.fixture
def uid() -> str:
    """A short unique suffix so each test uses its own subjects, requests and groups;
    never one the audit would take for a phone number (an app id "...-0750592810" is
    refused: privops.adapters.settings)."""
    while True:
        suffix = uuid.uuid4().hex[:10]
        if not looks_like_pii(f"-{suffix}"):
            return suffix
