"""The request workflow: DPO commands, systems' answers and timer ticks -> tasks, alerts.

Reads:  privacy.commands, privacy.task-results.<system>, privops.internal.request-ticks
        (all keyed by subject id, co-partitioned with the subject's state)
Writes: privacy.command-results (one answer per command), privacy.tasks.<system>,
        privacy.alerts, privacy.notifications, privacy.audit,
        privops.internal.subject-directives, privacy.deadletter; table requests and the
        request index (holds are forwarded to ingest). Decisions are
        privops.core.workflow's pure functions.

A request lives on its subject's partition, so its record and the subject's identity,
consent, facts and holds are all read from the partition being processed: no worker
reads another's state. A command keyed by anything but its subject's id is rejected
(`wrong_key`) before it is decided.

Each record is acted on only if its type belongs on the topic it came from (a command
only from privacy.commands, an answer only from its own system's
privacy.task-results.<system>, a tick only from
the ticks topic); anything else is a `wrong_topic` dead letter. A command is then acted
on only if a key of the signers file (settings.signers_file, re-read when it changes)
signed it for its actor; the commands the worker issues itself are signed with a key
derived from the audit key, which every worker of the group holds and trusts.
"""

from __future__ import annotations

import logging

from faust.types import Message, StreamT

from privops.adapters import metrics
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.admission import (
    UNAUTHENTICATED,
    WorkflowInput,
    admit_workflow,
    audited_actor,
    audited_request_id,
)
from privops.core.erasure import SubjectFacts
from privops.core.errors import DecodeError, WrongTopic
from privops.core.ticks import parse_tick
from privops.core.topics import COMMAND_RESULTS, COMMANDS, REQUEST_TICKS, task_results_topic
from privops.core.vocab import TERMINAL_STATES, System, TaskState
from streams import pipeline
from streams.app import app, settings
from streams.audit import audit, ref
from streams.context import collaborators
from streams.io import dead_letter, decode, output
from streams.state import state
from streams.tables import CONSENT, FACTS, HOLDS, IDENTITIES, REQUESTS, request_index

log = logging.getLogger(__name__)


inlet = pipeline.inlet(
    "workflow", [COMMANDS, *(task_results_topic(s) for s in System), REQUEST_TICKS]
)


def load(request_id: str) -> wf.RequestRecord | None:
    """The request's record on this partition (a copy: decisions edit what they get)."""
    rec = state.get(REQUESTS, request_id)
    return rec.model_copy(deep=True) if rec is not None else None


def bare_context() -> wf.Context:
    """The context of a command for no known request or subject: the clock only."""
    now = collaborators().clock.now()
    return wf.Context(
        now=now,
        today=collaborators().clock.today(),
        datamap=collaborators().datamap,
        subject_ref="",
        known_subject=False,
    )


def context(subject_id: str) -> wf.Context:
    identity = state.get(IDENTITIES, subject_id)
    current = state.get(CONSENT, subject_id)
    holds = state.get(HOLDS, subject_id)
    now = collaborators().clock.now()
    return wf.Context(
        now=now,
        today=collaborators().clock.today(),
        datamap=collaborators().datamap,
        subject_ref=ref(subject_id),
        identity=identity,
        known_subject=identity is not None or current is not None,
        restricted=bool(current and current.restricted),
        facts=state.get(FACTS, subject_id) or SubjectFacts(),
        holds=tuple(holds or ()),
        complaint_ack_days=settings.complaint_ack_days,
    )


@app.agent(pipeline.chunks(), concurrency=1)
async def workflow(chunks: StreamT[list[Message]]) -> None:
    async for chunk in chunks:
        await pipeline.work(chunk, on_message, inlet)


pipeline.feed(inlet, workflow)


async def on_message(message: Message) -> None:
    record = await decode(message, "workflow")
    if record is None:
        return
    try:
        admitted = admit_workflow(message.topic, record)
    except WrongTopic as exc:
        dead_letter(message, "workflow", exc.reason, str(exc))
        return
    await on_input(message, admitted)


async def on_input(message: Message, record: WorkflowInput) -> None:
    if isinstance(record, r.Command):
        metrics.count_event("commands", type(record).__name__)
        key = message.key
        on_command(record, key.decode(errors="replace") if isinstance(key, bytes) else "")
    elif isinstance(record, r.TaskResult):
        metrics.count_event("task_results", type(record).__name__)
        on_result(record)
    else:
        on_tick(message, record)


