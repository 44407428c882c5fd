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
    monkeypatch.setattr(app, "rebalancing", False)
    monkeypatch.setattr(timers, "_fresh", timers._Fresh())
    for view in GLOBAL_VIEWS:
        view.ready.set()
    return found


def receivers(signal: Any) -> set[Any]:
    """A mode signal's receivers for the app (its per-sender registry: mode internals)."""
    return {r for found in signal._filter_receivers.values() for r in found}


def test_the_signals_are_connected() -> None:
    assert timers._on_assigned in receivers(app.on_partitions_assigned)
    assert timers._on_recovered in receivers(app.on_rebalance_complete)


def test_a_kept_partition_is_answered_during_a_recovery_a_taken_one_after(
    recovery: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    timers._on_assigned(app, assignment(0, 1))
    timers._on_recovered(app)
    assert timers.serving(0)
    assert timers.serving(1)

    monkeypatch.setattr(app, "rebalancing", True)  # a member joins: nothing is answered
    assert not timers.serving(0)
    timers._on_assigned(app, assignment(1, 2))  # 0 went elsewhere, 2 came here
    assert not timers.serving(1)  # still rebalancing
    monkeypatch.setattr(app, "rebalancing", False)
    # The rebalance ended; the recovery has not visibly started yet: the assignment is
    # pending all the same (the window where a taken partition was answered stale).
    assert timers.serving(1)
    assert not timers.serving(2)
    monkeypatch.setattr(recovery, "in_recovery", True)
    assert timers.serving(1)
    assert not timers.serving(2)
    assert not timers.serving(0)  # another's now (routed there, never read here)
    timers._on_recovered(app)
    monkeypatch.setattr(recovery, "in_recovery", False)
    assert timers.serving(2)


def test_a_partition_taken_before_its_last_recovery_ended_is_not_kept_fresh(
    recovery: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebalance in the middle of a recovery: the partition taken over was never read
    to its end, so keeping it through the next assignment does not make it current."""
    timers._on_assigned(app, assignment(0))
    timers._on_recovered(app)
    timers._on_assigned(app, assignment(0, 1))  # 1 taken; its recovery cut short ...
    timers._on_assigned(app, assignment(0, 1))  # ... by another rebalance that keeps it
    monkeypatch.setattr(recovery, "in_recovery", True)
    assert timers.serving(0)
    assert not timers.serving(1)


def test_nothing_is_answered_before_the_first_recovery_or_the_global_views(
    recovery: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recovery.completed.clear()
    try:
        assert not timers.serving(0)
    finally:
        recovery.completed.set()
    timers._on_assigned(app, assignment(0))
    timers._on_recovered(app)
    GLOBAL_VIEWS[0].ready.clear()
    try:
        assert not timers.serving(0)
    finally:
        GLOBAL_VIEWS[0].ready.set()
    assert timers.serving(0)
