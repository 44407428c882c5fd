"""The reference systems' SQLite stores and connectors, without Kafka."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from privops.adapters.settings import Settings
from privops.connectors.reference import (
    CctvConnector,
    CrmConnector,
    FakeCustomer,
    Knobs,
    OrdersConnector,
    open_store,
    seed_customers,
    seed_stores,
)
from privops.connectors.sdk import (
    ConnectorRunner,
    Ledger,
    Outcome,
    RetryPolicy,
    TransientError,
)
from privops.core.records import (
    Erase,
    Export,
    NotFound,
    Rectify,
    Restrict,
    Retention,
    TaskCompleted,
    TaskFailed,
    TaskRetained,
)
from privops.core.vocab import Category, System

ANCHOR = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
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


def erase_task(c: FakeCustomer, system: System, **kw: object) -> Erase:
    fields: dict[str, object] = {
        "task_id": "T-1",
        "request_id": "R-1",
        "subject_id": c.subject_id,
        "system": system,
        "issued_at": NOW,
        "identifiers": c.identifiers(system),
    }
    fields.update(kw)
    return Erase.model_validate(fields)


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
    assert missing == Outcome.not_found()


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
    task = Restrict(
        task_id="T-2",
        request_id="R-2",
        subject_id=c.subject_id,
        system=System.crm,
        issued_at=NOW,
        identifiers={"phone": c.phone.replace("+44", "0")},
    )
    outcome = await CrmConnector(data_dir).restrict(task)
    rows = [r for t in store.rows({"customer_id": c.subject_id}).values() for r in t]
    assert outcome.records_affected == len(rows) > 1
    assert all(r["restricted"] == 1 for r in rows)

    assert store.set_restricted({"customer_id": c.subject_id}, False) == len(rows)
    rows = [r for t in store.rows({"customer_id": c.subject_id}).values() for r in t]
    assert all(r["restricted"] == 0 for r in rows)
    assert store.set_restricted({"customer_id": "CUST-9999"}, True) is None


async def test_rectify_updates_fields_it_holds(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    c = by_number(customers, 4)
    store = open_store(data_dir, System.crm)
    task = Rectify(
        task_id="T-3",
        request_id="R-3",
        subject_id=c.subject_id,
        system=System.crm,
        issued_at=NOW,
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
    assert await CrmConnector(data_dir).rectify(gone) == Outcome.not_found()


def test_export_writes_file_with_checksum(data_dir: Path, customers: list[FakeCustomer]) -> None:
    c = by_number(customers, 5)
    task = Export(
        task_id="T-4",
        request_id="REQ/../../etc",
        subject_id=c.subject_id,
        system=System.orders,
        issued_at=NOW,
        identifiers=c.identifiers(System.orders),
    )
    outcome = asyncio.run(OrdersConnector(data_dir).export(task))

    ref = outcome.export
    assert outcome.kind == "completed"
    assert ref is not None
    path = Path(ref.location)
    assert path.is_file()
    assert path.name == "orders.json"
    assert path.parent.parent == (data_dir / "exports").resolve()
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
    assert none == Outcome.not_found()


# --- knobs and the SDK's pure parts -------------------------------------------------------------


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
    assert await silent.handle(task) == Outcome.no_answer()


def test_outcomes_become_result_records(customers: list[FakeCustomer]) -> None:
    task = erase_task(by_number(customers, 1), System.crm, attempt=3)
    done = Outcome.completed(4).result(task, NOW)
    assert isinstance(done, TaskCompleted)
    assert done.records_affected == 4
    assert done.attempt == 3
    kept = Outcome.retained("why", [Category.cctv]).result(task, NOW)
    assert isinstance(kept, TaskRetained)
    assert kept.categories == [Category.cctv]
    assert isinstance(Outcome.not_found().result(task, NOW), NotFound)
    failed = Outcome.failed("busy").result(task, NOW)
    assert isinstance(failed, TaskFailed)
    assert failed.retryable
    assert Outcome.no_answer().result(task, NOW) is None
    assert not Outcome.failed("busy").final
    assert Outcome.failed("no", retryable=False).final
    assert Outcome.completed().final
    assert not Outcome.no_answer().final


def test_ledger_round_trip(tmp_path: Path, customers: list[FakeCustomer]) -> None:
    task = erase_task(by_number(customers, 1), System.crm)
    ledger = Ledger(tmp_path / "l.db")
    result = Outcome.retained("why", [Category.contact]).result(task, NOW)
    assert result is not None
    ledger.put(task, "retained", result)
    ledger.close()
    again = Ledger(tmp_path / "l.db")
    assert again.get("T-1") == result
    assert again.get("T-2") is None
    assert len(again) == 1


class _Flaky(CrmConnector):
    def __init__(self, data_dir: Path, error: Exception) -> None:
        super().__init__(data_dir)
        self.error = error
        self.calls = 0

    async def erase(self, task: Erase) -> Outcome:
        self.calls += 1
        raise self.error


async def test_runner_retries_transient_then_fails_retryable(
    data_dir: Path, customers: list[FakeCustomer]
) -> None:
    flaky = _Flaky(data_dir, TransientError("db locked"))
    runner = ConnectorRunner(flaky, Settings(), retry=RetryPolicy(retries=3, first_delay=0.001))
    outcome = await runner._execute(erase_task(by_number(customers, 1), System.crm))
    assert flaky.calls == 4
    assert outcome.kind == "failed"
    assert outcome.retryable

    broken = _Flaky(data_dir, KeyError("theo.patel@example.com"))
    runner = ConnectorRunner(broken, Settings())
    outcome = await runner._execute(erase_task(by_number(customers, 1), System.crm))
    assert broken.calls == 1
    assert outcome == Outcome.failed("connector error: KeyError", retryable=False)
