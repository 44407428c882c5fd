from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from privops.core.consent import (
    RECENT_EVENT_IDS,
    ConsentChange,
    ConsentFact,
    FactKind,
    Rule,
    SoftOptIn,
    SubjectConsent,
    apply,
    decide,
)
from privops.core.errors import DomainError
from privops.core.vocab import Channel, ConsentStatus, LawfulBasis, Purpose, System

SUBJECT = "S-1"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=1)  # when the decision tables ask: any TPS check in them is fresh
VALID_SOFT = SoftOptIn(
    collected_in_sale_or_negotiation=True, own_similar_products=True, opt_out_offered=True
)
NO_OPT_OUT = SoftOptIn(
    collected_in_sale_or_negotiation=True, own_similar_products=True, opt_out_offered=False
)

email, sms, post, phone = Channel.email, Channel.sms, Channel.post, Channel.telephone
marketing, profiling, analytics, service = (
    Purpose.marketing,
    Purpose.profiling,
    Purpose.analytics,
    Purpose.service,
)


def f(
    kind: FactKind,
    minute: int,
    channel: Channel | None = None,
    *,
    purpose: Purpose | None = None,
    basis: LawfulBasis = LawfulBasis.none,
    soft: SoftOptIn | None = None,
    event_id: str | None = None,
    source: System = System.marketing,
) -> ConsentFact:
    """A fact at T0 + minute; grants default to marketing by consent."""
    if kind is FactKind.granted:
        purpose = purpose or marketing
        basis = basis if basis is not LawfulBasis.none else LawfulBasis.consent
    if kind is FactKind.withdrawn and purpose is None and channel is not None:
        purpose = marketing
    eid = event_id or f"{kind}-{channel}-{purpose}-{minute}"
    return ConsentFact(
        event_id=eid,
        occurred_at=T0 + timedelta(minutes=minute),
        source=source,
        kind=kind,
        purpose=purpose,
        channel=channel,
        basis=basis,
        soft_opt_in=soft,
        evidence=f"{source}.events:{kind}:{eid}",
    )


def fold(facts: Sequence[ConsentFact]) -> tuple[SubjectConsent | None, list[ConsentChange]]:
    state: SubjectConsent | None = None
    changes: list[ConsentChange] = []
    for fact in facts:
        state, new = apply(state, SUBJECT, fact)
        changes.extend(new)
    return state, changes


G, W, OBJ, B = FactKind.granted, FactKind.withdrawn, FactKind.objected, FactKind.opted_back_in
TL, TU, TW = FactKind.tps_listed, FactKind.tps_unlisted, FactKind.tps_no_objection
R, RL, SUP = FactKind.restricted, FactKind.restriction_lifted, FactKind.suppressed
MCR, MCA = FactKind.marketing_cookies_refused, FactKind.marketing_cookies_accepted
SOFT = LawfulBasis.soft_opt_in

