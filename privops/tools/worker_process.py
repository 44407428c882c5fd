"""A real `privops worker` subprocess, for the programs that drive one (demo, bench).

They run the worker as a separate process, as production does, so what they show or
measure includes start-up, the HTTP API and the Kafka clients, not a shortcut.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from privops.core.errors import RuntimeUnavailable


def http_status(url: str, timeout: float = 2.0, trust: ssl.SSLContext | None = None) -> int | None:
    """The HTTP status a GET of `url` answers, or None if nothing answers; ``trust``:
    the CA an https worker's certificate is checked against."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=trust) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


@dataclass
class WorkerProcess:
    """A `privops worker` writing to `log`, its HTTP API at `url` (an https one's
    certificate checked against `trust`)."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    started: float
    ready_after: float = 0.0
    trust: ssl.SSLContext | None = None

    @classmethod
    def spawn(
        cls,
        env: Mapping[str, str],
        url: str,
        log: Path,
        cwd: Path | None = None,
        trust: ssl.SSLContext | None = None,
    ) -> Self:
        """Start a worker with exactly `env` as its environment; do not wait for it.

        RuntimeUnavailable if something answers at `url` already: another worker (a
        `privops worker &` left running) answered the new one's health check, and the
        demo ran its story against it while its own worker exited, the port taken
        (review, session 43)."""
        if http_status(f"{url}/health", trust=trust) is not None:
            raise RuntimeUnavailable(
                f"something already answers at {url} (another privops worker?): stop it, "
                "or give this one another port (PRIVOPS_WEB_PORT)"
            )
        started = time.perf_counter()
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "privops.cli.main", "worker"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                cwd=cwd,
            )
        return cls(proc, url, log, started, trust=trust)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_healthy(self, timeout: float) -> float:
        """Seconds from process start until /health answers 200."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if not self.running:
                raise RuntimeUnavailable(
                    f"the worker exited ({self.proc.returncode}) during start-up; see {self.log}"
                )
            if http_status(f"{self.url}/health", trust=self.trust) == 200:
                self.ready_after = time.perf_counter() - self.started
                return self.ready_after
            time.sleep(0.1)
        raise RuntimeUnavailable(
            f"the worker did not become healthy in {timeout:.0f} s; see {self.log}"
        )

    def stop(self, timeout: float = 60.0) -> None:
        """Terminate (SIGTERM, so it commits and closes its tables), kill if it hangs."""
        if self.running:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
