"""Task scheduling and retries: the one owner of send, due, backoff and escalation.

A task is sent with attempt 1 and waits its system's SLA for an answer. Each time the
answer is overdue it is re-sent (same task id; systems treat it idempotently) and waits
the data map's backoff for that attempt (``RetryPolicy.delay_after``), capped at the
longest step. After ``max_attempts`` the task is escalated once (alert, audit, metric)
and from then on re-sent at the longest backoff, so a system that comes back answers it
without anyone re-submitting the request. A retryable failure ("retry later") is
re-sent after the backoff of the attempt it answered (``retry_later``). A task escalated
on either is said to have had no final answer, or to be silent, as it was. A system
answering "failed" for good is escalated too (``escalate``, from the answer).

"Is it due?" is decided here only (``is_due``); the worker's schedule merely indexes
``next_checks`` so the sweep costs what is due, and the workflow re-asks ``is_due``
because a tick may be stale by the time it arrives (answered or re-sent since).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from privops.core import erasure, search
from privops.core import records as r
from privops.core.datamap import SystemSpec
from privops.core.request import (
    AuditStep,
    Context,
    KeptItem,
    Out,
    Outcome,
    RequestRecord,
    TaskRecord,
)
from privops.core.request import stable_id as _id
from privops.core.topics import ALERTS
from privops.core.vocab import (
    FINAL_TASK_STATES,
    ObjectionScope,
    RequestType,
    System,
    TaskAction,
    TaskState,
)


def make_task_id(request_id: str, system: System, action: TaskAction) -> str:
    """One task per request, system and action: re-sends reuse it (systems dedupe on it)."""
    return f"{request_id}:{system.value}:{action.value}"


def answer_window(spec: SystemSpec, attempt: int) -> timedelta:
    """How long attempt number `attempt` (1-based) waits for its answer."""
    if attempt <= 1:
        return timedelta(seconds=spec.sla_seconds)
    step = min(attempt - 1, spec.retry.max_attempts)
    return timedelta(seconds=spec.retry.delay_after(step))


def waiting(rec: RequestRecord, task: TaskRecord) -> bool:
    """The task has been sent and its request still waits for the answer."""
    return rec.open and task.state not in FINAL_TASK_STATES and task.next_check_at is not None


def is_due(rec: RequestRecord, task: TaskRecord, now: datetime) -> bool:
    """The answer is overdue at `now`: re-send or escalate."""
    return waiting(rec, task) and task.next_check_at is not None and task.next_check_at <= now


def next_checks(rec: RequestRecord) -> list[tuple[datetime, str]]:
    """(when, task id) for each task still waiting for an answer: the SLA timer's index."""
    return [
        (t.next_check_at, t.task_id)
        for t in rec.tasks.values()
        if t.next_check_at is not None and waiting(rec, t)
    ]