# (facts in ARRIVAL order, purpose, channel, allowed, rule)
TABLE = [
    pytest.param([], marketing, email, False, Rule.unknown_subject, id="unknown-subject"),
    pytest.param(
        [f(G, 1, email)], marketing, email, True, Rule.consent_granted, id="email-consent",
    ),
    pytest.param([f(G, 1, sms)], marketing, sms, True, Rule.consent_granted, id="sms-consent"),
    pytest.param(
        [f(G, 1, phone)], marketing, sms, False, Rule.pecr_consent_required,
        id="consent-is-per-channel-phone-not-sms",
    ),
    pytest.param(
        [f(G, 1, email)], marketing, sms, False, Rule.pecr_consent_required,
        id="consent-is-per-channel-email-not-sms",
    ),
    pytest.param(
        [f(TL, 0)], marketing, email, False, Rule.pecr_consent_required, id="email-not-asked",
    ),
    pytest.param(
        [f(G, 1, email, basis=SOFT, soft=VALID_SOFT)], marketing, email, True,
        Rule.soft_opt_in_valid, id="soft-opt-in-valid",
    ),
    pytest.param(
        [f(G, 1, sms, basis=SOFT, soft=NO_OPT_OUT)], marketing, sms, False,
        Rule.soft_opt_in_invalid, id="soft-opt-in-missing-condition",
    ),
    pytest.param(
        [f(G, 1, email, basis=SOFT, soft=VALID_SOFT), f(W, 2, email)], marketing, email, False,
        Rule.consent_withdrawn, id="soft-opt-in-then-unsubscribe",
    ),
    pytest.param(
        [f(G, 1, email), f(W, 2, email)], marketing, email, False, Rule.consent_withdrawn,
        id="unsubscribe-link",
    ),
    pytest.param(
        [f(G, 1, sms), f(W, 2, sms)], marketing, sms, False, Rule.consent_withdrawn,
        id="sms-stop",
    ),
    pytest.param(
        [f(G, 1, sms), f(W, 2, sms), f(G, 1, email)], marketing, email, True,
        Rule.consent_granted, id="sms-stop-leaves-email",
    ),
    pytest.param(
        [f(W, 2, email), f(G, 1, email)], marketing, email, False, Rule.consent_withdrawn,
        id="out-of-order-old-grant-after-withdrawal",
    ),
    pytest.param(
        [f(G, 3, email), f(W, 2, email)], marketing, email, True, Rule.consent_granted,
        id="out-of-order-old-withdrawal-after-grant",
    ),
    pytest.param(
        [f(G, 1, email), f(W, 2, email), f(G, 1, email)], marketing, email, False,
        Rule.consent_withdrawn, id="duplicate-grant-redelivered",
    ),
    pytest.param(
        [f(G, 1, email, event_id="a"), f(W, 1, email, event_id="b")], marketing, email, False,
        Rule.consent_withdrawn, id="same-instant-withdrawal-beats-grant",
    ),
    pytest.param(
        [f(G, 1, email), f(OBJ, 2)], marketing, email, False, Rule.objection_absolute,
        id="objection-blocks-email",
    ),
    pytest.param([f(OBJ, 2)], marketing, post, False, Rule.objection_absolute, id="objection-post"),
    pytest.param(
        [f(OBJ, 2)], marketing, phone, False, Rule.objection_absolute, id="objection-telephone",
    ),
    pytest.param(
        [f(OBJ, 2)], profiling, email, False, Rule.objection_absolute, id="objection-profiling",
    ),
    pytest.param(
        [f(G, 1, sms), f(OBJ, 2), f(B, 3, email)], marketing, email, True, Rule.consent_granted,
        id="objection-then-email-opt-in",
    ),
    pytest.param(
        [f(G, 1, sms), f(OBJ, 2), f(B, 3, email)], marketing, sms, False, Rule.objection_absolute,
        id="objection-opt-in-email-not-sms",
    ),
    pytest.param(
        [f(OBJ, 2), f(G, 3, email)], marketing, email, True, Rule.consent_granted,
        id="objection-then-later-explicit-grant",
    ),
    pytest.param(
        [f(OBJ, 2), f(G, 3, email, basis=SOFT, soft=VALID_SOFT)], marketing, email, False,
        Rule.objection_absolute, id="objection-not-lifted-by-soft-opt-in",
    ),
    pytest.param(
        [f(B, 3, email), f(OBJ, 2)], marketing, email, True, Rule.consent_granted,
        id="out-of-order-opt-in-before-older-objection",
    ),
    pytest.param(
        [f(G, 1, email), f(OBJ, 2)], marketing, email, False, Rule.objection_absolute,
        id="grant-before-objection",
    ),
    pytest.param(
        [f(OBJ, 2), f(G, 1, email)], marketing, email, False, Rule.objection_absolute,
        id="out-of-order-old-grant-after-objection",
    ),
    pytest.param(
        [f(OBJ, 2), f(B, 3, email), f(OBJ, 4)], marketing, email, False, Rule.objection_absolute,
        id="second-objection-revokes-opt-in",
    ),
    pytest.param(
        [f(OBJ, 2), f(B, 3, email, purpose=profiling)], profiling, email, True,
        Rule.consent_granted, id="objection-then-profiling-opt-in",
    ),
    pytest.param([f(G, 1, email)], marketing, post, True, Rule.legitimate_interest, id="post-li"),
    pytest.param(
        [f(W, 2, post)], marketing, post, False, Rule.consent_withdrawn, id="post-opt-out",
    ),
    pytest.param(
        [f(G, 1, email), f(TU, 0)], marketing, phone, True, Rule.legitimate_interest,
        id="telephone-screened-not-listed",
    ),
    # PECR reg. 21; ICO guidance on telephone marketing: screen against TPS/CTPS within
    # 28 days before calling. Was legitimate_interest (allowed) before issue 14.
    pytest.param(
        [f(G, 1, email)], marketing, phone, False, Rule.tps_not_screened,
        id="pecr21-never-screened-counts-as-listed",
    ),
    pytest.param(
        [f(W, 2, phone)], marketing, phone, False, Rule.consent_withdrawn,
        id="telephone-opt-out",
    ),
    pytest.param([f(TL, 1)], marketing, phone, False, Rule.tps_listed, id="tps-listed"),
    pytest.param(
        [f(TL, 1), f(TW, 2)], marketing, phone, True, Rule.tps_no_objection,
        id="tps-listed-then-waiver",
    ),
    # PECR reg. 21(4): a "do not object" notice stands until withdrawn; a later screening
    # that still finds the number listed does not cancel it. Was tps_listed before issue 14.
    pytest.param(
        [f(TW, 1), f(TL, 2)], marketing, phone, True, Rule.tps_no_objection,
        id="pecr21-4-rescreen-keeps-do-not-object-notice",
    ),
    pytest.param(
        [f(TL, 2), f(TW, 3), f(W, 4, phone)], marketing, phone, False, Rule.consent_withdrawn,
        id="tps-waiver-then-opt-out",
    ),
    pytest.param(
        [f(TL, 1), f(TU, 2)], marketing, phone, True, Rule.legitimate_interest,
        id="tps-unlisted",
    ),
    pytest.param(
        [f(TU, 2), f(TL, 1)], marketing, phone, True, Rule.legitimate_interest,
        id="out-of-order-tps-old-listing",
    ),
    pytest.param(
        [f(G, 1, phone), f(TL, 2)], marketing, phone, True, Rule.consent_granted,
        id="telephone-consent-overrides-tps",
    ),
    pytest.param([f(TL, 1)], marketing, email, False, Rule.pecr_consent_required, id="tps-email"),
    pytest.param(
        [f(G, 1, email), f(R, 2, source=System.crm)], marketing, email, False, Rule.restricted,
        id="restricted",
    ),
    pytest.param([f(R, 2)], service, email, False, Rule.restricted, id="restricted-service"),
    pytest.param(
        [f(G, 1, email), f(R, 2), f(RL, 3)], marketing, email, True, Rule.consent_granted,
        id="restriction-lifted",
    ),
    pytest.param(
        [f(G, 1, email), f(RL, 3), f(R, 2)], marketing, email, True, Rule.consent_granted,
        id="out-of-order-restriction-lifted-first",
    ),
    pytest.param(
        [f(G, 1, email), f(SUP, 2)], marketing, email, False, Rule.suppressed, id="suppressed",
    ),
    pytest.param([f(SUP, 2)], service, email, False, Rule.suppressed, id="suppressed-service"),
    pytest.param(
        [f(SUP, 2), f(G, 3, email), f(RL, 4)], marketing, email, False, Rule.suppressed,
        id="suppressed-not-reactivated",
    ),
    pytest.param([f(W, 1, sms)], service, sms, True, Rule.service_message, id="service"),
    pytest.param([f(OBJ, 1)], service, email, True, Rule.service_message, id="service-objection"),
    pytest.param(
        [f(G, 1, email, purpose=analytics)], analytics, email, True, Rule.consent_granted,
        id="analytics-consent",
    ),
    pytest.param(
        [f(G, 1, email)], analytics, email, False, Rule.no_consent, id="analytics-no-consent",
    ),
    pytest.param(
        [f(G, 1, email, purpose=analytics), f(W, 2)], analytics, email, False,
        Rule.consent_withdrawn, id="withdraw-everything",
    ),
    pytest.param([f(TL, 1)], profiling, email, True, Rule.legitimate_interest, id="profiling-li"),
    # --- issue 14 point 4: a soft opt-in never overrides an explicit state (PECR reg.
    # 22(3)(c): the opt-out, once used, ends the soft opt-in; DESIGN.md section 5).
    pytest.param(
        [f(G, 1, email, basis=SOFT, soft=VALID_SOFT), f(W, 2, email),
         f(G, 3, email, basis=SOFT, soft=VALID_SOFT, event_id="sale-2")],
        marketing, email, False, Rule.consent_withdrawn,
        id="pecr22-3-later-sale-does-not-regrant-after-unsubscribe",
    ),
    pytest.param(
        [f(W, 1, sms), f(G, 2, sms, basis=SOFT, soft=VALID_SOFT)], marketing, sms, False,
        Rule.consent_withdrawn, id="pecr22-3-sale-after-stop-reply",
    ),
    pytest.param(
        [f(OBJ, 2), f(B, 3, email), f(G, 4, email, basis=SOFT, soft=VALID_SOFT)],
        marketing, email, True, Rule.consent_granted,
        id="art21-later-sale-keeps-explicit-opt-in-after-objection",
    ),
    pytest.param(
        [f(G, 1, email), f(G, 2, email, basis=SOFT, soft=VALID_SOFT)], marketing, email, True,
        Rule.consent_granted, id="later-sale-keeps-explicit-consent",
    ),
    pytest.param(
        [f(W, 1, email), f(G, 2, email, basis=SOFT, soft=VALID_SOFT), f(G, 3, email)],
        marketing, email, True, Rule.consent_granted, id="explicit-consent-reopens",
    ),
    pytest.param(
        [f(G, 1, email, basis=SOFT, soft=NO_OPT_OUT),
         f(G, 2, email, basis=SOFT, soft=VALID_SOFT, event_id="sale-2")],
        marketing, email, True, Rule.soft_opt_in_valid, id="later-sale-refreshes-soft-opt-in",
    ),
    # --- issue 14 point 2: PECR reg. 21(4) notice stands until withdrawn.
    pytest.param(
        [f(TL, 1), f(TW, 2), f(TL, 3), f(TL, 4)], marketing, phone, True,
        Rule.tps_no_objection, id="pecr21-4-daily-rescreens-keep-notice",
    ),
    pytest.param(
        [f(TL, 1), f(TW, 2), f(W, 3, phone), f(G, 4, phone)], marketing, phone, True,
        Rule.consent_granted, id="notice-withdrawn-then-explicit-consent",
    ),
    pytest.param(
        [f(W, 1, phone), f(TW, 2)], marketing, phone, False, Rule.consent_withdrawn,
        id="notice-after-opt-out-does-not-reopen",
    ),
    # --- issue 14 point 5: refused marketing cookies (PECR reg. 6) stop profiling for
    # marketing on every channel; the latest banner choice governs.
    pytest.param(
        [f(MCR, 1)], profiling, email, False, Rule.marketing_cookies_refused,
        id="pecr6-marketing-cookies-refused-blocks-profiling",
    ),
    pytest.param(
        [f(MCR, 1)], profiling, post, False, Rule.marketing_cookies_refused,
        id="marketing-cookies-refused-every-channel",
    ),
    pytest.param(
        [f(MCR, 1), f(MCA, 2)], profiling, email, True, Rule.legitimate_interest,
        id="marketing-cookies-accepted-again",
    ),
    pytest.param(
        [f(MCR, 1), f(G, 2, sms, purpose=profiling)], profiling, sms, True,
        Rule.consent_granted, id="explicit-profiling-consent-after-cookie-refusal",
    ),
    pytest.param(
        [f(G, 1, sms, purpose=profiling), f(MCR, 2)], profiling, sms, False,
        Rule.marketing_cookies_refused, id="cookie-refusal-after-profiling-consent",
    ),
    pytest.param(
        [f(G, 1, email), f(MCR, 2)], marketing, email, True, Rule.consent_granted,
        id="cookie-refusal-is-not-an-email-opt-out",
    ),
    pytest.param(
        [f(MCA, 1)], marketing, email, False, Rule.pecr_consent_required,
        id="cookie-acceptance-is-not-email-consent",
    ),
    pytest.param(
        [f(MCR, 1), f(SUP, 2)], profiling, email, False, Rule.suppressed,
        id="suppression-drops-cookie-marker",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("facts", "purpose", "channel", "allowed", "rule"), TABLE)
def test_decision_table(
    facts: list[ConsentFact], purpose: Purpose, channel: Channel, allowed: bool, rule: Rule
) -> None:
    state, _ = fold(facts)
    decision = decide(state, purpose, channel, NOW)
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.reason
    assert decision.reason


@pytest.mark.parametrize(
    ("facts", "purpose", "channel"), [pytest.param(*p.values[:3], id=p.id) for p in TABLE]
)
def test_decision_does_not_depend_on_arrival_order(
    facts: list[ConsentFact], purpose: Purpose, channel: Channel
) -> None:
    unique = list({fact.event_id: fact for fact in facts}.values())
    decisions = set()
    states = []
    for order in itertools.islice(itertools.permutations(unique), 24):
        state, _ = fold(order)
        decisions.add(decide(state, purpose, channel, NOW))
        states.append(state.model_dump(exclude={"recent_event_ids"}) if state else None)
    assert len(decisions) <= 1
    assert all(s == states[0] for s in states)


DAY = timedelta(days=1)
SCREEN_MAX = timedelta(days=28)

# (facts, now of the decision, allowed, rule): the age of the TPS screening matters.
# PECR reg. 21 with the ICO's guidance on telephone marketing: screen against TPS/CTPS at
# most 28 days before the call; unscreened or stale counts as listed.
TELEPHONE = [
    pytest.param(
        [f(TU, 0)], T0 + SCREEN_MAX, True, Rule.legitimate_interest, id="screened-28-days-ago",
    ),
    pytest.param(
        [f(TU, 0)], T0 + SCREEN_MAX + timedelta(minutes=1), False, Rule.tps_not_screened,
        id="pecr21-ico-screening-older-than-28-days",
    ),
    pytest.param(
        [f(TL, 0), f(TU, 60)], T0 + 40 * DAY, False, Rule.tps_not_screened,
        id="stale-unlisted-after-listing",
    ),
    pytest.param(
        [f(TL, 0)], T0 + 400 * DAY, False, Rule.tps_listed, id="stale-listing-still-listed",
    ),
    pytest.param(
        [f(TW, 0)], T0 + 400 * DAY, True, Rule.tps_no_objection,
        id="pecr21-4-notice-stands-without-screening",
    ),
    pytest.param(
        [f(G, 0, phone)], T0 + 400 * DAY, True, Rule.consent_granted,
        id="explicit-consent-needs-no-screening",
    ),
    pytest.param(
        [f(TU, 0)], None, False, Rule.tps_not_screened, id="no-contact-time-is-not-allowed",
    ),
    pytest.param([f(TL, 0)], None, False, Rule.tps_listed, id="no-contact-time-listed"),
    pytest.param([f(TW, 0)], None, True, Rule.tps_no_objection, id="no-contact-time-notice"),
    pytest.param([f(TU, 0)], None, True, Rule.service_message, id="service-needs-no-screening"),
]  # fmt: skip


@pytest.mark.parametrize(("facts", "now", "allowed", "rule"), TELEPHONE)
def test_telephone_screening_age(
    facts: list[ConsentFact], now: datetime | None, allowed: bool, rule: Rule
) -> None:
    state, _ = fold(facts)
    purpose = service if rule is Rule.service_message else marketing
    decision = decide(state, purpose, phone, now)
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.reason


def test_stale_screening_reason_names_the_day() -> None:
    state, _ = fold([f(TU, 0, event_id="tps-check")])
    decision = decide(state, marketing, phone, T0 + 60 * DAY)
    assert "2026-03-01" in decision.reason
    assert decision.evidence is not None
    assert decision.evidence.event_id == "tps-check"


def test_a_new_number_is_unscreened_until_screened_itself() -> None:
    """A screening and a "do not object" notice concern a number: after the number
    changed, the new one was called on the old one's (review, session 25)."""
    changed = FactKind.number_changed
    screened = [f(TU, 0, event_id="tps-old-number")]
    assert decide(fold(screened)[0], marketing, phone, NOW).allowed
    moved, changes = fold([*screened, f(changed, 10, event_id="new-number")])
    decision = decide(moved, marketing, phone, NOW)
    assert (decision.allowed, decision.rule) == (False, Rule.tps_not_screened)
    assert "number changed" in decision.reason
    assert [c.kind for c in changes][-1] is changed
    # An older screening arriving late is still of the old number; a newer one counts.
    late, _ = fold([*screened, f(changed, 10), f(TU, 5, event_id="late")])
    assert not decide(late, marketing, phone, NOW).allowed
    again, _ = fold([*screened, f(changed, 10), f(TU, 20, event_id="new-screening")])
    assert decide(again, marketing, phone, NOW).allowed
    # A notice given for the old number does not stand for the new one.
    notice = [f(TL, 0), f(TW, 1, event_id="notice")]
    assert decide(fold(notice)[0], marketing, phone, NOW).rule is Rule.tps_no_objection
    waived = decide(fold([*notice, f(changed, 10)])[0], marketing, phone, NOW)
    assert (waived.allowed, waived.rule) == (False, Rule.tps_not_screened)


def test_naive_decision_time_is_rejected() -> None:
    state, _ = fold([f(TU, 0)])
    with pytest.raises(DomainError, match="timezone-aware"):
        decide(state, marketing, phone, datetime(2026, 3, 2, 9, 0))


def test_decision_carries_the_evidence_of_the_deciding_event() -> None:
    state, _ = fold([f(G, 1, sms, event_id="ev-grant"), f(W, 5, sms, event_id="ev-stop")])
    decision = decide(state, marketing, sms)
    assert decision.evidence is not None
    assert decision.evidence.event_id == "ev-stop"
    assert decision.evidence.occurred_at == T0 + timedelta(minutes=5)
    assert decision.evidence.source is System.marketing
    assert decision.evidence.reference == "marketing.events:withdrawn:ev-stop"

    state, _ = fold([f(G, 1, email, event_id="ev-soft", basis=SOFT, soft=VALID_SOFT)])
    evidence = decide(state, marketing, email).evidence
    assert evidence is not None
    assert (evidence.event_id, evidence.basis) == ("ev-soft", LawfulBasis.soft_opt_in)


def test_soft_opt_in_reason_names_the_missing_condition() -> None:
    state, _ = fold([f(G, 1, sms, basis=SOFT, soft=NO_OPT_OUT)])
    assert "opt_out_offered" in decide(state, marketing, sms).reason


# ------------------------------------------------------------------ apply / changes


def test_grant_reports_one_change_with_metric_labels() -> None:
    state, changes = apply(None, SUBJECT, f(G, 1, email, event_id="e1"))
    assert state.status(marketing, email) is ConsentStatus.granted
    assert len(changes) == 1
    change = changes[0]
    assert (change.purpose, change.channel) == (marketing, email)
    assert (change.before, change.after) == (ConsentStatus.not_asked, ConsentStatus.granted)
    assert (change.event_id, change.occurred_at) == ("e1", T0 + timedelta(minutes=1))
    assert change.metric_labels() == {
        "purpose": "marketing",
        "channel": "email",
        "status": "granted",
    }
    assert "consent" in change.reason


def test_redelivered_event_changes_nothing() -> None:
    fact = f(G, 1, email)
    first, changes = apply(None, SUBJECT, fact)
    assert changes
    again, changes = apply(first, SUBJECT, fact)
    assert changes == []
    assert again == first


def test_redelivery_outside_the_id_window_is_still_a_no_op() -> None:
    grant = f(G, 0, email, event_id="old-grant")
    state, _ = apply(None, SUBJECT, grant)
    for n in range(RECENT_EVENT_IDS + 5):
        state, _ = apply(state, SUBJECT, f(G, n + 1, sms, event_id=f"sms-{n}"))
    assert grant.memory_key not in state.recent_event_ids
    assert len(state.recent_event_ids) == RECENT_EVENT_IDS
    after, changes = apply(state, SUBJECT, grant)
    assert changes == []
    assert after.entries == state.entries


def test_one_event_with_a_fact_per_channel_applies_each() -> None:
    """A sale means a soft opt-in on email and on SMS, both from one event id."""
    email_fact = f(G, 1, email, basis=SOFT, soft=VALID_SOFT, event_id="sale")
    sms_fact = f(G, 1, sms, basis=SOFT, soft=VALID_SOFT, event_id="sale")
    state, changes = fold([email_fact, sms_fact, sms_fact])
    assert state is not None
    assert [c.channel for c in changes] == [email, sms]
    assert state.status(marketing, sms) is ConsentStatus.granted


def test_another_systems_event_with_the_same_id_is_not_a_redelivery() -> None:
    """Event ids are unique within a system only: the CRM's grant 1001 and the marketing
    platform's unsubscribe 1001 are two events. Before, the unsubscribe was taken for a
    redelivery of the grant and dropped, and email marketing stayed allowed."""
    grant = f(G, 1, email, event_id="1001", source=System.crm)
    unsubscribe = f(FactKind.withdrawn, 2, email, event_id="1001", source=System.marketing)
    state, changes = fold([grant, unsubscribe])
    assert state is not None
    assert state.status(marketing, email) is ConsentStatus.withdrawn
    assert [c.after for c in changes] == [ConsentStatus.granted, ConsentStatus.withdrawn]


def test_a_withdrawal_under_its_grants_event_id_is_not_a_redelivery() -> None:
    """A system that reused its grant's event id for the withdrawal (P-17, then P-17):
    the withdrawal was taken for a redelivery of the grant, dropped unaudited, and email
    marketing stayed allowed (review, session 44). The same fact again still is one."""
    grant = f(G, 1, email, event_id="P-17", source=System.crm)
    withdrawal = f(W, 2, email, event_id="P-17", source=System.crm)
    state, changes = fold([grant, withdrawal, withdrawal])
    assert state is not None
    assert state.status(marketing, email) is ConsentStatus.withdrawn
    assert [c.after for c in changes] == [ConsentStatus.granted, ConsentStatus.withdrawn]


def test_late_older_event_changes_nothing_but_is_remembered() -> None:
    state, _ = fold([f(W, 5, email)])
    assert state is not None
    late = f(G, 1, email, event_id="late")
    after, changes = apply(state, SUBJECT, late)
    assert changes == []
    assert after.entries == state.entries
    assert late.memory_key in after.recent_event_ids


def test_objection_changes_every_marketing_and_profiling_channel() -> None:
    state, changes = fold([f(G, 1, email), f(OBJ, 2, event_id="obj")])
    objection_changes = [c for c in changes if c.event_id == "obj"]
    keyed = {(c.purpose, c.channel): (c.before, c.after) for c in objection_changes}
    assert keyed[(None, None)] == (None, ConsentStatus.objected)
    assert keyed[(marketing, email)] == (ConsentStatus.granted, ConsentStatus.objected)
    assert keyed[(profiling, phone)] == (ConsentStatus.not_asked, ConsentStatus.objected)
    assert len(keyed) == 1 + 2 * len(Channel)
    assert state is not None
    assert state.status(analytics, email) is ConsentStatus.not_asked


def test_regrant_with_same_status_reports_no_change_but_keeps_new_evidence() -> None:
    state, _ = fold([f(G, 1, email, event_id="a")])
    state, changes = apply(state, SUBJECT, f(G, 2, email, event_id="b"))
    assert changes == []
    entry = state.entry(marketing, email)
    assert entry is not None
    assert entry.event_id == "b"


@pytest.mark.parametrize(
    ("facts", "kinds"),
    [
        pytest.param([f(TL, 1), f(TL, 2)], [TL], id="tps-listed-once"),
        pytest.param([f(TL, 1), f(TU, 2)], [TL, TU], id="tps-listed-unlisted"),
        pytest.param([f(TL, 1), f(TW, 2)], [TL, TW], id="tps-waiver"),
        pytest.param([f(R, 1), f(R, 2), f(RL, 3)], [R, RL], id="restriction"),
        pytest.param([f(SUP, 1), f(SUP, 2), f(G, 3, email)], [SUP], id="suppression-once"),
        pytest.param([f(MCR, 1), f(MCR, 2), f(MCA, 3)], [MCR, MCA], id="marketing-cookies"),
    ],
)
def test_subject_wide_changes(facts: list[ConsentFact], kinds: list[FactKind]) -> None:
    _, changes = fold(facts)
    assert [c.kind for c in changes] == kinds
    assert changes[0].metric_labels()["status"] == str(kinds[0])


def test_suppression_drops_consent_records() -> None:
    state, _ = fold([f(G, 1, email), f(OBJ, 2), f(TL, 3), f(SUP, 4, source=System.crm)])
    assert state is not None
    assert state.suppressed
    assert state.entries == {}
    assert state.objection is None
    assert state.tps is None


def test_state_round_trips_through_json() -> None:
    facts = [
        f(G, 1, email, basis=SOFT, soft=VALID_SOFT),
        f(OBJ, 2),
        f(B, 3, sms),
        f(TL, 4),
        f(TW, 5),
        f(R, 6),
    ]
    state, _ = fold(facts)
    assert state is not None
    dumped = state.model_dump(mode="json")
    assert dumped["restricted"] is True
    assert dumped["entries"]["marketing:sms"]["status"] == "granted"
    restored = SubjectConsent.model_validate(dumped)
    assert restored == state
    assert decide(restored, marketing, sms) == decide(state, marketing, sms)


def test_state_rejects_flags_that_disagree_with_markers() -> None:
    with pytest.raises(ValidationError, match="flags disagree"):
        SubjectConsent(subject_id=SUBJECT, restricted=True)


def test_state_of_another_subject_is_refused() -> None:
    state, _ = apply(None, SUBJECT, f(G, 1, email))
    with pytest.raises(DomainError, match="another subject"):
        apply(state, "S-2", f(W, 2, email))


def test_input_state_is_not_mutated() -> None:
    state, _ = fold([f(G, 1, email)])
    assert state is not None
    snapshot = state.model_dump()
    apply(state, SUBJECT, f(OBJ, 2))
    assert state.model_dump() == snapshot


# -------------------------------------------------------------- fact validation


def test_fact_time_is_normalised_to_utc() -> None:
    bst = timezone(timedelta(hours=1))
    fact = ConsentFact(
        event_id="e",
        occurred_at=datetime(2026, 6, 1, 10, 0, tzinfo=bst),
        source=System.web,
        kind=FactKind.restricted,
        evidence="web.events:x:e",
    )
    assert fact.occurred_at == datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    assert fact.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param({"occurred_at": datetime(2026, 1, 1)}, "timezone", id="naive-time"),
        pytest.param({"channel": None}, "purpose and channel", id="grant-without-channel"),
        pytest.param({"purpose": service}, "service", id="grant-for-service"),
        pytest.param({"basis": LawfulBasis.legitimate_interest}, "basis", id="grant-bad-basis"),
        pytest.param({"basis": SOFT}, "conditions", id="soft-without-conditions"),
        pytest.param(
            {"basis": SOFT, "soft_opt_in": VALID_SOFT, "channel": phone}, "email/SMS",
            id="soft-opt-in-telephone",
        ),
        pytest.param({"evidence": "unsubscribe from jo@example.com"}, "reference", id="raw-email"),
        pytest.param({"kind": OBJ}, "every channel", id="objection-with-channel"),
        pytest.param({"kind": TL}, "telephone", id="tps-on-email"),
        pytest.param({"kind": SUP}, "subject-wide", id="suppression-with-channel"),
        pytest.param({"kind": MCR}, "subject-wide", id="cookie-choice-with-channel"),
        pytest.param({"kind": B, "channel": None, "purpose": None}, "per channel", id="opt-in-all"),
        pytest.param({"kind": "maybe"}, "kind", id="unknown-kind"),
        pytest.param({"channel": "fax"}, "channel", id="unknown-channel"),
    ],
)  # fmt: skip
def test_bad_facts_are_rejected(changes: dict[str, object], match: str) -> None:
    base: dict[str, object] = {
        "event_id": "e1",
        "occurred_at": T0,
        "source": System.marketing,
        "kind": G,
        "purpose": marketing,
        "channel": email,
        "basis": LawfulBasis.consent,
        "evidence": "marketing.events:Subscribed:e1",
    }
    with pytest.raises(ValidationError, match=match):
        ConsentFact.model_validate(base | changes)


def test_fact_round_trips_through_json() -> None:
    fact = f(G, 1, email, basis=SOFT, soft=VALID_SOFT)
    assert ConsentFact.model_validate(fact.model_dump(mode="json")) == fact


def test_objection_holds_against_an_older_grant_in_stored_state() -> None:
    """Defence in depth: a stored state with a grant older than the objection stays blocked."""
    granted, _ = fold([f(G, 1, email)])
    objected, _ = fold([f(OBJ, 2)])
    assert granted is not None
    assert objected is not None
    mixed = SubjectConsent.model_validate(
        granted.model_dump(mode="json")
        | {"objection": objected.model_dump(mode="json")["objection"]}
    )
    assert decide(mixed, marketing, email).rule is Rule.objection_absolute
