"""Reference connectors: six fake business systems over SQLite, built on the connector SDK.

Each system (orders, crm, telephony, marketing, web, cctv) is one SQLite file under a
data dir, seeded deterministically with fake customers (``seed_customers``), so an
erasure really deletes rows, a restriction really flags them and an export really writes
a file. The event generator (``privops.tools.simulate``) publishes events with the same
identifiers, so tasks privops builds from its identity map find these rows.

Fake data only: emails at example.com, phone numbers in Ofcom's drama range
(+44 7700 900xxx), invented addresses. Customer profiles by number (``CUST-0001`` is 1):
- n % 10 == 0: lapsed customer, every order older than 6 years (nothing to keep);
- n % 4 == 1: open credit account; n % 8 == 1 also owes an overdue balance (debt);
- n % 6 == 1: CCTV clips; n % 12 == 1 one under an OPEN investigation, n % 12 == 7 under
  a closed one (so CUST-0001 has recent invoices, debt and footage on hold);
- n % 3 != 0: marketing subscriber; n % 5 == 2 email by soft opt-in; n % 5 == 4 TPS-listed;
- odd n: call recordings; every customer has a web account, a cookie and page views.

What the stores do with a task:
- erase: rows of ``task.categories`` (all the system's categories when empty) are
  DELETED, except categories in ``task.keep``, which stay; when contact data is erased
  but a row is kept (an order kept as a financial record), the row's own contact
  columns (delivery name/address/phone, a recording's caller number) are nulled.
  Invoices keep their billing name and address: the law requires them on the record.
  CCTV clips under an open investigation are also kept by the system's own hold.
  Answer: retained (kept categories and their grounds) when anything with rows was kept,
  else completed (rows deleted + anonymised), not_found when the identifiers match nothing.
- restrict / lift_restriction: set / clear ``restricted`` on every row of the subject.
- rectify: ``task.changes`` (name, email, phone, address) applied where the system has them.
- export: ``<data dir>/exports/<request_id>/<system>.json`` with every row of the subject;
  answer completed with ExportReference(location, record_count, checksum="sha256:<hex>").
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, ClassVar

from privops.connectors.sdk import Connector, Outcome, TransientError
from privops.core.errors import DomainError
from privops.core.identity import normalise_email, normalise_phone
from privops.core.records import (
    Erase,
    Export,
    ExportReference,
    LiftRestriction,
    Rectify,
    Restrict,
    Retention,
    Task,
)
from privops.core.vocab import Category, Channel, System

MAX_CUSTOMERS = 999

# ---------------------------------------------------------------------------- fake people

FIRST_NAMES = (
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy",
    "Charlie", "Lily", "Leo", "Freya", "Arthur", "Grace", "Muhammad", "Sophia", "Oscar",
    "Rosie", "Alfie", "Evie", "Thomas", "Poppy", "Archie", "Emily", "Henry", "Ella",
    "Joshua", "Florence", "William", "Sienna", "Jacob", "Daisy", "Theo", "Aisha", "Rhys",
    "Ffion", "Callum", "Niamh", "Priya", "Arjun", "Chloe", "Owen", "Zara", "Hamish",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
    "Patel", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts",
    "Green", "Hall", "Thomas", "Clarke", "Jackson", "Wood", "Harris", "Edwards", "Turner",
    "Martin", "Cooper", "Hill", "Ward", "Hughes", "Moore", "King", "Harrison", "Lewis",
    "Baker", "Lee", "Allen", "Morris", "Khan", "Scott", "Watson", "Parker", "Bennett",
    "Young", "Price", "Mitchell", "Kaur", "Singh", "O'Brien", "MacDonald", "Jenkins",
)  # fmt: skip
STREETS = (
    "High Street", "Station Road", "Church Lane", "Victoria Road", "Park Avenue",
    "Mill Lane", "The Green", "Manor Road", "Kings Road", "Queens Drive", "London Road",
    "Orchard Close", "Meadow Way", "Springfield Road", "Windsor Gardens", "Albert Street",
)  # fmt: skip
TOWNS = (
    ("Braintree", "CM7"), ("Ruislip", "HA4"), ("Chelmsford", "CM1"), ("Watford", "WD17"),
    ("Reading", "RG1"), ("Leeds", "LS6"), ("Bristol", "BS3"), ("Croydon", "CR0"),
    ("Harrow", "HA1"), ("Colchester", "CO1"), ("Slough", "SL1"), ("Luton", "LU2"),
    ("Cardiff", "CF10"), ("Glasgow", "G12"), ("Norwich", "NR2"), ("Derby", "DE1"),
)  # fmt: skip
PRODUCTS = (
    ("LED-PNL-600", "600x600 LED panel 40W", 2899),
    ("LED-HB-150", "150W LED high bay", 8950),
    ("LED-BT-5FT", "5ft LED batten 50W", 1875),
    ("LED-DL-8W", "8W fire-rated downlight", 695),
    ("LED-FL-100", "100W LED floodlight", 4420),
    ("LED-STR-5M", "5m LED strip 24V", 1260),
    ("LED-EM-BH", "Emergency bulkhead 3h", 2310),
)
CAMERAS = ("CAM-01 trade counter", "CAM-02 car park", "CAM-03 loading bay", "CAM-04 entrance")
SITES = ("Ruislip HQ", "Braintree depot")
SUPPORT_TOPICS = (
    "Delivery date for order",
    "Driver compatibility question",
    "Return of faulty panel",
    "Invoice copy request",
    "Trade account query",
    "Emergency lighting test schedule",
)


@dataclass(frozen=True)
class FakeOrder:
    order_id: str
    invoice_id: str
    payment_id: str
    placed_at: datetime
    sku: str
    quantity: int
    total_pence: int
    method: str
    card_last4: str | None


@dataclass(frozen=True)
class FakeCredit:
    account_number: str
    opened_at: datetime
    limit_pence: int
    balance_pence: int
    overdue_pence: int
    agency: str


@dataclass(frozen=True)
class FakeCall:
    call_id: str
    started_at: datetime
    duration_seconds: int
    direction: str


@dataclass(frozen=True)
class FakeMessage:
    message_id: str
    received_at: datetime
    medium: str
    topic: str


@dataclass(frozen=True)
class FakeConsent:
    channel: Channel
    granted: bool
    soft_opt_in: bool = False


@dataclass(frozen=True)
class FakeClip:
    clip_id: str
    captured_at: datetime
    camera: str
    site: str
    investigation_id: str | None = None
    investigation_open: bool = False


@dataclass(frozen=True)
class FakeCustomer:
    """One fake person and everything each fake system holds about them."""

    number: int
    subject_id: str
    first_name: str
    last_name: str
    email: str
    phone: str
    address: str
    postcode: str
    since: datetime
    account_number: str
    contact_id: str
    caller_ref: str
    subscriber_ref: str | None
    cookie_id: str
    visitor_ref: str | None
    orders: tuple[FakeOrder, ...] = ()
    credit: FakeCredit | None = None
    calls: tuple[FakeCall, ...] = ()
    messages: tuple[FakeMessage, ...] = ()
    consents: tuple[FakeConsent, ...] = ()
    tps_listed: bool = False
    clips: tuple[FakeClip, ...] = ()
    cookie_analytics: bool = True
    cookie_marketing: bool = False
    page_views: int = 0

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def identifiers(self, system: System) -> dict[str, str]:
        """What ``system`` knows this customer by (the events carry exactly this)."""
        ids: dict[str, str | None]
        match system:
            case System.orders:
                ids = {
                    "customer_id": self.subject_id,
                    "email": self.email,
                    "phone": self.phone,
                    "system_ref": self.account_number,
                }
            case System.crm:
                ids = {
                    "customer_id": self.subject_id,
                    "email": self.email,
                    "phone": self.phone,
                    "system_ref": self.contact_id,
                }
            case System.telephony:
                ids = {"phone": self.phone, "system_ref": self.caller_ref}
            case System.marketing:
                ids = {
                    "customer_id": self.subject_id,
                    "email": self.email,
                    "phone": self.phone,
                    "system_ref": self.subscriber_ref,
                }
            case System.web:
                ids = {
                    "customer_id": self.subject_id,
                    "email": self.email,
                    "system_ref": self.cookie_id,
                }
            case System.cctv:
                ids = {"customer_id": self.subject_id, "system_ref": self.visitor_ref}
        return {k: v for k, v in ids.items() if v}

    def in_system(self, system: System) -> bool:
        if system is System.marketing:
            return self.subscriber_ref is not None
        if system is System.cctv:
            return bool(self.clips)
        if system is System.telephony:
            return bool(self.calls)
        return True


def default_anchor() -> date:
    return datetime.now(UTC).date()


def _at(day: date, rng: random.Random) -> datetime:
    """A time in UK business hours on ``day`` (UTC, close enough for fake data)."""
    return datetime.combine(day, time(8, 0), tzinfo=UTC) + timedelta(
        minutes=rng.randrange(0, 9 * 60), seconds=rng.randrange(60)
    )


def seed_customers(n: int, *, anchor: date | None = None, seed: int = 2018) -> list[FakeCustomer]:
    """``n`` deterministic fake customers (same ``n``, ``anchor`` and ``seed``: same people).

    ``anchor`` is "today" for the fake histories (default: today, UTC): orders older than
    6 years, recent invoices, open investigations are relative to it.
    """
    if not 1 <= n <= MAX_CUSTOMERS:
        raise ValueError(f"customers must be between 1 and {MAX_CUSTOMERS} (phone range)")
    anchor = anchor or default_anchor()
    rng = random.Random(seed)  # noqa: S311 - fake data, determinism wanted
    used_emails: set[str] = set()
    customers = []
    for i in range(1, n + 1):
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        local = re.sub(r"[^a-z]", "", first.lower()) + "." + re.sub(r"[^a-z]", "", last.lower())
        email, k = f"{local}@example.com", 2
        while email in used_emails:
            email, k = f"{local}{k}@example.com", k + 1
        used_emails.add(email)
        town, district = rng.choice(TOWNS)
        letters = "ABDEFGHJLNPQRSTUWXY"
        postcode = f"{district} {rng.randrange(1, 10)}{rng.choice(letters)}{rng.choice(letters)}"
        address = f"{rng.randrange(1, 200)} {rng.choice(STREETS)}, {town}, {postcode}"
        lapsed = i % 10 == 0
        years = rng.uniform(7.0, 9.5) if lapsed else rng.uniform(0.3, 8.0)
        since = _at(anchor - timedelta(days=int(years * 365)), rng)
        orders = _orders(i, rng, anchor, since, lapsed)
        credit = None
        if i % 4 == 1:
            overdue = rng.randrange(150_00, 2_400_00) if i % 8 == 1 else 0
            credit = FakeCredit(
                account_number=f"CR-{700000 + i}",
                opened_at=since + timedelta(days=rng.randrange(10, 120)),
                limit_pence=rng.choice((2_500_00, 5_000_00, 10_000_00)),
                balance_pence=overdue + rng.randrange(0, 1_500_00),
                overdue_pence=overdue,
                agency=rng.choice(("Experian", "Equifax", "TransUnion")),
            )
        calls: tuple[FakeCall, ...] = ()
        if i % 2 == 1:
            calls = tuple(
                FakeCall(
                    call_id=f"CALL-{i:04d}-{c}",
                    started_at=_at(anchor - timedelta(days=rng.randrange(1, 80)), rng),
                    duration_seconds=rng.randrange(45, 1200),
                    direction=rng.choice(("inbound", "inbound", "outbound")),
                )
                for c in range(1, rng.randrange(2, 4))
            )
        messages = tuple(
            FakeMessage(
                message_id=f"MSG-{i:04d}-{m}",
                received_at=_at(anchor - timedelta(days=rng.randrange(1, 400)), rng),
                medium=rng.choice(("email", "web_form", "letter")),
                topic=rng.choice(SUPPORT_TOPICS),
            )
            for m in range(1, rng.randrange(1, 4))
        )
        subscriber = i % 3 != 0
        consents: tuple[FakeConsent, ...] = ()
        if subscriber:
            consents = (
                FakeConsent(Channel.email, True, soft_opt_in=i % 5 == 2),
                FakeConsent(Channel.sms, i % 2 == 0),
                FakeConsent(Channel.post, i % 4 != 3),
                FakeConsent(Channel.telephone, i % 5 not in (3, 4)),
            )
        clips: tuple[FakeClip, ...] = ()
        if i % 6 == 1:
            inv_open = i % 12 == 1
            inv_closed = i % 12 == 7
            clips = tuple(
                FakeClip(
                    clip_id=f"CLIP-{i:04d}-{c}",
                    captured_at=_at(anchor - timedelta(days=rng.randrange(5, 25)), rng),
                    camera=rng.choice(CAMERAS),
                    site=rng.choice(SITES),
                    investigation_id=f"INV-{i:04d}"
                    if c == 1 and (inv_open or inv_closed)
                    else None,
                    investigation_open=c == 1 and inv_open,
                )
                for c in range(1, rng.randrange(2, 4))
            )
        customers.append(
            FakeCustomer(
                number=i,
                subject_id=f"CUST-{i:04d}",
                first_name=first,
                last_name=last,
                email=email,
                phone=f"+447700900{i:03d}",
                address=address,
                postcode=postcode,
                since=since,
                account_number=f"AC-{100000 + i}",
                contact_id=f"CRM-{50000 + i}",
                caller_ref=f"TEL-{30000 + i}",
                subscriber_ref=f"MKT-{80000 + i}" if subscriber else None,
                cookie_id="ck_" + hashlib.sha256(f"cookie-{seed}-{i}".encode()).hexdigest()[:20],
                visitor_ref=f"VIS-{40000 + i}" if clips else None,
                orders=orders,
                credit=credit,
                calls=calls,
                messages=messages,
                consents=consents,
                tps_listed=i % 5 == 4,
                clips=clips,
                cookie_analytics=i % 3 != 2,
                cookie_marketing=i % 4 == 0,
                page_views=rng.randrange(3, 12),
            )
        )
    return customers


def _orders(
    i: int, rng: random.Random, anchor: date, since: datetime, lapsed: bool
) -> tuple[FakeOrder, ...]:
    orders = []
    for o in range(1, rng.randrange(2, 6)):
        if lapsed:
            age_days = rng.randrange(
                int(6.2 * 365), max(int(6.3 * 365), (anchor - since.date()).days)
            )
        else:
            age_days = rng.randrange(3, max(30, min(8 * 365, (anchor - since.date()).days)))
        if o == 1 and not lapsed:
            age_days = rng.randrange(3, 200)
        sku, _, price = rng.choice(PRODUCTS)
        qty = rng.randrange(1, 40)
        card = rng.random() < 0.6
        orders.append(
            FakeOrder(
                order_id=f"ORD-{i:04d}-{o}",
                invoice_id=f"INV{i:04d}{o:02d}",
                payment_id=f"PAY-{i:04d}-{o}",
                placed_at=_at(anchor - timedelta(days=age_days), rng),
                sku=sku,
                quantity=qty,
                total_pence=price * qty,
                method="card" if card else "bank_transfer",
                card_last4=f"{rng.randrange(10000):04d}" if card else None,
            )
        )
    return tuple(sorted(orders, key=lambda o: o.placed_at))


# ---------------------------------------------------------------------------- store specs


@dataclass(frozen=True)
class TableSpec:
    """One table holding subject data of one category."""

    name: str
    category: Category
    columns: str
    lookups: Mapping[str, str] = field(default_factory=dict)
    contact_columns: tuple[str, ...] = ()
    rectify: Mapping[str, str] = field(default_factory=dict)
    hold: str | None = None


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


_CONTACT_RECTIFY = {"name": "name", "email": "email", "phone": "phone", "address": "address"}

SPECS: dict[System, StoreSpec] = {
    System.orders: StoreSpec(
        System.orders,
        key="customer_id",
        tables=(
            TableSpec(
                "customers",
                Category.contact,
                "customer_id TEXT PRIMARY KEY, account_number TEXT, name TEXT, email TEXT,"
                " phone TEXT, address TEXT, created_at TEXT",
                lookups={
                    "customer_id": "customer_id",
                    "account_number": "account_number",
                    "system_ref": "account_number",
                    "email": "email",
                    "phone": "phone",
                },
                rectify=_CONTACT_RECTIFY,
            ),
            TableSpec(
                "orders",
                Category.purchases,
                "order_id TEXT PRIMARY KEY, customer_id TEXT, placed_at TEXT, sku TEXT,"
                " quantity INTEGER, total_pence INTEGER, currency TEXT, delivery_name TEXT,"
                " delivery_address TEXT, delivery_phone TEXT",
                lookups={"customer_id": "customer_id"},
                contact_columns=("delivery_name", "delivery_address", "delivery_phone"),
            ),
            TableSpec(
                "invoices",
                Category.purchases,
                "invoice_id TEXT PRIMARY KEY, order_id TEXT, customer_id TEXT, issued_at TEXT,"
                " net_pence INTEGER, vat_pence INTEGER, billing_name TEXT, billing_address TEXT",
                lookups={"customer_id": "customer_id"},
            ),
            TableSpec(
                "payments",
                Category.payment,
                "payment_id TEXT PRIMARY KEY, invoice_id TEXT, customer_id TEXT, paid_at TEXT,"
                " amount_pence INTEGER, method TEXT, card_last4 TEXT",
                lookups={"customer_id": "customer_id"},
            ),
            TableSpec(
                "credit_accounts",
                Category.credit,
                "credit_account TEXT PRIMARY KEY, customer_id TEXT, opened_at TEXT,"
                " credit_limit_pence INTEGER, balance_pence INTEGER, overdue_pence INTEGER,"
                " status TEXT, reference_agency TEXT",
                lookups={"customer_id": "customer_id", "account_number": "credit_account"},
            ),
        ),
    ),
    System.crm: StoreSpec(
        System.crm,
        key="contact_id",
        tables=(
            TableSpec(
                "contacts",
                Category.contact,
                "contact_id TEXT PRIMARY KEY, customer_id TEXT, name TEXT, email TEXT,"
                " phone TEXT, address TEXT, created_at TEXT",
                lookups={
                    "contact_id": "contact_id",
                    "system_ref": "contact_id",
                    "customer_id": "customer_id",
                    "email": "email",
                    "phone": "phone",
                },
                rectify=_CONTACT_RECTIFY,
            ),
            TableSpec(
                "support_messages",
                Category.interactions,
                "message_id TEXT PRIMARY KEY, contact_id TEXT, customer_id TEXT,"
                " received_at TEXT, medium TEXT, subject TEXT, body TEXT",
                lookups={
                    "contact_id": "contact_id",
                    "system_ref": "contact_id",
                    "customer_id": "customer_id",
                },
            ),
            TableSpec(
                "preferences",
                Category.marketing_preferences,
                "preference_id TEXT PRIMARY KEY, contact_id TEXT, customer_id TEXT,"
                " channel TEXT, status TEXT, updated_at TEXT",
                lookups={
                    "contact_id": "contact_id",
                    "system_ref": "contact_id",
                    "customer_id": "customer_id",
                },
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
                lookups={
                    "caller_ref": "caller_ref",
                    "contact_id": "caller_ref",
                    "system_ref": "caller_ref",
                    "phone": "phone",
                },
                rectify={"name": "name", "phone": "phone"},
            ),
            TableSpec(
                "call_recordings",
                Category.interactions,
                "call_id TEXT PRIMARY KEY, caller_ref TEXT, caller_number TEXT,"
                " started_at TEXT, duration_seconds INTEGER, direction TEXT, recording_uri TEXT",
                lookups={
                    "caller_ref": "caller_ref",
                    "contact_id": "caller_ref",
                    "system_ref": "caller_ref",
                    "phone": "caller_number",
                },
                contact_columns=("caller_number",),
            ),
        ),
    ),
    System.marketing: StoreSpec(
        System.marketing,
        key="subscriber_ref",
        tables=(
            TableSpec(
                "subscribers",
                Category.contact,
                "subscriber_ref TEXT PRIMARY KEY, customer_id TEXT, name TEXT, email TEXT,"
                " phone TEXT, address TEXT, created_at TEXT",
                lookups={
                    "subscriber_ref": "subscriber_ref",
                    "contact_id": "subscriber_ref",
                    "system_ref": "subscriber_ref",
                    "customer_id": "customer_id",
                    "email": "email",
                    "phone": "phone",
                },
                rectify=_CONTACT_RECTIFY,
            ),
            TableSpec(
                "subscriptions",
                Category.marketing_preferences,
                "subscription_id TEXT PRIMARY KEY, subscriber_ref TEXT, channel TEXT,"
                " status TEXT, basis TEXT, tps_listed INTEGER, updated_at TEXT",
                lookups={"subscriber_ref": "subscriber_ref", "system_ref": "subscriber_ref"},
            ),
            TableSpec(
                "campaign_activity",
                Category.marketing_preferences,
                "activity_id TEXT PRIMARY KEY, subscriber_ref TEXT, campaign_id TEXT,"
                " event TEXT, at TEXT",
                lookups={"subscriber_ref": "subscriber_ref", "system_ref": "subscriber_ref"},
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
                lookups={"customer_id": "customer_id", "email": "email"},
                rectify={"name": "name", "email": "email"},
            ),
            TableSpec(
                "cookies",
                Category.web,
                "cookie_id TEXT PRIMARY KEY, customer_id TEXT, first_seen TEXT, last_seen TEXT,"
                " analytics_consent INTEGER, marketing_consent INTEGER, banner_version TEXT",
                lookups={
                    "cookie_id": "cookie_id",
                    "device_id": "cookie_id",
                    "system_ref": "cookie_id",
                    "customer_id": "customer_id",
                },
            ),
            TableSpec(
                "page_views",
                Category.web,
                "view_id TEXT PRIMARY KEY, cookie_id TEXT, customer_id TEXT, path TEXT,"
                " viewed_at TEXT",
                lookups={
                    "cookie_id": "cookie_id",
                    "system_ref": "cookie_id",
                    "customer_id": "customer_id",
                },
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
                lookups={
                    "visitor_ref": "visitor_ref",
                    "system_ref": "visitor_ref",
                    "camera_ref": "visitor_ref",
                    "customer_id": "customer_id",
                },
                hold="investigation_id IN"
                " (SELECT investigation_id FROM investigations WHERE closed_at IS NULL)",
            ),
        ),
        extra_ddl=(
            "CREATE TABLE IF NOT EXISTS investigations (investigation_id TEXT PRIMARY KEY,"
            " opened_at TEXT, closed_at TEXT, reason TEXT)",
        ),
        hold_reason="legal_claims: footage under an open investigation (Art. 17(3)(e))",
    ),
}


# ---------------------------------------------------------------------------------- store


@dataclass(frozen=True)
class EraseReport:
    found: bool
    deleted: int = 0
    anonymised: int = 0
    kept: dict[Category, str] = field(default_factory=dict)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _normalised(name: str, value: str) -> str | None:
    try:
        if name == "email":
            return normalise_email(value)
        if name == "phone":
            return normalise_phone(value)
    except DomainError:
        return None
    return value.strip() or None


def _safe_segment(value: str) -> str:
    """A request id as one path segment (no traversal, no separators)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", value).strip(".")
    return safe[:128] or "request"


