"""Which systems a request about an erased subject asks (privops.core.fanout.holdings with
``Context.erased``): only those the identity map still names, as a follow-up erasure does.

An erasure that kept data leaves the identifiers of the systems keeping it, and privops'
copies of them sealed under the kept category's retained key (``main`` is destroyed):
only a system holding that category may open it (shredding.system_may_ask). Before, a
later access request or erasure about the erased subject also asked the systems privops
inferred from what was kept (the CRM and the marketing list by the email, the website by
the customer number), which could never open their tasks: retried and escalated until
the request breached (review, session 27).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from privops.core import records as r
from privops.core import shredding
from privops.core import workflow as wf
from privops.core.datamap import DataMap, load_datamap
from privops.core.erasure import SubjectFacts
from privops.core.fanout import holdings
from privops.core.vocab import RequestState, RequestType, System
from tests.unit.test_fanout_holdings import NOW, REPORTED, context, identity, submit

LATER = NOW + timedelta(days=40)
INVOICED = SubjectFacts(latest_financial_record_at=NOW - timedelta(days=60))


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def answered(rec: wf.RequestRecord, ctx: wf.Context) -> wf.RequestRecord:
    for task in list(rec.tasks.values()):
        result = r.TaskCompleted(
            task_id=task.task_id, request_id=rec.request_id, system=task.system, answered_at=NOW
        )
        done = wf.on_result(rec, result, ctx).record
        assert done is not None
        rec = done
    return rec


def test_an_erased_subject_is_asked_only_where_the_identity_map_names_them(dm: DataMap) -> None:
    kept = identity({System.orders: REPORTED[System.orders]})
    not_erased = {System.orders, System.crm, System.marketing, System.web}
    assert set(holdings(context(dm, kept))) == not_erased
    assert set(holdings(context(dm, kept, erased=True))) == {System.orders}


@pytest.mark.parametrize("kind", [RequestType.access, RequestType.erasure])
def test_after_an_erasure_that_kept_invoices_every_task_can_open_its_key(
    dm: DataMap, kind: RequestType
) -> None:
    """The erasure keeps orders' invoices; a later request asks orders only, which holds
    the kept category and may open the key its task is sealed under."""
    ctx = context(dm, identity(REPORTED), facts=INVOICED)
    first = wf.on_command(None, submit(RequestType.erasure, request_id="R-1"), ctx).record
    assert first is not None
    first = answered(first, ctx)
    assert first.state is RequestState.partially_completed
    kept = shredding.still_kept(first, [], dm.holdings(), NOW)
    scope = shredding.storage_scope(first, kept, [], NOW)
    assert scope is not None
    assert scope.startswith("retained:purchases:")
    remains = shredding.what_remains(kept, ctx.identity, INVOICED, [], NOW)
    after = dataclasses.replace(
        ctx, identity=remains.identity, now=LATER, today=LATER.date(), erased=True
    )
    again = submit(
        kind,
        request_id="R-2",
        issued_at=LATER,
        received_on=LATER.date(),
        identity_verified_on=LATER.date(),
    )
    outcome = wf.on_command(None, again, after)
    assert outcome.rejected is None, outcome.message
    sent = [o.record for o in outcome.out if isinstance(o.record, r.Task)]
    assert [t.system for t in sent] == [System.orders]
    for task in sent:
        held = dm.systems[task.system].categories
        assert shredding.system_may_ask(scope, held, after.today), task.system


def test_an_erased_subjects_access_manifest_lists_only_the_systems_asked(dm: DataMap) -> None:
    ctx = context(dm, identity({System.orders: REPORTED[System.orders]}), erased=True)
    rec = wf.on_command(None, submit(RequestType.access), ctx).record
    assert rec is not None
    for task in list(rec.tasks.values()):
        root = dm.systems[task.system].export_root
        result = r.TaskCompleted(
            task_id=task.task_id,
            request_id=rec.request_id,
            system=task.system,
            answered_at=NOW,
            export=r.ExportReference(
                location=f"{root}{rec.request_id}.json", record_count=1, checksum="sha256:00"
            ),
        )
        done = wf.on_result(rec, result, ctx).record
        assert done is not None
        rec = done
    assert rec.state is RequestState.completed
    assert rec.manifest is not None
    assert {s["system"] for s in rec.manifest["systems"]} == {"orders"}
    assert rec.manifest["missing_exports"] == []
