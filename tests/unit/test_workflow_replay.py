"""Table tests of what the pure workflow takes as proven and how it answers a replay.

The worker's own key (``wf.SCHEDULER``) speaks only for the follow-up erasures a
request issued (``issued_followup``). An answer no request record keeps is kept by the
partition (``wf.remember``) for as long as its command could be acted on, so the same
signed bytes are answered the same; legal holds' commands age out like any other.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest

from privops.core import records as r
from privops.core import workflow as wf
from privops.core.admission import MAX_COMMAND_AGE
from privops.core.request import stable_id
from privops.core.ticks import Tick, TickKind
from privops.core.vocab import Capacity, Category, Channel, RequestState, RequestType, System
from tests.unit.test_command_rules import ctx as ctx  # the rules' context and data map
from tests.unit.test_command_rules import dm as dm
from tests.unit.test_command_rules import submit
from tests.unit.test_workflow import NOW, SUBJECT, TODAY, cmd_id

PARENT = "R-P"
CHILD = f"{PARENT}-F1"


def parent(*, issued: bool = True, subject: str = SUBJECT) -> wf.RequestRecord:
    """A closed erasure whose follow-up for the orders' payment records is issued, or due."""
    return wf.RequestRecord(
        request_id=PARENT,
        request_type=RequestType.erasure,
        subject_id=subject,
        actor="dpo",
        state=RequestState.partially_completed,
        received_on=TODAY - timedelta(days=40),
        created_at=NOW - timedelta(days=40),
        followups=[
            wf.FollowupItem(
                system=System.orders,
                categories=[Category.payment],
                due_at=NOW - timedelta(hours=1),
                issued=issued,
            )
        ],
    )


def followup(**kw: Any) -> r.RequestSubmitted:
    """R-P-F1 as ``_followups`` issues it."""
    fields: dict[str, Any] = {
        "command_id": stable_id(CHILD, "submitted"),
        "request_id": CHILD,
        "issued_at": NOW,
        "actor": wf.SCHEDULER,
        "request_type": RequestType.erasure,
        "subject_id": SUBJECT,
        "received_on": TODAY,
        "identity_verified_on": TODAY,
        "linked_request_id": PARENT,
    }
    fields.update(kw)
    return r.RequestSubmitted(**fields)


def place(**kw: Any) -> r.LegalHoldPlaced:
    fields: dict[str, Any] = {
        "command_id": cmd_id(),
        "request_id": "H-1",
        "issued_at": NOW,
        "actor": "dpo",
        "hold_id": "H-1",
        "subject_id": SUBJECT,
        "categories": [Category.contact],
        "reason": "litigation",
    }
    fields.update(kw)
    return r.LegalHoldPlaced(**fields)


# --- the worker's own key ---------------------------------------------------------------------


def test_the_followup_a_request_issued_is_what_its_tick_publishes(ctx: wf.Context) -> None:
    """``issued_followup`` recognises exactly what ``_followups`` sends."""
    due = parent(issued=False)
    ticked = wf.on_tick(due, Tick(request_id=PARENT, kind=TickKind.followup, at=NOW), ctx)
    assert ticked.record is not None
    [sent] = [o.record for o in ticked.out if isinstance(o.record, r.RequestSubmitted)]
    assert wf.followup_parent(sent) == PARENT
    assert wf.issued_followup(ticked.record, sent)
    assert not wf.issued_followup(due, sent)


FOLLOWUPS: list[Any] = [
    pytest.param(parent(), followup(), True, id="issued"),
    pytest.param(None, followup(), False, id="no-parent-here"),
    pytest.param(parent(issued=False), followup(), False, id="not-issued"),
    pytest.param(parent(subject="S-other"), followup(), False, id="parent-of-another-subject"),
    pytest.param(parent(), followup(subject_id="S-other"), False, id="another-subject"),
    pytest.param(parent(), followup(command_id="c-other"), False, id="another-command-id"),
    pytest.param(
        parent(),
        followup(request_id=f"{PARENT}-F2", command_id=stable_id(f"{PARENT}-F2", "submitted")),
        False,
        id="another-child",
    ),
    pytest.param(parent(), followup(request_type=RequestType.access), False, id="not-an-erasure"),
    pytest.param(parent(), followup(linked_request_id="R-X"), False, id="linked-elsewhere"),
    # Fields the worker never sets on it (review, session 44): taken, such a copy left the
    # follow-up waiting for an identity or an authority no one would record.
    pytest.param(parent(), followup(identity_verified_on=None), False, id="not-verified"),
    pytest.param(
        parent(), followup(identity_verified_on=TODAY - timedelta(days=1)), False, id="other-day"
    ),
    pytest.param(
        parent(),
        followup(capacity=Capacity.authorised, representative="a solicitor"),
        False,
        id="by-a-representative",
    ),
    pytest.param(parent(), followup(identity_received_on=TODAY), False, id="identity-received"),
    pytest.param(parent(), followup(withdrawn_channel=Channel.email), False, id="withdrawal-scope"),
]


