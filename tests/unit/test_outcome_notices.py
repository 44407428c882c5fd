"""What the subject is told at the end of a request (privops.core.fanout.finish).

An erasure's notice says what was kept whatever the system answered: privops knows what
it told each system to keep (the task's keep plan). Where privops does not act on a
request, or on part of it, the notice tells the subject they may complain to the ICO and
seek a judicial remedy (UK GDPR Art. 12(4)). Review, session 27.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.erasure import INVESTIGATION_GROUND, LEGAL_CLAIMS_TOLD, SubjectFacts
from privops.core.fanout import REDRESS
from privops.core.holds import LegalHold
from privops.core.identity import merge
from privops.core.vocab import (
    Category,
    ObjectionScope,
    RequestState,
    RequestType,
    System,
    TaskState,
)
from tests.unit import test_command_rules as command_rules

C = Category
NOW = datetime(2026, 7, 20, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
SUBJECT = "subj-n"
INVOICE = NOW - timedelta(days=30)  # kept six years from its financial year's end
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def context(dm: DataMap, facts: SubjectFacts | None = None) -> wf.Context:
    # Known to orders by account number only: no other system is asked.
    known = merge(None, SUBJECT, System.orders, {"account_number": "A-1"}, NOW - timedelta(days=9))
    return wf.Context(
        now=NOW,
        today=TODAY,
        datamap=dm,
        subject_ref="sr_0123456789abcdef01234567",
        identity=known,
        facts=facts or SubjectFacts(),
    )


def submit(kind: RequestType, **kw: Any) -> r.RequestSubmitted:
    fields: dict[str, Any] = {
        "request_id": "R-n",
        "issued_at": NOW,
        "subject_id": SUBJECT,
        "received_on": TODAY,
        "identity_verified_on": TODAY,
    }
    return command_rules.submit(kind, **(fields | kw))


def command(model: type[r.Command], **kw: Any) -> r.Command:
    return model(command_id=f"c-{next(_ids)}", request_id="R-n", issued_at=NOW, actor="dpo", **kw)


def notices(outcome: wf.Outcome) -> list[r.SubjectNotification]:
    return [o.record for o in outcome.out if isinstance(o.record, r.SubjectNotification)]


def erase_and_answer(
    ctx: wf.Context, model: type[r.TaskResult], **kw: Any
) -> tuple[wf.RequestRecord, wf.Outcome]:
    rec = wf.on_command(None, submit(RequestType.erasure), ctx).record
    assert rec is not None
    (task,) = rec.tasks.values()
    result = model(
        task_id=task.task_id, request_id=rec.request_id, system=task.system, answered_at=NOW, **kw
    )
    outcome = wf.on_result(rec, result, ctx)
    assert outcome.record is not None
    return outcome.record, outcome


def kept_invoices(dm: DataMap) -> wf.Context:
    return context(dm, SubjectFacts(latest_financial_record_at=INVOICE))


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        (r.TaskCompleted, {}),
        (r.TaskRetained, {"reason": "invoices", "categories": [C.payment, C.purchases]}),
    ],
    ids=["answered-completed", "answered-retained"],
)
def test_an_erasure_that_kept_invoices_says_so_however_the_system_answered(
    dm: DataMap, model: type[r.TaskResult], extra: dict[str, Any]
) -> None:
    """Before, orders answering "completed" to a task that kept the invoices made the
    request complete and told the subject everything was erased."""
    rec, outcome = erase_and_answer(kept_invoices(dm), model, **extra)
    assert rec.state is RequestState.partially_completed
    assert {(k.system, k.category) for k in rec.kept} == {
        (System.orders, C.payment),
        (System.orders, C.purchases),
    }
    assert all(k.until is not None and k.ground.startswith("legal_obligation") for k in rec.kept)
    (note,) = notices(outcome)
    assert note.kind == "erasure_outcome"
    assert note.message.startswith("We erased your data except what we keep, each with its ground")
    assert "orders/purchases: legal_obligation" in note.message
    assert note.message.endswith(REDRESS)


def test_an_erasure_notice_never_names_a_legal_hold_nor_an_investigation(dm: DataMap) -> None:
    """A hold's id ("H-police-2025-17") and the fact of an investigation may be what a
    crime investigation needs kept from the subject (DPA 2018 Sch. 2 para. 2), as the
    access response already withholds them: the subject is told the ground, legal claims,
    and the DPO's record keeps the whole of it (review, session 33)."""
    hold = LegalHold(
        hold_id="H-police-2025-17",
        subject_id=SUBJECT,
        categories=(C.payment,),
        reason="police request",
        placed_at=NOW - timedelta(days=1),
    )
    ctx = replace(kept_invoices(dm), holds=(hold,))
    rec, outcome = erase_and_answer(ctx, r.TaskCompleted)
    assert {k.ground for k in rec.kept if k.category is C.payment} == {
        "legal_claims: legal hold H-police-2025-17 (Art. 17(3)(e))"
    }
    (note,) = notices(outcome)
    assert "H-police" not in note.message
    assert "hold" not in note.message
    assert f"orders/payment: {LEGAL_CLAIMS_TOLD}" in note.message
    assert "orders/purchases: legal_obligation" in note.message  # other grounds as they are

    cctv = merge(None, SUBJECT, System.cctv, {"camera_ref": "cam-2"}, NOW - timedelta(days=9))
    watched = replace(context(dm, SubjectFacts(open_investigation_ids=("INC-9",))), identity=cctv)
    rec, outcome = erase_and_answer(watched, r.TaskCompleted)
    assert [k.ground for k in rec.kept] == [INVESTIGATION_GROUND]
    (note,) = notices(outcome)
    assert "investigation" not in note.message
    assert "INC-9" not in note.message
    assert f"cctv/cctv: {LEGAL_CLAIMS_TOLD}" in note.message


