"""The request workflow: DPO commands, systems' answers and timer ticks -> tasks, alerts.

Reads:  privacy.commands, privacy.task-results.<system>, privops.internal.request-ticks
        (all keyed by subject id, co-partitioned with the subject's state)
Writes: privacy.command-results (one answer per command), privacy.tasks.<system>,
        privacy.alerts, privacy.notifications, privacy.audit,
        privops.internal.subject-directives, privacy.deadletter; tables requests and
        command-answers, and the request index (holds are forwarded to ingest). Decisions are
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
derived from the audit key, which every worker of the group holds and trusts, for the
follow-up erasures its requests issued only (the DPO's audit tools hold that key too).
A command answered once is answered the same when it comes again: by its request's
record, else by the partition's table of answers no request keeps (command-answers).

A completed erasure then erases privops' own copies (privops.core.shredding decides
which): the subject's data keys are shredded on privacy.subject-keys, and the tables drop
what they hold of the subject (identities, subject-facts, released legal holds, the
personal values of closed requests), except what retention keeps. It waits until the
erasure's suppression is in the consent state, and destroys no key before what it
decided is stored (see ``erase_leftovers``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import TypeVar, cast

from aiokafka.errors import KafkaError
from faust.types import Message, StreamT

from agents.ingest import (
    WRONG_PARTITION,
    PlaintextRefused,
    on_its_partition,
    opened,
    opened_command,
    refuse,
    tell_holds,
)
from privops.adapters import metrics
from privops.core import records as r
from privops.core import response_first, shredding
from privops.core import workflow as wf
from privops.core.admission import (
    UNAUTHENTICATED,
    WorkflowInput,
    admit_workflow,
    audited_actor,
    audited_request_id,
    is_plain_id,
)
from privops.core.audit import step_time
from privops.core.erasure import SubjectFacts
from privops.core.errors import DecodeError, DomainError, RuntimeUnavailable, WrongTopic
from privops.core.facts import DirectiveKind, phone_replaced
from privops.core.fanout import current_hold_states
from privops.core.holds import LegalHold
from privops.core.identity import IdentityMap, merge, new_values
from privops.core.request import Leftovers, Out, stable_id
from privops.core.signing import Signers
from privops.core.subject_keys import SubjectKey
from privops.core.ticks import TickKind, parse_tick
from privops.core.topics import (
    COMMAND_RESULTS,
    COMMANDS,
    REQUEST_TICKS,
    SUBJECT_DIRECTIVES,
    workflow_inputs,
)
from privops.core.vocab import TERMINAL_STATES, TaskAction, TaskState
from streams import pipeline
from streams.app import app, settings
from streams.audit import audit, ref
from streams.context import collaborators
from streams.io import dead_letter, decode, output
from streams.keystore import KeyStoreBehind, key_store
from streams.sealing import REFUSED
from streams.state import Slot, state
from streams.tables import (
    COMMAND_ANSWERS,
    CONSENT,
    FACTS,
    HOLDS,
    IDENTITIES,
    REQUESTS,
    erased,
    request_index,
)

log = logging.getLogger(__name__)
V = TypeVar("V")


# Ticks (overdue answers, deadline alerts, follow-ups) wait behind commands and answers:
# a sweep can find hundreds due at once, and a command should not wait for all of them.
inlet = pipeline.inlet("workflow", workflow_inputs(), background=[REQUEST_TICKS])


def load(request_id: str) -> wf.RequestRecord | None:
    """The request's record on this partition: the state's own value, never edited here
    (the decisions in privops.core.workflow edit a copy and return it)."""
    return state.get(REQUESTS, request_id)


async def load_finished(request_id: str, cause: str) -> wf.RequestRecord | None:
    """``load``, once an erasure whose leftovers were decided and stored is finished
    (``erase_leftovers``): before the input is decided, so that the audit step it
    recorded follows the chain's stored head as it did the first time. Decided after,
    a replayed input's own step (a duplicate answer, ignored) took that place in the
    chain, and the recorded step came after it: a forked chain."""
    rec = load(request_id)
    if rec is None or rec.leftovers is None or not shredding.pending(rec):
        return rec
    await erase_leftovers(rec, cause)
    return load(request_id)


def bare_context() -> wf.Context:
    """The context of a command for no known request or subject: the clock only."""
    now = collaborators().clock.now()
    return wf.Context(
        now=now,
        today=collaborators().clock.today(),
        datamap=collaborators().datamap,
        subject_ref="",
        known_subject=False,
        clock_offset=collaborators().clock.offset,
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
        consent=current,
        facts=state.get(FACTS, subject_id) or SubjectFacts(),
        holds=tuple(holds or ()),
        complaint_ack_days=settings.complaint_ack_days,
        clock_offset=collaborators().clock.offset,
        subject_requests=lambda: _requests_of(subject_id),
    )


def _requests_of(subject_id: str) -> list[wf.RequestRecord]:
    """The subject's requests on this partition (an access response lists them; an
    erasure looks at them for the responses it waits for; a lift and the record period
    read which restrictions are in force, ``fanout.restrictions_in_force``). One whose
    stored value does not open is left out and logged: raised, it dead-lettered the
    answer completing the access request, again at every re-sent task, until its
    deadline passed (review, session 32)."""
    found = []
    for request_id in request_index.keys_of(subject_id):
        try:
            rec = load(request_id)
        except DecodeError as exc:
            log.error(
                "request %s left out of the subject's requests: its record does not open (%s)",
                audited_request_id(request_id),
                exc.reason,
            )
            continue
        if rec is not None:
            found.append(rec)
    return found


@app.agent(pipeline.chunks(), concurrency=1)
async def workflow(chunks: StreamT[list[Message]]) -> None:
    global _trusted
    async for chunk in chunks:
        _trusted = None  # looked at again by the chunk's first command
        await pipeline.work(chunk, on_message, inlet)


_trusted: Signers | None = None
_trusted_at = 0.0
SIGNERS_EVERY_SECONDS = 0.05
"""How often the signers file is looked at while commands are decided: at each chunk's
first command and then every 50 ms, so a key created or revoked is in force within
that. Its two stats each release the GIL, and the consumer thread took it for up to
its switch interval: 0.4-0.8 ms of the event loop per command when looked at per
command (py-spy, session 36), for 11 µs of work."""


def _signers() -> Signers:
    global _trusted, _trusted_at
    now = time.monotonic()
    if _trusted is None or now - _trusted_at >= SIGNERS_EVERY_SECONDS:
        _trusted, _trusted_at = collaborators().signers.refresh(), now
    return _trusted


pipeline.feed(inlet, workflow)


async def on_message(message: Message) -> None:
    record = await decode(message, "workflow")
    if record is None:
        return
    # Refused with its value kept only where no personal field is plaintext: a business
    # event put on a results topic kept an email whole (review, session 43).
    try:
        admitted = admit_workflow(message.topic, record)
    except WrongTopic as exc:
        refuse(message, record, exc.reason, str(exc), "workflow")
        return
    except DecodeError as exc:  # an answer's ids privops never made
        refuse(message, record, exc.reason, exc.detail, "workflow")
        return
    try:
        await on_input(message, admitted)
    except DecodeError as exc:  # a sealed value that does not open (opened())
        refuse(message, record, exc.reason, exc.detail, "workflow")


async def on_input(message: Message, record: WorkflowInput) -> None:
    if isinstance(record, r.Command):
        metrics.count_event("commands", type(record).__name__)
        key = message.key
        await on_command(record, key.decode(errors="replace") if isinstance(key, bytes) else "")
    elif isinstance(record, r.TaskResult):
        metrics.count_event("task_results", type(record).__name__)
        key = message.key
        subject = key.decode(errors="replace") if isinstance(key, bytes) else ""
        if not on_its_partition(message, subject):  # its request lives on the key's
            refuse(message, record, "wrong_partition", WRONG_PARTITION, "workflow")
            return
        await on_result(record, subject)
    else:
        await on_tick(message, record)


async def on_command(cmd: r.Command, key: str) -> None:
    """Check the signature and the key, decide, then answer on privacy.command-results
    (under the command's own key), store, publish and audit. The audited actor is the
    signing key's owner."""
    # At most 50 ms old (``_signers``; re-read only when it changed); never in a thread,
    # where a hop per command queued every command behind the executor.
    trusted = _signers()
    bare = bare_context()  # its clock read once: a refusal after the load is dated by it
    refused = wf.authenticate(cmd, trusted, bare, collaborators().deployment)
    if refused is not None and not _answered_unbound(cmd, refused):
        apply(refused, None, cmd.request_id, None, UNAUTHENTICATED, cmd.command_id, key)
        return
    actor = audited_actor(cmd.actor)
    if state.message is not None and not on_its_partition(state.message, key):
        # Decided here, it would be stored where neither its subject's state nor its
        # keys are (and no follow-up finds it): refused before anything is opened.
        misplaced = wf.wrong_partition(cmd, bare)
        apply(misplaced, None, cmd.request_id, None, actor, cmd.command_id, key)
        return
    holding = isinstance(cmd, r.LegalHoldPlaced | r.LegalHoldReleased)
    rec = None if holding else await load_finished(cmd.request_id, cmd.command_id)
    own_subject = getattr(cmd, "subject_id", None)
    subject_id = own_subject or (rec.subject_id if rec else None)
    misrouted = wf.check_key(cmd, key, subject_id, bare)
    if misrouted is not None:
        apply(misrouted, None, cmd.request_id, None, actor, cmd.command_id, key)
        return
    answered = state.get(COMMAND_ANSWERS, _answers_key())
    # Signed as sent, keyed by its subject: its sealed values (the DPO's text) are opened
    # only now, under the subject's keys on this partition, and not at all for a command
    # answered before (its redelivery gets that answer, though a key be destroyed since).
    if not wf.answered_before(rec, answered, cmd.command_id):
        try:
            cmd = await opened_command(cmd, subject_id or key, state.partition)
        except DecodeError as exc:
            said = exc.detail if isinstance(exc, PlaintextRefused) else None
            after = bare_context()  # opening may have waited on the key store
            unread = wf.unreadable(cmd, exc.reason, after, said)
            apply(unread, None, cmd.request_id, None, actor, cmd.command_id, key)
            _remember(answered, cmd, unread, after)
            return
    if isinstance(cmd, r.LegalHoldPlaced | r.LegalHoldReleased):
        ctx = context(cmd.subject_id)
        outcome = wf.on_hold(cmd, ctx, answered)
        apply(outcome, None, cmd.request_id, cmd.subject_id, actor, cmd.command_id, key)
        _remember(answered, cmd, outcome, ctx)
        if outcome.holds is not None:
            # Stored now, with the records that tell the systems, in one flush: the next
            # decision about the subject (another hold, an erasure finishing, a new
            # identifier) reads it. Left to the ingest agent's copy of the directive, the
            # table lagged, and a second hold made a record without the first (review,
            # session 28); ingest finds it stored and changes nothing.
            state.put(HOLDS, cmd.subject_id, list(outcome.holds))
            if isinstance(cmd, r.LegalHoldPlaced):
                _resend_held(cmd.subject_id, context(cmd.subject_id), cmd.command_id)
        return
    # With no request and no subject there is nothing to look up: the decision rejects it.
    ctx = context(subject_id) if subject_id else bare_context()
    if rec is None and isinstance(cmd, r.RequestSubmitted) and is_plain_id(cmd.request_id):
        owner = request_index.get(cmd.request_id)
        if owner is not None and owner != cmd.subject_id:  # another partition's request
            taken = wf.taken_elsewhere(cmd, ctx)
            apply(taken, None, cmd.request_id, None, actor, cmd.command_id, key)
            return
    parent_id = wf.followup_parent(cmd)
    parent = load(parent_id) if parent_id else None  # on this partition, or not at all
    outcome = wf.on_command(rec, cmd, ctx, parent, answered)
    apply(outcome, rec, cmd.request_id, subject_id, actor, cmd.command_id, key)
    _remember(answered, cmd, outcome, ctx)
    await settle(outcome.record or rec, cmd.command_id)


def _answered_unbound(cmd: r.Command, refused: wf.Outcome) -> bool:
    """Whether ``cmd``, authentic but signed for no cluster (a CLI older than the
    binding), is one this partition answered before: an older worker accepted it, and it
    is redelivered after the upgrade. It gets that answer again (``wf.on_command``), not
    a rejection telling the DPO to sign again what was done (review, session 30)."""
    if refused.rejected is not wf.Reason.unbound_signature:
        return False
    answered = state.get(COMMAND_ANSWERS, _answers_key())
    return wf.answered_before(load(cmd.request_id), answered, cmd.command_id)


def _answers_key() -> str:
    """The key of this partition's answers to commands no request keeps (one value per
    partition: the memory store keeps every partition's keys in one dict)."""
    return f"commands/{state.partition}"


def _remember(
    answered: wf.CommandAnswers | None, cmd: r.Command, outcome: wf.Outcome, ctx: wf.Context
) -> None:
    kept = wf.remember(answered, cmd, outcome, ctx)
    if kept is not None:
        state.put(COMMAND_ANSWERS, _answers_key(), kept)


async def on_result(result: r.TaskResult, key: str) -> None:
    cause = f"{result.task_id}:{result.attempt}:{type(result).__name__}"
    rec = await load_finished(result.request_id, cause)
    result = await opened(result, rec.subject_id if rec else key, state.partition)
    outcome = wf.on_result(rec, result, context(rec.subject_id) if rec else bare_context())
    apply(
        outcome,
        rec,
        result.request_id,
        rec.subject_id if rec else None,
        result.system.value,
        cause,
    )
    if outcome.record is not None:
        _learn_rectified(outcome.record, result)
    await settle(outcome.record or rec, cause)


def _learn_rectified(rec: wf.RequestRecord, result: r.TaskResult) -> None:
    """A system confirmed a rectified email or phone: it now knows the subject by the new
    one, so the identity map says so and later tasks carry it (review, session 24: they
    carried the old one, and an erasure to a system knowing the subject by email only
    found nothing, answered not found, and left the rows)."""
    task = rec.tasks.get(result.task_id)
    if task is None or task.action is not TaskAction.rectify or task.state is not TaskState.done:
        return
    identity = state.get(IDENTITIES, rec.subject_id)
    if identity is None or task.system not in identity.systems:
        return
    known = identity.systems[task.system]  # only names the system knows the subject by
    new = {n: v for n, v in rec.rectification.items() if n in CONTACT_IDS and n in known}
    if not new:
        return
    now = input_time()  # the answer's: a replay learns it the same
    try:
        merged = merge(identity, rec.subject_id, task.system, new, now)
    except DomainError:  # checked at submission; a record from before that check
        log.warning(
            "rectified identifiers of %s not learnt: not valid", audited_request_id(rec.request_id)
        )
        return
    if merged is identity:
        return
    state.put(IDENTITIES, rec.subject_id, merged)
    # As an event's new number or value does (agents.ingest): the old number's TPS
    # screening ends (by a directive: the consent state is the ingest agent's to write),
    # and the systems a legal hold reaches hold the rows under the new value too, or
    # deletion by age took them (review, session 44).
    if phone_replaced(identity, merged):
        directive = r.SubjectDirective(
            directive_id=stable_id(result.task_id, DirectiveKind.number_changed.value),
            subject_id=rec.subject_id,
            request_id=rec.request_id,
            kind=DirectiveKind.number_changed.value,
            occurred_at=now,
        )
        output(SUBJECT_DIRECTIVES, rec.subject_id, directive)
    if new_values(identity, merged):
        tell_holds(rec.subject_id, merged)


CONTACT_IDS = frozenset({"email", "phone"})  # the rectifiable fields that are identifiers


async def on_tick(message: Message, record: r.RequestTick) -> None:
    """Act on a timer's tick; one whose kind this worker does not know is a dead letter."""
    try:
        tick = parse_tick(record)
    except DecodeError as exc:
        dead_letter(message, "workflow", exc.reason, exc.detail)
        return
    cause = f"{tick.kind.value}:{tick.task_id}:{tick.days_before}:{tick.at.isoformat()}"
    rec = await load_finished(tick.request_id, cause)
    if rec is None:
        return
    ctx = context(rec.subject_id)
    if tick.kind is TickKind.record_expired:
        schedule = collaborators().schedule
        if not schedule.ready:  # what links to it is not known yet: the rebuild finds it due
            return
        ctx = dataclasses.replace(ctx, referenced=schedule.referenced(tick.request_id))
    outcome = wf.on_tick(rec, tick, ctx)
    apply(outcome, rec, tick.request_id, rec.subject_id, "privops", cause)
    if outcome.recheck_on is not None:
        collaborators().schedule.recheck(tick.request_id, outcome.recheck_on)
    if not outcome.forget:
        await settle(outcome.record or rec, cause)


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
    now = input_time()
    rec = outcome.record
    audited_id = audited_request_id(request_id)  # logs and audit never take contact details
    # A rejection of an input that found no request here (unsigned, misplaced, for an
    # unknown request or one another subject holds) is chained on this partition's own
    # chain, as dead letters are: under the request's chain it forked it (the head read
    # from a partition that does not hold the request), so anyone who could put a record
    # on an input topic broke `audit verify` for that request for good (review, session 25).
    chain = f"rejected/workflow/{state.partition}" if outcome.rejected and before is None else None
    if outcome.rejected:
        metrics.count_command_rejected(outcome.rejected)
        log.warning("rejected input for request %s: %s", audited_id, outcome.rejected)
    if rec is not None:
        state.put(REQUESTS, request_id, rec)
        if before is None:
            request_index.put(request_id, rec.subject_id)
        collaborators().schedule.track(rec)
        _count(before, rec)
    elif outcome.forget:  # its kept time ended (wf.expires_on): the record goes
        _replace(REQUESTS, request_id, None)
        request_index.remove(request_id, if_value=subject_id)
    if outcome.answer is not None:
        output(COMMAND_RESULTS, key or subject_id or request_id, outcome.answer)
    for out in outcome.out:
        _send(out)
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
            chain=chain,
        )


