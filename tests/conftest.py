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
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# A fixed home per port base: a session that died without stopping its broker is found
# (pid file) and stopped by the next one. PRIVOPS_TEST_PORT_BASE separates parallel runs.
_BASE = int(os.environ.get("PRIVOPS_TEST_PORT_BASE", "29000"))  # keep below 32768 (ephemeral)
_HOME = Path(tempfile.gettempdir()) / f"privops-test-{_BASE}"
TEST_ENV = {
    "PRIVOPS_KAFKA_BOOTSTRAP": f"127.0.0.1:{_BASE + 92}",
    "PRIVOPS_KAFKA_CONTROLLER_PORT": str(_BASE + 93),
    "PRIVOPS_REGISTRY_URL": f"http://127.0.0.1:{_BASE - 919}/apis/ccompat/v7",
    "PRIVOPS_REGISTRY_PORT": str(_BASE - 919),
    "PRIVOPS_REGISTRY_MANAGEMENT_PORT": str(_BASE + 1),
    "PRIVOPS_HOME": str(_HOME),
    "PRIVOPS_TOPIC_PARTITIONS": "4",
    "PRIVOPS_PSEUDONYM_KEY": "test-pseudonym-key-0123456789",
}
os.environ.update(TEST_ENV)

from privops.adapters import runtime  # noqa: E402
from privops.adapters.acls import principals  # noqa: E402
from privops.adapters.credentials import (  # noqa: E402
    CREDENTIALS_FILE,
    credentials_path,
    ensure_credentials,
)
from privops.adapters.kafka import client_options, create_topics  # noqa: E402
from privops.adapters.settings import Settings, get_settings  # noqa: E402
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
    """A port of this session's own range (moves with PRIVOPS_TEST_PORT_BASE)."""
    return _BASE - 3000 + offset


@pytest.fixture(scope="session")
def local_runtime() -> Iterator[Settings]:
    """The session's real Kafka broker and schema registry, with every topic created."""
    settings = get_settings()
    runtime.down(settings, print)  # a previous session's leftovers, if any
    _clear_home()
    try:
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
        return f"http://127.0.0.1:{self.web_port}"

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
            with urllib.request.urlopen(f"{worker.url}/health", timeout=2) as resp:
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
    """A short unique suffix so each test uses its own subjects, requests and groups."""
    return uuid.uuid4().hex[:10]
