"""Consent and marketing preferences: pure rules, no Kafka, no I/O (DESIGN.md section 5).

Agents decode upstream events and commands into `ConsentFact`s, fold them into the
subject's `SubjectConsent` with `apply()`, publish the new state and the returned
`ConsentChange`s (audit + `privops_consent_changes_total`), and answer "may we contact
this subject on channel C for purpose P?" with `decide()`.

Ordering and duplicates: every record carries a version ``(occurred_at, precedence,
event_id)`` and a fact replaces a record only when its version is strictly greater.
The same set of facts therefore gives the same state whatever the arrival order, and a
redelivered fact changes nothing. At equal occurred_at the more protective fact wins
(suppression > objection > withdrawal/listing/restriction > grant), so a tie never
contacts someone who said no.

Suppression (erasure) is terminal: the consent records, objection, TPS and restriction
markers are dropped, only the earliest suppression marker is kept, and every later fact
is ignored (a re-import never re-activates an erased subject).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Self, TypeAlias

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from privops.core.errors import DomainError
from privops.core.vocab import Channel, ConsentStatus, LawfulBasis, Purpose, System

RECENT_EVENT_IDS: Final = 64
"""How many applied event ids a subject remembers.

The memory is a fast path, not the correctness guarantee: versioned records already make
re-applying any old fact a no-op. 64 covers Faust's redelivery window (the uncommitted
in-flight batch after a crash) many times over for one subject, and keeps the state small.
"""

CONSENT_PURPOSES: Final = (Purpose.marketing, Purpose.profiling, Purpose.analytics)
"""Purposes whose consent can be granted or withdrawn (service messages need none)."""

OBJECTION_PURPOSES: Final = (Purpose.marketing, Purpose.profiling)
"""What an objection to direct marketing covers (Art. 21(3)): marketing and profiling for it."""

ELECTRONIC_CHANNELS: Final = (Channel.email, Channel.sms)
"""Channels where PECR reg. 22 needs consent or a valid soft opt-in."""


class FactKind(StrEnum):
    """What a normalised input says about a subject's consent."""

    granted = "granted"
    withdrawn = "withdrawn"
    objected = "objected"
    opted_back_in = "opted_back_in"
    tps_listed = "tps_listed"
    tps_unlisted = "tps_unlisted"
    tps_no_objection = "tps_no_objection"
    restricted = "restricted"
    restriction_lifted = "restriction_lifted"
    suppressed = "suppressed"


class Rule(StrEnum):
    """Stable codes for the rule that produced a `Decision` (API, CLI and audit show them)."""

    unknown_subject = "unknown_subject"
    suppressed = "suppressed"
    restricted = "restricted"
    service_message = "service_message"
    objection_absolute = "objection_absolute"
    consent_withdrawn = "consent_withdrawn"
    consent_granted = "consent_granted"
    soft_opt_in_valid = "soft_opt_in_valid"
    soft_opt_in_invalid = "soft_opt_in_invalid"
    pecr_consent_required = "pecr_consent_required"
    tps_listed = "tps_listed"
    tps_no_objection = "tps_no_objection"
    legitimate_interest = "legitimate_interest"
    no_consent = "no_consent"


_PRECEDENCE: Final[dict[FactKind, int]] = {
    FactKind.granted: 0,
    FactKind.opted_back_in: 0,
    FactKind.tps_unlisted: 0,
    FactKind.tps_no_objection: 0,
    FactKind.restriction_lifted: 0,
    FactKind.withdrawn: 1,
    FactKind.tps_listed: 1,
    FactKind.restricted: 1,
    FactKind.objected: 2,
    FactKind.suppressed: 3,
}
_STATUS_PRECEDENCE: Final[dict[ConsentStatus, int]] = {
    ConsentStatus.not_asked: 0,
    ConsentStatus.granted: 0,
    ConsentStatus.withdrawn: 1,
    ConsentStatus.objected: 2,
}
_REASONS: Final[dict[FactKind, str]] = {
    FactKind.granted: "consent granted",
    FactKind.withdrawn: "consent withdrawn",
    FactKind.objected: "objection to direct marketing",
    FactKind.opted_back_in: "explicit opt-in after an objection",
    FactKind.tps_listed: "number listed on TPS/CTPS",
    FactKind.tps_unlisted: "number no longer listed on TPS/CTPS",
    FactKind.tps_no_objection: "subscriber does not object to our calls despite TPS",
    FactKind.restricted: "processing restricted",
    FactKind.restriction_lifted: "restriction lifted",
    FactKind.suppressed: "subject erased and suppressed",
}

