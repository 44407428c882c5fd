"""The reference systems' SQLite stores and connectors, without Kafka."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.adapters.settings import Settings
from privops.connectors.reference import (
    CctvConnector,
    CrmConnector,
    FakeCustomer,
    Knobs,
    MarketingConnector,
    OrdersConnector,
    UnsafeRequestId,
    exported_file,
    open_store,
    reference_connector,
    seed_customers,
    seed_stores,
)
from privops.connectors.sdk import Answer, ConnectorRunner, TransientError
from privops.core.datamap import DataMap
from privops.core.exports import export_problem
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
from privops.core.vocab import Category, System

ANCHOR = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
T = TypeVar("T", bound=Task)

FINANCIAL = "legal_obligation: financial records (6 years)"


@pytest.fixture
def customers() -> list[FakeCustomer]:
    return seed_customers(24, anchor=ANCHOR)


@pytest.fixture
def data_dir(tmp_path: Path, customers: list[FakeCustomer]) -> Path:
    seed_stores(tmp_path, customers)
    return tmp_path


def by_number(customers: list[FakeCustomer], n: int) -> FakeCustomer:
    return customers[n - 1]


def task_of(model: type[T], c: FakeCustomer, system: System, **kw: object) -> T:
    """A task for ``c`` in ``system``, as privops would send it; ``kw`` overrides fields."""
    fields: dict[str, object] = {
        "task_id": "T-1",
        "request_id": "R-1",
        "subject_id": c.subject_id,
        "system": system,
        "issued_at": NOW,
        "identifiers": c.identifiers(system),
    }
    fields.update(kw)
    return model.model_validate(fields)


def erase_task(c: FakeCustomer, system: System, **kw: object) -> Erase:
    return task_of(Erase, c, system, **kw)


# --- fake people ---------------------------------------------------------------------------


def test_seed_is_deterministic_and_fake() -> None:
    first = seed_customers(40, anchor=ANCHOR)
    assert first == seed_customers(40, anchor=ANCHOR)
    assert [c.subject_id for c in first[:2]] == ["CUST-0001", "CUST-0002"]
    assert len({c.email for c in first}) == 40
    assert all(c.email.endswith("@example.com") for c in first)
    assert all(c.phone.startswith("+447700900") for c in first)
    lapsed = by_number(first, 10)
    assert all((ANCHOR - o.placed_at.date()).days > 6 * 365 for o in lapsed.orders)
    assert by_number(first, 1).credit is not None
    assert by_number(first, 1).credit.overdue_pence > 0  # type: ignore[union-attr]
    assert any(clip.investigation_open for clip in by_number(first, 1).clips)


@pytest.mark.parametrize("n", [0, 1000])
def test_seed_rejects_out_of_range(n: int) -> None:
    with pytest.raises(ValueError, match="between 1 and"):
        seed_customers(n)


def test_seed_stores_only_when_missing(tmp_path: Path, customers: list[FakeCustomer]) -> None:
    assert all(seed_stores(tmp_path, customers).values())
    assert not any(seed_stores(tmp_path, customers).values())
    assert all(seed_stores(tmp_path, customers, reset=True).values())


@pytest.mark.parametrize(
    ("system", "kinds"),
    [
        (System.orders, ["customer_id", "email", "phone", "system_ref"]),
        (System.crm, ["customer_id", "email", "phone", "system_ref"]),
        (System.telephony, ["phone", "system_ref"]),
        (System.marketing, ["customer_id", "email", "phone", "system_ref"]),
        (System.web, ["customer_id", "email", "system_ref"]),
        (System.cctv, ["customer_id", "system_ref"]),
    ],
)
def test_each_identifier_a_system_knows_finds_the_subject_there(
    data_dir: Path, customers: list[FakeCustomer], system: System, kinds: list[str]
) -> None:
    c = by_number(customers, 1)  # in every system
    ids = c.identifiers(system)
    assert list(ids) == kinds
    store = open_store(data_dir, system)
    own = store.resolve(ids)
    assert len(own) == 1
    for kind, value in ids.items():
        assert store.resolve({kind: value}) == own, kind


@pytest.mark.parametrize(
    ("n", "system", "held"),
    [
        (3, System.marketing, False),  # n % 3 == 0: not a subscriber
        (3, System.cctv, False),
        (6, System.telephony, False),  # even: no calls
        (7, System.cctv, True),
        (2, System.marketing, True),
        (10, System.orders, True),
    ],
)
def test_a_system_holds_only_the_customers_it_has_rows_for(
    data_dir: Path, customers: list[FakeCustomer], n: int, system: System, held: bool
) -> None:
    c = by_number(customers, n)
    assert c.in_system(system) is held
    assert bool(open_store(data_dir, system).resolve(c.identifiers(system))) is held


# --- erase ----------------------------------------------------------------------------------


def test_erase_deletes_erased_categories_and_keeps_retained(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    c = by_number(customers, 1)
    store = open_store(data_dir, System.orders)
    before = store.rows({"customer_id": c.subject_id})
    other_before = store.rows({"customer_id": "CUST-0002"})

    report = store.erase(
        c.identifiers(System.orders),
        [Category.contact, Category.credit],
        [
            Retention(category=Category.purchases, ground=FINANCIAL),
            Retention(category=Category.payment, ground=FINANCIAL),
        ],
    )

    after = store.rows({"customer_id": c.subject_id})
    assert report.found
    assert report.deleted == len(before["customers"]) + len(before["credit_accounts"]) == 2
    assert report.anonymised == len(before["orders"])
    assert set(report.kept) == {Category.purchases, Category.payment}
    assert after["customers"] == []
    assert after["credit_accounts"] == []
    assert len(after["invoices"]) == len(before["invoices"]) > 0
    assert after["invoices"][0]["billing_name"] == c.name  # the financial record stays whole
    assert all(o["delivery_name"] is None and o["delivery_phone"] is None for o in after["orders"])
    assert len(after["payments"]) == len(before["payments"])
    # By email the subject is gone now (the contact row held it); by customer id not.
    assert store.resolve({"email": c.email}) == []
    assert store.rows({"customer_id": "CUST-0002"}) == other_before


def test_erase_everything_when_nothing_kept(data_dir: Path, customers: list[FakeCustomer]) -> None:
    c = by_number(customers, 10)
    store = open_store(data_dir, System.orders)
    total = store.count("invoices")
    own = len(store.rows({"customer_id": c.subject_id})["invoices"])

    report = store.erase(c.identifiers(System.orders))

    assert report.found
    assert not report.kept
    assert report.deleted > 0
    assert all(rows == [] for rows in store.rows({"customer_id": c.subject_id}).values())
    assert store.count("invoices") == total - own
    with sqlite3.connect(store.path) as db:
        assert (
            db.execute("SELECT count(*) FROM customers WHERE email = ?", (c.email,)).fetchone()[0]
            == 0
        )


def test_an_erase_deletes_the_subjects_earlier_exports_too(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    """An access request's export is every row of the subject in plaintext: the erase
    deleted the rows and left the file (review, session 26). Deleted whatever the erase
    keeps (retention keeps the rows, not a copy made for the subject), counted in the
    answer; another subject's export stays."""
    ann, bob = by_number(customers, 3), by_number(customers, 4)
    orders = OrdersConnector(data_dir)
    for c, request_id in ((ann, "R-ann-1"), (ann, "R-ann-2"), (bob, "R-bob")):
        task = task_of(Export, c, System.orders, request_id=request_id)
        assert asyncio.run(orders.export(task)).kind == "completed"
    directory = data_dir.resolve() / "exports" / "orders"
    assert {p.name for p in directory.iterdir()} == {"R-ann-1.json", "R-ann-2.json", "R-bob.json"}

    kept = [Retention(category=Category.purchases, ground=FINANCIAL)]
    erase = erase_task(ann, System.orders, categories=[Category.contact], keep=kept)
    assert asyncio.run(orders.erase(erase)).kind == "retained"
    assert {p.name for p in directory.iterdir()} == {"R-bob.json"}
    assert ann.email not in "".join(p.read_text() for p in directory.iterdir())

    report = open_store(data_dir, System.orders).erase(ann.identifiers(System.orders))
    assert report.exports_deleted == 0  # gone already, not counted twice

    crm = CrmConnector(data_dir)
    asyncio.run(crm.export(task_of(Export, ann, System.crm, request_id="R-ann-1")))
    held = open_store(data_dir, System.crm).rows(ann.identifiers(System.crm))
    done = asyncio.run(crm.erase(erase_task(ann, System.crm)))
    assert not (data_dir.resolve() / "exports" / "crm" / "R-ann-1.json").exists()
    assert (done.kind, done.records_affected) == ("completed", sum(map(len, held.values())) + 1)


