"""The request workflow as pure decisions: (request record, input, context) -> outcome.

One ``RequestRecord`` per request holds its lifecycle state, its deadline clock and each
system's task. ``on_command``, ``on_hold``, ``on_result`` and ``on_tick`` never do I/O:
they return the new record plus what to publish (tasks, alerts, notifications,
directives), what to audit and, for a command, its answer (CommandAccepted or
CommandRejected with a ``Reason``). The Faust agent only decodes, looks up the context,
calls these and emits. Checks that hold in any state (topic, names, dates) are
privops.core.admission's; fan-out and systems' answers privops.core.fanout's, task
timing privops.core.retries', the deadline clock privops.core.timelimits'.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Final, assert_never

from pydantic import AwareDatetime, BaseModel, ConfigDict

from privops.core import (
    admission,
    erasure,
    response_first,
    retries,
    search,
    shredding,
    timelimits,
)
from privops.core import records as r
from privops.core.amounts import parse_pounds
from privops.core.clock import UK
from privops.core.consent import CONSENT_PURPOSES
from privops.core.datamap import FIELD_NAME_RE, STATEMENT_PREFIX, DataMap
from privops.core.errors import DomainError
from privops.core.exports import export_problem, portable_problem
from privops.core.fanout import (
    COPIES,
    REDRESS,
    copies_out,
    finish,
    hold_states,
    holdings,
    objection_holdings,
    on_result,
    preserve_search,
    restrictions_in_force,
    review_systems,
    searched,
    send_tasks,
    start_work,
)
from privops.core.holds import update_holds
from privops.core.identity import normalise_email, normalise_phone
from privops.core.lifecycle import IDENTITY_REQUIRED, LifecycleEvent
from privops.core.manifest import Review
from privops.core.personal import WITHHELD
from privops.core.request import (
    FOLLOWUP_ACTOR,
    MAX_ANSWER_MESSAGE,
    AuditStep,
    Context,
    FollowupItem,
    HistoryItem,
    KeptItem,
    Out,
    Outcome,
    Reason,
    Refused,
    RequestRecord,
    TaskRecord,
    move,
    notify_subject,
    reject,
)
from privops.core.request import stable_id as _id
from privops.core.retries import make_task_id, next_checks
from privops.core.signing import Signers
from privops.core.ticks import Tick, TickKind
from privops.core.topics import COMMANDS, LEGAL_HOLDS_PREFIX, SUBJECT_DIRECTIVES
from privops.core.vocab import (
    FINAL_TASK_STATES,
    Capacity,
    Category,
    FeeGround,
    ObjectionScope,
    RefusalGround,
    RequestState,
    RequestType,
    System,
    TaskAction,
    TaskState,
)

__all__ = [
    "AuditStep",
    "CommandAnswers",
    "Context",
    "FollowupItem",
    "HistoryItem",
    "KeptAnswer",
    "KeptItem",
    "Out",
    "Outcome",
    "Reason",
    "RequestRecord",
    "TaskRecord",
    "answered_before",
    "authenticate",
    "expires_on",
    "finished_at",
    "followup_parent",
    "issued_followup",
    "make_task_id",
    "next_checks",
    "on_command",
    "on_hold",
    "on_result",
    "on_tick",
    "pending_followups",
    "reject",
    "remember",
]

E = LifecycleEvent
SCHEDULER = FOLLOWUP_ACTOR
"""The actor of the commands the worker issues itself (follow-up erasures). Its keys are
derived from the audit key, which the DPO's audit tools hold too, so its signature proves
only that someone with the audit key signed: what it signs is acted on only as the very
follow-up erasure a request on the partition issued (``issued_followup``)."""


# --- commands -----------------------------------------------------------------------------


def authenticate(cmd: r.Command, signers: Signers, ctx: Context, deployment: str) -> Outcome | None:
    """The rejection of a command whose signature does not prove its actor for
    ``deployment`` (the Kafka cluster's id), else None.

    Runs before anything else, the request not even loaded: an unproven command is
    answered and audited, and nothing else (not even the memory of its answer, so a
    forged command cannot pre-empt the answer to a real one with the same command id).
    Once it passes, the command's actor is the signing key's owner.
    """
    try:
        admission.authenticate(cmd, signers, deployment)
    except Refused as exc:
        return _turned_away(cmd, exc.reason, exc.message, ctx)
    return None


def unreadable(cmd: r.Command, why: str, ctx: Context, detail: str | None = None) -> Outcome:
    """The rejection of an authenticated command whose sealed values do not open (under
    another subject's key or a destroyed one, altered, not ciphertext): answered, so the
    CLI is told, and audited; ``why`` names the reason, never a value (nor does
    ``detail``: plaintext refused names the fields). A key destroyed meanwhile (the
    subject's erasure ran between the CLI sealing and this decision) is said so: running
    the command again seals under what the erasure kept, or sends the text withheld."""
    message = f"a sealed field does not open ({why})"
    if detail is not None:
        message = f"{detail} ({why})"
    elif why == "shredded_key":
        message += (
            ": the key it was sealed under was destroyed since (the subject's erasure ran "
            "meanwhile); run the command again"
        )
    return _turned_away(cmd, Reason.invalid_command, message, ctx)


def check_key(cmd: r.Command, key: str, subject_id: str | None, ctx: Context) -> Outcome | None:
    """The rejection of a command not keyed by its subject's id, else None.

    The key decides the partition, and a request lives on its subject's partition: a
    command under another key would be decided without the subject's state (which lives
    elsewhere) and stored where no follow-up finds it. ``subject_id`` is the command's
    own subject, else that of the request it follows up (None when neither is known
    here: the decision then rejects the unknown request).
    """
    if subject_id is None or key == subject_id:
        return None
    message = (
        "the command is not keyed by its subject's id (privacy.commands is keyed by "
        "subject id; `privops request` does this)"
    )
    return _turned_away(cmd, Reason.wrong_key, message, ctx)


def wrong_partition(cmd: r.Command, ctx: Context) -> Outcome:
    """The rejection of a command keyed by its subject's id but not on the partition that
    key lands on (a producer that does not partition by murmur2 of the key, as the Java
    client and `privops request` do)."""
    message = (
        "the command is not on its key's partition (privacy.commands is partitioned by "
        "murmur2 of the subject id, the Java client's default; librdkafka: "
        "partitioner=murmur2_random)"
    )
    return _turned_away(cmd, Reason.wrong_key, message, ctx)


def taken_elsewhere(cmd: r.Command, ctx: Context) -> Outcome:
    """The rejection of a submission whose request id another subject's request has
    (the request index says so; that request lives on another partition, where this
    one's duplicate check cannot see it): accepted, the index, the HTTP view and the
    CLI would name this subject for the other request."""
    return _turned_away(cmd, Reason.duplicate, f"request id {cmd.request_id} already exists", ctx)


def _turned_away(cmd: r.Command, reason: Reason, message: str, ctx: Context) -> Outcome:
    """A command rejected before it touches any request: answered and audited, nothing
    else (not even the memory of its answer)."""
    outcome = reject(reason, message)
    outcome.answer = _answer(cmd, None, reason, message, ctx)
    return outcome


def _not_issued(cmd: r.Command, ctx: Context) -> Outcome:
    """The rejection of a command signed with the worker's own key that is not a
    follow-up erasure this partition's request issued: turned away, as an unproven
    signature is. Not remembered either: a follow-up that arrives before its request's
    write is readable (a crash between the two, the tick replayed behind the command)
    is issued again with the same command id, and must then be decided afresh."""
    message = (
        "the worker's own key signs only the follow-up erasures its requests issue, and "
        "no request here issued this one (was it signed with the audit key outside the "
        "worker?)"
    )
    return _turned_away(cmd, Reason.unknown_signer, message, ctx)


def answered_before(
    rec: RequestRecord | None, answered: CommandAnswers | None, command_id: str
) -> bool:
    """Whether ``command_id`` was answered already (its request keeps the answer, or the
    partition does): ``on_command`` answers it the same, whatever it carries."""
    return (rec is not None and rec.answer_to(command_id) is not None) or (
        answered is not None and answered.answer_to(command_id) is not None
    )


def on_command(
    rec: RequestRecord | None,
    cmd: r.Command,
    ctx: Context,
    parent: RequestRecord | None = None,
    answered: CommandAnswers | None = None,
) -> Outcome:
    """Apply one DPO command to a request and answer it (privacy.command-results).

    Everything is checked before anything is kept: a rejected command changes nothing
    but the memory of the answer (the record's, else the partition's ``answered``: see
    ``remember``), so that its redelivery is answered the same.

    ``parent`` is the request ``followup_parent`` names, as this partition holds it: a
    command the worker signed is acted on only as a follow-up erasure it issued.
    """
    if rec is not None and (seen := rec.answer_to(cmd.command_id)) is not None:
        return Outcome(record=None, answer=_answer(cmd, rec, seen.reason, seen.message, ctx))
    if answered is not None and (kept := answered.answer_to(cmd.command_id)) is not None:
        return Outcome(record=None, answer=_answer(cmd, None, kept.reason, kept.message, ctx))
    if cmd.actor == SCHEDULER and not issued_followup(parent, cmd):
        return _not_issued(cmd, ctx)
    try:
        outcome = _decide(rec, cmd, ctx)
    except Refused as exc:
        outcome = reject(exc.reason, exc.message)
        if rec is not None:
            outcome.record = rec.editable_copy()
    if outcome.rejected is None:
        outcome.message = _summary(outcome, outcome.message)
    if outcome.record is not None:
        outcome.record.remember(cmd.command_id, outcome.rejected, outcome.message, ctx.now)
    state = outcome.record or rec
    outcome.answer = _answer(cmd, state, outcome.rejected, outcome.message, ctx)
    return outcome


def _decide(rec: RequestRecord | None, cmd: r.Command, ctx: Context) -> Outcome:
    admission.check_names(cmd)
    admission.check_fresh(cmd, _signers_clock(cmd, ctx))
    if isinstance(cmd, r.RequestSubmitted):
        if rec is not None:
            raise Refused(Reason.duplicate, f"request id {cmd.request_id} already exists")
        admission.check_dates(cmd, None, ctx.today)
        return _submitted(cmd, ctx)
    if rec is None:
        raise Refused(Reason.unknown_request, f"no request {cmd.request_id}")
    if not rec.open:
        raise Refused(Reason.request_finished, f"request {rec.request_id} is {rec.state.value}")
    admission.check_dates(cmd, rec, ctx.today)
    handler = _HANDLERS.get(type(cmd))
    if handler is None:
        raise Refused(Reason.invalid_command, f"{type(cmd).__name__} does not apply to a request")
    rec = rec.editable_copy()
    out = Outcome(record=rec)
    timelimits.settle_old_pause(rec, ctx, out)
    try:
        handler(rec, cmd, ctx, out)
    except DomainError as exc:
        raise Refused(Reason.invalid_transition, str(exc)) from exc
    return out


def _signers_clock(cmd: r.Command, ctx: Context) -> datetime:
    """The clock ``cmd``'s issued_at was set by, now: the signer's wall clock, or for a
    follow-up the worker issued itself, its own (shifted by ``ctx.clock_offset``)."""
    return ctx.now if cmd.actor == SCHEDULER else ctx.now - ctx.clock_offset


def _answer(
    cmd: r.Command,
    rec: RequestRecord | None,
    reason: Reason | None,
    message: str | None,
    ctx: Context,
) -> r.CommandAnswer:
    common: dict[str, Any] = {
        "command_id": cmd.command_id,
        "request_id": cmd.request_id,
        "command_type": type(cmd).__name__,
        "answered_at": ctx.now,
        "request_state": rec.state if rec else None,
        "due_on": rec.due_on if rec else None,
    }
    if reason is None:
        return r.CommandAccepted(**common, message=message)
    return r.CommandRejected(**common, reason=reason.value, message=message or reason.value)


# --- answers no request keeps ---------------------------------------------------------------


MAX_KEPT_ANSWERS: Final = 1_000
"""The most answers a partition keeps (``CommandAnswers``), the oldest dropped first:
under half a megabyte of JSON even with every message at its longest, so the one table
value (and its changelog record) stays under Kafka's 1 MB. A partition answers a few
record-less commands a day (refused submissions, commands for requests not there, legal
holds): this is fourteen days of a busy DPO many times over."""


class KeptAnswer(BaseModel):
    """The answer given to one command (``reason`` None: accepted), and when it was signed."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    issued_at: AwareDatetime
    reason: Reason | None = None
    message: str | None = None


class CommandAnswers(BaseModel):
    """The answers a partition gave to commands no request record keeps: a submission
    refused, a command for a request not there, a legal hold placed or released.

    Kept for as long as the command could still be acted on (``admission.check_fresh``:
    ``MAX_COMMAND_AGE`` from its issued_at), so the same signed bytes put on the topic
    again within that time are answered as before rather than decided afresh. Before,
    only a request's record remembered answers, and a lift refused because the subject
    was not restricted was accepted when replayed after they were. One value per
    partition, keyed by command id; no subject id in it (a forget-check finds none).
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)
    answers: dict[str, KeptAnswer] = {}

    def answer_to(self, command_id: str) -> KeptAnswer | None:
        return self.answers.get(command_id)


_HOLD_COMMANDS: Final = (r.LegalHoldPlaced, r.LegalHoldReleased)


def remember(
    answered: CommandAnswers | None, cmd: r.Command, outcome: Outcome, ctx: Context
) -> CommandAnswers | None:
    """The partition's answers once ``outcome`` (of ``on_command`` or ``on_hold``)
    answered ``cmd``, less those whose commands could no longer be acted on; None when
    they stay as they are.

    Kept: a rejection no record keeps (the request is not there) and every answer to a
    legal hold command (no request has one). Not kept: an answer a record keeps
    (``RequestRecord.remember``), a repeated one, one to a command too old to be acted on
    anyway, and any answer to the worker's own commands (its requests' records keep
    those; ``_not_issued`` says why one turned away must not be kept)."""
    if cmd.actor == SCHEDULER or outcome.record is not None or outcome.answer is None:
        return None
    if outcome.rejected is None and not isinstance(cmd, _HOLD_COMMANDS):
        return None  # a repeated answer: the record that keeps it answered
    answers = answered.answers if answered is not None else {}
    if cmd.command_id in answers:
        return None
    now = _signers_clock(cmd, ctx)
    kept = {
        command_id: answer
        for command_id, answer in answers.items()
        if now - answer.issued_at <= admission.MAX_COMMAND_AGE
    }
    if now - cmd.issued_at <= admission.MAX_COMMAND_AGE:
        message = outcome.message[:MAX_ANSWER_MESSAGE] if outcome.message else None
        kept[cmd.command_id] = KeptAnswer(
            issued_at=cmd.issued_at, reason=outcome.rejected, message=message
        )
    if len(kept) > MAX_KEPT_ANSWERS:
        newest = sorted(kept.items(), key=lambda item: item[1].issued_at)[-MAX_KEPT_ANSWERS:]
        kept = dict(newest)
    return None if kept == answers else CommandAnswers(answers=kept)


def _summary(outcome: Outcome, note: str | None = None) -> str | None:
    """What an accepted command set going, in words, for the DPO who issued it (and
    ``note``, what the decision had to say besides)."""
    tasks = sum(isinstance(o.record, r.Task) for o in outcome.out)
    told = sum(isinstance(o.record, r.RecipientNotification) for o in outcome.out)
    parts = [f"{tasks} task(s) sent"] if tasks else []
    notes = [o.record for o in outcome.out if isinstance(o.record, r.SubjectNotification)]
    if notes:
        whom = "representative" if any(n.representative for n in notes) else "subject"
        parts.append(f"{whom} notified")
    if told:
        parts.append(f"{told} recipient(s) notified")
    if note:
        parts.append(note)
    return ", ".join(parts) or None


UNKNOWN_SUBJECT_REQUESTS: Final = frozenset({RequestType.access, RequestType.complaint})
"""What may be asked about a subject no system has reported (``Context.known_subject``).

Access: everyone may ask whether their data is processed (UK GDPR Art. 15(1)), and "we
hold none" is the answer, within the month like any other (``_nothing_held``); before,
it was refused and no record, clock or answer was kept (review, session 27). A
complaint: acknowledged (DPA 2018 s.164A). Any other right concerns data there is none
of, and its work is directives that would make a consent state for a subject id no
system gave: the DPO answers it by letter, or logs an access request to record that we
hold nothing."""

NOTHING_HELD: Final = "We checked our systems and hold no personal data about you."
SEARCH_OFFER: Final = (
    " If you were at our premises, our camera footage may show you: tell us the day, the "
    "hours and the place, and what you looked like, and we will search it."
)
"""Told with ``NOTHING_HELD`` where a system is searched by such details (CCTV): footage
is filed by camera and time, so "nothing under your name" is not the whole answer (ICO
guidance on video surveillance; review, session 36)."""
NOTHING_HELD_NOTE: Final = (
    "no system has reported this subject: answered that we hold no personal data about "
    "them (if they are a customer, check the subject id; to have footage searched for "
    "them, submit it again with --search date=YYYY-MM-DD and where and when)"
)
"""For the DPO: an id mistyped is answered the same, so the answer says why."""
NOTE_NOT_KEPT: Final = (
    "the note (--reason) is not kept: no system has reported this subject, and privops "
    "keeps nothing personal of someone it holds nothing of"
)
"""For the DPO: why the free text they gave an access request about a stranger is gone."""


def _start_work(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    """``fanout.start_work``, or for an access request about a subject no system has
    reported and with nothing to search for them by, the answer that nothing is held
    (``_nothing_held``); an erasure beside the subject's access or portability response
    waits for it first (``response_first.hold``)."""
    if (
        rec.request_type is RequestType.access
        and not rec.search
        and not ctx.holds_anything_besides(rec.request_id)
    ):
        _nothing_held(rec, ctx, out)
        return
    if response_first.hold(rec, ctx, out):
        return
    start_work(rec, ctx, out)


def _nothing_held(rec: RequestRecord, ctx: Context, out: Outcome) -> None:
    """Complete an access request with the Art. 15(1) confirmation that nothing is held.

    No tasks (no system knows the subject) and no manifest: the Art. 15(1)(a)-(h)
    information concerns data we process, and the manifest is a personal document,
    sealed under the subject's key, which would make a key for someone privops holds
    nothing of. The notice is words only, the same for everyone. Identity is still
    verified first (``IDENTITY_REQUIRED``): answering "nothing" at once where a held
    subject waits for their ID would tell a stranger which of the two they asked about.

    Nor does the record keep the DPO's free text (``_submitted`` drops it, and any given
    since goes here): it is sealed under the subject's key, and the flush would make one
    for the stranger (review, session 27)."""
    move(rec, E.answered, out, ctx.now)
    told = NOTHING_HELD + (SEARCH_OFFER if ctx.datamap.searched_by_details() else "")
    notify_subject(rec, out, ctx, "access_response", told)
    said = [out.message] if out.message else []  # what _submitted did not keep
    if rec.reason is not None:  # a note given since
        said.append(NOTE_NOT_KEPT)
    rec.reason = rec.extension_reason = None
    # nor in what capacity someone asked for them: "deputy" tells of their mental
    # capacity, "parent" that they are a child; the day their authority arrived stays
    rec.capacity = None
    out.message = "; ".join([NOTHING_HELD_NOTE, *said])


def _check_rectification(changes: dict[str, str], datamap: DataMap) -> None:
    """Refuse a rectification that names a field the data map does not list, a
    statement (``statement:<category>``) about no category of it, or an empty one.

    Values are never repeated: they are personal data, and the answer is not. Nor is a
    key that is not a field's name (one could be a value put in the wrong place)."""
    unknown = sorted(key for key in changes if datamap.rectified_category(key) is None)
    if not changes or unknown:
        shown = [
            k if FIELD_NAME_RE.match(k.removeprefix(STATEMENT_PREFIX)) else "(not a name)"
            for k in unknown
        ]
        raise Refused(
            Reason.invalid_command,
            f"rectification fields must be among {list(datamap.rectifiable_fields())}, or "
            f"{STATEMENT_PREFIX}<category> for a category of the data map; "
            f"got {shown or 'none'}",
        )
    for key, value in changes.items():
        if key.startswith(STATEMENT_PREFIX) and not value.strip():
            raise Refused(Reason.invalid_command, f"the {key} is empty: give its text")
        if len(value) > MAX_RECTIFIED_CHARS:
            raise Refused(
                Reason.invalid_command,
                f"the {key} is {len(value)} characters: at most {MAX_RECTIFIED_CHARS}",
            )
    checks = (
        *((name, normalise_email, "email") for name in EMAIL_FIELDS),
        *((name, normalise_phone, "phone number") for name in PHONE_FIELDS),
    )
    for name, check, what in checks:
        if name in changes:
            try:
                check(changes[name])
            except DomainError:
                raise Refused(
                    Reason.invalid_command, f"the new {name} is not a valid {what}"
                ) from None
    for name, signed in AMOUNT_FIELDS.items():
        if name in changes:
            try:
                parse_pounds(changes[name], signed=signed)
            except ValueError as exc:
                raise Refused(
                    Reason.invalid_command, f"the new {name} is {exc} (e.g. 1250.50)"
                ) from None


MAX_RECTIFIED_CHARS: Final = 4_000
"""The longest corrected value or statement: the request record carries it once and
each system's task again, and a record over Kafka's 1 MB would stop the worker's flush
(third review, session 27: a 170 KB statement made a 1.3 MB record)."""
EMAIL_FIELDS: Final = ("email",)
PHONE_FIELDS: Final = ("phone", "delivery_phone")
AMOUNT_FIELDS: Final = {"credit_limit": False, "overdue_balance": False, "account_balance": True}
"""Fields privops checks as amounts in pounds (True: may be negative, a balance in
credit), before a recipient is told of them (third review, session 27: "twelve quid"
and a negative credit limit reached the credit reference agencies' notices)."""


def _submitted(cmd: r.RequestSubmitted, ctx: Context) -> Outcome:
    if not ctx.known_subject and cmd.request_type not in UNKNOWN_SUBJECT_REQUESTS:
        raise Refused(
            Reason.unknown_subject,
            "no system has reported this subject, so there is nothing to act on (an access "
            "request records and answers that we hold nothing)",
        )
    linked = cmd.linked_request_id
    if cmd.request_type is RequestType.restriction_lift:
        linked = _lifted_restriction(cmd, ctx)
    if cmd.request_type is RequestType.rectification:
        _check_rectification(cmd.rectification, ctx.datamap)
    _check_withdrawal_scope(cmd)
    _check_send_to(cmd)
    _check_representative(cmd)
    if cmd.search:
        _check_search(cmd, ctx.datamap)
    # About a stranger: no free text, which would make them a key (``_nothing_held``);
    # unless there are search details to look for them by, which are kept as it is.
    stranger = (
        cmd.request_type is RequestType.access
        and not cmd.search
        and not ctx.holds_anything_besides(cmd.request_id)
    )
    # The CLI had no key to seal the representative's details under (privops holds
    # nothing of the subject and makes them no key for this): not kept, as the note is not.
    unkept = stranger or cmd.representative == WITHHELD
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
        search=dict(cmd.search),
        send_to=cmd.send_to.strip() if cmd.send_to else None,
        representative=None if unkept or not cmd.representative else cmd.representative.strip(),
        capacity=cmd.capacity,
        authority_received_on=cmd.authority_received_on,
        objection_scope=cmd.objection_scope,
        withdrawn_purpose=cmd.withdrawn_purpose,
        withdrawn_channel=cmd.withdrawn_channel,
        linked_request_id=linked,
        reason=None if stranger else cmd.reason,
        created_at=ctx.now,
        history=[HistoryItem(at=ctx.now, event=E.submitted.value, state=RequestState.received)],
    )
    out = Outcome(
        record=rec,
        audit=[AuditStep("request_received", after=rec.state.value, reason=received_reason(rec))],
        message=_not_kept(cmd, stranger),
    )
    preserve_search(rec, ctx, out)
    if rec.authority_received_on is not None:  # the evidence came with the request
        out.audit.append(
            AuditStep(
                "request_transitioned",
                after=rec.state.value,
                reason=f"{AUTHORITY_RECEIVED}{rec.authority_received_on}",
            )
        )
    if rec.request_type in IDENTITY_REQUIRED:
        if rec.identity_verified_on is None or rec.awaiting_authority:
            unproven = rec.identity_verified_on is None
            move(rec, E.identity_required if unproven else E.authority_required, out, ctx.now)
            timelimits.recompute_due(rec, ctx)
            return out
        move(rec, E.identity_verified, out, ctx.now)
    else:
        move(rec, E.accepted, out, ctx.now)
    timelimits.recompute_due(rec, ctx)
    _start_work(rec, ctx, out)
    return out