_Version: TypeAlias = tuple[datetime, int, str]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def entry_key(purpose: Purpose, channel: Channel) -> str:
    """Key of one (purpose, channel) entry in `SubjectConsent.entries` (JSON needs str keys)."""
    return f"{purpose}:{channel}"


class SoftOptIn(BaseModel):
    """PECR reg. 22(3) conditions; all three must hold for a soft opt-in to be valid."""

    model_config = _FROZEN

    collected_in_sale_or_negotiation: bool
    own_similar_products: bool
    opt_out_offered: bool

    @property
    def valid(self) -> bool:
        return not self.missing()

    def missing(self) -> list[str]:
        """Names of the conditions that do not hold."""
        return [name for name, held in self.model_dump().items() if not held]


class ConsentFact(BaseModel):
    """One normalised input that affects consent, decoded by an agent from any source.

    Shape per kind (anything else is a validation error, i.e. dead-letter input):
    - granted: purpose and channel; basis consent or soft_opt_in (soft opt-in only for
      marketing by email/SMS, with its conditions).
    - withdrawn: purpose None = every consent purpose, channel None = every channel.
    - objected: subject-wide (channel None; purpose None or marketing).
    - opted_back_in: channel required; purpose None means marketing (or profiling).
    - tps_*: telephone marketing only (channel None or telephone).
    - restricted, restriction_lifted, suppressed: subject-wide (no purpose, no channel).
    """

    model_config = _FROZEN

    event_id: str = Field(min_length=1, max_length=200)
    occurred_at: AwareDatetime
    source: System
    kind: FactKind
    purpose: Purpose | None = None
    channel: Channel | None = None
    basis: LawfulBasis = LawfulBasis.none
    soft_opt_in: SoftOptIn | None = None
    evidence: str = Field(min_length=1, max_length=300)

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @field_validator("evidence")
    @classmethod
    def _reference_only(cls, value: str) -> str:
        if "@" in value:
            raise ValueError("evidence must be a reference (topic:type:event_id), not an address")
        return value

    @model_validator(mode="after")
    def _check_shape(self) -> Self:
        problem = _shape_problem(self)
        if problem:
            raise ValueError(f"{self.kind} fact: {problem}")
        return self

    @property
    def version(self) -> _Version:
        return (self.occurred_at, _PRECEDENCE[self.kind], self.event_id)


def _shape_problem(fact: ConsentFact) -> str | None:
    kind, purpose, channel = fact.kind, fact.purpose, fact.channel
    if kind is FactKind.granted:
        if purpose is None or channel is None:
            return "purpose and channel are required"
        if purpose is Purpose.service:
            return "service messages need no consent"
        if fact.basis is LawfulBasis.soft_opt_in:
            if fact.soft_opt_in is None:
                return "soft opt-in needs its conditions recorded"
            if purpose is not Purpose.marketing or channel not in ELECTRONIC_CHANNELS:
                return "soft opt-in applies to email/SMS marketing only"
        elif fact.basis is not LawfulBasis.consent:
            return "basis must be consent or soft_opt_in"
    elif kind is FactKind.withdrawn:
        if purpose is Purpose.service:
            return "service messages need no consent"
    elif kind is FactKind.opted_back_in:
        if channel is None:
            return "an opt-in is per channel"
        if purpose not in (None, *OBJECTION_PURPOSES):
            return "opt-in after objection is for marketing or profiling"
        if fact.basis not in (LawfulBasis.none, LawfulBasis.consent):
            return "an explicit opt-in is consent"
    elif kind is FactKind.objected:
        if channel is not None or purpose not in (None, Purpose.marketing):
            return "objection to direct marketing covers every channel (no channel)"
    elif kind in (FactKind.tps_listed, FactKind.tps_unlisted, FactKind.tps_no_objection):
        if channel not in (None, Channel.telephone) or purpose not in (None, Purpose.marketing):
            return "TPS concerns telephone marketing only"
    elif purpose is not None or channel is not None:
        return "subject-wide fact takes no purpose or channel"
    return None


