"""Folding consent facts into a subject's state (`apply`), with what changed.

A soft opt-in (PECR reg. 22(3)) fills a channel nobody has asked about, or refreshes an
older soft opt-in; it never replaces an opt-out, withdrawal, objection or explicit
consent, whatever their times (DESIGN.md section 5).

Suppression (erasure) is terminal: the consent records, objection, TPS, cookie and
restriction markers are dropped, only the earliest suppression marker is kept, and every
later fact is ignored (a re-import never re-activates an erased subject).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeAlias

from privops.core.consent.model import (
    CONSENT_PURPOSES,
    OBJECTION_PURPOSES,
    RECENT_EVENT_IDS,
    ConsentChange,
    ConsentEntry,
    ConsentFact,
    FactKind,
    Marker,
    SubjectConsent,
    entry_key,
)
from privops.core.errors import DomainError
from privops.core.vocab import Channel, ConsentStatus, LawfulBasis, Purpose

_REASONS: Final[dict[FactKind, str]] = {
    FactKind.granted: "consent granted",
    FactKind.withdrawn: "consent withdrawn",
    FactKind.objected: "objection to direct marketing",
    FactKind.opted_back_in: "explicit opt-in after an objection",
    FactKind.tps_listed: "number listed on TPS/CTPS",
    FactKind.tps_unlisted: "number no longer listed on TPS/CTPS",
    FactKind.tps_no_objection: "subscriber does not object to our calls despite TPS",
    FactKind.number_changed: "telephone number changed: its screening was of the old one",
    FactKind.restricted: "processing restricted",
    FactKind.restriction_lifted: "restriction lifted",
    FactKind.suppressed: "subject erased and suppressed",
    FactKind.marketing_cookies_refused: "marketing cookies refused: no profiling for marketing",
    FactKind.marketing_cookies_accepted: "marketing cookies accepted",
}


def apply(
    state: SubjectConsent | None, subject_id: str, fact: ConsentFact
) -> tuple[SubjectConsent, list[ConsentChange]]:
    """Fold one fact into a subject's state; return the new state and what changed.

    Pure. A fact older than what it would replace, a redelivered fact, and any fact about
    a suppressed subject leave the consent unchanged and return no changes (the event id
    is still remembered).

    Raises DomainError when `state` belongs to another subject.
    """
    if state is None:
        state = SubjectConsent(subject_id=subject_id)
    elif state.subject_id != subject_id:
        raise DomainError("consent state belongs to another subject")
    if fact.memory_key in state.recent_event_ids:
        return state, []
    updates: dict[str, object] = {}
    changes: list[ConsentChange] = []
    if fact.kind is FactKind.suppressed:
        updates, changes = _apply_suppression(state, fact)
    elif not state.suppressed:
        updates, changes = _HANDLERS[fact.kind](state, fact)
    updates["recent_event_ids"] = [*state.recent_event_ids, fact.memory_key][-RECENT_EVENT_IDS:]
    if state.updated_at is None or fact.occurred_at > state.updated_at:
        updates["updated_at"] = fact.occurred_at
    return state.model_copy(update=updates), changes


def apply_all(
    state: SubjectConsent | None, subject_id: str, facts: Iterable[ConsentFact]
) -> tuple[SubjectConsent | None, list[ConsentChange]]:
    """Fold every fact of one input (a sale means two) so it yields one new state.

    Returns `state` itself (None included) when there are no facts.
    """
    changes: list[ConsentChange] = []
    for fact in facts:
        state, new = apply(state, subject_id, fact)
        changes.extend(new)
    return state, changes


_Outcome: TypeAlias = tuple[dict[str, object], list[ConsentChange]]


def _change(
    state: SubjectConsent,
    fact: ConsentFact,
    purpose: Purpose | None = None,
    channel: Channel | None = None,
    before: ConsentStatus | None = None,
    after: ConsentStatus | None = None,
) -> ConsentChange:
    reason = _REASONS[fact.kind]
    if fact.kind is FactKind.granted:
        reason = f"{reason} ({fact.basis})"
    return ConsentChange(
        subject_id=state.subject_id,
        purpose=purpose,
        channel=channel,
        before=before,
        after=after,
        kind=fact.kind,
        reason=f"{reason}, from {fact.source}",
        source=fact.source,
        event_id=fact.event_id,
        occurred_at=fact.occurred_at,
        evidence=fact.evidence,
    )


def _set_entries(
    state: SubjectConsent,
    fact: ConsentFact,
    keys: Iterable[tuple[Purpose, Channel]],
    status: ConsentStatus,
    basis: LawfulBasis,
) -> _Outcome:
    """Give every key the fact's status where the fact outranks the key's record.

    A soft opt-in never replaces an explicit record (PECR reg. 22(3) and DESIGN.md
    section 5): after an opt-out, withdrawal or objection only explicit consent re-opens
    a channel, and a later sale does not take back an explicit opt-in. Ranking explicit
    above soft, then by version, keeps the result independent of arrival order.
    """
    entries = dict(state.entries)
    changes: list[ConsentChange] = []
    soft = fact.soft_opt_in if basis is LawfulBasis.soft_opt_in else None
    for purpose, channel in keys:
        key = entry_key(purpose, channel)
        current = entries.get(key)
        if current is not None and current.rank >= fact.rank:
            continue
        entries[key] = ConsentEntry.model_construct(  # from the validated fact, as _change
            purpose=purpose,
            channel=channel,
            status=status,
            basis=basis,
            soft_opt_in=soft,
            source=fact.source,
            occurred_at=fact.occurred_at,
            evidence=fact.evidence,
            event_id=fact.event_id,
        )
        if current is None or (current.status, current.basis, current.soft_opt_in) != (
            status,
            basis,
            soft,
        ):
            before = current.status if current else ConsentStatus.not_asked
            changes.append(_change(state, fact, purpose, channel, before, status))
    return {"entries": entries}, changes


def _apply_granted(state: SubjectConsent, fact: ConsentFact) -> _Outcome:
    if fact.purpose is None or fact.channel is None:  # ConsentFact rejects this shape
        raise DomainError("a grant needs a purpose and a channel")
    keys = [(fact.purpose, fact.channel)]
    return _set_entries(state, fact, keys, ConsentStatus.granted, fact.basis)


def _apply_opted_back_in(state: SubjectConsent, fact: ConsentFact) -> _Outcome:
    if fact.channel is None:  # ConsentFact rejects this shape
        raise DomainError("an opt-in needs a channel")
    keys = [(fact.purpose or Purpose.marketing, fact.channel)]
    return _set_entries(state, fact, keys, ConsentStatus.granted, LawfulBasis.consent)


def _apply_withdrawn(state: SubjectConsent, fact: ConsentFact) -> _Outcome:
    purposes = [fact.purpose] if fact.purpose else CONSENT_PURPOSES
    channels = [fact.channel] if fact.channel else list(Channel)
    keys = [(p, c) for p in purposes for c in channels]
    return _set_entries(state, fact, keys, ConsentStatus.withdrawn, LawfulBasis.none)


def _apply_objected(state: SubjectConsent, fact: ConsentFact) -> _Outcome:
    keys = [(p, c) for p in OBJECTION_PURPOSES for c in Channel]
    updates, changes = _set_entries(state, fact, keys, ConsentStatus.objected, LawfulBasis.none)
    if _newer(state.objection, fact):
        before = ConsentStatus.objected if state.objection else None
        updates["objection"] = Marker.of(fact)
        changes.insert(0, _change(state, fact, before=before, after=ConsentStatus.objected))
    return updates, changes


def _newer(current: Marker | None, fact: ConsentFact) -> bool:
    return current is None or fact.version > current.version


def _apply_tps(state: SubjectConsent, fact: ConsentFact) -> _Outcome:
    if fact.kind is FactKind.number_changed:
        return _number_changed(state, fact)
    if fact.kind is FactKind.tps_no_objection:
        if not _newer(state.tps_waiver, fact):
            return {}, []
        change = _change(state, fact, Purpose.marketing, Channel.telephone)
        return {"tps_waiver": Marker.of(fact)}, [change]
    if not _newer(state.tps, fact):
        return {}, []
    now_listed = fact.kind is FactKind.tps_listed
    updates: dict[str, object] = {"tps": Marker.of(fact)}
    if state.tps_listed == now_listed:
        return updates, []
    return updates, [_change(state, fact, Purpose.marketing, Channel.telephone)]


def _number_changed(state: SubjectConsent, fact: ConsentFact) -> _Outcome:
    """A screening and a "do not object" notice concern the number they were about: after
    the number changed, the new one is unscreened and unwaived until a newer screening
    or notice (an older one arriving late stays older than the change). Before, a new
    number was called on the old one's screening (review, session 25)."""
    updates: dict[str, object] = {}
    if _newer(state.tps, fact):
        updates["tps"] = Marker.of(fact)
    if state.tps_waiver is not None and _newer(state.tps_waiver, fact):
        updates["tps_waiver"] = Marker.of(fact)
    if not updates:
        return {}, []
    return updates, [_change(state, fact, Purpose.marketing, Channel.telephone)]