def _lifted_restriction(cmd: r.RequestSubmitted, ctx: Context) -> str | None:
    """The restriction a lift ends (from 0.45): the one it names, which must be in force
    (``restrictions_in_force``), or, naming none, the subject's only one. With
    several in force it must name one: a restriction rests on its own ground (Art.
    18(1): accuracy contested, an objection weighed, a complaint investigated), and the
    end of one is no end of the others. None: the consent state says restricted and no
    record of a restriction in force remains (made before the record period, or before
    0.45 kept them apart): the lift ends every restriction, as before."""
    in_force = restrictions_in_force(ctx)
    named = cmd.linked_request_id
    listed = f" (in force: {', '.join(in_force)})" if in_force else ""
    if named is not None and named not in in_force:
        raise Refused(
            Reason.not_restricted,
            f"request {named} is no restriction of this subject in force{listed}",
        )
    if named is None and not in_force and not ctx.restricted:
        raise Refused(Reason.not_restricted, "the subject has no active restriction to lift")
    if named is None and len(in_force) > 1:
        raise Refused(
            Reason.restriction_not_named,
            f"the subject has {len(in_force)} restrictions in force{listed}: name the one "
            "this lift ends (privops request lift --restriction REQUEST_ID)",
        )
    return named if named is not None else (in_force[0] if in_force else None)