def test_erase_not_found(data_dir: Path) -> None:
    store = open_store(data_dir, System.crm)
    assert not store.erase({"email": "nobody@example.com", "phone": "not a phone"}).found


async def test_connector_erase_answers(data_dir: Path, customers: list[FakeCustomer]) -> None:
    orders = OrdersConnector(data_dir)
    kept = await orders.erase(
        erase_task(
            by_number(customers, 2),
            System.orders,
            categories=[Category.contact],
            keep=[Retention(category=Category.purchases, ground=FINANCIAL)],
        )
    )
    assert kept.kind == "retained"
    assert kept.categories == (Category.purchases,)
    assert "purchases: legal_obligation" in kept.reason
    assert "@" not in kept.reason

    done = await CrmConnector(data_dir).erase(erase_task(by_number(customers, 2), System.crm))
    assert done.kind == "completed"
    assert done.records_affected > 0

    missing = await CrmConnector(data_dir).erase(
        erase_task(by_number(customers, 2), System.crm, identifiers={"customer_id": "CUST-9999"})
    )
    assert missing == Answer.not_found()


async def test_cctv_keeps_footage_under_open_investigation(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    c = by_number(customers, 1)
    store = open_store(data_dir, System.cctv)
    clips = store.rows(c.identifiers(System.cctv))["clips"]
    held = [x for x in clips if x["investigation_id"]]
    assert held
    assert len(clips) > len(held)

    outcome = await CctvConnector(data_dir).erase(erase_task(c, System.cctv))

    assert outcome.kind == "retained"
    assert outcome.categories == (Category.cctv,)
    left = store.rows(c.identifiers(System.cctv))["clips"]
    assert [x["clip_id"] for x in left] == [x["clip_id"] for x in held]


# --- restrict, rectify, export --------------------------------------------------------------


async def test_restrict_and_lift(data_dir: Path, customers: list[FakeCustomer]) -> None:
    c = by_number(customers, 3)
    store = open_store(data_dir, System.crm)
    task = task_of(Restrict, c, System.crm, identifiers={"phone": c.phone.replace("+44", "0")})
    outcome = await CrmConnector(data_dir).restrict(task)
    rows = [r for t in store.rows({"customer_id": c.subject_id}).values() for r in t]
    assert outcome.records_affected == len(rows) > 1
    assert all(r["restricted"] == 1 for r in rows)

    assert store.set_restricted({"customer_id": c.subject_id}, False) == len(rows)
    rows = [r for t in store.rows({"customer_id": c.subject_id}).values() for r in t]
    assert all(r["restricted"] == 0 for r in rows)
    assert store.set_restricted({"customer_id": "CUST-9999"}, True) is None


async def test_a_marketing_objection_outlives_a_restriction_lift(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    """Review, session 24: the objection was sent as a plain Restrict, so the system kept
    it in the same flag a restriction uses, and lifting any later restriction switched
    direct marketing back on. Now it is kept apart and no lift touches it."""
    c = by_number(customers, 5)
    store = open_store(data_dir, System.marketing)
    ids = c.identifiers(System.marketing)
    connector = MarketingConnector(data_dir)
    objection = task_of(Restrict, c, System.marketing).model_copy(
        update={"marketing_objection": True}
    )
    assert not store.objects_to_marketing(ids)
    assert (await connector.restrict(objection)).records_affected == 1
    restriction = task_of(Restrict, c, System.marketing)
    await connector.restrict(restriction)
    await connector.lift_restriction(task_of(LiftRestriction, c, System.marketing))
    rows = [r for t in store.rows(ids).values() for r in t]
    assert all(r["restricted"] == 0 for r in rows)
    assert store.objects_to_marketing(ids)
    assert not store.objects_to_marketing(by_number(customers, 6).identifiers(System.marketing))


async def test_an_upheld_objection_stops_its_purposes_and_restricts_nothing(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    """An upheld legitimate-interest objection restricted every row: the CRM could no
    longer serve the customer at all (review, session 34). It is kept apart, per purpose."""
    c = by_number(customers, 5)
    store = open_store(data_dir, System.crm)
    ids = c.identifiers(System.crm)
    objection = task_of(Restrict, c, System.crm).model_copy(
        update={"objected_purposes": ["customer_support"]}
    )
    assert store.objected_purposes(ids) == set()
    assert (await CrmConnector(data_dir).restrict(objection)).records_affected
    rows = [r for t in store.rows(ids).values() for r in t]
    assert all(r["restricted"] == 0 for r in rows)  # the rest goes on
    await CrmConnector(data_dir).lift_restriction(task_of(LiftRestriction, c, System.crm))
    assert store.objected_purposes(ids) == {"customer_support"}
    assert store.objected_purposes(by_number(customers, 6).identifiers(System.crm)) == set()


async def test_a_new_postcode_is_written_into_the_address(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    """Review, session 24: a postcode was accepted and answered completed with 0 rows in
    every system (no store had a postcode column): nothing was corrected."""
    c = by_number(customers, 7)
    store = open_store(data_dir, System.crm)
    ids = c.identifiers(System.crm)
    changed = store.rectify(ids, {"postcode": "ZZ9 9ZZ"})
    assert changed is not None
    assert changed >= 1
    addresses = [
        row["address"] for rows in store.rows(ids).values() for row in rows if "address" in row
    ]
    assert addresses
    assert all(a.endswith(", ZZ9 9ZZ") for a in addresses if a)
    # A new email and postcode together, the subject known by email only: one lookup,
    # so the postcode is not looked up by the email just changed (it was skipped).
    by_email = {"email": c.email}
    assert store.rectify(by_email, {"email": "moved@example.com", "postcode": "YY1 1YY"})
    moved = {"email": "moved@example.com"}
    assert all(
        a.endswith(", YY1 1YY")
        for rows in store.rows(moved).values()
        for a in (row.get("address") for row in rows)
        if a
    )
    # An address without the ", " parts is left as it is, never replaced by the postcode.
    store.rectify(moved, {"address": "Flat 2 10 New Road Leeds LS1 1AA"})
    store.rectify(moved, {"postcode": "LS2 2BB"})
    kept = [row.get("address") for rows in store.rows(moved).values() for row in rows]
    assert "LS2 2BB" not in kept
    # A field no row of a system holds: the connector answers not found, not completed.
    cctv = task_of(Rectify, c, System.cctv).model_copy(update={"changes": {"name": "X"}})
    assert (await reference_connector(System.cctv, data_dir).rectify(cctv)).kind == "not_found"


async def test_rectify_updates_fields_it_holds(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    c = by_number(customers, 4)
    store = open_store(data_dir, System.crm)
    task = task_of(
        Rectify,
        c,
        System.crm,
        identifiers={"email": c.email},
        changes={"email": "New.Address@Example.com", "address": "1 New Road, Leeds, LS1 1AA"},
    )
    outcome = await CrmConnector(data_dir).rectify(task)

    assert outcome.kind == "completed"
    assert outcome.records_affected == 1
    assert store.resolve({"email": c.email}) == []
    contact = store.rows({"email": "new.address@example.com"})["contacts"][0]
    assert contact["address"] == "1 New Road, Leeds, LS1 1AA"
    assert contact["name"] == c.name

    bad = await CrmConnector(data_dir).rectify(task.model_copy(update={"changes": {"phone": "x"}}))
    assert bad.kind == "failed"
    assert not bad.retryable
    gone = task.model_copy(update={"identifiers": {"email": "nobody@example.com"}})
    assert await CrmConnector(data_dir).rectify(gone) == Answer.not_found()


def test_export_writes_file_with_checksum(data_dir: Path, customers: list[FakeCustomer]) -> None:
    c = by_number(customers, 5)
    task = task_of(Export, c, System.orders, request_id="REQ-5")
    outcome = asyncio.run(OrdersConnector(data_dir).export(task))

    ref = outcome.export
    assert outcome.kind == "completed"
    assert ref is not None
    # Reported below the data map's root, written where the export server would serve it.
    assert ref.location == "https://exports.allled.example/dsar/orders/REQ-5.json"
    path = data_dir.resolve() / "exports" / "orders" / "REQ-5.json"
    assert exported_file(data_dir, ref.location) == path
    assert path.is_file()
    data = path.read_bytes()
    assert ref.checksum == "sha256:" + hashlib.sha256(data).hexdigest()
    document = json.loads(data)
    rows = sum(len(t["rows"]) for t in document["tables"].values())
    assert ref.record_count == rows == outcome.records_affected
    assert document["tables"]["customers"]["rows"][0]["email"] == c.email
    assert len(document["tables"]["orders"]["rows"]) == len(c.orders)

    none = asyncio.run(
        OrdersConnector(data_dir).export(
            task.model_copy(update={"identifiers": {"customer_id": "CUST-9999"}})
        )
    )
    assert none == Answer.not_found()


def test_every_reference_export_passes_privops_check(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    dm = load_datamap()
    for system in System:
        c = next(c for c in customers if c.in_system(system))
        task = task_of(Export, c, system, request_id="REQ-7F3A")
        ref = asyncio.run(reference_connector(system, data_dir).export(task)).export
        assert ref is not None, system
        assert export_problem(dm, system, ref, "REQ-7F3A") is None, system
        path = exported_file(data_dir, ref.location)
        assert path is not None, system
        assert path.parent == (data_dir / "exports" / system.value).resolve()
        assert path.is_file()


@pytest.mark.parametrize(
    "request_id", ["REQ/../../etc", "../orders", "a@b.example", "REQ:1", ".hidden", "R 1"]
)
def test_export_refuses_request_ids_it_would_have_to_rewrite(
    data_dir: Path, customers: list[FakeCustomer], request_id: str
) -> None:
    task = task_of(Export, by_number(customers, 5), System.orders, request_id=request_id)
    with pytest.raises(UnsafeRequestId):
        asyncio.run(OrdersConnector(data_dir).export(task))
    assert not (data_dir / "exports").exists()  # refused before anything was written


async def test_runner_answers_unsafe_request_id_as_permanent_failure(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    task = task_of(Export, by_number(customers, 5), System.orders, request_id="REQ/../x")
    runner = ConnectorRunner(OrdersConnector(data_dir), Settings())
    answer = await runner._execute(task)
    assert answer == Answer.failed("connector error: UnsafeRequestId", retryable=False)
    assert answer.final


def export_under(
    data_dir: Path, customers: list[FakeCustomer], root: str | None
) -> tuple[DataMap, ExportReference]:
    """Export customer 5 from orders under a data map that declares ``root`` for orders."""
    dm = load_datamap()
    spec = dm.systems[System.orders].model_copy(update={"export_root": root})
    changed = dm.model_copy(update={"systems": {**dm.systems, System.orders: spec}})
    task = task_of(Export, by_number(customers, 5), System.orders, request_id="REQ-5")
    ref = asyncio.run(OrdersConnector(data_dir, datamap=changed).export(task)).export
    assert ref is not None
    return changed, ref


def test_export_into_a_file_root(
    data_dir: Path, customers: list[FakeCustomer], tmp_path: Path
) -> None:
    shared = tmp_path / "shared exports" / "orders"
    root = shared.as_uri() + "/"
    dm, ref = export_under(data_dir, customers, root)
    assert ref.location == root + "REQ-5.json"
    assert (shared / "REQ-5.json").is_file()
    assert export_problem(dm, System.orders, ref, "REQ-5") is None


def test_without_a_declared_root_exports_are_local_and_refused(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    dm, ref = export_under(data_dir, customers, None)
    assert ref.location == (data_dir / "exports" / "orders" / "REQ-5.json").resolve().as_uri()
    assert export_problem(dm, System.orders, ref, "REQ-5") is not None


# --- knobs ---------------------------------------------------------------------------------


async def test_fail_first_counts_deliveries_not_tries(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    crm = CrmConnector(data_dir, Knobs(fail_first=2))
    task = erase_task(by_number(customers, 6), System.crm)
    for attempt in (1, 1, 2):
        with pytest.raises(TransientError):
            await crm.handle(task.model_copy(update={"attempt": attempt}))
    outcome = await crm.handle(task.model_copy(update={"attempt": 3}))
    assert outcome.kind == "completed"

    silent = CrmConnector(data_dir, Knobs(silent=True))
    assert await silent.handle(task) == Answer.no_answer()
