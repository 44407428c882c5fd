"""The worker's garbage collection (streams.app: ``tune_gc``, ``settle_heap``): young
generations collected less often, and what a started worker holds frozen out of the
collector's passes."""

from __future__ import annotations

import gc
import weakref

import faust
import pytest

from streams import app as app_module


async def test_a_started_worker_freezes_what_it_holds_after_collecting_its_garbage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once started (tables recovered), what the worker holds leaves the collector's
    passes; garbage is collected first, not frozen with it."""
    started: list[bool] = []

    async def faust_hook(_worker: object) -> None:  # Faust's own: the "ready" line
        started.append(True)

    monkeypatch.setattr(faust.Worker, "on_startup_finished", faust_hook)
    worker = object.__new__(app_module.Worker)
    held = [{"subject": n} for n in range(50_000)]
    gc.unfreeze()
    gc.disable()  # only the hook's own collection may free the garbage below
    cycle: list[object] = []
    cycle.append(cycle)
    dead = weakref.ref(Collectable(cycle))
    del cycle
    try:
        await app_module.Worker.on_startup_finished(worker)
        assert started == [True]
        assert gc.get_freeze_count() > len(held)
        assert dead() is None  # collected before the freeze
    finally:
        gc.unfreeze()
        gc.enable()


class Collectable:
    """Garbage in a reference cycle (only the collector frees it)."""

    def __init__(self, cycle: list[object]) -> None:
        self.cycle = cycle
        cycle.append(self)


def test_the_worker_collects_its_young_generation_less_often() -> None:
    before = gc.get_threshold()
    try:
        app_module.tune_gc()
        assert gc.get_threshold() == app_module.GC_THRESHOLDS
        assert app_module.GC_THRESHOLDS[0] > before[0]
    finally:
        gc.set_threshold(*before)