def _send(out: Out) -> None:
    """One of a decision's records, with the agent's flush; None: a tombstone."""
    record = out.record
    if out.topic == COMMANDS and isinstance(record, r.Command):
        # A follow-up the worker issues itself: signed as written, so not sealed after
        # (its reason is privops' own words: the systems and categories whose retention
        # ended); and signed for no cluster, so whichever worker reads it (an older one
        # mid-upgrade, one on a cluster migrated to a new id) takes it, and acts on it
        # only as the very follow-up its parent issued (wf.issued_followup).
        signed = collaborators().worker_key.sign(record, deployment=None)
        output(out.topic, out.key, signed, seal=False)
        return
    output(out.topic, out.key, record)


def input_time() -> datetime:
    """When the input being decided was produced, if plausible, else now
    (``audit.step_time``): its audit steps are dated by it, so a replay makes the same
    records."""
    message = state.message
    stamp = getattr(message, "timestamp", None) if message is not None else None
    return step_time(stamp, collaborators().clock.now())


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
        if _escalated(old, task):
            metrics.count_task_escalation(task.system)


def _escalated(old: wf.TaskRecord | None, task: wf.TaskRecord) -> bool:
    """Whether this decision escalated ``task`` to the DPO (retries.escalate): silent
    after its attempts, or failed for good without having been escalated as silent."""
    was = None if old is None else old.state
    if task.state is TaskState.escalated:
        return was is not TaskState.escalated
    return task.state is TaskState.failed and was not in (TaskState.failed, TaskState.escalated)


