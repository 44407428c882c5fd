"""Table tests of how the pure workflow answers commands (privacy.command-results).

Every command gets one answer. A rejected one gets CommandRejected with a stable reason
code, one `command_rejected` audit step and nothing else: no task, notice or directive,
and the request unchanged but for the memory of the answer, so that a redelivery of the
same command id is answered the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.holds import LegalHold
from privops.core.request import MAX_REMEMBERED_ANSWERS, Answered
from privops.core.topics import SUBJECT_DIRECTIVES, legal_holds_topic
from privops.core.vocab import Category, FeeGround, RequestState, RequestType, System
from tests.unit.test_workflow import ASKED, NOW, SUBJECT, TODAY, answer_all, cmd_id, identity_map

S = RequestState
T = RequestType
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)  # a release signed after its hold, within the clock skew allowed


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


@pytest.fixture
def ctx(dm: DataMap) -> wf.Context:
    return wf.Context(
        now=NOW, today=TODAY, datamap=dm, subject_ref="sr_rules", identity=identity_map()
    )


def submit(kind: T = T.erasure, **kw: Any) -> r.RequestSubmitted:
    fields: dict[str, Any] = {
        "command_id": cmd_id(),
        "request_id": "R-1",
        "issued_at": NOW,
        "actor": "dpo",
        "request_type": kind,
        "subject_id": SUBJECT,
        "received_on": TODAY,
        "identity_verified_on": TODAY,
    }
    fields.update(kw)
    return r.RequestSubmitted(**fields)


def command(model: type[r.Command], **kw: Any) -> r.Command:
    fields: dict[str, Any] = {
        "command_id": cmd_id(),
        "request_id": "R-1",
        "issued_at": NOW,
        "actor": "dpo",
    }
    fields.update(kw)
    return model(**fields)


def run(rec: wf.RequestRecord | None, cmd: r.Command, ctx: wf.Context) -> wf.RequestRecord:
    outcome = wf.on_command(rec, cmd, ctx)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    return outcome.record


# --- request records a rejected command meets -----------------------------------------------

Given = Callable[[wf.Context], wf.RequestRecord | None]


def no_request(_ctx: wf.Context) -> None:
    return None


def unverified(ctx: wf.Context) -> wf.RequestRecord:
    return run(None, submit(identity_verified_on=None), ctx)


def access(ctx: wf.Context) -> wf.RequestRecord:
    return run(None, submit(T.access), ctx)


def extended(ctx: wf.Context) -> wf.RequestRecord:
    once = command(r.DeadlineExtended, reason="complex", notified_on=TODAY)
    return run(access(ctx), once, ctx)


def completed(ctx: wf.Context) -> wf.RequestRecord:
    rec, _ = answer_all(run(None, submit(), ctx), ctx)
    assert rec.state is S.completed
    return rec


def cancelled(ctx: wf.Context) -> wf.RequestRecord:
    return run(unverified(ctx), command(r.RequestCancelled, reason="withdrawn"), ctx)


REJECTED: list[Any] = [
    # names the ten-year audit cannot keep (issue 13: this actor crashed the workflow)
    ("actor-email", no_request, lambda: submit(actor="jane.dpo@example.com"), "invalid_command"),
    ("actor-spaces", no_request, lambda: submit(actor="Jane Doe"), "invalid_command"),
    ("actor-too-long", no_request, lambda: submit(actor="d" * 65), "invalid_command"),
    (
        "actor-on-a-request",
        unverified,
        lambda: command(r.IdentityVerified, actor="jane@example.com", verified_on=TODAY),
        "invalid_command",
    ),
    ("request-id-email", no_request, lambda: submit(request_id="a@b.example"), "invalid_command"),
    # a lift needs an active restriction
    ("lift-unrestricted", no_request, lambda: submit(T.restriction_lift), "not_restricted"),
    # one extension only
    (
        "second-extension",
        extended,
        lambda: command(r.DeadlineExtended, reason="more", notified_on=TODAY),
        "already_extended",
    ),
    # a finished request takes no command
    (
        "cancel-completed",
        completed,
        lambda: command(r.RequestCancelled, reason="x"),
        "request_finished",
    ),
    (
        "refuse-completed",
        completed,
        lambda: command(r.RequestRefused, reason="x", ground="excessive"),
        "request_finished",
    ),
    (
        "answer-completed",
        completed,
        lambda: command(r.RequestAnswered, reason="x"),
        "request_finished",
    ),
    (
        "cancel-cancelled",
        cancelled,
        lambda: command(r.RequestCancelled, reason="again"),
        "request_finished",
    ),
    (
        "verify-cancelled",
        cancelled,
        lambda: command(r.IdentityVerified, verified_on=TODAY),
        "request_finished",
    ),
    # unknown ids
    (
        "verify-unknown",
        no_request,
        lambda: command(r.IdentityVerified, verified_on=TODAY),
        "unknown_request",
    ),
    (
        "cancel-unknown",
        no_request,
        lambda: command(r.RequestCancelled, reason="x"),
        "unknown_request",
    ),
    ("resubmit", unverified, lambda: submit(), "duplicate"),
    # dates out of order
    (
        "verified-before-received",
        no_request,
        lambda: submit(identity_verified_on=TODAY - DAY),
        "dates_out_of_order",
    ),
    (
        "information-after-verified-at-submission",
        no_request,
        lambda: submit(
            received_on=TODAY - 3 * DAY,
            identity_received_on=TODAY,
            identity_verified_on=TODAY - DAY,
        ),
        "dates_out_of_order",
    ),
    (
        "received-in-future",
        no_request,
        lambda: submit(received_on=TODAY + DAY, identity_verified_on=None),
        "dates_out_of_order",
    ),
    (
        "verify-before-received",
        unverified,
        lambda: command(r.IdentityVerified, verified_on=TODAY - DAY),
        "dates_out_of_order",
    ),
    (
        "verify-information-after-verified",
        unverified,
        lambda: command(r.IdentityVerified, verified_on=TODAY, information_received_on=TODAY + DAY),
        "dates_out_of_order",
    ),
    (
        "verify-in-future",
        unverified,
        lambda: command(r.IdentityVerified, verified_on=TODAY + DAY),
        "dates_out_of_order",
    ),
    (
        "fee-in-future",
        access,
        lambda: command(r.FeeReceived, ground=FeeGround.excessive, received_on=TODAY + DAY),
        "dates_out_of_order",
    ),
    (
        "clarification-asked-in-future",
        access,
        lambda: command(r.ClarificationRequested, asked_on=TODAY + DAY),
        "dates_out_of_order",
    ),
    # what was rejected before this table (same codes)
    ("unknown-subject", no_request, lambda: submit(subject_id="nobody"), "unknown_subject"),
    (
        "rectify-unknown-field",
        no_request,
        lambda: submit(T.rectification, rectification={"shoe": "9"}),
        "invalid_command",
    ),
    (
        "cancel-after-tasks-out",
        access,
        lambda: command(r.RequestCancelled, reason="x"),
        "invalid_transition",
    ),
]


@pytest.mark.parametrize(
    ("given", "make", "reason"), [pytest.param(*c[1:], id=c[0]) for c in REJECTED]
)
def test_rejected_command_is_answered_with_its_reason_and_changes_nothing(
    ctx: wf.Context, given: Given, make: Callable[[], r.Command], reason: str
) -> None:
    known = (
        ctx
        if reason != "unknown_subject"
        else dataclasses.replace(ctx, identity=None, known_subject=False)
    )
    rec = given(ctx)
    cmd = make()
    outcome = wf.on_command(rec, cmd, known)

    assert outcome.rejected == reason, outcome.message
    assert outcome.out == []
    assert [a.action for a in outcome.audit] == ["command_rejected"]
    answer = outcome.answer
    assert isinstance(answer, r.CommandRejected)
    assert (answer.command_id, answer.request_id, answer.reason) == (
        cmd.command_id,
        cmd.request_id,
        reason,
    )
    assert answer.command_type == type(cmd).__name__
    assert answer.message == outcome.message
    assert "example" not in answer.message  # the refused name is never echoed back
    assert answer.answered_at == NOW
    if rec is None:
        assert outcome.record is None
        assert answer.request_state is None
        return
    assert outcome.record is not None
    assert outcome.record.model_copy(update={"answered": rec.answered}) == rec
    assert outcome.record.answered[-1] == Answered(
        command_id=cmd.command_id, reason=reason, message=outcome.message, at=NOW
    )
    assert (answer.request_state, answer.due_on) == (rec.state, rec.due_on)


# --- accepted ---------------------------------------------------------------------------------


def test_accepted_command_is_answered_with_the_resulting_state_and_what_went_out(
    ctx: wf.Context,
) -> None:
    cmd = submit(T.restriction)
    outcome = wf.on_command(None, cmd, ctx)
    answer = outcome.answer
    assert isinstance(answer, r.CommandAccepted)
    assert outcome.record is not None
    assert (answer.command_id, answer.request_id, answer.command_type) == (
        cmd.command_id,
        "R-1",
        "RequestSubmitted",
    )
    assert (answer.request_state, answer.due_on) == (S.awaiting_systems, outcome.record.due_on)
    tasks = sum(isinstance(o.record, r.Task) for o in outcome.out)
    assert answer.message is not None
    assert answer.message.startswith(f"{tasks} task(s) sent")


def test_identity_information_from_before_the_request_is_taken_and_the_clock_runs_from_receipt(
    ctx: wf.Context,
) -> None:
    """A signed-in customer's identity was checked before they asked: refused as out of
    order, the DPO gave no information day and the clock ran from the check, later than
    the law's (legal review, session 43). The CLI took it all along."""
    checked = run(None, submit(T.access, identity_received_on=TODAY - 9 * DAY), ctx)
    assert checked.clock_start == TODAY
    pending = run(None, submit(T.access, request_id="R-2", identity_verified_on=None), ctx)
    later = dataclasses.replace(ctx, now=NOW + 2 * DAY, today=TODAY + 2 * DAY)
    verified = run(
        pending,
        command(
            r.IdentityVerified,
            request_id="R-2",
            verified_on=TODAY + 2 * DAY,
            information_received_on=TODAY - 9 * DAY,
        ),
        later,
    )
    assert verified.clock_start == TODAY


