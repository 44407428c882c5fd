"""The request workflow: DPO commands, systems' answers and timer ticks -> tasks, alerts.

Reads:  privacy.commands, privacy.task-results, privops.internal.request-ticks
        (all keyed by request id, co-partitioned)
Writes: privacy.tasks.<system>, privacy.alerts, privacy.notifications, privacy.audit,
        privops.internal.subject-directives, privacy.deadletter; tables requests,
        (holds are forwarded to ingest). Decisions are privops.core.workflow's pure functions.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import EventT, StreamT

from privops.adapters import metrics
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.clock import Clock
from privops.core.datamap import load_datamap
from privops.core.erasure import LegalHold, SubjectFacts
from privops.core.errors import DecodeError
from privops.core.identity import IdentityMap
from privops.core.ticks import parse_tick
from privops.core.topics import COMMANDS, REQUEST_TICKS, SUBJECT_DIRECTIVES, TASK_RESULTS
from privops.core.vocab import TERMINAL_STATES, TaskState
from streams.app import app, settings
from streams.audit import audit, ref
from streams.io import dead_letter, decode, emit
from streams.schedule import Schedule
from streams.tables import consent, identities, legal_holds, read_any, requests, subject_facts

log = logging.getLogger(__name__)

DATAMAP = load_datamap(settings.datamap)
clock = Clock.from_days(settings.clock_offset_days)
schedule = Schedule(tuple(settings.alert_days_before))

request_stream = app.topic(
    COMMANDS,
    TASK_RESULTS,
    REQUEST_TICKS,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)


def load(request_id: str) -> wf.RequestRecord | None:
    raw = requests.get(request_id)
    return wf.RequestRecord.model_validate(raw) if raw else None


def context(subject_id: str) -> wf.Context:
    identity_json = read_any(identities, subject_id)
    facts_json = read_any(subject_facts, subject_id)
    now = clock.now()
    return wf.Context(
        now=now,
        today=clock.today(),
        datamap=DATAMAP,
        subject_ref=ref(subject_id),
        identity=IdentityMap.model_validate(identity_json) if identity_json else None,
        known_subject=identity_json is not None or read_any(consent, subject_id) is not None,
        facts=SubjectFacts.model_validate(facts_json) if facts_json else SubjectFacts(),
        holds=tuple(LegalHold.model_validate(h) for h in read_any(legal_holds, subject_id) or []),
        complaint_ack_days=settings.complaint_ack_days,
    )


@app.agent(request_stream, concurrency=1)
async def workflow(stream: StreamT[Any]) -> None:
    async for event in stream.events():
        record = await decode(event, "workflow")
        if record is None:
            continue
        if isinstance(record, r.Command):
            metrics.count_event("commands", type(record).__name__)
            await on_command(record)
        elif isinstance(record, r.TaskResult):
            metrics.count_event("task_results", type(record).__name__)
            await on_result(record)
        elif isinstance(record, r.RequestTick):
            await on_tick(event, record)
        else:
            await dead_letter(
                event,
                "workflow",
                "invalid_record",
                f"{record.fullname()} does not belong on {event.message.topic}",
            )


async def on_command(cmd: r.Command) -> None:
    if isinstance(cmd, r.LegalHoldPlaced | r.LegalHoldReleased):
        await on_hold(cmd)
        return
    rec = load(cmd.request_id)
    subject_id = cmd.subject_id if isinstance(cmd, r.RequestSubmitted) else None
    subject_id = subject_id or (rec.subject_id if rec else None)
    if subject_id is None:
        outcome = wf.reject("unknown_request", f"no request {cmd.request_id}")
    else:
        outcome = wf.on_command(rec, cmd, context(subject_id))
    await apply(outcome, rec, cmd.request_id, subject_id, cmd.actor, cmd.command_id)


async def on_result(result: r.TaskResult) -> None:
    rec = load(result.request_id)
    if rec is None:
        outcome = wf.reject("unknown_request", f"answer for unknown request {result.request_id}")
    else:
        outcome = wf.on_result(rec, result, context(rec.subject_id))
    cause = f"{result.task_id}:{result.attempt}:{type(result).__name__}"
    await apply(
        outcome,
        rec,
        result.request_id,
        rec.subject_id if rec else None,
        result.system.value,
        cause,
    )


async def on_tick(event: EventT[Any], record: r.RequestTick) -> None:
    """Act on a timer's tick; one whose kind this worker does not know is a dead letter."""
    try:
        tick = parse_tick(record)
    except DecodeError as exc:
        await dead_letter(event, "workflow", exc.reason, exc.detail)
        return
    rec = load(tick.request_id)
    if rec is None:
        return
    outcome = wf.on_tick(rec, tick, context(rec.subject_id))
    cause = f"{tick.kind.value}:{tick.task_id}:{tick.days_before}:{tick.at.isoformat()}"
    await apply(outcome, rec, tick.request_id, rec.subject_id, "privops", cause)


async def on_hold(cmd: r.LegalHoldPlaced | r.LegalHoldReleased) -> None:
    """Audit the hold here (its chain is the command's request id) and hand it to the
    ingest agent, which owns the subject's partition and keeps the holds table."""
    holds = [LegalHold.model_validate(h) for h in read_any(legal_holds, cmd.subject_id) or []]
    if isinstance(cmd, r.LegalHoldPlaced):
        if any(h.hold_id == cmd.hold_id for h in holds):
            return
        action, after = "legal_hold_placed", ",".join(c.value for c in cmd.categories)
        reason = cmd.reason
    else:
        if not any(h.hold_id == cmd.hold_id and h.released_at is None for h in holds):
            await reject(
                cmd.request_id,
                cmd.subject_id,
                cmd.actor,
                cmd.command_id,
                "unknown_request",
                f"no active hold {cmd.hold_id}",
            )
            return
        action, after, reason = "legal_hold_released", cmd.hold_id, cmd.hold_id
    await emit(SUBJECT_DIRECTIVES, cmd.subject_id, cmd)
    await audit(
        actor=cmd.actor,
        action=action,
        cause=cmd.command_id,
        occurred_at=clock.now(),
        request_id=cmd.request_id,
        subject_id=cmd.subject_id,
        after=after,
        reason=reason,
    )


async def reject(
    request_id: str, subject_id: str | None, actor: str, cause: str, reason: str, message: str
) -> None:
    await apply(wf.reject(reason, message), None, request_id, subject_id, actor, cause)


async def apply(
    outcome: wf.Outcome,
    before: wf.RequestRecord | None,
    request_id: str,
    subject_id: str | None,
    actor: str,
    cause: str,
) -> None:
    """Store, publish, audit and count what a decision on ``before`` returned."""
    now = clock.now()
    rec = outcome.record
    if outcome.rejected:
        metrics.count_command_rejected(outcome.rejected)
        log.warning("rejected input for request %s: %s", request_id, outcome.rejected)
    if rec is not None:
        requests[request_id] = rec.model_dump(mode="json")
        schedule.track(rec)
        _count(before, rec)
    for out in outcome.out:
        await emit(out.topic, out.key, out.record)
    for i, step in enumerate(outcome.audit):
        await audit(
            actor=actor,
            action=step.action,
            cause=f"{cause}:{i}",
            occurred_at=now,
            request_id=request_id,
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