# --- a completed erasure: privops' own copies ----------------------------------------------


async def settle(rec: wf.RequestRecord | None, cause: str) -> None:
    """After a decision on ``rec``: a completed erasure erases privops' own copies, and a
    request that closes once its subject is erased drops its personal values too; an
    access or portability response that closed lets the subject's erasures waiting for it
    go on if it closed without copies (``response_first``)."""
    if rec is None:
        return
    if (
        rec.request_type in response_first.RESPONSES
        and not rec.open
        and collaborators().schedule.erasure_waits(rec.subject_id)
    ):
        await _resume_erasures(rec.subject_id, cause)
    if shredding.pending(rec):
        if rec.leftovers is None:  # else tried before the input was decided (load_finished)
            await erase_leftovers(rec, cause)
    elif not rec.open and erased(rec.subject_id):
        clean = shredding.scrubbed(rec)
        if clean is not None:
            state.put(REQUESTS, rec.request_id, clean)


async def erase_leftovers(rec: wf.RequestRecord, cause: str) -> None:
    """Erase the subject's leftovers in two steps, each safe to run again: decide and
    store what goes and what stays, then destroy the keys as recorded.

    Only once the consent state (this partition's, shared with the ingest agent, so its
    unflushed write counts) carries the suppression of the erasure's own directive: from
    then on the key service refuses the subject, and the suppression list holds the
    hashes of the identifiers the identity map is about to lose.

    1. ``_decide``: while ``main`` still opens them, the identity map, facts and holds
       are trimmed to what retention keeps and written, the closed requests cleared, and
       the request records the keys to destroy, the audit step, and a copy of what is
       kept sealed under the storage scope (``shredding.planned``). Nothing is destroyed.
    2. What is decided so far is flushed, and awaited until stored (``_stored``): a
       replay after any failure from here on finds the decision, never decides it again
       from stores ``main`` no longer opens. A flush dropped (the partitions moving)
       leaves nothing destroyed: the input's replay decides again.
    3. ``_destroy``: the recorded keys are shredded (``KeyStore.shred`` is idempotent, and
       refuses new keys at once), what is kept is written again so the flush seals it
       under the storage scope (put back from the recorded copy where a destroyed key
       took it, ``shredding.restored``), and the recorded step is audited: a replay
       writes the same record.

    A decision recorded earlier is decided again only while none of its keys is gone (a
    hold placed meanwhile may keep more). Until the suppression is there, or while the
    key store cannot answer, the request waits (a history entry) and a follow-up tick
    tries again; a refusal for good (``REFUSED``: the worker may not write the keys'
    topic) stops the worker instead, as it does when a new subject's key is refused.
    """
    sid = rec.subject_id
    now = collaborators().clock.now()
    if not erased(sid):
        _defer(rec, now, "its suppression is not in the consent state yet")
        return
    try:
        store = key_store()
        if not store.ready:
            raise KeyStoreBehind("subject keys still loading")
        decided = rec.leftovers
        if decided is None or not shredding.begun(decided, _key_ids(await store.records(sid))):
            rec = await _decide(rec, cause, now)
        if not await _stored(rec):
            return
        await _destroy(rec, now)
    except REFUSED:
        raise  # for good (a write ACL taken away): the worker stops (streams.pipeline)
    except (RuntimeUnavailable, KafkaError) as exc:
        _defer(rec, now, f"the key store cannot answer ({type(exc).__name__})")


