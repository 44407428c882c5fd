"""/health and privops_worker_up follow the broker; shutdown with the broker gone is quick.

The session's real broker is frozen with SIGSTOP (it keeps accepting TCP connections but
answers nothing, the hardest case for a probe) and thawed in ``finally``.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from privops.adapters.runtime import Kafka
from privops.adapters.settings import Settings
from tests.conftest import port, start_worker
from tests.integration.helpers import http_json, wait_for

pytestmark = pytest.mark.integration


@contextmanager
def broker_frozen(settings: Settings) -> Iterator[None]:
    pid = Kafka(settings).pid()
    assert pid is not None, "the session's broker is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def worker_up_metric(url: str) -> float | None:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("privops_worker_up "):
                return float(line.split()[1])
    return None


def test_health_follows_the_broker_and_shutdown_is_bounded(local_runtime: Settings) -> None:
    worker = start_worker(local_runtime, "health", web_port=port(76))
    try:
        assert http_json(f"{worker.url}/health")[0] == 200
        assert worker_up_metric(worker.url) == 1.0
        with broker_frozen(local_runtime):
            _, body = wait_for(
                "/health to report the broker",
                lambda: (lambda r: r if r[0] == 503 else None)(http_json(f"{worker.url}/health")),
                timeout=30,
            )
            assert any("Kafka broker" in p for p in body["problems"]), body
            assert worker_up_metric(worker.url) == 0.0
        wait_for("/health 200 again", lambda: http_json(f"{worker.url}/health")[0] == 200, 60)
        assert worker_up_metric(worker.url) == 1.0

        with broker_frozen(local_runtime):
            wait_for("/health 503", lambda: http_json(f"{worker.url}/health")[0] == 503, 30)
            started = time.monotonic()
            worker.proc.terminate()
            worker.proc.wait(30)
            stopped_in = time.monotonic() - started
        assert stopped_in < 10, f"worker took {stopped_in:.1f} s to stop with the broker gone"
    finally:
        worker.stop(kill=True)
