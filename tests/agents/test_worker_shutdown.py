"""The worker's bound on shutdown (streams.app.Worker): short with the broker gone, long
enough with it answering for the consumer to leave its group.

The real watchdog timer and health state, with the grace and the cap shrunk and the
process exit recorded instead of taken. The broker-gone case on the real broker is
tests/integration/test_worker_health.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from streams import app as app_module
from streams.health import health


class Exits:
    def __init__(self) -> None:
        self.at: list[float] = []
        self.done = threading.Event()

    def __call__(self, _code: int) -> None:
        self.at.append(time.monotonic())
        self.done.set()


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> Exits:
    recorded = Exits()
    monkeypatch.setattr("os._exit", recorded)
    monkeypatch.setattr("logging.shutdown", lambda: None)
    return recorded


def watchdog(monkeypatch: pytest.MonkeyPatch, *, broker_answered: bool) -> app_module.Worker:
    worker = object.__new__(app_module.Worker)  # the watchdog needs no started worker
    worker.grace_seconds = 0.1
    worker.longest_seconds = 0.6
    monkeypatch.setattr(health, "checked", True)
    monkeypatch.setattr(health, "problems", [] if broker_answered else ["broker gone"])
    return worker


def test_with_the_broker_gone_the_worker_exits_after_the_grace(
    monkeypatch: pytest.MonkeyPatch, exits: Exits
) -> None:
    worker = watchdog(monkeypatch, broker_answered=False)
    started = time.monotonic()
    worker._arm_watchdog()
    assert exits.done.wait(2)
    assert exits.at[0] - started < 0.4


def test_with_the_broker_answering_the_shutdown_may_run_to_the_cap(
    monkeypatch: pytest.MonkeyPatch, exits: Exits
) -> None:
    worker = watchdog(monkeypatch, broker_answered=True)
    started = time.monotonic()
    worker._arm_watchdog()
    assert exits.done.wait(3)
    assert 0.55 <= exits.at[0] - started < 1.5
    assert len(exits.at) == 1
