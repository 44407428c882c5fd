"""An erasure beside the subject's access or portability request waits for that response
(``privops.core.response_first``): sent beside it, the erasure emptied the systems
before the copies were made, or deleted copies the subject had not fetched (UK GDPR Art.
15, 20; DPA 2018 s. 173). The wait is bounded by a day fixed when it begins and told to
the subject."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from typing import Any

import pytest

from privops.core import records as r
from privops.core import response_first as rf
from privops.core import workflow as wf
from privops.core.fanout import ERASED_BEFORE, ERASED_TODAY, ERASED_WITH_IT
from privops.core.request import FOLLOWUP_ACTOR, RequestRecord
from privops.core.ticks import Tick, TickKind
from privops.core.vocab import FeeGround, RefusalGround, RequestState, RequestType
from tests.unit.test_workflow import (
    NOW,
    TODAY,
    answer,
    answer_all,
    approved,
    at,
    command,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    held_for_review,
    of_type,
    start,
    submit,
)

S = RequestState
ERASURE = "R-2"


def with_requests(context: wf.Context, *records: RequestRecord) -> wf.Context:
    """``context`` whose subject's request records are ``records``."""
    return dataclasses.replace(context, subject_requests=lambda: records)


def erasure_beside(context: wf.Context, *others: RequestRecord, **kw: Any) -> wf.Outcome:
    outcome = wf.on_command(
        None, submit(RequestType.erasure, request_id=ERASURE, **kw), with_requests(context, *others)
    )
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    return outcome


def waiting_beside(context: wf.Context, *others: RequestRecord) -> RequestRecord:
    rec = erasure_beside(context, *others).record
    assert rec is not None
    assert rf.waiting(rec)
    return rec


def to_erasure(model: type[r.Command], **kw: Any) -> r.Command:
    return command(model, **kw).model_copy(update={"request_id": ERASURE})


def with_copies(rec: RequestRecord, context: wf.Context) -> tuple[RequestRecord, wf.Outcome]:
    """Every export of ``rec`` answered with a copy: the response goes out (the CCTV
    footage disclosed by the DPO)."""
    done, outcome = approved(held_for_review(rec, context), context)
    assert done.state is S.completed
    return done, outcome


def nothing_found(rec: RequestRecord, context: wf.Context) -> RequestRecord:
    """Every system answers it holds nothing: the response closes with no copy."""
    results = {t.system.value: answer(rec, t.system, r.NotFound) for t in rec.tasks.values()}
    done, _ = answer_all(rec, context, **results)
    assert not done.open
    return done


def paused(context: wf.Context) -> RequestRecord:
    access = start(RequestType.access, context)
    asked = wf.on_command(access, command(r.ClarificationRequested, asked_on=TODAY), context)
    assert asked.record is not None
    assert asked.record.state is S.paused
    return asked.record


def tick(rec: RequestRecord, kind: TickKind, days_before: int | None = None) -> Tick:
    return Tick(request_id=ERASURE, kind=kind, at=NOW, days_before=days_before, due_on=rec.due_on)


def the_notice(outcome: wf.Outcome) -> r.SubjectNotification:
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.kind == "access_response"
    assert isinstance(note, r.SubjectNotification)
    return note


# --- when it waits ------------------------------------------------------------------------


def test_an_erasure_waits_for_the_access_response_under_way(ctx: wf.Context) -> None:  # noqa: F811
    access = start(RequestType.access, ctx)
    assert access.state is S.awaiting_systems
    outcome = erasure_beside(ctx, access)
    rec = outcome.record
    assert rec is not None
    assert rec.state is S.in_progress
    assert rec.waits_for == [access.request_id]
    assert rec.tasks == {}
    assert of_type(outcome, r.Erase) == []
    assert of_type(outcome, r.SubjectDirective) == []  # no suppression yet: keys still open
    assert of_type(outcome, r.RecipientNotification) == []
    assert rec.due_on is not None  # its clock runs on
    day = rec.due_on - timedelta(days=rf.ERASE_BY_DAYS_BEFORE)
    assert rec.erase_on == day
    (step,) = [s for s in outcome.audit if s.action == "erasure_waiting"]
    assert step.after == access.request_id
    assert step.reason == f"{rf.RESPONSE_FIRST}; until {day} at most"
    assert outcome.message is not None
    assert access.request_id in outcome.message
    assert str(day) in outcome.message


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda c: start(RequestType.portability, c), id="portability"),
        pytest.param(
            lambda c: held_for_review(start(RequestType.access, c), c), id="held-for-the-dpo"
        ),
        # bounded by its day, so a response that may never go on is waited for too
        pytest.param(paused, id="paused-for-clarification"),
        pytest.param(lambda c: start(RequestType.access, c, verified=False), id="unverified"),
    ],
)
def test_every_open_response_is_waited_for(ctx: wf.Context, other: Any) -> None:  # noqa: F811
    response = other(ctx)
    assert waiting_beside(ctx, response).waits_for == [response.request_id]


