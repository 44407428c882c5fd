"""The consent state model: facts, per-channel entries, subject-wide markers.

Ordering and duplicates: every record carries a version ``(occurred_at, precedence,
event_id)`` and a fact replaces a record only when its version is strictly greater.
The same set of facts therefore gives the same state whatever the arrival order, and a
redelivered fact changes nothing. At equal occurred_at the more protective fact wins
(suppression > objection > withdrawal/listing/restriction > grant), so a tie never
contacts someone who said no. A soft opt-in ranks below every explicit record of its
channel (`ConsentEntry.rank`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Self, TypeAlias

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from privops.core.vocab import Channel, ConsentStatus, LawfulBasis, Purpose, System

RECENT_EVENT_IDS: Final = 64
"""How many applied facts (`ConsentFact.memory_key`, mostly the event id) a subject remembers.

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
    # The subject's telephone number changed: a TPS screening and a "do not object"
    # notice were about the old number (review, session 25).
    number_changed = "number_changed"
    restricted = "restricted"
    restriction_lifted = "restriction_lifted"
    suppressed = "suppressed"
    marketing_cookies_refused = "marketing_cookies_refused"
    marketing_cookies_accepted = "marketing_cookies_accepted"


_PRECEDENCE: Final[dict[FactKind, int]] = {
    FactKind.granted: 0,
    FactKind.opted_back_in: 0,
    FactKind.tps_unlisted: 0,
    FactKind.tps_no_objection: 0,
    FactKind.restriction_lifted: 0,
    FactKind.marketing_cookies_accepted: 0,
    FactKind.withdrawn: 1,
    FactKind.marketing_cookies_refused: 1,
    FactKind.tps_listed: 1,
    FactKind.number_changed: 1,
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

_Version: TypeAlias = tuple[datetime, int, str]
_Rank: TypeAlias = tuple[bool, _Version]

_FROZEN = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


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
    - restricted, restriction_lifted, suppressed, marketing_cookies_*: subject-wide (no
      purpose, no channel).
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

    @property
    def only_protects(self) -> bool:
        """Whether the fact can only reduce contact (a withdrawal, an objection, a TPS
        listing, a restriction, refused cookies): always safe to apply, whoever else
        the event's identifiers also name."""
        return _PRECEDENCE[self.kind] > 0

    @property
    def memory_key(self) -> str:
        """What `SubjectConsent.recent_event_ids` remembers for this fact.

        One event can mean several facts (a sale: a soft opt-in on email and on SMS), so
        the event id alone would make the second look like a redelivery of the first. An
        event id is unique only within its system: the CRM's event 1001 and the marketing
        platform's unsubscribe 1001 are two events (before, the unsubscribe was taken for
        a redelivery and dropped; review, session 25). Nor is a fact of another kind under
        the same id a redelivery: a system that reused its grant's id for the withdrawal
        had the withdrawal dropped, unaudited, and marketing stayed allowed (review,
        session 44). A fact remembered by a release before 0.44, without its kind, is
        applied once more if redelivered: the same fact again, which changes nothing.
        """
        if self.purpose is None and self.channel is None:
            return f"{self.source}:{self.event_id}/{self.kind}"
        return (
            f"{self.source}:{self.event_id}/{self.kind}/{self.purpose or '*'}/{self.channel or '*'}"
        )

    @property
    def rank(self) -> _Rank:
        """How it compares with a consent entry (`ConsentEntry.rank`)."""
        soft = self.kind is FactKind.granted and self.basis is LawfulBasis.soft_opt_in
        return (not soft, self.version)


def _shape_problem(fact: ConsentFact) -> str | None:
    check = _SHAPE_CHECKS.get(fact.kind, _subject_wide_shape)
    return check(fact.purpose, fact.channel, fact)


def _granted_shape(
    purpose: Purpose | None, channel: Channel | None, fact: ConsentFact
) -> str | None:
    if purpose is None or channel is None:
        return "purpose and channel are required"
    if purpose is Purpose.service:
        return "service messages need no consent"
    if fact.basis is LawfulBasis.soft_opt_in:
        if fact.soft_opt_in is None:
            return "soft opt-in needs its conditions recorded"
        if purpose is not Purpose.marketing or channel not in ELECTRONIC_CHANNELS:
            return "soft opt-in applies to email/SMS marketing only"
        return None
    if fact.basis is not LawfulBasis.consent:
        return "basis must be consent or soft_opt_in"
    return None


def _withdrawn_shape(
    purpose: Purpose | None, _channel: Channel | None, _fact: ConsentFact
) -> str | None:
    return "service messages need no consent" if purpose is Purpose.service else None


def _opted_back_in_shape(
    purpose: Purpose | None, channel: Channel | None, fact: ConsentFact
) -> str | None:
    if channel is None:
        return "an opt-in is per channel"
    if purpose not in (None, *OBJECTION_PURPOSES):
        return "opt-in after objection is for marketing or profiling"
    if fact.basis not in (LawfulBasis.none, LawfulBasis.consent):
        return "an explicit opt-in is consent"
    return None


def _objected_shape(
    purpose: Purpose | None, channel: Channel | None, _fact: ConsentFact
) -> str | None:
    if channel is not None or purpose not in (None, Purpose.marketing):
        return "objection to direct marketing covers every channel (no channel)"
    return None


def _tps_shape(purpose: Purpose | None, channel: Channel | None, _fact: ConsentFact) -> str | None:
    if channel not in (None, Channel.telephone) or purpose not in (None, Purpose.marketing):
        return "TPS concerns telephone marketing only"
    return None


def _subject_wide_shape(
    purpose: Purpose | None, channel: Channel | None, _fact: ConsentFact
) -> str | None:
    if purpose is not None or channel is not None:
        return "subject-wide fact takes no purpose or channel"
    return None


_SHAPE_CHECKS: Final = {
    FactKind.granted: _granted_shape,
    FactKind.withdrawn: _withdrawn_shape,
    FactKind.opted_back_in: _opted_back_in_shape,
    FactKind.objected: _objected_shape,
    FactKind.tps_listed: _tps_shape,
    FactKind.tps_unlisted: _tps_shape,
    FactKind.tps_no_objection: _tps_shape,
    FactKind.number_changed: _tps_shape,
}


class _Recorded(BaseModel):
    """The fact that set a stored record: what a decision cites as its evidence."""

    model_config = _FROZEN

    source: System
    occurred_at: AwareDatetime
    evidence: str
    event_id: str


class ConsentEntry(_Recorded):
    """Current consent for one (purpose, channel), with the fact that set it."""

    purpose: Purpose
    channel: Channel
    status: ConsentStatus
    basis: LawfulBasis
    soft_opt_in: SoftOptIn | None = None

    @property
    def version(self) -> _Version:
        return (self.occurred_at, _STATUS_PRECEDENCE[self.status], self.event_id)

    @property
    def explicit_consent(self) -> bool:
        return self.status is ConsentStatus.granted and self.basis is LawfulBasis.consent

    @property
    def rank(self) -> _Rank:
        """Explicit records outrank every soft opt-in, then the later version wins."""
        return (self.basis is not LawfulBasis.soft_opt_in, self.version)


class Marker(_Recorded):
    """A subject-wide fact (objection, TPS, waiver, cookies, restriction, suppression)."""

    kind: FactKind

    @property
    def version(self) -> _Version:
        return (self.occurred_at, _PRECEDENCE[self.kind], self.event_id)

    @classmethod
    def of(cls, fact: ConsentFact) -> Marker:
        return cls.model_construct(  # the fact was validated; a copy of its values
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
    # The latest cookie-banner choice on marketing cookies (refused blocks profiling).
    marketing_cookies: Marker | None = None
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

    @property
    def marketing_cookies_refused(self) -> bool:
        cookies = self.marketing_cookies
        return cookies is not None and cookies.kind is FactKind.marketing_cookies_refused


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsentChange:
    """One effective change made by `apply()`: an audit event and a metric increment.

    purpose/channel None means subject-wide (objection, restriction, suppression);
    before/after are None for changes that are not a consent status (TPS, restriction,
    suppression), whose metric status label is the fact kind.

    Never made from outside input: `apply()` builds it from a validated fact and the
    state's own values, so it is a plain dataclass, with nothing to validate (~3 µs a
    change less than pydantic's ``model_construct``).
    """

    subject_id: str
    purpose: Purpose | None
    channel: Channel | None
    before: ConsentStatus | None
    after: ConsentStatus | None
    kind: FactKind
    reason: str
    source: System
    event_id: str
    occurred_at: datetime
    evidence: str

    def metric_labels(self) -> dict[str, str]:
        """Labels for privops_consent_changes_total{purpose,channel,status}."""
        return {
            "purpose": str(self.purpose) if self.purpose else "all",
            "channel": str(self.channel) if self.channel else "all",
            "status": str(self.after) if self.after else str(self.kind),
        }
