"""The shared vocabulary: every enumerated name privops uses, in one place.

Enum values are the wire values (Avro enum symbols, metric label values, CLI words):
names and values are kept identical so a log line, a metric label and a schema symbol
all read the same.
"""

from __future__ import annotations

from enum import StrEnum


class System(StrEnum):
    """Business systems that publish events and answer tasks."""

    orders = "orders"
    crm = "crm"
    telephony = "telephony"
    marketing = "marketing"
    web = "web"
    cctv = "cctv"


class Channel(StrEnum):
    """Channels for promotional communications (privacy notice: email, SMS, post, telephone)."""

    email = "email"
    sms = "sms"
    post = "post"
    telephone = "telephone"


class Purpose(StrEnum):
    """Purposes a consent or preference decision is asked about."""

    marketing = "marketing"
    profiling = "profiling"
    analytics = "analytics"
    service = "service"


class ConsentStatus(StrEnum):
    granted = "granted"
    withdrawn = "withdrawn"
    objected = "objected"
    not_asked = "not_asked"


class LawfulBasis(StrEnum):
    consent = "consent"
    soft_opt_in = "soft_opt_in"
    contract = "contract"
    legitimate_interest = "legitimate_interest"
    legal_obligation = "legal_obligation"
    none = "none"


class Category(StrEnum):
    """Data categories from the privacy notice (DESIGN.md section 3)."""

    contact = "contact"
    payment = "payment"
    purchases = "purchases"
    credit = "credit"
    interactions = "interactions"
    cctv = "cctv"
    web = "web"
    marketing_preferences = "marketing_preferences"


class RequestType(StrEnum):
    erasure = "erasure"
    restriction = "restriction"
    restriction_lift = "restriction_lift"
    rectification = "rectification"
    objection = "objection"
    access = "access"
    consent_withdrawal = "consent_withdrawal"
    complaint = "complaint"
    # Data portability (UK GDPR Art. 20), from 0.39: the data the subject gave us, used
    # with their consent or under a contract, in a structured machine-readable form.
    portability = "portability"


class RequestState(StrEnum):
    """Request lifecycle (DESIGN.md section 5). Transitions live in privops.lifecycle."""

    received = "received"
    identity_unverified = "identity_unverified"
    in_progress = "in_progress"
    paused = "paused"
    awaiting_systems = "awaiting_systems"
    # An access response whose copy holds a system's data the data map marks
    # review_before_disclosure (others' images in CCTV footage): the DPO redacts or
    # withholds and approves before it goes out (UK GDPR Art. 15(4)).
    awaiting_review = "awaiting_review"
    completed = "completed"
    partially_completed = "partially_completed"
    refused = "refused"
    cancelled = "cancelled"


TERMINAL_STATES: frozenset[RequestState] = frozenset(
    {
        RequestState.completed,
        RequestState.partially_completed,
        RequestState.refused,
        RequestState.cancelled,
    }
)
OPEN_STATES: frozenset[RequestState] = frozenset(set(RequestState) - TERMINAL_STATES)


class TaskAction(StrEnum):
    """What a system is asked to do. Schema record names match (Erase, Restrict, ...)."""

    erase = "erase"
    restrict = "restrict"
    lift_restriction = "lift_restriction"
    rectify = "rectify"
    export = "export"


class TaskState(StrEnum):
    pending = "pending"
    sent = "sent"
    done = "done"
    failed = "failed"
    retained = "retained"
    not_found = "not_found"
    escalated = "escalated"


FINAL_TASK_STATES: frozenset[TaskState] = frozenset(
    {TaskState.done, TaskState.failed, TaskState.retained, TaskState.not_found}
)


class TaskOutcome(StrEnum):
    """A system's answer on privacy.task-results."""

    completed = "completed"
    failed = "failed"
    retained = "retained"
    not_found = "not_found"


class FeeGround(StrEnum):
    """Why a fee is charged (UK GDPR Art. 12(5)(a), 15(3)); an ordinary request is free."""

    manifestly_unfounded = "manifestly_unfounded"
    excessive = "excessive"
    further_copies = "further_copies"


class RefusalGround(StrEnum):
    """On what ground a request is refused (UK GDPR Art. 12(4): the subject is told the
    reasons; Art. 5(2): the controller can show them). Kept on the request record and in
    the audit after an erasure scrubs the DPO's letter: privops' words, nothing personal."""

    # Art. 12(5)(b): the controller bears the burden of showing it.
    manifestly_unfounded = "manifestly_unfounded"
    excessive = "excessive"
    # Art. 11(2), 12(2), 12(6): the requester is not shown to be the subject, or (a
    # representative, from 0.41) entitled to act for them.
    identity_not_established = "identity_not_established"
    # The right asked for does not apply (none of Art. 17(1)'s grounds for an erasure, of
    # Art. 18(1)'s for a restriction). Not for an access request or an objection
    # (``workflow.REFUSABLE``): an objection overridden is decided, not refused.
    right_does_not_apply = "right_does_not_apply"
    # An exemption of the Data Protection Act 2018 (Schedules 2 to 4: crime and taxation,
    # legal professional privilege, negotiations, management forecasts, confidential
    # references...), named in the DPO's letter.
    exemption = "exemption"


class Capacity(StrEnum):
    """In what capacity someone makes a request for the subject (a representative; ICO,
    right of access: "requests made on behalf of others"). The evidence differs, the
    rule does not: privops acts on a request that changes or discloses data only once
    the DPO has recorded the evidence of their authority (``workflow._authority_received``).
    """

    # The subject's written authority (a solicitor, an adviser, a relative or friend).
    authorised = "authorised"
    # A lasting or enduring power of attorney.
    attorney = "attorney"
    # A deputy appointed by the Court of Protection.
    deputy = "deputy"
    # Parental responsibility for a child: the DPO is satisfied the child cannot
    # understand their rights, or authorised it, or it is in their best interests (ICO);
    # a child who understands their rights is answered themselves.
    parent = "parent"


class ObjectionScope(StrEnum):
    direct_marketing = "direct_marketing"
    legitimate_interest = "legitimate_interest"


class AlertKind(StrEnum):
    deadline_approaching = "deadline_approaching"
    deadline_breached = "deadline_breached"
    task_escalated = "task_escalated"


class SearchDetail(StrEnum):
    """What an access request may say to find someone a system holds under no identifier
    (CCTV footage: the day, the hours, the place, what they looked like;
    privops.core.search)."""

    date = "date"
    times = "times"
    location = "location"
    appearance = "appearance"
