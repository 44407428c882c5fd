"""What an erasure leaves of a system that never reported the subject (asked by what
privops inferred: privops.core.fanout.holdings) and still keeps data: a retained answer,
or a failed erase task.

Its identifiers are kept as its task carried them (privops.core.shredding.what_remains):
before, the identity map kept only the systems it named, the system dropped out, and
neither the follow-up erasure nor a later erasure asked it again; a re-run completed
with no task and told the subject everything was erased (review, session 27).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core import shredding
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.erasure import LegalHold
from privops.core.fanout import holdings
from privops.core.identity import IdentityMap, merge
from privops.core.vocab import Category, RequestState, RequestType, System
from tests.unit.test_fanout_holdings import (
    EMAIL,
    NOW,
    SUBJECT,
    context,
    followup,
    identity,
    submit,
)

C = Category
# Known to the CRM only, which gives the customer number too: orders is asked by it and
# the email (what the data map says orders looks subjects up by).
CRM = {System.crm: {"customer_id": "C-1", "contact_id": "K-1", "email": EMAIL}}
ORDERS_ASKED_BY = {"customer_id": "C-1", "email": EMAIL}


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def erasure(ctx: wf.Context, orders: r.TaskResult | None = None) -> wf.RequestRecord:
    """The erasure, answered: orders with ``orders``'s kind of answer, the rest erased."""
    rec = wf.on_command(None, submit(RequestType.erasure), ctx).record
    assert rec is not None
    for task in list(rec.tasks.values()):
        fields = {
            "task_id": task.task_id,
            "request_id": rec.request_id,
            "system": task.system,
            "answered_at": NOW,
        }
        result: r.TaskResult = r.TaskCompleted(**fields)
        if task.system is System.orders and orders is not None:
            result = orders.model_copy(update=fields)
        answered = wf.on_result(rec, result, ctx).record
        assert answered is not None
        rec = answered
    return rec


RETAINED = r.TaskRetained(
    task_id="-",
    request_id="-",
    system=System.orders,
    answered_at=NOW,
    categories=[C.purchases],
    reason="invoices kept six years",
)
FAILED = r.TaskFailed(
    task_id="-",
    request_id="-",
    system=System.orders,
    answered_at=NOW,
    reason="database down",
    retryable=False,
)


def remains_of(dm: DataMap, rec: wf.RequestRecord, known: IdentityMap) -> IdentityMap | None:
    kept = shredding.still_kept(rec, [], dm.holdings(), NOW)
    assert System.orders in kept.systems
    return shredding.what_remains(kept, known, None, [], NOW).identity


@pytest.mark.parametrize("answer", [RETAINED, FAILED], ids=["retained", "failed"])
def test_an_inferred_system_still_keeping_data_keeps_what_its_task_carried(
    dm: DataMap, answer: r.TaskResult
) -> None:
    known = identity(CRM)
    ctx = context(dm, known)
    rec = erasure(ctx, answer)
    assert System.orders not in known.systems
    kept = remains_of(dm, rec, known)
    assert kept is not None
    assert kept.identifiers() == {System.orders: ORDERS_ASKED_BY}
    # Dated when the map last asserted each value: the shared email is not moved.
    assert kept.email == known.email
    assert kept.systems[System.orders]["customer_id"].occurred_at == (
        known.systems[System.crm]["customer_id"].occurred_at
    )
    after = dataclasses.replace(ctx, identity=kept)
    assert set(holdings(after, followup())) == {System.orders}


def test_a_later_erasure_after_a_failed_inferred_task_asks_that_system_again(
    dm: DataMap,
) -> None:
    """Before, it completed at once with no task: "We erased the personal data we held
    about you.", while orders still held all of it."""
    known = identity(CRM)
    ctx = context(dm, known)
    kept = remains_of(dm, erasure(ctx, FAILED), known)
    later = NOW + timedelta(days=2)
    again = submit(RequestType.erasure, request_id="R-again", issued_at=later)
    after = dataclasses.replace(ctx, identity=kept, now=later, today=later.date())
    outcome = wf.on_command(
        None,
        again.model_copy(
            update={"received_on": later.date(), "identity_verified_on": later.date()}
        ),
        after,
    )
    assert outcome.record is not None
    assert outcome.record.state is RequestState.awaiting_systems
    sent = {o.record.system: o.record for o in outcome.out if isinstance(o.record, r.Erase)}
    assert sent[System.orders].identifiers == ORDERS_ASKED_BY
    # The others are asked as for anyone privops knows the email of; they erased
    # everything, so they answer not found (fanout.holdings).


def test_the_earlier_values_its_task_carried_are_kept_too(dm: DataMap) -> None:
    """The subject's old email reached orders' rows under it: a follow-up must too."""
    old = "ann.old@example.com"
    crm = identity({System.crm: {**CRM[System.crm], "email": old}}, days_ago=60)
    known = merge(crm, SUBJECT, System.crm, {"email": EMAIL}, NOW - timedelta(days=30))
    rec = erasure(context(dm, known), RETAINED)
    task = next(t for t in rec.tasks.values() if t.system is System.orders)
    assert task.previous_identifiers == {"email": [old]}
    kept = remains_of(dm, rec, known)
    assert kept is not None
    assert kept.systems[System.orders]["email"].earlier() == [old]
    assert kept.email is not None
    assert kept.email.earlier() == [old]  # orders knew it: kept for it
    assert kept.email.occurred_at == (known.email.occurred_at if known.email else None)


def test_an_inferred_system_that_found_nothing_is_not_kept_under_a_hold(dm: DataMap) -> None:
    """A hold on a category keeps every system holding it, but not identifiers of one
    that found nothing: it has no rows to follow up."""
    known = identity(CRM)
    ctx = context(dm, known)
    rec = wf.on_command(None, submit(RequestType.erasure), ctx).record
    assert rec is not None
    for task in list(rec.tasks.values()):
        model = r.NotFound if task.system is System.marketing else r.TaskCompleted
        result = model(
            task_id=task.task_id, request_id=rec.request_id, system=task.system, answered_at=NOW
        )
        answered = wf.on_result(rec, result, ctx).record
        assert answered is not None
        rec = answered
    held = LegalHold(
        hold_id="H-1",
        subject_id=SUBJECT,
        categories=(C.contact,),
        reason="claim 7",
        placed_at=NOW - timedelta(hours=1),
    )
    kept = shredding.still_kept(rec, [held], dm.holdings(), NOW)
    assert {System.marketing, System.orders} <= kept.systems
    remains = shredding.what_remains(kept, known, None, [held], NOW)
    assert remains.identity is not None
    assert System.orders in remains.identity.systems
    assert System.marketing not in remains.identity.systems