@pytest.mark.parametrize(("issuer", "cmd", "taken"), FOLLOWUPS)
def test_the_worker_key_speaks_only_for_a_followup_its_request_issued(
    ctx: wf.Context, issuer: wf.RequestRecord | None, cmd: r.RequestSubmitted, taken: bool
) -> None:
    outcome = wf.on_command(None, cmd, ctx, issuer)

    if taken:
        assert outcome.rejected is None, outcome.message
        assert outcome.record is not None
        assert outcome.record.linked_request_id == PARENT
        return
    assert outcome.rejected == "unknown_signer"
    assert outcome.record is None
    assert outcome.out == []
    assert isinstance(outcome.answer, r.CommandRejected)
    assert [a.action for a in outcome.audit] == ["command_rejected"]
    # Turned away unremembered: the same follow-up issued again is decided afresh.
    assert wf.remember(None, cmd, outcome, ctx) is None


@pytest.mark.parametrize(
    "cmd",
    [
        pytest.param(
            r.RequestCancelled(
                command_id="c-1", request_id=PARENT, issued_at=NOW, actor=wf.SCHEDULER, reason="x"
            ),
            id="cancel",
        ),
        pytest.param(place(actor=wf.SCHEDULER), id="legal-hold"),
    ],
)
def test_the_worker_key_signs_no_other_command(ctx: wf.Context, cmd: r.Command) -> None:
    rec = parent()
    if isinstance(cmd, r.LegalHoldPlaced):
        outcome = wf.on_hold(cmd, ctx)
    else:
        outcome = wf.on_command(rec, cmd, ctx, wf.RequestRecord.model_validate(rec.model_dump()))
    assert outcome.rejected == "unknown_signer"
    assert outcome.record is None
    assert outcome.out == []


def test_a_redelivered_followup_is_answered_from_its_record(ctx: wf.Context) -> None:
    cmd = followup()
    first = wf.on_command(None, cmd, ctx, parent())
    assert first.record is not None
    again = wf.on_command(first.record, cmd, ctx, None)  # even with its parent gone
    assert isinstance(again.answer, r.CommandAccepted)
    assert again.record is None
    assert again.audit == []


def test_a_followup_is_dated_by_the_worker_clock_it_was_issued_on(ctx: wf.Context) -> None:
    """A worker whose clock is shifted (demos, deadline tests: settings.clock_offset_days)
    dates its follow-ups by it: they are not "ahead of the clock" of the DPO's commands."""
    shifted = dataclasses.replace(ctx, clock_offset=timedelta(days=30))
    outcome = wf.on_command(None, followup(), shifted, parent())
    assert outcome.rejected is None, outcome.message


# --- answers no record keeps --------------------------------------------------------------------


def test_a_refused_submission_is_answered_the_same_when_replayed(ctx: wf.Context) -> None:
    lift = submit(RequestType.restriction_lift)
    refused = wf.on_command(None, lift, ctx)
    assert refused.rejected == "not_restricted"
    kept = wf.remember(None, lift, refused, ctx)
    assert kept is not None

    restricted = dataclasses.replace(ctx, restricted=True)
    again = wf.on_command(None, lift, restricted, answered=kept)

    assert isinstance(again.answer, r.CommandRejected)
    assert isinstance(refused.answer, r.CommandRejected)
    assert (again.answer.reason, again.answer.message) == (
        refused.answer.reason,
        refused.answer.message,
    )
    assert (again.record, again.out, again.audit, again.rejected) == (None, [], [], None)
    assert wf.remember(kept, lift, again, restricted) is None  # nothing new to keep
    # A new command (a new command id) is decided afresh.
    assert wf.on_command(None, submit(RequestType.restriction_lift), restricted).rejected is None


def test_an_answer_a_record_keeps_is_not_kept_again(ctx: wf.Context) -> None:
    accepted = submit()
    outcome = wf.on_command(None, accepted, ctx)
    assert outcome.record is not None
    assert wf.remember(None, accepted, outcome, ctx) is None
    duplicate = submit()
    refused = wf.on_command(outcome.record, duplicate, ctx)
    assert refused.rejected == "duplicate"
    assert refused.record is not None  # its record keeps it
    assert wf.remember(None, duplicate, refused, ctx) is None


def test_answers_are_kept_as_long_as_their_command_could_be_acted_on(ctx: wf.Context) -> None:
    old = submit(RequestType.restriction_lift)
    kept = wf.remember(None, old, wf.on_command(None, old, ctx), ctx)
    assert kept is not None

    later = dataclasses.replace(ctx, now=NOW + MAX_COMMAND_AGE)
    new = submit(RequestType.restriction_lift, issued_at=later.now)
    both = wf.remember(kept, new, wf.on_command(None, new, later), later)
    assert both is not None
    assert set(both.answers) == {old.command_id, new.command_id}

    past = dataclasses.replace(ctx, now=NOW + MAX_COMMAND_AGE + timedelta(minutes=1))
    newest = submit(RequestType.restriction_lift, issued_at=past.now)
    pruned = wf.remember(both, newest, wf.on_command(None, newest, past), past)
    assert pruned is not None
    assert set(pruned.answers) == {new.command_id, newest.command_id}
    # The pruned one is now refused as too old, which is the same as forgotten.
    assert wf.on_command(None, old, past, answered=pruned).rejected == "invalid_command"


