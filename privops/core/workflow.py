"""The request workflow as pure decisions: (request record, input, context) -> outcome.

One ``RequestRecord`` per request holds its lifecycle state, its deadline clock and each
system's task. ``on_command``, ``on_result`` and ``on_tick`` never do I/O: they return
the new record plus what to publish (tasks, alerts, notifications, directives) and what
to audit. The Faust agent only decodes, looks up the context, calls these and emits.
Fan-out and answers are privops.core.fanout's, task timing privops.core.retries', the
deadline clock privops.core.timelimits'.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, assert_never

from privops.core import records as r
from privops.core import retries, timelimits
from privops.core.errors import DomainError
from privops.core.fanout import (
    RECTIFIABLE_FIELDS,
    finish,
    holdings,
    on_result,
    send_tasks,
    start_work,
)
from privops.core.lifecycle import IDENTITY_REQUIRED, LifecycleEvent
from privops.core.request import (
    AuditStep,
    Context,
    FollowupItem,
    HistoryItem,
    KeptItem,
    Out,
    Outcome,
    RequestRecord,
    TaskRecord,
    move,
    notify_subject,
    reject,
)
from privops.core.request import stable_id as _id
from privops.core.retries import make_task_id, next_checks
from privops.core.ticks import Tick, TickKind
from privops.core.topics import COMMANDS
from privops.core.vocab import (
    FINAL_TASK_STATES,
    ObjectionScope,
    RequestState,
    RequestType,
    TaskAction,
)

__all__ = [
    "RECTIFIABLE_FIELDS",
    "AuditStep",
    "Context",
    "FollowupItem",
    "HistoryItem",
    "KeptItem",
    "Out",
    "Outcome",
    "RequestRecord",
    "TaskRecord",
    "make_task_id",
    "next_checks",
    "on_command",
    "on_result",
    "on_tick",
    "pending_followups",
    "reject",
]

E = LifecycleEvent
MAX_REMEMBERED_COMMANDS = 32


# --- commands -----------------------------------------------------------------------------


def on_command(rec: RequestRecord | None, cmd: r.Command, ctx: Context) -> Outcome:
    """Apply one DPO command to a request."""
    if rec is not None and cmd.command_id in rec.commands_seen:
        return Outcome(record=None)  # redelivered: already applied
    if isinstance(cmd, r.RequestSubmitted):
        if rec is not None:
            return reject("duplicate", f"request id {cmd.request_id} already exists")
        return _submitted(cmd, ctx)
    if rec is None:
        return reject("unknown_request", f"no request {cmd.request_id}")
    rec = rec.model_copy(deep=True)
    rec.commands_seen = [*rec.commands_seen, cmd.command_id][-MAX_REMEMBERED_COMMANDS:]
    out = Outcome(record=rec)
    handler = _HANDLERS.get(type(cmd))
    try:
        if handler is None:
            raise DomainError(f"{type(cmd).__name__} does not apply to a request")
        handler(rec, cmd, ctx, out)
    except DomainError as exc:
        return reject("invalid_transition", str(exc))
    return out


def _submitted(cmd: r.RequestSubmitted, ctx: Context) -> Outcome:
    if not ctx.known_subject and cmd.request_type is not RequestType.complaint:
        return reject("unknown_subject", "no system has reported this subject")
    rec = RequestRecord(
        request_id=cmd.request_id,
        request_type=cmd.request_type,
        subject_id=cmd.subject_id,
        actor=cmd.actor,
        state=RequestState.received,
        received_on=cmd.received_on,
        identity_verified_on=cmd.identity_verified_on,
        identity_received_on=cmd.identity_received_on,
        rectification=dict(cmd.rectification),
        objection_scope=cmd.objection_scope,
        linked_request_id=cmd.linked_request_id,
        reason=cmd.reason,
        created_at=ctx.now,
        commands_seen=[cmd.command_id],
        history=[HistoryItem(at=ctx.now, event=E.submitted.value, state=RequestState.received)],
    )
    out = Outcome(
        record=rec,
        audit=[AuditStep("request_received", after=rec.state.value, reason=rec.request_type.value)],
    )
    if rec.request_type is RequestType.rectification:
        unknown = sorted(set(rec.rectification) - set(RECTIFIABLE_FIELDS))
        if not rec.rectification or unknown:
            return reject(
                "invalid_command",
                f"rectification fields must be among "
                f"{sorted(RECTIFIABLE_FIELDS)}; got {unknown or 'none'}",
            )
    if rec.request_type in IDENTITY_REQUIRED:
        if rec.identity_verified_on is None:
            move(rec, E.identity_required, out, ctx.now)
            timelimits.recompute_due(rec, ctx)
            return out
        move(rec, E.identity_verified, out, ctx.now)
    else:
        move(rec, E.accepted, out, ctx.now)
    timelimits.recompute_due(rec, ctx)
    start_work(rec, ctx, out)
    return out


def _identity_verified(
    rec: RequestRecord, cmd: r.IdentityVerified, ctx: Context, out: Outcome
) -> None:
    rec.identity_verified_on = cmd.verified_on
    rec.identity_received_on = cmd.information_received_on or rec.identity_received_on
    move(rec, E.identity_verified, out, ctx.now)
    timelimits.recompute_due(rec, ctx)
    start_work(rec, ctx, out)


def _fee_received(rec: RequestRecord, cmd: r.FeeReceived, ctx: Context, out: Outcome) -> None:
    rec.fee_received_on = cmd.received_on
    timelimits.recompute_due(rec, ctx)
    out.audit.append(
        AuditStep(
            "request_transitioned", after=rec.state.value, reason=f"fee received; due {rec.due_on}"
        )
    )


def _clarification_requested(
    rec: RequestRecord, cmd: r.ClarificationRequested, ctx: Context, out: Outcome
) -> None:
    move(rec, E.clarification_requested, out, ctx.now)
    timelimits.begin_pause(rec, cmd.asked_on)


def _clarification_received(
    rec: RequestRecord, cmd: r.ClarificationReceived, ctx: Context, out: Outcome
) -> None:
    move(rec, E.clarification_received, out, ctx.now)
    timelimits.end_pause(rec, cmd.received_on, ctx)
    if rec.request_type is RequestType.complaint:
        return  # acknowledged when it arrived; resuming must not acknowledge again
    if not rec.tasks:
        start_work(rec, ctx, out)
        return
    # Paused while its tasks were out (timelimits): back to waiting for them, and
    # finish now if every answer came in during the pause.
    move(rec, E.tasks_sent, out, ctx.now)
    if all(t.state in FINAL_TASK_STATES for t in rec.tasks.values()):
        finish(rec, ctx, out)


def _deadline_extended(
    rec: RequestRecord, cmd: r.DeadlineExtended, ctx: Context, out: Outcome
) -> None:
    timelimits.extend(rec, cmd, ctx)
    out.audit.append(AuditStep("deadline_extended", after=str(rec.due_on), reason=cmd.reason))
    notify_subject(
        rec,
        out,
        ctx,
        "deadline_extended",
        f"We need more time for your request: {cmd.reason}. "
        f"We will respond by {rec.due_on.isoformat() if rec.due_on else '-'}.",
    )


def _objection_decided(
    rec: RequestRecord, cmd: r.ObjectionDecided, ctx: Context, out: Outcome
) -> None:
    if rec.objection_scope is not ObjectionScope.legitimate_interest:
        raise DomainError("only a legitimate-interest objection awaits a DPO decision")
    if rec.state is not RequestState.in_progress or rec.tasks:
        raise DomainError(f"objection cannot be decided now (state {rec.state})")
    rec.reason = cmd.reason
    if not cmd.accepted:
        notify_subject(
            rec,
            out,
            ctx,
            "objection_refused",
            f"We considered your objection and will continue: {cmd.reason}",
        )
        move(rec, E.refused, out, ctx.now)
        return
    out.audit.append(
        AuditStep("request_transitioned", after="objection_accepted", reason=cmd.reason)
    )
    send_tasks(rec, ctx, TaskAction.restrict, holdings(ctx))
    retries.send_pending(rec, ctx, out)
    notify_subject(
        rec,
        out,
        ctx,
        "objection_accepted",
        "We have stopped processing your data for our legitimate interests.",
    )
    move(rec, E.tasks_sent if rec.tasks else E.answered, out, ctx.now)


def _refused(rec: RequestRecord, cmd: r.RequestRefused, ctx: Context, out: Outcome) -> None:
    _no_work_out(rec, "refused")
    rec.reason = cmd.reason
    move(rec, E.refused, out, ctx.now)
    notify_subject(
        rec,
        out,
        ctx,
        "request_refused",
        f"We cannot act on your request: {cmd.reason}. You may complain to "
        "the ICO (www.ico.org.uk).",
    )


def _cancelled(rec: RequestRecord, cmd: r.RequestCancelled, ctx: Context, out: Outcome) -> None:
    _no_work_out(rec, "cancelled")
    rec.reason = cmd.reason
    move(rec, E.cancelled, out, ctx.now)


def _answered(rec: RequestRecord, cmd: r.RequestAnswered, ctx: Context, out: Outcome) -> None:
    rec.reason = cmd.reason
    move(rec, E.answered, out, ctx.now)
    notify_subject(rec, out, ctx, f"{rec.request_type.value}_answered", cmd.reason)


def _no_work_out(rec: RequestRecord, verb: str) -> None:
    """Refusal and cancellation come before any work goes out, paused requests included."""
    if rec.tasks:
        raise DomainError(f"a request whose tasks went out cannot be {verb}")


_HANDLERS: dict[type[r.Command], Callable[[RequestRecord, Any, Context, Outcome], None]] = {
    r.IdentityVerified: _identity_verified,
    r.FeeReceived: _fee_received,
    r.ClarificationRequested: _clarification_requested,
    r.ClarificationReceived: _clarification_received,
    r.DeadlineExtended: _deadline_extended,
    r.ObjectionDecided: _objection_decided,
    r.RequestRefused: _refused,
    r.RequestCancelled: _cancelled,
    r.RequestAnswered: _answered,
}


# --- timers -------------------------------------------------------------------------------


def on_tick(rec: RequestRecord | None, tick: Tick, ctx: Context) -> Outcome:
    """A timer's finding: an overdue task answer, a deadline stage, a follow-up."""
    if rec is None:
        return Outcome(record=None)
    rec = rec.model_copy(deep=True)
    out = Outcome(record=rec)
    if tick.kind is TickKind.task_overdue:
        task = rec.tasks.get(tick.task_id or "")
        if task is not None:
            retries.on_overdue(rec, task, ctx, out)
    elif tick.kind is TickKind.deadline_approaching or tick.kind is TickKind.deadline_breached:
        timelimits.raise_deadline_alert(rec, tick, ctx, out)
    elif tick.kind is TickKind.followup:
        _followups(rec, ctx, out)
    else:
        assert_never(tick.kind)
    return out if out.out or out.audit else Outcome(record=None)


def _followups(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    """Retention ended: ask for a follow-up erasure as a new request (re-planned then)."""
    for i, item in enumerate(rec.followups):
        if item.issued or item.due_at > ctx.now:
            continue
        item.issued = True
        child = f"{rec.request_id}-F{i + 1}"
        cmd = r.RequestSubmitted(
            command_id=_id(child, "submitted"),
            request_id=child,
            issued_at=ctx.now,
            actor="privops-scheduler",
            request_type=RequestType.erasure,
            subject_id=rec.subject_id,
            received_on=ctx.today,
            identity_verified_on=ctx.today,
            linked_request_id=rec.request_id,
            reason=f"retention ended for {item.system.value}: "
            + ", ".join(c.value for c in item.categories),
        )
        out.out.append(Out(COMMANDS, child, cmd))
        out.audit.append(
            AuditStep(
                "request_received", after="followup_scheduled", reason=f"follow-up erasure {child}"
            )
        )


def pending_followups(rec: RequestRecord) -> list[datetime]:
    return [f.due_at for f in rec.followups if not f.issued]
