"""The answer to "may we contact this subject on channel C for purpose P at time T?".

Telephone (PECR reg. 21): explicit consent, or a "do not object" notice that has not
been withdrawn, allows calls; otherwise the number must have been screened as not
listed on TPS/CTPS within the 28 days before the call (ICO guidance), so `decide` needs
the contact time. A later screening never cancels a notice. There is no upstream event
for withdrawing a notice as such: a later withdrawal of telephone marketing (or an
objection) does it, and then only explicit consent re-opens the channel.

Cookies (PECR reg. 6): the website's banner decides what is stored on one device; privops
does not take a banner tick as consent to any contact channel. The marketing-cookie
choice governs profiling for marketing: while the latest choice is a refusal, profiling
is refused on every channel (unless the subject later consents on that channel
explicitly); accepting again restores the purpose's normal rule. The analytics-cookie
choice is not mapped: the Data (Use and Access) Act 2025 lets some analytics cookies be
set without consent (statistics to improve the site, with a way to object), which the
web system applies at the device; privops' `analytics` purpose is consent per contact
channel (e.g. tracking in emails) and needs a `ConsentGiven` for that channel.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from pydantic import AwareDatetime, BaseModel, ConfigDict

from privops.core.consent.model import (
    ELECTRONIC_CHANNELS,
    OBJECTION_PURPOSES,
    ConsentEntry,
    FactKind,
    Marker,
    SubjectConsent,
)
from privops.core.errors import DomainError
from privops.core.vocab import Channel, ConsentStatus, LawfulBasis, Purpose, System

TPS_SCREENING_MAX_AGE: Final = timedelta(days=28)
"""PECR reg. 21 with the ICO's guidance on telephone marketing: screen a number against
TPS/CTPS at most 28 days before calling it; an older screening counts as listed."""


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
    tps_not_screened = "tps_not_screened"
    tps_no_objection = "tps_no_objection"
    marketing_cookies_refused = "marketing_cookies_refused"
    legitimate_interest = "legitimate_interest"
    no_consent = "no_consent"


class Evidence(BaseModel):
    """Which recorded fact a decision rests on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    source: System
    occurred_at: AwareDatetime
    basis: LawfulBasis | None
    reference: str


