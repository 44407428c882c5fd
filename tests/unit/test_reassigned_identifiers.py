"""An earlier identifier that now names someone else (review, session 27): carriers
reassign phone numbers, and some providers recycle email addresses. Ann's old number is
Bob's now (her old address too, here), and her erasure carries both as earlier values.

Before, the reference systems took every row an earlier value found, so Ann's erasure
deleted Bob's CRM record and call recordings, her export copied his rows, her
restriction and rectification changed them; and the suppression list held her old
number, so Bob's every later event was dropped as an erased person's. Now a row found
only by an earlier email or phone is taken when its owner key is Ann's, and earlier
phones stay off the suppression list."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from privops.connectors.reference import (
    FakeCustomer,
    open_store,
    reference_connector,
    seed_customers,
    seed_stores,
)
from privops.connectors.sdk import Answer
from privops.core import records as r
from privops.core.identity import (
    IdentityMap,
    for_system,
    merge,
    previous_for_system,
    suppression_keys,
    suppression_match,
)
from privops.core.vocab import System

SECRET = b"test-secret-not-for-production"
NOW = datetime(2026, 7, 20, 9, 0, tzinfo=UTC)
SYSTEMS = (System.orders, System.crm, System.telephony, System.marketing)
Rows = dict[System, dict[str, list[dict[str, Any]]]]


@pytest.fixture
def people() -> tuple[FakeCustomer, FakeCustomer]:
    """Ann and Bob: both call in and are on the mailing list."""
    customers = seed_customers(24, anchor=date(2026, 3, 2))
    ann, bob = customers[0], customers[4]
    assert all(c.calls and c.subscriber_ref for c in (ann, bob))
    return ann, bob


@pytest.fixture
def data_dir(tmp_path: Path, people: tuple[FakeCustomer, FakeCustomer]) -> Path:
    seed_stores(tmp_path, seed_customers(24, anchor=date(2026, 3, 2)))
    return tmp_path


def ann_identity(ann: FakeCustomer, bob: FakeCustomer) -> IdentityMap:
    """Every system knew Ann by Bob's number and address once, then by her own."""
    found: IdentityMap | None = None
    for system in SYSTEMS:
        now = ann.identifiers(system)
        old = {name: getattr(bob, name) for name in ("phone", "email") if name in now}
        found = merge(found, ann.subject_id, system, old, NOW - timedelta(days=400))
        found = merge(found, ann.subject_id, system, now, NOW - timedelta(days=30))
    assert found is not None
    return found


def task_for(model: type[r.Task], identity: IdentityMap, system: System, **kw: object) -> Any:
    """A task as privops' fan-out builds it: the system's identifiers and earlier ones."""
    return model.model_validate(
        {
            "task_id": f"T-{system.value}",
            "request_id": "R-ann",
            "subject_id": identity.subject_id,
            "system": system,
            "issued_at": NOW,
            "identifiers": for_system(identity, system),
            "previous_identifiers": previous_for_system(identity, system),
            **kw,
        }
    )


def rows_of(data_dir: Path, c: FakeCustomer) -> Rows:
    return {s: open_store(data_dir, s).rows(c.identifiers(s)) for s in SYSTEMS}


def act(data_dir: Path, task: r.Task) -> Answer:
    connector = reference_connector(task.system, data_dir)
    return asyncio.run(connector.handle(task))


def test_anns_tasks_carry_bobs_number_and_address_as_earlier_values(
    people: tuple[FakeCustomer, FakeCustomer],
) -> None:
    ann, bob = people
    identity = ann_identity(ann, bob)
    for system in SYSTEMS:
        previous = previous_for_system(identity, system)
        assert previous["phone"] == [bob.phone]


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        pytest.param(r.Restrict, {}, id="restrict"),
        pytest.param(r.Rectify, {"changes": {"name": "Ann Other"}}, id="rectify"),
        pytest.param(r.Export, {}, id="export"),
        pytest.param(r.Erase, {}, id="erase"),
    ],
)
def test_anns_request_leaves_bobs_rows_alone(
    data_dir: Path,
    people: tuple[FakeCustomer, FakeCustomer],
    model: type[r.Task],
    extra: dict[str, object],
) -> None:
    ann, bob = people
    identity = ann_identity(ann, bob)
    bobs, anns = rows_of(data_dir, bob), rows_of(data_dir, ann)
    for system in SYSTEMS:
        answer = act(data_dir, task_for(model, identity, system, **extra))
        assert answer.kind == "completed", (system, answer)
        own = sum(map(len, anns[system].values()))
        if model is r.Erase or model is r.Export:
            assert answer.records_affected == own, system  # Ann's rows, not one more
    assert rows_of(data_dir, bob) == bobs
    assert rows_of(data_dir, ann) != anns or model is r.Export
    if model is r.Export:
        exports = [json.loads(p.read_text()) for p in data_dir.rglob("R-ann.json")]
        assert len(exports) == len(SYSTEMS)
        assert bob.name not in json.dumps(exports)
        assert bob.email not in json.dumps(exports)