@pytest.mark.parametrize("kind", [T.complaint, T.restriction_lift])
def test_no_fee_is_taken_for_a_request_the_law_allows_none_for(ctx: wf.Context, kind: T) -> None:
    """A fee was taken on a complaint (DPA 2018 s. 164A has none), a lift (and moved its
    clock) or a consent withdrawal (which closes at once, so is finished anyway) (legal
    review, session 43)."""
    given = dataclasses.replace(ctx, restricted=True)
    rec = run(None, submit(kind, identity_verified_on=None), given)
    fee = command(r.FeeReceived, ground=FeeGround.manifestly_unfounded, received_on=TODAY)
    outcome = wf.on_command(rec, fee, given)
    assert outcome.rejected == "invalid_command"
    assert outcome.message is not None
    assert "Art. 15-22" in outcome.message
    assert outcome.record is None or outcome.record.fee_received_on is None


def test_a_fee_an_earlier_release_took_on_a_lift_moves_no_clock(ctx: wf.Context) -> None:
    """0.42 took a fee on a lift and restarted its clock from it; a record stored so gets
    the clock of its receipt again at its next decision (review of session 43's fix)."""
    from privops.core import timelimits

    given = dataclasses.replace(ctx, restricted=True)
    rec = run(None, submit(T.restriction_lift), given)
    due = rec.due_on
    stored = rec.model_copy(update={"fee_received_on": TODAY + 9 * DAY})
    timelimits.recompute_due(stored, given)
    assert (stored.clock_start, stored.due_on) == (TODAY, due)