def _apply_restriction(state: SubjectConsent, fact: ConsentFact) -> _Outcome:
    if not _newer(state.restriction, fact):
        return {}, []
    now_on = fact.kind is FactKind.restricted
    updates: dict[str, object] = {"restriction": Marker.of(fact), "restricted": now_on}
    return updates, ([] if state.restricted == now_on else [_change(state, fact)])


def _apply_marketing_cookies(state: SubjectConsent, fact: ConsentFact) -> _Outcome:
    if not _newer(state.marketing_cookies, fact):
        return {}, []
    refused = fact.kind is FactKind.marketing_cookies_refused
    updates: dict[str, object] = {"marketing_cookies": Marker.of(fact)}
    if state.marketing_cookies_refused == refused:
        return updates, []
    return updates, [_change(state, fact, Purpose.profiling)]


def _apply_suppression(state: SubjectConsent, fact: ConsentFact) -> _Outcome:
    """Erasure is terminal: keep only the earliest suppression marker, whatever the order."""
    if state.suppression is not None:
        if fact.version < state.suppression.version:
            return {"suppression": Marker.of(fact)}, []
        return {}, []
    updates: dict[str, object] = {
        "entries": {},
        "objection": None,
        "tps": None,
        "tps_waiver": None,
        "restriction": None,
        "marketing_cookies": None,
        "restricted": False,
        "suppression": Marker.of(fact),
        "suppressed": True,
    }
    return updates, [_change(state, fact)]


_HANDLERS: Final = {
    FactKind.granted: _apply_granted,
    FactKind.withdrawn: _apply_withdrawn,
    FactKind.objected: _apply_objected,
    FactKind.opted_back_in: _apply_opted_back_in,
    FactKind.tps_listed: _apply_tps,
    FactKind.tps_unlisted: _apply_tps,
    FactKind.tps_no_objection: _apply_tps,
    FactKind.number_changed: _apply_tps,
    FactKind.restricted: _apply_restriction,
    FactKind.restriction_lifted: _apply_restriction,
    FactKind.marketing_cookies_refused: _apply_marketing_cookies,
    FactKind.marketing_cookies_accepted: _apply_marketing_cookies,
}
