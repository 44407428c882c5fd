"""PECR reg. 22(3)(a): a sale's soft opt-in covers only the contact details obtained in
the course of that sale (review, session 27: an order that collected only an email
made SMS marketing lawful to a number given elsewhere)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from privops.core import records as r
from privops.core.consent import FactKind, apply_all, decide
from privops.core.facts import SALE_SOFT_OPT_IN, consent_facts
from privops.core.vocab import Channel, LawfulBasis, Purpose, System

T0 = datetime(2026, 7, 1, 10, tzinfo=UTC)
M = Purpose.marketing
EMAIL, PHONE = "ann@example.com", "07700900123"


def sale(*, email: str | None, phone: str | None, **flags: bool) -> r.OrderPlaced:
    conditions = {"marketing_opt_out_offered": True, "similar_products_marketing": True}
    return r.OrderPlaced(
        event_id="o-1",
        occurred_at=T0,
        source=System.orders,
        subject_id="S1",
        identifiers=r.Identifiers(customer_id="C-1", email=email, phone=phone),
        order_id="ORD-1",
        total_pence=1000,
        **(conditions | flags),
    )


@pytest.mark.parametrize(
    ("email", "phone", "granted"),
    [
        (EMAIL, None, [Channel.email]),
        (None, PHONE, [Channel.sms]),
        (EMAIL, PHONE, [Channel.email, Channel.sms]),
        (None, None, []),
        ("", "", []),
    ],
    ids=["email-only", "phone-only", "both", "neither", "empty-values"],
)
def test_a_sale_grants_the_soft_opt_in_only_on_channels_it_collected_a_detail_for(
    email: str | None, phone: str | None, granted: list[Channel]
) -> None:
    facts = consent_facts(sale(email=email, phone=phone))
    assert [f.channel for f in facts] == granted
    for fact in facts:
        assert (fact.kind, fact.purpose) == (FactKind.granted, M)
        assert fact.basis is LawfulBasis.soft_opt_in
        assert fact.soft_opt_in == SALE_SOFT_OPT_IN  # the session 25 conditions, all three


def test_an_email_only_sale_leaves_sms_marketing_needing_consent() -> None:
    state, _ = apply_all(None, "S1", consent_facts(sale(email=EMAIL, phone=None)))
    now = T0 + timedelta(days=1)
    by_email = decide(state, M, Channel.email, now=now)
    by_sms = decide(state, M, Channel.sms, now=now)
    assert (by_email.allowed, by_email.rule.value) == (True, "soft_opt_in_valid")
    assert (by_sms.allowed, by_sms.rule.value) == (False, "pecr_consent_required")


@pytest.mark.parametrize(("email", "phone"), [(EMAIL, None), (None, None)])
def test_a_ticked_opt_out_refuses_email_and_sms_whatever_the_sale_collected(
    email: str | None, phone: str | None
) -> None:
    facts = consent_facts(sale(email=email, phone=phone, marketing_opt_out_ticked=True))
    assert [(f.kind, f.channel) for f in facts] == [
        (FactKind.withdrawn, Channel.email),
        (FactKind.withdrawn, Channel.sms),
    ]


@pytest.mark.parametrize(
    "flags",
    [{"marketing_opt_out_offered": False}, {"similar_products_marketing": False}],
    ids=["opt-out-not-offered", "not-similar-products"],
)
def test_a_sale_with_a_detail_but_missing_conditions_still_grants_nothing(
    flags: dict[str, bool],
) -> None:
    assert consent_facts(sale(email=EMAIL, phone=PHONE, **flags)) == []


def quote(**flags: bool) -> r.QuoteRequested:
    return r.QuoteRequested(
        event_id="q-1",
        occurred_at=T0,
        source=System.orders,
        subject_id="S1",
        identifiers=r.Identifiers(customer_id="C-1", email=EMAIL),
        quote_id="Q-1",
        **flags,
    )


def test_negotiations_for_a_sale_give_the_soft_opt_in_as_a_sale_does() -> None:
    """PECR reg. 22(3)(a): "in the course of the sale or negotiations for the sale"
    (DESIGN.md section 5: a sale or negotiation event). Before session 33 a quote
    request gave none, whatever it said (contract review)."""
    offered = {"marketing_opt_out_offered": True, "similar_products_marketing": True}
    (fact,) = consent_facts(quote(**offered))
    assert (fact.kind, fact.channel, fact.basis) == (
        FactKind.granted,
        Channel.email,
        LawfulBasis.soft_opt_in,
    )
    assert fact.soft_opt_in == SALE_SOFT_OPT_IN
    assert consent_facts(quote()) == []  # absent: not offered, no soft opt-in from silence
    assert consent_facts(quote(marketing_opt_out_offered=True)) == []
    ticked = consent_facts(quote(**offered, marketing_opt_out_ticked=True))
    assert [(f.kind, f.channel) for f in ticked] == [
        (FactKind.withdrawn, Channel.email),
        (FactKind.withdrawn, Channel.sms),
    ]