def _answered_days_ago(context: wf.Context, days: timedelta) -> RequestRecord:
    done, _ = with_copies(start(RequestType.access, context), context)
    return done.model_copy(update={"closed_at": NOW - days})


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda c: nothing_found(start(RequestType.access, c), c), id="nothing-held"),
        pytest.param(lambda c: _answered_days_ago(c, rf.FETCH_DAYS), id="copies-out-14-days-ago"),
        pytest.param(lambda c: start(RequestType.restriction, c), id="no-copies-made"),
    ],
)
def test_what_is_not_in_the_way(ctx: wf.Context, other: Any) -> None:  # noqa: F811
    outcome = erasure_beside(ctx, other(ctx))
    assert outcome.record is not None
    assert outcome.record.waits_for == []
    assert of_type(outcome, r.Erase)
    assert "erasure_waiting" not in [s.action for s in outcome.audit]


def test_copies_out_lately_are_given_14_days(ctx: wf.Context) -> None:  # noqa: F811
    """Their letter told the subject to fetch them: the erasure waits until 14 days after
    that response closed, not for its own deadline."""
    recent = _answered_days_ago(ctx, timedelta(days=3))
    rec = waiting_beside(ctx, recent)
    assert rec.waits_for == [recent.request_id]
    assert rec.erase_on == TODAY - timedelta(days=3) + rf.FETCH_DAYS


def test_a_follow_up_erasure_never_waits(ctx: wf.Context) -> None:  # noqa: F811
    """The subject asked for nothing when a retention period ended."""
    beside = with_requests(ctx, start(RequestType.access, ctx))
    ours = start(RequestType.erasure, ctx, request_id=ERASURE, verified=False)
    ours = ours.model_copy(update={"due_on": TODAY + timedelta(days=30)})
    assert rf.hold(ours, beside, wf.Outcome(record=ours))  # the DPO's would
    ours = ours.model_copy(update={"actor": FOLLOWUP_ACTOR, "waits_for": []})
    assert not rf.hold(ours, beside, wf.Outcome(record=ours))


@pytest.mark.parametrize(
    ("received_days_ago", "waits"),
    [
        # due 7 Apr (received 7 Mar): its day, 31 Mar, is still to come
        pytest.param(3, True, id="due-in-28-days"),
        # received 17 Feb: due 17 Mar, so its day is today: no wait at all
        pytest.param(21, False, id="its-day-is-today"),
    ],
)
def test_an_erasure_whose_day_came_does_not_wait(
    ctx: wf.Context,  # noqa: F811
    received_days_ago: int,
    waits: bool,
) -> None:
    access = start(RequestType.access, ctx)
    received = TODAY - timedelta(days=received_days_ago)
    outcome = erasure_beside(
        ctx, access, received_on=received, identity_received_on=received, identity_verified_on=TODAY
    )
    assert outcome.record is not None
    assert outcome.record.due_on is not None
    assert (outcome.record.due_on - timedelta(days=7) > TODAY) is waits
    assert rf.waiting(outcome.record) is waits
    assert bool(of_type(outcome, r.Erase)) is not waits


# --- how it ends --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "closing",
    [
        pytest.param(lambda rec, c: nothing_found(rec, c), id="nothing-held"),
        pytest.param(
            lambda rec, c: (
                wf.on_command(
                    held_for_review(rec, c), command(r.RequestCancelled, reason="x"), c
                ).record
            ),
            id="cancelled-while-held-for-the-dpo",
        ),
    ],
)
def test_a_response_closing_without_copies_lets_it_go_on(ctx: wf.Context, closing: Any) -> None:  # noqa: F811
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    assert wf.on_response_closed(waiting, with_requests(ctx, access)).record is None  # not yet
    ended = closing(access, ctx)
    assert ended is not None
    assert not ended.open
    outcome = wf.on_response_closed(waiting, with_requests(ctx, ended))
    rec = outcome.record
    assert rec is not None
    assert rec.waits_for == []
    assert rec.state is S.awaiting_systems
    assert {t.system for t in of_type(outcome, r.Erase)} == {
        t.system for t in access.tasks.values()
    }
    assert [d.kind for d in of_type(outcome, r.SubjectDirective)] == ["suppressed"]
    (step,) = [s for s in outcome.audit if s.action == "erasure_resumed"]
    assert step.reason == rf.RESUMED