def _check_search(cmd: r.RequestSubmitted, datamap: DataMap) -> None:
    """Search details only on an access request, only where a system of the data map is
    searched by them, and only ones it can search by (``search.problem``: a day, hours
    that are hours). Never repeats a value: they describe the subject."""
    if cmd.request_type is not RequestType.access:
        raise Refused(Reason.invalid_command, "search details go with an access request only")
    if not datamap.searched_by_details():
        raise Refused(
            Reason.invalid_command,
            "no system of the data map is searched by details (searched_by_details): "
            "submit the access request without them",
        )
    if found := search.problem(cmd.search, cmd.received_on):
        raise Refused(Reason.invalid_command, found)


def _check_withdrawal_scope(cmd: r.RequestSubmitted) -> None:
    """A purpose or channel only on a consent withdrawal, and only one consent covers:
    a subject may withdraw one consent as easily as they gave it (UK GDPR Art. 7(3);
    before, a withdrawal recorded by the DPO withdrew every consent on every channel)."""
    scoped = cmd.withdrawn_purpose is not None or cmd.withdrawn_channel is not None
    if scoped and cmd.request_type is not RequestType.consent_withdrawal:
        raise Refused(
            Reason.invalid_command, "a purpose or channel to withdraw goes with consent_withdrawal"
        )
    if cmd.withdrawn_purpose is not None and cmd.withdrawn_purpose not in CONSENT_PURPOSES:
        raise Refused(
            Reason.invalid_command,
            f"{cmd.withdrawn_purpose.value} rests on no consent to withdraw; purposes: "
            + ", ".join(p.value for p in CONSENT_PURPOSES),
        )


_NOT_IN_A_LINE: Final = frozenset({"Cc", "Cf", "Zl", "Zp"})
MAX_LINE_CHARS: Final = 500
"""The longest recipient an Art. 20(2) request names, or representative a request does:
who, and how to reach them, not a letter."""


def _check_send_to(cmd: r.RequestSubmitted) -> None:
    """Copies sent to another organisation (UK GDPR Art. 20(2)) only on a portability
    request, and only to one it names. The text is the subject's: never repeated."""
    if cmd.send_to is None:
        return
    if cmd.request_type is not RequestType.portability:
        raise Refused(
            Reason.invalid_command,
            "only a portability request's copies are sent to another organisation (send_to)",
        )
    if cmd.send_to == WITHHELD:  # the CLI had no key to seal it under
        raise Refused(
            Reason.invalid_command,
            "send_to could not be sealed (the subject is erased): submit without --send-to",
        )
    if problem := send_to_problem(cmd.send_to):
        raise Refused(Reason.invalid_command, f"send_to {problem}")


def send_to_problem(text: str) -> str | None:
    """What is wrong with an organisation to send copies to, or None (the CLI asks the
    same): ``line_problem``'s, with what an empty one should say."""
    return line_problem(text, "name the organisation and how to reach it")


def representative_problem(text: str) -> str | None:
    """What is wrong with a representative's details, or None (the CLI asks the same)."""
    return line_problem(text, "name who makes the request for the subject and how to reach them")


def line_problem(text: str, wanted: str) -> str | None:
    """What is wrong with one line of someone's words, or None: not blank (``wanted``
    says what it should hold), not longer than ``MAX_LINE_CHARS`` (it reaches the
    DPO's terminal and a letter). No control or formatting character (an escape
    sequence, a line break, a right-to-left override); a no-break space is a space.
    Never repeats the text."""
    trimmed = text.strip()
    if not trimmed:
        return f"is empty: {wanted}"
    if any(unicodedata.category(c) in _NOT_IN_A_LINE for c in trimmed):
        return "holds a control character or line break: one line of text"
    if len(trimmed) > MAX_LINE_CHARS:
        return f"is {len(trimmed)} characters: at most {MAX_LINE_CHARS}"
    return None


def _not_kept(cmd: r.RequestSubmitted, stranger: bool) -> str | None:
    """What the DPO is told of text the request does not keep: a stranger's note
    (``NOTE_NOT_KEPT``) and representative's details, or details the CLI had no key to
    seal (the subject erased with nothing kept): either way the representative is
    answered by the DPO's letter, not by the notices."""
    said = [NOTE_NOT_KEPT] if stranger and cmd.reason else []
    if stranger and cmd.representative:
        said.append(STRANGERS_REPRESENTATIVE)
    elif cmd.representative == WITHHELD:
        said.append(REPRESENTATIVE_NOT_KEPT)
    return "; ".join(said) or None


