"""Long-running local processes (the Kafka nodes, the registry): pid file, log, readiness.

Starting is split in two (``launch``, then ``wait_ready``) because a node of a 3-node
KRaft quorum is never ready alone: every node must be launched before any one is
waited for. Stopping is split the same way so a whole cluster stops together instead of
its last node waiting for a quorum that has already gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from privops.adapters.settings import Settings
from privops.core.errors import RuntimeUnavailable

Say = Callable[[str], None]

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def quiet(_: str) -> None:
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
    """Something `privops local up` starts and `down` stops: one process or a group."""

    name: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def start(self, say: Say = quiet) -> bool:
        """Start and wait until ready. False if it was already running."""
        raise NotImplementedError

    def stop(self, say: Say = quiet) -> bool:
        """Stop. False if it was not running."""
        raise NotImplementedError

    def statuses(self) -> list[ComponentStatus]:
        raise NotImplementedError


class JvmProcess(Component):
    """A JVM process with a pid file, a log file, a port and a readiness probe."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
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

    def ports(self) -> list[int]:
        """Every port it listens on, checked free before it starts."""
        return [self.port]

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

    def statuses(self) -> list[ComponentStatus]:
        return [self.status()]

    def start(self, say: Say = quiet) -> bool:
        launched = self.launch(say)
        self.wait_ready(say)
        return launched

    def launch(self, say: Say = quiet) -> bool:
        """Start the process without waiting for it. False if it was already running."""
        pid = self.pid()
        if pid is not None:
            say(f"{self.name} already running (pid {pid}) at {self.address}")
            return False
        require_java()
        for port in self.ports():
            if port_in_use(port):
                raise RuntimeUnavailable(
                    f"port {port} on 127.0.0.1 is taken by another process, so {self.name} "
                    f"cannot start; stop that process or choose another port via PRIVOPS_* "
                    "settings"
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
        return True

    def wait_ready(self, say: Say = quiet, timeout: float = READY_TIMEOUT_S) -> None:
        started = time.monotonic()
        if self.pid() is not None and self.is_ready():
            return
        while time.monotonic() < started + timeout:
            pid = self.pid()
            if pid is None:
                raise RuntimeUnavailable(
                    f"{self.name} exited during start-up; see the last lines of {self.log_file}:\n"
                    + tail(self.log_file)
                )
            if self.is_ready():
                say(f"{self.name} ready in {time.monotonic() - started:.1f}s (pid {pid})")
                return
            time.sleep(0.5)
        raise RuntimeUnavailable(
            f"{self.name} did not become ready within {timeout:.0f}s; see {self.log_file}"
        )

    def stop(self, say: Say = quiet) -> bool:
        """Stop gracefully (SIGTERM, then SIGKILL after 30 s). False if it was not running."""
        pid = self.terminate(say)
        if pid is None:
            return False
        self.await_exit(say, pid, time.monotonic() + STOP_TIMEOUT_S)
        return True

    def terminate(self, say: Say = quiet) -> int | None:
        """Ask the process to stop; its pid, or None if it was not running."""
        pid = self.pid()
        if pid is None:
            say(f"{self.name} is not running")
            self.pid_file.unlink(missing_ok=True)
            return None
        say(f"stopping {self.name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        return pid

    def await_exit(self, say: Say, pid: int, deadline: float) -> None:
        """Wait for a terminated process until ``deadline``, then kill it."""
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None:
            say(f"{self.name} did not stop in time; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        say(f"{self.name} stopped")


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeUnavailable(
            "Java 17+ is needed to run Kafka and the registry: "
            "apt-get install openjdk-17-jre-headless"
        )
    return java


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
