"""The access letter lists the categories of data each system found on the subject
(UK GDPR Art. 15(1)(b): the categories "concerned"), not every category the data map
says the system may hold: a customer who never applied for credit was told the company
held their credit file, and the credit reference agencies were named among its
recipients."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from privops import contract
from privops.adapters.avro import Codec
from privops.connectors.reference import OrdersConnector, exported_file, seed_stores
from privops.connectors.reference.people import FakeCustomer
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.fanout import categories_found
from privops.core.manifest import build_access_manifest
from privops.core.request import TaskRecord
from privops.core.vocab import Category, RequestState, RequestType, System, TaskAction
from tests.unit.test_reference_stores import customers, task_of  # noqa: F401 (fixture)
from tests.unit.test_workflow import (
    NOW,
    answer,
    answer_all,
    approved,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    export_ref,
    start,
)

C = Category
CREDIT_ONLY = {"Credit reference agencies", "ALL LED group companies"}
"""The recipients of the shipped data map that serve only credit accounts."""


def found(system: System, *categories: Category) -> r.ExportReference:
    """A system's copy that says what it holds."""
    return export_ref(system).model_copy(update={"categories": list(categories)})


def respond(
    context: wf.Context, failed: frozenset[str] = frozenset(), **copies: r.ExportReference
) -> tuple[dict[str, Any], list[Any]]:
    """An access request answered with ``copies`` (system -> its copy; the data map's
    other systems send one that says nothing of categories; those ``failed`` fail for
    good), approved: the manifest, and the audit steps and records of the answers and
    the approval."""
    rec = start(RequestType.access, context)
    results = {
        t.system.value: (
            answer(rec, t.system, r.TaskFailed, reason="down", retryable=False)
            if t.system.value in failed
            else answer(rec, t.system, export=copies.get(t.system.value, export_ref(t.system)))
        )
        for t in rec.tasks.values()
    }
    rec, held = answer_all(rec, context, **results)
    steps, out = list(held.audit), [o.record for o in held.out]
    if rec.state is RequestState.awaiting_review:
        rec, last = approved(rec, context)
        steps += last.audit
        out += [o.record for o in last.out]
    assert rec.state in (RequestState.completed, RequestState.partially_completed)
    assert rec.manifest is not None
    return rec.manifest, [*steps, *out]


def systems_of(manifest: dict[str, Any]) -> dict[str, list[str]]:
    return {s["system"]: s["categories"] for s in manifest["systems"]}


def test_the_letter_lists_what_each_system_found(ctx: wf.Context, dm: DataMap) -> None:  # noqa: F811
    manifest, steps = respond(ctx, orders=found(System.orders, C.contact, C.purchases, C.payment))
    held = systems_of(manifest)
    assert held["orders"] == ["contact", "payment", "purchases"]
    # A system whose copy says nothing (a connector of before 0.38): the data map's.
    assert held["crm"] == [
        c.value for c in sorted(dm.systems[System.crm].categories, key=list(C).index)
    ]
    # No other system holds credit data: no credit category, no credit purpose, no
    # credit scoring, no credit file search, and no recipient that only serves them.
    assert "credit" not in {c["category"] for c in manifest["categories"]}
    purposes = {p["name"] for p in manifest["purposes"]}
    assert "credit_accounts" not in purposes
    # A debt may be an overdue payment in the purchases data: debt recovery stays.
    assert {"goods_and_services", "debt_recovery"} <= purposes
    assert manifest["automated_decisions"] == []
    assert not [s for s in manifest["sources"] if s["purpose"] == "credit_accounts"]
    recipients = {x["name"] for x in manifest["recipients"]}
    assert not recipients & CREDIT_ONLY
    assert {"Banks and payment processors", "Debt collection agencies"} <= recipients
    # An authority exempt from rights-request notices is listed as before, whatever the
    # purposes: listed only when one of them applies, its name would tell a subject
    # none of them serves that their data went to it.
    assert "Law enforcement agencies (on valid request)" in recipients
    assert "categories_not_mapped" not in [getattr(s, "action", None) for s in steps]
    # The notice says where the copies are; what they hold is in the sealed manifest.
    (note,) = [n for n in steps if isinstance(n, r.SubjectNotification)]
    assert note.exports
    assert {e.categories for e in note.exports} == {None}


def test_an_authority_exempt_from_notices_is_listed_whatever_the_purposes(dm: DataMap) -> None:  # noqa: F811
    """A CRM contact none of the police's purposes serves: listing the police only with
    their purposes, or for a disclosure, would tell them their data went to the police
    (DPA 2018 Sch. 2 para. 2); they are listed by what they may receive, as before."""
    held = {System.crm: {C.contact, C.interactions}}
    m = build_access_manifest("R-1", "CUST-1", "sr_1", dm, held, [], NOW)
    assert not {"legal_obligations", "premises_security"} & {p["name"] for p in m["purposes"]}
    names = {x["name"] for x in m["recipients"]}
    assert "Law enforcement agencies (on valid request)" in names
    assert not names & CREDIT_ONLY