def on_command(cmd: r.Command, key: str) -> None:
    """Check the signature and the key, decide, then answer on privacy.command-results
    (under the command's own key), store, publish and audit. The audited actor is the
    signing key's owner."""
    # A stat of the signers file per command (re-read only when it changed): microseconds,
    # where a thread hop per command queued every command behind the executor.
    trusted = collaborators().signers.refresh()
    refused = wf.authenticate(cmd, trusted, bare_context())
    if refused is not None:
        apply(refused, None, cmd.request_id, None, UNAUTHENTICATED, cmd.command_id, key)
        return
    actor = audited_actor(cmd.actor)
    rec = None if isinstance(cmd, r.LegalHoldPlaced | r.LegalHoldReleased) else load(cmd.request_id)
    own_subject = getattr(cmd, "subject_id", None)
    subject_id = own_subject or (rec.subject_id if rec else None)
    misrouted = wf.check_key(cmd, key, subject_id, bare_context())
    if misrouted is not None:
        apply(misrouted, None, cmd.request_id, None, actor, cmd.command_id, key)
        return
    if isinstance(cmd, r.LegalHoldPlaced | r.LegalHoldReleased):
        outcome = wf.on_hold(cmd, context(cmd.subject_id))
        apply(outcome, None, cmd.request_id, cmd.subject_id, actor, cmd.command_id, key)
        return
    # With no request and no subject there is nothing to look up: the decision rejects it.
    ctx = context(subject_id) if subject_id else bare_context()
    outcome = wf.on_command(rec, cmd, ctx)
    apply(outcome, rec, cmd.request_id, subject_id, actor, cmd.command_id, key)


def on_result(result: r.TaskResult) -> None:
    rec = load(result.request_id)
    outcome = wf.on_result(rec, result, context(rec.subject_id) if rec else bare_context())
    cause = f"{result.task_id}:{result.attempt}:{type(result).__name__}"
    apply(
        outcome,
        rec,
        result.request_id,
        rec.subject_id if rec else None,
        result.system.value,
        cause,
    )


def on_tick(message: Message, record: r.RequestTick) -> None:
    """Act on a timer's tick; one whose kind this worker does not know is a dead letter."""
    try:
        tick = parse_tick(record)
    except DecodeError as exc:
        dead_letter(message, "workflow", exc.reason, exc.detail)
        return
    rec = load(tick.request_id)
    if rec is None:
        return
    outcome = wf.on_tick(rec, tick, context(rec.subject_id))
    cause = f"{tick.kind.value}:{tick.task_id}:{tick.days_before}:{tick.at.isoformat()}"
    apply(outcome, rec, tick.request_id, rec.subject_id, "privops", cause)


def apply(
    outcome: wf.Outcome,
    before: wf.RequestRecord | None,
    request_id: str,
    subject_id: str | None,
    actor: str,
    cause: str,
    key: str | None = None,
) -> None:
    """Store, answer, publish, audit and count what a decision on ``before`` returned.

    ``key`` is the input's own key (a command's answer travels under it); a new
    request is entered in the request index, so any worker and the CLI find its subject.

    The answer goes before the effects it announces (privacy.command-results' contract);
    a rejection has no effects, only its answer and its audit step.
    """
    now = collaborators().clock.now()
    rec = outcome.record
    audited_id = audited_request_id(request_id)  # logs and audit never take contact details
    if outcome.rejected:
        metrics.count_command_rejected(outcome.rejected)
        log.warning("rejected input for request %s: %s", audited_id, outcome.rejected)
    if rec is not None:
        state.put(REQUESTS, request_id, rec)
        if before is None:
            request_index.put(request_id, rec.subject_id)
        collaborators().schedule.track(rec)
        _count(before, rec)
    if outcome.answer is not None:
        output(COMMAND_RESULTS, key or subject_id or request_id, outcome.answer)
    for out in outcome.out:
        record = out.record
        if out.topic == COMMANDS and isinstance(record, r.Command):
            record = collaborators().worker_key.sign(record)  # a follow-up the worker issues itself
        output(out.topic, out.key, record)
    for i, step in enumerate(outcome.audit):
        audit(
            actor=actor,
            action=step.action,
            cause=f"{cause}:{i}",
            occurred_at=now,
            request_id=audited_id,
            subject_id=subject_id,
            before=step.before,
            after=step.after,
            reason=step.reason,
        )


def _count(before: wf.RequestRecord | None, rec: wf.RequestRecord) -> None:
    if rec.state in TERMINAL_STATES and (before is None or before.state not in TERMINAL_STATES):
        metrics.count_request(rec.request_type, rec.state)
    for task in rec.tasks.values():
        old = before.tasks.get(task.task_id) if before else None
        if task.attempts > 1 and (old is None or old.attempts < task.attempts):
            metrics.count_task_retry(task.system)
        if old is not None and old.answered_at is None and task.answered_at is not None:
            first_sent = task.first_sent_at or task.answered_at
            metrics.observe_task_latency(
                task.system, (task.answered_at - first_sent).total_seconds()
            )
        if task.state is TaskState.escalated and (old is None or old.state is not task.state):
            metrics.count_task_escalation(task.system)
