"""The simulated business day: deterministic, and honest about PECR soft opt-ins.

Since OrderPlaced's soft opt-in conditions default to "not offered", the simulation says
explicitly which orders offered the opt-out: the web shop's checkout does, orders the
trade desk places against a quote and the backfilled history do not.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.connectors.reference import seed_customers
from privops.core.facts import SOFT_OPT_IN_CHANNELS, check_disclosure
from privops.core.records import (
    ConsentGiven,
    ConsentWithdrawn,
    CreditAccountApplied,
    DataDisclosed,
    OrderPlaced,
    PaymentRecorded,
    QuoteRequested,
    TpsStatusChecked,
)
from privops.core.vocab import LawfulBasis
from privops.tools.simulate import business_day

REAL_DATAMAP = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"

DAY = dt.date(2026, 3, 2)


@pytest.fixture(scope="module")
def events() -> list[tuple[object, object]]:
    return list(business_day(seed_customers(60), seed=7, date=DAY))


def _orders(events: list[tuple[object, object]]) -> list[OrderPlaced]:
    return [e for _, e in events if isinstance(e, OrderPlaced)]


def test_the_day_is_reproducible(events: list[tuple[object, object]]) -> None:
    assert business_day(seed_customers(60), seed=7, date=DAY) == events


def test_web_shop_orders_offer_the_opt_out_and_quoted_orders_do_not(
    events: list[tuple[object, object]],
) -> None:
    quoted = {e.quote_id.removeprefix("QUO-") for _, e in events if isinstance(e, QuoteRequested)}
    today = [o for o in _orders(events) if o.order_id.startswith(f"ORD-{DAY:%Y%m%d}")]
    web = [o for o in today if o.order_id.removeprefix("ORD-") not in quoted]
    trade = [o for o in today if o.order_id.removeprefix("ORD-") in quoted]
    assert web, "the day has web shop orders"
    assert trade, "the day has orders placed against a quote"
    for order in web:
        assert order.marketing_opt_out_offered
        assert order.similar_products_marketing
    for order in trade:
        assert not order.marketing_opt_out_offered
        assert not order.similar_products_marketing
        assert not order.marketing_opt_out_ticked
    assert any(o.marketing_opt_out_ticked for o in web), "some customers tick the box"


def test_a_backfilled_soft_opt_in_comes_from_the_first_sale_only(
    events: list[tuple[object, object]],
) -> None:
    """A soft opt-in arises only from a sale (DESIGN.md section 5): the marketing store's
    soft opt-ins are told by the customer's first order, never by a ConsentGiven."""
    history = [o for o in _orders(events) if not o.order_id.startswith(f"ORD-{DAY:%Y%m%d}")]
    claiming = {o.subject_id for o in history if o.marketing_opt_out_offered}
    soft = {
        c.subject_id
        for c in seed_customers(60)
        if any(x.granted and x.soft_opt_in for x in c.consents)
    }
    assert soft
    assert claiming == soft
    firsts = {o.subject_id: o for o in reversed(history)}  # the earliest order each
    assert all(firsts[s].marketing_opt_out_offered for s in soft)
    assert sum(o.marketing_opt_out_offered for o in history) == len(soft)
    given = [e for _, e in events if isinstance(e, ConsentGiven)]
    assert given
    assert all(e.basis is LawfulBasis.consent for e in given)


def test_systems_report_what_they_disclosed_and_the_data_map_declares_it(
    events: list[tuple[object, object]],
) -> None:
    """Art. 19 needs the actual recipients: card payments go to the processor, credit
    searches to the agency; every disclosure passes the ingest check (no dead letters)."""
    datamap = load_datamap(REAL_DATAMAP)
    disclosed = [e for _, e in events if isinstance(e, DataDisclosed)]
    card_payments = [e for _, e in events if isinstance(e, PaymentRecorded) and e.method == "card"]
    credit = [e for _, e in events if isinstance(e, CreditAccountApplied)]
    assert card_payments
    assert credit
    refs = {d.recipient_ref for d in disclosed}
    assert {f"PSP-{p.payment_id}" for p in card_payments} <= refs
    assert len([d for d in disclosed if d.recipient == "Credit reference agencies"]) == len(credit)
    for d in disclosed:
        check_disclosure(datamap, d)


def test_every_subscriber_was_screened_against_tps_within_a_week(
    events: list[tuple[object, object]],
) -> None:
    """PECR reg. 21 / ICO: screen within 28 days of a call; the simulated marketing system
    screens each subscriber weekly, on their own weekday."""
    checks = [e for _, e in events if isinstance(e, TpsStatusChecked)]
    assert checks
    assert all(0 <= (DAY - e.occurred_at.date()).days < 7 for e in checks)
    assert len({e.subject_id for e in checks}) == len(checks)  # one screening each


def test_today_is_published_only_up_to_now() -> None:
    """A system publishes what happened, never what will: privops dead-letters events
    dated ahead of its clock, and today's 08:00-18:00 business was stamped up to 18:00."""
    before = dt.datetime.now(dt.UTC)
    today = business_day(seed_customers(40), seed=7, date=before.date())
    assert today
    assert max(event.occurred_at for _, event in today) <= dt.datetime.now(dt.UTC)


def test_a_soft_opt_in_channel_the_store_does_not_hold_is_opted_out_after_the_sale(
    events: list[tuple[object, object]],
) -> None:
    """A sale's soft opt-in covers email and SMS (PECR reg. 22); a customer the store
    holds by soft opt-in on email but not on SMS opted out of SMS, and the simulated
    systems say so (review, session 25: privops answered SMS 'granted')."""
    checked = 0
    for customer in seed_customers(60):
        if not any(x.granted and x.soft_opt_in for x in customer.consents):
            continue
        mine = [e for _, e in events if getattr(e, "subject_id", None) == customer.subject_id]
        sale = next(e for e in mine if isinstance(e, OrderPlaced) and e.marketing_opt_out_offered)
        for consent in customer.consents:
            if consent.channel not in SOFT_OPT_IN_CHANNELS or consent.granted:
                continue
            opted_out = [
                e
                for e in mine
                if isinstance(e, ConsentWithdrawn)
                and e.channel is consent.channel
                and e.occurred_at > sale.occurred_at
            ]
            assert opted_out, (customer.subject_id, consent.channel)
            checked += 1
    assert checked