async def _decide(rec: wf.RequestRecord, cause: str, now: datetime) -> wf.RequestRecord:
    """Step 1: the storage scope's key made, the keys to destroy and what remains
    decided from the entries as ``main`` opens them, the entries written, the decision
    recorded on the request (returned). Every await comes before the first write."""
    sid, store = rec.subject_id, key_store()
    current = _entries(sid)
    if rec.leftovers is not None:  # decided before: what a key destroyed since took
        current = shredding.restored(current, _opened(rec.leftovers, sid))
    holds = list(current.holds or ())
    kept = shredding.still_kept(rec, holds, collaborators().datamap.holdings(), now)
    storage = shredding.storage_scope(rec, kept, holds, now)
    key = None
    if storage is not None:
        made = await store.get_or_create(sid, storage, erasing=True)
        key = store.key(made.key_id)
        if key is None:
            raise KeyStoreBehind("the storage scope's key is not at hand")
    decision = shredding.keys_to_destroy(await store.records(sid), kept, now, storage)
    remains = shredding.what_remains(kept, current.identity, current.facts, holds, now)
    _write(sid, remains)
    cleared = _clear_closed_requests(sid, rec.request_id)
    cleared += rec.leftovers.cleared if rec.leftovers is not None else 0
    leftovers = Leftovers(
        key_ids=list(decision.key_ids),
        cause=f"{cause}:{shredding.KEYS_SHREDDED}",
        at=input_time(),
        reason=shredding.summary(decision, remains, cleared),
        cleared=cleared,
        kept=shredding.sealed_copy(remains, sid, key),
    )
    decided = shredding.planned(shredding.scrubbed(rec) or rec, leftovers, now)
    state.put(REQUESTS, rec.request_id, decided)
    return decided