def test_the_window_is_the_wall_clock_s(ctx: wf.Context) -> None:
    """A worker's shifted clock does not age what the DPO's wall clock signed."""
    old = submit(RequestType.restriction_lift)
    kept = wf.remember(None, old, wf.on_command(None, old, ctx), ctx)
    shifted = dataclasses.replace(
        ctx, now=NOW + timedelta(days=30), clock_offset=timedelta(days=30)
    )
    new = submit(RequestType.restriction_lift)
    both = wf.remember(kept, new, wf.on_command(None, new, shifted), shifted)
    assert both is not None
    assert set(both.answers) == {old.command_id, new.command_id}


def test_a_command_too_old_or_dated_ahead_is_refused_and_only_the_one_ahead_kept(
    ctx: wf.Context,
) -> None:
    stale = submit(issued_at=NOW - MAX_COMMAND_AGE - timedelta(minutes=1))
    refused = wf.on_command(None, stale, ctx)
    assert refused.rejected == "invalid_command"
    assert wf.remember(None, stale, refused, ctx) is None  # refused as too old again anyway

    ahead = submit(issued_at=NOW + timedelta(hours=1))
    early = wf.on_command(None, ahead, ctx)
    assert early.rejected == "invalid_command"
    kept = wf.remember(None, ahead, early, ctx)
    assert kept is not None
    # An hour on it would be fresh: it is answered as it was, not acted on.
    hour_on = dataclasses.replace(ctx, now=NOW + timedelta(hours=1))
    again = wf.on_command(None, ahead, hour_on, answered=kept)
    assert isinstance(again.answer, r.CommandRejected)
    assert again.record is None


def test_the_partition_keeps_at_most_its_newest_answers(ctx: wf.Context) -> None:
    answers = wf.CommandAnswers(
        answers={
            f"c-{i}": wf.KeptAnswer(
                issued_at=NOW - timedelta(seconds=i), reason=wf.Reason.unknown_request
            )
            for i in range(wf.MAX_KEPT_ANSWERS)
        }
    )
    cmd = submit(RequestType.restriction_lift)
    kept = wf.remember(answers, cmd, wf.on_command(None, cmd, ctx), ctx)
    assert kept is not None
    assert len(kept.answers) == wf.MAX_KEPT_ANSWERS
    assert cmd.command_id in kept.answers
    assert f"c-{wf.MAX_KEPT_ANSWERS - 1}" not in kept.answers  # the oldest


def test_a_partitions_answers_at_their_longest_fit_one_kafka_record() -> None:
    """Every kept answer at its longest (a command id as long as one is read, the
    message cut at its bound) is one table value under Kafka's 1 MiB; a command id
    longer, or not plain, is refused where the command is read (review, session 44)."""
    longest = "c" * 128
    answers = wf.CommandAnswers(
        answers={
            f"{i:04}{longest[4:]}": wf.KeptAnswer(
                issued_at=NOW, reason=wf.Reason.unknown_request, message="m" * 300
            )
            for i in range(wf.MAX_KEPT_ANSWERS)
        }
    )
    assert len(json.dumps(answers.model_dump(mode="json")).encode()) < 1_048_576 // 2
    fields = submit(RequestType.restriction_lift).model_dump()
    r.RequestSubmitted.model_validate({**fields, "command_id": longest})
    for bad in (longest + "c", "c d", "ann@example.com", ""):
        with pytest.raises(ValueError, match="a command id is 1 to 128 letters"):
            r.RequestSubmitted.model_validate({**fields, "command_id": bad})
    with pytest.raises(ValueError, match="an id is at most 256 characters"):
        r.RequestSubmitted.model_validate({**fields, "request_id": "R" * 257})


# --- legal holds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "issued",
    [
        pytest.param(NOW - timedelta(days=400), id="signed-400-days-ago"),
        pytest.param(NOW + timedelta(days=1), id="dated-ahead"),
    ],
)
def test_a_legal_hold_command_outside_its_window_is_refused(ctx: wf.Context, issued: Any) -> None:
    outcome = wf.on_hold(place(issued_at=issued), ctx)
    assert outcome.rejected == "invalid_command"
    assert outcome.out == []


def test_a_legal_hold_answer_is_kept_and_a_replay_after_release_places_nothing(
    ctx: wf.Context,
) -> None:
    """Released, then dropped by an erasure: the holds no longer show the placement,
    and before, its replay placed the hold again."""
    placement = place()
    placed = wf.on_hold(placement, ctx)
    assert placed.rejected is None
    kept = wf.remember(None, placement, placed, ctx)
    assert kept is not None

    again = wf.on_hold(placement, ctx, kept)  # ctx.holds: none, as after the erasure

    assert isinstance(again.answer, r.CommandAccepted)
    assert isinstance(placed.answer, r.CommandAccepted)
    assert again.answer.message == placed.answer.message
    assert (again.answer.message or "").startswith("hold H-1 placed; hold records written for")
    assert (again.out, again.audit) == ([], [])
