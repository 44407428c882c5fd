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
