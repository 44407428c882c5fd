"""Store specs: each fake system's tables, the category each holds, how subjects are found.

A spec is data the store interprets (``privops.connectors.reference.store``): which
identifier kinds a table answers (``lookups``), which columns are contact data to null
when a row is kept but its contact data erased, what ``rectify`` may change (a data
map field -> its column), a system's own hold (CCTV under an open investigation), and
for deletion by age the column saying when a row was collected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from privops.core.vocab import Category, System


@dataclass(frozen=True)
class SearchSpec:
    """How a table is searched by an access request's details (privops.core.search):
    rows whose ``at`` column falls in the day and hours given, and, with a place given,
    whose ``places`` columns mention it. Only the ``shown`` columns of a row found so
    are exported: a clip found by a search is filed under whoever the system took it to
    be, if anyone, and that is not the subject's to see."""

    at: str
    places: tuple[str, ...]
    shown: tuple[str, ...]


@dataclass(frozen=True)
class TableSpec:
    """One table holding subject data of one category.

    ``hold``: a condition on a row the system's own hold keeps (erasure and deletion by
    age alike). ``collected``: the column saying when the row was collected, which the
    data map's periods ``from: collected`` count from (deletion by age); a table without
    one is never deleted by age. ``concluded_hold``: a condition with one parameter, the
    earliest conclusion still kept: rows its hold kept and that stay kept for a while
    after it concludes (the data map's ``investigation_hold_plus_days``).
    ``not_portable``: columns a portability copy leaves out, being what the system
    worked out or others told it, not what the subject gave (UK GDPR Art. 20(1)).
    """

    name: str
    category: Category
    columns: str
    lookups: Mapping[str, str] = field(default_factory=dict)
    contact_columns: tuple[str, ...] = ()
    rectify: Mapping[str, str] = field(default_factory=dict)
    hold: str | None = None
    collected: str | None = None
    concluded_hold: str | None = None
    searched: SearchSpec | None = None
    not_portable: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoreSpec:
    """A system's schema: ``key`` (the system's own subject key) is a column of every table."""

    system: System
    key: str
    tables: tuple[TableSpec, ...]
    extra_ddl: tuple[str, ...] = ()
    hold_reason: str = ""

    @property
    def categories(self) -> tuple[Category, ...]:
        return tuple(dict.fromkeys(t.category for t in self.tables))


def _ref(column: str, *aliases: str, **others: str) -> dict[str, str]:
    """Lookups: ``column`` answers its own name and ``aliases``; ``others`` map kind -> column.

    A system's own key is known under several identifier kinds (``system_ref`` always).
    """
    return {column: column, **dict.fromkeys(aliases, column), **others}


_CONTACT_RECTIFY = {"name": "name", "email": "email", "phone": "phone", "address": "address"}


def _contact_table(name: str, key_columns: str, lookups: Mapping[str, str]) -> TableSpec:
    """A system's own record of the person: found by email and phone too, all rectifiable."""
    return TableSpec(
        name,
        Category.contact,
        f"{key_columns}, name TEXT, email TEXT, phone TEXT, address TEXT, created_at TEXT",
        lookups={**lookups, "email": "email", "phone": "phone"},
        rectify=_CONTACT_RECTIFY,
    )


_BY_CUSTOMER = _ref("customer_id")

