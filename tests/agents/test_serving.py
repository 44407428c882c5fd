"""Which subjects a worker answers for while its partitions move (agents.timers.serving).

A worker taking a partition over (after a restart, or from a dead member) holds an older
state of it until the changelog is read: answering then told a system that someone who
withdrew meanwhile may be contacted. Answering nothing until the whole recovery ends made
every subject of the worker wait for a takeover's minutes. A partition the worker kept
through the assignment is answered at once; one it takes over, once recovered; nothing
during the rebalance itself (review, session 32)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from faust.tables.manager import TableManager
from faust.types import TP

from agents import timers
from privops.core.topics import COMMANDS
from streams.app import app
from streams.tables import GLOBAL_VIEWS


def assignment(*partitions: int) -> set[TP]:
    """What Faust's signal carries: every topic's partitions (the commands topic stands
    for the co-partitioned ones), changelogs included."""
    tps = {TP(COMMANDS, p) for p in partitions}
    return tps | {TP("privops-consent-changelog", p) for p in partitions}


@pytest.fixture
def recovery(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Faust's recovery, as after the worker's first one: completed, nothing under way,
    every global view read; a fresh account of what is kept."""
    found = cast(TableManager, app.tables).recovery
    monkeypatch.setattr(found, "in_recovery", False)
    found.completed.set()
    found.signal_recovery_start.clear()
    monkeypatch.setattr(app, "rebalancing", False)
    monkeypatch.setattr(app, "rebalancing_count", 0)
    monkeypatch.setattr(timers, "_fresh", timers._Fresh())
    for view in GLOBAL_VIEWS:
        view.ready.set()
    return found


class Faust:
    """The flags and signals of one rebalance, in the order Faust sets and sends them:
    the revocation (``App.on_rebalance_start``: ``rebalancing`` and its count, in the
    consumer's listener), the assignment's signal (after the tables were told; the
    recovery begins), the recovery's end (``on_rebalance_complete``, then
    ``rebalancing`` cleared by ``on_rebalance_end``)."""

    def __init__(self, recovery: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.recovery, self.patch = recovery, monkeypatch

    def revoke(self) -> None:
        self.patch.setattr(app, "rebalancing", True)
        self.patch.setattr(app, "rebalancing_count", app.rebalancing_count + 1)

    def assign(self, *partitions: int) -> None:
        self.patch.setattr(self.recovery, "in_recovery", True)
        timers._on_assigned(app, assignment(*partitions))

    def recovered(self) -> None:
        timers._on_recovered(app)
        self.patch.setattr(self.recovery, "in_recovery", False)
        self.patch.setattr(app, "rebalancing", False)


def receivers(signal: Any) -> set[Any]:
    """A mode signal's receivers for the app (its per-sender registry: mode internals)."""
    return {r for found in signal._filter_receivers.values() for r in found}


def test_the_signals_are_connected() -> None:
    assert timers._on_assigned in receivers(app.on_partitions_assigned)
    assert timers._on_recovered in receivers(app.on_rebalance_complete)


def test_a_kept_partition_is_answered_during_a_recovery_a_taken_one_after(
    recovery: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    faust = Faust(recovery, monkeypatch)
    faust.revoke()
    faust.assign(0, 1)
    assert not timers.serving(0)  # the first recovery: nothing was held before
    faust.recovered()
    assert timers.serving(0)
    assert timers.serving(1)

    faust.revoke()  # a member joins: nothing is answered until this one's assignment
    assert not timers.serving(0)
    assert not timers.serving(1)
    faust.assign(1, 2)  # 0 went elsewhere, 2 came here; ``rebalancing`` stays True
    assert timers.serving(1)  # kept: answered during the recovery
    assert not timers.serving(2)  # taken: its changelog is being read
    assert not timers.serving(0)  # another's now (routed there, never read here)
    faust.recovered()
    assert timers.serving(2)


def test_the_end_of_a_recovery_a_rebalance_overtook_marks_nothing_current(
    recovery: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member joins just as a recovery ends: its end is signalled after the new
    revocation, and the router may already send this worker a partition it takes over
    in the new assignment (review, session 32)."""
    faust = Faust(recovery, monkeypatch)
    faust.revoke()
    faust.assign(0)
    faust.recovered()
    faust.revoke()
    faust.assign(0, 1)  # 1 taken ...
    faust.revoke()  # ... and another rebalance before its recovery ended
    timers._on_recovered(app)  # the older recovery's end, sent late
    monkeypatch.setattr(app, "rebalancing", False)
    monkeypatch.setattr(recovery, "in_recovery", False)
    assert not timers.serving(0)  # no assignment since the revocation
    assert not timers.serving(1)
    faust.assign(0, 1)
    assert timers.serving(0)
    assert not timers.serving(1)  # never read to its end
    faust.recovered()
    assert timers.serving(1)


def test_a_recovery_end_for_a_newer_signalled_recovery_is_not_this_ones(
    recovery: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    faust = Faust(recovery, monkeypatch)
    faust.revoke()
    faust.assign(0)
    recovery.signal_recovery_start.set()  # a newer recovery is signalled, not begun
    try:
        timers._on_recovered(app)
        assert not timers.serving(0)
    finally:
        recovery.signal_recovery_start.clear()


def test_nothing_is_answered_before_the_first_recovery_or_the_global_views(
    recovery: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    faust = Faust(recovery, monkeypatch)
    assert not timers.serving(0)  # no assignment yet
    faust.revoke()
    faust.assign(0)
    faust.recovered()
    GLOBAL_VIEWS[0].ready.clear()
    try:
        assert not timers.serving(0)
    finally:
        GLOBAL_VIEWS[0].ready.set()
    assert timers.serving(0)