class ReferenceStore:
    """A fake system's SQLite file. Synchronous and quick; connectors call it in a thread."""

    def __init__(self, spec: StoreSpec, path: Path) -> None:
        self.spec = spec
        self.path = path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            with db:
                yield db

    def exists(self) -> bool:
        if not self.path.exists():
            return False
        with self._db() as db:
            row = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='_meta'"
            ).fetchone()
            return row is not None

    # --- seeding ---------------------------------------------------------------------
    def create(self, customers: Sequence[FakeCustomer], *, reset: bool = False) -> bool:
        """Create and seed the file unless it exists (``reset`` recreates it). True if seeded."""
        if reset and self.path.exists():
            self.path.unlink()
        if self.exists():
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            for table in self.spec.tables:
                db.execute(
                    f"CREATE TABLE {table.name} ({table.columns},"
                    " restricted INTEGER NOT NULL DEFAULT 0)"
                )
                for column in {self.spec.key, *table.lookups.values()}:
                    db.execute(
                        f"CREATE INDEX IF NOT EXISTS ix_{table.name}_{column}"
                        f" ON {table.name} ({column})"
                    )
            for ddl in self.spec.extra_ddl:
                db.execute(ddl)
            for table_name, row in _rows(self.spec.system, customers):
                cols = ", ".join(row)
                marks = ", ".join("?" * len(row))
                db.execute(
                    f"INSERT INTO {table_name} ({cols}) VALUES ({marks})",  # noqa: S608
                    tuple(row.values()),
                )
            db.execute("CREATE TABLE _meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute(
                "INSERT INTO _meta VALUES ('customers', ?), ('system', ?)",
                (str(len(customers)), self.spec.system.value),
            )
        return True

    # --- lookups ---------------------------------------------------------------------
    def _resolve(self, db: sqlite3.Connection, identifiers: Mapping[str, str]) -> list[str]:
        keys: set[str] = set()
        for name, raw in identifiers.items():
            value = _normalised(name, raw) if raw else None
            if value is None:
                continue
            for table in self.spec.tables:
                column = table.lookups.get(name)
                if column is None:
                    continue
                sql = f"SELECT DISTINCT {self.spec.key} FROM {table.name} WHERE {column} = ?"  # noqa: S608
                keys.update(r[0] for r in db.execute(sql, (value,)) if r[0])
        return sorted(keys)

    def resolve(self, identifiers: Mapping[str, str]) -> list[str]:
        """The system's own keys for the subject these identifiers name."""
        with self._db() as db:
            return self._resolve(db, identifiers)

    def _where(self, keys: Sequence[str]) -> str:
        return f"{self.spec.key} IN ({', '.join('?' * len(keys))})"

    def rows(self, identifiers: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
        """Every row of the subject, by table (tests, export)."""
        with self._db() as db:
            keys = self._resolve(db, identifiers)
            return self._rows_of(db, keys)

    def _rows_of(
        self, db: sqlite3.Connection, keys: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        if not keys:
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        for table in self.spec.tables:
            sql = f"SELECT * FROM {table.name} WHERE {self._where(keys)}"  # noqa: S608
            out[table.name] = [dict(r) for r in db.execute(sql, keys)]
        return out

    def count(self, table: str) -> int:
        with self._db() as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    # --- actions ---------------------------------------------------------------------
    def erase(
        self,
        identifiers: Mapping[str, str],
        categories: Sequence[Category] = (),
        keep: Sequence[Retention] = (),
    ) -> EraseReport:
        with self._db() as db:
            keys = self._resolve(db, identifiers)
            if not keys:
                return EraseReport(found=False)
            where = self._where(keys)
            keep_ground = {r.category: r.ground for r in keep}
            erase = set(categories or self.spec.categories) - set(keep_ground)
            deleted = anonymised = 0
            kept: dict[Category, str] = {}
            for table in self.spec.tables:
                count_sql = f"SELECT count(*) FROM {table.name} WHERE {where}"  # noqa: S608
                if not db.execute(count_sql, keys).fetchone()[0]:
                    continue
                if table.category in erase:
                    condition = where
                    if table.hold:
                        held_sql = f"{count_sql} AND ({table.hold})"
                        if db.execute(held_sql, keys).fetchone()[0]:
                            kept[table.category] = self.spec.hold_reason
                        condition = f"{where} AND NOT coalesce(({table.hold}), 0)"
                    cur = db.execute(f"DELETE FROM {table.name} WHERE {condition}", keys)  # noqa: S608
                    deleted += cur.rowcount
                    continue
                if table.category in keep_ground:
                    kept[table.category] = keep_ground[table.category]
                if Category.contact in erase and table.contact_columns:
                    nulls = ", ".join(f"{c} = NULL" for c in table.contact_columns)
                    any_set = " OR ".join(f"{c} IS NOT NULL" for c in table.contact_columns)
                    sql = f"UPDATE {table.name} SET {nulls} WHERE {where} AND ({any_set})"  # noqa: S608
                    anonymised += db.execute(sql, keys).rowcount
            return EraseReport(True, deleted, anonymised, kept)

    def set_restricted(self, identifiers: Mapping[str, str], restricted: bool) -> int | None:
        """Rows flagged (or cleared); None when the identifiers match nothing."""
        with self._db() as db:
            keys = self._resolve(db, identifiers)
            if not keys:
                return None
            total = 0
            for table in self.spec.tables:
                sql = f"UPDATE {table.name} SET restricted = ? WHERE {self._where(keys)}"  # noqa: S608
                total += db.execute(sql, (int(restricted), *keys)).rowcount
            return total

    def rectify(self, identifiers: Mapping[str, str], changes: Mapping[str, str]) -> int | None:
        """Rows updated; None when the identifiers match nothing. Raises ValueError on bad input."""
        clean: dict[str, str] = {}
        for name, value in changes.items():
            if name in ("email", "phone"):
                normal = _normalised(name, value)
                if normal is None:
                    raise ValueError(f"rectify: the new {name} is not valid")
                clean[name] = normal
            else:
                clean[name] = value.strip()
        with self._db() as db:
            keys = self._resolve(db, identifiers)
            if not keys:
                return None
            total = 0
            for table in self.spec.tables:
                sets = {table.rectify[f]: v for f, v in clean.items() if f in table.rectify}
                if not sets:
                    continue
                assignments = ", ".join(f"{c} = ?" for c in sets)
                sql = f"UPDATE {table.name} SET {assignments} WHERE {self._where(keys)}"  # noqa: S608
                total += db.execute(sql, (*sets.values(), *keys)).rowcount
            return total

    def export(
        self, identifiers: Mapping[str, str], request_id: str, exports_dir: Path
    ) -> ExportReference | None:
        """Write the subject's rows as JSON; None when the identifiers match nothing."""
        with self._db() as db:
            keys = self._resolve(db, identifiers)
            if not keys:
                return None
            tables = self._rows_of(db, keys)
        by_table = {
            t.name: {"category": t.category.value, "rows": tables.get(t.name, [])}
            for t in self.spec.tables
        }
        count = sum(len(t["rows"]) for t in by_table.values())
        document = {
            "controller": "ALL LED Limited",
            "system": self.spec.system.value,
            "request_id": request_id,
            "generated_at": datetime.now(UTC).isoformat(),
            "record_count": count,
            "tables": by_table,
        }
        data = json.dumps(document, indent=2, sort_keys=True, default=str).encode()
        target = exports_dir / _safe_segment(request_id) / f"{self.spec.system.value}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        tmp.replace(target)
        return ExportReference(
            location=str(target.resolve()),
            record_count=count,
            checksum="sha256:" + hashlib.sha256(data).hexdigest(),
        )


def _rows(
    system: System, customers: Sequence[FakeCustomer]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The seed rows of ``system`` for every customer it holds."""
    for c in customers:
        if not c.in_system(system):
            continue
        yield from _ROW_BUILDERS[system](c)


def _orders_rows(c: FakeCustomer) -> Iterator[tuple[str, dict[str, Any]]]:
    yield (
        "customers",
        {
            "customer_id": c.subject_id,
            "account_number": c.account_number,
            "name": c.name,
            "email": c.email,
            "phone": c.phone,
            "address": c.address,
            "created_at": _iso(c.since),
        },
    )
    for o in c.orders:
        yield (
            "orders",
            {
                "order_id": o.order_id,
                "customer_id": c.subject_id,
                "placed_at": _iso(o.placed_at),
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
                "issued_at": _iso(o.placed_at + timedelta(hours=2)),
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
                "paid_at": _iso(o.placed_at + timedelta(days=1)),
                "amount_pence": o.total_pence,
                "method": o.method,
                "card_last4": o.card_last4,
            },
        )
    if c.credit:
        yield (
            "credit_accounts",
            {
                "credit_account": c.credit.account_number,
                "customer_id": c.subject_id,
                "opened_at": _iso(c.credit.opened_at),
                "credit_limit_pence": c.credit.limit_pence,
                "balance_pence": c.credit.balance_pence,
                "overdue_pence": c.credit.overdue_pence,
                "status": "arrears" if c.credit.overdue_pence else "open",
                "reference_agency": c.credit.agency,
            },
        )


def _crm_rows(c: FakeCustomer) -> Iterator[tuple[str, dict[str, Any]]]:
    yield (
        "contacts",
        {
            "contact_id": c.contact_id,
            "customer_id": c.subject_id,
            "name": c.name,
            "email": c.email,
            "phone": c.phone,
            "address": c.address,
            "created_at": _iso(c.since),
        },
    )
    for m in c.messages:
        yield (
            "support_messages",
            {
                "message_id": m.message_id,
                "contact_id": c.contact_id,
                "customer_id": c.subject_id,
                "received_at": _iso(m.received_at),
                "medium": m.medium,
                "subject": m.topic,
                "body": f"Hello, this is {c.first_name}. {m.topic}: please call me on {c.phone}.",
            },
        )
    for consent in c.consents:
        yield (
            "preferences",
            {
                "preference_id": f"{c.contact_id}-{consent.channel.value}",
                "contact_id": c.contact_id,
                "customer_id": c.subject_id,
                "channel": consent.channel.value,
                "status": "granted" if consent.granted else "not_asked",
                "updated_at": _iso(c.since),
            },
        )


def _telephony_rows(c: FakeCustomer) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "callers", {"caller_ref": c.caller_ref, "name": c.name, "phone": c.phone}
    for call in c.calls:
        yield (
            "call_recordings",
            {
                "call_id": call.call_id,
                "caller_ref": c.caller_ref,
                "caller_number": c.phone,
                "started_at": _iso(call.started_at),
                "duration_seconds": call.duration_seconds,
                "direction": call.direction,
                "recording_uri": f"recordings/{call.call_id}.wav",
            },
        )


def _marketing_rows(c: FakeCustomer) -> Iterator[tuple[str, dict[str, Any]]]:
    assert c.subscriber_ref is not None
    yield (
        "subscribers",
        {
            "subscriber_ref": c.subscriber_ref,
            "customer_id": c.subject_id,
            "name": c.name,
            "email": c.email,
            "phone": c.phone,
            "address": c.address,
            "created_at": _iso(c.since),
        },
    )
    for consent in c.consents:
        yield (
            "subscriptions",
            {
                "subscription_id": f"{c.subscriber_ref}-{consent.channel.value}",
                "subscriber_ref": c.subscriber_ref,
                "channel": consent.channel.value,
                "status": "subscribed" if consent.granted else "unsubscribed",
                "basis": "soft_opt_in" if consent.soft_opt_in else "consent",
                "tps_listed": int(c.tps_listed and consent.channel is Channel.telephone),
                "updated_at": _iso(c.since),
            },
        )
    for k, event in enumerate(("sent", "opened", "clicked")[: 1 + c.number % 3]):
        yield (
            "campaign_activity",
            {
                "activity_id": f"{c.subscriber_ref}-{k}",
                "subscriber_ref": c.subscriber_ref,
                "campaign_id": "CMP-SPRING-PANELS",
                "event": event,
                "at": _iso(c.since + timedelta(days=30, minutes=k)),
            },
        )


def _web_rows(c: FakeCustomer) -> Iterator[tuple[str, dict[str, Any]]]:
    yield (
        "web_accounts",
        {
            "customer_id": c.subject_id,
            "email": c.email,
            "name": c.name,
            "created_at": _iso(c.since),
            "last_login_at": _iso(c.orders[-1].placed_at if c.orders else c.since),
        },
    )
    last_seen = c.orders[-1].placed_at if c.orders else c.since
    yield (
        "cookies",
        {
            "cookie_id": c.cookie_id,
            "customer_id": c.subject_id,
            "first_seen": _iso(last_seen - timedelta(days=90)),
            "last_seen": _iso(last_seen),
            "analytics_consent": int(c.cookie_analytics),
            "marketing_consent": int(c.cookie_marketing),
            "banner_version": "3",
        },
    )
    paths = ("/", "/led-panels", "/high-bays", "/basket", "/checkout", "/account", "/trade")
    for v in range(c.page_views):
        yield (
            "page_views",
            {
                "view_id": f"{c.cookie_id}-{v}",
                "cookie_id": c.cookie_id,
                "customer_id": c.subject_id,
                "path": paths[(c.number + v) % len(paths)],
                "viewed_at": _iso(last_seen - timedelta(minutes=7 * v)),
            },
        )


def _cctv_rows(c: FakeCustomer) -> Iterator[tuple[str, dict[str, Any]]]:
    for clip in c.clips:
        yield (
            "clips",
            {
                "clip_id": clip.clip_id,
                "visitor_ref": c.visitor_ref,
                "customer_id": c.subject_id,
                "camera": clip.camera,
                "site": clip.site,
                "captured_at": _iso(clip.captured_at),
                "footage_uri": f"footage/{clip.clip_id}.mp4",
                "investigation_id": clip.investigation_id,
            },
        )
        if clip.investigation_id:
            yield (
                "investigations",
                {
                    "investigation_id": clip.investigation_id,
                    "opened_at": _iso(clip.captured_at + timedelta(hours=3)),
                    "closed_at": None
                    if clip.investigation_open
                    else _iso(clip.captured_at + timedelta(days=4)),
                    "reason": "reported theft from trade counter",
                },
            )


_ROW_BUILDERS = {
    System.orders: _orders_rows,
    System.crm: _crm_rows,
    System.telephony: _telephony_rows,
    System.marketing: _marketing_rows,
    System.web: _web_rows,
    System.cctv: _cctv_rows,
}


def store_path(data_dir: Path, system: System) -> Path:
    return data_dir / f"{system.value}.db"


def open_store(data_dir: Path, system: System) -> ReferenceStore:
    return ReferenceStore(SPECS[system], store_path(data_dir, system))


def seed_stores(
    data_dir: Path, customers: Sequence[FakeCustomer], *, reset: bool = False
) -> dict[System, bool]:
    """Create every system's store that is missing; True for the ones seeded now."""
    return {s: open_store(data_dir, s).create(customers, reset=reset) for s in System}


# ----------------------------------------------------------------------------- connectors


@dataclass(frozen=True)
class Knobs:
    """Misbehaviour for tests and the demo.

    - ``delay_seconds``: every call to the connector sleeps this long first (slow system).
    - ``fail_first``: the first N *deliveries* of each task id (distinct ``task.attempt``
      values seen, counted in memory per task id) raise TransientError on every in-process
      try, so the SDK answers TaskFailed(retryable=True) N times and privops must re-send;
      delivery N+1 does the work. In-process retries of one delivery count once.
    - ``silent``: consume and drop (``Outcome.no_answer()``): privops re-sends after the
      SLA and escalates after its retries.
    """

    delay_seconds: float = 0.0
    fail_first: int = 0
    silent: bool = False


class ReferenceConnector(Connector):
    """A fake system's connector: the SDK's contract over a :class:`ReferenceStore`."""

    spec: ClassVar[StoreSpec]

    def __init__(self, data_dir: Path, knobs: Knobs | None = None) -> None:
        self.data_dir = data_dir
        self.knobs = knobs or Knobs()
        self.store = open_store(data_dir, self.system)
        self.exports_dir = data_dir / "exports"
        self._deliveries: dict[str, set[int]] = {}

    async def handle(self, task: Task) -> Outcome:
        if self.knobs.silent:
            return Outcome.no_answer()
        if self.knobs.delay_seconds > 0:
            await asyncio.sleep(self.knobs.delay_seconds)
        if self.knobs.fail_first > 0:
            seen = self._deliveries.setdefault(task.task_id, set())
            seen.add(task.attempt)
            if len(seen) <= self.knobs.fail_first:
                raise TransientError("simulated transient failure")
        return await super().handle(task)

    async def erase(self, task: Erase) -> Outcome:
        report = await asyncio.to_thread(
            self.store.erase, task.identifiers, task.categories, task.keep
        )
        if not report.found:
            return Outcome.not_found()
        if report.kept:
            reason = "; ".join(f"{c.value}: {g}" for c, g in sorted(report.kept.items()))
            return Outcome.retained(reason, sorted(report.kept))
        return Outcome.completed(records_affected=report.deleted + report.anonymised)

    async def restrict(self, task: Restrict) -> Outcome:
        return _count(await asyncio.to_thread(self.store.set_restricted, task.identifiers, True))

    async def lift_restriction(self, task: LiftRestriction) -> Outcome:
        return _count(await asyncio.to_thread(self.store.set_restricted, task.identifiers, False))

    async def rectify(self, task: Rectify) -> Outcome:
        try:
            changed = await asyncio.to_thread(self.store.rectify, task.identifiers, task.changes)
        except ValueError as exc:
            return Outcome.failed(str(exc), retryable=False)
        return _count(changed)

    async def export(self, task: Export) -> Outcome:
        ref = await asyncio.to_thread(
            self.store.export, task.identifiers, task.request_id, self.exports_dir
        )
        if ref is None:
            return Outcome.not_found()
        return Outcome.completed(records_affected=ref.record_count, export=ref)


def _count(rows: int | None) -> Outcome:
    return Outcome.not_found() if rows is None else Outcome.completed(records_affected=rows)


class OrdersConnector(ReferenceConnector):
    system = System.orders
    spec = SPECS[System.orders]


class CrmConnector(ReferenceConnector):
    system = System.crm
    spec = SPECS[System.crm]


class TelephonyConnector(ReferenceConnector):
    system = System.telephony
    spec = SPECS[System.telephony]


class MarketingConnector(ReferenceConnector):
    system = System.marketing
    spec = SPECS[System.marketing]


class WebConnector(ReferenceConnector):
    system = System.web
    spec = SPECS[System.web]


class CctvConnector(ReferenceConnector):
    system = System.cctv
    spec = SPECS[System.cctv]


REFERENCE_CONNECTORS: dict[System, type[ReferenceConnector]] = {
    c.system: c
    for c in (
        OrdersConnector,
        CrmConnector,
        TelephonyConnector,
        MarketingConnector,
        WebConnector,
        CctvConnector,
    )
}


def reference_connector(
    system: System, data_dir: Path, knobs: Knobs | None = None
) -> ReferenceConnector:
    return REFERENCE_CONNECTORS[system](data_dir, knobs)