def test_lift_of_a_restricted_subject_is_accepted(ctx: wf.Context) -> None:
    restricted = dataclasses.replace(ctx, restricted=True)
    outcome = wf.on_command(None, submit(T.restriction_lift), restricted)
    assert isinstance(outcome.answer, r.CommandAccepted)
    assert outcome.answer.message == f"{len(ASKED)} task(s) sent, subject notified"


def test_extension_is_answered_with_the_new_due_date(ctx: wf.Context) -> None:
    rec = access(ctx)
    outcome = wf.on_command(
        rec, command(r.DeadlineExtended, reason="complex", notified_on=TODAY), ctx
    )
    assert isinstance(outcome.answer, r.CommandAccepted)
    assert outcome.record is not None
    assert outcome.answer.due_on == outcome.record.due_on != rec.due_on
    assert outcome.answer.message == "subject notified"


# --- redelivery: the same answer again ----------------------------------------------------------


def test_redelivered_accepted_command_is_answered_the_same_with_no_effect(ctx: wf.Context) -> None:
    cmd = submit()
    first = wf.on_command(None, cmd, ctx)
    assert first.record is not None
    again = wf.on_command(first.record, cmd, ctx)
    assert (again.record, again.out, again.audit, again.rejected) == (None, [], [], None)
    assert again.answer == first.answer


