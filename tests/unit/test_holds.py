"""Placing and releasing legal holds (privops.core.holds.update_holds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from privops.core import records as r
from privops.core.facts import MAX_CLOCK_SKEW
from privops.core.holds import PLACED_AHEAD, LegalHold, update_holds
from privops.core.vocab import Category

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(days=2)
SUBJECT = "S-1"


def placed(hold_id: str = "H-1", at: datetime = T0) -> r.LegalHoldPlaced:
    return r.LegalHoldPlaced(
        command_id=f"cmd-place-{hold_id}",
        request_id="REQ-1",
        issued_at=at,
        actor="dpo",
        hold_id=hold_id,
        subject_id=SUBJECT,
        categories=[Category.cctv, Category.interactions],
        reason="claim 2026/17",
    )


def released(hold_id: str = "H-1", at: datetime = LATER) -> r.LegalHoldReleased:
    return r.LegalHoldReleased(
        command_id=f"cmd-release-{hold_id}",
        request_id="REQ-1",
        issued_at=at,
        actor="dpo",
        hold_id=hold_id,
        subject_id=SUBJECT,
    )


def hold(hold_id: str = "H-1", released_at: datetime | None = None) -> LegalHold:
    return LegalHold(
        hold_id=hold_id,
        subject_id=SUBJECT,
        categories=(Category.cctv, Category.interactions),
        reason="claim 2026/17",
        placed_at=T0,
        released_at=released_at,
    )


# (holds before, command, holds after, changed)
TABLE = [
    pytest.param([], placed(), [hold()], True, id="place"),
    pytest.param([hold()], placed(), [hold()], False, id="place-again-is-a-repeat"),
    pytest.param(
        [hold(released_at=LATER)], placed(), [hold(released_at=LATER)], False,
        id="released-id-is-not-placed-again",
    ),
    pytest.param([hold()], placed("H-2"), [hold(), hold("H-2")], True, id="second-hold"),
    pytest.param([hold()], released(), [hold(released_at=LATER)], True, id="release"),
    pytest.param(
        [hold(released_at=LATER)], released(at=LATER + timedelta(days=1)),
        [hold(released_at=LATER)], False, id="release-again-keeps-the-first-time",
    ),
    pytest.param([], released(), [], False, id="release-unknown-hold"),
    pytest.param(
        [hold(), hold("H-2")], released("H-2"), [hold(), hold("H-2", released_at=LATER)], True,
        id="release-one-of-two",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("before", "cmd", "after", "changed"), TABLE)
def test_update_holds(
    before: list[LegalHold],
    cmd: r.LegalHoldPlaced | r.LegalHoldReleased,
    after: list[LegalHold],
    changed: bool,
) -> None:
    update = update_holds(before, cmd)
    assert update.holds == tuple(after)
    assert update.changed is changed


def test_hold_is_active_between_placement_and_release() -> None:
    held = hold(released_at=LATER)
    assert not held.active_at(T0 - timedelta(minutes=6))
    # Placed by a DPO whose clock runs ahead: in force when the worker takes it, as its
    # record already reached the systems (review, session 33).
    assert held.active_at(T0 - timedelta(minutes=4))
    assert held.active_at(T0)
    assert not held.active_at(LATER)
    assert not held.active
    assert hold().active


def test_a_hold_dated_ahead_counts_as_far_as_a_command_may_be() -> None:
    assert PLACED_AHEAD == MAX_CLOCK_SKEW


def test_holds_round_trip_through_json() -> None:
    update = update_holds([], placed())
    dumped = [h.model_dump(mode="json") for h in update.holds]
    assert tuple(LegalHold.model_validate(h) for h in dumped) == update.holds