class ConsentEntry(BaseModel):
    """Current consent for one (purpose, channel), with the fact that set it."""

    model_config = _FROZEN

    purpose: Purpose
    channel: Channel
    status: ConsentStatus
    basis: LawfulBasis
    soft_opt_in: SoftOptIn | None = None
    source: System
    occurred_at: AwareDatetime
    evidence: str
    event_id: str

    @property
    def version(self) -> _Version:
        return (self.occurred_at, _STATUS_PRECEDENCE[self.status], self.event_id)

    @property
    def explicit_consent(self) -> bool:
        return self.status is ConsentStatus.granted and self.basis is LawfulBasis.consent


class Marker(BaseModel):
    """A subject-wide fact (objection, TPS listing or waiver, restriction, suppression)."""

    model_config = _FROZEN

    kind: FactKind
    source: System
    occurred_at: AwareDatetime
    evidence: str
    event_id: str

    @property
    def version(self) -> _Version:
        return (self.occurred_at, _PRECEDENCE[self.kind], self.event_id)

    @classmethod
    def of(cls, fact: ConsentFact) -> Marker:
        return cls(
            kind=fact.kind,
            source=fact.source,
            occurred_at=fact.occurred_at,
            evidence=fact.evidence,
            event_id=fact.event_id,
        )


class SubjectConsent(BaseModel):
    """The whole current consent state of one subject (a Faust table value, a topic record).

    `restricted` and `suppressed` are stored flags for consumers of the compacted topic;
    they always agree with the `restriction` and `suppression` markers.
    """

    model_config = _FROZEN

    subject_id: str = Field(min_length=1)
    entries: dict[str, ConsentEntry] = Field(default_factory=dict)
    objection: Marker | None = None
    tps: Marker | None = None
    tps_waiver: Marker | None = None
    restriction: Marker | None = None
    suppression: Marker | None = None
    restricted: bool = False
    suppressed: bool = False
    recent_event_ids: list[str] = Field(default_factory=list, max_length=RECENT_EVENT_IDS)
    updated_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for key, entry in self.entries.items():
            if key != entry_key(entry.purpose, entry.channel):
                raise ValueError(f"entry key {key!r} does not match its purpose and channel")
        restricted = self.restriction is not None and self.restriction.kind is FactKind.restricted
        if self.restricted != restricted or self.suppressed != (self.suppression is not None):
            raise ValueError("restricted/suppressed flags disagree with their markers")
        return self

    def entry(self, purpose: Purpose, channel: Channel) -> ConsentEntry | None:
        return self.entries.get(entry_key(purpose, channel))

    def status(self, purpose: Purpose, channel: Channel) -> ConsentStatus:
        entry = self.entry(purpose, channel)
        return entry.status if entry else ConsentStatus.not_asked

    @property
    def tps_listed(self) -> bool:
        return self.tps is not None and self.tps.kind is FactKind.tps_listed


class ConsentChange(BaseModel):
    """One effective change made by `apply()`: an audit event and a metric increment.

    purpose/channel None means subject-wide (objection, restriction, suppression);
    before/after are None for changes that are not a consent status (TPS, restriction,
    suppression), whose metric status label is the fact kind.
    """

    model_config = _FROZEN

    subject_id: str
    purpose: Purpose | None
    channel: Channel | None
    before: ConsentStatus | None
    after: ConsentStatus | None
    kind: FactKind
    reason: str
    source: System
    event_id: str
    occurred_at: AwareDatetime
    evidence: str

    def metric_labels(self) -> dict[str, str]:
        """Labels for privops_consent_changes_total{purpose,channel,status}."""
        return {
            "purpose": str(self.purpose) if self.purpose else "all",
            "channel": str(self.channel) if self.channel else "all",
            "status": str(self.after) if self.after else str(self.kind),
        }


class Evidence(BaseModel):
    """Which recorded fact a decision rests on."""

    model_config = _FROZEN

    event_id: str
    source: System
    occurred_at: AwareDatetime
    basis: LawfulBasis | None
    reference: str