STRANGERS_REPRESENTATIVE: Final = (
    "the representative's details are not kept either (no system has reported this "
    "subject): answer them by letter"
)
REPRESENTATIVE_NOT_KEPT: Final = (
    "the representative's details are not kept: privops holds no key of this subject to "
    "seal them under (erased, nothing kept); the notices go to the subject as the systems "
    "knew them, so answer the representative by letter"
)


def _check_representative(cmd: r.RequestSubmitted) -> None:
    """A request made for the subject names who makes it and in what capacity
    (``Capacity``); a day their authority arrived belongs to such a request only. The
    details are theirs: never repeated. (A placeholder the CLI sent for details it had
    no key to seal is one line too: ``_submitted`` keeps none.)"""
    given = cmd.representative is not None
    if not given and (cmd.capacity is not None or cmd.authority_received_on is not None):
        raise Refused(
            Reason.invalid_command,
            "a capacity or a day the authority arrived belongs to a request made by a "
            "representative: name them (representative)",
        )
    if not given:
        return
    if cmd.capacity is None:
        raise Refused(
            Reason.invalid_command,
            "say in what capacity the representative acts (capacity: "
            + ", ".join(c.value for c in Capacity)
            + ")",
        )
    if problem := representative_problem(cmd.representative or ""):
        raise Refused(Reason.invalid_command, f"representative {problem}")


def _identity_verified(
    rec: RequestRecord, cmd: r.IdentityVerified, ctx: Context, out: Outcome
) -> None:
    if rec.awaiting_authority and rec.identity_verified_on is not None:
        raise Refused(
            Reason.invalid_transition,
            f"the identity was verified on {rec.identity_verified_on} already: the request "
            "waits for the evidence of the representative's authority (privops request "
            "authority)",
        )
    recorded = rec.identity_received_on
    given = cmd.information_received_on
    if given is not None and recorded is not None and given > recorded:
        _check_clock_kept(rec, cmd, ctx)
    rec.identity_verified_on = cmd.verified_on
    rec.identity_received_on = given or recorded
    if given is not None and recorded is not None and given != recorded:
        # a correction: to an earlier day (the subject's gain), or any while no clock runs
        out.audit.append(
            AuditStep(
                "request_transitioned",
                after=rec.state.value,
                reason=f"{IDENTITY_RECEIVED}{given} (corrected from {recorded})",
            )
        )
    if rec.awaiting_authority:  # open, so waiting in identity_unverified
        timelimits.recompute_due(rec, ctx)
        out.audit.append(
            AuditStep("request_transitioned", after=rec.state.value, reason=IDENTITY_NOT_AUTHORITY)
        )
        out.message = IDENTITY_NOT_AUTHORITY
        return
    move(rec, E.identity_verified, out, ctx.now)
    timelimits.recompute_due(rec, ctx)
    _start_work(rec, ctx, out)


def _check_clock_kept(rec: RequestRecord, cmd: r.IdentityVerified, ctx: Context) -> None:
    """A verification never moves a running clock out: the day its information arrived,
    later than the one recorded, is refused where the clock would then start later (a
    correction to an earlier day is the subject's gain; one that moves nothing stands)."""
    if rec.clock_start is None:
        return
    trial = rec.model_copy(
        update={
            "identity_received_on": cmd.information_received_on,
            "identity_verified_on": cmd.verified_on,
        }
    )
    timelimits.recompute_due(trial, ctx)
    if trial.clock_start is not None and trial.clock_start <= rec.clock_start:
        return
    raise Refused(
        Reason.dates_out_of_order,
        f"the identity information was recorded as received on {rec.identity_received_on}, "
        f"and the one-month clock runs from {rec.clock_start} (due {rec.due_on}): "
        f"{cmd.information_received_on} would move the deadline out. Verify without "
        "--identity-received, or give the day it arrived if that was earlier",
    )


IDENTITY_RECEIVED: Final = "identity information received "
"""The audit step's reason, before the day a verification says the information arrived
when it corrects the day recorded before."""
IDENTITY_NOT_AUTHORITY: Final = (
    "identity verified; the request waits for the evidence of the representative's "
    "authority (privops request authority)"
)


def _authority_received(
    rec: RequestRecord, cmd: r.AuthorityReceived, ctx: Context, out: Outcome
) -> None:
    """The evidence that the request's representative may act for the subject arrived on
    ``received_on``, and the DPO is satisfied with it (ICO, right of access: "requests
    made on behalf of others"; the third party provides it). A request that changes or
    discloses data starts once the identity is verified too; the clock runs from the
    later of the two (``deadlines.clock_start``). From then on its notices go to the
    representative (``request.answers_representative``).

    A day recorded may be corrected while the request still waits and no clock runs (no
    identity information has arrived: nothing it decided moves); after, it stands, as a
    second day would move a running deadline or the record of when the notices changed
    hands."""
    if rec.capacity is None:
        raise Refused(
            Reason.invalid_command,
            "this request was made by the subject, not a representative: there is no "
            "authority to record",
        )
    before = rec.authority_received_on
    if before is not None and (
        rec.clock_start is not None or rec.state is not RequestState.identity_unverified
    ):
        raise Refused(
            Reason.invalid_transition,
            f"the representative's authority was recorded already (received {before}), "
            "and its clock runs or its work went out: a second day would move what "
            "followed it (a deadline, a breach)",
        )
    rec.authority_received_on = cmd.received_on
    if rec.authority_required:  # another type's clock does not depend on it
        timelimits.recompute_due(rec, ctx)
    corrected = f" (corrected from {before})" if before is not None else ""
    clock = f"due {rec.due_on}" if rec.due_on else "no clock yet"
    out.audit.append(
        AuditStep(
            "request_transitioned",
            after=rec.state.value,
            reason=f"{AUTHORITY_RECEIVED}{cmd.received_on}{corrected}; {clock}",
        )
    )
    if rec.state is RequestState.identity_unverified and rec.identity_verified_on is not None:
        move(rec, E.identity_verified, out, ctx.now)
        _start_work(rec, ctx, out)


AUTHORITY_RECEIVED: Final = "representative's authority received "
"""The audit step's reason, before the day the evidence arrived."""


def _erasure_released(
    rec: RequestRecord, _cmd: r.ErasureReleased, ctx: Context, out: Outcome
) -> None:
    """The DPO lets a waiting erasure send its work now (``response_first``): the subject
    has their copies, or asks for the erasure at once."""
    if not response_first.waiting(rec):
        raise Refused(
            Reason.invalid_transition,
            "this request is not an erasure waiting for the subject's access or portability "
            "responses: there is no wait to end",
        )
    unsent = [o.request_id for o in response_first.in_the_way(rec, ctx) if o.open]
    _resume(rec, ctx, out, why=response_first.RELEASED)
    if unsent:
        out.message = (
            f"released while {', '.join(unsent)} has not gone out: its copy is made from "
            "what the erasure leaves, and its letter says so"
        )