def test_every_category_found_is_listed_as_before(ctx: wf.Context, dm: DataMap) -> None:  # noqa: F811
    manifest, _ = respond(ctx, orders=found(System.orders, *dm.systems[System.orders].categories))
    assert "credit" in systems_of(manifest)["orders"]
    assert "credit" in {c["category"] for c in manifest["categories"]}
    assert "credit_accounts" in {p["name"] for p in manifest["purposes"]}
    assert [d["purpose"] for d in manifest["automated_decisions"]] == ["credit_accounts"]
    assert {x["name"] for x in manifest["recipients"]} >= CREDIT_ONLY


def test_a_copy_that_found_nothing_of_the_subjects_lists_the_system_as_holding_nothing(
    ctx: wf.Context,  # noqa: F811
) -> None:
    nothing = found(System.orders).model_copy(update={"record_count": 0})
    manifest, _ = respond(ctx, orders=nothing)
    assert "orders" not in systems_of(manifest)
    assert "crm" in systems_of(manifest)


def test_a_system_that_failed_is_listed_with_the_data_maps_categories(
    ctx: wf.Context,  # noqa: F811
    dm: DataMap,  # noqa: F811
) -> None:
    """Its copy never came: it is not known to hold less than the data map says."""
    manifest, _ = respond(ctx, frozenset({"orders"}), crm=found(System.crm, C.contact))
    held = systems_of(manifest)["orders"]
    assert held == [
        c.value for c in sorted(dm.systems[System.orders].categories, key=list(C).index)
    ]


def test_a_category_the_data_map_does_not_list_is_told_and_the_dpo_told(
    ctx: wf.Context,  # noqa: F811
) -> None:
    manifest, steps = respond(ctx, orders=found(System.orders, C.contact, C.interactions))
    assert systems_of(manifest)["orders"] == ["contact", "interactions"]
    (gap,) = [s for s in steps if getattr(s, "action", None) == "categories_not_mapped"]
    assert gap.after == "orders: interactions"
    assert "data map" in (gap.reason or "")


def task(**fields: Any) -> TaskRecord:
    return TaskRecord(
        task_id="T-1",
        system=System.orders,
        action=TaskAction.export,
        categories=[C.contact, C.purchases, C.payment, C.credit],
        **fields,
    )


def test_a_copy_that_does_not_say_lists_the_data_maps_one_that_found_nothing_none() -> None:
    assert categories_found(task()) == {C.contact, C.purchases, C.payment, C.credit}
    assert categories_found(task(export=export_ref(System.orders))) == categories_found(task())
    said_none = export_ref(System.orders).model_copy(update={"categories": []})
    # Records, but no category said: not known to hold less than the data map says.
    assert categories_found(task(export=said_none)) == categories_found(task())
    empty = said_none.model_copy(update={"record_count": 0})
    assert categories_found(task(export=empty)) == set()


def test_the_dpos_redaction_does_not_narrow_what_the_system_holds() -> None:
    """A redacted copy leaves things out of the copy, not out of the system: the
    categories are the system's own copy's."""
    own = found(System.orders, C.contact, C.payment)
    redacted = export_ref(System.orders, "R-1-redacted.json")
    assert categories_found(task(export=redacted, original_export=own)) == {C.contact, C.payment}


def test_a_stored_copy_of_before_0_38_reads_without_categories() -> None:
    stored = export_ref(System.orders).model_dump(mode="json")
    del stored["categories"]
    assert r.ExportReference.model_validate(stored).categories is None


@pytest.fixture
def data_dir(tmp_path: Path, customers: list[FakeCustomer]) -> Path:  # noqa: F811
    seed_stores(tmp_path, customers)
    return tmp_path


def test_the_reference_store_says_what_its_copy_holds(
    data_dir: Path,
    customers: list[FakeCustomer],  # noqa: F811
) -> None:
    without = next(c for c in customers if c.credit is None and c.orders)
    with_credit = next(c for c in customers if c.credit is not None and c.orders)
    for customer, credit in ((without, False), (with_credit, True)):
        t = task_of(r.Export, customer, System.orders, request_id=f"REQ-{customer.number}")
        ref = asyncio.run(OrdersConnector(data_dir).export(t)).export
        assert ref is not None
        path = exported_file(data_dir, ref.location)
        assert path is not None
        document = json.loads(path.read_bytes())
        in_copy = {t["category"] for t in document["tables"].values() if t["rows"]}
        assert ref.categories == [c for c in C if c.value in in_copy]
        assert (C.credit in ref.categories) is credit
        assert C.contact in ref.categories


def test_the_answer_carries_the_categories_through_avro() -> None:
    completed = r.TaskCompleted(
        task_id="T-1",
        request_id="R-1",
        system=System.orders,
        answered_at=NOW,
        attempt=1,
        export=found(System.orders, C.contact, C.purchases),
    )
    codec = Codec(contract.schema_dir())
    schema = codec.latest[completed.fullname()].schema
    assert codec.decode(schema, codec.encode(completed)) == completed
