"""The simulated business day: deterministic, and honest about PECR soft opt-ins.

Since OrderPlaced's soft opt-in conditions default to "not offered", the simulation says
explicitly which orders offered the opt-out: the web shop's checkout does, orders the
trade desk places against a quote and the backfilled history do not.
"""

from __future__ import annotations

import datetime as dt

import pytest

from privops.connectors.reference import seed_customers
from privops.core.records import OrderPlaced, QuoteRequested
from privops.tools.simulate import business_day

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


def test_backfilled_orders_claim_no_soft_opt_in(events: list[tuple[object, object]]) -> None:
    history = [o for o in _orders(events) if not o.order_id.startswith(f"ORD-{DAY:%Y%m%d}")]
    assert history
    assert not any(o.marketing_opt_out_offered or o.similar_products_marketing for o in history)