def _fee_received(rec: RequestRecord, cmd: r.FeeReceived, ctx: Context, out: Outcome) -> None:
    """A fee (manifestly unfounded or excessive requests, further copies) is charged before
    the work: its receipt starts the clock. Once the work went out, or the clock the fee
    would restart has run out, a fee moves nothing: accepting it would erase a breach
    from the record (a fee "received" after the due date made it a month later).

    A fee needs its ground (``FeeGround``): before, any request could be given one, and
    it moved the due date of an ordinary first access request, which must be free
    (review, session 27)."""
    if cmd.ground is None:
        raise Refused(
            Reason.invalid_command,
            "say on what ground a fee is charged (--ground manifestly_unfounded, excessive "
            "or further_copies; UK GDPR Art. 12(5), 15(3)): a request is free otherwise",
        )
    if rec.request_type in timelimits.NO_FEE:
        raise Refused(
            Reason.invalid_command,
            f"no fee may be charged for a {rec.request_type.value.replace('_', ' ')}: UK GDPR "
            "Art. 12(5) allows one only for the rights of Art. 15-22",
        )
    if cmd.ground is FeeGround.further_copies and rec.request_type is not RequestType.access:
        raise Refused(
            Reason.invalid_command,
            "a fee for further copies applies to an access request only (UK GDPR Art. 15(3))",
        )
    if rec.tasks or response_first.waiting(rec):
        raise Refused(
            Reason.invalid_transition,
            "a fee is charged before the work starts; this request's work is under way "
            "(record the payment outside privops)",
        )
    if rec.due_on is not None and cmd.received_on > rec.due_on:
        raise Refused(
            Reason.dates_out_of_order,
            f"the fee was received on {cmd.received_on}, after the request's due date "
            f"{rec.due_on}: a fee cannot restart a clock that ran out",
        )
    rec.fee_received_on = cmd.received_on
    timelimits.recompute_due(rec, ctx)
    out.audit.append(
        AuditStep(
            "request_transitioned",
            after=rec.state.value,
            reason=f"fee received ({cmd.ground.value}); due {rec.due_on}",
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
    withdrawn = timelimits.end_pause(rec, cmd.received_on, ctx)
    if withdrawn is not None:
        out.audit.append(AuditStep("deadline_extended", after=str(rec.due_on), reason=withdrawn))
    if rec.request_type is RequestType.complaint:
        return  # acknowledged when it arrived; resuming must not acknowledge again
    if not rec.tasks:
        _start_work(rec, ctx, out)
        return
    # Paused while its tasks were out (timelimits): back to waiting for them, and
    # finish now if every answer came in during the pause.
    move(rec, E.tasks_sent, out, ctx.now)
    if all(t.state in FINAL_TASK_STATES for t in rec.tasks.values()):
        finish(rec, ctx, out)


EXTENSION_TOLD: Final = "reason told to the subject"
"""The ``deadline_extended`` step's reason for an extension; one withdrawn (it came too
late once a pause was counted) says why (``timelimits.EXTENSION_WITHDRAWN``)."""


_RECEIVED: Final = ", received "


def received_reason(rec: RequestRecord) -> str:
    """The ``request_received`` step's reason: the type and the day it was received (the
    accountability report counts from it: privops.core.audit_report)."""
    return f"{rec.request_type.value}{_RECEIVED}{rec.received_on.isoformat()}"


def received_of(reason: str | None) -> tuple[str, date | None]:
    """The request type and receipt day a ``request_received`` reason gives; the day is
    None in a step written before it carried one (the type alone)."""
    kind, _, day = (reason or "unknown").partition(_RECEIVED)
    try:
        return kind, date.fromisoformat(day)
    except ValueError:
        return kind, None


def _deadline_extended(
    rec: RequestRecord, cmd: r.DeadlineExtended, ctx: Context, out: Outcome
) -> None:
    timelimits.extend(rec, cmd, ctx)
    # The DPO's reason goes to the subject sealed (the notice's document), not into the
    # audit, which outlives every key: free text may name people (review, session 24).
    out.audit.append(AuditStep("deadline_extended", after=str(rec.due_on), reason=EXTENSION_TOLD))
    by = rec.due_on.isoformat() if rec.due_on else "-"
    if rec.clarification_asked_on is not None and rec.request_type is RequestType.access:
        # The open pause is not counted yet: the date alone would be one privops then
        # moves without a word once the answer comes (legal review, session 43).
        by += (
            f", and later by the days from {rec.clarification_asked_on.isoformat()} until "
            "we have your answer to our question (the time limit stops while we wait)"
        )
    notify_subject(
        rec,
        out,
        ctx,
        "deadline_extended",
        "We need more time for your request; our reason is in the letter with this notice. "
        f"We will respond by {by}.",
        document=cmd.reason,
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
            "We considered your objection and will continue; our reasons are in the letter "
            "with this notice. " + REDRESS,
            document=cmd.reason,
        )
        move(rec, E.refused, out, ctx.now)
        return
    stoppable = ctx.datamap.objection_purposes()
    if not stoppable:
        raise Refused(
            Reason.invalid_command,
            "the data map bases no purpose on legitimate interests: there is nothing an "
            "upheld objection could stop; refuse or answer the request",
        )
    if unknown := sorted(set(cmd.upheld_purposes) - set(stoppable)):
        raise Refused(
            Reason.invalid_command,
            f"not a purpose based on legitimate interests in the data map: {', '.join(unknown)}"
            f"; those are: {', '.join(sorted(stoppable))}",
        )
    rec.objected_purposes = sorted(set(cmd.upheld_purposes) or set(stoppable))
    held = holdings(ctx)
    send_tasks(rec, ctx, TaskAction.restrict, objection_holdings(ctx, held, rec.objected_purposes))
    for task in rec.tasks.values():  # kept, so every re-send says the same
        task.objected_purposes = ctx.datamap.purposes_at(task.system, rec.objected_purposes)
    asked = sorted({p for t in rec.tasks.values() for p in t.objected_purposes})
    unasked = sorted(set(rec.objected_purposes) - set(asked))
    out.audit.append(
        AuditStep(
            "request_transitioned",
            after="objection_accepted",
            reason=f"decided by the DPO for: {', '.join(rec.objected_purposes)}"
            + (f"; no system of the subject's serves: {', '.join(unasked)}" if unasked else ""),
        )
    )
    retries.send_pending(rec, ctx, out)
    # The others still in use: those a system holding the subject's data serves.
    going_on = sorted(set(stoppable) - set(asked))
    served = sorted({p for system in held for p in ctx.datamap.purposes_at(system, going_on)})
    _tell_objection_upheld(rec, cmd, ctx, out, asked, served)
    move(rec, E.tasks_sent if rec.tasks else E.answered, out, ctx.now)


def _tell_objection_upheld(
    rec: RequestRecord,
    cmd: r.ObjectionDecided,
    ctx: Context,
    out: Outcome,
    stopped: list[str],
    served: list[str],
) -> None:
    """Art. 12(3)-(4): what stopped (the purposes a system was told to stop, in the data
    map's words), and, where some of the subject's data is still used for the others,
    which, the DPO's reasons and the right to complain."""
    purposes = ctx.datamap.purposes

    def words(names: list[str]) -> str:
        return "; ".join(purposes[n].description.rstrip(".") for n in names)

    told = (
        f"We have stopped using your data for: {words(stopped)}."
        if stopped
        else "We checked our systems: none uses your data for the purposes you objected to."
    )
    if served:
        told += (
            f" We continue to use it for: {words(served)}; our reasons are in the letter "
            "with this notice. " + REDRESS
        )
    notify_subject(
        rec, out, ctx, "objection_accepted", told, document=cmd.reason if served else None
    )


NO_AUTHORITY_SHOWN: Final = (
    "We will not act on it: they did not show us that they may act for you (UK GDPR "
    "Article 12(6)). The letter with this notice says why. You may make the request "
    "yourself, or have them send us the evidence and make it again."
)
"""A refusal of a representative's request whose authority was never shown: told to the
subject (``notify_subject`` says first that someone asked in their name)."""
SUBJECT_UNCONFIRMED: Final = (
    "We cannot act on the request: we could not confirm the identity of the person it is "
    "about (UK GDPR Article 12(6)). The letter with this notice says why, and what would "
    "let us."
)
"""A refusal of a representative's request, their authority shown, the subject's identity
not: right for either reader (the representative, or the subject when their details are
not kept)."""

REFUSAL_NOTICES: Final = {
    RefusalGround.manifestly_unfounded: (
        "We will not act on your request: we consider it manifestly unfounded (UK GDPR "
        "Article 12(5)). Our reasons are in the letter with this notice."
    ),
    RefusalGround.excessive: (
        "We will not act on your request: we consider it manifestly excessive (UK GDPR "
        "Article 12(5)). Our reasons are in the letter with this notice."
    ),
    RefusalGround.identity_not_established: (
        "We cannot act on your request: we could not confirm who you are (UK GDPR Article "
        "12(6)). The letter with this notice says why, and what would let us."
    ),
    RefusalGround.right_does_not_apply: (
        "We cannot act on your request: the right you asked to exercise does not apply "
        "to our use of your data here. The letter with this notice explains why."
    ),
    # Neutral: saying an exemption applies may itself tip someone off (crime and
    # taxation, DPA 2018 Sch. 2 para. 2, which reaches Art. 12 too); the letter says
    # what may be said (review, session 37).
    RefusalGround.exemption: (
        "We will not act on your request. The letter with this notice says what we can "
        "tell you about why."
    ),
}
"""What the subject is told of each ground (Art. 12(4)), before the redress."""

_EVERY_GROUND: Final = frozenset(RefusalGround)
_NOT_INAPPLICABLE: Final = _EVERY_GROUND - {RefusalGround.right_does_not_apply}
REFUSABLE: Final[dict[RequestType, frozenset[RefusalGround]]] = {
    RequestType.erasure: _EVERY_GROUND,
    RequestType.restriction: _EVERY_GROUND,
    RequestType.rectification: _EVERY_GROUND,
    # The right of access applies to every subject: only Art. 12(5), identity or an
    # exemption refuse it.
    RequestType.access: _NOT_INAPPLICABLE,
    # Portability may not apply: to data used on another basis, or that others gave us
    # (Art. 20(1)), or where it would harm others (Art. 20(4)).
    RequestType.portability: _EVERY_GROUND,
}
"""The grounds each request type may be refused on (review, session 37). Not listed:
never refused (``_NEVER_REFUSED`` says why). An objection is looked up by its scope."""
_NEVER_REFUSED: Final = {
    RequestType.consent_withdrawal: "a consent withdrawal is always acted on (Art. 7(3))",
    RequestType.complaint: "a complaint is answered (`privops request answer`), not refused",
    RequestType.restriction_lift: "a lift is the controller's own decision: cancel it instead",
}


def _refused(rec: RequestRecord, cmd: r.RequestRefused, ctx: Context, out: Outcome) -> None:
    """Refuse the request on ``cmd.ground``, told to the subject with the DPO's letter
    (``reason``) and their redress (Art. 12(4)). The ground is kept on the record and
    in the audit (``request_refused``): the DPO's letter is free text an erasure of the
    subject scrubs, and the controller must still be able to show why it refused."""
    ground = _refusal_ground(rec, cmd)
    _no_work_out(rec, "refused")
    rec.reason = cmd.reason
    rec.refusal_ground = ground
    move(rec, E.refused, out, ctx.now)
    out.audit.append(AuditStep("request_refused", after=ground.value))
    told = REFUSAL_NOTICES[ground]
    if ground is RefusalGround.identity_not_established and rec.capacity is not None:
        told = SUBJECT_UNCONFIRMED if rec.authority_received_on else NO_AUTHORITY_SHOWN
    notify_subject(rec, out, ctx, "request_refused", f"{told} {REDRESS}", document=cmd.reason)


def _refusal_ground(rec: RequestRecord, cmd: r.RequestRefused) -> RefusalGround:
    """``cmd``'s ground, or why it cannot be refused on it: none given (a CLI of before
    0.37), or the identity not established for a request whose identity was verified."""
    allowed = _refusable(rec)
    grounds = ", ".join(g.value for g in RefusalGround if g in allowed)
    if cmd.ground is None:
        raise Refused(
            Reason.invalid_command,
            f"say on what ground the request is refused (--ground: {grounds}); a CLI of "
            "before 0.37 cannot say it: upgrade it",
        )
    if cmd.ground not in allowed:
        raise Refused(Reason.invalid_command, _not_on(rec, cmd.ground, grounds))
    return cmd.ground


def _refusable(rec: RequestRecord) -> frozenset[RefusalGround]:
    """The grounds ``rec`` may be refused on now: its type's (``REFUSABLE``), the
    identity only while it waits to be verified."""
    if rec.request_type is RequestType.objection:
        absolute = rec.objection_scope is ObjectionScope.direct_marketing
        # A legitimate-interest objection overridden is decided (decide-objection).
        allowed = frozenset() if absolute else _NOT_INAPPLICABLE
    else:
        allowed = REFUSABLE.get(rec.request_type, frozenset())
    waiting = rec.request_type in IDENTITY_REQUIRED and not rec.identity_verified_on
    if not (waiting or rec.awaiting_authority):
        allowed -= {RefusalGround.identity_not_established}
    return allowed


def _not_on(rec: RequestRecord, ground: RefusalGround, grounds: str) -> str:
    """Why ``rec`` cannot be refused on ``ground`` (``grounds``: those it can be)."""
    if never := _NEVER_REFUSED.get(rec.request_type):
        return f"this request cannot be refused: {never}"
    if rec.request_type is RequestType.objection and not grounds:
        return "an objection to direct marketing is absolute (Art. 21(3)): it cannot be refused"
    if ground is RefusalGround.identity_not_established and rec.identity_verified_on:
        authority = (
            f" and the representative's authority received on {rec.authority_received_on}"
            if rec.authority_received_on
            else ""
        )
        return (
            f"the subject's identity was verified on {rec.identity_verified_on}{authority}: "
            f"refuse on another ground ({grounds})"
        )
    if rec.request_type is RequestType.objection:
        return (
            f"{ground.value} is not a ground to refuse an objection on: an objection the "
            "controller has compelling legitimate grounds to override is decided "
            f"(`privops request decide-objection --refuse`); refuse only on {grounds}"
        )
    return f"{rec.request_type.value} is not refused on {ground.value}: use one of {grounds}"


def _cancelled(rec: RequestRecord, cmd: r.RequestCancelled, ctx: Context, out: Outcome) -> None:
    if rec.state is not RequestState.awaiting_review:  # held for review: nothing sent yet
        _no_work_out(rec, "cancelled")
    rec.reason = cmd.reason
    move(rec, E.cancelled, out, ctx.now)


def _answered(rec: RequestRecord, cmd: r.RequestAnswered, ctx: Context, out: Outcome) -> None:
    if response_first.waiting(rec):
        raise Refused(
            Reason.invalid_transition,
            "this erasure waits for the subject's access or portability response: its work "
            "answers it; release it (privops request erase-now) or cancel it",
        )
    rec.reason = cmd.reason
    move(rec, E.answered, out, ctx.now)
    notify_subject(
        rec,
        out,
        ctx,
        f"{rec.request_type.value}_answered",
        "We answered your request; our answer is in the letter with this notice.",
        document=cmd.reason,
    )


def _export_redacted(rec: RequestRecord, cmd: r.ExportRedacted, ctx: Context, out: Outcome) -> None:
    """The DPO's redacted copy replaces ``cmd.system``'s export in a response held for
    review; checked as the system's own answer is (under its export root, naming the
    request), since it goes to the subject. Sent again, the newest copy counts."""
    task = _reviewed_export(rec, cmd.system)
    if cmd.export.location == WITHHELD:
        raise DomainError(
            "the subject was erased meanwhile: their copies went with them, and no redacted "
            "copy can be sealed for them"
        )
    if (problem := export_problem(ctx.datamap, cmd.system, cmd.export, rec.request_id)) is not None:
        raise DomainError(f"the redacted copy cannot go to the subject: {problem}")
    if rec.request_type is RequestType.portability:
        _check_portable_redaction(task, cmd.export)
    if task.original_export is None:  # the system's own, kept for the DPO (status)
        task.original_export = task.export
    task.export = cmd.export
    task.redacted = True
    rec.history.append(HistoryItem(at=ctx.now, event=EXPORT_REDACTED, state=rec.state))
    out.audit.append(AuditStep("export_redacted", after=cmd.system.value, reason=REDACTED_BY_DPO))


def _check_portable_redaction(task: TaskRecord, export: r.ExportReference) -> None:
    """A portability copy's redaction is machine-readable, holds a record, and replaces
    a copy that held one (a copy of no record is not sent: ``_holds_no_record``)."""
    if problem := portable_problem(export):
        raise DomainError(f"the redacted copy cannot go to the subject: {problem}")
    if export.record_count == 0:
        raise DomainError(
            "a redacted copy of no record gives the subject nothing: withhold the copy "
            "instead (privops request approve --withhold), saying why"
        )
    if _holds_no_record(task):
        raise DomainError(
            f"{task.system.value}'s copy holds no record: there is nothing to redact (it is "
            "not sent)"
        )


REDACTED_BY_DPO: Final = "the DPO's redacted copy replaces the system's export"


def _response_approved(
    rec: RequestRecord, cmd: r.AccessResponseApproved, ctx: Context, out: Outcome
) -> None:
    """The DPO approves a response held for review: it goes out, the copies of
    ``cmd.withheld`` left out. The subject is told what was redacted or left out and
    the DPO's reason (Art. 12(4)), so a reason is required when anything was."""
    withheld, disclosed = frozenset(cmd.withheld), frozenset(cmd.disclosed)
    not_theirs = frozenset(cmd.not_subject)
    for system in withheld | disclosed:
        task = _reviewed_export(rec, system)
        if rec.request_type is RequestType.portability and _holds_no_record(task):
            raise DomainError(
                f"{system.value}'s copy holds no record: there is nothing to withhold or "
                "disclose (it is not sent)"
            )
    _awaiting_review(rec)
    if both := withheld & disclosed:
        raise DomainError(f"{_names(both)}: withheld and disclosed both; say one")
    if both := not_theirs & (withheld | disclosed):
        raise DomainError(f"{_names(both)}: not the subject's, and withheld or disclosed; say one")
    for system in not_theirs:
        _not_the_subjects(rec, system, ctx)
    # A copy the subject's erasure took meanwhile is no redacted copy any more.
    redacted = frozenset(t.system for t in rec.tasks.values() if t.redacted and t.export)
    redacted -= withheld
    if unreviewed := set(review_systems(rec, ctx)) - redacted - withheld - disclosed:
        raise DomainError(
            f"the copy from {_names(frozenset(unreviewed))} may show other people: redact it "
            "first (privops request redact), withhold it (--withhold), or, having found no "
            "one else in it, disclose it as it is (--disclose)"
        )
    # The DPO's reason, unless it could not be sealed (the subject erased meanwhile: the
    # CLI told them it reaches no one).
    reason = cmd.reason if cmd.reason != WITHHELD and (cmd.reason or "").strip() else None
    if (redacted or withheld) and reason is None and cmd.reason != WITHHELD:
        raise DomainError(
            "say why the copy was redacted or left out (--reason): the subject is told "
            "(UK GDPR Art. 12(4), 15(4))"
        )
    if reason is not None and not (redacted or withheld):
        raise DomainError(
            "nothing was redacted or left out: --reason is told to the subject only then"
        )
    not_feasible = _transmission_decided(rec, cmd, withheld)
    sent = f"; sent on {cmd.transmitted_on.isoformat()}" if cmd.transmitted_on else ""
    out.audit.append(
        AuditStep(
            "response_approved",
            after=(
                f"redacted: {_names(redacted)}; withheld: {_names(withheld)}; "
                f"disclosed: {_names(disclosed)}"
                + (f"; not the subject: {_names(not_theirs)}" if not_theirs else "")
                + sent
                + ("; transmission not feasible" if not_feasible is not None else "")
            ),
            reason="approved by the DPO",
        )
    )
    review = Review(
        redacted=redacted,
        withheld=withheld,
        reason=reason,
        transmitted_on=cmd.transmitted_on,
        not_feasible=not_feasible,
    )
    finish(rec, ctx, out, review)


def _transmission_decided(
    rec: RequestRecord, cmd: r.AccessResponseApproved, withheld: frozenset[System]
) -> str | None:
    """What became of a transmission the subject asked for (UK GDPR Art. 20(2)), as the
    approval says: why it was not technically feasible, or None (sent on
    ``cmd.transmitted_on``, or none asked). DomainError unless it says one of the two
    where copies go out to be sent, and says neither anywhere else."""
    said = cmd.transmitted_on is not None or cmd.not_feasible is not None
    if rec.send_to is None or not copies_out(rec, withheld):
        if said:
            raise DomainError(
                "the subject asked for no copy to be sent to another organisation: "
                "--sent-on and --not-feasible are for a portability request naming one "
                "(--send-to)"
                if rec.send_to is None
                else "no copy goes out (each is left out): there is nothing to send to the "
                "organisation the subject named, and the subject is told so"
            )
        return None
    if cmd.transmitted_on is not None and cmd.not_feasible is not None:
        raise DomainError("--sent-on and --not-feasible both: say one")
    if cmd.transmitted_on is not None:
        _check_sent_on(rec, cmd.transmitted_on)
        return None
    if cmd.not_feasible is None:
        raise DomainError(
            "the subject asked for their copies to be sent to the organisation they named "
            "(UK GDPR Art. 20(2)): send them, then approve with the day sent (--sent-on), "
            "or say why it is not technically feasible (--not-feasible); the copies are "
            "in `privops request status`"
        )
    if problem := not_feasible_problem(cmd.not_feasible):
        raise DomainError(problem)
    return cmd.not_feasible.strip()


def _check_sent_on(rec: RequestRecord, sent_on: date) -> None:
    """The copies were sent once they were as the subject gets them: made, and each
    redaction recorded (a copy sent before it was redacted went out unredacted)."""
    ready = _ready_since(rec)
    if ready is not None and sent_on < ready:
        raise DomainError(
            f"--sent-on {sent_on.isoformat()} is before the copies were ready to send "
            f"({ready.isoformat()}: made, and any redaction recorded); send the copies as "
            "the subject gets them, and say the day you did"
        )


def not_feasible_problem(text: str) -> str | None:
    """What is wrong with a reason a transmission was not feasible, or None (the CLI asks
    the same): not blank, not longer than ``MAX_NOT_FEASIBLE_CHARS`` (it goes in the
    letter to the subject)."""
    trimmed = text.strip()
    if not trimmed:
        return "--not-feasible is empty: say why; the subject is told"
    if len(trimmed) > MAX_NOT_FEASIBLE_CHARS:
        return f"--not-feasible is {len(trimmed)} characters: at most {MAX_NOT_FEASIBLE_CHARS}"
    return None


MAX_NOT_FEASIBLE_CHARS: Final = 2_000
"""The longest reason a transmission was not feasible: a paragraph of a letter."""
EXPORT_REDACTED: Final = "export_redacted"
"""The history entry of a copy the DPO redacted (``_export_redacted``)."""


def _ready_since(rec: RequestRecord) -> date | None:
    """The UK day the response's copies were last ready to send: it began waiting for
    the DPO, or the DPO last recorded a redacted copy."""
    ready = (LifecycleEvent.review_requested.value, EXPORT_REDACTED)
    held = [h.at for h in rec.history if h.event in ready]
    return max(held).astimezone(UK).date() if held else None


NOT_THE_SUBJECT: Final = "the DPO found that what the search found is not the subject"


def _not_the_subjects(rec: RequestRecord, system: System, ctx: Context) -> None:
    """The copy ``system``'s search found shows no one who is the subject: the task
    found nothing of theirs, and its copy (of other people) is dropped from the record
    and the response. Only a copy found by the request's search details: one found by
    the subject's own identifiers is theirs (redact or withhold it)."""
    task = _reviewed_export(rec, system)
    if not (rec.search and system in searched(ctx, rec)) or task.identifiers:
        raise DomainError(
            f"{system.value}'s copy holds what the subject's identifiers found, not only what "
            "the search details did: redact what is not theirs (privops request redact)"
        )
    task.state = TaskState.not_found
    task.export = task.original_export = None
    task.redacted = False
    task.outcome_reason = NOT_THE_SUBJECT


def _names(systems: frozenset[System]) -> str:
    return ",".join(sorted(s.value for s in systems)) or "-"


def _awaiting_review(rec: RequestRecord) -> None:
    if rec.request_type not in COPIES:
        raise DomainError("only an access or portability request's response is reviewed")
    if rec.state is not RequestState.awaiting_review:
        raise DomainError(
            f"the response is not awaiting review (state {rec.state.value}): only one "
            "holding a copy from a system marked review_before_disclosure, or a copy its "
            "system says shows other people, or a portability response to be sent to "
            "another organisation, waits for it"
        )


def _holds_no_record(task: TaskRecord) -> bool:
    """Whether the system's own copy (before any redaction) holds no record: no copy is
    sent of it (``fanout._portability_response``)."""
    own = task.original_export or task.export
    return own is not None and own.record_count == 0


def _reviewed_export(rec: RequestRecord, system: System) -> TaskRecord:
    """``system``'s export task of a response awaiting review, or DomainError."""
    _awaiting_review(rec)
    task = next(
        (
            t
            for t in rec.tasks.values()
            if t.action is TaskAction.export and t.system is system and t.export is not None
        ),
        None,
    )
    if task is None:
        raise DomainError(f"{system.value} sent no copy for this response")
    return task


def _no_work_out(rec: RequestRecord, verb: str) -> None:
    """Refusal and cancellation come before any work goes out, paused requests included."""
    if rec.tasks:
        raise DomainError(f"a request whose tasks went out cannot be {verb}")


_HANDLERS: dict[type[r.Command], Callable[[RequestRecord, Any, Context, Outcome], None]] = {
    r.IdentityVerified: _identity_verified,
    r.AuthorityReceived: _authority_received,
    r.ErasureReleased: _erasure_released,
    r.FeeReceived: _fee_received,
    r.ClarificationRequested: _clarification_requested,
    r.ClarificationReceived: _clarification_received,
    r.DeadlineExtended: _deadline_extended,
    r.ObjectionDecided: _objection_decided,
    r.RequestRefused: _refused,
    r.RequestCancelled: _cancelled,
    r.RequestAnswered: _answered,
    r.ExportRedacted: _export_redacted,
    r.AccessResponseApproved: _response_approved,
}


# --- legal holds --------------------------------------------------------------------------


def on_hold(
    cmd: r.LegalHoldPlaced | r.LegalHoldReleased,
    ctx: Context,
    answered: CommandAnswers | None = None,
) -> Outcome:
    """Place or release a legal hold on the subject (``ctx.holds``) and answer the command.

    Decided with privops.core.holds' rule, which the ingest agent applies again when it
    stores the hold forwarded here. A redelivered command is answered as it was, from the
    partition's memory (``answered``), else by finding its own effect (the hold placed,
    or released, at the command's issued_at); a command older than
    ``admission.MAX_COMMAND_AGE`` is refused. Before, a signed placement put on the topic
    again a year on placed its hold again once the erasure had dropped it as released.
    """
    if answered is not None and (kept := answered.answer_to(cmd.command_id)) is not None:
        return Outcome(record=None, answer=_answer(cmd, None, kept.reason, kept.message, ctx))
    if cmd.actor == SCHEDULER:
        return _not_issued(cmd, ctx)
    try:
        outcome = _hold(cmd, ctx)
    except Refused as exc:
        outcome = reject(exc.reason, exc.message)
    outcome.answer = _answer(cmd, None, outcome.rejected, outcome.message, ctx)
    return outcome


def on_hold_placed(rec: RequestRecord, ctx: Context) -> Outcome:
    """A legal hold was placed on ``rec``'s subject (``ctx.holds`` has it) while ``rec``,
    an open erasure, waits for its systems: each erase task that would erase a held
    category is sent again now, keeping it (``retries.resend_held``), rather than at its
    next SLA re-send. Nothing changes for a task already answered."""
    if rec.request_type is not RequestType.erasure or not rec.open:
        return Outcome(record=None)
    rec = rec.editable_copy()
    out = Outcome(record=rec)
    for task in rec.tasks.values():
        retries.resend_held(rec, task, ctx, out)
    return out if out.out else Outcome(record=None)


def _hold(cmd: r.LegalHoldPlaced | r.LegalHoldReleased, ctx: Context) -> Outcome:
    admission.check_names(cmd)
    admission.check_fresh(cmd, _signers_clock(cmd, ctx))
    admission.check_dates(cmd, None, ctx.today)
    placing = isinstance(cmd, r.LegalHoldPlaced)
    verb = "placed" if placing else "released"
    done = Outcome(record=None, message=f"hold {cmd.hold_id} {verb}")
    update = update_holds(ctx.holds, cmd)
    if update.changed:
        done.holds = update.holds
        done.out.append(Out(SUBJECT_DIRECTIVES, cmd.subject_id, cmd))
        # The systems holding the categories hear of it (their deletion by age).
        changed = {c for h in update.holds if h.hold_id == cmd.hold_id for c in h.categories}
        states = hold_states(ctx, cmd.subject_id, update.holds, changed)
        done.out += states
        if placing:
            done.message = f"hold {cmd.hold_id} placed; " + _told(states)
        if isinstance(cmd, r.LegalHoldPlaced):
            after = ",".join(c.value for c in cmd.categories)
            done.audit.append(AuditStep("legal_hold_placed", after=after, reason=cmd.hold_id))
        else:
            done.audit.append(
                AuditStep("legal_hold_released", after=cmd.hold_id, reason=cmd.hold_id)
            )
        return done
    if _hold_applied(cmd, ctx):
        return done
    if placing:
        raise Refused(Reason.duplicate, f"hold {cmd.hold_id} is already placed")
    raise Refused(Reason.unknown_request, f"no active hold {cmd.hold_id}")


def _told(states: list[Out]) -> str:
    """For the DPO: which systems were sent the hold (their connectors apply it; privops
    does not learn that they did), and which hold the categories but could not be, as
    privops knows no identifier they look the subject up by: those the DPO tells."""
    sent = sorted(o.topic.removeprefix(LEGAL_HOLDS_PREFIX) for o in states if o.record)
    unsent = sorted(o.topic.removeprefix(LEGAL_HOLDS_PREFIX) for o in states if not o.record)
    words = []
    if sent:
        words.append(
            f"hold records written for {', '.join(sent)} (their connectors keep it from "
            "deletion by age; privops does not confirm they do)"
        )
    if unsent:
        words.append(
            f"not sent to {', '.join(unsent)}: privops knows no identifier they find the "
            "subject by; tell them by hand (it reaches them when privops learns one)"
        )
    return "; ".join(words)


def _hold_applied(cmd: r.LegalHoldPlaced | r.LegalHoldReleased, ctx: Context) -> bool:
    """The holds show this very command's effect: it is a redelivery."""
    if isinstance(cmd, r.LegalHoldPlaced):
        return any(h.hold_id == cmd.hold_id and h.placed_at == cmd.issued_at for h in ctx.holds)
    return any(h.hold_id == cmd.hold_id and h.released_at == cmd.issued_at for h in ctx.holds)


# --- timers -------------------------------------------------------------------------------


def on_response_closed(rec: RequestRecord, ctx: Context) -> Outcome:
    """A response of ``rec``'s subject closed: ``rec``, an erasure waiting for the
    subject's responses (``response_first``), sends its work once each it waits for
    closed without copies."""
    if not response_first.waiting(rec):
        return Outcome(record=None)
    rec = rec.editable_copy()
    out = Outcome(record=rec)
    return out if _resume(rec, ctx, out) else Outcome(record=None)


def _resume(rec: RequestRecord, ctx: Context, out: Outcome, *, why: str | None = None) -> bool:
    """``rec``, a waiting erasure, forgets the responses that closed without copies, and
    once none is left, or whatever it waits for once ``why`` says (its day came; the DPO
    released it), sends its work, planned from what the systems hold now. Whether the
    record changed. What it waited for stays on the record once its work went out
    (``response_first.erased_from``: a response still to go out says so)."""
    if why is None:
        still = response_first.still_waits_for(rec, ctx)
        if still == rec.waits_for:
            return False
        rec.waits_for = still
        if still:
            return True
        why = response_first.RESUMED
    out.audit.append(AuditStep("erasure_resumed", after=rec.state.value, reason=why))
    start_work(rec, ctx, out)
    return True


def on_tick(rec: RequestRecord | None, tick: Tick, ctx: Context) -> Outcome:
    """A timer's finding: an overdue task answer, a deadline stage, a follow-up, the end
    of a finished request's kept time. An erasure waiting for the subject's responses
    waits no longer once its day came (its ``erase_on``; the follow-up timer wakes it
    then, ``pending_followups``)."""
    if rec is None:
        return Outcome(record=None)
    rec = rec.editable_copy()
    out = Outcome(record=rec)
    timelimits.settle_old_pause(rec, ctx, out)
    if response_first.waiting(rec) and response_first.day_came(rec, ctx):
        _resume(rec, ctx, out, why=response_first.DAY_CAME)
    if tick.kind is TickKind.task_overdue:
        task = rec.tasks.get(tick.task_id or "")
        if task is not None:
            retries.on_overdue(rec, task, ctx, out)
    elif tick.kind is TickKind.deadline_approaching or tick.kind is TickKind.deadline_breached:
        timelimits.raise_deadline_alert(rec, tick, ctx, out)
    elif tick.kind is TickKind.followup:
        if _followups(rec, ctx, out):
            return out  # looked at again: kept, so the next look is scheduled from it
    elif tick.kind is TickKind.record_expired:
        return _expired(rec, ctx)
    else:
        assert_never(tick.kind)
    return out if out.out or out.audit else Outcome(record=None)


def _followups(rec: RequestRecord, ctx: Context, out: Outcome) -> bool:
    """Retention ended: ask for a follow-up erasure as a new request (re-planned then).
    Whether what ``rec`` keeps with no end date was looked at again (``review_retention``).

    One follow-up erasure at most: it re-plans everything of the subject still kept and
    schedules its own follow-ups, so it takes over every other of ``rec``'s, due or not.
    Before, each due item was a request of its own, and a later dated one ran again
    beside the child's own for the same data (two erasures of the subject at that date;
    session 24's note)."""
    reviewed = review_retention(rec, ctx, out)
    due = [(i, f) for i, f in enumerate(rec.followups) if f.waiting and f.due_at <= ctx.now]
    if not due:
        return reviewed
    child = _child_id(rec, due[0][0])
    due[0][1].issued = True
    for item in rec.followups:
        if item.waiting:
            item.superseded_by = child
    ended = "; ".join(
        f"{f.system.value}: " + ", ".join(c.value for c in f.categories) for _, f in due
    )
    cmd = r.RequestSubmitted(
        command_id=_id(child, "submitted"),
        request_id=child,
        issued_at=ctx.now,
        actor=SCHEDULER,
        request_type=RequestType.erasure,
        subject_id=rec.subject_id,
        received_on=ctx.today,
        identity_verified_on=ctx.today,
        linked_request_id=rec.request_id,
        reason=f"retention ended for {ended}",
    )
    out.out.append(Out(COMMANDS, rec.subject_id, cmd))
    out.audit.append(
        AuditStep(
            "request_received", after="followup_scheduled", reason=f"follow-up erasure {child}"
        )
    )
    return reviewed


def _child_id(rec: RequestRecord, index: int) -> str:
    """The request id of the follow-up erasure ``rec.followups[index]`` issues."""
    return f"{rec.request_id}-F{index + 1}"


def followup_parent(cmd: r.Command) -> str | None:
    """The request to look up for ``on_command``'s ``parent``: the one a command the
    worker signed names as having issued it; None for a DPO's command."""
    if cmd.actor == SCHEDULER and isinstance(cmd, r.RequestSubmitted):
        return cmd.linked_request_id
    return None


def issued_followup(parent: RequestRecord | None, cmd: r.Command) -> bool:
    """Whether ``cmd`` is the very follow-up erasure ``parent`` issued (``_followups``):
    its child request id, command id and subject, linked to ``parent``, verified the day
    it was received, and nothing else set. The worker's key is derived from the audit
    key, which the DPO's audit tools hold too (and which revoking no signer takes away):
    anything else it signs proves nothing. Before, its other fields went unchecked, and
    a copy signed with that key, without the identity day or made by a "representative",
    taken before the worker's own, left the follow-up waiting for ever (review, session
    44)."""
    if parent is None or not isinstance(cmd, r.RequestSubmitted):
        return False
    issued = {_child_id(parent, i) for i, item in enumerate(parent.followups) if item.issued}
    return (
        cmd.request_id in issued
        and cmd.command_id == _id(cmd.request_id, "submitted")
        and cmd.request_type is RequestType.erasure
        and cmd.subject_id == parent.subject_id
        and cmd.linked_request_id == parent.request_id
        and cmd.identity_verified_on == cmd.received_on
        and all(
            getattr(cmd, name) == info.get_default(call_default_factory=True)
            for name, info in r.RequestSubmitted.model_fields.items()
            if name not in _FOLLOWUP_FIELDS
        )
    )


_FOLLOWUP_FIELDS: Final = frozenset(
    {
        *r.Command.model_fields,
        "request_type",
        "subject_id",
        "received_on",
        "identity_verified_on",
        "linked_request_id",
        "reason",
    }
)
"""What a follow-up erasure the worker issues sets (``_followups``); every other field of
``RequestSubmitted`` is left at its default."""


def pending_followups(rec: RequestRecord) -> list[datetime]:
    """When a follow-up tick is due: each follow-up erasure not issued yet, the next
    try of a completed erasure's deferred leftovers (privops.core.shredding), and the
    next look at what it keeps with no end date (``review_retention``), the day a waiting
    erasure's work goes out (``response_first``)."""
    due = [f.due_at for f in rec.followups if f.waiting]
    wake = response_first.wake_at(rec)
    if wake is not None:
        due.append(wake)
    retry = shredding.retry_at(rec)
    if retry is not None:
        due.append(retry)
    elif open_ended(rec) and not shredding.pending(rec):  # reviewed once the shred is done
        due.append(next_review(rec))
    return due


def next_review(rec: RequestRecord) -> datetime:
    """When a closed erasure looks again at what it keeps with no end date."""
    return (rec.retention_reviewed_at or rec.closed_at or rec.created_at) + RETENTION_REVIEW


# How often a closed erasure that keeps data with no end date looks at it again.
RETENTION_REVIEW: Final = timedelta(days=1)


def open_ended(rec: RequestRecord) -> list[tuple[System, Category]]:
    """(system, category) a closed erasure's plan keeps with no end date (a legal hold,
    an open credit account or debt, an open investigation) that no follow-up covers yet.

    Only privops' own grounds (the tasks' ``keep``): a system answering that it keeps
    something for reasons of its own is the DPO's to look at, not re-planned here. None
    once a follow-up erasure was issued: it re-plans everything still kept, and looks
    after its own."""
    if rec.request_type is not RequestType.erasure or rec.open:
        return []
    if any(f.issued for f in rec.followups):
        return []
    covered = {(f.system, c) for f in rec.followups for c in f.categories}
    kept = {
        (k.system, k.category)
        for task in rec.tasks.values()
        if task.action is TaskAction.erase and task.state in FINAL_TASK_STATES
        for k in task.keep
        if k.until is None
    }
    return sorted(kept - covered, key=lambda sc: (sc[0].value, sc[1].value))


def review_retention(rec: RequestRecord, ctx: Context, out: Outcome) -> bool:
    """Look again at what ``rec`` keeps with no end date, from the subject's holds and
    facts as they are now: a ground that ended gets its follow-up erasure now, one that
    now has an end date (a debt settled, an investigation concluded) gets it then. Before,
    such data was kept for ever: only dated retentions were followed up (DESIGN.md
    section 5: "retained data gets a scheduled follow-up erasure when its retention
    ends"; review, session 24)."""
    items = open_ended(rec)
    if not items or shredding.pending(rec) or ctx.now < next_review(rec):
        return False  # not yet (a deferred shred's retries and other ticks come sooner)
    holds = erasure.active_holds(rec.subject_id, ctx.holds, ctx.now)
    ends: dict[tuple[System, datetime], list[Category]] = {}
    for system, category in items:
        kept = erasure.retention_of(category, ctx.datamap, holds, ctx.facts, ctx.now)
        if kept is not None and kept.until is None:
            continue  # still no end
        due = ctx.now if kept is None or kept.until is None else kept.until
        ends.setdefault((system, due), []).append(category)
    for (system, due), categories in sorted(ends.items(), key=lambda e: (e[0][1], e[0][0].value)):
        rec.followups.append(FollowupItem(system=system, categories=categories, due_at=due))
        out.audit.append(
            AuditStep(
                "request_transitioned",
                after="followup_scheduled",
                reason=f"retention of {', '.join(c.value for c in categories)} at "
                f"{system.value} ends {due.date().isoformat()}",
            )
        )
    rec.retention_reviewed_at = ctx.now
    return True


# --- how long privops keeps its own record of a request -----------------------------------


def finished_at(rec: RequestRecord) -> datetime | None:
    """When privops' work on ``rec`` ended: it is closed, each follow-up erasure it
    scheduled was issued (a request of its own from then on), nothing it keeps with no
    end date is still looked at again (``review_retention``), and its subject's own
    copies are erased (``shredding.pending``); or later, the last command it answered
    (a command is acted on within ``admission.MAX_COMMAND_AGE`` of its signature, far
    less than the shortest period kept: a redelivery never finds the record gone and
    starts the request again). None while any of that is to come."""
    if rec.open or pending_followups(rec) or shredding.pending(rec):
        return None
    times = [rec.closed_at or rec.created_at, *(f.due_at for f in rec.followups if f.issued)]
    times += [a.at for a in rec.answered if a.at is not None]
    if rec.retention_reviewed_at is not None:
        times.append(rec.retention_reviewed_at)
    return max(times)


def expires_on(rec: RequestRecord, days: int) -> date | None:
    """The UK day from which ``rec``'s record is deleted: ``days`` (the data map's
    ``request_records.period_days``) after it finished; None while it is not finished."""
    finished = finished_at(rec)
    return None if finished is None else _expiry_day(finished, days)


def _expiry_day(finished: datetime, days: int) -> date:
    return finished.astimezone(UK).date() + timedelta(days=days)


HELD_RECHECK: Final = timedelta(days=1)
"""How soon a record kept past its day (a legal hold on its subject, an open request
linking to it) is looked at again."""


def _expired(rec: RequestRecord, ctx: Context) -> Outcome:
    """A finished request's kept time ended: its record is deleted (``Outcome.forget``,
    audited: the audit trail keeps that it existed), unless a legal hold on its subject
    keeps it, or an open request links to it (``Context.referenced``: a complaint about
    it is answered from it), or it is a restriction in force (from 0.45), then looked at
    again a day later. Nothing when its day has
    not come (the request changed since it was scheduled: its new day is scheduled)."""
    days = ctx.datamap.request_records.period_days
    finished = finished_at(rec)
    if finished is None or ctx.today < _expiry_day(finished, days):
        return Outcome(record=None)
    if ctx.referenced or erasure.active_holds(rec.subject_id, ctx.holds, ctx.now):
        return Outcome(record=None, recheck_on=ctx.today + HELD_RECHECK)
    if _restriction_standing(rec, ctx):
        return Outcome(record=None, recheck_on=ctx.today + HELD_RECHECK)
    reason = (
        f"finished {finished.astimezone(UK).date().isoformat()}; kept {days} days "
        "(data map request_records.period_days)"
    )
    step = AuditStep(RECORD_DELETED, before=rec.state.value, reason=reason)
    return Outcome(record=None, forget=True, audit=[step])


def _restriction_standing(rec: RequestRecord, ctx: Context) -> bool:
    """Whether ``rec`` is a restriction still in force for a subject not erased: kept
    until a lift ends it. Forgotten by the record period, a lift of another took that one
    for the last and lifted both (review, session 45)."""
    if rec.request_type is not RequestType.restriction:
        return False
    if ctx.consent is not None and ctx.consent.suppressed:
        return False
    return rec.request_id in restrictions_in_force(ctx)


RECORD_DELETED: Final = "request_record_deleted"