def test_a_failed_erase_still_lists_what_its_plan_kept(dm: DataMap) -> None:
    rec, outcome = erase_and_answer(
        kept_invoices(dm), r.TaskFailed, reason="database down", retryable=False
    )
    assert rec.state is RequestState.partially_completed
    assert {k.category for k in rec.kept} == {C.payment, C.purchases}
    (note,) = notices(outcome)
    assert "We could not yet complete it in: orders" in note.message
    assert REDRESS in note.message


def test_a_task_failed_for_good_is_escalated_to_the_dpo_a_retryable_one_is_not(
    dm: DataMap,
) -> None:
    """The subject is told "our Data Protection Officer is following this up"; until
    session 33 nothing told the DPO: the request closed, with no alert (legal review).
    Now a final failure raises the escalation a silent system does (PrivopsTaskEscalated)."""
    rec, outcome = erase_and_answer(context(dm), r.TaskFailed, reason="db gone", retryable=False)
    assert rec.state is RequestState.partially_completed
    (alert,) = [o.record for o in outcome.out if isinstance(o.record, r.TaskEscalated)]
    assert (alert.request_id, alert.system, alert.attempts) == ("R-n", System.orders, 1)
    escalated = [a for a in outcome.audit if a.action == "task_escalated"]
    assert [(a.after, a.reason) for a in escalated] == [
        ("failed", "orders answered that it failed")
    ]
    _, retryable = erase_and_answer(context(dm), r.TaskFailed, reason="busy", retryable=True)
    assert not [o for o in retryable.out if isinstance(o.record, r.TaskEscalated)]


def test_a_task_escalated_as_silent_is_not_escalated_again_when_it_fails(dm: DataMap) -> None:
    """The DPO was told once already; its failure is audited as the answer it is."""
    ctx = context(dm)
    rec = wf.on_command(None, submit(RequestType.erasure), ctx).record
    assert rec is not None
    (task,) = rec.tasks.values()
    escalated = rec.editable_copy()
    escalated.tasks[task.task_id].state = TaskState.escalated
    failed = r.TaskFailed(
        task_id=task.task_id,
        request_id=rec.request_id,
        system=task.system,
        answered_at=NOW,
        reason="db gone",
        retryable=False,
    )
    outcome = wf.on_result(escalated, failed, ctx)
    assert not [o for o in outcome.out if isinstance(o.record, r.TaskEscalated)]
    assert [a.action for a in outcome.audit].count("task_escalated") == 0
    assert outcome.record is not None
    assert outcome.record.tasks[task.task_id].state is TaskState.failed


def test_a_system_holding_nothing_kept_nothing(dm: DataMap) -> None:
    rec, outcome = erase_and_answer(kept_invoices(dm), r.NotFound)
    assert rec.kept == []
    assert rec.state is RequestState.completed
    (note,) = notices(outcome)
    assert (
        note.message == "We checked our systems and hold none of the personal data this concerns."
    )


def test_a_whole_erasure_says_it_was_done_and_nothing_else(dm: DataMap) -> None:
    rec, outcome = erase_and_answer(context(dm), r.TaskCompleted)
    assert rec.state is RequestState.completed
    assert rec.kept == []
    assert [n.message for n in notices(outcome)] == [
        "We erased the personal data we held about you."
    ]


def test_the_redress_sentence_names_the_ico_and_the_courts() -> None:
    assert "ICO" in REDRESS or "Information Commissioner" in REDRESS
    assert "www.ico.org.uk" in REDRESS
    assert "judicial remedy" in REDRESS


def test_a_refused_objection_tells_the_subject_they_may_complain_or_go_to_court(
    dm: DataMap,
) -> None:
    """Art. 12(4): not acting on a request tells the subject of the ICO and the courts."""
    ctx = context(dm)
    rec = wf.on_command(
        None,
        submit(
            RequestType.objection,
            objection_scope=ObjectionScope.legitimate_interest,
            identity_verified_on=None,
        ),
        ctx,
    ).record
    outcome = wf.on_command(
        rec, command(r.ObjectionDecided, accepted=False, reason="compelling grounds"), ctx
    )
    (note,) = notices(outcome)
    assert note.kind == "objection_refused"
    assert note.message.endswith(REDRESS)


def test_a_refused_request_tells_the_subject_they_may_complain_or_go_to_court(
    dm: DataMap,
) -> None:
    """Art. 12(4): a refusal names the ICO and the judicial remedy (before, the ICO only)."""
    ctx = context(dm)
    rec = wf.on_command(None, submit(RequestType.erasure, identity_verified_on=None), ctx).record
    outcome = wf.on_command(
        rec,
        command(r.RequestRefused, reason="manifestly unfounded", ground="manifestly_unfounded"),
        ctx,
    )
    (note,) = notices(outcome)
    assert note.kind == "request_refused"
    assert note.message.endswith(REDRESS)
