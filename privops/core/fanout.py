"""Sending a request's work out and bringing the answers in (the workflow's fan-out and in).

``start_work`` decides, per request type, which system gets which task (erasure through
the erasure plan), who else must be told (Art. 19 recipients, the subject, the ingest
agent through a directive) and sends it; ``on_result`` records each system's answer and
``finish`` completes the request when the last one is in. Task timing is
privops.core.retries'.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, timedelta
from typing import Any, Final

from privops.core import deadlines, erasure, manifest, retries, timelimits
from privops.core import records as r
from privops.core.clock import UK
from privops.core.datamap import DataMap
from privops.core.exports import (
    description_problem,
    export_problem,
    format_name,
    portable_copy_problem,
)
from privops.core.holds import LegalHold
from privops.core.identity import (
    EMAIL,
    PHONE,
    Identifier,
    IdentityMap,
    for_system,
    previous_for_system,
)
from privops.core.lifecycle import LifecycleEvent
from privops.core.request import (
    FOLLOWUP_ACTOR,
    AuditStep,
    Context,
    FollowupItem,
    KeptItem,
    Out,
    Outcome,
    Reason,
    RequestRecord,
    TaskRecord,
    directive,
    move,
    notify_subject,
    reject,
)
from privops.core.request import stable_id as _id
from privops.core.response_first import FETCH_DAYS, erased_from
from privops.core.retries import make_task_id
from privops.core.sweep import BREACH_DAYS_BEFORE, Alerted
from privops.core.ticks import TickKind
from privops.core.topics import ALERTS, NOTIFICATIONS, legal_holds_topic, preservation_key
from privops.core.vocab import (
    FINAL_TASK_STATES,
    Category,
    ObjectionScope,
    Purpose,
    RequestState,
    RequestType,
    System,
    TaskAction,
    TaskState,
)

E = LifecycleEvent

# --- starting the work ----------------------------------------------------------------------


def holdings(ctx: Context, rec: RequestRecord | None = None) -> dict[System, set[Category]]:
    """Systems that hold this subject's data (the data map) and can look them up.

    A system that never reported the subject may still hold their data: the marketing
    platform that looks subjects up by email, the website by customer number. It is
    asked too when privops knows an identifier the data map says it looks subjects up
    by (``_identifiers``); it answers NotFound if it holds nothing, and ``finish`` reads
    that as holding nothing. Before, only systems that had reported the subject were
    asked, and an erasure told the subject everything was erased while the marketing
    list still held them (review, session 27). Every request type asks the same
    systems: an erasure, an access request (Art. 15: a copy of all of it), a
    restriction and its lift (a lift must reach every system a restriction did), a
    rectification (Art. 16: wherever the inaccurate data is) and an objection. Art. 19
    recipients are told from disclosures only, never from this.

    A follow-up erasure of ``rec`` (the worker's own, for what an erasure kept) asks
    only the systems the identity map still names: the erasure asked the others, and
    kept the identifiers of those still keeping data (privops.core.shredding
    .what_remains). Any other request about an erased subject asks as above: a system
    opens a task sealed under a retained key like any other (the key service's GET
    lists every stored key; only creating one is limited by scope), and one that erased
    everything answers not found. (Asking only the map's systems once the erasure had
    started, tried in this session, left out of an access request made meanwhile the
    systems still holding the subject's data: second review, session 27.)"""
    if ctx.identity is None:
        return {}
    named_only = rec is not None and rec.actor == FOLLOWUP_ACTOR
    return {
        system: cats
        for system, cats in ctx.datamap.holdings().items()
        if (for_system(ctx.identity, system) if named_only else _identifiers(ctx, system))
    }


def searched(ctx: Context, rec: RequestRecord) -> dict[System, set[Category]]:
    """The systems ``rec``'s search details find the subject in (the data map's
    ``searched_by_details``: CCTV footage by day, hours and place), whatever privops
    knows of them: a visitor who never gave a name is in the footage all the same
    (privops.core.search). None without search details."""
    if not rec.search:
        return {}
    return {s: set(ctx.datamap.systems[s].categories) for s in ctx.datamap.searched_by_details()}


def preserve_search(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    """Tell each system searched by details to keep what ``rec``'s search finds from its
    deletion by age until the request is finished (``r.SearchPreserved``; the tombstone
    is ``request.end_preservation``, when the request closes).

    Sent when the request is received, before the identity check: CCTV is deleted after
    30 days, and a visitor's ID or a clarification can take longer than what is left of
    them, so the search would find nothing where the footage was (UK GDPR Art. 15; the
    ICO's video surveillance guidance). Footage of others at the place and hours is
    kept too, until the request closes: what the search finds is reviewed before any of
    it goes out (``review_systems``), and it is deleted by age once it is over."""
    systems = sorted(ctx.datamap.searched_by_details()) if rec.search else []
    key = preservation_key(rec.request_id)
    for system in systems:
        kept = r.SearchPreserved(
            request_id=rec.request_id,
            subject_id=rec.subject_id,
            system=system,
            search=dict(rec.search),
            updated_at=ctx.now,
        )
        out.out.append(Out(legal_holds_topic(system), key, kept))
    rec.preserved = systems
    if systems:
        out.audit.append(AuditStep("search_preserved", after=", ".join(systems)))


def hold_states(
    ctx: Context, subject_id: str, holds: Iterable[LegalHold], changed: Iterable[Category]
) -> list[Out]:
    """What each system must now keep of the subject under ``holds`` (their state after
    a change to ``changed`` categories): a ``LegalHoldState`` on the system's
    privacy.legal-holds topic, or a tombstone once no active hold covers a category it
    holds.

    Only systems holding a changed category are written to (the data map), so a hold on
    credit tells nothing to the web team. A system is sent the identifiers its tasks
    would carry (``_identifiers``); one privops knows no identifier for gets a
    tombstone, as it could find nothing to keep. Each record is the whole state, so a
    redelivered command writes the same record again, and a system may read the topic
    from its start or only its latest values.

    Before, a hold blocked only erasures privops sent: a system deleting call recordings
    after 90 days, as the data map says, deleted the held ones too."""
    active = [h for h in holds if h.active]
    touched = set(changed)
    outs: list[Out] = []
    for system, spec in sorted(ctx.datamap.systems.items()):
        cats = set(spec.categories)
        if not cats & touched:
            continue
        covering = [h for h in active if cats & set(h.categories)]
        kept = sorted({c for h in covering for c in h.categories if c in cats})
        identifiers = _identifiers(ctx, system)
        topic = legal_holds_topic(system)
        if not kept or not identifiers:
            outs.append(Out(topic, subject_id, None))
            continue
        previous = previous_for_system(ctx.identity, system, identifiers) if ctx.identity else {}
        state = r.LegalHoldState(
            subject_id=subject_id,
            system=system,
            categories=kept,
            hold_ids=sorted({h.hold_id for h in covering}),
            identifiers=identifiers,
            previous_identifiers=previous,
            updated_at=ctx.now,
        )
        outs.append(Out(topic, subject_id, state))
    return outs


def current_hold_states(ctx: Context, subject_id: str, holds: Iterable[LegalHold]) -> list[Out]:
    """Every system's record again for the holds active now (``hold_states`` over all
    their categories): after an erasure re-seals them, or when the subject gets an
    identifier the systems should find them by. None active: nothing."""
    active = [h for h in holds if h.active]
    if not active:
        return []
    return hold_states(ctx, subject_id, active, {c for h in active for c in h.categories})


def _identifiers(ctx: Context, system: System) -> dict[str, str]:
    """What ``system``'s task carries: what it reported the subject by; for a system
    that never reported them, what privops knows that it looks subjects up by."""
    if ctx.identity is None:
        return {}
    own = for_system(ctx.identity, system)
    return own or _inferred(ctx.identity, ctx.datamap, system)


def _inferred(identity: IdentityMap, datamap: DataMap, system: System) -> dict[str, str]:
    """The identifiers of the kinds ``system`` looks subjects up by (the data map) that
    privops knows: the subject's latest email and phone, and an id of a kind it shares
    with a system that reported it (a customer number, a CRM contact id), the latest
    value of each."""
    spec = datamap.systems.get(system)
    if spec is None:
        return {}
    found: dict[str, str] = {}
    for kind in spec.identifiers:
        known: Identifier | None
        if kind == EMAIL:
            known = identity.email
        elif kind == PHONE:
            known = identity.phone
        else:
            values = [
                ids[kind]
                for other, ids in identity.systems.items()
                if kind in ids
                and other in datamap.systems
                and kind in datamap.systems[other].identifiers
            ]
            known = max(values, key=lambda i: (i.occurred_at, i.value), default=None)
        if known is not None:
            found[kind] = known.value
    return found


def start_work(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    kind = rec.request_type
    held = holdings(ctx, rec)
    if kind is RequestType.erasure:
        _plan_erasure(rec, ctx, out, held)
    elif kind is RequestType.restriction:
        send_tasks(rec, ctx, TaskAction.restrict, held)
        _notify_recipients(rec, ctx, out, TaskAction.restrict, _all(held))
        directive(rec, out, ctx, "restricted")
    elif kind is RequestType.restriction_lift:
        _lift(rec, ctx, out, held)
    elif kind is RequestType.rectification:
        _rectify(rec, ctx, out, held)
    elif kind is RequestType.access:
        send_tasks(rec, ctx, TaskAction.export, held | searched(ctx, rec))
    elif kind is RequestType.portability:
        send_tasks(rec, ctx, TaskAction.export, portable(ctx, held))
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
        directive(rec, out, ctx, "objected")
        send_tasks(rec, ctx, TaskAction.restrict, _marketing_holdings(ctx, held))
    elif kind is RequestType.consent_withdrawal:
        # The consent state only: every system consults it before each use (DESIGN.md,
        # ``GET /consent/{id}``). A withdrawal (Art. 7(3)) is no objection (Art. 21): a
        # Restrict would stop every channel for good, or restrict a whole account that
        # no lift could free (review, session 27).
        directive(rec, out, ctx, "withdrawn", rec.withdrawn_purpose, rec.withdrawn_channel)
    elif kind is RequestType.complaint:
        _acknowledge_complaint(rec, ctx, out)
        return
    retries.send_pending(rec, ctx, out)
    if rec.tasks:
        move(rec, E.tasks_sent, out, ctx.now)
    else:
        move(rec, E.answered, out, ctx.now)
        finish(rec, ctx, out)


def _lift(
    rec: RequestRecord, ctx: Context, out: Outcome, held: dict[System, set[Category]]
) -> None:
    if _still_restricted(rec, ctx, out):
        return  # another restriction stands: nothing to lift, no task
    # Art. 18(3): the subject is told before the restriction is lifted; why (the DPO's
    # reason, in the letter), and that they may complain (ICO guidance: the lift follows
    # a finding against them, that the data is accurate or the objection failed; Art.
    # 12(4); legal review, session 35).
    notify_subject(
        rec,
        out,
        ctx,
        "restriction_lift_pending",
        LIFT_NOTICE if rec.reason else LIFT_NOTICE_NO_REASON,
        document=rec.reason,
    )
    send_tasks(rec, ctx, TaskAction.lift_restriction, held)
    directive(rec, out, ctx, "restriction_lifted")


APPLIED: Final = frozenset(
    {RequestState.awaiting_systems, RequestState.completed, RequestState.partially_completed}
)
"""The states of a request whose work went out: a restriction so is in force (its
Restrict tasks and the consent state's flag), a lift so has ended what it names."""


def restrictions_in_force(ctx: Context) -> list[str]:
    """The request ids of the subject's restrictions in force, oldest first: applied
    (``APPLIED``), and ended by no applied lift, neither one naming it
    (``linked_request_id``, from 0.45) nor one naming none made after it (a lift of
    before 0.45 ended every restriction). Read from the subject's records on this
    partition; a restriction whose record the record period forgot is not listed."""
    requests = ctx.subject_requests()
    lifts = [
        x for x in requests if x.request_type is RequestType.restriction_lift and x.state in APPLIED
    ]

    def ended(restriction: RequestRecord) -> bool:
        return any(
            lift.linked_request_id == restriction.request_id
            or (
                lift.linked_request_id is None
                and not lift.still_restricted_by  # it lifted, and so ended what stood
                and lift.created_at > restriction.created_at
            )
            for lift in lifts
        )

    return [
        x.request_id
        for x in sorted(requests, key=lambda x: x.created_at)
        if x.request_type is RequestType.restriction and x.state in APPLIED and not ended(x)
    ]


def _still_restricted(rec: RequestRecord, ctx: Context, out: Outcome) -> bool:
    """Whether another of the subject's restrictions stands beside the one the lift
    ``rec`` ends (``linked_request_id``): then nothing is lifted, no system is told to
    resume and the consent state stays restricted; the lift records which stand
    (``still_restricted_by``) and the subject is told (``_outcome_words``). Before, one
    lift ended every restriction: lifting one placed while a complaint was investigated
    also freed data restricted while its accuracy was contested (review, session 44)."""
    in_force = restrictions_in_force(ctx)
    ended = rec.linked_request_id
    others = [x for x in in_force if x != ended]
    # Named, it was ended meanwhile; naming none (no record in force), another lift
    # lifted the subject meanwhile.
    gone = ended not in in_force if ended is not None else not (in_force or ctx.restricted)
    if not others and not gone:
        return False
    # Checked again when the work starts: a lift waits for the identity (or authority) to
    # be shown, and meanwhile another lift may have ended its restriction, or another
    # been placed (review, session 45).
    rec.still_restricted_by = others or [NONE_STANDING]
    named = f"restriction {ended}" if ended else "the restriction recorded before 0.45"
    what = "had already ended" if gone else "ended"
    stays = f"stays restricted under {', '.join(others)}" if others else "is not restricted"
    out.audit.append(
        AuditStep(
            "request_transitioned",
            after=rec.state.value,
            reason=f"{named} {what}; nothing lifted: the subject's data {stays}",
        )
    )
    return True


NONE_STANDING: Final = "-"
"""``still_restricted_by`` of a lift whose restriction had already ended, with none
standing: nothing was lifted by it."""


def portable(ctx: Context, held: dict[System, set[Category]]) -> dict[System, set[Category]]:
    """What a portability request asks each system for: of what it holds of the subject,
    the categories the right covers (``DataMap.portable``: given by the subject, used
    with their consent or under a contract). A system holding none is not asked."""
    covered = ctx.datamap.portable()
    asked = {s: cats & covered.get(s, set()) for s, cats in held.items()}
    return {s: cats for s, cats in asked.items() if cats}


def _plan_erasure(
    rec: RequestRecord, ctx: Context, out: Outcome, held: dict[System, set[Category]]
) -> None:
    plan = erasure.plan_erasure(
        rec.subject_id, ctx.datamap, held, list(ctx.holds), ctx.facts, ctx.now
    )
    for instruction in plan.instructions:
        keep = [
            KeptItem(system=instruction.system, category=k.category, ground=k.ground, until=k.until)
            for k in instruction.keep
        ]
        _add_task(rec, ctx, instruction.system, TaskAction.erase, list(instruction.erase), keep)
    rec.followups = [
        FollowupItem(system=f.system, categories=list(f.categories), due_at=f.due_at)
        for f in plan.followups
    ]
    _notify_recipients(rec, ctx, out, TaskAction.erase, plan.erased_categories)
    directive(rec, out, ctx, "suppressed")


def rectified(rec: RequestRecord, ctx: Context) -> dict[str, Category]:
    """Each key of ``rec``'s rectification (a field, or ``statement:<category>``) with
    the category it concerns, by the data map; a key it no longer names is left out."""
    found = {key: ctx.datamap.rectified_category(key) for key in rec.rectification}
    return {key: cat for key, cat in found.items() if cat is not None}


def _rectify(
    rec: RequestRecord, ctx: Context, out: Outcome, held: dict[System, set[Category]]
) -> None:
    """Art. 16: each system holding a category the rectification concerns gets the
    corrected fields and statements of the categories it holds, and no others (the CRM
    is not sent a credit balance); Art. 19: each recipient that received one is told."""
    categories = rectified(rec, ctx)
    if dropped := sorted(set(rec.rectification) - set(categories)):
        # The data map changed since the request was accepted: the key names nothing now.
        out.audit.append(
            AuditStep(
                "request_transitioned",
                after=rec.state.value,
                reason=f"not sent, the data map no longer lists them: {', '.join(dropped)}",
            )
        )
    wanted = set(categories.values())
    for system, cats in sorted(held.items()):
        if cats & wanted:
            changes = {k: v for k, v in rec.rectification.items() if categories.get(k) in cats}
            _add_task(rec, ctx, system, TaskAction.rectify, sorted(cats & wanted), [], changes)
    _notify_recipients(rec, ctx, out, TaskAction.rectify, wanted)


def _acknowledge_complaint(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    """Acknowledge at once, promising a response by a date still to come.

    On time, s.164A's limit is met and no deadline alert follows. Logged after the
    acknowledgement's last day, the breach is recorded now (a DeadlineBreached alert
    and its audit step, as the sweep would have raised), since no alert fires for an
    acknowledged complaint; and the response date is counted from today
    (``deadlines.complaint_response_due``). Before, a complaint logged 45 days late was
    told "we will respond by" a date already past, and nothing recorded the breach
    (review, session 27). A complaint received before s.164A came into force
    (``deadlines.COMPLAINT_DUTY_FROM``) had no limit to miss: acknowledged, no breach
    (review, session 33)."""
    ack_due = rec.due_on
    rec.acknowledged_on = ctx.today
    apology = ""
    under_the_duty = rec.received_on >= deadlines.COMPLAINT_DUTY_FROM
    if ack_due is not None and ctx.today > ack_due and under_the_duty:
        _late_acknowledgement(rec, ack_due, ctx, out)
        apology = f" We should have acknowledged it by {ack_due}; we are sorry for the delay."
    timelimits.recompute_due(rec, ctx)
    notify_subject(
        rec,
        out,
        ctx,
        "complaint_acknowledged",
        f"Your complaint is with our DPO; we will respond by {rec.due_on}.{apology}",
    )


def _late_acknowledgement(rec: RequestRecord, ack_due: date, ctx: Context, out: Outcome) -> None:
    """The breach of s.164A's limit, raised once: the alert the sweep raises for a
    breached due date (same id), and its audit step."""
    rec.deadline_alerted = Alerted(ack_due, BREACH_DAYS_BEFORE)
    out.out.append(Out(ALERTS, rec.subject_id, timelimits.breached(rec, ack_due, ctx)))
    out.audit.append(
        AuditStep(
            "deadline_alert",
            after=TickKind.deadline_breached.value,
            # Not the day it was decided (``ctx.today``): a replay on the next day would
            # make another record at the same place in the chain (review, session 35).
            # The step's own time says when.
            reason=f"complaint acknowledged after {ack_due}, its due date (DPA 2018 s.164A)",
        )
    )


def _all(held: dict[System, set[Category]]) -> set[Category]:
    return {c for cats in held.values() for c in cats}


def _marketing_holdings(
    ctx: Context, held: dict[System, set[Category]]
) -> dict[System, set[Category]]:
    """Each system the data map says does direct marketing (a purpose whose consent
    purpose is marketing lists it) with the categories it uses for it: an objection to
    direct marketing reaches every one (the marketing platform and the CRM's calls and
    post alike), not the marketing system only (review, session 24)."""
    out: dict[System, set[Category]] = {}
    for spec in ctx.datamap.purposes.values():
        if spec.consent_purpose is not Purpose.marketing:
            continue
        for system in spec.systems:
            cats = held.get(system, set()) & set(spec.categories)
            if cats:
                out.setdefault(system, set()).update(cats)
    return out


def objection_holdings(
    ctx: Context, held: dict[System, set[Category]], purposes: Iterable[str]
) -> dict[System, set[Category]]:
    """Each system holding the subject's data that processes it for one of ``purposes``,
    with the categories it uses for them: an upheld legitimate-interest objection stops
    those, not every use (a restriction of everything froze the subject's orders;
    review, session 34)."""
    chosen = list(purposes)
    out: dict[System, set[Category]] = {}
    for system, cats in held.items():
        for name in ctx.datamap.purposes_at(system, chosen):
            used = cats & set(ctx.datamap.purposes[name].categories)
            if used:
                out.setdefault(system, set()).update(used)
    return out


def send_tasks(
    rec: RequestRecord,
    ctx: Context,
    action: TaskAction,
    held: dict[System, set[Category]],
) -> None:
    for system, cats in sorted(held.items()):
        _add_task(rec, ctx, system, action, sorted(cats), [])


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
    by_details = action is TaskAction.export and system in searched(ctx, rec)
    if not identifiers and not by_details:
        return
    task_id = make_task_id(rec.request_id, system, action)
    # The values it knew the subject by before: rows under an old phone or email (a
    # mailing list, an old account) may be theirs, which the system tells by the owner
    # key (docs/connectors.md, "Earlier identifiers"; review, session 27).
    previous = previous_for_system(ctx.identity, system, identifiers) if ctx.identity else {}
    rec.tasks[task_id] = TaskRecord(
        task_id=task_id,
        system=system,
        action=action,
        identifiers=identifiers,
        previous_identifiers=previous,
        categories=categories,
        keep=keep,
        changes=changes or {},
    )


def _notify_recipients(
    rec: RequestRecord, ctx: Context, out: Outcome, action: TaskAction, cats: Iterable[Category]
) -> None:
    """Art. 19: tell each recipient that actually received affected data (its disclosures)."""
    disclosures = ctx.facts.disclosures
    categories = rectified(rec, ctx) if action is TaskAction.rectify else {}
    for notice in erasure.recipients_to_notify(ctx.datamap, cats, disclosures):
        note = r.RecipientNotification(
            notification_id=_id(rec.request_id, notice.recipient, action),
            request_id=rec.request_id,
            issued_at=ctx.now,
            recipient=notice.recipient,
            action=action,
            categories=list(notice.categories),
            subject_ref=ctx.subject_ref,
            recipient_refs=list(notice.recipient_refs),
            changes={
                key: value
                for key, value in rec.rectification.items()
                if categories.get(key) in notice.categories
            },
        )
        out.out.append(Out(NOTIFICATIONS, rec.subject_id, note))
        out.audit.append(
            AuditStep("notification_sent", after=notice.recipient, reason=f"Art. 19 {action.value}")
        )
    for recipient in erasure.recipients_exempt(ctx.datamap, cats, disclosures):
        out.audit.append(
            AuditStep(
                "notification_withheld",
                after=recipient,
                reason=f"Art. 19 {action.value}: {NOTICE_WITHHELD}",
            )
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
        return reject(Reason.unknown_request, f"answer for unknown request {result.request_id}")
    task = rec.tasks.get(result.task_id)
    if task is None:
        return reject(Reason.unknown_task, f"answer for unknown task {result.task_id}")
    if task.system is not result.system:
        return reject(Reason.invalid_command, f"{result.system} answered a task of {task.system}")
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
    rec = rec.editable_copy()
    task = rec.tasks[result.task_id]
    out = Outcome(record=rec)
    before = task.state
    result = _checked_export(rec, result, ctx, out)
    if isinstance(result, r.TaskFailed) and result.retryable:
        task.outcome_reason = result.reason
        retries.retry_later(task, ctx.datamap.systems[task.system], ctx.now)
        # The system's own words stay on the request (`privops request status`), never in
        # the audit, which outlives every key: a system's free text can name a person or
        # an address no pattern catches (review, session 25).
        out.audit.append(
            AuditStep(
                "task_answered",
                before=before.value,
                after="failed_retryable",
                reason=f"{task.system.value}:{task.action.value}",
            )
        )
        return out
    _record_answer(rec, task, result)
    out.audit.append(
        AuditStep(
            "task_answered",
            before=before.value,
            after=task.state.value,
            reason=f"{task.system.value}:{task.action.value}",
        )
    )
    if task.state is TaskState.failed and before is not TaskState.escalated:
        # One escalated as silent already told the DPO; its late failure is audited above.
        why = "answered that it failed"
        retries.escalate(rec, task, ctx, out, "failed", why, before=before.value)
    if isinstance(result, r.TaskRetained) and (foreign := _not_asked(task, result)):
        # Kept items decide which retained keys survive the erasure: a system keeps, as
        # far as privops is concerned, only what its task covers. Refused, the answer
        # would come back the same from the connector's ledger at every re-send.
        out.audit.append(
            AuditStep(
                "retained_outside_task",
                after=",".join(foreign),
                reason=f"{task.system.value} said it kept categories its task does not "
                "cover; not recorded as kept",
            )
        )
    # A paused request finishes when its clarification arrives (timelimits).
    done = all(t.state in FINAL_TASK_STATES for t in rec.tasks.values())
    if done and rec.state is not RequestState.paused:
        finish(rec, ctx, out)
    return out


def _checked_export(
    rec: RequestRecord, result: r.TaskResult, ctx: Context, out: Outcome
) -> r.TaskResult:
    """An export outside its system's declared root becomes a final failure, audited.

    Its location must never reach the manifest or the subject's notification; the
    manifest then lists the system under missing exports. Final, not retryable: a
    connector answers a re-sent task from its ledger, so re-sending cannot fix it.
    """
    if not isinstance(result, r.TaskCompleted) or result.export is None:
        return result
    problem = export_problem(ctx.datamap, result.system, result.export, rec.request_id)
    label = "export_not_described" if description_problem(result.export) else "export_outside_root"
    reason = f"{label}: {problem}"
    task = rec.tasks.get(result.task_id)
    if problem is None and task is not None and rec.request_type is RequestType.portability:
        problem = portable_copy_problem(task.categories, result.export)
        reason = problem or reason
    if problem is None:
        return result
    out.audit.append(AuditStep("export_refused", after="failed", reason=reason))
    return r.TaskFailed(
        task_id=result.task_id,
        request_id=result.request_id,
        system=result.system,
        answered_at=result.answered_at,
        attempt=result.attempt,
        reason=reason,
        retryable=False,
    )


def _record_answer(rec: RequestRecord, task: TaskRecord, result: r.TaskResult) -> None:
    task.state = _FINAL_BY_RESULT.get(type(result), TaskState.failed)
    task.answered_at = result.answered_at
    task.next_check_at = None
    if isinstance(result, r.TaskRetained) and rec.request_type is RequestType.portability:
        # Nothing is kept by making no copy: such an answer made none, and the DPO follows
        # it up as any failed one (the subject is never told we hold none).
        task.state = TaskState.failed
        task.outcome_reason = "answered retained to a portability export: no copy made"
        return
    if isinstance(result, r.TaskCompleted):
        task.export = result.export
        if task.action is TaskAction.export and result.export is None:
            # "Done" with no copy is no answer to an access request: the request is
            # partially completed, and the DPO sees why.
            task.state = TaskState.failed
            task.outcome_reason = "answered completed without an export"
    if isinstance(result, r.TaskRetained | r.TaskFailed):
        task.outcome_reason = result.reason
    if task.action is TaskAction.erase and task.state in (TaskState.done, TaskState.failed):
        # What privops told the system to keep is kept, whatever the system answered:
        # "completed" (it did what it was asked, keeping what it was told to) or failed
        # (it still holds all of it). Only "not found" keeps nothing. Before, a system
        # answering completed made the subject's notice say everything was erased
        # while six years of invoices were kept (review, session 27).
        rec.kept.extend(k.model_copy() for k in task.keep)
    if isinstance(result, r.TaskRetained):
        planned = {k.category: k for k in task.keep}
        covered = _covered(task)
        said = dict.fromkeys(result.categories)  # each once, in order
        named = [c for c in said if c in covered] if said else list(planned)
        # Kept, yet not said what of the task (no category, or only ones the task neither
        # covers nor keeps, with nothing planned): for all privops knows, all of it. Before,
        # nothing was recorded, the erasure closed completed and the subject was told
        # everything was erased (review, session 43).
        for cat in named or list(dict.fromkeys([*task.categories, *planned])):
            kept = planned.get(cat)
            rec.kept.append(
                KeptItem(
                    system=task.system,
                    category=cat,
                    ground=kept.ground if kept else SYSTEMS_OWN_GROUND,
                    until=kept.until if kept else None,
                )
            )


SYSTEMS_OWN_GROUND: Final = "the system's own ground, in its answer"
"""What a request keeps for a reason of the system's own (one the plan did not keep)
says why by pointing at the system's answer (its task's ``outcome_reason``), never by
copying it: the system's free text can name the person (invoices of Ann Jones, 12 Acacia
Avenue), and ``kept[].ground`` stays readable after the erasure (the DPO's view, and the
subject's erasure notice quotes it). The answer is sealed, and cleared by the erasure
(privops.core.sealing, privops.core.shredding.scrubbed; review, session 26)."""


_NOT_DONE: Final = frozenset({TaskState.failed, TaskState.retained})
"""A task in one of these states did not do all it was asked: its request is partial."""


def _covered(task: TaskRecord) -> set[Category]:
    """What a system may say it kept of ``task``: what it covers or keeps."""
    return {*task.categories, *(k.category for k in task.keep)}


def _not_asked(task: TaskRecord, result: r.TaskRetained) -> list[str]:
    """The categories ``result`` says were kept that ``task`` neither covers nor keeps."""
    covered = _covered(task)
    return sorted({c.value for c in result.categories if c not in covered})


def review_systems(rec: RequestRecord, ctx: Context) -> list[System]:
    """The systems whose copy in ``rec``'s access response the DPO reviews before it goes
    out, of those that exported a record or more: those the data map marks
    ``review_before_disclosure`` (footage showing other visitors), and those whose own
    copy says it shows others (``ExportReference.shows_others``: a call recording with
    someone else on the line; before, only the data map's flag held a copy back, and a
    CRM email naming a neighbour went out unreviewed; legal review, session 35). The
    system's own copy says so, kept in ``original_export`` once the DPO redacted it.
    And a copy found by the request's search details, whatever the data map says: it
    shows whoever was there, who may not be the subject (review, session 36)."""
    marked = {s for s, spec in ctx.datamap.systems.items() if spec.review_before_disclosure}
    marked |= set(searched(ctx, rec))  # whoever a search found may not be the subject
    return sorted(
        {
            t.system
            for t in rec.tasks.values()
            if t.export is not None
            and t.export.record_count > 0
            and (t.system in marked or (t.original_export or t.export).shows_others)
        }
    )


COPIES: Final = frozenset({RequestType.access, RequestType.portability})
"""The requests answered with copies of the subject's data, which the DPO reviews first
where one shows other people (``review_systems``)."""

REVIEW_WHY: Final = (
    "the copy shows other people: the DPO redacts or withholds it and approves the "
    "response (UK GDPR Art. 15(4), 20(4)); the clock runs on"
)
TRANSMIT_WHY: Final = (
    "the subject asked for the copies to be sent to another organisation: the DPO sends "
    "them where technically feasible and approves the response with the day sent, or why "
    "it was not feasible (UK GDPR Art. 20(2)); the clock runs on"
)


def _to_transmit(rec: RequestRecord) -> list[System]:
    """The systems whose copy of a portability request is to go to the organisation its
    subject named (``send_to``; UK GDPR Art. 20(2)): none without one, or without a copy."""
    if rec.request_type is not RequestType.portability or rec.send_to is None:
        return []
    return [system for system, _ in portable_copies(rec)]


def portable_copies(rec: RequestRecord) -> list[tuple[System, r.ExportReference]]:
    """A portability request's copies, by system: one of a record or more as its system
    made it (the DPO may redact a copy, never to none: ``workflow._export_redacted``)."""
    return [
        (t.system, t.export)
        for t in sorted(rec.tasks.values(), key=lambda t: t.system.value)
        if t.export is not None and (t.original_export or t.export).record_count > 0
    ]


def finish(
    rec: RequestRecord, ctx: Context, out: Outcome, review: manifest.Review | None = None
) -> None:
    """Every task answered: complete (or partially) and tell the subject. An access or
    portability response with a copy the DPO reviews first, or portability copies the
    subject asked to be sent on (``_to_transmit``), waits in awaiting_review for their
    approval (``review``: what they redacted or withheld, and what became of the
    transmission)."""
    held_for = review_systems(rec, ctx) if review is None else []
    to_send = _to_transmit(rec) if review is None else []
    if (held_for or to_send) and rec.request_type in COPIES:
        for action, systems, why in (
            ("response_review_required", held_for, REVIEW_WHY),
            ("transmission_required", to_send, TRANSMIT_WHY),
        ):
            if systems:
                out.audit.append(
                    AuditStep(action, after=",".join(s.value for s in systems), reason=why)
                )
        move(rec, E.review_requested, out, ctx.now)
        return
    review = review or manifest.Review()
    if rec.request_type is RequestType.access:
        _access_response(rec, ctx, out, review)
    elif rec.request_type is RequestType.portability:
        _portability_response(rec, ctx, out, review)
    if rec.state in (RequestState.awaiting_systems, RequestState.awaiting_review):
        partial = (
            bool(rec.kept)
            or bool(review.withheld)
            or review.not_feasible is not None  # Art. 20(2) asked, not done
            or any(t.state in _NOT_DONE for t in rec.tasks.values())
        )
        event = E.all_tasks_final_partial if partial else E.all_tasks_final_complete
        move(rec, event, out, ctx.now)
    if rec.request_type is RequestType.erasure and rec.kept:
        kept = "; ".join(
            f"{k.system.value}/{k.category.value}: {erasure.told_ground(k.ground)}"
            for k in rec.kept
        )
        notify_subject(
            rec,
            out,
            ctx,
            "erasure_outcome",
            f"We erased your data except what we keep, each with its ground: {kept}."
            + _not_done(rec)
            + " "
            + REDRESS,
        )
    elif (words := _outcome_words(rec)) is not None:
        notify_subject(rec, out, ctx, f"{rec.request_type.value}_outcome", words)


NOTHING_FOUND: Final = (
    "We searched by the details you gave us, and checked our other systems: we hold no "
    "personal data about you."
)
"""The access notice to someone no system has reported whose search found nothing."""
NOTHING_OTHER: Final = "We checked our systems and hold no other personal data about you."
"""The same, when a search could not be completed (the notice goes on to say so)."""


def _access_response(
    rec: RequestRecord, ctx: Context, out: Outcome, review: manifest.Review
) -> None:
    """The access response: the manifest and the copies; or, to someone no system has
    reported whose search details found nothing either, that nothing is held (no
    manifest: it is a personal document, and would hold nothing)."""
    exports = [(t.system, t.export) for t in rec.tasks.values() if t.export is not None]
    # A system that found nothing on the subject holds nothing of theirs: not listed
    # as holding their data, nor as an export still missing.
    # The systems asked, with what each was asked about: the identity map may have
    # changed since (an erasure started meanwhile trims it), the tasks have not.
    # A system asked by search details alone that failed is not known to hold anything:
    # the subject is told the search was not completed, not that it holds their data.
    unsearched = sorted(
        t.system.value
        for t in rec.tasks.values()
        if t.action is TaskAction.export and t.state is TaskState.failed and not t.identifiers
    )
    held = {
        t.system: categories_found(t)
        for t in rec.tasks.values()
        if t.action is TaskAction.export
        and t.state is not TaskState.not_found
        and t.system.value not in unsearched
    }
    if unmapped := _unmapped(rec, held):
        out.audit.append(AuditStep("categories_not_mapped", after=unmapped, reason=UNMAPPED))
    not_searched = (
        f" We could not complete the search of {', '.join(unsearched)} by the details you "
        "gave us: contact us to have it tried again. " + REDRESS
        if unsearched
        else ""
    )
    if not any(held.values()) and not ctx.holds_anything_besides(rec.request_id):
        told = NOTHING_OTHER if unsearched else NOTHING_FOUND
        notify_subject(rec, out, ctx, "access_response", told + not_searched)
        return
    rec.manifest = manifest.build_access_manifest(
        rec.request_id,
        rec.subject_id,
        ctx.subject_ref,
        ctx.datamap,
        held,
        exports,
        ctx.now,
        ctx.facts.disclosures,
        manifest.OwnRecords(
            consent=ctx.consent,
            identity=ctx.identity,
            facts=ctx.facts,
            requests=tuple(
                _past(other)
                for other in ctx.subject_requests()
                if other.request_id != rec.request_id and other.subject_id == rec.subject_id
            ),
        ),
        review,
    )
    if withheld := _withheld(ctx):
        out.audit.append(AuditStep("access_withheld", after=withheld, reason=WITHHELD))
    # What each copy holds is in the manifest (sealed); the notice carries where the
    # copies are, not the subject's categories in the clear.
    sent = [
        e.model_copy(update={"categories": None}) for s, e in exports if s not in review.withheld
    ]
    notify_subject(
        rec,
        out,
        ctx,
        "access_response",
        "Your copy of the personal data we hold, with how we use it."
        + _fetch_by(rec, ctx, review)
        + _reviewed(review)
        + not_searched,
        document=json.dumps(rec.manifest, default=str, sort_keys=True),
        exports=sent,
    )


REDRESS: Final = (
    "You may complain to the Information Commissioner's Office (www.ico.org.uk) and "
    "may seek a judicial remedy through the courts."
)
"""Art. 12(4): told whenever privops does not act on a request, or on part of it (a
refusal, a refused objection, an erasure that keeps data): one sentence, every notice."""


PORTABLE_DATA: Final = (
    "the personal data you gave us that we use with your consent or under a contract with you"
)
NOTHING_PORTABLE_WHY: Final = (
    f"We checked our systems and hold none of {PORTABLE_DATA}, which is what the right "
    "to data portability covers (UK GDPR Art. 20(1)): any other personal data we hold "
    "about you, we use on another lawful basis (such as our legitimate interests or a "
    "legal obligation), others gave us, or we worked out ourselves. You may still ask "
    "for a copy of all the personal data we hold about you (a subject access request)."
)
NOTHING_PORTABLE: Final = NOTHING_PORTABLE_WHY + " " + REDRESS
"""The portability notice when no system holds any of what the right covers: the right
is not acted on as asked, so why, and the redress (Art. 12(4))."""
TRANSMIT: Final = (
    " To have us send it to another organisation directly, tell us which: we will where "
    "it is technically feasible (Art. 20(2))."
)
PORTABILITY_WITHHELD: Final = (
    "it would adversely affect the rights and freedoms of other people shown in it "
    "(UK GDPR Art. 20(4))"
)


def copies_out(
    rec: RequestRecord, withheld: Iterable[System]
) -> list[tuple[System, r.ExportReference]]:
    """The copies of a portability response that go out: each of a record or more
    (``portable_copies``), but those the DPO left out."""
    left_out = set(withheld)
    return [(s, e) for s, e in portable_copies(rec) if s not in left_out]


def _portability_response(
    rec: RequestRecord, ctx: Context, out: Outcome, review: manifest.Review
) -> None:
    """The portability response (UK GDPR Art. 20(1)): where each system's copy of what
    the right covers is, in a structured machine-readable form the subject may give
    another controller; that none could be given (each left out by the DPO, or not yet
    made); or that no system holds any of it. No Art. 15 manifest: that is an access
    request's, and the subject may make one. What was sent, left out and why is kept on
    the record (``manifest``, kind ``portability_response``: Art. 5(2)). Where part of
    it is not acted on as asked (nothing held, a copy redacted or left out, a
    transmission not feasible), the redress ends the notice (Art. 12(4))."""
    sent = [e for _, e in copies_out(rec, review.withheld)]
    rec.manifest = _portability_record(rec, ctx, review)
    unmade = any(t.state not in (TaskState.done, TaskState.not_found) for t in rec.tasks.values())
    nothing_held = not (sent or unmade or review.withheld)
    if sent:
        told = _copies_told(rec, review, _formats(sent)) + _fetch_by(rec, ctx, review)
    elif unmade:
        # Failed (or, from a connector that should not, retained): never "we hold none".
        told = f"We could not yet make your copy of {PORTABLE_DATA}."
    elif review.withheld:
        told = f"We cannot give you a copy of {PORTABLE_DATA}."
    else:  # nothing_held
        told = NOTHING_PORTABLE_WHY
    told += _still_to_send(rec, sent, unmade)
    told += _reviewed(review, "20(4)", "the letter with this notice", redress=False)
    told += _not_done(rec)
    not_as_asked = review.redacted or review.withheld or review.not_feasible is not None
    if not_as_asked or nothing_held:
        told += " " + REDRESS
    letter = [t for t in (review.reason, review.not_feasible) if t]
    notify_subject(
        rec,
        out,
        ctx,
        "portability_response",
        told,
        document="\n\n".join(letter) or None,
        exports=[e.model_copy(update={"categories": None}) for e in sent],
    )


def _still_to_send(rec: RequestRecord, sent: list[r.ExportReference], unmade: bool) -> str:
    """For a subject who asked for the copies to be sent on (Art. 20(2)): that a copy not
    yet made goes there once made, or that nothing was sent ("" otherwise)."""
    if rec.send_to is None or (sent and not unmade):
        return ""
    if unmade:
        return " We will send what is not yet made to the organisation you named once it is."
    return " So we have sent nothing to the organisation you named."


def _copies_told(rec: RequestRecord, review: manifest.Review, formats: str) -> str:
    """What the portability notice says of the copies sent: where they are, and, when
    the subject asked for them to be sent on (Art. 20(2)), that the DPO did, or why not
    (in the letter: the DPO's words may name people)."""
    form = f"in a structured, machine-readable form ({formats})"
    if rec.send_to is None:
        told = f"A copy of {PORTABLE_DATA}, {form} that you may give to another organisation."
        return told + TRANSMIT
    if review.transmitted_on is not None:
        return (
            f"On {review.transmitted_on.isoformat()} we sent a copy of {PORTABLE_DATA}, "
            f"{form}, to the organisation you named (UK GDPR Art. 20(2)). You may fetch the "
            "copies yourself too."
        )
    return (
        "We could not send your copy to the organisation you named directly: UK GDPR Art. "
        "20(2) asks for it where it is technically feasible, and it was not; why is in the "
        f"letter with this notice. Here is your copy of {PORTABLE_DATA}, {form}, for you to "
        "give them yourself."
    )


def _formats(sent: Iterable[r.ExportReference]) -> str:
    """The names of the copies' formats (JSON, CSV...), in their order, once each: every
    copy sent passed ``portable_problem``, so each has one."""
    return ", ".join(dict.fromkeys(format_name(e.media_type) or e.media_type for e in sent))


def _portability_record(
    rec: RequestRecord, ctx: Context, review: manifest.Review
) -> dict[str, Any]:
    """What a portability response sent, left out and why, for the controller (sealed
    with the record, as an access manifest is; ``request status`` reads it)."""
    going = copies_out(rec, review.withheld)
    missing = sorted(t.system.value for t in rec.tasks.values() if t.state is TaskState.failed)
    return {
        "kind": "portability_response",
        "request_id": rec.request_id,
        "generated_at": ctx.now.astimezone(UTC).isoformat(),
        "exports": [manifest.export_entry(system, ref, review) for system, ref in going],
        "withheld_exports": [
            {"system": s.value, "ground": PORTABILITY_WITHHELD}
            for s in sorted(review.withheld, key=lambda s: s.value)
        ],
        "review_reason": review.reason,
        **_transmission(rec, review, [s.value for s, _ in going], missing),
        "missing_exports": missing,
    }


def _transmission(
    rec: RequestRecord, review: manifest.Review, out: list[str], missing: list[str]
) -> dict[str, Any]:
    """The record's ``transmission`` (Art. 20(2), from 0.40): asked, and the day the
    copies that go ``out`` were sent or why it was not feasible (neither: nothing went
    out to send), and the ``missing`` ones the DPO sends on once made. Nothing when the
    subject asked for no copy to be sent on, so a record of before reads as it did."""
    if rec.send_to is None:
        return {}
    sent_on = review.transmitted_on
    return {
        "transmission": {
            "systems": out if sent_on else [],  # none sent on when it was not feasible
            "sent_on": sent_on.isoformat() if sent_on else None,
            "not_feasible": review.not_feasible is not None,
            "why_not": review.not_feasible or None,
            "pending": missing,
        }
    }


def categories_found(task: TaskRecord) -> set[Category]:
    """The categories of the subject's data a system holds, for the access response
    (UK GDPR Art. 15(1)(b): the categories "concerned"): those its copy reported (the
    system's own copy, not a redaction of the DPO's, which leaves out of the copy what
    the system still holds; none, for a copy of no record), else, for a system that did
    not say (a connector of before 0.38; an empty list with records in the copy) or sent
    no copy, those the data map says it holds."""
    copy = task.original_export or task.export
    if copy is None or copy.categories is None:
        return set(task.categories)
    if not copy.categories and copy.record_count > 0:
        return set(task.categories)  # records of no category said: not known to hold less
    return set(copy.categories)


UNMAPPED: Final = (
    "a system's access copy holds categories the data map does not list for it: the "
    "subject is told them; add them to the data map (and the ROPA) for that system"
)


def _unmapped(rec: RequestRecord, held: dict[System, set[Category]]) -> str | None:
    """Each system whose copy reported a category the data map does not list for it, as
    "system: category, ..." (no personal data); None when there is none. The subject is
    told what was found; the DPO is told the data map is behind (Art. 30)."""
    mapped = {t.system: set(t.categories) for t in rec.tasks.values()}
    gaps = [
        f"{system.value}: {', '.join(sorted(c.value for c in cats - mapped.get(system, set())))}"
        for system, cats in sorted(held.items(), key=lambda kv: kv[0].value)
        if cats - mapped.get(system, set())
    ]
    return "; ".join(gaps) or None


def _fetch_by(rec: RequestRecord, ctx: Context, review: manifest.Review) -> str:
    """Until when the subject may fetch their copies: the systems delete each the data
    map's ``access_exports`` days after making it, which is after its task was first
    sent (a system's answer, re-sent from its ledger, may be dated later than the copy).
    So the day before the earliest first send plus those days: every copy is kept
    through the whole of it. Sooner where the subject's erasure waited for this response
    (``response_first.erased_from``): it takes the copies on its day, or took them
    already (its day came, or the DPO released it, before this response went out). ""
    when none is sent, or they are kept until erasure and no erasure waited."""
    days = ctx.datamap.access_exports.period_days
    asked = [
        t.first_sent_at
        for t in rec.tasks.values()
        if t.export is not None and t.first_sent_at is not None and t.system not in review.withheld
    ]
    if not asked:
        return ""
    erased = erased_from(rec, ctx)
    until = (
        (min(asked) + timedelta(days=days)).astimezone(UK).date() - timedelta(days=1)
        if days is not None
        else None
    )
    if erased is not None:
        day, went_out = erased
        if went_out:
            return ERASED_BEFORE.format(day=day.isoformat())
        if day <= ctx.today:
            return ERASED_TODAY
        if until is None or day <= until:
            return ERASED_WITH_IT.format(day=day.isoformat())
    if until is None:
        return ""
    if until < ctx.today + FETCH_DAYS:
        # A response long delayed (a review, a pause, a late answer): say so, and how to
        # get a copy that is gone (review, session 36).
        return (
            f" Some copies are kept only until {until.isoformat()}: fetch them at once; if "
            "one is gone, ask us and we will make it again."
        )
    return (
        f" The copies are kept until {until.isoformat()}: please fetch them by then (you "
        "may ask again after)."
    )


ERASED_WITH_IT: Final = (
    " We are also erasing your data, as asked: these copies go with it from {day}, so "
    "please fetch them before then."
)
"""What a response's notice says of the copies when the subject's erasure waits for it."""
ERASED_TODAY: Final = (
    " We are also erasing your data, as asked, from today: please fetch these copies at "
    "once, as they go with it."
)
ERASED_BEFORE: Final = (
    " We began erasing your data on {day}, as asked, before this response was ready: "
    "some of these copies may show less than we held, or be gone already."
)
"""What it says when that erasure's work went out first (its day came, or the DPO
released it): the copies are made from, or erased with, what it leaves."""


def _reviewed(
    review: manifest.Review,
    article: str = "15(4)",
    reasons_in: str = "your copy",
    *,
    redress: bool = True,
) -> str:
    """What the notice with the copies says of the DPO's review ("" if nothing was
    changed), under ``article`` (access: 15(4), the reasons in the manifest; portability:
    20(4), in the letter with the notice), and the redress unless the notice ends with
    it itself (``redress``)."""
    if not (review.redacted or review.withheld):
        return ""
    done = [
        f"{verb} the copy from {', '.join(sorted(s.value for s in systems))}"
        for verb, systems in (("redacted", review.redacted), ("left out", review.withheld))
        if systems
    ]
    told = (
        f" To protect other people shown in it, we {' and '.join(done)} (UK GDPR Art. "
        f"{article}); our reasons are in {reasons_in}."
    )
    # Art. 12(4): part of it is not acted on as asked
    return told + " " + REDRESS if redress else told


def _past(rec: RequestRecord) -> manifest.PastRequest:
    return manifest.PastRequest(
        request_id=rec.request_id,
        request_type=rec.request_type.value,
        received_on=rec.received_on,
        state=rec.state.value,
        closed_on=rec.closed_at.astimezone(UK).date() if rec.closed_at else None,
        ours=rec.actor == FOLLOWUP_ACTOR,
        upheld_purposes=tuple(rec.objected_purposes),
    )


NOTICE_WITHHELD: Final = (
    "not told by privops (notify_on_rights_requests: false in the data map); the DPO "
    "decides whether telling it could prejudice an investigation (DPA 2018 Sch. 2)"
)


WITHHELD: Final = (
    "not in the Art. 15 response: the DPO reviews whether telling the subject could "
    "prejudice it (DPA 2018 Sch. 2) and, where not, tells them"
)


def _withheld(ctx: Context) -> str | None:
    """What an access response leaves out for the DPO to review, if anything: an active
    legal hold or an open investigation on the subject (privops.core.manifest says why)."""
    found = []
    if any(h.active_at(ctx.now) for h in ctx.holds):
        found.append("legal_hold")
    if ctx.facts.open_investigation_ids or ctx.facts.unlisted_investigation_open:
        found.append("investigation")
    return ",".join(found) or None


LIFT_NOTICE: Final = (
    "We will lift the restriction on the use of your personal data; our reasons are in "
    "the letter with this notice. " + REDRESS
)
LIFT_NOTICE_NO_REASON: Final = (
    "We will lift the restriction on the use of your personal data. " + REDRESS
)


# What the subject is told once a request is done (Art. 12(3): the action taken), for the
# request types whose answer is not a document or a decision of the DPO's.
_OUTCOMES: Final[dict[RequestType, str]] = {
    RequestType.erasure: "We erased the personal data we held about you.",
    RequestType.restriction: "We restricted the use of your personal data.",
    RequestType.restriction_lift: "The restriction on the use of your personal data is lifted.",
    RequestType.rectification: "We corrected your personal data.",
    RequestType.objection: "We stopped all direct marketing to you.",
    RequestType.consent_withdrawal: "We recorded that you withdrew your consent.",
}


STILL_RESTRICTED_WORDS: Final = (
    "One restriction on the use of your personal data has ended, but its use stays "
    "restricted under another restriction that still stands."
)
ALREADY_ENDED_WORDS: Final = "That restriction on the use of your personal data had already ended."


def _outcome_words(rec: RequestRecord) -> str | None:
    """The outcome notice's text: what was done, and where it could not be done (the
    systems, never a value); None where another notice answers the request (an access
    response, a DPO's decision on a legitimate-interest objection)."""
    words = _OUTCOMES.get(rec.request_type)
    if words is None or rec.objection_scope is ObjectionScope.legitimate_interest:
        return None
    states = {t.state for t in rec.tasks.values()}
    nothing_asked = not states and rec.request_type is RequestType.rectification
    if nothing_asked or (states and states <= {TaskState.not_found}):
        # Every system answered it holds none of it, or (a rectification) no system holds
        # what it concerns: nothing was done, and the notice must not say it was (third
        # review, session 27: "We corrected your personal data." with no task sent).
        return "We checked our systems and hold none of the personal data this concerns."
    if rec.request_type is RequestType.consent_withdrawal:
        words = _withdrawal_words(rec)
    if rec.still_restricted_by == [NONE_STANDING]:
        return ALREADY_ENDED_WORDS
    if rec.still_restricted_by:
        return STILL_RESTRICTED_WORDS
    return words + _not_done(rec)


def _withdrawal_words(rec: RequestRecord) -> str:
    """What the subject withdrew, as the DPO recorded it: one consent, or every one."""
    purpose, channel = rec.withdrawn_purpose, rec.withdrawn_channel
    if purpose is None and channel is None:
        return _OUTCOMES[RequestType.consent_withdrawal]
    what = f"to {purpose.value}" if purpose is not None else "to everything"
    how = f" by {channel.value}" if channel is not None else ""
    return f"We recorded that you withdrew your consent {what}{how}."


def _not_done(rec: RequestRecord) -> str:
    """The systems where a request could not be done, for the subject's notice ("" if
    none): named, never a value."""
    failed = sorted({t.system.value for t in rec.tasks.values() if t.state is TaskState.failed})
    if not failed:
        return ""
    return (
        f" We could not yet complete it in: {', '.join(failed)}; our Data Protection "
        "Officer is following this up and will write to you."
    )
