"""Row builders: what each fake system's tables hold about one fake customer.

The rows carry the same identifiers the event generator publishes
(``FakeCustomer.identifiers``), so tasks privops builds from its identity map find them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from privops.connectors.reference.people import FakeConsent, FakeCustomer, FakeOrder
from privops.core.vocab import Channel, System

Row = dict[str, Any]
Rows = Iterator[tuple[str, Row]]

_PAGES = ("/", "/led-panels", "/high-bays", "/basket", "/checkout", "/account", "/trade")


def seed_rows(system: System, customers: Sequence[FakeCustomer]) -> Rows:
    """The seed rows of ``system`` for every customer it holds, as (table, row)."""
    for c in customers:
        if c.in_system(system):
            yield from _ROW_BUILDERS[system](c)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _contact(c: FakeCustomer, **keys: str) -> Row:
    """A system's own record of the person (orders, crm and marketing hold the same one)."""
    return {
        **keys,
        "name": c.name,
        "email": c.email,
        "phone": c.phone,
        "address": c.address,
        "created_at": iso(c.since),
    }


def _orders_rows(c: FakeCustomer) -> Rows:
    yield "customers", _contact(c, customer_id=c.subject_id, account_number=c.account_number)
    for o in c.orders:
        yield from _order_rows(c, o)
    if c.credit:
        yield (
            "credit_accounts",
            {
                "credit_account": c.credit.account_number,
                "customer_id": c.subject_id,
                "opened_at": iso(c.credit.opened_at),
                "credit_limit_pence": c.credit.limit_pence,
                "balance_pence": c.credit.balance_pence,
                "overdue_pence": c.credit.overdue_pence,
                "status": "arrears" if c.credit.overdue_pence else "open",
                "reference_agency": c.credit.agency,
            },
        )


def _order_rows(c: FakeCustomer, o: FakeOrder) -> Rows:
    """An order, its invoice (VAT at 20%) and its payment."""
    yield (
        "orders",
        {
            "order_id": o.order_id,
            "customer_id": c.subject_id,
            "placed_at": iso(o.placed_at),
            "sku": o.sku,
            "quantity": o.quantity,
            "total_pence": o.total_pence,
            "currency": "GBP",
            "delivery_name": c.name,
            "delivery_address": c.address,
            "delivery_phone": c.phone,
        },
    )
    net = round(o.total_pence / 1.2)
    yield (
        "invoices",
        {
            "invoice_id": o.invoice_id,
            "order_id": o.order_id,
            "customer_id": c.subject_id,
            "issued_at": iso(o.placed_at + timedelta(hours=2)),
            "net_pence": net,
            "vat_pence": o.total_pence - net,
            "billing_name": c.name,
            "billing_address": c.address,
        },
    )
    yield (
        "payments",
        {
            "payment_id": o.payment_id,
            "invoice_id": o.invoice_id,
            "customer_id": c.subject_id,
            "paid_at": iso(o.placed_at + timedelta(days=1)),
            "amount_pence": o.total_pence,
            "method": o.method,
            "card_last4": o.card_last4,
        },
    )


def _crm_rows(c: FakeCustomer) -> Rows:
    keys = {"contact_id": c.contact_id, "customer_id": c.subject_id}
    yield "contacts", _contact(c, **keys)
    for m in c.messages:
        yield (
            "support_messages",
            {
                **keys,
                "message_id": m.message_id,
                "received_at": iso(m.received_at),
                "medium": m.medium,
                "subject": m.topic,
                "body": f"Hello, this is {c.first_name}. {m.topic}: please call me on {c.phone}.",
            },
        )
    for consent in c.consents:
        yield (
            "preferences",
            {
                **keys,
                "preference_id": f"{c.contact_id}-{consent.channel.value}",
                "channel": consent.channel.value,
                "status": "granted" if consent.granted else "not_asked",
                "updated_at": iso(c.since),
            },
        )


