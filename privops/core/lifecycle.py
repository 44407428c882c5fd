"""The request lifecycle: one pure transition function over RequestState (DESIGN.md section 5).

Read TRANSITIONS top to bottom as the story of a request. Two guards sit beside it:
requests that change or disclose data (erasure, restriction, lift, rectification,
access, portability) reach in_progress only through identity_verified (made by a
representative, only once their authority is shown too), and tasks are only sent from
in_progress, so nothing is executed before identity is verified (nor before a
representative's authority is shown). Terminal states accept nothing.
"""

from __future__ import annotations

from enum import StrEnum

from privops.core.errors import DomainError
from privops.core.vocab import TERMINAL_STATES, RequestState, RequestType


class LifecycleEvent(StrEnum):
    submitted = "submitted"
    identity_required = "identity_required"
    # Identity settled, but the request was made by a representative whose authority
    # to act for the subject is not yet shown (from 0.41): the same wait.
    authority_required = "authority_required"
    # The requester is shown to be the subject, or (a representative) entitled to act
    # for them: for a representative's request, the later of the identity and the
    # authority (the audit names the authority's day).
    identity_verified = "identity_verified"
    # Requests that need no proof of identity (objection, consent withdrawal, complaint).
    accepted = "accepted"
    clarification_requested = "clarification_requested"
    clarification_received = "clarification_received"
    tasks_sent = "tasks_sent"
    all_tasks_final_complete = "all_tasks_final_complete"
    all_tasks_final_partial = "all_tasks_final_partial"
    # Every export in, one of them from a system whose copy the DPO reviews first, or
    # portability copies the DPO sends to another organisation first (Art. 20(2)).
    review_requested = "review_requested"
    # Finished without system tasks: nothing held, complaint answered, objection decided.
    answered = "answered"
    refused = "refused"
    cancelled = "cancelled"


S = RequestState
E = LifecycleEvent

# (state, event) -> next state. None is "no request yet".
TRANSITIONS: dict[tuple[RequestState | None, LifecycleEvent], RequestState] = {
    (None, E.submitted): S.received,
    # identity
    (S.received, E.identity_required): S.identity_unverified,
    (S.received, E.authority_required): S.identity_unverified,
    (S.received, E.identity_verified): S.in_progress,
    (S.identity_unverified, E.identity_verified): S.in_progress,
    (S.received, E.accepted): S.in_progress,
    # clarification stops the running clock of an access request (Art. 12A; the only
    # type it is allowed, EVENT_GUARDS), also once its tasks are out (awaiting its
    # exports); on resuming, a request whose tasks are out goes back to awaiting_systems
    # through tasks_sent. A request of another type paused by an earlier release resumes
    # the same way.
    (S.in_progress, E.clarification_requested): S.paused,
    (S.awaiting_systems, E.clarification_requested): S.paused,
    (S.paused, E.clarification_received): S.in_progress,
    # work
    (S.in_progress, E.tasks_sent): S.awaiting_systems,
    (S.in_progress, E.answered): S.completed,
    (S.awaiting_systems, E.all_tasks_final_complete): S.completed,
    (S.awaiting_systems, E.all_tasks_final_partial): S.partially_completed,
    # an access or portability response held for the DPO (others' data in a copy, or
    # copies to send on) goes out on approval
    (S.awaiting_systems, E.review_requested): S.awaiting_review,
    (S.awaiting_review, E.all_tasks_final_complete): S.completed,
    (S.awaiting_review, E.all_tasks_final_partial): S.partially_completed,
    # refusal (manifestly unfounded or excessive) is decided before any work goes out
    (S.received, E.refused): S.refused,
    (S.identity_unverified, E.refused): S.refused,
    (S.in_progress, E.refused): S.refused,
    (S.paused, E.refused): S.refused,
    # cancellation by the subject or the DPO, before any work goes out (or while a
    # response is held for review, below)
    (S.received, E.cancelled): S.cancelled,
    (S.identity_unverified, E.cancelled): S.cancelled,
    (S.in_progress, E.cancelled): S.cancelled,
    (S.paused, E.cancelled): S.cancelled,
    # a response held for review goes nowhere without the DPO: withdrawn by the subject
    # meanwhile, it is cancelled (nothing was sent)
    (S.awaiting_review, E.cancelled): S.cancelled,
}

# Requests that change or disclose personal data: never executed before identity is verified
# (nor, made by a representative, before their authority is shown).
IDENTITY_REQUIRED: frozenset[RequestType] = frozenset(
    {
        RequestType.erasure,
        RequestType.restriction,
        RequestType.restriction_lift,
        RequestType.rectification,
        RequestType.access,
        RequestType.portability,
    }
)

# Events only some request types may take, and why the others may not.
EVENT_GUARDS: dict[LifecycleEvent, frozenset[RequestType]] = {
    E.accepted: frozenset(set(RequestType) - IDENTITY_REQUIRED),
    E.authority_required: IDENTITY_REQUIRED,
    E.review_requested: frozenset({RequestType.access, RequestType.portability}),
    E.clarification_requested: frozenset({RequestType.access}),
}


_GUARD_WHY: dict[LifecycleEvent, str] = {
    E.accepted: "{} requires identity_verified",
    E.authority_required: (
        "only a request that changes or discloses data waits for a representative's "
        "authority, not a {} request"
    ),
    E.review_requested: (
        "only a response with copies (access, portability) is reviewed, not a {} request's outcome"
    ),
    E.clarification_requested: (
        "the clock stops for clarification only for an access request (UK GDPR Art. "
        "12A); ask while a {} request's clock runs (where its type allows, extend it if "
        "it is complex or one of many, privops request extend, or refuse it)"
    ),
}


def transition(
    state: RequestState | None, event: LifecycleEvent, *, request_type: RequestType
) -> RequestState:
    """The state after `event`, or DomainError naming the illegal transition."""
    if state in TERMINAL_STATES:
        raise _illegal(state, event, request_type, f"{state} is terminal")
    allowed = EVENT_GUARDS.get(event)
    if allowed is not None and request_type not in allowed:
        raise _illegal(state, event, request_type, _GUARD_WHY[event].format(request_type))
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise _illegal(state, event, request_type, "no such transition") from None


def is_legal(
    state: RequestState | None, event: LifecycleEvent, *, request_type: RequestType
) -> bool:
    try:
        transition(state, event, request_type=request_type)
    except DomainError:
        return False
    return True


def legal_events(state: RequestState | None, *, request_type: RequestType) -> list[LifecycleEvent]:
    return [e for e in LifecycleEvent if is_legal(state, e, request_type=request_type)]


def _illegal(
    state: RequestState | None, event: LifecycleEvent, request_type: RequestType, why: str
) -> DomainError:
    source = state.value if state is not None else "(new)"
    return DomainError(
        f"illegal transition: {source} --{event.value}--> ? ({request_type.value} request: {why})"
    )
