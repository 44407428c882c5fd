"""A subject's restriction and its lift, read out of order, leave the newer decision
standing (review: "the runner can execute an old lift after a newer restriction in one
fetch").

privops re-sends a task under its own task id with a later ``issued_at``, at an offset
after whatever privops decided for the subject since. Executed there, an old lift undid
a newer restriction (or an old restriction a newer lift): in one fetch, where the first
attempt is skipped for its re-send, and in fetches apart, where the first attempt was
answered retryable. Driven through ``_handle`` with real Avro answers, as the runner's
hardening tests are.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from privops.adapters.settings import Settings
from privops.connectors import Answer, Connector, ConnectorRunner
from privops.connectors.ledger import Ledger
from privops.core import records as r
from privops.core.vocab import System
from tests.unit.test_connector_runner_hardening import EMAIL, FAST, NOW, _Avro, _Fetch

pytestmark = pytest.mark.usefixtures("holds_read")

SUBJECT = "CUST-0001"
RESTRICT = "R-1:crm:restrict"
LIFT = "R-2:crm:lift_restriction"


def restrict(
    task_id: str = RESTRICT, *, attempt: int = 1, minutes: int = 0, **extra: Any
) -> r.Restrict:
    return r.Restrict(
        task_id=task_id,
        request_id=task_id.split(":")[0],
        subject_id=SUBJECT,
        system=System.crm,
        issued_at=NOW + timedelta(minutes=minutes),
        identifiers={"email": EMAIL},
        attempt=attempt,
        **extra,
    )


def lift(task_id: str = LIFT, *, attempt: int = 1, minutes: int = 0) -> r.LiftRestriction:
    return r.LiftRestriction(
        task_id=task_id,
        request_id=task_id.split(":")[0],
        subject_id=SUBJECT,
        system=System.crm,
        issued_at=NOW + timedelta(minutes=minutes),
        identifiers={"email": EMAIL},
        attempt=attempt,
    )


class _Flags(Connector):
    """A system's restriction flag (and its marketing objection, kept apart), each call
    recorded as (task id, attempt); ``busy`` task ids answer "not now" once, ``refused``
    ones fail for good, changing nothing."""

    system = System.crm

    def __init__(self, *busy: str, refused: tuple[str, ...] = ()) -> None:
        self.restricted = False
        self.objected = False
        self.calls: list[tuple[str, int]] = []
        self.busy = set(busy)
        self.refused = set(refused)

    def _not_now(self, task: r.Task) -> bool:
        self.calls.append((task.task_id, task.attempt))
        if task.task_id in self.busy:
            self.busy.discard(task.task_id)
            return True
        return False

    async def restrict(self, task: r.Restrict) -> Answer:
        if self._not_now(task):
            return Answer.failed("locked", retryable=True)
        if task.marketing_objection:
            self.objected = True
        else:
            self.restricted = True
        return Answer.completed(3)

    async def lift_restriction(self, task: r.LiftRestriction) -> Answer:
        if self._not_now(task):
            return Answer.failed("locked", retryable=True)
        if task.task_id in self.refused:
            return Answer.failed("no such account type", retryable=False)
        self.restricted = False
        return Answer.completed(3)


def _runner(connector: Connector, fetched: dict[bytes, r.Record]) -> tuple[ConnectorRunner, _Avro]:
    serde = _Avro(fetched)
    runner = ConnectorRunner(connector, Settings(), retry=FAST, clock=lambda: NOW)
    runner.serde = serde
    return runner, serde


def _answers(serde: _Avro, fetch: _Fetch) -> list[tuple[str, int, str, int]]:
    """(task id, attempt, outcome, records) of each answer sent, as privops reads it."""
    out = []
    for _, value in fetch.sent:
        answer = serde.read(value)
        assert isinstance(answer, r.TaskResult)
        records = answer.records_affected if isinstance(answer, r.TaskCompleted) else -1
        out.append((answer.task_id, answer.attempt, type(answer).__name__, records))
    return out


# --- in one fetch ---------------------------------------------------------------------


@pytest.mark.parametrize("step", [5, 0], ids=["minutes-apart", "one-instant"])
async def test_an_old_lift_resent_after_a_newer_restriction_in_one_fetch_is_not_executed(
    tmp_path: Path, step: int
) -> None:
    """A lift (10:00) the system did not answer within its SLA, a restriction of the
    subject decided after it (10:05), then privops' re-send of the lift (10:10): read
    in one fetch, the first attempt gave way to the re-send, which lifted the newer
    restriction. The re-send is answered ``completed`` with no record changed (kept, so
    a further re-send gets it again), and the restriction stands. Issued at one instant
    (one clock tick of privops'), the one read first is the older."""
    connector = _Flags()
    runner, serde = _runner(
        connector,
        {
            b"lift-1": lift(minutes=0),
            b"restrict": restrict(minutes=step),
            b"lift-2": lift(attempt=2, minutes=2 * step),
            b"lift-3": lift(attempt=3, minutes=3 * step),
        },
    )
    ledger = Ledger(tmp_path / "l.db")
    fetch = _Fetch(runner, ledger)

    await fetch((b"lift-1", 10), (b"restrict", 11), (b"lift-2", 12))
    await fetch((b"lift-3", 13))

    assert connector.restricted
    assert connector.calls == [(RESTRICT, 1)]
    assert fetch.committed == [11, 12, 13, 14]
    assert _answers(serde, fetch) == [
        (RESTRICT, 1, "TaskCompleted", 3),
        (LIFT, 2, "TaskCompleted", 0),
        (LIFT, 3, "TaskCompleted", 0),  # from the ledger
    ]
    assert runner.stats.duplicates == 1
    assert isinstance(ledger.get(LIFT), r.TaskCompleted)


async def test_an_old_restriction_resent_after_a_newer_lift_in_one_fetch_is_not_executed(
    tmp_path: Path,
) -> None:
    """The mirror: a restriction re-sent after the lift that followed it restricted
    the subject again, though privops had lifted it."""
    later = "R-3:crm:restrict"
    connector = _Flags()
    runner, serde = _runner(
        connector,
        {
            b"restrict": restrict(minutes=0),  # restricted, and answered in time
            b"again-1": restrict(later, minutes=20),
            b"lift": lift(minutes=25),
            b"again-2": restrict(later, attempt=2, minutes=30),
        },
    )
    fetch = _Fetch(runner, Ledger(tmp_path / "l.db"))

    await fetch((b"restrict", 1))
    await fetch((b"again-1", 2), (b"lift", 3), (b"again-2", 4))

    assert not connector.restricted
    assert connector.calls == [(RESTRICT, 1), (LIFT, 1)]
    assert _answers(serde, fetch)[-1] == (later, 2, "TaskCompleted", 0)


# --- in fetches apart, and after a restart --------------------------------------------


@pytest.mark.parametrize("restart", [False, True], ids=["same-run", "after-restart"])
async def test_an_old_lift_answered_retryable_is_not_executed_after_a_newer_restriction(
    tmp_path: Path, restart: bool
) -> None:
    """Read apart, the lift's first attempt answered "not now" (not kept), the newer
    restriction executed, and privops' re-send of the lift then lifted it: as in one
    fetch, and so after a restart (what was read is in the ledger's file)."""
    connector = _Flags(LIFT)
    fetched: dict[bytes, r.Record] = {
        b"lift-1": lift(minutes=0),
        b"restrict": restrict(minutes=5),
        b"lift-2": lift(attempt=2, minutes=10),
    }
    runner, serde = _runner(connector, fetched)
    ledger = Ledger(tmp_path / "l.db")
    fetch = _Fetch(runner, ledger)

    await fetch((b"lift-1", 10))
    await fetch((b"restrict", 11))
    if restart:
        ledger.close()
        runner, serde = _runner(connector, fetched)
        fetch = _Fetch(runner, Ledger(tmp_path / "l.db"))
    await fetch((b"lift-2", 12))

    assert connector.restricted
    assert connector.calls == [(LIFT, 1), (RESTRICT, 1)]
    assert _answers(serde, fetch)[-1] == (LIFT, 2, "TaskCompleted", 0)


# --- what still executes --------------------------------------------------------------


async def test_a_newer_decision_read_after_an_older_one_still_executes(tmp_path: Path) -> None:
    """Only an older task is held back: a lift re-sent after the restriction before it
    is the newer decision, executed (the restriction's own re-send, from the ledger)."""
    connector = _Flags(LIFT)
    runner, serde = _runner(
        connector,
        {
            b"restrict-1": restrict(minutes=0),
            b"lift-1": lift(minutes=5),
            b"restrict-2": restrict(attempt=2, minutes=6),
            b"lift-2": lift(attempt=2, minutes=10),
        },
    )
    fetch = _Fetch(runner, Ledger(tmp_path / "l.db"))

    await fetch((b"restrict-1", 1), (b"lift-1", 2))
    await fetch((b"restrict-2", 3), (b"lift-2", 4))

    assert not connector.restricted
    assert connector.calls == [(RESTRICT, 1), (LIFT, 1), (LIFT, 2)]
    assert _answers(serde, fetch)[-2:] == [
        (RESTRICT, 2, "TaskCompleted", 3),  # replayed
        (LIFT, 2, "TaskCompleted", 3),
    ]


async def test_an_objection_is_no_restriction_and_is_never_held_back(tmp_path: Path) -> None:
    """A marketing objection is kept apart from any restriction (no lift undoes it):
    re-sent after a lift, it is executed."""
    objection = "R-4:crm:restrict"
    connector = _Flags(objection)
    runner, _ = _runner(
        connector,
        {
            b"object-1": restrict(objection, minutes=0, marketing_objection=True),
            b"lift": lift(minutes=5),
            b"object-2": restrict(objection, attempt=2, minutes=10, marketing_objection=True),
        },
    )
    fetch = _Fetch(runner, Ledger(tmp_path / "l.db"))

    await fetch((b"object-1", 1))
    await fetch((b"lift", 2), (b"object-2", 3))

    assert connector.objected
    assert connector.calls == [(objection, 1), (LIFT, 1), (objection, 2)]


async def test_a_later_decision_that_failed_holds_nothing_back(tmp_path: Path) -> None:
    """A later lift that failed did not lift, for all the runner knows: the older
    restriction's re-send is executed in its turn (privops follows the failure up), not
    answered as overtaken by a lift that never happened."""
    connector = _Flags(RESTRICT, refused=(LIFT,))
    runner, serde = _runner(
        connector,
        {
            b"restrict-1": restrict(minutes=0),
            b"lift": lift(minutes=5),
            b"restrict-2": restrict(attempt=2, minutes=10),
        },
    )
    fetch = _Fetch(runner, Ledger(tmp_path / "l.db"))

    await fetch((b"restrict-1", 1))
    await fetch((b"lift", 2), (b"restrict-2", 3))

    assert connector.restricted
    assert connector.calls == [(RESTRICT, 1), (LIFT, 1), (RESTRICT, 2)]
    assert _answers(serde, fetch)[-2:] == [
        (LIFT, 1, "TaskFailed", -1),
        (RESTRICT, 2, "TaskCompleted", 3),
    ]
