"""The request workflow as pure decisions: (request record, input, context) -> outcome.

One ``RequestRecord`` per request holds its lifecycle state, its deadline clock and each
system's task. ``on_command``, ``on_result`` and ``on_tick`` never do I/O: they return
the new record plus what to publish (tasks, alerts, notifications, directives) and what
to audit. The Faust agent only decodes, looks up the context, calls these and emits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from privops.core import deadlines, erasure, manifest
from privops.core import records as r
from privops.core.datamap import DataMap
from privops.core.errors import DomainError
from privops.core.identity import IdentityMap, for_system
from privops.core.lifecycle import IDENTITY_REQUIRED, LifecycleEvent, transition
from privops.core.topics import ALERTS, COMMANDS, NOTIFICATIONS, SUBJECT_DIRECTIVES
from privops.core.vocab import (
    FINAL_TASK_STATES,
    TERMINAL_STATES,
    Category,
    ObjectionScope,
    RequestState,
    RequestType,
    System,
    TaskAction,
    TaskState,
)

E = LifecycleEvent
MAX_REMEMBERED_COMMANDS = 32

# Fields a rectification may carry and the category each belongs to.
RECTIFIABLE_FIELDS: dict[str, Category] = {
    "name": Category.contact,
    "email": Category.contact,
    "phone": Category.contact,
    "address": Category.contact,
    "postcode": Category.contact,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KeptItem(_Model):
    system: System
    category: Category
    ground: str
    until: datetime | None = None


class TaskRecord(_Model):
    task_id: str
    system: System
    action: TaskAction
    state: TaskState = TaskState.pending
    attempts: int = 0
    first_sent_at: datetime | None = None
    next_check_at: datetime | None = None
    identifiers: dict[str, str] = {}
    categories: list[Category] = []
    keep: list[KeptItem] = []
    changes: dict[str, str] = {}
    answered_at: datetime | None = None
    outcome_reason: str | None = None
    export: r.ExportReference | None = None


class HistoryItem(_Model):
    at: datetime
    event: str
    state: RequestState


class FollowupItem(_Model):
    system: System
    categories: list[Category]
    due_at: datetime
    issued: bool = False


class RequestRecord(_Model):
    request_id: str
    request_type: RequestType
    subject_id: str
    actor: str
    state: RequestState
    received_on: date
    identity_verified_on: date | None = None
    fee_received_on: date | None = None
    clock_start: date | None = None
    due_on: date | None = None
    paused_days: int = 0
    clarification_asked_on: date | None = None
    extended: bool = False
    extension_reason: str | None = None
    deadline_stage: int = 0
    rectification: dict[str, str] = {}
    objection_scope: ObjectionScope | None = None
    linked_request_id: str | None = None
    reason: str | None = None
    tasks: dict[str, TaskRecord] = {}
    kept: list[KeptItem] = []
    followups: list[FollowupItem] = []
    history: list[HistoryItem] = []
    manifest: dict[str, Any] | None = None
    commands_seen: list[str] = []
    created_at: datetime
    closed_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.state not in TERMINAL_STATES


@dataclass(frozen=True)
class Context:
    """Everything a decision may look at besides the request itself."""

    now: datetime
    today: date
    datamap: DataMap
    subject_ref: str
    identity: IdentityMap | None = None
    known_subject: bool = True
    facts: erasure.SubjectFacts = field(default_factory=erasure.SubjectFacts)
    holds: tuple[erasure.LegalHold, ...] = ()
    complaint_ack_days: int = 30


@dataclass(frozen=True)
class AuditStep:
    action: str
    before: str | None = None
    after: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Out:
    topic: str
    key: str
    record: r.Record


@dataclass
class Outcome:
    """The result of one decision. ``record`` None means: nothing to store."""

    record: RequestRecord | None
    audit: list[AuditStep] = field(default_factory=list)
    out: list[Out] = field(default_factory=list)
    rejected: str | None = None
    message: str | None = None


def reject(reason: str, message: str, record: RequestRecord | None = None) -> Outcome:
    return Outcome(
        record=None,
        audit=[AuditStep("command_rejected", reason=f"{reason}: {message}")],
        rejected=reason,
        message=message,
    )


def _id(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


# --- lifecycle helpers -----------------------------------------------------------------


def _move(rec: RequestRecord, event: LifecycleEvent, out: Outcome, now: datetime) -> None:
    before = rec.state
    rec.state = transition(rec.state, event, request_type=rec.request_type)
    rec.history.append(HistoryItem(at=now, event=event.value, state=rec.state))
    if rec.state in TERMINAL_STATES:
        rec.closed_at = now
    out.audit.append(
        AuditStep("request_transitioned", before=before.value, after=rec.state.value, reason=event)
    )


def _recompute_due(rec: RequestRecord, ctx: Context) -> None:
    if rec.request_type is RequestType.complaint:
        rec.clock_start = rec.received_on
        rec.due_on = deadlines.complaint_ack_due(rec.received_on, ctx.complaint_ack_days)
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
        fee_required=rec.fee_received_on is not None,
    )
    rec.clock_start = start
    rec.due_on = (
        deadlines.due_date(start, extended=rec.extended, paused_days=rec.paused_days)
        if start
        else None
    )


def _notify_subject(
    rec: RequestRecord, out: Outcome, ctx: Context, kind: str, message: str, **extra: Any
) -> None:
    note = r.SubjectNotification(
        notification_id=_id(rec.request_id, kind, len(rec.history)),
        request_id=rec.request_id,
        issued_at=ctx.now,
        subject_id=rec.subject_id,
        kind=kind,
        message=message,
        **extra,
    )
    out.out.append(Out(NOTIFICATIONS, rec.request_id, note))
    out.audit.append(AuditStep("notification_sent", after=kind, reason="subject"))


def _directive(rec: RequestRecord, out: Outcome, ctx: Context, kind: str) -> None:
    directive = r.SubjectDirective(
        directive_id=_id(rec.request_id, kind),
        subject_id=rec.subject_id,
        request_id=rec.request_id,
        kind=kind,
        occurred_at=ctx.now,
    )
    out.out.append(Out(SUBJECT_DIRECTIVES, rec.subject_id, directive))


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
    try:
        _apply_command(rec, cmd, ctx, out)
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
            _move(rec, E.identity_required, out, ctx.now)
            _recompute_due(rec, ctx)
            return out
        _move(rec, E.identity_verified, out, ctx.now)
    else:
        _move(rec, E.accepted, out, ctx.now)
    _recompute_due(rec, ctx)
    _start_work(rec, ctx, out)
    return out


def _apply_command(rec: RequestRecord, cmd: r.Command, ctx: Context, out: Outcome) -> None:
    if isinstance(cmd, r.IdentityVerified):
        rec.identity_verified_on = cmd.verified_on
        _move(rec, E.identity_verified, out, ctx.now)
        _recompute_due(rec, ctx)
        _start_work(rec, ctx, out)
    elif isinstance(cmd, r.FeeReceived):
        rec.fee_received_on = cmd.received_on
        _recompute_due(rec, ctx)
        out.audit.append(
            AuditStep(
                "request_transitioned",
                after=rec.state.value,
                reason=f"fee received; due {rec.due_on}",
            )
        )
    elif isinstance(cmd, r.ClarificationRequested):
        rec.clarification_asked_on = cmd.asked_on
        _move(rec, E.clarification_requested, out, ctx.now)
    elif isinstance(cmd, r.ClarificationReceived):
        asked = rec.clarification_asked_on or cmd.received_on
        rec.paused_days += max(0, (cmd.received_on - asked).days)
        rec.clarification_asked_on = None
        _move(rec, E.clarification_received, out, ctx.now)
        _recompute_due(rec, ctx)
        # A complaint was acknowledged when it arrived; resuming must not acknowledge again.
        if not rec.tasks and rec.request_type is not RequestType.complaint:
            _start_work(rec, ctx, out)
    elif isinstance(cmd, r.DeadlineExtended):
        if rec.clock_start is None or rec.extended:
            raise DomainError("extension needs a running clock and is allowed once")
        if not rec.open:
            raise DomainError(f"request is {rec.state}")
        deadlines.extend(rec.clock_start, ctx.today, cmd.reason, paused_days=rec.paused_days)
        rec.extended = True
        rec.extension_reason = cmd.reason
        rec.deadline_stage = 0
        _recompute_due(rec, ctx)
        out.audit.append(AuditStep("deadline_extended", after=str(rec.due_on), reason=cmd.reason))
        _notify_subject(
            rec,
            out,
            ctx,
            "deadline_extended",
            f"We need more time for your request: {cmd.reason}. "
            f"We will respond by {rec.due_on.isoformat() if rec.due_on else '-'}.",
        )
    elif isinstance(cmd, r.ObjectionDecided):
        if rec.objection_scope is not ObjectionScope.legitimate_interest:
            raise DomainError("only a legitimate-interest objection awaits a DPO decision")
        if rec.state is not RequestState.in_progress or rec.tasks:
            raise DomainError(f"objection already decided (state {rec.state})")
        rec.reason = cmd.reason
        if cmd.accepted:
            out.audit.append(
                AuditStep("request_transitioned", after="objection_accepted", reason=cmd.reason)
            )
            _send_tasks(rec, ctx, out, TaskAction.restrict, _holdings(rec, ctx))
            _publish_tasks(rec, ctx, out)
            _notify_subject(
                rec,
                out,
                ctx,
                "objection_accepted",
                "We have stopped processing your data for our legitimate interests.",
            )
            if rec.tasks:
                _move(rec, E.tasks_sent, out, ctx.now)
            else:
                _move(rec, E.answered, out, ctx.now)
        else:
            _notify_subject(
                rec,
                out,
                ctx,
                "objection_refused",
                f"We considered your objection and will continue: {cmd.reason}",
            )
            _move(rec, E.refused, out, ctx.now)
    elif isinstance(cmd, r.RequestRefused):
        rec.reason = cmd.reason
        _move(rec, E.refused, out, ctx.now)
        _notify_subject(
            rec,
            out,
            ctx,
            "request_refused",
            f"We cannot act on your request: {cmd.reason}. You may complain to "
            "the ICO (www.ico.org.uk).",
        )
    elif isinstance(cmd, r.RequestCancelled):
        rec.reason = cmd.reason
        _move(rec, E.cancelled, out, ctx.now)
    elif isinstance(cmd, r.RequestAnswered):
        rec.reason = cmd.reason
        _move(rec, E.answered, out, ctx.now)
        _notify_subject(rec, out, ctx, f"{rec.request_type.value}_answered", cmd.reason)
    else:
        raise DomainError(f"{type(cmd).__name__} does not apply to a request")


# --- starting the work ----------------------------------------------------------------------


def _holdings(rec: RequestRecord, ctx: Context) -> dict[System, set[Category]]:
    """Systems that hold this subject's data (the data map) and can look them up."""
    held = ctx.datamap.holdings()
    if ctx.identity is None:
        return {}
    known = set(ctx.identity.systems)
    return {system: cats for system, cats in held.items() if system in known}


