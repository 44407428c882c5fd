"""An erasure beside the subject's access or portability request waits for that response
(``privops.core.waits``): sent beside it, the erasure emptied the systems before the
copies were made, or deleted copies the subject had not fetched (UK GDPR Art. 15, 20;
DPA 2018 s. 173). The wait is bounded by the erasure's own deadline."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from privops.core import records as r
from privops.core import waits
from privops.core import workflow as wf
from privops.core.fanout import ERASED_WITH_IT, FOLLOWUP_ACTOR
from privops.core.request import RequestRecord
from privops.core.sweep import DEFAULT_THRESHOLDS
from privops.core.ticks import Tick, TickKind
from privops.core.vocab import RefusalGround, RequestState, RequestType
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
    export_ref,
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
    assert rec.waits_for
    return rec


def with_copies(rec: RequestRecord, context: wf.Context) -> tuple[RequestRecord, wf.Outcome]:
    """Every export of ``rec`` answered with a copy: the response goes out (the CCTV
    footage disclosed by the DPO)."""
    results = {
        t.system.value: answer(rec, t.system, export=export_ref(t.system))
        for t in rec.tasks.values()
    }
    done, outcome = answer_all(rec, context, **results)
    if done.state is S.awaiting_review:
        done, outcome = approved(done, context)
    assert done.state is S.completed
    return done, outcome


def nothing_found(rec: RequestRecord, context: wf.Context) -> RequestRecord:
    """Every system answers it holds nothing: the response closes with no copy."""
    results = {t.system.value: answer(rec, t.system, r.NotFound) for t in rec.tasks.values()}
    done, _ = answer_all(rec, context, **results)
    assert not done.open
    return done


def deadline_tick(rec: RequestRecord, days_before: int = 7) -> Tick:
    """The erasure's deadline stage ``days_before`` its due date."""
    return Tick(
        request_id=ERASURE,
        kind=TickKind.deadline_approaching,
        at=NOW,
        days_before=days_before,
        due_on=rec.due_on,
    )


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
    (step,) = [s for s in outcome.audit if s.action == "erasure_waiting"]
    assert (step.after, step.reason) == (access.request_id, waits.RESPONSE_FIRST)
    assert rec.due_on is not None  # its clock runs on
    by = rec.due_on - timedelta(days=7)
    assert waits.erase_by(rec) == by
    assert outcome.message is not None
    assert access.request_id in outcome.message
    assert str(by) in outcome.message


def test_the_latest_day_is_the_first_deadline_alert() -> None:
    """The tick that raises the erasure's first deadline alert ends its wait: the day
    the letter promises the copies until."""
    assert waits.ERASE_BY_DAYS_BEFORE == max(DEFAULT_THRESHOLDS) == 7


def test_a_portability_response_is_waited_for_too(ctx: wf.Context) -> None:  # noqa: F811
    ported = start(RequestType.portability, ctx)
    rec = waiting_beside(ctx, ported)
    assert rec.waits_for == [ported.request_id]


def held_for_review(rec: RequestRecord, context: wf.Context) -> RequestRecord:
    """Every export of ``rec`` answered with a copy, the CCTV footage held for the DPO."""
    results = {
        t.system.value: answer(rec, t.system, export=export_ref(t.system))
        for t in rec.tasks.values()
    }
    held, _ = answer_all(rec, context, **results)
    assert held.state is S.awaiting_review
    return held


def test_a_response_held_for_the_dpo_is_waited_for(ctx: wf.Context) -> None:  # noqa: F811
    held = held_for_review(start(RequestType.access, ctx), ctx)
    assert waiting_beside(ctx, held).waits_for == [held.request_id]


def _paused(context: wf.Context) -> RequestRecord:
    access = start(RequestType.access, context)
    asked = command(r.ClarificationRequested, asked_on=TODAY)
    paused = wf.on_command(access, asked, context).record
    assert paused is not None
    assert paused.state is S.paused
    return paused


def _answered_long_ago(context: wf.Context) -> RequestRecord:
    done, _ = with_copies(start(RequestType.access, context), context)
    return done.model_copy(update={"closed_at": NOW - waits.FETCH_DAYS})