def test_a_response_out_with_copies_keeps_it_waiting_and_tells_the_day(
    ctx: wf.Context,  # noqa: F811
) -> None:
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    assert waiting.erase_on is not None
    done, outcome = with_copies(access, with_requests(ctx, access, waiting))
    told = ERASED_WITH_IT.format(day=waiting.erase_on.isoformat())
    assert told in the_notice(outcome).message
    # its close does not end the wait, however long after: only the day the letter gave
    weeks_later = at(ctx, NOW + timedelta(days=16))
    assert wf.on_response_closed(waiting, with_requests(weeks_later, done)).record is None


def test_a_letter_says_nothing_of_an_erasure_not_waiting_for_it(ctx: wf.Context) -> None:  # noqa: F811
    access = start(RequestType.access, ctx)
    other = start(RequestType.access, ctx, request_id="R-3")
    waiting = waiting_beside(ctx, other)  # waits for R-3, not for R-1
    assert waiting.waits_for == ["R-3"]
    _, outcome = with_copies(access, with_requests(ctx, access, other, waiting))
    assert "erasing your data" not in the_notice(outcome).message


def test_its_day_ends_the_wait_on_the_follow_up_timer(ctx: wf.Context) -> None:  # noqa: F811
    """Its own timer, not the deadline alerts' (their thresholds are the deployment's):
    woken at the start of its day, its work goes out whatever it still waits for."""
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    assert waiting.erase_on is not None
    (wake,) = wf.pending_followups(waiting)
    assert wake.date() <= waiting.erase_on <= (wake + timedelta(hours=1)).date()
    early = at(ctx, NOW + timedelta(days=(waiting.erase_on - TODAY).days - 1))
    assert wf.on_tick(waiting, tick(waiting, TickKind.followup), early).record is None
    # a deadline stage before its day (a deployment alerting 14 days ahead) ends nothing
    stage = wf.on_tick(
        waiting, tick(waiting, TickKind.deadline_approaching, 14), with_requests(early, access)
    )
    assert of_type(stage, r.Erase) == []
    came = at(ctx, NOW + timedelta(days=(waiting.erase_on - TODAY).days))
    outcome = wf.on_tick(waiting, tick(waiting, TickKind.followup), with_requests(came, access))
    rec = outcome.record
    assert rec is not None
    assert of_type(outcome, r.Erase)
    (step,) = [s for s in outcome.audit if s.action == "erasure_resumed"]
    assert step.reason == rf.DAY_CAME
    assert not rf.waiting(rec)
    assert rec.waits_for == [access.request_id]  # what it waited for stays on record
    assert wf.pending_followups(rec) == []


def test_a_response_going_out_after_the_erasure_says_so(ctx: wf.Context) -> None:  # noqa: F811
    """Its day came (or the DPO released it) first: the copies are made from, or erased
    with, what it leaves, and the letter says so."""
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    released = wf.on_command(waiting, to_erasure(r.ErasureReleased), with_requests(ctx, access))
    assert released.rejected is None, released.message
    assert released.message is not None
    assert access.request_id in released.message  # it had not gone out
    gone = released.record
    assert gone is not None
    assert gone.tasks
    _, outcome = with_copies(access, with_requests(ctx, access, gone))
    assert ERASED_BEFORE.format(day=TODAY.isoformat()) in the_notice(outcome).message


def test_a_response_asked_for_later_does_not_hold_it_longer(ctx: wf.Context) -> None:  # noqa: F811
    first = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, first)
    later = start(RequestType.access, ctx, request_id="R-3")
    outcome = wf.on_response_closed(waiting, with_requests(ctx, nothing_found(first, ctx), later))
    assert outcome.record is not None
    assert outcome.record.waits_for == []
    assert of_type(outcome, r.Erase)