def _identifiers(ctx: Context, system: System) -> dict[str, str]:
    if ctx.identity is None:
        return {}
    return for_system(ctx.identity, system)


def _start_work(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    kind = rec.request_type
    held = _holdings(rec, ctx)
    if kind is RequestType.erasure:
        plan = erasure.plan_erasure(
            rec.subject_id, ctx.datamap, held, list(ctx.holds), ctx.facts, ctx.now
        )
        for instruction in plan.instructions:
            keep = [
                KeptItem(
                    system=instruction.system, category=k.category, ground=k.ground, until=k.until
                )
                for k in instruction.keep
            ]
            _add_task(rec, ctx, instruction.system, TaskAction.erase, list(instruction.erase), keep)
        rec.followups = [
            FollowupItem(system=f.system, categories=list(f.categories), due_at=f.due_at)
            for f in plan.followups
        ]
        _notify_recipients(rec, ctx, out, TaskAction.erase, plan.erased_categories)
        _directive(rec, out, ctx, "suppressed")
    elif kind is RequestType.restriction:
        _send_tasks(rec, ctx, out, TaskAction.restrict, held)
        _notify_recipients(rec, ctx, out, TaskAction.restrict, _all(held))
        _directive(rec, out, ctx, "restricted")
    elif kind is RequestType.restriction_lift:
        # Art. 18(3): the subject is told before the restriction is lifted.
        _notify_subject(
            rec,
            out,
            ctx,
            "restriction_lift_pending",
            "The restriction on your data will be lifted.",
        )
        _send_tasks(rec, ctx, out, TaskAction.lift_restriction, held)
        _directive(rec, out, ctx, "restriction_lifted")
    elif kind is RequestType.rectification:
        wanted = {RECTIFIABLE_FIELDS[f] for f in rec.rectification}
        relevant = {s: c & wanted for s, c in held.items() if c & wanted}
        _send_tasks(rec, ctx, out, TaskAction.rectify, relevant, changes=rec.rectification)
        _notify_recipients(rec, ctx, out, TaskAction.rectify, wanted)
    elif kind is RequestType.access:
        _send_tasks(rec, ctx, out, TaskAction.export, held)
    elif kind is RequestType.objection:
        if rec.objection_scope is ObjectionScope.legitimate_interest:
            out.audit.append(
                AuditStep(
                    "request_transitioned",
                    after=rec.state.value,
                    reason="awaiting the DPO's decision on the objection",
                )
            )
            return
        _directive(rec, out, ctx, "objected")
        marketing: dict[System, set[Category]] = {
            s: c for s, c in held.items() if s is System.marketing
        }
        _send_tasks(rec, ctx, out, TaskAction.restrict, marketing)
    elif kind is RequestType.consent_withdrawal:
        _directive(rec, out, ctx, "withdrawn")
    elif kind is RequestType.complaint:
        _notify_subject(
            rec,
            out,
            ctx,
            "complaint_acknowledged",
            f"Your complaint is with our DPO; we will respond by {rec.due_on}.",
        )
        return
    _publish_tasks(rec, ctx, out)
    if rec.tasks:
        _move(rec, E.tasks_sent, out, ctx.now)
    else:
        _move(rec, E.answered, out, ctx.now)
        _finish(rec, ctx, out)


def _all(held: dict[System, set[Category]]) -> set[Category]:
    return {c for cats in held.values() for c in cats}


def _send_tasks(
    rec: RequestRecord,
    ctx: Context,
    out: Outcome,
    action: TaskAction,
    held: dict[System, set[Category]],
    changes: dict[str, str] | None = None,
) -> None:
    for system, cats in sorted(held.items()):
        _add_task(rec, ctx, system, action, sorted(cats), [], changes or {})


def _add_task(
    rec: RequestRecord,
    ctx: Context,
    system: System,
    action: TaskAction,
    categories: list[Category],
    keep: list[KeptItem],
    changes: dict[str, str] | None = None,
) -> None:
    identifiers = _identifiers(ctx, system)
    if not identifiers:
        return
    task_id = make_task_id(rec.request_id, system, action)
    rec.tasks[task_id] = TaskRecord(
        task_id=task_id,
        system=system,
        action=action,
        identifiers=identifiers,
        categories=categories,
        keep=keep,
        changes=changes or {},
    )


def _publish_tasks(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    for task in rec.tasks.values():
        if task.state is TaskState.pending:
            _send(rec, task, ctx, out)


def _send(rec: RequestRecord, task: TaskRecord, ctx: Context, out: Outcome) -> None:
    spec = ctx.datamap.systems[task.system]
    task.attempts += 1
    task.state = TaskState.sent if task.state is not TaskState.escalated else task.state
    task.first_sent_at = task.first_sent_at or ctx.now
    backoff_step = min(task.attempts - 1, spec.retry.max_attempts)
    wait = spec.sla_seconds if task.attempts == 1 else spec.retry.delay_after(backoff_step)
    task.next_check_at = ctx.now + timedelta(seconds=wait)
    model = r.TASK_BY_ACTION[task.action]
    extra: dict[str, Any] = {"changes": task.changes} if task.action is TaskAction.rectify else {}
    message = model(
        task_id=task.task_id,
        request_id=rec.request_id,
        subject_id=rec.subject_id,
        system=task.system,
        attempt=task.attempts,
        issued_at=ctx.now,
        identifiers=task.identifiers,
        categories=task.categories,
        keep=[r.Retention(category=k.category, ground=k.ground, until=k.until) for k in task.keep],
        **extra,
    )
    out.out.append(Out(spec.task_topic, rec.subject_id, message))
    out.audit.append(
        AuditStep(
            "task_sent" if task.attempts == 1 else "task_retried",
            after=f"{task.system.value}:{task.action.value}",
            reason=f"attempt {task.attempts}",
        )
    )


def _notify_recipients(
    rec: RequestRecord, ctx: Context, out: Outcome, action: TaskAction, cats: Iterable[Category]
) -> None:
    categories = set(cats)
    for recipient in erasure.recipients_to_notify(ctx.datamap, categories):
        affected = sorted(categories & set(recipient.categories))
        note = r.RecipientNotification(
            notification_id=_id(rec.request_id, recipient.name, action),
            request_id=rec.request_id,
            issued_at=ctx.now,
            recipient=recipient.name,
            action=action,
            categories=affected,
            subject_ref=ctx.subject_ref,
        )
        out.out.append(Out(NOTIFICATIONS, rec.request_id, note))
        out.audit.append(
            AuditStep("notification_sent", after=recipient.name, reason=f"Art. 19 {action.value}")
        )


# --- answers ----------------------------------------------------------------------------


_FINAL_BY_RESULT: dict[type[r.TaskResult], TaskState] = {
    r.TaskCompleted: TaskState.done,
    r.TaskRetained: TaskState.retained,
    r.NotFound: TaskState.not_found,
}


def on_result(rec: RequestRecord | None, result: r.TaskResult, ctx: Context) -> Outcome:
    """Apply a system's answer to its task."""
    if rec is None:
        return reject("unknown_request", f"answer for unknown request {result.request_id}")
    task = rec.tasks.get(result.task_id)
    if task is None:
        return reject("unknown_task", f"answer for unknown task {result.task_id}")
    if task.system is not result.system:
        return reject("invalid_command", f"{result.system} answered a task of {task.system}")
    if task.state in FINAL_TASK_STATES:
        return Outcome(
            record=None,
            audit=[
                AuditStep(
                    "task_answered",
                    after=task.state.value,
                    reason=f"duplicate answer from {result.system.value} ignored",
                )
            ],
        )
    rec = rec.model_copy(deep=True)
    task = rec.tasks[result.task_id]
    out = Outcome(record=rec)
    before = task.state
    if isinstance(result, r.TaskFailed) and result.retryable:
        task.outcome_reason = result.reason
        task.next_check_at = ctx.now  # retry at the next sweep, with the usual backoff
        out.audit.append(
            AuditStep(
                "task_answered",
                before=before.value,
                after="failed_retryable",
                reason=f"{task.system.value}: {result.reason}",
            )
        )
        return out
    task.state = _FINAL_BY_RESULT.get(type(result), TaskState.failed)
    task.answered_at = result.answered_at
    task.next_check_at = None
    if isinstance(result, r.TaskCompleted):
        task.export = result.export
    if isinstance(result, r.TaskRetained | r.TaskFailed):
        task.outcome_reason = result.reason
    if isinstance(result, r.TaskRetained):
        planned = {k.category: k for k in task.keep}
        for cat in result.categories or list(planned):
            kept = planned.get(cat)
            rec.kept.append(
                KeptItem(
                    system=task.system,
                    category=cat,
                    ground=kept.ground if kept else result.reason,
                    until=kept.until if kept else None,
                )
            )
    out.audit.append(
        AuditStep(
            "task_answered",
            before=before.value,
            after=task.state.value,
            reason=f"{task.system.value}:{task.action.value}",
        )
    )
    if all(t.state in FINAL_TASK_STATES for t in rec.tasks.values()):
        _finish(rec, ctx, out)
    return out


def _finish(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    """Every task answered: complete (or partially) and tell the subject."""
    if rec.request_type is RequestType.access:
        exports = [(t.system, t.export) for t in rec.tasks.values() if t.export is not None]
        rec.manifest = manifest.build_access_manifest(
            rec.request_id,
            rec.subject_id,
            ctx.subject_ref,
            ctx.datamap,
            _holdings(rec, ctx),
            exports,
            ctx.now,
        )
        _notify_subject(
            rec,
            out,
            ctx,
            "access_response",
            "Your copy of the personal data we hold, with how we use it.",
            document=json.dumps(rec.manifest, default=str, sort_keys=True),
            exports=[e for _, e in exports],
        )
    if rec.state is RequestState.awaiting_systems:
        partial = bool(rec.kept) or any(t.state is TaskState.failed for t in rec.tasks.values())
        event = E.all_tasks_final_partial if partial else E.all_tasks_final_complete
        _move(rec, event, out, ctx.now)
    if rec.request_type is RequestType.erasure and rec.kept:
        kept = "; ".join(f"{k.system.value}/{k.category.value}: {k.ground}" for k in rec.kept)
        _notify_subject(
            rec,
            out,
            ctx,
            "erasure_outcome",
            f"We erased your data except what the law requires us to keep: {kept}",
        )


# --- timers -------------------------------------------------------------------------------


def on_tick(rec: RequestRecord | None, tick: r.RequestTick, ctx: Context) -> Outcome:
    """A timer's finding: an overdue task answer, a deadline threshold, a follow-up."""
    if rec is None:
        return Outcome(record=None)
    rec = rec.model_copy(deep=True)
    out = Outcome(record=rec)
    if tick.kind == "task_overdue" and tick.task_id in rec.tasks:
        _task_overdue(rec, rec.tasks[tick.task_id], ctx, out)
    elif tick.kind in ("deadline_approaching", "deadline_breached"):
        _deadline(rec, tick, ctx, out)
    elif tick.kind == "followup":
        _followups(rec, ctx, out)
    return out if out.out or out.audit else Outcome(record=None)


def _task_overdue(rec: RequestRecord, task: TaskRecord, ctx: Context, out: Outcome) -> None:
    if task.state in FINAL_TASK_STATES or not rec.open:
        return
    if task.next_check_at is not None and task.next_check_at > ctx.now:
        return  # answered or re-sent since the tick was raised
    spec = ctx.datamap.systems[task.system]
    if task.attempts < spec.retry.max_attempts or task.state is TaskState.escalated:
        # After escalation the task keeps being re-sent at the longest backoff, so a
        # system that comes back answers it without anyone re-submitting the request.
        _send(rec, task, ctx, out)
        return
    task.state = TaskState.escalated
    task.next_check_at = ctx.now + timedelta(seconds=spec.retry.delay_after(task.attempts))
    alert = r.TaskEscalated(
        alert_id=_id(task.task_id, "escalated"),
        request_id=rec.request_id,
        raised_at=ctx.now,
        task_id=task.task_id,
        system=task.system,
        attempts=task.attempts,
    )
    out.out.append(Out(ALERTS, rec.request_id, alert))
    out.audit.append(
        AuditStep(
            "task_escalated",
            before="sent",
            after="escalated",
            reason=f"{task.system.value} silent after {task.attempts} attempts",
        )
    )


def _deadline(rec: RequestRecord, tick: r.RequestTick, ctx: Context, out: Outcome) -> None:
    if not rec.open or rec.due_on is None or tick.due_on != rec.due_on:
        return
    stage = tick.days_before if tick.days_before is not None else -1
    marker = 1000 - stage  # higher = more urgent; breach (-1) is the highest
    if marker <= rec.deadline_stage:
        return
    rec.deadline_stage = marker
    alert: r.Alert
    if tick.kind == "deadline_breached":
        alert = r.DeadlineBreached(
            alert_id=_id(rec.request_id, rec.due_on, "breached"),
            request_id=rec.request_id,
            raised_at=ctx.now,
            request_type=rec.request_type,
            due_on=rec.due_on,
            days_overdue=max(1, (ctx.today - rec.due_on).days),
        )
    else:
        alert = r.DeadlineApproaching(
            alert_id=_id(rec.request_id, rec.due_on, stage),
            request_id=rec.request_id,
            raised_at=ctx.now,
            request_type=rec.request_type,
            due_on=rec.due_on,
            days_left=deadlines.days_left(rec.due_on, ctx.today),
        )
    out.out.append(Out(ALERTS, rec.request_id, alert))
    out.audit.append(AuditStep("deadline_alert", after=tick.kind, reason=f"due {rec.due_on}"))


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


def make_task_id(request_id: str, system: System, action: TaskAction) -> str:
    """One task per request, system and action: re-sends reuse it (systems dedupe on it)."""
    return f"{request_id}:{system.value}:{action.value}"


def next_checks(rec: RequestRecord) -> list[tuple[datetime, str]]:
    """(when, task id) for each task still waiting for an answer: the SLA timer's index."""
    if not rec.open:
        return []
    return [
        (t.next_check_at, t.task_id)
        for t in rec.tasks.values()
        if t.next_check_at is not None and t.state not in FINAL_TASK_STATES
    ]


def pending_followups(rec: RequestRecord) -> list[datetime]:
    return [f.due_at for f in rec.followups if not f.issued]