def test_redelivered_rejected_command_is_answered_the_same_even_if_now_it_would_pass(
    ctx: wf.Context,
) -> None:
    """An answer came out before the redelivery: it must not turn into its opposite.

    The verdict and its words are the ones given; the state is the request's current one.
    """
    rec = run(None, submit(T.access), ctx)
    early = command(r.ClarificationReceived, received_on=TODAY)
    refused = wf.on_command(rec, early, ctx)
    assert refused.rejected == "invalid_transition"
    assert refused.record is not None
    paused = run(refused.record, command(r.ClarificationRequested, asked_on=TODAY), ctx)
    again = wf.on_command(paused, early, ctx)  # would now be applied
    assert (again.record, again.out, again.audit, again.rejected) == (None, [], [], None)
    assert isinstance(again.answer, r.CommandRejected)
    assert refused.answer is not None
    current = {"request_state": S.paused, "due_on": paused.due_on}
    assert again.answer == refused.answer.model_copy(update=current)


def refused_fees(rec: wf.RequestRecord, ctx: wf.Context) -> wf.RequestRecord:
    """``rec`` once more rejections than it remembers answers were given to it (a fee
    dated after the request's clock would end: dates_out_of_order)."""
    for _ in range(MAX_REMEMBERED_ANSWERS + 5):
        outcome = wf.on_command(
            rec, command(r.FeeReceived, ground=FeeGround.excessive, received_on=TODAY + DAY), ctx
        )
        assert outcome.record is not None
        rec = outcome.record
    return rec


def test_a_request_remembers_the_last_answers_only(ctx: wf.Context) -> None:
    rec = refused_fees(unverified(ctx), ctx)
    assert len(rec.answered) == MAX_REMEMBERED_ANSWERS
    # The submission's acceptance stays (below); the rest are the latest rejections.
    assert [a.reason for a in rec.answered] == [None] + ["dates_out_of_order"] * (
        MAX_REMEMBERED_ANSWERS - 1
    )


def test_rejections_past_the_bound_never_push_out_an_accepted_answer(ctx: wf.Context) -> None:
    """A script retrying a bad command 32 times pushed out the answer to an accepted one,
    which, put on the topic again within its 14 days, was acted on again (review,
    session 44). The oldest rejection goes first; the accepted answer stays."""
    rec = access(ctx)
    asked = command(r.ClarificationRequested, asked_on=TODAY)
    first = wf.on_command(rec, asked, ctx)
    assert first.rejected is None
    assert first.record is not None
    rec = refused_fees(first.record, ctx)
    assert len(rec.answered) == MAX_REMEMBERED_ANSWERS
    assert rec.answer_to(asked.command_id) is not None
    again = wf.on_command(rec, asked, ctx)  # the same signed bytes, again
    assert (again.record, again.out, again.audit) == (None, [], [])
    assert isinstance(again.answer, r.CommandAccepted)


def test_records_stored_before_answers_keep_their_seen_commands_as_accepted(
    ctx: wf.Context,
) -> None:
    rec = unverified(ctx)
    legacy = rec.model_dump(mode="json", exclude={"answered"}) | {"commands_seen": ["old-1"]}
    loaded = wf.RequestRecord.model_validate(legacy)
    assert loaded.answered == [Answered(command_id="old-1")]
    replay = wf.on_command(loaded, command(r.RequestCancelled, command_id="old-1", reason="x"), ctx)
    assert isinstance(replay.answer, r.CommandAccepted)
    assert replay.record is None


# --- legal holds ------------------------------------------------------------------------------


def place(hold_id: str = "H-1", **kw: Any) -> r.LegalHoldPlaced:
    fields: dict[str, Any] = {
        "command_id": cmd_id(),
        "request_id": hold_id,
        "issued_at": NOW,
        "actor": "dpo",
        "hold_id": hold_id,
        "subject_id": SUBJECT,
        "categories": [Category.contact],
        "reason": "litigation",
    }
    fields.update(kw)
    return r.LegalHoldPlaced(**fields)