def test_of_two_responses_it_waits_for_the_other(ctx: wf.Context) -> None:  # noqa: F811
    first = start(RequestType.access, ctx)
    second = start(RequestType.portability, ctx, request_id="R-3")
    waiting = waiting_beside(ctx, first, second)
    assert waiting.waits_for == ["R-1", "R-3"]
    outcome = wf.on_response_closed(waiting, with_requests(ctx, nothing_found(first, ctx), second))
    assert outcome.record is not None
    assert outcome.record.waits_for == ["R-3"]
    assert of_type(outcome, r.Erase) == []


# --- the DPO ------------------------------------------------------------------------------


def test_the_dpo_may_release_a_waiting_erasure(ctx: wf.Context) -> None:  # noqa: F811
    """The subject has their copies, or wants the erasure at once: ``request erase-now``."""
    access = start(RequestType.access, ctx)
    done, _ = with_copies(access, ctx)
    waiting = waiting_beside(ctx, done)
    outcome = wf.on_command(waiting, to_erasure(r.ErasureReleased), with_requests(ctx, done))
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert of_type(outcome, r.Erase)
    (step,) = [s for s in outcome.audit if s.action == "erasure_resumed"]
    assert step.reason == rf.RELEASED
    assert "has not gone out" not in (outcome.message or "")  # it was out: nothing to warn of


@pytest.mark.parametrize(
    "rec",
    [
        pytest.param(lambda c: start(RequestType.erasure, c, request_id=ERASURE), id="sent"),
        pytest.param(lambda c: start(RequestType.access, c), id="not-an-erasure"),
        pytest.param(
            lambda c: start(RequestType.erasure, c, request_id=ERASURE, verified=False),
            id="waiting-for-identity",
        ),
    ],
)
def test_only_a_waiting_erasure_is_released(ctx: wf.Context, rec: Any) -> None:  # noqa: F811
    found = rec(ctx)
    sent = command(r.ErasureReleased).model_copy(update={"request_id": found.request_id})
    outcome = wf.on_command(found, sent, ctx)
    assert outcome.rejected is not None
    assert "no wait to end" in (outcome.message or "")
    assert of_type(outcome, r.Erase) == []


@pytest.mark.parametrize(
    "refused",
    [
        pytest.param(
            to_erasure(r.FeeReceived, received_on=TODAY, ground=FeeGround.excessive), id="fee"
        ),
        pytest.param(to_erasure(r.RequestAnswered, reason="done"), id="answered"),
    ],
)
def test_a_waiting_erasure_is_not_answered_nor_charged(ctx: wf.Context, refused: Any) -> None:  # noqa: F811
    """Its work is under way: a fee would restart its clock, an answer would close it
    with nothing erased."""
    waiting = waiting_beside(ctx, start(RequestType.access, ctx))
    outcome = wf.on_command(waiting, refused, ctx)
    assert outcome.rejected is not None
    assert outcome.record is None or outcome.record.clock_start == waiting.clock_start


def test_a_waiting_erasure_may_be_cancelled_or_refused(ctx: wf.Context) -> None:  # noqa: F811
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    empty = with_requests(ctx, nothing_found(access, ctx))
    for kind in (r.RequestCancelled, r.RequestRefused):
        extra: dict[str, Any] = {}
        if kind is r.RequestRefused:
            extra["ground"] = RefusalGround.manifestly_unfounded
        done = wf.on_command(waiting, to_erasure(kind, reason="x", **extra), ctx)
        assert done.rejected is None, done.message
        assert done.record is not None
        assert not done.record.open
        assert not rf.waiting(done.record)
        # the response closing empty later sends nothing for it
        assert wf.on_response_closed(done.record, empty).record is None
        assert wf.pending_followups(done.record) == []


# --- the record and the views -------------------------------------------------------------


def test_the_wait_is_kept_on_the_record(ctx: wf.Context) -> None:  # noqa: F811
    """Written only by an erasure that waited (a record without reads in 0.41)."""
    rec = start(RequestType.erasure, ctx, request_id=ERASURE)
    assert {"waits_for", "erase_on"}.isdisjoint(rec.model_dump(mode="json"))
    waiting = waiting_beside(ctx, start(RequestType.access, ctx))
    again = RequestRecord.model_validate(waiting.model_dump(mode="json"))
    assert (again.waits_for, again.erase_on) == (waiting.waits_for, waiting.erase_on)


