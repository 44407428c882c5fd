from __future__ import annotations

import itertools
from collections import deque

import pytest

from privops.core.errors import DomainError
from privops.core.lifecycle import IDENTITY_REQUIRED, LifecycleEvent, legal_events, transition
from privops.core.vocab import TERMINAL_STATES, RequestState, RequestType

S = RequestState
E = LifecycleEvent
ALL_TYPES = frozenset(RequestType)
NEEDS_ID = frozenset(
    {
        RequestType.erasure,
        RequestType.restriction,
        RequestType.restriction_lift,
        RequestType.rectification,
        RequestType.access,
        RequestType.portability,
    }
)
NO_ID = ALL_TYPES - NEEDS_ID
COPIES = frozenset({RequestType.access, RequestType.portability})

# The expected lifecycle, written independently of privops.core.lifecycle.TRANSITIONS:
# (from, event, to, request types allowed). Everything not listed is illegal.
LEGAL: list[tuple[RequestState | None, LifecycleEvent, RequestState, frozenset[RequestType]]] = [
    (None, E.submitted, S.received, ALL_TYPES),
    (S.received, E.identity_required, S.identity_unverified, ALL_TYPES),
    (S.received, E.identity_verified, S.in_progress, ALL_TYPES),
    # identity settled, a representative's authority not yet shown (from 0.41): only a
    # request that changes or discloses data waits for it
    (S.received, E.authority_required, S.identity_unverified, NEEDS_ID),
    (S.identity_unverified, E.identity_verified, S.in_progress, ALL_TYPES),
    (S.received, E.accepted, S.in_progress, NO_ID),
    # UK GDPR Art. 12A (DUAA 2025): clarification stops the clock of an access request
    # only ("a request under Article 15"), also once its tasks are out, awaiting its
    # exports (issue 14.8; every type before 0.38, which understated other deadlines).
    (S.in_progress, E.clarification_requested, S.paused, frozenset({RequestType.access})),
    (S.awaiting_systems, E.clarification_requested, S.paused, frozenset({RequestType.access})),
    # A request of any type paused by an earlier release resumes.
    (S.paused, E.clarification_received, S.in_progress, ALL_TYPES),
    (S.in_progress, E.tasks_sent, S.awaiting_systems, ALL_TYPES),
    (S.in_progress, E.answered, S.completed, ALL_TYPES),
    (S.awaiting_systems, E.all_tasks_final_complete, S.completed, ALL_TYPES),
    (S.awaiting_systems, E.all_tasks_final_partial, S.partially_completed, ALL_TYPES),
    # a response with copies showing others (CCTV) waits for the DPO (Art. 15(4), 20(4));
    # only an access or portability request enters the review, so only they leave it
    (S.awaiting_systems, E.review_requested, S.awaiting_review, COPIES),
    (S.awaiting_review, E.all_tasks_final_complete, S.completed, ALL_TYPES),
    (S.awaiting_review, E.all_tasks_final_partial, S.partially_completed, ALL_TYPES),
    (S.received, E.refused, S.refused, ALL_TYPES),
    (S.identity_unverified, E.refused, S.refused, ALL_TYPES),
    (S.in_progress, E.refused, S.refused, ALL_TYPES),
    (S.paused, E.refused, S.refused, ALL_TYPES),
    (S.received, E.cancelled, S.cancelled, ALL_TYPES),
    (S.identity_unverified, E.cancelled, S.cancelled, ALL_TYPES),
    (S.in_progress, E.cancelled, S.cancelled, ALL_TYPES),
    (S.paused, E.cancelled, S.cancelled, ALL_TYPES),
    (S.awaiting_review, E.cancelled, S.cancelled, ALL_TYPES),
]
EXPECTED = {(src, ev, rt): dst for src, ev, dst, types in LEGAL for rt in types}
STATES: list[RequestState | None] = [None, *RequestState]
EVERY = list(itertools.product(STATES, LifecycleEvent, RequestType))


def _id(case: tuple[RequestState | None, LifecycleEvent, RequestType]) -> str:
    src, ev, rt = case
    return f"{src or 'new'}-{ev}-{rt}"


@pytest.mark.parametrize("case", [c for c in EVERY if c in EXPECTED], ids=_id)
def test_legal_transition(case: tuple[RequestState | None, LifecycleEvent, RequestType]) -> None:
    src, ev, rt = case
    assert transition(src, ev, request_type=rt) is EXPECTED[case]


@pytest.mark.parametrize("case", [c for c in EVERY if c not in EXPECTED], ids=_id)
def test_illegal_transition(case: tuple[RequestState | None, LifecycleEvent, RequestType]) -> None:
    src, ev, rt = case
    with pytest.raises(DomainError) as info:
        transition(src, ev, request_type=rt)
    assert str(info.value).startswith(f"illegal transition: {src or '(new)'} --{ev}--> ")


def test_identity_required_set_matches_rule() -> None:
    assert IDENTITY_REQUIRED == NEEDS_ID


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_terminal_states_accept_nothing(state: RequestState) -> None:
    for rt in RequestType:
        assert legal_events(state, request_type=rt) == []
    with pytest.raises(DomainError, match="is terminal"):
        transition(state, E.cancelled, request_type=RequestType.erasure)


@pytest.mark.parametrize("rt", sorted(NEEDS_ID))
def test_no_tasks_before_identity_verified_on_any_path(rt: RequestType) -> None:
    """Search every path from submission: tasks_sent is only reachable after identity_verified."""
    start: tuple[RequestState, bool] = (transition(None, E.submitted, request_type=rt), False)
    seen = {start}
    queue = deque([start])
    while queue:
        state, verified = queue.popleft()
        for ev in legal_events(state, request_type=rt):
            if ev is E.tasks_sent:
                assert verified, f"{rt}: tasks_sent reachable from {state} without identity"
            nxt = (
                transition(state, ev, request_type=rt),
                verified or ev is E.identity_verified,
            )
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    assert (S.awaiting_systems, True) in seen


def test_accepted_is_refused_for_identity_types_with_reason() -> None:
    with pytest.raises(DomainError, match="erasure requires identity_verified"):
        transition(S.received, E.accepted, request_type=RequestType.erasure)


def test_happy_path_with_clarification() -> None:
    rt = RequestType.access
    state = None
    for ev in (
        E.submitted,
        E.identity_required,
        E.identity_verified,
        E.clarification_requested,
        E.clarification_received,
        E.tasks_sent,
        E.all_tasks_final_partial,
    ):
        state = transition(state, ev, request_type=rt)
    assert state is S.partially_completed


@pytest.mark.parametrize("rt", sorted(ALL_TYPES - {RequestType.access}))
def test_only_an_access_requests_clock_stops_for_clarification_with_reason(
    rt: RequestType,
) -> None:
    with pytest.raises(DomainError, match=r"only for an access request \(UK GDPR Art. 12A\)"):
        transition(S.in_progress, E.clarification_requested, request_type=rt)


@pytest.mark.parametrize("copies", sorted(COPIES))
def test_only_a_response_with_copies_is_held_for_review_with_reason(copies: RequestType) -> None:
    with pytest.raises(DomainError, match=r"only a response with copies \(access, portability\)"):
        transition(S.awaiting_systems, E.review_requested, request_type=RequestType.erasure)
    state = S.awaiting_systems
    for ev in (E.review_requested, E.all_tasks_final_complete):
        state = transition(state, ev, request_type=copies)
    assert state is S.completed