@pytest.mark.parametrize(
    "other",
    [
        # may never go on: the subject's identity, or their clarification, never comes
        pytest.param(lambda c: start(RequestType.access, c, verified=False), id="unverified"),
        pytest.param(_paused, id="paused-for-clarification"),
        pytest.param(lambda c: nothing_found(start(RequestType.access, c), c), id="nothing-held"),
        pytest.param(_answered_long_ago, id="copies-out-14-days-ago"),
        pytest.param(lambda c: start(RequestType.restriction, c), id="no-copies-made"),
    ],
)
def test_what_is_not_in_the_way(ctx: wf.Context, other: Any) -> None:  # noqa: F811
    outcome = erasure_beside(ctx, other(ctx))
    assert outcome.record is not None
    assert outcome.record.waits_for == []
    assert of_type(outcome, r.Erase)
    assert "erasure_waiting" not in [s.action for s in outcome.audit]


def test_copies_out_in_the_last_14_days_are_waited_for(ctx: wf.Context) -> None:  # noqa: F811
    """The letter told the subject to fetch them: the erasure waits for its latest day."""
    done, _ = with_copies(start(RequestType.access, ctx), ctx)
    recent = done.model_copy(update={"closed_at": NOW - waits.FETCH_DAYS + timedelta(hours=1)})
    assert waiting_beside(ctx, recent).waits_for == [done.request_id]


def test_a_follow_up_erasure_never_waits(ctx: wf.Context) -> None:  # noqa: F811
    """The subject asked for nothing when a retention period ended."""
    beside = with_requests(ctx, start(RequestType.access, ctx))
    ours = start(RequestType.erasure, ctx, request_id=ERASURE, verified=False)
    ours = ours.model_copy(update={"due_on": TODAY + timedelta(days=30)})
    assert waits.wait(ours, beside, wf.Outcome(record=ours))  # the DPO's would
    ours = ours.model_copy(update={"actor": FOLLOWUP_ACTOR, "waits_for": []})
    assert not waits.wait(ours, beside, wf.Outcome(record=ours))


def test_an_erasure_near_its_deadline_does_not_wait(ctx: wf.Context) -> None:  # noqa: F811
    """Received 25 days ago, its identity verified today: due in under a week, so its
    work goes out now."""
    access = start(RequestType.access, ctx)
    received = TODAY - timedelta(days=25)
    outcome = erasure_beside(
        ctx, access, received_on=received, identity_received_on=received, identity_verified_on=TODAY
    )
    assert outcome.record is not None
    assert outcome.record.due_on is not None
    assert outcome.record.due_on - TODAY < timedelta(days=7)
    assert outcome.record.waits_for == []
    assert of_type(outcome, r.Erase)


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
        pytest.param(
            lambda rec, c: (
                wf.on_command(rec, command(r.ClarificationRequested, asked_on=TODAY), c).record
            ),
            id="paused",
        ),
    ],
)
def test_a_response_ending_without_copies_lets_it_go_on(ctx: wf.Context, closing: Any) -> None:  # noqa: F811
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    assert wf.on_response_closed(waiting, with_requests(ctx, access)).record is None  # not yet
    ended = closing(access, ctx)
    assert ended is not None
    assert ended.state not in waits.UNDER_WAY
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
    assert step.reason == waits.RESUMED


def test_a_response_out_with_copies_keeps_it_waiting_and_says_until_when(
    ctx: wf.Context,  # noqa: F811
) -> None:
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    by = waits.erase_by(waiting)
    assert by is not None
    done, outcome = with_copies(access, with_requests(ctx, access, waiting))
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.kind == "access_response"
    assert ERASED_WITH_IT.format(day=by.isoformat()) in note.message
    # the response's close does not end the wait: the subject fetches the copies first
    assert wf.on_response_closed(waiting, with_requests(ctx, done, waiting)).record is None


def test_a_response_without_an_erasure_waiting_says_nothing_of_one(ctx: wf.Context) -> None:  # noqa: F811
    access = start(RequestType.access, ctx)
    _, outcome = with_copies(access, with_requests(ctx, access))
    (note,) = of_type(outcome, r.SubjectNotification)
    assert "erase" not in note.message


