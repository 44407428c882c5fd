"""The reference systems' legal holds and deletion by age, without Kafka.

A legal hold reaches a system as the whole of what it keeps of a subject there
(``ReferenceStore.hold``); the system's deletion by age (``purge_expired``, the data
map's periods from collection) must skip it, and the system's own hold, and restricted
rows. Rows are added with known ages to the seeded stores, so each case is exact.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from privops.adapters.datamap_file import load_datamap
from privops.cli.simulate import _on_purge
from privops.connectors.reference import (
    FakeCustomer,
    PurgeReport,
    ReferenceStore,
    TelephonyConnector,
    open_store,
    seed_customers,
    seed_stores,
)
from privops.connectors.retention import AgeLimit, age_limits
from privops.core.datamap import DataMap, RetentionRule
from privops.core.erasure import retention_end
from privops.core.records import LegalHoldState
from privops.core.vocab import Category, System

ANCHOR = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=120)  # past every period from collection but web's 395 days
RECENT = NOW - timedelta(days=10)
INTERACTIONS = [Category.interactions]


@pytest.fixture(scope="module")
def datamap() -> DataMap:
    return load_datamap()


@pytest.fixture
def customers() -> list[FakeCustomer]:
    return seed_customers(12, anchor=ANCHOR)


@pytest.fixture
def data_dir(tmp_path: Path, customers: list[FakeCustomer]) -> Path:
    seed_stores(tmp_path, customers)
    return tmp_path


def limits(datamap: DataMap, system: System) -> dict[Category, AgeLimit]:
    return age_limits(datamap, system)


def insert(store: ReferenceStore, table: str, **row: Any) -> None:
    with sqlite3.connect(store.path) as db:
        cols = ", ".join(row)
        db.execute(
            f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )


def ids_in(store: ReferenceStore, table: str, column: str) -> set[str]:
    with sqlite3.connect(store.path) as db:
        return {r[0] for r in db.execute(f"SELECT {column} FROM {table}")}


def call(store: ReferenceStore, c: FakeCustomer, call_id: str, at: datetime | None) -> str:
    insert(
        store,
        "call_recordings",
        call_id=call_id,
        caller_ref=c.caller_ref,
        caller_number=c.phone,
        started_at=at.isoformat() if at else None,
    )
    return call_id


@pytest.fixture
def telephony(data_dir: Path, customers: list[FakeCustomer]) -> ReferenceStore:
    """Customers 1, 3 and 5 (odd: they have calls) with one call 120 days old and one
    10 days old each."""
    store = open_store(data_dir, System.telephony)
    for n in (1, 3, 5):
        c = customers[n - 1]
        call(store, c, f"OLD-{n}", OLD)
        call(store, c, f"NEW-{n}", RECENT)
    return store


def hold(store: ReferenceStore, c: FakeCustomer, categories: list[Category], **kw: Any) -> None:
    ids = kw.pop("identifiers", c.identifiers(store.spec.system))
    store.hold(c.subject_id, categories, ["HOLD-1"], ids, kw.pop("previous", None))


# --- the data map's periods --------------------------------------------------------------------


def test_only_periods_counted_from_collection_are_deleted_by_age(datamap: DataMap) -> None:
    every = age_limits(datamap)
    assert {c: a.rule.period_days for c, a in every.items()} == {
        Category.interactions: 90,
        Category.cctv: 30,
        Category.web: 395,
    }
    assert set(age_limits(datamap, System.telephony)) == {Category.interactions}
    assert age_limits(datamap, System.orders) == {}  # purchases count from a year's end
    assert every[Category.cctv].concluded_cutoff(NOW) == NOW - timedelta(days=730)
    assert every[Category.web].concluded_cutoff(NOW) is None


@pytest.mark.parametrize("system", list(System))
def test_every_table_of_a_category_deleted_by_age_says_when_its_rows_were_collected(
    datamap: DataMap, data_dir: Path, system: System
) -> None:
    """A table without a collection column is never deleted by age: one added to a
    category with a period must say when its rows were collected, or it keeps them."""
    store = open_store(data_dir, system)
    with sqlite3.connect(store.path) as db:
        for table in store.spec.tables:
            if table.category in age_limits(datamap, system):
                assert table.collected is not None, table.name
                columns = {r[1] for r in db.execute(f"PRAGMA table_info({table.name})")}
                assert table.collected in columns


YEARS = RetentionRule(period_years=2, ground="g", criteria="c")


@given(
    now=st.datetimes(datetime(2024, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)),
    back=st.timedeltas(timedelta(days=700), timedelta(days=760)),
)
def test_a_period_in_years_deletes_exactly_when_the_erasure_rule_says(
    datamap: DataMap, now: datetime, back: timedelta
) -> None:
    """Calendar years, to the end of the last UK day, 29 February included: a record is
    past its period exactly when privops' own rule (``retention_end``) says it may go."""
    limit = AgeLimit(Category.interactions, YEARS, datamap.organisation)
    collected = now - back
    end = retention_end(YEARS, collected, datamap.organisation)
    assert end is not None
    assert (collected < limit.cutoff(now)) == (end <= now)


