"""Pydantic models for every record on privops' topics.

The models are the typed Python view of the Avro contract in ``schemas/``: the .avsc
files are generated from them (``privops schemas generate``), committed, versioned,
and checked BACKWARD-compatible by the tests. ``ALL_RECORDS`` lists every record with a
schema; nothing else is ever written to a privops topic.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from math import ceil
from typing import Annotated, ClassVar, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from privops.core.fieldcrypt import (
    KEY_NONCE_BYTES,
    MAX_SUBJECT_ID_CHARS,
    NONCE_BYTES,
    PREFIX,
    TAG_BYTES,
    check_subject_id,
)
from privops.core.personal import PERSONAL
from privops.core.pii import recorded_as_contact
from privops.core.vocab import (
    Capacity,
    Category,
    Channel,
    FeeGround,
    LawfulBasis,
    ObjectionScope,
    Purpose,
    RefusalGround,
    RequestState,
    RequestType,
    System,
    TaskAction,
)

_HEX64 = r"^[0-9a-f]{64}$"

SubjectId = Annotated[str, AfterValidator(check_subject_id)]
"""A subject id as every topic carries it: 1 to 256 printable characters (the key
service's own rule, so a record it would refuse a key for never gets in)."""

MAX_REF_CHARS: Final = 128
"""The longest system reference privops keeps in a subject's state (an investigation
id, a recipient's reference): as long as a request id may be (admission.MAX_ID_LENGTH).
Each event's record fits Kafka's limit, but what the subject-facts table keeps of many
events did not: two InvestigationOpened with 600 kB ids made a changelog record over
1 MiB, which the broker refused, stopping the worker on every restart (review, session
25). Avro cannot bound a string, so the models do; a longer one is refused at decoding
(``invalid_record``)."""

# A key id is <subject id>/<scope of at most 64>/<nonce> (fieldcrypt.make_key_id).
_MAX_KEY_ID_CHARS: Final = MAX_SUBJECT_ID_CHARS + 1 + 64 + 1 + 2 * KEY_NONCE_BYTES
_MAX_SEALED_REF_CHARS: Final = (
    len(PREFIX)
    + _MAX_KEY_ID_CHARS
    + 1
    + ceil((NONCE_BYTES + 4 * MAX_REF_CHARS + TAG_BYTES) / 3) * 4
)
"""The longest ciphertext of a reference within the bound (4 UTF-8 bytes a character)."""


def check_ref(value: str) -> str:
    """``value`` if it is 1 to MAX_REF_CHARS printable characters; else ValueError
    (not quoting it: a recipient's reference is personal data)."""
    if not 0 < len(value) <= MAX_REF_CHARS or not value.isprintable():
        raise ValueError(
            f"a reference is 1 to {MAX_REF_CHARS} printable characters (this one has {len(value)})"
        )
    return value


def check_personal_ref(value: str | None) -> str | None:
    """``check_ref`` for a personal field, which arrives as its ciphertext: a ciphertext
    only as long as one of a reference within the bound can be (its plaintext is checked
    again once opened, as every opened record is validated again). Empty means none."""
    if not value:
        return value
    if value.startswith(PREFIX):
        if len(value) > _MAX_SEALED_REF_CHARS:
            raise ValueError(
                f"an encrypted reference is at most {_MAX_SEALED_REF_CHARS} characters "
                f"(this one has {len(value)})"
            )
        return value
    return check_ref(value)


Ref = Annotated[str, AfterValidator(check_ref)]
"""A system's reference that privops keeps in a subject's state (``MAX_REF_CHARS``)."""

MAX_COMMAND_ID_CHARS: Final = 256
"""The longest id a command may name (its request's, a linked request's, a hold's):
twice admission.MAX_ID_LENGTH, so an id stored before that rule still reads. An
unsigned command is answered before its names are checked, its ids copied into the
answer: one 600 kB request id, sent with no key by anyone who may write the topic, made
an answer over Kafka's limit, and the failed flush stopped every worker that took the
partition (review, session 44)."""

_PLAIN_COMMAND_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""A command's own id, as the CLI (a UUID) and the worker (``request.stable_id``) make
it: kept as a partition's answers' key (``workflow.CommandAnswers``), whose 1,000 answers
stay under Kafka's limit only with ids this short."""


def check_command_id(value: str) -> str:
    """``value`` if it is at most MAX_COMMAND_ID_CHARS long; else ValueError."""
    if len(value) > MAX_COMMAND_ID_CHARS:
        raise ValueError(
            f"an id is at most {MAX_COMMAND_ID_CHARS} characters (this one has {len(value)})"
        )
    return value


def check_own_command_id(value: str) -> str:
    """``value`` if it is 1 to 128 letters, digits, '.', '_', ':' or '-'; else ValueError."""
    if _PLAIN_COMMAND_ID.fullmatch(value) is None:
        raise ValueError(
            "a command id is 1 to 128 letters, digits, '.', '_', ':' or '-' (a UUID, as "
            f"the CLI makes it; this one has {len(value)} characters)"
        )
    return value


CommandId = Annotated[str, AfterValidator(check_command_id)]


class Record(BaseModel):
    """A record with an Avro schema. ``namespace`` + class name = the Avro full name.

    A validation error never quotes the value it refused (``hide_input_in_errors``, as
    the state models: identity, consent, facts, requests, holds): its text reaches logs
    and HTTP error bodies, and a value refused is often an email address or a name
    (review, session 35)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
    namespace: ClassVar[str] = "privops"
    doc: ClassVar[str] = ""

    @classmethod
    def fullname(cls) -> str:
        return f"{cls.namespace}.{cls.__name__}"


# --- shared pieces ----------------------------------------------------------------------


class Identifiers(Record):
    """How a system knows the subject. Raw values stay in events and privops' own state."""

    namespace: ClassVar[str] = "privops.common"
    customer_id: str | None = None
    email: Annotated[str | None, PERSONAL] = None
    phone: Annotated[str | None, PERSONAL] = None
    system_ref: str | None = None

    def present(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class SoftOptIn(Record):
    """PECR reg. 22(3): all three conditions must hold for a soft opt-in."""

    namespace: ClassVar[str] = "privops.common"
    collected_in_sale_or_negotiation: bool = False
    own_similar_products: bool = False
    opt_out_offered: bool = False


class Retention(Record):
    namespace: ClassVar[str] = "privops.common"
    category: Category
    ground: str
    until: datetime | None = None


def _distinct(values: list[Category] | None) -> list[Category] | None:
    """Each category once, in order: a list of the same one thousands of times made a
    small answer a request record (and a subject's notification) over Kafka's limit."""
    return None if values is None else list(dict.fromkeys(values))


class ExportReference(Record):
    """A system's copy for a request, as its answer names it. The checksum and media
    type are bounded where a copy comes in (``exports.export_problem``: an answer's is
    refused, a final failure), not here: this model is also what stored request records
    hold, which must read as they were written."""

    namespace: ClassVar[str] = "privops.common"
    location: Annotated[str, PERSONAL]
    record_count: int
    checksum: str
    media_type: str = "application/json"
    # The system found other people in this copy (a call recording with someone else on
    # the line, an email naming a neighbour): the access response waits for the DPO's
    # review as for a system the data map marks review_before_disclosure (UK GDPR Art.
    # 15(4); legal review, session 35).
    shows_others: bool = False
    # What the copy holds of the subject, by category (from 0.38): the access letter
    # lists these for the system, not every category the data map says it may hold
    # (UK GDPR Art. 15(1)(b): the categories "concerned"). None: the system did not say
    # (a connector of before 0.38), and the data map's categories are listed.
    categories: Annotated[list[Category] | None, AfterValidator(_distinct)] = None


# --- upstream business events (<system>.events) ------------------------------------------


class UpstreamEvent(Record):
    namespace: ClassVar[str] = "privops.events"
    event_id: str
    occurred_at: datetime
    source: System
    subject_id: SubjectId
    identifiers: Identifiers


class CustomerCreated(UpstreamEvent):
    doc: ClassVar[str] = "A customer account or CRM contact was created."
    collected_in_sale_or_negotiation: bool = False
    display_name_present: bool = True


class CustomerUpdated(UpstreamEvent):
    changed_fields: list[str] = []


class QuoteRequested(UpstreamEvent):
    """A negotiation for a sale: PECR reg. 22(3) gives a soft opt-in from one as from a
    sale, on the same three conditions (``OrderPlaced``'s fields, absent = not offered)."""

    quote_id: str
    product_skus: list[str] = []
    total_pence: int = 0
    marketing_opt_out_offered: bool = False
    marketing_opt_out_ticked: bool = False
    similar_products_marketing: bool = False


class OrderPlaced(UpstreamEvent):
    order_id: str
    total_pence: int
    currency: str = "GBP"
    # PECR reg. 22(3) soft opt-in conditions, as the selling system knows them. Absent
    # means not offered / not claimed: no soft opt-in arises from silence.
    marketing_opt_out_offered: bool = False
    marketing_opt_out_ticked: bool = False
    similar_products_marketing: bool = False


class PaymentRecorded(UpstreamEvent):
    payment_id: str
    order_id: str
    amount_pence: int
    method: str = "card"


class CreditAccountApplied(UpstreamEvent):
    application_id: str
    credit_reference_agency: str


class AccountBalanceChanged(UpstreamEvent):
    doc: ClassVar[str] = "Credit account status and any debt; an open one blocks erasure."
    credit_account_open: bool
    balance_pence: int
    overdue_pence: int = 0


class SupportMessageReceived(UpstreamEvent):
    message_id: str
    medium: str = "email"


class CallRecorded(UpstreamEvent):
    call_id: str
    recording_ref: str
    duration_seconds: int


class ConsentGiven(UpstreamEvent):
    purpose: Purpose
    channel: Channel
    basis: LawfulBasis = LawfulBasis.consent
    soft_opt_in: SoftOptIn | None = None
    wording_ref: str | None = None


class ConsentWithdrawn(UpstreamEvent):
    purpose: Purpose
    channel: Channel


class UnsubscribeClicked(UpstreamEvent):
    doc: ClassVar[str] = "The unsubscribe link in a marketing email was followed."
    campaign_id: str


class StopReplyReceived(UpstreamEvent):
    doc: ClassVar[str] = "The subject replied STOP to a marketing SMS."
    campaign_id: str


class MarketingObjectionRecorded(UpstreamEvent):
    doc: ClassVar[str] = "Art. 21(2) objection to direct marketing, recorded by a system."
    note_ref: str | None = None


class TpsStatusChecked(UpstreamEvent):
    tps_register: str = "TPS"
    listed: bool = False


class TpsWaiverRecorded(UpstreamEvent):
    doc: ClassVar[str] = "A TPS-listed subscriber told us they do not object to our calls."
    evidence_ref: str


class CookieConsentRecorded(UpstreamEvent):
    analytics: bool
    marketing: bool
    banner_version: str = "1"


class FootageCaptured(UpstreamEvent):
    clip_id: str
    camera: str
    site: str


class InvestigationOpened(UpstreamEvent):
    investigation_id: Ref
    reason: Annotated[str, PERSONAL]


class InvestigationClosed(UpstreamEvent):
    investigation_id: Ref


class DataDisclosed(UpstreamEvent):
    """The system passed the subject's data to a recipient of the data map (Art. 19 needs
    to know who actually received what): a credit check, an account handed to a debt
    collector, a card payment sent to the processor. ``recipient_ref`` is the recipient's
    own reference for the subject (search id, account number), so a notice can be acted on.
    """

    disclosure_id: str
    recipient: str
    categories: list[Category]
    recipient_ref: Annotated[str | None, PERSONAL, AfterValidator(check_personal_ref)] = None


UPSTREAM_EVENTS: tuple[type[UpstreamEvent], ...] = (
    CustomerCreated,
    CustomerUpdated,
    QuoteRequested,
    OrderPlaced,
    PaymentRecorded,
    CreditAccountApplied,
    AccountBalanceChanged,
    SupportMessageReceived,
    CallRecorded,
    ConsentGiven,
    ConsentWithdrawn,
    UnsubscribeClicked,
    StopReplyReceived,
    MarketingObjectionRecorded,
    TpsStatusChecked,
    TpsWaiverRecorded,
    CookieConsentRecorded,
    FootageCaptured,
    InvestigationOpened,
    InvestigationClosed,
    DataDisclosed,
)


# --- commands (privacy.commands) ----------------------------------------------------------


class Command(Record):
    namespace: ClassVar[str] = "privops.commands"
    command_id: Annotated[str, AfterValidator(check_own_command_id)]
    request_id: CommandId
    issued_at: datetime
    actor: str
    signature: str | None = None


class RequestSubmitted(Command):
    request_type: RequestType
    subject_id: SubjectId
    received_on: date
    identity_verified_on: date | None = None
    # The day the information asked for to confirm identity arrived: the clock starts
    # then, not when someone finished checking it (identity_verified_on).
    identity_received_on: date | None = None
    rectification: Annotated[dict[str, str], PERSONAL] = {}
    objection_scope: ObjectionScope | None = None
    linked_request_id: CommandId | None = None
    reason: Annotated[str | None, PERSONAL] = None
    # A consent withdrawal of one purpose and/or channel only (None: every consent the
    # subject gave, on every channel). Only with request_type consent_withdrawal.
    withdrawn_purpose: Purpose | None = None
    withdrawn_channel: Channel | None = None
    # An access request's search details (SearchDetail -> the subject's words: the day,
    # hours, place, what they looked like), for a system that finds people by them
    # (CCTV; privops.core.search). Only with request_type access.
    search: Annotated[dict[str, str], PERSONAL] = {}
    # UK GDPR Art. 20(2): the organisation a portability request's copies are to be
    # sent to directly, and how to reach it, in the subject's words (from 0.40). Only
    # with request_type portability. The DPO sends them, where technically feasible,
    # and says so when approving the response (AccessResponseApproved.transmitted_on).
    send_to: Annotated[str | None, PERSONAL] = None
    # A request made for the subject by someone else (from 0.41): who they are and how
    # to reach them, in one line, and in what capacity they act. The notices about the
    # request go to them once their authority is recorded (SubjectNotification.
    # representative), to the subject before. A request that changes
    # or discloses data waits for the evidence of their authority (AuthorityReceived,
    # or authority_received_on here when it came with the request); the clock starts
    # once it has arrived, as it does for the identity information.
    representative: Annotated[str | None, PERSONAL] = None
    capacity: Capacity | None = None
    authority_received_on: date | None = None


class IdentityVerified(Command):
    verified_on: date
    # Free text ("passport", or a number someone typed): sealed like every DPO text.
    method: Annotated[str, PERSONAL] = "documents"
    information_received_on: date | None = None


class AuthorityReceived(Command):
    """The evidence that a request's representative may act for the subject arrived on
    ``received_on`` (written authority, a power of attorney, a deputyship order,
    parental responsibility: ``Capacity``), and the DPO is satisfied with it (from 0.41)."""

    received_on: date


class ErasureReleased(Command):
    """The DPO lets an erasure waiting for the subject's access or portability responses
    (``privops.core.response_first``) send its work now: the subject has their copies, or
    wants the erasure at once (from 0.42)."""


class FeeReceived(Command):
    received_on: date
    # Required by the worker (workflow._fee_received): a fee only for a manifestly
    # unfounded or excessive request, or further copies; optional here so that a
    # command of an older CLI decodes, and is refused with the reason, not lost.
    ground: FeeGround | None = None


class ClarificationRequested(Command):
    asked_on: date
    question_ref: Annotated[str | None, PERSONAL] = None


class ClarificationReceived(Command):
    received_on: date


class DeadlineExtended(Command):
    reason: Annotated[str, PERSONAL]
    notified_on: date


class LegalHoldPlaced(Command):
    hold_id: CommandId
    subject_id: SubjectId
    categories: list[Category]
    reason: Annotated[str, PERSONAL]


class LegalHoldReleased(Command):
    hold_id: CommandId
    subject_id: SubjectId


class ObjectionDecided(Command):
    accepted: bool
    reason: Annotated[str, PERSONAL]
    # Accepted for these purposes only (the data map's, based on legitimate interests):
    # the DPO found compelling grounds for the others (Art. 21(1)). Empty: every one.
    upheld_purposes: list[str] = []


class RequestRefused(Command):
    reason: Annotated[str, PERSONAL]
    # The ground, from 0.37 (v2); a refusal without one is refused by the worker: the
    # subject is told it, and the record keeps it after an erasure scrubs the reason.
    ground: RefusalGround | None = None


class RequestCancelled(Command):
    reason: Annotated[str, PERSONAL]


class RequestAnswered(Command):
    """The DPO answered a request that needs no system work (e.g. a complaint)."""

    reason: Annotated[str, PERSONAL]


class ExportRedacted(Command):
    """The DPO's redacted copy of one system's export for an access response held for
    review (awaiting_review): it replaces what the system answered (others' faces
    blurred in CCTV footage). Under the system's export root and naming the request,
    as the system's own must be (privops.core.exports)."""

    system: System
    export: ExportReference


class AccessResponseApproved(Command):
    """The DPO approves an access response held for review: it goes out, without the
    copies of ``withheld`` systems (others' data that could be neither redacted nor
    disclosed, UK GDPR Art. 15(4), DPA 2018 Sch. 2 para. 16). Each copy held for review
    is redacted (``ExportRedacted`` first), withheld, or named in ``disclosed``: sent as
    the system made it, the DPO having found no one else in it (or their consent).
    ``reason`` is told to the subject, and required, when a copy was redacted or
    withheld."""

    withheld: list[System] = []
    disclosed: list[System] = []
    reason: Annotated[str | None, PERSONAL] = None
    # Systems whose copy, found by the request's search details (CCTV by day, hours and
    # place), the DPO found is not of the subject: it is no copy of their data, and the
    # response says nothing of it (privops.core.search).
    not_subject: list[System] = []
    # A portability request whose subject asked for the copies to be sent to another
    # organisation (RequestSubmitted.send_to; UK GDPR Art. 20(2), from 0.40): the day
    # the DPO sent them, or why it was not technically feasible (told to the subject,
    # who is given the copies to pass on). One of the two when a copy goes out.
    transmitted_on: date | None = None
    not_feasible: Annotated[str | None, PERSONAL] = None


class CommandAnswer(Record):
    """privacy.command-results: the worker's answer to one command, what the CLI waits for.

    Sent after everything about the command was validated: an accepted command's effects
    follow it, a rejected one has none.
    """

    namespace: ClassVar[str] = "privops.commands"
    command_id: str
    request_id: str
    command_type: str
    answered_at: datetime
    request_state: RequestState | None = None
    due_on: date | None = None


class CommandAccepted(CommandAnswer):
    message: str | None = None


class CommandRejected(CommandAnswer):
    reason: str
    message: str


COMMAND_ANSWERS: tuple[type[CommandAnswer], ...] = (CommandAccepted, CommandRejected)


COMMANDS: tuple[type[Command], ...] = (
    RequestSubmitted,
    IdentityVerified,
    AuthorityReceived,
    ErasureReleased,
    FeeReceived,
    ClarificationRequested,
    ClarificationReceived,
    DeadlineExtended,
    LegalHoldPlaced,
    LegalHoldReleased,
    ObjectionDecided,
    RequestRefused,
    RequestCancelled,
    RequestAnswered,
    ExportRedacted,
    AccessResponseApproved,
)


# --- tasks (privacy.tasks.<system>) and their answers (privacy.task-results) ---------------


class Task(Record):
    namespace: ClassVar[str] = "privops.tasks"
    action: ClassVar[TaskAction]
    task_id: str
    request_id: str
    subject_id: SubjectId
    system: System
    attempt: int = 1
    issued_at: datetime
    identifiers: Annotated[dict[str, str], PERSONAL]
    # Values the system knew the subject by before (newest first, per identifier name):
    # a row under an old phone or email may be the subject's, or a later holder's of a
    # reassigned number: systems match them only with the subject's owner key
    # (docs/connectors.md, "Earlier identifiers"; review, session 27).
    previous_identifiers: Annotated[dict[str, list[str]], PERSONAL] = {}
    categories: list[Category] = []
    keep: list[Retention] = []


class Erase(Task):
    action: ClassVar[TaskAction] = TaskAction.erase


class Restrict(Task):
    """Restrict processing (UK GDPR Art. 18), lifted by ``LiftRestriction``; or, with
    ``marketing_objection``, stop direct marketing for good (an Art. 21(2) objection,
    absolute until the subject opts in again): a system keeps the two apart, so lifting
    a restriction never undoes an objection."""

    action: ClassVar[TaskAction] = TaskAction.restrict
    marketing_objection: bool = False
    # An upheld objection to processing for these purposes (Art. 21(1); the data map's
    # purpose names, each based on legitimate interests): the system stops using the
    # subject's data for them only, the rest of its processing (a contract) going on,
    # and apart from any restriction, so a lift never undoes it. Empty: no objection.
    objected_purposes: list[str] = []


class LiftRestriction(Task):
    action: ClassVar[TaskAction] = TaskAction.lift_restriction


class Rectify(Task):
    action: ClassVar[TaskAction] = TaskAction.rectify
    changes: Annotated[dict[str, str], PERSONAL] = {}


class Export(Task):
    action: ClassVar[TaskAction] = TaskAction.export
    # The request's search details, to a system the data map marks searched_by_details
    # (CCTV): find the subject by them as well as by any identifier (privops.core.search:
    # ``window`` gives the UTC instants of the day and hours). Empty: identifiers only.
    search: Annotated[dict[str, str], PERSONAL] = {}
    # A portability request (UK GDPR Art. 20, from 0.39): the copy holds the subject's
    # data of ``categories`` only, in a structured, commonly used, machine-readable form
    # (docs/connectors.md, "Portability"). False: an access request's copy of all of it.
    portability: bool = False


TASKS: tuple[type[Task], ...] = (Erase, Restrict, LiftRestriction, Rectify, Export)
TASK_BY_ACTION: dict[TaskAction, type[Task]] = {t.action: t for t in TASKS}


class TaskResult(Record):
    namespace: ClassVar[str] = "privops.results"
    task_id: str
    request_id: str
    system: System
    answered_at: datetime
    attempt: int = 1


class TaskCompleted(TaskResult):
    records_affected: int = 0
    export: ExportReference | None = None


class TaskFailed(TaskResult):
    reason: str
    retryable: bool = True


class TaskRetained(TaskResult):
    reason: str
    categories: list[Category] = []


class NotFound(TaskResult):
    pass


TASK_RESULTS: tuple[type[TaskResult], ...] = (TaskCompleted, TaskFailed, TaskRetained, NotFound)


# --- privops' own outputs -------------------------------------------------------------------


class ChannelConsent(Record):
    namespace: ClassVar[str] = "privops.state"
    purpose: Purpose
    channel: Channel
    status: str
    basis: LawfulBasis
    source: System | None = None
    occurred_at: datetime | None = None
    event_id: str | None = None
    evidence: str | None = None


class ConsentState(Record):
    """privacy.consent-state (compacted): a subject's current preferences and flags."""

    namespace: ClassVar[str] = "privops.state"
    subject_id: SubjectId
    updated_at: datetime
    preferences: list[ChannelConsent] = []
    marketing_objection: bool = False
    tps_listed: bool = False
    restricted: bool = False
    suppressed: bool = False


class LegalHoldState(Record):
    """privacy.legal-holds.<system> (compacted): what legal holds keep of one subject at
    one system. A tombstone (no value) under the subject id: nothing held there (any
    more).

    Deletion by age is each system's own job, from the data map's periods; this is how
    a hold reaches it, so it keeps the held categories' records past their period, and
    its erasure keeps them as the erase task says (docs/connectors.md, "Legal holds and
    deletion by age"). Each record is the whole state, not a change: a system reading
    the topic from its start (or only the latest value per key) knows every hold on it.
    The identifiers are the ones the system's tasks would carry, sealed like them; the
    DPO's reason for a hold is never here."""

    namespace: ClassVar[str] = "privops.state"
    subject_id: SubjectId
    system: System
    categories: list[Category]
    hold_ids: list[str]
    identifiers: Annotated[dict[str, str], PERSONAL]
    previous_identifiers: Annotated[dict[str, list[str]], PERSONAL] = {}
    updated_at: datetime


class SearchPreserved(Record):
    """privacy.legal-holds.<system> (compacted), under ``topics.preservation_key`` of the
    request: keep what an access request's search details find (CCTV footage by day,
    hours and place) from the system's deletion by age until the request is finished. A
    tombstone under the same key: the request is finished, what it found follows the
    system's periods again.

    Written when the request is received, so footage is not deleted while the request
    waits for the subject's ID or a clarification: a visitor no system knows can be on
    no legal hold, which systems find by identifiers. The details are the subject's,
    sealed under their key; a connector finds the footage with them exactly as its
    export does (privops.core.search), and keeps nothing else of them."""

    namespace: ClassVar[str] = "privops.state"
    request_id: str = Field(min_length=1)
    subject_id: SubjectId
    system: System
    search: Annotated[dict[str, str], PERSONAL]
    updated_at: datetime


class AuditEvent(Record):
    """privacy.audit: one hash-chained step (privops.core.audit builds and verifies them).

    subject_ref is a keyed HMAC; no text field may hold anything shaped like an email
    address or a phone number (refused without echoing the value). ``key_version``
    names the audit key whose HMAC made ``hash``, so the key can rotate and old chains
    still verify; 0 (the default, and so what records written before keyed hashes read
    as) is the legacy unkeyed SHA-256.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
    namespace: ClassVar[str] = "privops.audit"
    audit_id: str = Field(min_length=1)
    chain: str = Field(min_length=1)
    seq: int = Field(ge=1)
    request_id: str | None = None
    subject_ref: str | None = None
    actor: str = Field(min_length=1)
    action: str = Field(min_length=1)
    before: str | None = None
    after: str | None = None
    reason: str | None = None
    occurred_at: datetime
    prev_hash: str = Field(pattern=_HEX64)
    hash: str = Field(pattern=_HEX64)
    key_version: int = Field(default=0, ge=0)

    @field_validator("occurred_at")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")
        return value.astimezone(UTC)

    @field_validator(
        "request_id", "subject_ref", "actor", "action", "before", "after", "reason", "chain"
    )
    @classmethod
    def _no_raw_pii(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and recorded_as_contact(value):
            raise ValueError(f"{info.field_name} looks like raw PII (email or phone)")
        return value


class Alert(Record):
    namespace: ClassVar[str] = "privops.alerts"
    alert_id: str
    request_id: str
    raised_at: datetime


class DeadlineApproaching(Alert):
    request_type: RequestType
    due_on: date
    days_left: int


class DeadlineBreached(Alert):
    request_type: RequestType
    due_on: date
    days_overdue: int


class TaskEscalated(Alert):
    task_id: str
    system: System
    attempts: int


ALERTS: tuple[type[Alert], ...] = (DeadlineApproaching, DeadlineBreached, TaskEscalated)


class Notification(Record):
    namespace: ClassVar[str] = "privops.notifications"
    notification_id: str
    request_id: str
    issued_at: datetime


class SubjectNotification(Notification):
    """What must be told to the subject (Art. 12): extension, lift, outcome, access response."""

    subject_id: SubjectId
    kind: str
    message: str
    document: Annotated[str | None, PERSONAL] = None
    exports: list[ExportReference] = []
    # The request was made by a representative whose authority is recorded
    # (RequestSubmitted.representative, from 0.41): the notice goes to them, at this
    # address (their own words: a notifier may route it, or print it for the DPO's
    # post), not to the subject. None: to the subject, as the notifier finds them.
    representative: Annotated[str | None, PERSONAL] = None


class RecipientNotification(Notification):
    """Art. 19: a recipient of the subject's data told of an erasure/restriction/rectification."""

    recipient: str
    action: TaskAction
    categories: list[Category]
    subject_ref: str
    # The identifiers this recipient holds for the subject (from its disclosures).
    recipient_refs: Annotated[list[str], PERSONAL] = []
    # A rectification's corrected values (field -> new value), of the categories this
    # recipient received only: what it needs to correct its own copy.
    changes: Annotated[dict[str, str], PERSONAL] = {}


NOTIFICATIONS: tuple[type[Notification], ...] = (SubjectNotification, RecipientNotification)


class DeadLetter(Record):
    """privacy.deadletter: input that could not be used, kept whole with the reason."""

    namespace: ClassVar[str] = "privops.deadletter"
    original_topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    reason: str
    error: str
    consumer: str
    failed_at: datetime


class SubjectDirective(Record):
    """Internal: a request's effect on a subject's consent state (request -> subject key).

    The request workflow is keyed by request id; consent state is keyed by subject id.
    This record carries the effect across, so each table is written only by the agent
    that owns its partition.
    """

    namespace: ClassVar[str] = "privops.internal"
    directive_id: str
    subject_id: SubjectId
    request_id: str
    kind: str
    purpose: Purpose | None = None
    channel: Channel | None = None
    occurred_at: datetime


class RequestTick(Record):
    """Internal: a timer's finding (task answer overdue, deadline threshold) for a request."""

    namespace: ClassVar[str] = "privops.internal"
    request_id: str
    kind: str
    task_id: str | None = None
    days_before: int | None = None
    due_on: date | None = None
    at: datetime


ALL_RECORDS: tuple[type[Record], ...] = (
    *UPSTREAM_EVENTS,
    *COMMANDS,
    *COMMAND_ANSWERS,
    *TASKS,
    *TASK_RESULTS,
    ConsentState,
    LegalHoldState,
    SearchPreserved,
    AuditEvent,
    *ALERTS,
    *NOTIFICATIONS,
    DeadLetter,
    SubjectDirective,
    RequestTick,
)
RECORDS_BY_NAME: dict[str, type[Record]] = {r.fullname(): r for r in ALL_RECORDS}