class Decision(BaseModel):
    """Answer to "may we contact this subject on channel C for purpose P?"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed: bool
    reason: str
    rule: Rule
    evidence: Evidence | None = None


def decide(
    state: SubjectConsent | None,
    purpose: Purpose,
    channel: Channel,
    now: datetime | None = None,
) -> Decision:
    """May we contact (or process for) this subject for `purpose` on `channel`? Pure.

    Rules, first match wins: unknown subject; suppressed; restricted; service messages;
    objection to direct marketing (unless an explicit later opt-in on this channel);
    withdrawn; then the purpose/channel rule (PECR for email/SMS, TPS for telephone,
    legitimate interest for post, profiling unless marketing cookies were refused,
    consent for analytics).

    `now` is the time of the intended contact. Telephone marketing that rests on a TPS
    screening needs it: without `now` the screening's age is unknown, so such a call is
    refused (`Rule.tps_not_screened`), never allowed by default.

    Raises DomainError when `now` is naive.
    """
    if now is not None and now.tzinfo is None:
        raise DomainError("decide: now must be timezone-aware")
    if state is None:
        return _answer(Rule.unknown_subject, "No consent record for this subject.")
    blocked = _suppressed(state) or _restricted(state)
    if blocked:
        return blocked
    if purpose is Purpose.service:
        return _answer(Rule.service_message, "Service messages need no marketing consent.")
    entry = state.entry(purpose, channel)
    blocked = _objection(state, purpose, entry) or _withdrawn(entry)
    if blocked:
        return blocked
    if purpose is Purpose.analytics:
        return _granted(entry) or _answer(
            Rule.no_consent, "Analytics needs consent (PECR reg. 6); none recorded.", entry
        )
    if purpose is Purpose.profiling:
        return _profiling(state, entry)
    if channel in ELECTRONIC_CHANNELS:
        return _electronic_marketing(entry, channel)
    if channel is Channel.telephone:
        return _telephone_marketing(state, entry, now)
    return _legitimate_interest(entry, "Postal marketing")


_ALLOWING: Final = frozenset(
    {
        Rule.service_message,
        Rule.consent_granted,
        Rule.soft_opt_in_valid,
        Rule.tps_no_objection,
        Rule.legitimate_interest,
    }
)
"""The rules that answer yes; every other rule is a refusal."""


def _answer(rule: Rule, reason: str, record: ConsentEntry | Marker | None = None) -> Decision:
    evidence = None
    if record is not None:
        evidence = Evidence(
            event_id=record.event_id,
            source=record.source,
            occurred_at=record.occurred_at,
            basis=record.basis if isinstance(record, ConsentEntry) else None,
            reference=record.evidence,
        )
    return Decision(allowed=rule in _ALLOWING, reason=reason, rule=rule, evidence=evidence)


_ERASED: Final = "Subject was erased and is suppressed; never contact."


def _suppressed(state: SubjectConsent) -> Decision | None:
    if state.suppression is None:
        return None
    return _answer(Rule.suppressed, _ERASED, state.suppression)


def decide_erased() -> Decision:
    """The answer for every purpose and channel of a subject known erased only from the
    suppression list (no consent state: a worker rebuilt under a new app id)."""
    return _answer(Rule.suppressed, _ERASED)


def _restricted(state: SubjectConsent) -> Decision | None:
    if not state.restricted or state.restriction is None:
        return None
    return _answer(Rule.restricted, "Processing is restricted to storage only.", state.restriction)


def _objection(
    state: SubjectConsent, purpose: Purpose, entry: ConsentEntry | None
) -> Decision | None:
    """Art. 21(3): absolute until an explicit opt-in on this channel after the objection."""
    objection = state.objection
    if objection is None or purpose not in OBJECTION_PURPOSES:
        return None
    if entry is not None and entry.explicit_consent and entry.occurred_at > objection.occurred_at:
        return None
    reason = "Subject objected to direct marketing and has not opted back in on this channel."
    return _answer(Rule.objection_absolute, reason, objection)


def _withdrawn(entry: ConsentEntry | None) -> Decision | None:
    if entry is None or entry.status not in (ConsentStatus.withdrawn, ConsentStatus.objected):
        return None
    reason = "Subject withdrew consent or opted out on this channel."
    return _answer(Rule.consent_withdrawn, reason, entry)


def _granted(entry: ConsentEntry | None) -> Decision | None:
    if entry is None or not entry.explicit_consent:
        return None
    return _answer(Rule.consent_granted, "Subject gave consent on this channel.", entry)


def _electronic_marketing(entry: ConsentEntry | None, channel: Channel) -> Decision:
    """PECR reg. 22: consent, or a soft opt-in whose three conditions all hold."""
    granted = _granted(entry)
    if granted:
        return granted
    if entry is not None and entry.basis is LawfulBasis.soft_opt_in and entry.soft_opt_in:
        missing = entry.soft_opt_in.missing()
        if not missing:
            reason = "Valid soft opt-in (existing customer, similar products, opt-out offered)."
            return _answer(Rule.soft_opt_in_valid, reason, entry)
        reason = f"Soft opt-in is not valid: {', '.join(missing)} not met."
        return _answer(Rule.soft_opt_in_invalid, reason, entry)
    reason = f"{channel} marketing needs consent or a valid soft opt-in (PECR); none recorded."
    return _answer(Rule.pecr_consent_required, reason)


def _telephone_marketing(
    state: SubjectConsent, entry: ConsentEntry | None, now: datetime | None
) -> Decision:
    """PECR reg. 21: explicit consent or a standing "do not object" notice allows the call;
    otherwise the number must have been screened as unlisted within the last 28 days.

    The notice (reg. 21(4)) stands until the subscriber withdraws it: a later screening
    that still finds the number listed does not cancel it. A withdrawal of telephone
    marketing (or an objection) is recorded on this channel's entry, which blocks before
    this rule is reached, and only an explicit consent re-opens the channel.
    """
    granted = _granted(entry)
    if granted:
        return granted
    if state.tps_waiver is not None and state.tps_waiver.kind is FactKind.tps_no_objection:
        reason = "The subscriber said they do not object to our calls (stands until withdrawn)."
        return _answer(Rule.tps_no_objection, reason, state.tps_waiver)
    tps = state.tps
    if tps is not None and tps.kind is FactKind.tps_listed:
        reason = "Number is listed on TPS/CTPS and the subscriber has not waived it for us."
        return _answer(Rule.tps_listed, reason, tps)
    return _unscreened(tps, now) or _legitimate_interest(entry, "Telephone marketing")


def _unscreened(tps: Marker | None, now: datetime | None) -> Decision | None:
    """ICO guidance on PECR reg. 21: an unscreened or stale number counts as listed."""
    if tps is None:
        why = "Number was never screened against TPS/CTPS"
    elif tps.kind is FactKind.number_changed:
        why = "The number changed since its last TPS/CTPS screening; the new one was not screened"
    elif now is None:
        why = "No contact time was given, so the TPS/CTPS screening's age cannot be checked"
    elif now - tps.occurred_at > TPS_SCREENING_MAX_AGE:
        screened = tps.occurred_at.date().isoformat()
        why = f"Number was last screened against TPS/CTPS on {screened}, over 28 days ago"
    else:
        return None
    reason = f"{why}; it counts as listed (PECR reg. 21, screen within 28 days of calling)."
    return _answer(Rule.tps_not_screened, reason, tps)


def _profiling(state: SubjectConsent, entry: ConsentEntry | None) -> Decision:
    """Refused marketing cookies (PECR reg. 6) stop profiling for marketing on every channel
    until the banner choice changes or the subject explicitly consents on this channel."""
    cookies = state.marketing_cookies
    if cookies is None or not state.marketing_cookies_refused:
        return _legitimate_interest(entry, "Profiling for marketing")
    granted = _granted(entry)
    if granted and entry is not None and entry.occurred_at > cookies.occurred_at:
        return granted
    reason = "Subject refused marketing cookies; their behaviour is not used to profile them."
    return _answer(Rule.marketing_cookies_refused, reason, cookies)


def _legitimate_interest(entry: ConsentEntry | None, what: str) -> Decision:
    reason = f"{what} relies on legitimate interest; no objection or opt-out recorded."
    return _granted(entry) or _answer(Rule.legitimate_interest, reason, entry)