def send_pending(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    """Send every task not sent yet (first attempts)."""
    for task in rec.tasks.values():
        if task.state is TaskState.pending:
            _send(rec, task, ctx, out)


def on_overdue(rec: RequestRecord, task: TaskRecord, ctx: Context, out: Outcome) -> None:
    """The answer did not come in time: re-send, or escalate once after the last attempt."""
    if not is_due(rec, task, ctx.now):
        return
    spec = ctx.datamap.systems[task.system]
    if task.attempts < spec.retry.max_attempts or task.state is TaskState.escalated:
        _send(rec, task, ctx, out)
        return
    task.state = TaskState.escalated
    # An escalated task waits as long as its next attempt would before it is re-sent.
    task.next_check_at = ctx.now + answer_window(spec, task.attempts + 1)
    # A system that kept answering "retry later" was not silent: said so (review).
    told = "no final answer" if task.outcome_reason else "silent"
    escalate(rec, task, ctx, out, "escalated", f"{told} after {task.attempts} attempts")


def escalate(
    rec: RequestRecord,
    task: TaskRecord,
    ctx: Context,
    out: Outcome,
    kind: str,
    why: str,
    before: str = "sent",
) -> None:
    """Tell the DPO (a TaskEscalated alert, PrivopsTaskEscalated) that ``task`` needs a
    person: its system stayed silent after every attempt (``kind`` "escalated"), or
    answered that it failed for good ("failed"; the subject is told the DPO follows it
    up, and until session 33 nothing told the DPO: legal review)."""
    alert = r.TaskEscalated(
        alert_id=_id(task.task_id, kind),
        request_id=rec.request_id,
        raised_at=ctx.now,
        task_id=task.task_id,
        system=task.system,
        attempts=task.attempts,
    )
    out.out.append(Out(ALERTS, rec.subject_id, alert))
    out.audit.append(
        AuditStep(
            "task_escalated",
            before=before,
            after=kind,
            reason=f"{task.system.value} {why}",
        )
    )


def resend_held(rec: RequestRecord, task: TaskRecord, ctx: Context, out: Outcome) -> None:
    """A legal hold was just placed (``ctx.holds`` has it): an erase task still waiting
    for its answer that would erase a held category goes again now, keeping it
    (``_honour_holds``). A system that has not fetched the first attempt yet executes
    only this one (its runner takes the newest attempt of a fetch)."""
    if task.action is not TaskAction.erase or not waiting(rec, task):
        return
    holds = erasure.active_holds(rec.subject_id, ctx.holds, ctx.now)
    if any(erasure.held(category, holds) for category in task.categories):
        _send(rec, task, ctx, out)


def retry_later(task: TaskRecord, spec: SystemSpec, now: datetime) -> None:
    """A retryable failure: due again after the system's backoff for the attempt that
    failed. Due at the next sweep, as until session 33, a system answering "not now"
    at once used up every attempt in seconds and was escalated as silent (review).

    Once an attempt: a system answering "not now" more often than its backoff moved the
    check out at each answer, so its task was never re-sent nor escalated (review,
    session 43). The re-send is a new attempt, whose own "not now" backs off again."""
    if task.backed_off == task.attempts:
        return
    step = min(max(task.attempts, 1), spec.retry.max_attempts)  # as answer_window caps it
    task.next_check_at = now + timedelta(seconds=spec.retry.delay_after(step))
    task.backed_off = task.attempts


def _send(rec: RequestRecord, task: TaskRecord, ctx: Context, out: Outcome) -> None:
    spec = ctx.datamap.systems[task.system]
    kept = _honour_holds(rec, task, ctx)
    task.attempts += 1
    if task.state is not TaskState.escalated:
        task.state = TaskState.sent
    task.first_sent_at = task.first_sent_at or ctx.now
    task.next_check_at = ctx.now + answer_window(spec, task.attempts)
    model = r.TASK_BY_ACTION[task.action]
    extra: dict[str, Any] = {"changes": task.changes} if task.action is TaskAction.rectify else {}
    if (
        task.action is TaskAction.restrict
        and rec.objection_scope is ObjectionScope.direct_marketing
    ):
        extra["marketing_objection"] = True  # not lifted with a restriction
    elif task.action is TaskAction.restrict and task.objected_purposes:
        # an upheld legitimate-interest objection: those purposes only, not a restriction
        extra["objected_purposes"] = task.objected_purposes
    searched = task.action is TaskAction.export and rec.search and spec.searched_by_details
    if searched:
        extra["search"] = rec.search  # sealed as the identifiers are (PERSONAL)
    if task.action is TaskAction.export and rec.request_type is RequestType.portability:
        extra["portability"] = True  # its categories only, machine-readable
    message = model(
        task_id=task.task_id,
        request_id=rec.request_id,
        subject_id=rec.subject_id,
        system=task.system,
        attempt=task.attempts,
        issued_at=ctx.now,
        identifiers=task.identifiers,
        previous_identifiers=task.previous_identifiers,
        categories=task.categories,
        keep=[r.Retention(category=k.category, ground=k.ground, until=k.until) for k in task.keep],
        **extra,
    )
    out.out.append(Out(spec.task_topic, rec.subject_id, message))
    out.audit.append(
        AuditStep(
            "task_sent" if task.attempts == 1 else "task_retried",
            after=f"{task.system.value}:{task.action.value}",
            reason=f"attempt {task.attempts}"
            + (f"; {kept}" if kept else "")
            + (f"; searched by {search.shown(rec.search)}" if searched else ""),
        )
    )


def _honour_holds(rec: RequestRecord, task: TaskRecord, ctx: Context) -> str:
    """An erase task's categories a legal hold placed since it was planned now keeps:
    moved from what to erase to what to keep before the task goes (again), so a system
    that has not acted yet keeps them (DESIGN.md section 5: holds block erasure). What
    a system already erased is gone; its answer to the re-send says what it did. Says
    which categories moved ("" if none), for the audit."""
    if task.action is not TaskAction.erase or not ctx.holds:
        return ""
    holds = erasure.active_holds(rec.subject_id, ctx.holds, ctx.now)
    moved: list[str] = []
    for category in list(task.categories):
        kept = erasure.held(category, holds)
        if kept is None:
            continue
        task.categories.remove(category)
        task.keep.append(
            KeptItem(system=task.system, category=category, ground=kept.ground, until=None)
        )
        moved.append(category.value)
    return f"kept under a legal hold: {', '.join(moved)}" if moved else ""
