"""Fake people: deterministic customers and everything each fake system holds about them.

Fake data only: emails at example.com, phone numbers in Ofcom's drama range
(+44 7700 900xxx), invented addresses. Profiles by customer number (``CUST-0001`` is 1):
- n % 10 == 0: lapsed customer, every order older than 6 years (nothing to keep);
- n % 4 == 1: open credit account; n % 8 == 1 also owes an overdue balance (debt);
- n % 6 == 1: CCTV clips; n % 12 == 1 one under an OPEN investigation, n % 12 == 7 under
  a closed one (so CUST-0001 has recent invoices, debt and footage on hold);
- n % 3 != 0: marketing subscriber; n % 5 == 2 email by soft opt-in; n % 5 == 4 TPS-listed;
- odd n: call recordings; every customer has a web account, a cookie and page views.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from privops.core.vocab import Channel, System

MAX_CUSTOMERS = 999

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
        known = ((kind, getattr(self, attr)) for kind, attr in _KNOWN_BY[system])
        return {kind: value for kind, value in known if value}

    def in_system(self, system: System) -> bool:
        if system is System.marketing:
            return self.subscriber_ref is not None
        if system is System.cctv:
            return bool(self.clips)
        if system is System.telephony:
            return bool(self.calls)
        return True


# Per system: (identifier kind, FakeCustomer attribute), in the order the events carry them.
_KNOWN_BY: dict[System, tuple[tuple[str, str], ...]] = {
    System.orders: (
        ("customer_id", "subject_id"),
        ("email", "email"),
        ("phone", "phone"),
        ("system_ref", "account_number"),
    ),
    System.crm: (
        ("customer_id", "subject_id"),
        ("email", "email"),
        ("phone", "phone"),
        ("system_ref", "contact_id"),
    ),
    System.telephony: (("phone", "phone"), ("system_ref", "caller_ref")),
    System.marketing: (
        ("customer_id", "subject_id"),
        ("email", "email"),
        ("phone", "phone"),
        ("system_ref", "subscriber_ref"),
    ),
    System.web: (("customer_id", "subject_id"), ("email", "email"), ("system_ref", "cookie_id")),
    System.cctv: (("customer_id", "subject_id"), ("system_ref", "visitor_ref")),
}


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
    return [_customer(i, rng, anchor, seed, used_emails) for i in range(1, n + 1)]


# The helpers below draw from the one shared ``rng`` in a fixed order: reordering the
# calls changes every later customer, so keep them in the order _customer makes them.


def _customer(
    i: int, rng: random.Random, anchor: date, seed: int, used_emails: set[str]
) -> FakeCustomer:
    first = rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    email = _unique_email(first, last, used_emails)
    town, district = rng.choice(TOWNS)
    letters = "ABDEFGHJLNPQRSTUWXY"
    postcode = f"{district} {rng.randrange(1, 10)}{rng.choice(letters)}{rng.choice(letters)}"
    address = f"{rng.randrange(1, 200)} {rng.choice(STREETS)}, {town}, {postcode}"
    lapsed = i % 10 == 0
    years = rng.uniform(7.0, 9.5) if lapsed else rng.uniform(0.3, 8.0)
    since = _at(anchor - timedelta(days=int(years * 365)), rng)
    orders = _orders(i, rng, anchor, since, lapsed)
    credit = _credit(i, rng, since) if i % 4 == 1 else None
    calls = _calls(i, rng, anchor) if i % 2 == 1 else ()
    messages = _messages(i, rng, anchor)
    subscriber = i % 3 != 0
    clips = _clips(i, rng, anchor) if i % 6 == 1 else ()
    return FakeCustomer(
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
        consents=_consents(i) if subscriber else (),
        tps_listed=i % 5 == 4,
        clips=clips,
        cookie_analytics=i % 3 != 2,
        cookie_marketing=i % 4 == 0,
        page_views=rng.randrange(3, 12),
    )


def _unique_email(first: str, last: str, used: set[str]) -> str:
    local = re.sub(r"[^a-z]", "", first.lower()) + "." + re.sub(r"[^a-z]", "", last.lower())
    email, k = f"{local}@example.com", 2
    while email in used:
        email, k = f"{local}{k}@example.com", k + 1
    used.add(email)
    return email


def _orders(
    i: int, rng: random.Random, anchor: date, since: datetime, lapsed: bool
) -> tuple[FakeOrder, ...]:
    orders = []
    history_days = (anchor - since.date()).days
    for o in range(1, rng.randrange(2, 6)):
        if lapsed:
            age_days = rng.randrange(int(6.2 * 365), max(int(6.3 * 365), history_days))
        else:
            age_days = rng.randrange(3, max(30, min(8 * 365, history_days)))
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


def _credit(i: int, rng: random.Random, since: datetime) -> FakeCredit:
    overdue = rng.randrange(150_00, 2_400_00) if i % 8 == 1 else 0
    return FakeCredit(
        account_number=f"CR-{700000 + i}",
        opened_at=since + timedelta(days=rng.randrange(10, 120)),
        limit_pence=rng.choice((2_500_00, 5_000_00, 10_000_00)),
        balance_pence=overdue + rng.randrange(0, 1_500_00),
        overdue_pence=overdue,
        agency=rng.choice(("Experian", "Equifax", "TransUnion")),
    )


def _calls(i: int, rng: random.Random, anchor: date) -> tuple[FakeCall, ...]:
    return tuple(
        FakeCall(
            call_id=f"CALL-{i:04d}-{c}",
            started_at=_at(anchor - timedelta(days=rng.randrange(1, 80)), rng),
            duration_seconds=rng.randrange(45, 1200),
            direction=rng.choice(("inbound", "inbound", "outbound")),
        )
        for c in range(1, rng.randrange(2, 4))
    )


def _messages(i: int, rng: random.Random, anchor: date) -> tuple[FakeMessage, ...]:
    return tuple(
        FakeMessage(
            message_id=f"MSG-{i:04d}-{m}",
            received_at=_at(anchor - timedelta(days=rng.randrange(1, 400)), rng),
            medium=rng.choice(("email", "web_form", "letter")),
            topic=rng.choice(SUPPORT_TOPICS),
        )
        for m in range(1, rng.randrange(1, 4))
    )


def _consents(i: int) -> tuple[FakeConsent, ...]:
    return (
        FakeConsent(Channel.email, True, soft_opt_in=i % 5 == 2),
        FakeConsent(Channel.sms, i % 2 == 0),
        FakeConsent(Channel.post, i % 4 != 3),
        FakeConsent(Channel.telephone, i % 5 not in (3, 4)),
    )


def _clips(i: int, rng: random.Random, anchor: date) -> tuple[FakeClip, ...]:
    under_investigation = i % 12 in (1, 7)
    return tuple(
        FakeClip(
            clip_id=f"CLIP-{i:04d}-{c}",
            captured_at=_at(anchor - timedelta(days=rng.randrange(5, 25)), rng),
            camera=rng.choice(CAMERAS),
            site=rng.choice(SITES),
            investigation_id=f"INV-{i:04d}" if c == 1 and under_investigation else None,
            investigation_open=c == 1 and i % 12 == 1,
        )
        for c in range(1, rng.randrange(2, 4))
    )