def test_the_status_shows_what_it_waits_for_and_until_when() -> None:
    from privops.cli.request import status as status_cli

    body = {"request_id": ERASURE, "waits_for": ["R-1"], "erase_on": "2025-04-03"}
    shown = status_cli._waits_for(body)
    assert shown.startswith("R-1 ")
    assert "responses first" in shown
    assert "2025-04-03" in shown
    assert f"privops request erase-now {ERASURE}" in shown


def test_the_letter_gives_the_earliest_day(ctx: wf.Context) -> None:  # noqa: F811
    """Of two erasures waiting for one response, the letter gives the earlier day."""
    access = start(RequestType.access, ctx)
    early = waiting_beside(ctx, access).model_copy(update={"erase_on": date(2025, 3, 20)})
    late = early.model_copy(update={"request_id": "R-4", "erase_on": date(2025, 3, 30)})
    assert rf.erased_from(access, with_requests(ctx, late, early)) == (date(2025, 3, 20), False)


def test_copies_out_long_ago_are_not_waited_for_beside_an_open_response(
    ctx: wf.Context,  # noqa: F811
) -> None:
    """The subject had 14 days to fetch those: the erasure waits for the open one only."""
    old = _answered_days_ago(ctx, rf.FETCH_DAYS + timedelta(days=6))
    open_one = start(RequestType.access, ctx, request_id="R-3")
    assert waiting_beside(ctx, old, open_one).waits_for == ["R-3"]


def test_copies_already_sent_are_told_the_erasures_day(ctx: wf.Context) -> None:  # noqa: F811
    """Their letter gave a later day than the erasure's: the subject is told the new one."""
    recent = _answered_days_ago(ctx, timedelta(days=3))
    outcome = erasure_beside(ctx, recent)
    rec = outcome.record
    assert rec is not None
    assert rec.erase_on is not None
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.kind == "erasure_waiting"
    assert note.message == rf.COPIES_GO.format(day=rec.erase_on.isoformat())


def test_no_notice_while_the_response_is_still_to_go_out(ctx: wf.Context) -> None:  # noqa: F811
    """Its own letter will give the day."""
    outcome = erasure_beside(ctx, start(RequestType.access, ctx))
    assert of_type(outcome, r.SubjectNotification) == []


def test_a_copy_still_to_be_made_keeps_it_waiting(ctx: wf.Context) -> None:  # noqa: F811
    """A system failed to make its copy: the DPO follows it up (the letter says so), so
    the erasure does not take the data it is made from before its day."""
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    failed = {
        t.system.value: answer(access, t.system, r.TaskFailed, reason="disk", retryable=False)
        for t in access.tasks.values()
    }
    done, _ = answer_all(access, ctx, **failed)
    assert not done.open
    assert wf.on_response_closed(waiting, with_requests(ctx, done)).record is None


def test_an_erasure_due_soon_goes_at_once_and_the_letter_says_it_came_first(
    ctx: wf.Context,  # noqa: F811
) -> None:
    access = start(RequestType.access, ctx)
    received = TODAY - timedelta(days=25)
    outcome = erasure_beside(
        ctx, access, received_on=received, identity_received_on=received, identity_verified_on=TODAY
    )
    gone = outcome.record
    assert gone is not None
    assert of_type(outcome, r.Erase)
    assert not rf.waiting(gone)
    assert gone.waits_for == [access.request_id]  # what went out beside it
    _, answered = with_copies(access, with_requests(ctx, access, gone))
    assert ERASED_BEFORE.format(day=TODAY.isoformat()) in the_notice(answered).message


def test_a_response_out_on_the_erasures_day_says_so(ctx: wf.Context) -> None:  # noqa: F811
    """The timer has not woken it yet: fetch them at once."""
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access).model_copy(update={"erase_on": TODAY})
    _, outcome = with_copies(access, with_requests(ctx, access, waiting))
    assert ERASED_TODAY in the_notice(outcome).message


def test_a_response_whose_record_is_not_found_is_still_waited_for(ctx: wf.Context) -> None:  # noqa: F811
    """A record that does not open is left out of the subject's requests: never taken
    as closed without copies."""
    access = start(RequestType.access, ctx)
    other = start(RequestType.portability, ctx, request_id="R-3")
    waiting = waiting_beside(ctx, access, other)
    outcome = wf.on_response_closed(waiting, with_requests(ctx, nothing_found(other, ctx)))
    assert outcome.record is not None
    assert outcome.record.waits_for == ["R-1"]
    assert of_type(outcome, r.Erase) == []
