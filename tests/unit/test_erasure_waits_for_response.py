"""An erasure waits for the subject's access and portability responses under way: their
copies are made from what the systems hold, and an erasure sent out beside them left the
subject told "we hold nothing", or a copy made and then erased before they fetched it
(UK GDPR Art. 15, 20; DPA 2018 s. 173). Its work goes out once each has closed."""

from __future__ import annotations

import dataclasses
from typing import Any

from privops.core import records as r
from privops.core import workflow as wf
from privops.core.fanout import RESPONSE_FIRST
from privops.core.ticks import Tick, TickKind
from privops.core.vocab import RefusalGround, RequestState, RequestType
from tests.unit.test_workflow import (
    NOW,
    answer,
    answer_all,
    approved,
    command,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    export_ref,
    of_type,
    start,
    submit,
)

ERASURE = "R-2"


def with_requests(context: wf.Context, *records: wf.RequestRecord) -> wf.Context:
    """``context`` whose subject's request records are ``records``."""
    return dataclasses.replace(context, subject_requests=lambda: records)


def erasure_beside(context: wf.Context, *others: wf.RequestRecord, **kw: Any) -> wf.Outcome:
    outcome = wf.on_command(
        None, submit(RequestType.erasure, request_id=ERASURE, **kw), with_requests(context, *others)
    )
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    return outcome


def answered(rec: wf.RequestRecord, context: wf.Context) -> wf.RequestRecord:
    """Every export of ``rec`` answered with a copy: the response goes out (the CCTV
    footage disclosed by the DPO)."""
    results = {
        t.system.value: answer(rec, t.system, export=export_ref(t.system))
        for t in rec.tasks.values()
    }
    done, _ = answer_all(rec, context, **results)
    if done.state is RequestState.awaiting_review:
        done, _ = approved(done, context)
    return done


def test_an_erasure_waits_for_the_access_response_under_way(ctx: wf.Context) -> None:  # noqa: F811
    access = start(RequestType.access, ctx)
    assert access.state is RequestState.awaiting_systems
    outcome = erasure_beside(ctx, access)
    rec = outcome.record
    assert rec is not None
    assert rec.state is RequestState.in_progress
    assert rec.waits_for == [access.request_id]
    assert rec.tasks == {}
    assert of_type(outcome, r.Erase) == []
    assert of_type(outcome, r.SubjectDirective) == []  # no suppression yet: keys still open
    assert of_type(outcome, r.RecipientNotification) == []
    (step,) = [s for s in outcome.audit if s.action == "erasure_waiting"]
    assert (step.after, step.reason) == (access.request_id, RESPONSE_FIRST)
    assert rec.due_on is not None  # its clock runs on


def test_once_the_response_went_out_the_erasure_goes_on(ctx: wf.Context) -> None:  # noqa: F811
    access = start(RequestType.access, ctx)
    waiting = erasure_beside(ctx, access).record
    assert waiting is not None
    assert wf.on_response_closed(waiting, with_requests(ctx, access)).record is None  # not yet
    done = answered(access, ctx)
    assert done.state is RequestState.completed
    outcome = wf.on_response_closed(waiting, with_requests(ctx, done))
    rec = outcome.record
    assert rec is not None
    assert rec.waits_for == []
    assert rec.state is RequestState.awaiting_systems
    assert {t.system for t in of_type(outcome, r.Erase)} == {
        t.system for t in access.tasks.values()
    }
    assert [d.kind for d in of_type(outcome, r.SubjectDirective)] == ["suppressed"]
    assert "erasure_resumed" in [s.action for s in outcome.audit]


def test_a_portability_response_is_waited_for_too(ctx: wf.Context) -> None:  # noqa: F811
    ported = start(RequestType.portability, ctx)
    rec = erasure_beside(ctx, ported).record
    assert rec is not None
    assert rec.waits_for == [ported.request_id]


def test_nothing_is_waited_for_that_has_not_begun_or_has_ended(ctx: wf.Context) -> None:  # noqa: F811
    """A request waiting for the subject's identity may never go on; a closed one is
    out; a restriction makes no copy."""
    unverified = start(RequestType.access, ctx, verified=False)
    assert unverified.state is RequestState.identity_unverified
    closed = answered(start(RequestType.access, ctx), ctx)
    restriction = start(RequestType.restriction, ctx)
    outcome = erasure_beside(ctx, unverified, closed, restriction)
    assert outcome.record is not None
    assert outcome.record.waits_for == []
    assert of_type(outcome, r.Erase)


def test_a_response_asked_for_later_does_not_hold_it_longer(ctx: wf.Context) -> None:  # noqa: F811
    first = start(RequestType.access, ctx)
    waiting = erasure_beside(ctx, first).record
    assert waiting is not None
    later = start(RequestType.access, ctx, request_id="R-3")
    outcome = wf.on_response_closed(waiting, with_requests(ctx, answered(first, ctx), later))
    assert outcome.record is not None
    assert outcome.record.waits_for == []
    assert of_type(outcome, r.Erase)


def test_a_deadline_tick_looks_again(ctx: wf.Context) -> None:  # noqa: F811
    """The agent's word that the response closed may be lost (a crash between the two
    flushes): the erasure's own next tick finds it closed."""
    access = start(RequestType.access, ctx)
    waiting = erasure_beside(ctx, access).record
    assert waiting is not None
    tick = Tick(request_id=ERASURE, kind=TickKind.deadline_approaching, at=NOW, days_before=5)
    outcome = wf.on_tick(waiting, tick, with_requests(ctx, answered(access, ctx)))
    assert outcome.record is not None
    assert outcome.record.waits_for == []
    assert of_type(outcome, r.Erase)


def test_a_waiting_erasure_may_be_cancelled_or_refused(ctx: wf.Context) -> None:  # noqa: F811
    access = start(RequestType.access, ctx)
    waiting = erasure_beside(ctx, access).record
    assert waiting is not None
    for kind in (r.RequestCancelled, r.RequestRefused):
        extra: dict[str, Any] = {}
        if kind is r.RequestRefused:
            extra["ground"] = RefusalGround.manifestly_unfounded
        sent = command(kind, reason="x", **extra).model_copy(update={"request_id": ERASURE})
        done = wf.on_command(waiting, sent, ctx)
        assert done.rejected is None, done.message
        assert done.record is not None
        assert not done.record.open
        assert wf.on_response_closed(done.record, with_requests(ctx, access)).record is None


def test_the_status_shows_what_it_waits_for() -> None:
    from privops.cli.request import status as status_cli

    shown = status_cli._waits_for(["R-1"])
    assert shown.startswith("R-1 ")
    assert "go out first" in shown
