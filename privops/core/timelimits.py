"""A request's time limit, kept on its record: clock start, pauses, extension, alerts.

The date rules are privops.core.deadlines'; the alert stages privops.core.sweep's. This
module applies them to a ``RequestRecord`` so the workflow never does date arithmetic.

Clarification stops the clock of an access request only (Art. 12A: "a request
under Article 15"), while its clock runs, awaiting its systems included. Before 0.38
privops let any request pause: such a pause of another type counts no day (the law
stopped no clock), from the next time its due date is worked out, and its alerts fire
against the due date without it at once (``alert_due``). Tasks already sent keep going while
the clock is stopped: systems' answers are recorded, overdue tasks are still re-sent and
escalated (that timer is privops' agreement with its own systems, not the subject's
clock), but the request is not completed, and no response goes to the subject, until
the clarification is received, since it may change what the response must contain.
While paused no deadline alert fires: the clock is not running.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Final

from privops.core import deadlines
from privops.core import records as r
from privops.core.errors import DomainError
from privops.core.lifecycle import IDENTITY_REQUIRED
from privops.core.request import (
    AuditStep,
    Context,
    Out,
    Outcome,
    Reason,
    Refused,
    RequestRecord,
)
from privops.core.request import stable_id as _id
from privops.core.sweep import Alerted
from privops.core.ticks import Tick, TickKind
from privops.core.topics import ALERTS
from privops.core.vocab import RequestState, RequestType

NO_FEE: Final = frozenset(
    {RequestType.complaint, RequestType.restriction_lift, RequestType.consent_withdrawal}
)
"""Requests no fee may be charged for: a complaint to the controller (DPA 2018 s. 164A
has none), a lift (the controller's own decision) and a consent withdrawal (as easy as
giving it, Art. 7(3)). Before, a fee was taken on them, and moved a lift's clock (legal
review, session 43); one recorded so moves no clock now (``recompute_due``)."""


def recompute_due(rec: RequestRecord, ctx: Context) -> None:
    """Set the clock start, counted pause days and due date from the record's dates."""
    if rec.request_type is RequestType.complaint:
        # Before the acknowledgement: its last day; after: the response date it gave.
        rec.clock_start = rec.received_on
        rec.due_on = deadlines.complaint_response_due(
            rec.received_on, rec.acknowledged_on, ctx.complaint_ack_days
        )
        return
    verified = (
        rec.identity_verified_on
        if rec.request_type in IDENTITY_REQUIRED
        else rec.identity_verified_on or rec.received_on
    )
    start = deadlines.clock_start(
        rec.received_on,
        verified,
        rec.fee_received_on,
        # (a fee an earlier release took on a request that has none moves nothing)
        fee_required=rec.fee_received_on is not None and rec.request_type not in NO_FEE,
        identity_received=rec.identity_received_on,
        authority_required=rec.authority_required,
        authority_received=rec.authority_received_on,
    )
    rec.clock_start = start
    if start is None:
        rec.paused_days, rec.due_on = 0, None
        return
    rec.paused_days = deadlines.paused_days(start, _counted(rec), extended=rec.extended)
    rec.due_on = deadlines.due_date(start, extended=rec.extended, paused_days=rec.paused_days)


def due_in_force(rec: RequestRecord) -> date | None:
    """``rec``'s due date as the law has it now: the stored one, but for a request other
    than access that an earlier release let pause (before 0.38), the one without the
    pause, and without an extension notified after the first month that pause made
    longer; stored at its next decision (``settle_old_pause``). (A complaint's time
    limits are its own: ``recompute_due`` counts no pause for it.)"""
    if not _old_pause(rec) or rec.clock_start is None:
        return rec.due_on
    return deadlines.due_date(rec.clock_start, extended=_extension_stands(rec, rec.clock_start))


def _old_pause(rec: RequestRecord) -> bool:
    return bool(rec.paused_days) and rec.request_type not in _OWN_CLOCKS


_OWN_CLOCKS: Final = frozenset({RequestType.access, RequestType.complaint})
"""The request types whose stored pause days are their own: an access request's clock
stops for clarification, and a complaint's limits count none."""


def _extension_stands(rec: RequestRecord, start: date) -> bool:
    told = rec.extension_notified_on
    return rec.extended and (told is None or deadlines.can_extend(start, told))


