"""The worker's bound on shutdown (streams.app.Worker): short with the broker gone, long
enough with it answering for the consumer to leave its group.

The real watchdog timer and health state, with the grace and the cap shrunk and the
process exit recorded instead of taken. The broker-gone case on the real broker is
tests/integration/test_worker_health.py.
"""

from __future__ import annotations

import gc
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


@pytest.mark.parametrize(
    ("broker_answered", "earliest", "latest"),
    [(False, 0.09, 0.4), (True, 0.55, 1.5)],
    ids=["broker gone: the grace", "broker answering: up to the cap"],
)
def test_the_shutdown_is_cut_after_the_grace_unless_the_broker_answers(
    monkeypatch: pytest.MonkeyPatch,
    exits: Exits,
    broker_answered: bool,
    earliest: float,
    latest: float,
) -> None:
    worker = watchdog(monkeypatch, broker_answered=broker_answered)
    started = time.monotonic()
    worker._arm_watchdog()
    assert exits.done.wait(3)
    assert earliest <= exits.at[0] - started < latest
    assert len(exits.at) == 1


def test_a_stop_signal_freezes_the_heap_before_the_tables_stop(
    monkeypatch: pytest.MonkeyPatch, exits: Exits
) -> None:
    """Faust's RocksDB store collects the whole heap as each table stops; what the worker
    holds is frozen first, so those collections pass over it (Worker._stopping)."""
    worker = watchdog(monkeypatch, broker_answered=False)
    held = [{"subject": n} for n in range(100_000)]  # what a loaded worker holds
    gc.unfreeze()
    try:
        worker._stopping()
        assert gc.get_freeze_count() > len(held)
    finally:
        gc.unfreeze()
    assert exits.done.wait(3)  # and the shutdown is bounded as before
