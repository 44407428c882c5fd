"""Which systems a request asks (privops.core.fanout.holdings), on the real data map.

A system that never reported the subject may hold their data all the same: the marketing
list keyed by email, the website's account keyed by customer number. It is asked when
privops knows an identifier the data map says it looks subjects up by, and answers
NotFound if it holds nothing (review, session 27).
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.erasure import Disclosure, SubjectFacts
from privops.core.fanout import holdings
from privops.core.identity import IdentityMap, merge
from privops.core.request import FOLLOWUP_ACTOR
from privops.core.vocab import Category, RequestState, RequestType, System, TaskState
from tests.unit import test_command_rules as command_rules

C = Category
NOW = datetime(2026, 7, 20, 9, 0, tzinfo=UTC)  # a Monday
TODAY = NOW.date()
SUBJECT = "subj-h"
EMAIL = "ann@example.com"
# Known to orders and the CRM only; both give the email, orders its customer number, the
# CRM its contact id.
REPORTED: dict[System, dict[str, str]] = {
    System.orders: {"customer_id": "C-1", "email": EMAIL},
    System.crm: {"contact_id": "K-1", "email": EMAIL},
}
# What the others are asked by: what the data map says each looks subjects up by, of
# what privops knows. cctv looks subjects up by camera reference only: never asked.
INFERRED: dict[System, dict[str, str]] = {
    System.marketing: {"email": EMAIL, "contact_id": "K-1"},
    System.web: {"customer_id": "C-1", "email": EMAIL},
    System.telephony: {"contact_id": "K-1"},
}
ASKED = set(REPORTED) | set(INFERRED)
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def identity(systems: dict[System, dict[str, str]], *, days_ago: int = 30) -> IdentityMap:
    found: IdentityMap | None = None
    for system, ids in systems.items():
        found = merge(found, SUBJECT, system, ids, NOW - timedelta(days=days_ago))
    assert found is not None
    return found


def context(dm: DataMap, known: IdentityMap | None = None, **kw: Any) -> wf.Context:
    return wf.Context(
        now=NOW,
        today=TODAY,
        datamap=dm,
        subject_ref="sr_0123456789abcdef01234567",
        identity=identity(REPORTED) if known is None else known,
        facts=kw.pop("facts", SubjectFacts()),
        **kw,
    )


def submit(kind: RequestType, **kw: Any) -> r.RequestSubmitted:
    fields: dict[str, Any] = {
        "request_id": f"R-{kind.value}",
        "issued_at": NOW,
        "subject_id": SUBJECT,
        "received_on": TODAY,
        "identity_verified_on": TODAY,
    }
    return command_rules.submit(kind, **(fields | kw))


def tasks(outcome: wf.Outcome) -> list[r.Task]:
    return [o.record for o in outcome.out if isinstance(o.record, r.Task)]


@pytest.mark.parametrize(
    ("kind", "extra", "task_type"),
    [
        (RequestType.erasure, {}, r.Erase),
        (RequestType.access, {}, r.Export),
        (RequestType.restriction, {}, r.Restrict),
        (RequestType.restriction_lift, {}, r.LiftRestriction),
    ],
    ids=["erasure", "access", "restriction", "lift"],
)
def test_a_system_that_never_reported_the_subject_is_asked_by_what_it_looks_them_up_by(
    dm: DataMap, kind: RequestType, extra: dict[str, Any], task_type: type[r.Task]
) -> None:
    """Before, only orders and the CRM were asked: the marketing list and the website
    kept the subject's data, and the subject was told it was all erased."""
    ctx = context(dm, restricted=kind is RequestType.restriction_lift)
    outcome = wf.on_command(None, submit(kind, **extra), ctx)
    assert outcome.rejected is None, outcome.message
    sent = {t.system: t for t in tasks(outcome)}
    assert set(sent) == ASKED
    assert all(isinstance(t, task_type) for t in sent.values())
    for system, ids in {**REPORTED, **INFERRED}.items():
        assert sent[system].identifiers == ids, system


def test_a_rectification_reaches_the_systems_holding_the_field_that_never_reported(
    dm: DataMap,
) -> None:
    changes = {"email": "ann.new@example.com"}
    outcome = wf.on_command(
        None, submit(RequestType.rectification, rectification=changes), context(dm)
    )
    holding_contact = {s for s in ASKED if C.contact in dm.systems[s].categories}
    assert {System.marketing, System.web, System.telephony} <= holding_contact
    assert {t.system for t in tasks(outcome)} == holding_contact


def test_holdings_names_each_asked_system_with_what_the_data_map_says_it_holds(
    dm: DataMap,
) -> None:
    held = holdings(context(dm))
    assert set(held) == ASKED
    assert held[System.marketing] == set(dm.systems[System.marketing].categories)
    assert holdings(dataclasses.replace(context(dm), identity=None)) == {}


def test_an_id_no_other_system_looks_subjects_up_by_reaches_no_other_system(dm: DataMap) -> None:
    """An account number is the orders system's own: nobody else is asked by it."""
    only = identity({System.orders: {"account_number": "A-77"}})
    outcome = wf.on_command(None, submit(RequestType.erasure), context(dm, only))
    assert [(t.system, t.identifiers) for t in tasks(outcome)] == [
        (System.orders, {"account_number": "A-77"})
    ]