async def _stored(rec: wf.RequestRecord) -> bool:
    """Step 2: flush what was decided so far, and wait until it is stored (changelog
    delivered, local store written). Whether ``rec``'s decision is what the table holds
    now: not if the flush was dropped (the partitions are moving; its inputs are
    replayed). Visible is not enough: a crash before the changelog is delivered replays
    the input against the stored record, without the decision, after the keys are gone.
    A delivery that fails raises (``StateFailed``): the worker stops and replays."""
    await state.flush()
    await state.settle()
    found = load(rec.request_id)
    return found is not None and found.leftovers == rec.leftovers


async def _destroy(rec: wf.RequestRecord, now: datetime) -> None:
    """Step 3: destroy the recorded keys, write what is kept again (sealed at the flush
    under the storage scope, ``main`` being gone), mark the erasure done and audit the
    recorded step. Needs nothing ``main`` sealed: a replay does the same."""
    sid, leftovers, store = rec.subject_id, rec.leftovers, key_store()
    assert leftovers is not None
    copy = _opened(leftovers, sid)  # a copy that does not open stops here, nothing destroyed
    current = _entries(sid)  # read before the shred: whole on the first run
    destroyed = await store.shred(sid, leftovers.key_ids)
    if late := set(destroyed) - set(leftovers.key_ids):
        # Not in the recorded step (a replay records the same): the log says so.
        log.warning(
            "erasure %s: %d main key(s) made while it was decided destroyed with it",
            audited_request_id(rec.request_id),
            len(late),
        )
    restored = shredding.restored(current, copy)
    _write(sid, restored)
    _resend_hold_states(sid, restored.holds or ())
    final = shredding.done(shredding.scrubbed(rec) or rec, now)
    state.put(REQUESTS, rec.request_id, final)
    collaborators().schedule.track(final)
    audit(
        actor="privops",
        action=shredding.KEYS_SHREDDED,
        cause=leftovers.cause,
        occurred_at=leftovers.at,
        request_id=audited_request_id(rec.request_id),
        subject_id=sid,
        after=str(len(leftovers.key_ids)),
        reason=leftovers.reason,
    )