def test_bobs_next_events_do_not_match_anns_suppression_list(
    people: tuple[FakeCustomer, FakeCustomer],
) -> None:
    """Her old number is not listed; her old address is (the chosen risk: a provider
    rarely recycles one, and a re-import under it would market to her again)."""
    ann, bob = people
    keys = suppression_keys(SECRET, ann_identity(ann, bob))
    for system in SYSTEMS:
        bobs = {k: v for k, v in bob.identifiers(system).items() if k != "email"}
        assert suppression_match(keys, (SECRET,), bobs, system) is None, system
    assert suppression_match(keys, (SECRET,), {"phone": bob.phone}) is None
    assert suppression_match(keys, (SECRET,), {"email": bob.email}) is not None
    for system in SYSTEMS:  # Ann herself, under any current identifier
        assert suppression_match(keys, (SECRET,), ann.identifiers(system), system) is not None


def _subscriber(data_dir: Path, ref: str, customer_id: str | None, email: str) -> None:
    with sqlite3.connect(open_store(data_dir, System.marketing).path) as db:
        db.execute(
            "INSERT INTO subscribers (subscriber_ref, customer_id, email) VALUES (?, ?, ?)",
            (ref, customer_id, email),
        )


def test_a_row_found_by_an_earlier_value_is_taken_only_with_the_subjects_owner_key(
    data_dir: Path, people: tuple[FakeCustomer, FakeCustomer]
) -> None:
    ann, _bob = people
    store = open_store(data_dir, System.marketing)
    _subscriber(data_dir, "MKT-ANN-OLD", ann.subject_id, "ann.old@example.com")
    _subscriber(data_dir, "MKT-NOBODY", None, "ann.older@example.com")
    current = {"email": ann.email}
    previous = {"email": ["ann.old@example.com", "ann.older@example.com"]}
    # Her customer number, which her current entry shows, names the old entry: hers.
    assert store.resolve(current, previous) == sorted(["MKT-ANN-OLD", str(ann.subscriber_ref)])
    # An entry naming no owner: whose, and since when, the task cannot tell.
    assert "MKT-NOBODY" not in store.resolve(current, previous)
    # Nothing current found, no customer number carried: hers cannot be told apart.
    assert store.resolve({"email": "ann.new@example.com"}, previous) == []


def test_a_phone_a_system_was_not_told_she_replaced_is_not_listed(
    people: tuple[FakeCustomer, FakeCustomer],
) -> None:
    """She gave the CRM and telephony Bob's number long ago and told only orders and
    marketing her new one: for those two, his number is still their current value, yet
    it is an earlier phone of hers (second review, session 27: his events matched)."""
    ann, bob = people
    found: IdentityMap | None = None
    for system in (System.crm, System.telephony):
        found = merge(
            found, ann.subject_id, system, {"phone": bob.phone}, NOW - timedelta(days=400)
        )
    for system in (System.orders, System.marketing):
        found = merge(found, ann.subject_id, system, {"phone": ann.phone}, NOW - timedelta(days=30))
    assert found is not None
    assert found.systems[System.crm]["phone"].value == bob.phone
    keys = suppression_keys(SECRET, found)
    assert suppression_match(keys, (SECRET,), {"phone": bob.phone}) is None
    for system in (System.crm, System.telephony):
        assert suppression_match(keys, (SECRET,), {"phone": bob.phone}, system) is None
    assert suppression_match(keys, (SECRET,), {"phone": ann.phone}) is not None


def test_a_systems_stale_current_phone_takes_no_row_naming_another_owner(
    data_dir: Path, people: tuple[FakeCustomer, FakeCustomer]
) -> None:
    """The CRM still holds Bob's number as Ann's current one (she never told it of her
    new one): her erasure and her export take none of his rows, which name his customer
    number; her own, found by her ids, go (second review, session 27)."""
    ann, bob = people
    stale = {**ann.identifiers(System.crm), "phone": bob.phone}
    identity = merge(None, ann.subject_id, System.crm, stale, NOW - timedelta(days=400))
    bobs, anns = rows_of(data_dir, bob), rows_of(data_dir, ann)
    export = act(data_dir, task_for(r.Export, identity, System.crm))
    assert export.records_affected == sum(map(len, anns[System.crm].values()))
    text = " ".join(p.read_text() for p in data_dir.rglob("R-ann.json"))
    assert bob.name not in text
    assert bob.email not in text
    act(data_dir, task_for(r.Erase, identity, System.crm))
    assert rows_of(data_dir, bob)[System.crm] == bobs[System.crm]
    assert not any(rows_of(data_dir, ann)[System.crm].values())