def _telephony_rows(c: FakeCustomer) -> Rows:
    yield "callers", {"caller_ref": c.caller_ref, "name": c.name, "phone": c.phone}
    for call in c.calls:
        yield (
            "call_recordings",
            {
                "call_id": call.call_id,
                "caller_ref": c.caller_ref,
                "caller_number": c.phone,
                "started_at": iso(call.started_at),
                "duration_seconds": call.duration_seconds,
                "direction": call.direction,
                "recording_uri": f"recordings/{call.call_id}.wav",
            },
        )


def _marketing_rows(c: FakeCustomer) -> Rows:
    ref = c.subscriber_ref
    assert ref is not None  # in_system(marketing) holds only subscribers
    yield "subscribers", _contact(c, subscriber_ref=ref, customer_id=c.subject_id)
    for consent in c.consents:
        yield "subscriptions", _subscription(c, ref, consent)
    for k, event in enumerate(("sent", "opened", "clicked")[: 1 + c.number % 3]):
        yield (
            "campaign_activity",
            {
                "activity_id": f"{ref}-{k}",
                "subscriber_ref": ref,
                "campaign_id": "CMP-SPRING-PANELS",
                "event": event,
                "at": iso(c.since + timedelta(days=30, minutes=k)),
            },
        )


def _subscription(c: FakeCustomer, ref: str, consent: FakeConsent) -> Row:
    return {
        "subscription_id": f"{ref}-{consent.channel.value}",
        "subscriber_ref": ref,
        "channel": consent.channel.value,
        "status": "subscribed" if consent.granted else "unsubscribed",
        "basis": "soft_opt_in" if consent.soft_opt_in else "consent",
        "tps_listed": int(c.tps_listed and consent.channel is Channel.telephone),
        "updated_at": iso(c.since),
    }


def _web_rows(c: FakeCustomer) -> Rows:
    last_seen = c.orders[-1].placed_at if c.orders else c.since
    yield (
        "web_accounts",
        {
            "customer_id": c.subject_id,
            "email": c.email,
            "name": c.name,
            "created_at": iso(c.since),
            "last_login_at": iso(last_seen),
        },
    )
    yield (
        "cookies",
        {
            "cookie_id": c.cookie_id,
            "customer_id": c.subject_id,
            "first_seen": iso(last_seen - timedelta(days=90)),
            "last_seen": iso(last_seen),
            "analytics_consent": int(c.cookie_analytics),
            "marketing_consent": int(c.cookie_marketing),
            "banner_version": "3",
        },
    )
    for v in range(c.page_views):
        yield (
            "page_views",
            {
                "view_id": f"{c.cookie_id}-{v}",
                "cookie_id": c.cookie_id,
                "customer_id": c.subject_id,
                "path": _PAGES[(c.number + v) % len(_PAGES)],
                "viewed_at": iso(last_seen - timedelta(minutes=7 * v)),
            },
        )


def _cctv_rows(c: FakeCustomer) -> Rows:
    for clip in c.clips:
        yield (
            "clips",
            {
                "clip_id": clip.clip_id,
                "visitor_ref": c.visitor_ref,
                "customer_id": c.subject_id,
                "camera": clip.camera,
                "site": clip.site,
                "captured_at": iso(clip.captured_at),
                "footage_uri": f"footage/{clip.clip_id}.mp4",
                "investigation_id": clip.investigation_id,
            },
        )
        if clip.investigation_id:
            closed = None if clip.investigation_open else clip.captured_at + timedelta(days=4)
            yield (
                "investigations",
                {
                    "investigation_id": clip.investigation_id,
                    "opened_at": iso(clip.captured_at + timedelta(hours=3)),
                    "closed_at": iso(closed),
                    "reason": "reported theft from trade counter",
                },
            )


_ROW_BUILDERS: dict[System, Callable[[FakeCustomer], Rows]] = {
    System.orders: _orders_rows,
    System.crm: _crm_rows,
    System.telephony: _telephony_rows,
    System.marketing: _marketing_rows,
    System.web: _web_rows,
    System.cctv: _cctv_rows,
}