def _resend_hold_states(subject_id: str, holds: Iterable[LegalHold]) -> None:
    """The systems' hold records again once ``main`` is destroyed: those sent before were
    sealed under it, and a system could no longer open whom to keep. Sealed at the flush
    under the storage scope (a key each system keeping a held category may open); a
    system the erasure took the subject from gets a tombstone. A replay writes the same."""
    for out in current_hold_states(context(subject_id), subject_id, holds):
        _send(out)


def _entries(subject_id: str) -> shredding.Remains:
    """The subject's identity map, facts and holds as the tables open them now."""
    holds = state.get(HOLDS, subject_id)
    return shredding.Remains(
        identity=state.get(IDENTITIES, subject_id),
        facts=state.get(FACTS, subject_id),
        holds=tuple(holds) if holds else None,
    )


def _opened(leftovers: Leftovers, subject_id: str) -> shredding.Remains:
    return shredding.opened_copy(leftovers.kept, subject_id, key_store().key)


def _write(subject_id: str, remains: shredding.Remains) -> None:
    """What remains becomes the subject's entries; None deletes. Written even if
    unchanged: the flush seals it under the subject's storage key of the moment."""
    state.put(IDENTITIES, subject_id, cast(IdentityMap, remains.identity))
    state.put(FACTS, subject_id, cast(SubjectFacts, remains.facts))
    # Holds too: their reasons are sealed, and what stays must be sealed under the
    # storage scope once main is destroyed.
    if remains.holds:
        state.put(HOLDS, subject_id, list(remains.holds))
    else:
        _replace(HOLDS, subject_id, None)


