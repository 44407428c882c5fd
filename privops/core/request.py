"""The stored request and what a decision on it sees and returns.

``RequestRecord`` is what the worker keeps per request in its ``requests`` table (as
JSON): its lifecycle state, its deadline clock, each system's task and the answers given
to the last commands (so a redelivered command gets the same answer). ``Context`` is
everything else a decision may look at; ``Outcome`` is what a decision returns: the new
record plus what to publish, what to audit and the answer to the command. ``Reason`` is
every code a rejection may carry. The few edits every decision makes (a lifecycle move,
a notice to the subject, a directive) sit at the end; nothing here decides anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from privops.core import erasure
from privops.core import records as r
from privops.core.consent.model import SubjectConsent
from privops.core.datamap import DataMap
from privops.core.deadlines import DEFAULT_COMPLAINT_ACK_DAYS, Pause
from privops.core.errors import PrivopsError
from privops.core.identity import IdentityMap
from privops.core.lifecycle import IDENTITY_REQUIRED, LifecycleEvent, transition
from privops.core.sweep import Alerted
from privops.core.topics import (
    NOTIFICATIONS,
    SUBJECT_DIRECTIVES,
    legal_holds_topic,
    preservation_key,
)
from privops.core.vocab import (
    TERMINAL_STATES,
    Capacity,
    Category,
    Channel,
    ObjectionScope,
    Purpose,
    RefusalGround,
    RequestState,
    RequestType,
    System,
    TaskAction,
    TaskState,
)


class Reason(StrEnum):
    """Why a command (or a system's answer) was rejected: stable codes the CLI and metrics use."""

    invalid_command = "invalid_command"
    unknown_subject = "unknown_subject"
    unknown_request = "unknown_request"
    unknown_task = "unknown_task"
    duplicate = "duplicate"
    invalid_transition = "invalid_transition"
    request_finished = "request_finished"
    not_restricted = "not_restricted"
    # A lift naming no restriction while the subject has several in force (from 0.45).
    restriction_not_named = "restriction_not_named"
    already_extended = "already_extended"
    dates_out_of_order = "dates_out_of_order"
    # Who issued the command (privops.core.signing): checked before anything else.
    unsigned = "unsigned"
    unknown_signer = "unknown_signer"
    revoked_key = "revoked_key"
    bad_signature = "bad_signature"
    unbound_signature = "unbound_signature"
    signer_mismatch = "signer_mismatch"
    # Where it travelled (DESIGN.md section 4): a command is keyed by its subject's id.
    wrong_key = "wrong_key"


class Refused(PrivopsError):
    """A rule refused the command; raised anywhere inside a decision, answered as a rejection.

    Decisions work on a copy of the record and collect their output, so raising this at
    any depth leaves nothing behind: the command is rejected whole, never half-applied.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


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
    previous_identifiers: dict[str, list[str]] = {}
    categories: list[Category] = []
    keep: list[KeptItem] = []
    changes: dict[str, str] = {}
    answered_at: datetime | None = None
    outcome_reason: str | None = None
    export: r.ExportReference | None = None
    # An upheld legitimate-interest objection's purposes this system stops (its Restrict
    # says them at every send; worked out once, from the data map of the decision).
    objected_purposes: list[str] = []
    # ``export`` is the DPO's redacted copy, not the system's (``workflow._export_redacted``),
    # which is kept in ``original_export`` (sealed as ``export`` is).
    redacted: bool = False
    original_export: r.ExportReference | None = None
    # The attempt whose "retry later" set ``next_check_at`` (``retries.retry_later``):
    # another "not now" to that attempt moves nothing (from 0.43). Left out while None,
    # so a record without one reads in 0.42 (a rollback).
    backed_off: int | None = Field(default=None, exclude_if=lambda value: value is None)


class HistoryItem(_Model):
    at: datetime
    event: str
    state: RequestState


class FollowupItem(_Model):
    system: System
    categories: list[Category]
    due_at: datetime
    issued: bool = False
    # The follow-up erasure that took this one over: it re-plans everything still kept
    # (and schedules its own follow-ups), so this one is never issued (workflow._followups).
    superseded_by: str | None = None

    @property
    def waiting(self) -> bool:
        return not self.issued and self.superseded_by is None


class Leftovers(_Model):
    """A completed erasure's leftovers, decided while ``main`` still opens what it keeps
    and stored before any key is destroyed (privops.core.shredding: ``planned``, then
    ``done``): the keys to destroy, the audit step that will say so, and what is kept
    sealed under the storage scope, so that destroying them again after a crash or a
    dropped flush needs nothing ``main`` sealed and audits the very same step."""

    key_ids: list[str]
    # The audit step: its cause and date are the deciding input's, its reason the summary.
    cause: str
    at: datetime
    reason: str
    # Closed requests of the subject cleared so far (the summary counts them).
    cleared: int = 0
    # Table name -> the kept value as the table stores it, sealed (privops.core.sealing).
    kept: dict[str, Any] = {}


class Answered(_Model):
    """The answer given to one command: `reason` None is accepted."""

    command_id: str
    reason: Reason | None = None
    message: str | None = None
    # When it was answered (the worker's clock; None: stored by an earlier version). A
    # finished request's record is kept from its last answer too (workflow.finished_at),
    # so no command it answered can still be acted on once the record is gone.
    at: datetime | None = None


MAX_REMEMBERED_ANSWERS: Final = 32
"""Redelivery repeats the last few commands, not old ones; this bounds the record's size."""
MAX_ANSWER_MESSAGE: Final = 300


def _empty(value: object) -> bool:
    """Whether a field is left out of the stored record: so a record without what a
    release added reads in the release before (a rollback)."""
    return not value


class RequestRecord(_Model):
    request_id: str
    request_type: RequestType
    subject_id: str
    actor: str
    state: RequestState
    received_on: date
    identity_verified_on: date | None = None
    # The day the identity information arrived; the clock starts then (deadlines.clock_start).
    identity_received_on: date | None = None
    fee_received_on: date | None = None
    clock_start: date | None = None
    due_on: date | None = None
    # Clarification periods that ended; `paused_days` is how far they moved the month's
    # end (deadlines.CountedPause.moves: the days that counted, and from 0.43 for one
    # begun after that end, while the due date was rolled, the days up to it).
    pauses: list[Pause] = []
    paused_days: int = 0
    clarification_asked_on: date | None = None
    extended: bool = False
    extension_reason: str | None = None
    # The day the subject was told of the extension (checked again when a pause ends).
    extension_notified_on: date | None = None
    deadline_alerted: Alerted | None = None
    # Complaints: the day the acknowledgement went out (no deadline alert after it).
    acknowledged_on: date | None = None
    rectification: dict[str, str] = {}
    # An access request's search details (privops.core.search), for the systems searched
    # by them; sealed as the rectification's values are. Not written when empty, so a
    # record without them reads in a release of before 0.36 (a rollback).
    search: dict[str, str] = Field(default_factory=dict, exclude_if=_empty)
    # The systems told to keep what the search finds from their deletion by age until
    # the request is finished (``fanout.preserve_search``); not written when empty.
    preserved: list[System] = Field(default_factory=list, exclude_if=_empty)
    # A portability request's "send the copies to ..." (UK GDPR Art. 20(2); from 0.40):
    # the subject's words, sealed as the DPO's free text is; not written when None.
    send_to: str | None = Field(default=None, exclude_if=_empty)
    # Made for the subject by a representative (from 0.41): who and how to reach them,
    # sealed as the DPO's free text is; in what capacity; the day the evidence of their
    # authority arrived. None of them written when None.
    representative: str | None = Field(default=None, exclude_if=_empty)
    capacity: Capacity | None = Field(default=None, exclude_if=_empty)
    authority_received_on: date | None = Field(default=None, exclude_if=_empty)
    # An erasure that waits for the subject's access or portability responses to go out
    # first (``privops.core.response_first``; from 0.42): their request ids (kept once its
    # work went out: a response still to go out says the erasure came first), and the day
    # its work goes out at the latest, told to the subject. Not written when empty.
    waits_for: list[str] = Field(default_factory=list, exclude_if=_empty)
    erase_on: date | None = Field(default=None, exclude_if=_empty)
    # A refused request's ground (from 0.37): kept when an erasure scrubs the DPO's
    # letter (``reason``), so the controller can still show why; not written when None.
    refusal_ground: RefusalGround | None = Field(default=None, exclude_if=_empty)
    objection_scope: ObjectionScope | None = None
    # A legitimate-interest objection the DPO upheld: the purposes processing stops for.
    objected_purposes: list[str] = []
    # A consent withdrawal's scope (None: every purpose, every channel).
    withdrawn_purpose: Purpose | None = None
    withdrawn_channel: Channel | None = None
    linked_request_id: str | None = None
    # A lift that ended one of the subject's restrictions while others stand (from
    # 0.45): those, by request id; nothing was lifted (``fanout.start_work``).
    still_restricted_by: list[str] = Field(default_factory=list, exclude_if=_empty)
    reason: str | None = None
    tasks: dict[str, TaskRecord] = {}
    kept: list[KeptItem] = []
    followups: list[FollowupItem] = []
    history: list[HistoryItem] = []
    manifest: dict[str, Any] | None = None
    answered: list[Answered] = []
    created_at: datetime
    closed_at: datetime | None = None
    # A closed erasure keeping data with no end date (a legal hold, an open debt or
    # investigation): when it was last looked at again (``workflow.review_retention``).
    retention_reviewed_at: datetime | None = None
    # A completed erasure whose keys are decided but not destroyed yet (``Leftovers``).
    leftovers: Leftovers | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade_legacy_fields(cls, data: Any) -> Any:
        """Read records stored by earlier versions.

        `deadline_stage` (before alerts were keyed by offset) is dropped rather than
        translated: at worst the current stage's alert is raised once more after the
        upgrade, which is better than refusing to load. `commands_seen` (before commands
        were answered) held only commands that were applied, so each was accepted.
        """
        if not isinstance(data, dict) or not {"deadline_stage", "commands_seen"} & set(data):
            return data
        seen = data.get("commands_seen") or []
        data = {k: v for k, v in data.items() if k not in ("deadline_stage", "commands_seen")}
        data.setdefault("answered", [{"command_id": c} for c in seen][-MAX_REMEMBERED_ANSWERS:])
        return data

    def editable_copy(self) -> RequestRecord:
        """A deep copy a decision may edit (decisions never edit the record they are
        given). Dumped and validated again in pydantic's core: 76 µs against 352 µs for
        ``model_copy(deep=True)``'s Python deepcopy, for an erasure to five systems."""
        return RequestRecord.model_validate(self.model_dump())

    def answer_to(self, command_id: str) -> Answered | None:
        return next((a for a in self.answered if a.command_id == command_id), None)

    def remember(
        self, command_id: str, reason: Reason | None, message: str | None, at: datetime
    ) -> None:
        """Keep the answer to `command_id`, given `at`, among the last few, for its
        redelivery. Past the bound the oldest rejection goes first: 32 rejections (a
        script retrying a bad command) pushed out an accepted command's answer, and that
        command, put on the topic again within its 14 days, was acted on again: a
        clarification asked again, a deadline moved again (review, session 44)."""
        note = Answered(
            command_id=command_id,
            reason=reason,
            message=message[:MAX_ANSWER_MESSAGE] if message else None,
            at=at,
        )
        kept = [*self.answered, note]
        while len(kept) > MAX_REMEMBERED_ANSWERS:
            refused = next((i for i, a in enumerate(kept) if a.reason is not None), 0)
            del kept[refused]
        self.answered = kept

    @property
    def open(self) -> bool:
        return self.state not in TERMINAL_STATES

    @property
    def authority_required(self) -> bool:
        """Made by a representative, and of a type that changes or discloses data: the
        work waits for the evidence of their authority, as it waits for the identity."""
        return self.capacity is not None and self.request_type in IDENTITY_REQUIRED

    @property
    def awaiting_authority(self) -> bool:
        return self.authority_required and self.authority_received_on is None


FOLLOWUP_ACTOR: Final = "privops-scheduler"
"""The actor of the follow-up erasures the worker issues itself (workflow.SCHEDULER)."""


def _no_requests() -> Sequence[RequestRecord]:
    return ()


@dataclass(frozen=True)
class Context:
    """Everything a decision may look at besides the request itself."""

    now: datetime
    today: date
    datamap: DataMap
    subject_ref: str
    identity: IdentityMap | None = None
    known_subject: bool = True
    # An active restriction on the subject (the consent state's flag): a lift needs one.
    restricted: bool = False
    # The subject's consent state (an access response lists privops' own records).
    consent: SubjectConsent | None = None
    facts: erasure.SubjectFacts = field(default_factory=erasure.SubjectFacts)
    holds: tuple[erasure.LegalHold, ...] = ()
    complaint_ack_days: int = DEFAULT_COMPLAINT_ACK_DAYS
    # How far ``now`` is shifted from the wall clock (settings.clock_offset_days: demos,
    # deadline tests); a command's issued_at is the signer's wall clock.
    clock_offset: timedelta = timedelta(0)
    # An open request of the subject links to the request decided on (a complaint about
    # it, a follow-up erasure it issued): its record is kept (``workflow.expires_on``).
    referenced: bool = False
    # The records privops keeps of the subject's requests, this one included: read only
    # when an access response is built, an erasure is about to send its work, or an access
    # or portability response closed (``privops.core.response_first``; each record is
    # loaded and opened), so no other decision pays for it.
    subject_requests: Callable[[], Sequence[RequestRecord]] = _no_requests

    def holds_anything_besides(self, request_id: str) -> bool:
        """Whether privops holds anything of the subject besides the request
        ``request_id``: what systems reported (``known_subject``), or the record of
        another request of theirs (a search for them in footage, a complaint). Someone
        it holds nothing of is told so, with no key made for them; someone whose
        earlier request it keeps is told what it keeps (review, session 36: a visitor
        who asked again was told "nothing" while their earlier request was kept)."""
        if self.known_subject:
            return True
        return any(other.request_id != request_id for other in self.subject_requests())


@dataclass(frozen=True)
class AuditStep:
    action: str
    before: str | None = None
    after: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Out:
    """A record to send with the decision; ``record`` None is a tombstone (a compacted
    topic's "nothing under this key any more")."""

    topic: str
    key: str
    record: r.Record | None


@dataclass
class Outcome:
    """The result of one decision. ``record`` None means: nothing to store.

    ``answer`` is the command's answer for privacy.command-results (None for a system's
    answer or a tick); ``out`` holds only effects, so a rejection's ``out`` is empty.
    ``rejected`` is set when this decision rejected something (audited and counted); a
    redelivered command's repeated answer is not a new rejection. ``holds``: the
    subject's legal holds once a hold command changed them (to store), else None.
    ``forget``: the request's record is deleted (its kept time ended:
    ``workflow.expires_on``); ``recheck_on``: the day its expiry is looked at again (a
    legal hold keeps it meanwhile).
    """

    record: RequestRecord | None
    audit: list[AuditStep] = field(default_factory=list)
    out: list[Out] = field(default_factory=list)
    rejected: Reason | None = None
    message: str | None = None
    answer: r.CommandAnswer | None = None
    holds: tuple[erasure.LegalHold, ...] | None = None
    forget: bool = False
    recheck_on: date | None = None


def reject(reason: Reason, message: str) -> Outcome:
    return Outcome(
        record=None,
        audit=[AuditStep("command_rejected", reason=f"{reason}: {message}")],
        rejected=reason,
        message=message,
    )


def stable_id(*parts: object) -> str:
    """A deterministic id for something a decision publishes, so a replay publishes the same."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


# --- edits every decision makes ------------------------------------------------------


def move(rec: RequestRecord, event: LifecycleEvent, out: Outcome, now: datetime) -> None:
    before = rec.state
    rec.state = transition(rec.state, event, request_type=rec.request_type)
    rec.history.append(HistoryItem(at=now, event=event.value, state=rec.state))
    out.audit.append(
        AuditStep("request_transitioned", before=before.value, after=rec.state.value, reason=event)
    )
    if rec.state in TERMINAL_STATES:
        rec.closed_at = now
        # Search details serve the search (and its re-sends) only: not kept once it is
        # done, for the years the record is (privops.core.search); nor what it found kept
        # from the systems' deletion by age.
        rec.search = {}
        end_preservation(rec, out)


def end_preservation(rec: RequestRecord, out: Outcome) -> None:
    """Tell each system that keeps what ``rec``'s search finds (``fanout.preserve_search``)
    that it need keep it no longer: a tombstone under the request's preservation key.
    Nothing when none does."""
    if not rec.preserved:
        return
    key = preservation_key(rec.request_id)
    out.out.extend(Out(legal_holds_topic(system), key, None) for system in rec.preserved)
    out.audit.append(AuditStep("search_released", before=", ".join(rec.preserved)))
    rec.preserved = []


FOR_REPRESENTATIVE: Final = (
    "This answers the request you made on behalf of the person it is about; below, "
    '"you" and "your" mean them.\n\n'
)
"""The first words of a notice that goes to a representative (``notify_subject``)."""
# The first words of a notice about a representative's request that goes to the subject:
# their authority not shown (MADE_IN_YOUR_NAME), or shown but their details not kept
# (MADE_FOR_YOU). The fact the subject needs first (review, session 41).
MADE_IN_YOUR_NAME: Final = (
    "Someone made this request in your name and has not yet shown us that they may act "
    "for you, so we tell you, not them. Below, we answer it as if you had made it: tell "
    "us if you did not want it.\n\n"
)
MADE_FOR_YOU: Final = (
    "This answers a request someone made for you; we do not hold their address, so we tell you.\n\n"
)


def answers_representative(rec: RequestRecord) -> bool:
    """Whether the notices about ``rec`` go to the representative who made it: once the
    evidence of their authority is recorded, and while their address is kept. Before,
    they go to the subject, as Art. 12 has it: telling someone not shown to be entitled
    that the subject is a customer, what became of their objection or the DPO's answer
    to a complaint made in their name, discloses the subject's data (review, session
    41). A request that changes or discloses data does nothing before it anyway."""
    return rec.representative is not None and rec.authority_received_on is not None


def notify_subject(
    rec: RequestRecord, out: Outcome, ctx: Context, kind: str, message: str, **extra: Any
) -> None:
    """Tell the subject ``message`` (a notice of ``kind``), or the representative who
    made the request for them (``answers_representative``). A notice about a
    representative's request opens with whom it is for and why (``FOR_REPRESENTATIVE``,
    ``MADE_IN_YOUR_NAME``, ``MADE_FOR_YOU``); the audit step names the reader."""
    to = rec.representative if answers_representative(rec) else None
    if to is not None:
        lead = FOR_REPRESENTATIVE
    elif rec.capacity is None:
        lead = ""
    else:
        lead = MADE_FOR_YOU if rec.authority_received_on else MADE_IN_YOUR_NAME
    note = r.SubjectNotification(
        notification_id=stable_id(rec.request_id, kind, len(rec.history)),
        request_id=rec.request_id,
        issued_at=ctx.now,
        subject_id=rec.subject_id,
        kind=kind,
        message=lead + message,
        representative=to,
        **extra,
    )
    out.out.append(Out(NOTIFICATIONS, rec.subject_id, note))
    whom = "representative" if to is not None else "subject"
    out.audit.append(AuditStep("notification_sent", after=kind, reason=whom))


def directive(
    rec: RequestRecord,
    out: Outcome,
    ctx: Context,
    kind: str,
    purpose: Purpose | None = None,
    channel: Channel | None = None,
) -> None:
    directive = r.SubjectDirective(
        directive_id=stable_id(rec.request_id, kind),
        subject_id=rec.subject_id,
        request_id=rec.request_id,
        kind=kind,
        purpose=purpose,
        channel=channel,
        occurred_at=ctx.now,
    )
    out.out.append(Out(SUBJECT_DIRECTIVES, rec.subject_id, directive))