def release(hold_id: str = "H-1", **kw: Any) -> r.LegalHoldReleased:
    fields: dict[str, Any] = {
        "command_id": cmd_id(),
        "request_id": hold_id,
        "issued_at": NOW + MINUTE,
        "actor": "dpo",
        "hold_id": hold_id,
        "subject_id": SUBJECT,
    }
    fields.update(kw)
    return r.LegalHoldReleased(**fields)


def held(*, placed: Any = NOW, released: Any = None) -> tuple[LegalHold, ...]:
    hold = LegalHold(
        hold_id="H-1",
        subject_id=SUBJECT,
        categories=(Category.contact,),
        reason="litigation",
        placed_at=placed,
        released_at=released,
    )
    return (hold,)


HOLDERS = "crm, marketing, orders, telephony, web"  # every system holding contact data

HOLDS: list[Any] = [
    # id, holds before, command, rejected reason (None: accepted), forwarded and audited
    ("place-new", (), place(), None, "legal_hold_placed"),
    ("place-redelivered", held(), place(), None, None),
    ("place-same-id-again", held(placed=NOW - DAY), place(), "duplicate", None),
    ("release-active", held(), release(), None, "legal_hold_released"),
    ("release-redelivered", held(released=NOW + MINUTE), release(), None, None),
    ("release-none", (), release(), "unknown_request", None),
    ("release-released-earlier", held(released=NOW), release(), "unknown_request", None),
    ("place-actor-email", (), place(actor="jane@example.com"), "invalid_command", None),
]


@pytest.mark.parametrize(
    ("holds", "cmd", "reason", "action"), [pytest.param(*c[1:], id=c[0]) for c in HOLDS]
)
def test_legal_hold_commands_are_decided_by_the_holds_rule_and_answered(
    ctx: wf.Context,
    holds: tuple[LegalHold, ...],
    cmd: r.LegalHoldPlaced | r.LegalHoldReleased,
    reason: str | None,
    action: str | None,
) -> None:
    outcome = wf.on_hold(cmd, dataclasses.replace(ctx, holds=holds))
    assert outcome.record is None
    assert outcome.rejected == reason
    answer = outcome.answer
    assert answer is not None
    assert (answer.command_id, answer.request_id, answer.command_type) == (
        cmd.command_id,
        cmd.hold_id,
        type(cmd).__name__,
    )
    if reason is not None:
        assert isinstance(answer, r.CommandRejected)
        assert answer.reason == reason
        assert outcome.out == []
        assert [a.action for a in outcome.audit] == ["command_rejected"]
        return
    assert isinstance(answer, r.CommandAccepted)
    verb = "placed" if isinstance(cmd, r.LegalHoldPlaced) else "released"
    told = f"; hold records written for {HOLDERS} (their connectors keep it from deletion"
    told += " by age; privops does not confirm they do)"
    placed_now = action == "legal_hold_placed"
    assert answer.message == f"hold H-1 {verb}" + (told if placed_now else "")
    if action is None:  # a redelivery: its effect is already there
        assert (outcome.out, outcome.audit) == ([], [])
        return
    assert (outcome.out[0].topic, outcome.out[0].record) == (SUBJECT_DIRECTIVES, cmd)
    # Then the systems' hold records (tests/unit/test_hold_states.py).
    assert {o.topic for o in outcome.out[1:]} <= {legal_holds_topic(s) for s in System}
    assert [a.action for a in outcome.audit] == [action]


@pytest.mark.parametrize(
    ("why", "again"), [("shredded_key", True), ("tampered_field", False)], ids=str
)
def test_a_sealed_field_that_does_not_open_is_answered_with_what_to_do(
    ctx: wf.Context, why: str, again: bool
) -> None:
    """A command sealed just before its subject's erasure destroyed the key: the DPO is
    told to run it again (sealed then under what the erasure kept, or withheld); one
    altered is not worth running again."""
    refused = command(r.RequestRefused, reason="pv1:...")
    outcome = wf.unreadable(refused, why, ctx)
    assert outcome.rejected is not None
    assert outcome.message is not None
    assert why in outcome.message
    assert ("run the command again" in outcome.message) is again