def _key_ids(records: list[SubjectKey]) -> set[str]:
    return {record.key_id for record in records}


def _defer(rec: wf.RequestRecord, now: datetime, why: str) -> None:
    log.info("erasure %s completed; its keys wait: %s", audited_request_id(rec.request_id), why)
    later = shredding.deferred(rec, now)
    state.put(REQUESTS, rec.request_id, later)
    # Only the retry is new: the follow-ups are indexed already, once is enough.
    collaborators().schedule.track(later.model_copy(update={"followups": []}))


def _replace(slot: Slot[V], key: str, value: V | None) -> None:
    """``value`` becomes ``key``'s entry; None deletes it (a tombstone at the flush)."""
    if state.get(slot, key) != value:
        state.put(slot, key, cast(V, value))


async def _resume_erasures(subject_id: str, cause: str) -> None:
    """The subject's open erasures waiting for their responses (``wf.on_response_closed``):
    each forgets those no longer in the way and sends its work once none is; one with
    nothing to do settles at once (its keys destroyed)."""
    ctx = None
    for other in _requests_of(subject_id):
        if not response_first.waiting(other):
            continue
        ctx = ctx or context(subject_id)
        outcome = wf.on_response_closed(other, ctx)
        rid = other.request_id
        apply(outcome, other, rid, subject_id, "privops", f"{cause}:{rid}")
        if outcome.record is not None:
            await settle(outcome.record, f"{cause}:{rid}")


def _resend_held(subject_id: str, ctx: wf.Context, cause: str) -> None:
    """The subject's open erasures whose erase tasks a hold just placed reaches: sent
    again now, keeping the held categories (``wf.on_hold_placed``)."""
    for request_id in request_index.keys_of(subject_id):
        rec = state.get(REQUESTS, request_id)
        if rec is None or not rec.open:
            continue
        outcome = wf.on_hold_placed(rec, ctx)
        apply(outcome, rec, request_id, subject_id, "privops", f"{cause}:{request_id}")


def _clear_closed_requests(subject_id: str, but: str) -> int:
    """Drop the personal values of the subject's other closed requests (found through the
    request index's subjects: before, one pass over the whole index per completed
    erasure, ~35 ms of CPU at a million requests). How many were changed."""
    cleared = 0
    for request_id in request_index.keys_of(subject_id):
        if request_id == but:
            continue
        found = state.get(REQUESTS, request_id)
        clean = shredding.scrubbed(found) if found is not None else None
        if clean is not None:
            state.put(REQUESTS, request_id, clean)
            cleared += 1
    return cleared
