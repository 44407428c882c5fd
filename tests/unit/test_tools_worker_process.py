"""The worker subprocess the demo and the bench drive: start-up failures are clear
errors naming the log, and stopping never leaves a process behind."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from privops.core.errors import RuntimeUnavailable
from privops.tools.worker_process import WorkerProcess, http_status


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def healthy_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _process(code: str, url: str, tmp_path: Path) -> WorkerProcess:
    """A stand-in for the worker: any Python process, so no Kafka is needed."""
    proc = subprocess.Popen([sys.executable, "-c", code])
    return WorkerProcess(proc, url, tmp_path / "worker.log", time.perf_counter())


def test_http_status(healthy_url: str) -> None:
    assert http_status(f"{healthy_url}/health") == 200
    assert http_status(f"{healthy_url}/nope") == 404
    assert http_status(f"http://127.0.0.1:{_closed_port()}/health") is None


def test_wait_healthy_returns_seconds_to_health(healthy_url: str, tmp_path: Path) -> None:
    worker = _process("import time; time.sleep(30)", healthy_url, tmp_path)
    try:
        assert 0 <= worker.wait_healthy(5.0) == worker.ready_after
    finally:
        worker.stop(5.0)
    assert not worker.running


@pytest.mark.parametrize(
    ("code", "timeout", "message"),
    [
        ("raise SystemExit(3)", 30.0, "the worker exited (3) during start-up"),
        ("import time; time.sleep(30)", 1.0, "the worker did not become healthy in 1 s"),
    ],
)
def test_wait_healthy_failures_name_the_log(
    code: str, timeout: float, message: str, tmp_path: Path
) -> None:
    worker = _process(code, f"http://127.0.0.1:{_closed_port()}", tmp_path)
    try:
        with pytest.raises(RuntimeUnavailable) as exc:
            worker.wait_healthy(timeout)
    finally:
        worker.stop(5.0)
    assert message in str(exc.value)
    assert str(worker.log) in str(exc.value)
    assert not worker.running


def test_a_worker_is_not_started_where_something_answers_already(
    healthy_url: str, tmp_path: Path
) -> None:
    """A `privops worker &` left running answered the demo's health check: the demo ran
    its story against that worker (another app id, another data map) while its own
    exited, the port taken (review, session 43)."""
    log = tmp_path / "worker.log"
    with pytest.raises(RuntimeUnavailable) as exc:
        WorkerProcess.spawn({}, healthy_url, log)
    assert f"something already answers at {healthy_url}" in str(exc.value)
    assert "PRIVOPS_WEB_PORT" in str(exc.value)
    assert not log.exists()  # nothing was started