def settle_old_pause(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    """Store the due date in force (``due_in_force``) on a request other than access an
    earlier release let pause, audited: the pause counts no day, and an extension it let
    through after the first month is withdrawn as at a clarification's end (its
    ``deadline_extended`` step says so, and the accountability report reads it)."""
    start = rec.clock_start
    if not rec.open or not _old_pause(rec) or start is None:
        return
    if rec.extended and not _extension_stands(rec, start):
        rec.extended = False
        out.audit.append(
            AuditStep(
                "deadline_extended",
                after=str(deadlines.due_date(start)),
                reason=(
                    f"{EXTENSION_WITHDRAWN}{rec.extension_notified_on} came after the first "
                    f"month, which ended on {deadlines.due_date(start)}: the clarification "
                    "pause an earlier release counted does not stop this request's clock "
                    "(only an access request's, UK GDPR Art. 12A): it does not count"
                ),
            )
        )
    recompute_due(rec, ctx)
    out.audit.append(
        AuditStep(
            "request_transitioned",
            after=rec.state.value,
            reason=(
                f"due {rec.due_on}: the clarification pause an earlier release counted does "
                "not stop this request's clock (only an access request's, UK GDPR Art. 12A)"
            ),
        )
    )


def _counted(rec: RequestRecord) -> list[deadlines.Pause]:
    """The pauses that stop ``rec``'s clock: an access request's (Art. 12A); none of
    another type, which an earlier release let pause."""
    return list(rec.pauses) if rec.request_type is RequestType.access else []


def alert_due(rec: RequestRecord) -> date | None:
    """The due date alerts are raised against, or None when none may fire.

    None for a closed request, an access request paused while its clock ran (the clock
    is stopped) and an acknowledged complaint: DPA 2018 s.164A sets a time limit for the
    acknowledgement only; the outcome is owed "without undue delay" and is tracked by
    its age instead. A clarification asked after the due date stops no clock (it had
    run out: ``deadlines.count_pauses`` counts it 0 days), so it silences no alert.
    """
    if not rec.open or rec.acknowledged_on is not None:
        return None
    if rec.request_type is not RequestType.access:
        return due_in_force(rec)  # no pause silences it
    asked = rec.clarification_asked_on
    if rec.state is RequestState.paused and (
        rec.due_on is None or asked is None or asked <= rec.due_on
    ):
        return None
    return rec.due_on


EXTENSION_WITHDRAWN: Final = "the extension notified on "
"""How the ``deadline_extended`` step of a withdrawn extension starts (``end_pause``):
the accountability report tells it from an extension by it."""


def begin_pause(rec: RequestRecord, asked_on: date) -> None:
    """Stop the clock from ``asked_on``: refused before the clock started, or before the
    last clarification's answer arrived (the request was paused until then, so nothing
    could be asked); the day that answer arrived is allowed (an answer may raise a new
    question), and counted once (``end_pause``)."""
    if rec.clock_start is None:
        raise DomainError("clarification stops a running clock; this one has not started")
    last = _last_answered(rec)
    if last is not None and asked_on < last:
        raise DomainError(
            f"clarification asked on {asked_on}, before the last one was answered "
            f"({last}): give the day it was asked"
        )
    rec.clarification_asked_on = asked_on


def end_pause(rec: RequestRecord, received_on: date, ctx: Context) -> str | None:
    """Record the finished pause and move the due date by the days of it that counted.

    A pause asked for the day the last one was answered counts from the next day (that
    day stopped the clock already); answered that same day too, it adds no day.

    An extension notified during the pause counted it as running up to the day the
    subject was told (``extend``); recorded later, an answer from before that day makes
    the first month end sooner. If the extension then came after the first month, it
    did not count: it is withdrawn, and what to audit is returned (else None)."""
    asked = rec.clarification_asked_on or received_on
    deadlines.Pause(asked, received_on)  # an answer before its question: DomainError
    rec.pauses = _with_pause(rec, asked, received_on)
    rec.clarification_asked_on = None
    told = rec.extension_notified_on
    withdrawn = None
    if rec.extended and told is not None and rec.clock_start is not None:
        first = deadlines.paused_days(rec.clock_start, _counted(rec))
        if not deadlines.can_extend(rec.clock_start, told, paused_days=first):
            due = deadlines.due_date(rec.clock_start, paused_days=first)
            withdrawn = (
                f"{EXTENSION_WITHDRAWN}{told} came after the first month, which ended "
                f"on {due} once the clarification answered on {received_on} was recorded: "
                "it does not count"
            )
            rec.extended = False
    recompute_due(rec, ctx)
    return withdrawn


def _last_answered(rec: RequestRecord) -> date | None:
    return max((p.answered for p in rec.pauses), default=None)


def _with_pause(rec: RequestRecord, asked: date, answered: date) -> list[deadlines.Pause]:
    """The record's pauses and one from ``asked`` to ``answered``, counted from the day
    after the last answer when asked that day (unchanged if it adds no day)."""
    last = _last_answered(rec)
    if last is not None and asked <= last:
        asked = last + timedelta(days=1)
    if answered < asked:
        return list(rec.pauses)
    return [*rec.pauses, deadlines.Pause(asked, answered)]


def _open_pause_days(rec: RequestRecord, until: date) -> int:
    """``paused_days`` as if the running pause ended on ``until`` (inclusive); 0 for a
    request whose clock no clarification stops (``_counted``)."""
    if rec.request_type is not RequestType.access:
        return 0
    asked = rec.clarification_asked_on
    if rec.clock_start is None or asked is None or until < asked:
        return rec.paused_days
    pauses = _with_pause(rec, asked, until)
    return deadlines.paused_days(rec.clock_start, pauses, extended=rec.extended)


def extend(rec: RequestRecord, cmd: r.DeadlineExtended, ctx: Context) -> None:
    """Take the one extension, checked against the day the subject was told."""
    if rec.request_type is RequestType.complaint:
        # Its response date is the one its acknowledgement gave, and the extension moved
        # nothing: the complainant was told "we need more time" and the same date.
        raise DomainError(
            "a complaint has no extension (DPA 2018 s.164A sets the time limit of its "
            "acknowledgement only; its outcome is owed without undue delay): answer it "
            "(privops request answer) once its outcome is known"
        )
    if rec.extended:
        # Never the first extension's reason: the DPO's text, sealed on the record, which
        # a refusal would carry into the audit, the answer topic and the record's
        # remembered answers, none of which an erasure reaches (review, session 35).
        raise Refused(
            Reason.already_extended,
            f"the deadline was already extended to {rec.due_on}; an extension is allowed "
            "once (`privops request status` shows its reason)",
        )
    if rec.clock_start is None:
        raise DomainError("an extension needs a running clock; this one has not started")
    # Notified during a pause: the days of it up to then stopped the first month too.
    paused = _open_pause_days(rec, cmd.notified_on)
    deadlines.extend(rec.clock_start, cmd.notified_on, cmd.reason, paused_days=paused)
    rec.extended = True
    rec.extension_reason = cmd.reason
    rec.extension_notified_on = cmd.notified_on
    recompute_due(rec, ctx)


def breached(rec: RequestRecord, due: date, ctx: Context) -> r.DeadlineBreached:
    """The alert that ``rec``'s due date ``due`` has passed (one id per due date, whoever
    raises it: the sweep, or a complaint acknowledged late)."""
    return r.DeadlineBreached(
        alert_id=_id(rec.request_id, due, "breached"),
        request_id=rec.request_id,
        raised_at=ctx.now,
        request_type=rec.request_type,
        due_on=due,
        days_overdue=max(1, (ctx.today - due).days),
    )


def raise_deadline_alert(rec: RequestRecord, tick: Tick, ctx: Context, out: Outcome) -> None:
    """Raise the tick's alert unless it, or a more urgent one, was raised for this due date."""
    due = alert_due(rec)
    if due is None or tick.due_on != due:
        return
    days_before = tick.alert_days_before
    if rec.deadline_alerted is not None and rec.deadline_alerted.covers(due, days_before):
        return
    rec.deadline_alerted = Alerted(due, days_before)
    alert: r.Alert
    if tick.kind is TickKind.deadline_breached:
        alert = breached(rec, due, ctx)
    else:
        alert = r.DeadlineApproaching(
            alert_id=_id(rec.request_id, due, days_before),
            request_id=rec.request_id,
            raised_at=ctx.now,
            request_type=rec.request_type,
            due_on=due,
            days_left=deadlines.days_left(due, ctx.today),
        )
    out.out.append(Out(ALERTS, rec.subject_id, alert))
    out.audit.append(AuditStep("deadline_alert", after=tick.kind.value, reason=f"due {due}"))