def test_the_latest_value_of_a_shared_id_is_the_one_sent(dm: DataMap) -> None:
    newer = merge(identity(REPORTED), SUBJECT, System.crm, {"customer_id": "C-2"}, NOW)
    outcome = wf.on_command(None, submit(RequestType.erasure), context(dm, newer))
    web = next(t for t in tasks(outcome) if t.system is System.web)
    assert web.identifiers == {"customer_id": "C-2", "email": EMAIL}


def test_asked_systems_that_hold_nothing_answer_not_found_and_the_erasure_completes(
    dm: DataMap,
) -> None:
    ctx = context(dm)
    rec = wf.on_command(None, submit(RequestType.erasure), ctx).record
    assert rec is not None
    outcome = wf.Outcome(record=rec)
    for task in list(rec.tasks.values()):
        model = r.NotFound if task.system in INFERRED else r.TaskCompleted
        result = model(
            task_id=task.task_id, request_id=rec.request_id, system=task.system, answered_at=NOW
        )
        outcome = wf.on_result(rec, result, ctx)
        assert outcome.record is not None
        rec = outcome.record
    assert rec.state is RequestState.completed
    assert {t.system for t in rec.tasks.values() if t.state is TaskState.not_found} == set(INFERRED)
    (note,) = [o.record for o in outcome.out if isinstance(o.record, r.SubjectNotification)]
    assert note.message == "We erased the personal data we held about you."


def test_an_access_manifest_leaves_out_the_asked_systems_that_found_nothing(
    dm: DataMap,
) -> None:
    ctx = context(dm)
    rec = wf.on_command(None, submit(RequestType.access), ctx).record
    assert rec is not None
    for task in list(rec.tasks.values()):
        result: r.TaskResult
        if task.system in INFERRED and task.system is not System.marketing:
            result = r.NotFound(
                task_id=task.task_id, request_id=rec.request_id, system=task.system, answered_at=NOW
            )
        else:
            root = dm.systems[task.system].export_root
            ref = r.ExportReference(
                location=f"{root}{rec.request_id}.json", record_count=1, checksum="sha256:00"
            )
            result = r.TaskCompleted(
                task_id=task.task_id,
                request_id=rec.request_id,
                system=task.system,
                answered_at=NOW,
                export=ref,
            )
        answered = wf.on_result(rec, result, ctx).record
        assert answered is not None
        rec = answered
    assert rec.state is RequestState.completed
    assert rec.manifest is not None
    listed = {s["system"] for s in rec.manifest["systems"]}
    assert listed == {"orders", "crm", "marketing"}  # marketing did hold them
    assert rec.manifest["missing_exports"] == []


def test_asking_more_systems_tells_no_recipient_that_received_nothing(dm: DataMap) -> None:
    """Art. 19 notices follow disclosures, never the systems asked."""
    outcome = wf.on_command(None, submit(RequestType.erasure), context(dm))
    assert not [o for o in outcome.out if isinstance(o.record, r.RecipientNotification)]
    disclosed = SubjectFacts(
        disclosures=(
            Disclosure(
                recipient="Banks and payment processors",
                categories=(C.payment,),
                first_at=NOW - timedelta(days=3),
                last_at=NOW - timedelta(days=3),
            ),
        )
    )
    outcome = wf.on_command(None, submit(RequestType.erasure), context(dm, facts=disclosed))
    notes = [o.record for o in outcome.out if isinstance(o.record, r.RecipientNotification)]
    assert [n.recipient for n in notes] == ["Banks and payment processors"]


def followup() -> wf.RequestRecord:
    """A follow-up erasure the worker issued itself (for what an erasure kept)."""
    return wf.RequestRecord(
        request_id="R-erasure-F1",
        request_type=RequestType.erasure,
        subject_id=SUBJECT,
        actor=FOLLOWUP_ACTOR,
        state=RequestState.in_progress,
        received_on=TODAY,
        created_at=NOW,
    )


def test_a_followup_erasure_asks_only_the_systems_still_named(dm: DataMap) -> None:
    """What an erasure kept is followed up where it is kept: the first erasure asked the
    others already, and erased what they held."""
    kept = identity({System.orders: {"customer_id": "C-1"}})
    ctx = context(dm, kept)
    assert set(holdings(ctx, followup())) == {System.orders}
    assert set(holdings(ctx)) == {System.orders, System.crm, System.web}  # a DPO's erasure
    assert wf.SCHEDULER == FOLLOWUP_ACTOR


def test_an_access_request_answered_after_an_erasure_started_lists_every_system_it_exported(
    dm: DataMap,
) -> None:
    """The manifest lists the systems the request asked and that found the subject, from
    its tasks: not the identity map recomputed at the end, which an erasure started
    meanwhile trims (second review, session 27: the systems the map no longer named
    were dropped from a manifest whose exports they had delivered)."""
    ctx = context(dm, identity(REPORTED))
    access = wf.on_command(None, submit(RequestType.access, request_id="R-acc"), ctx).record
    assert access is not None
    asked = sorted(t.system for t in access.tasks.values())
    later = dataclasses.replace(ctx, identity=None, now=NOW + timedelta(days=3))
    for task in list(access.tasks.values()):
        root = dm.systems[task.system].export_root
        answer = r.TaskCompleted(
            task_id=task.task_id,
            request_id=access.request_id,
            system=task.system,
            answered_at=later.now,
            export=r.ExportReference(
                location=f"{root}{access.request_id}.json", record_count=1, checksum="sha256:00"
            ),
        )
        access = wf.on_result(access, answer, later).record
        assert access is not None
    assert access.state is RequestState.completed
    assert access.manifest is not None
    assert sorted(s["system"] for s in access.manifest["systems"]) == [s.value for s in asked]