class Decision(BaseModel):
    """Answer to "may we contact this subject on channel C for purpose P?"."""

    model_config = _FROZEN

    allowed: bool
    reason: str
    rule: Rule
    evidence: Evidence | None = None


# --------------------------------------------------------------------------- apply


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
    if fact.event_id in state.recent_event_ids:
        return state, []
    updates: dict[str, object] = {}
    changes: list[ConsentChange] = []
    if fact.kind is FactKind.suppressed:
        updates, changes = _apply_suppression(state, fact)
    elif not state.suppressed:
        updates, changes = _HANDLERS[fact.kind](state, fact)
    updates["recent_event_ids"] = [*state.recent_event_ids, fact.event_id][-RECENT_EVENT_IDS:]
    if state.updated_at is None or fact.occurred_at > state.updated_at:
        updates["updated_at"] = fact.occurred_at
    return state.model_copy(update=updates), changes


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
    """Give every key the fact's status where the fact is newer than the key's record."""
    entries = dict(state.entries)
    changes: list[ConsentChange] = []
    soft = fact.soft_opt_in if basis is LawfulBasis.soft_opt_in else None
    for purpose, channel in keys:
        key = entry_key(purpose, channel)
        current = entries.get(key)
        if current is not None and current.version >= fact.version:
            continue
        entries[key] = ConsentEntry(
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


def _apply_restriction(state: SubjectConsent, fact: ConsentFact) -> _Outcome:
    if not _newer(state.restriction, fact):
        return {}, []
    now_on = fact.kind is FactKind.restricted
    updates: dict[str, object] = {"restriction": Marker.of(fact), "restricted": now_on}
    return updates, ([] if state.restricted == now_on else [_change(state, fact)])


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
    FactKind.restricted: _apply_restriction,
    FactKind.restriction_lifted: _apply_restriction,
}


# -------------------------------------------------------------------------- decide


def decide(state: SubjectConsent | None, purpose: Purpose, channel: Channel) -> Decision:
    """May we contact (or process for) this subject for `purpose` on `channel`? Pure.

    Rules, first match wins: unknown subject; suppressed; restricted; service messages;
    objection to direct marketing (unless an explicit later opt-in on this channel);
    withdrawn; then the purpose/channel rule (PECR for email/SMS, TPS for telephone,
    legitimate interest for post and profiling, consent for analytics).
    """
    if state is None:
        return Decision(
            allowed=False, reason="No consent record for this subject.", rule=Rule.unknown_subject
        )
    blocked = _suppressed(state) or _restricted(state)
    if blocked:
        return blocked
    if purpose is Purpose.service:
        return Decision(
            allowed=True,
            reason="Service messages need no marketing consent.",
            rule=Rule.service_message,
        )
    entry = state.entry(purpose, channel)
    blocked = _objection(state, purpose, entry) or _withdrawn(entry)
    if blocked:
        return blocked
    if purpose is Purpose.analytics:
        return _analytics(entry)
    if purpose is Purpose.profiling:
        return _legitimate_interest(entry, "Profiling for marketing")
    if channel in ELECTRONIC_CHANNELS:
        return _electronic_marketing(entry, channel)
    if channel is Channel.telephone:
        return _telephone_marketing(state, entry)
    return _legitimate_interest(entry, "Postal marketing")


def is_marketing_contactable(state: SubjectConsent | None, channel: Channel) -> bool:
    """Shortcut for `decide(state, Purpose.marketing, channel).allowed`."""
    return decide(state, Purpose.marketing, channel).allowed


def _evidence(record: ConsentEntry | Marker) -> Evidence:
    return Evidence(
        event_id=record.event_id,
        source=record.source,
        occurred_at=record.occurred_at,
        basis=record.basis if isinstance(record, ConsentEntry) else None,
        reference=record.evidence,
    )


def _suppressed(state: SubjectConsent) -> Decision | None:
    if state.suppression is None:
        return None
    return Decision(
        allowed=False,
        reason="Subject was erased and is suppressed; never contact.",
        rule=Rule.suppressed,
        evidence=_evidence(state.suppression),
    )