def test_the_first_deadline_tick_ends_the_wait(ctx: wf.Context) -> None:  # noqa: F811
    """Bounded by the erasure's own month: 7 days before it is due its work goes out,
    whatever it still waits for (the response under way is late, or its copies out)."""
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    assert waiting.due_on is not None
    late = at(ctx, NOW + (waiting.due_on - TODAY) - timedelta(days=7))
    outcome = wf.on_tick(waiting, deadline_tick(waiting), with_requests(late, access))
    rec = outcome.record
    assert rec is not None
    assert rec.waits_for == []
    assert of_type(outcome, r.Erase)
    (step,) = [s for s in outcome.audit if s.action == "erasure_resumed"]
    assert step.reason == waits.DEADLINE_NEAR
    assert of_type(outcome, r.DeadlineApproaching)  # and the alert is raised as ever


def test_a_stale_tick_does_not_end_the_wait(ctx: wf.Context) -> None:  # noqa: F811
    """A tick for an earlier due date (the deadline since moved) is no deadline stage."""
    waiting = waiting_beside(ctx, start(RequestType.access, ctx))
    assert waiting.due_on is not None
    stale = waiting.model_copy(update={"due_on": waiting.due_on - timedelta(days=3)})
    assert wf.on_tick(waiting, deadline_tick(stale), ctx).record is None


def test_a_tick_of_an_erasure_not_waiting_sends_nothing(ctx: wf.Context) -> None:  # noqa: F811
    rec = start(RequestType.erasure, ctx, request_id=ERASURE)
    assert rec.tasks
    outcome = wf.on_tick(rec, deadline_tick(rec), ctx)
    assert of_type(outcome, r.Erase) == []


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


def test_a_waiting_erasure_may_be_cancelled_or_refused(ctx: wf.Context) -> None:  # noqa: F811
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    for kind in (r.RequestCancelled, r.RequestRefused):
        extra: dict[str, Any] = {}
        if kind is r.RequestRefused:
            extra["ground"] = RefusalGround.manifestly_unfounded
        sent = command(kind, reason="x", **extra).model_copy(update={"request_id": ERASURE})
        done = wf.on_command(waiting, sent, ctx)
        assert done.rejected is None, done.message
        assert done.record is not None
        assert not done.record.open
        assert not waits.waiting(done.record)
        assert wf.on_response_closed(done.record, with_requests(ctx, access)).record is None


def test_the_wait_is_not_written_once_over(ctx: wf.Context) -> None:  # noqa: F811
    """A record without a wait reads in 0.41 (a rollback): the field is left out."""
    rec = start(RequestType.erasure, ctx, request_id=ERASURE)
    assert "waits_for" not in rec.model_dump(mode="json")
    waiting = waiting_beside(ctx, start(RequestType.access, ctx))
    again = RequestRecord.model_validate(waiting.model_dump(mode="json"))
    assert again.waits_for == waiting.waits_for


def test_the_status_shows_what_it_waits_for_and_until_when() -> None:
    from privops.cli.request import status as status_cli

    shown = status_cli._waits_for({"waits_for": ["R-1"], "erase_by": "2025-04-03"})
    assert shown.startswith("R-1 ")
    assert "go out first" in shown
    assert "2025-04-03" in shown


def released(rec: RequestRecord, context: wf.Context) -> wf.Outcome:
    sent = command(r.ErasureReleased).model_copy(update={"request_id": rec.request_id})
    return wf.on_command(rec, sent, context)


def test_the_dpo_may_release_a_waiting_erasure(ctx: wf.Context) -> None:  # noqa: F811
    """The subject has their copies, or wants the erasure at once: ``request erase-now``."""
    access = start(RequestType.access, ctx)
    waiting = waiting_beside(ctx, access)
    outcome = released(waiting, with_requests(ctx, access))
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.waits_for == []
    assert of_type(outcome, r.Erase)
    (step,) = [s for s in outcome.audit if s.action == "erasure_resumed"]
    assert step.reason == waits.RELEASED


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
    outcome = released(rec(ctx), ctx)
    assert outcome.rejected is not None
    assert "no wait to end" in (outcome.message or "")
    assert of_type(outcome, r.Erase) == []