# --- deletion by age -----------------------------------------------------------------------------


def test_expired_rows_go_and_held_restricted_and_recent_ones_stay(
    telephony: ReferenceStore, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    held, restricted = customers[0], customers[4]  # and customers[2], neither
    hold(telephony, held, INTERACTIONS)
    telephony.set_restricted(restricted.identifiers(System.telephony), True)

    report = telephony.purge_expired(NOW, limits(datamap, System.telephony))

    left = ids_in(telephony, "call_recordings", "call_id")
    assert "OLD-1" in left  # under a legal hold
    assert "OLD-3" not in left  # past 90 days, nothing keeps it
    assert "OLD-5" in left  # restricted (Art. 18): kept, not used
    assert {"NEW-1", "NEW-3", "NEW-5"} <= left
    assert report.deleted == {"call_recordings": 1}
    assert ids_in(telephony, "callers", "caller_ref")  # contact: no period, never by age


def test_a_release_lets_the_next_deletion_take_what_was_held(
    telephony: ReferenceStore, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    held = customers[0]
    hold(telephony, held, INTERACTIONS)
    telephony.purge_expired(NOW, limits(datamap, System.telephony))
    assert "OLD-1" in ids_in(telephony, "call_recordings", "call_id")

    assert telephony.release(held.subject_id) > 0
    assert telephony.holding() == []
    telephony.purge_expired(NOW, limits(datamap, System.telephony))

    assert "OLD-1" not in ids_in(telephony, "call_recordings", "call_id")
    assert "NEW-1" in ids_in(telephony, "call_recordings", "call_id")


def test_a_hold_keeps_only_its_own_categories(
    telephony: ReferenceStore, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    hold(telephony, customers[0], [Category.contact])
    telephony.purge_expired(NOW, limits(datamap, System.telephony))
    assert "OLD-1" not in ids_in(telephony, "call_recordings", "call_id")


def test_a_new_state_replaces_what_was_held(
    telephony: ReferenceStore, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    c = customers[0]
    hold(telephony, c, INTERACTIONS)
    hold(telephony, c, [Category.contact])  # the interactions hold released, another placed
    telephony.purge_expired(NOW, limits(datamap, System.telephony))
    assert "OLD-1" not in ids_in(telephony, "call_recordings", "call_id")
    assert {h["category"] for h in telephony.legal_holds()} == {"contact"}


def test_a_state_whose_identifiers_did_not_open_keeps_the_rows_found_before(
    telephony: ReferenceStore, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    """The key gone (an erasure), the record comes without identifiers: what the
    earlier record found stays held, under the categories the new one names."""
    c = customers[0]
    hold(telephony, c, [Category.contact])
    hold(telephony, c, [Category.contact, Category.interactions], identifiers={})

    assert {h["key"] for h in telephony.legal_holds()} == {c.caller_ref}
    telephony.purge_expired(NOW, limits(datamap, System.telephony))
    assert "OLD-1" in ids_in(telephony, "call_recordings", "call_id")


def test_a_subject_never_found_is_held_nowhere(
    telephony: ReferenceStore, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    telephony.hold("CUST-9999", INTERACTIONS, ["HOLD-1"], {"phone": "+447700900998"})
    telephony.hold("CUST-9998", INTERACTIONS, ["HOLD-1"], {})
    assert telephony.legal_holds() == []
    assert telephony.purge_expired(NOW, limits(datamap, System.telephony)).deleted == {
        "call_recordings": 3
    }


def test_an_earlier_email_holds_a_row_only_with_the_subjects_owner_key(
    data_dir: Path, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    """As an erasure finds rows (docs/connectors.md, "Earlier identifiers"): the email
    the subject once had is another customer's now, and so are the rows under it."""
    crm = open_store(data_dir, System.crm)
    subject, other = customers[0], customers[1]
    for c in (subject, other):
        insert(
            crm,
            "support_messages",
            message_id=f"OLD-{c.number}",
            contact_id=c.contact_id,
            customer_id=c.subject_id,
            received_at=OLD.isoformat(),
        )
    crm.hold(
        subject.subject_id,
        INTERACTIONS,
        ["HOLD-1"],
        {"customer_id": subject.subject_id},
        {"email": [other.email]},
    )

    assert {h["key"] for h in crm.legal_holds()} == {subject.contact_id}
    crm.purge_expired(NOW, limits(datamap, System.crm))
    left = ids_in(crm, "support_messages", "message_id")
    assert "OLD-1" in left
    assert "OLD-2" not in left


def test_footage_under_an_open_or_lately_concluded_investigation_stays(
    data_dir: Path, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    """CCTV's own hold (the data map: kept while an investigation is open, then 730
    days after it concludes); footage past 30 days under no investigation goes."""
    cctv = open_store(data_dir, System.cctv)
    visitor = customers[0]  # n % 6 == 1: has footage
    cases = {
        "OPEN": (NOW - timedelta(days=60), None),
        "LATELY": (NOW - timedelta(days=800), NOW - timedelta(days=700)),
        "LONG-AGO": (NOW - timedelta(days=800), NOW - timedelta(days=760)),
        "NONE": (NOW - timedelta(days=60), "-"),
        "FRESH": (NOW - timedelta(days=20), "-"),
    }
    for name, (captured, closed) in cases.items():
        investigation = None if closed == "-" else f"INQ-{name}"
        insert(
            cctv,
            "clips",
            clip_id=name,
            visitor_ref=visitor.visitor_ref,
            captured_at=captured.isoformat(),
            investigation_id=investigation,
        )
        if investigation is not None:
            closed_at = None if closed is None else closed.isoformat()  # type: ignore[union-attr]
            insert(cctv, "investigations", investigation_id=investigation, closed_at=closed_at)

    cctv.purge_expired(NOW, limits(datamap, System.cctv))

    left = ids_in(cctv, "clips", "clip_id")
    assert {"OPEN", "LATELY", "FRESH"} <= left
    assert not {"LONG-AGO", "NONE"} & left


def test_categories_without_a_period_from_collection_are_never_deleted_by_age(
    data_dir: Path, datamap: DataMap
) -> None:
    """Orders and invoices count from a financial year's end, credit from an account's
    closing, contact and preferences have no period: privops' erasure follow-ups see to
    them, deletion by age never."""
    untouched: dict[tuple[System, str], int] = {}
    for system in System:
        store = open_store(data_dir, system)
        own = limits(datamap, system)
        for table in store.spec.tables:
            if table.category not in own:
                untouched[system, table.name] = store.count(table.name)
    far = NOW + timedelta(days=365 * 30)  # everything is old by then

    for system in System:
        open_store(data_dir, system).purge_expired(far, limits(datamap, system))

    for (system, name), count in untouched.items():
        assert open_store(data_dir, system).count(name) == count, name
    assert open_store(data_dir, System.crm).count("support_messages") == 0


def test_a_row_without_a_collection_time_is_never_deleted_by_age(
    telephony: ReferenceStore, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    call(telephony, customers[2], "UNDATED", None)
    telephony.purge_expired(NOW + timedelta(days=3650), limits(datamap, System.telephony))
    assert ids_in(telephony, "call_recordings", "call_id") == {"UNDATED"}


def test_a_statement_goes_with_the_last_row_it_completes(
    data_dir: Path, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    """A supplementary statement (Art. 16) completes the subject's data of a category:
    once deletion by age has taken all of it, the statement goes too; one completing
    data a hold keeps stays."""
    crm = open_store(data_dir, System.crm)
    held, free = [c for c in customers if c.messages][:2]
    for c in (held, free):
        assert crm.rectify(c.identifiers(System.crm), {"statement:interactions": "I called"})
    hold(crm, held, INTERACTIONS)
    later = NOW + timedelta(days=400)  # every seeded message is past 90 days by then

    report = crm.purge_expired(later, limits(datamap, System.crm))

    assert report.statements == 1
    assert crm.statements(free.identifiers(System.crm)) == []
    assert crm.statements(held.identifiers(System.crm))
    assert crm.rows(held.identifiers(System.crm))["support_messages"]


# --- the reference connector ---------------------------------------------------------------------


def state(c: FakeCustomer, system: System, categories: list[Category]) -> LegalHoldState:
    return LegalHoldState(
        subject_id=c.subject_id,
        system=system,
        categories=categories,
        hold_ids=["HOLD-1"],
        identifiers=c.identifiers(system),
        updated_at=NOW,
    )


async def test_the_connector_applies_holds_and_releases(
    telephony: ReferenceStore, data_dir: Path, customers: list[FakeCustomer]
) -> None:
    connector = TelephonyConnector(data_dir)
    c = customers[0]
    await connector.hold(state(c, System.telephony, INTERACTIONS))
    await connector.hold(state(c, System.telephony, INTERACTIONS))  # again: the same
    assert await connector.holding() == [c.subject_id]
    assert len(telephony.legal_holds()) == 1

    await connector.purge_expired(NOW)
    assert "OLD-1" in ids_in(telephony, "call_recordings", "call_id")

    await connector.release(c.subject_id)
    await connector.release(c.subject_id)  # idempotent
    await connector.purge_expired(NOW)
    assert "OLD-1" not in ids_in(telephony, "call_recordings", "call_id")


async def test_the_periodic_deletion_waits_for_the_holds(
    telephony: ReferenceStore, data_dir: Path
) -> None:
    """Deleting by age before the holds are read deletes what they keep."""
    connector = TelephonyConnector(data_dir)
    ready, stop = asyncio.Event(), asyncio.Event()
    reports: list[Any] = []
    running = asyncio.create_task(
        connector.purge_periodically(0.05, ready, stop, lambda _s, r: reports.append(r))
    )
    await asyncio.sleep(0.3)
    assert reports == []
    assert "OLD-3" in ids_in(telephony, "call_recordings", "call_id")

    ready.set()
    while len(reports) < 2:  # noqa: ASYNC110  (what is awaited is the loop's progress)
        await asyncio.sleep(0.01)
    ready.clear()  # a hold record not applied: the deletion pauses
    await asyncio.sleep(0.1)
    paused = len(reports)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(running, 2)

    assert len(reports) == paused
    assert "OLD-3" not in ids_in(telephony, "call_recordings", "call_id")


# --- second review, session 28 -------------------------------------------------------------------


def test_a_hold_keeps_the_calls_under_the_subjects_earlier_number(
    data_dir: Path, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    """A call names no owner: an erasure leaves one found only by the subject's old
    number (it may be the number's next holder's), but a hold keeps it (a stranger's
    call kept is the lesser harm; the subject's deleted is evidence lost). A row under
    the old number that names another owner is still not held."""
    tel, crm = open_store(data_dir, System.telephony), open_store(data_dir, System.crm)
    c, other = customers[0], customers[1]
    old_phone = "+447700900777"
    insert(tel, "callers", caller_ref="TEL-OLD", name="x", phone=old_phone)
    insert(
        tel,
        "call_recordings",
        call_id="OLD-NUMBER",
        caller_ref="TEL-OLD",
        caller_number=old_phone,
        started_at=OLD.isoformat(),
    )
    previous = {"phone": [old_phone]}
    assert "TEL-OLD" not in tel.resolve(c.identifiers(System.telephony), previous)  # erasure's

    tel.hold(c.subject_id, INTERACTIONS, ["HOLD-1"], c.identifiers(System.telephony), previous)
    tel.purge_expired(NOW, limits(datamap, System.telephony))
    assert "OLD-NUMBER" in ids_in(tel, "call_recordings", "call_id")

    insert(  # the other customer's message, found by the email the subject once had
        crm,
        "support_messages",
        message_id="THEIRS",
        contact_id=other.contact_id,
        customer_id=other.subject_id,
        received_at=OLD.isoformat(),
    )
    crm.hold(
        c.subject_id, INTERACTIONS, ["HOLD-1"], c.identifiers(System.crm), {"email": [other.email]}
    )
    assert other.contact_id not in {h["key"] for h in crm.legal_holds()}
    crm.purge_expired(NOW, limits(datamap, System.crm))
    assert "THEIRS" not in ids_in(crm, "support_messages", "message_id")


def test_rows_a_held_subject_gets_later_under_a_new_key_are_held(
    data_dir: Path, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    """The hold's identifiers are kept with it and its keys found again at each
    deletion by age: a second contact record of the held customer, made after the hold,
    is held without the worker sending the hold again (second review, session 28)."""
    crm = open_store(data_dir, System.crm)
    c = customers[0]
    hold(crm, c, INTERACTIONS)
    stranger = "CUST-0099"  # not found anywhere yet when the hold arrives
    crm.hold(stranger, INTERACTIONS, ["HOLD-2"], {"customer_id": stranger})
    assert crm.holding() == [c.subject_id, stranger]
    for contact, customer in (("CRM-NEW", c.subject_id), ("CRM-LATE", stranger)):
        insert(crm, "contacts", contact_id=contact, customer_id=customer, name="x")
        insert(
            crm,
            "support_messages",
            message_id=f"MSG-{contact}",
            contact_id=contact,
            customer_id=customer,
            received_at=(NOW + timedelta(days=1)).isoformat(),
        )

    crm.purge_expired(NOW + timedelta(days=100), limits(datamap, System.crm))

    assert {"MSG-CRM-NEW", "MSG-CRM-LATE"} <= ids_in(crm, "support_messages", "message_id")
    assert {(h["subject_id"], h["key"]) for h in crm.legal_holds()} >= {
        (c.subject_id, "CRM-NEW"),
        (stranger, "CRM-LATE"),
    }
    crm.release(stranger)
    assert crm.holding() == [c.subject_id]
    crm.purge_expired(NOW + timedelta(days=100), limits(datamap, System.crm))
    assert "MSG-CRM-LATE" not in ids_in(crm, "support_messages", "message_id")


def test_a_hold_whose_identifiers_did_not_open_keeps_its_keys_and_looks_for_no_more(
    data_dir: Path, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    """Its identifiers gone with their key, the store keeps none of them either."""
    crm = open_store(data_dir, System.crm)
    c = customers[0]
    hold(crm, c, INTERACTIONS)
    hold(crm, c, INTERACTIONS, identifiers={})
    insert(crm, "contacts", contact_id="CRM-NEW", customer_id=c.subject_id, name="x")
    crm.purge_expired(NOW, limits(datamap, System.crm))
    assert {h["key"] for h in crm.legal_holds()} == {c.contact_id}
    with sqlite3.connect(crm.path) as db:
        assert db.execute("SELECT identifiers, previous FROM _legal_hold_subjects").fetchall() == [
            ("{}", "{}")
        ]


def test_rows_of_unknown_age_are_kept_and_counted(
    telephony: ReferenceStore, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    """Kept for ever, but not silently: the report counts them (second review, session 28)."""
    call(telephony, customers[2], "UNDATED", None)
    insert(telephony, "call_recordings", call_id="GARBLED", started_at="02/03/2025 10:00")

    report = telephony.purge_expired(NOW, limits(datamap, System.telephony))

    assert {"UNDATED", "GARBLED"} <= ids_in(telephony, "call_recordings", "call_id")
    assert report.undated == {"call_recordings": 2}
    assert report.deleted == {"call_recordings": 3}


def test_simulate_shows_the_rows_of_unknown_age(capsys: pytest.CaptureFixture[str]) -> None:
    _on_purge(System.telephony, PurgeReport({"call_recordings": 3}, 0, {"call_recordings": 2}))
    _on_purge(System.crm, PurgeReport({"support_messages": 0}, 0, {"support_messages": 1}))
    _on_purge(System.web, PurgeReport({"page_views": 0}))
    out = " ".join(capsys.readouterr().out.split())
    assert "deleted by age (past the data map's period, not held): call_recordings 3" in out
    assert "kept, of unknown age (no collection time, or not a time): call_recordings 2" in out
    assert "crm deleted nothing by age; kept, of unknown age" in out
    assert "web" not in out


def test_footage_under_an_investigation_whose_closing_time_is_not_a_time_stays(
    data_dir: Path, customers: list[FakeCustomer], datamap: DataMap
) -> None:
    """Not known to be closed, it is open: the footage is kept, never deleted early."""
    cctv = open_store(data_dir, System.cctv)
    insert(
        cctv,
        "clips",
        clip_id="GARBLED-CLOSE",
        visitor_ref=customers[0].visitor_ref,
        captured_at=(NOW - timedelta(days=60)).isoformat(),
        investigation_id="INQ-G",
    )
    insert(cctv, "investigations", investigation_id="INQ-G", closed_at="last Tuesday")
    cctv.purge_expired(NOW, limits(datamap, System.cctv))
    assert "GARBLED-CLOSE" in ids_in(cctv, "clips", "clip_id")