def _restricted(state: SubjectConsent) -> Decision | None:
    if not state.restricted or state.restriction is None:
        return None
    return Decision(
        allowed=False,
        reason="Processing is restricted to storage only.",
        rule=Rule.restricted,
        evidence=_evidence(state.restriction),
    )


def _objection(
    state: SubjectConsent, purpose: Purpose, entry: ConsentEntry | None
) -> Decision | None:
    """Art. 21(3): absolute until an explicit opt-in on this channel after the objection."""
    objection = state.objection
    if objection is None or purpose not in OBJECTION_PURPOSES:
        return None
    if entry is not None and entry.explicit_consent and entry.occurred_at > objection.occurred_at:
        return None
    return Decision(
        allowed=False,
        reason="Subject objected to direct marketing and has not opted back in on this channel.",
        rule=Rule.objection_absolute,
        evidence=_evidence(objection),
    )


def _withdrawn(entry: ConsentEntry | None) -> Decision | None:
    if entry is None or entry.status not in (ConsentStatus.withdrawn, ConsentStatus.objected):
        return None
    return Decision(
        allowed=False,
        reason="Subject withdrew consent or opted out on this channel.",
        rule=Rule.consent_withdrawn,
        evidence=_evidence(entry),
    )


def _granted(entry: ConsentEntry | None) -> Decision | None:
    if entry is None or not entry.explicit_consent:
        return None
    return Decision(
        allowed=True,
        reason="Subject gave consent on this channel.",
        rule=Rule.consent_granted,
        evidence=_evidence(entry),
    )


def _electronic_marketing(entry: ConsentEntry | None, channel: Channel) -> Decision:
    """PECR reg. 22: consent, or a soft opt-in whose three conditions all hold."""
    granted = _granted(entry)
    if granted:
        return granted
    if entry is not None and entry.basis is LawfulBasis.soft_opt_in and entry.soft_opt_in:
        missing = entry.soft_opt_in.missing()
        if not missing:
            return Decision(
                allowed=True,
                reason="Valid soft opt-in (existing customer, similar products, opt-out offered).",
                rule=Rule.soft_opt_in_valid,
                evidence=_evidence(entry),
            )
        return Decision(
            allowed=False,
            reason=f"Soft opt-in is not valid: {', '.join(missing)} not met.",
            rule=Rule.soft_opt_in_invalid,
            evidence=_evidence(entry),
        )
    return Decision(
        allowed=False,
        reason=f"{channel} marketing needs consent or a valid soft opt-in (PECR); none recorded.",
        rule=Rule.pecr_consent_required,
    )


def _telephone_marketing(state: SubjectConsent, entry: ConsentEntry | None) -> Decision:
    """PECR reg. 21: explicit consent overrides TPS; otherwise a listing needs a later waiver."""
    granted = _granted(entry)
    if granted:
        return granted
    tps = state.tps
    if tps is None or tps.kind is not FactKind.tps_listed:
        return _legitimate_interest(entry, "Telephone marketing")
    waiver = state.tps_waiver
    if waiver is not None and waiver.occurred_at > tps.occurred_at:
        return Decision(
            allowed=True,
            reason="Number is TPS-listed but the subscriber said they do not object to our calls.",
            rule=Rule.tps_no_objection,
            evidence=_evidence(waiver),
        )
    return Decision(
        allowed=False,
        reason="Number is listed on TPS/CTPS and the subscriber has not waived it for us.",
        rule=Rule.tps_listed,
        evidence=_evidence(tps),
    )


def _legitimate_interest(entry: ConsentEntry | None, what: str) -> Decision:
    granted = _granted(entry)
    if granted:
        return granted
    return Decision(
        allowed=True,
        reason=f"{what} relies on legitimate interest; no objection or opt-out recorded.",
        rule=Rule.legitimate_interest,
        evidence=_evidence(entry) if entry else None,
    )


def _analytics(entry: ConsentEntry | None) -> Decision:
    granted = _granted(entry)
    if granted:
        return granted
    return Decision(
        allowed=False,
        reason="Analytics needs consent (PECR reg. 6); none recorded.",
        rule=Rule.no_consent,
        evidence=_evidence(entry) if entry else None,
    )