SPECS: dict[System, StoreSpec] = {
    System.orders: StoreSpec(
        System.orders,
        key="customer_id",
        tables=(
            _contact_table(
                "customers",
                "customer_id TEXT PRIMARY KEY, account_number TEXT",
                _ref("account_number", "system_ref", customer_id="customer_id"),
            ),
            TableSpec(
                "orders",
                Category.purchases,
                "order_id TEXT PRIMARY KEY, customer_id TEXT, placed_at TEXT, sku TEXT,"
                " quantity INTEGER, total_pence INTEGER, currency TEXT, delivery_name TEXT,"
                " delivery_address TEXT, delivery_phone TEXT",
                lookups=_BY_CUSTOMER,
                contact_columns=("delivery_name", "delivery_address", "delivery_phone"),
                rectify={c: c for c in ("delivery_name", "delivery_address", "delivery_phone")},
            ),
            TableSpec(
                "invoices",
                Category.purchases,
                "invoice_id TEXT PRIMARY KEY, order_id TEXT, customer_id TEXT, issued_at TEXT,"
                " net_pence INTEGER, vat_pence INTEGER, billing_name TEXT, billing_address TEXT",
                lookups=_BY_CUSTOMER,
            ),
            TableSpec(
                "payments",
                Category.payment,
                "payment_id TEXT PRIMARY KEY, invoice_id TEXT, customer_id TEXT, paid_at TEXT,"
                " amount_pence INTEGER, method TEXT, card_last4 TEXT",
                lookups=_BY_CUSTOMER,
            ),
            TableSpec(
                "credit_accounts",
                Category.credit,
                "credit_account TEXT PRIMARY KEY, customer_id TEXT, opened_at TEXT,"
                " credit_limit_pence INTEGER, balance_pence INTEGER, overdue_pence INTEGER,"
                " status TEXT, reference_agency TEXT",
                lookups=_ref("customer_id", account_number="credit_account"),
                # Amounts arrive in pounds ("120.50"); the store keeps pence.
                rectify={
                    "credit_limit": "credit_limit_pence",
                    "account_balance": "balance_pence",
                    "overdue_balance": "overdue_pence",
                    "default_status": "status",
                },
            ),
        ),
    ),
    System.crm: StoreSpec(
        System.crm,
        key="contact_id",
        tables=(
            _contact_table(
                "contacts",
                "contact_id TEXT PRIMARY KEY, customer_id TEXT",
                _ref("contact_id", "system_ref", customer_id="customer_id"),
            ),
            TableSpec(
                "support_messages",
                Category.interactions,
                "message_id TEXT PRIMARY KEY, contact_id TEXT, customer_id TEXT,"
                " received_at TEXT, medium TEXT, subject TEXT, body TEXT",
                lookups=_ref("contact_id", "system_ref", customer_id="customer_id"),
                collected="received_at",
            ),
            TableSpec(
                "preferences",
                Category.marketing_preferences,
                "preference_id TEXT PRIMARY KEY, contact_id TEXT, customer_id TEXT,"
                " channel TEXT, status TEXT, updated_at TEXT",
                lookups=_ref("contact_id", "system_ref", customer_id="customer_id"),
            ),
        ),
    ),
    System.telephony: StoreSpec(
        System.telephony,
        key="caller_ref",
        tables=(
            TableSpec(
                "callers",
                Category.contact,
                "caller_ref TEXT PRIMARY KEY, name TEXT, phone TEXT",
                lookups=_ref("caller_ref", "contact_id", "system_ref", phone="phone"),
                rectify={"name": "name", "phone": "phone"},
            ),
            TableSpec(
                "call_recordings",
                Category.interactions,
                "call_id TEXT PRIMARY KEY, caller_ref TEXT, caller_number TEXT,"
                " started_at TEXT, duration_seconds INTEGER, direction TEXT, recording_uri TEXT",
                lookups=_ref("caller_ref", "contact_id", "system_ref", phone="caller_number"),
                contact_columns=("caller_number",),
                collected="started_at",
            ),
        ),
    ),
    System.marketing: StoreSpec(
        System.marketing,
        key="subscriber_ref",
        tables=(
            _contact_table(
                "subscribers",
                "subscriber_ref TEXT PRIMARY KEY, customer_id TEXT",
                _ref("subscriber_ref", "contact_id", "system_ref", customer_id="customer_id"),
            ),
            TableSpec(
                "subscriptions",
                Category.marketing_preferences,
                "subscription_id TEXT PRIMARY KEY, subscriber_ref TEXT, channel TEXT,"
                " status TEXT, basis TEXT, tps_listed INTEGER, updated_at TEXT",
                lookups=_ref("subscriber_ref", "system_ref"),
                # our lawful basis, and the TPS register's answer: not the subject's
                not_portable=("basis", "tps_listed"),
            ),
            TableSpec(
                "campaign_activity",
                Category.marketing_preferences,
                "activity_id TEXT PRIMARY KEY, subscriber_ref TEXT, campaign_id TEXT,"
                " event TEXT, at TEXT",
                lookups=_ref("subscriber_ref", "system_ref"),
            ),
        ),
    ),
    System.web: StoreSpec(
        System.web,
        key="customer_id",
        tables=(
            TableSpec(
                "web_accounts",
                Category.contact,
                "customer_id TEXT PRIMARY KEY, email TEXT, name TEXT, created_at TEXT,"
                " last_login_at TEXT",
                lookups=_ref("customer_id", email="email"),
                rectify={"name": "name", "email": "email"},
            ),
            TableSpec(
                "cookies",
                Category.web,
                "cookie_id TEXT PRIMARY KEY, customer_id TEXT, first_seen TEXT, last_seen TEXT,"
                " analytics_consent INTEGER, marketing_consent INTEGER, banner_version TEXT",
                lookups=_ref("cookie_id", "device_id", "system_ref", customer_id="customer_id"),
                # A cookie is read again at every visit: its identifier was last collected
                # when it was last seen, and a cookie still in use is not 13 months old.
                collected="last_seen",
            ),
            TableSpec(
                "page_views",
                Category.web,
                "view_id TEXT PRIMARY KEY, cookie_id TEXT, customer_id TEXT, path TEXT,"
                " viewed_at TEXT",
                lookups=_ref("cookie_id", "system_ref", customer_id="customer_id"),
                collected="viewed_at",
            ),
        ),
    ),
    System.cctv: StoreSpec(
        System.cctv,
        key="visitor_ref",
        tables=(
            TableSpec(
                "clips",
                Category.cctv,
                "clip_id TEXT PRIMARY KEY, visitor_ref TEXT, customer_id TEXT, camera TEXT,"
                " site TEXT, captured_at TEXT, footage_uri TEXT, investigation_id TEXT",
                lookups=_ref("visitor_ref", "system_ref", "camera_ref", customer_id="customer_id"),
                # Open until it is known to be closed: a closing time that is not one
                # (SQLite cannot read it) keeps the footage, never deletes it early.
                hold="investigation_id IN (SELECT investigation_id FROM investigations"
                " WHERE closed_at IS NULL OR julianday(closed_at) IS NULL)",
                collected="captured_at",
                concluded_hold="investigation_id IN (SELECT investigation_id FROM"
                " investigations WHERE julianday(closed_at) >= julianday(?))",
                searched=SearchSpec(
                    at="captured_at",
                    places=("site", "camera"),
                    shown=("clip_id", "camera", "site", "captured_at", "footage_uri"),
                ),
            ),
        ),
        extra_ddl=(
            "CREATE TABLE IF NOT EXISTS investigations (investigation_id TEXT PRIMARY KEY,"
            " opened_at TEXT, closed_at TEXT, reason TEXT)",
        ),
        hold_reason="legal_claims: footage under an open investigation (Art. 17(3)(e))",
    ),
}
