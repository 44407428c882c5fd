"""Data portability (UK GDPR Art. 20): the data the subject gave us, used with their
consent or under a contract, as machine-readable copies from each system holding it;
not what others told us about them (a credit reference agency's file), not what we
hold on another basis (call recordings, CCTV), and no Art. 15 manifest."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from privops import contract
from privops.adapters.avro import Codec
from privops.cli.request import status as status_cli
from privops.cli.request.status import _marked
from privops.connectors.reference import (
    CrmConnector,
    MarketingConnector,
    OrdersConnector,
    exported_file,
    seed_stores,
)
from privops.connectors.reference.people import FakeCustomer
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.exports import format_name
from privops.core.fanout import NOTHING_PORTABLE
from privops.core.identity import merge
from privops.core.ropa import ropa_record
from privops.core.vocab import (
    Category,
    FeeGround,
    RefusalGround,
    RequestState,
    RequestType,
    System,
    TaskOutcome,
    TaskState,
)
from tests.unit.test_reference_stores import customers, task_of  # noqa: F401 (fixture)
from tests.unit.test_workflow import (
    NOW,
    SUBJECT,
    answer,
    answer_all,
    at,
    command,
    ctx,  # noqa: F401 (fixture)
    dm,  # noqa: F401 (fixture)
    export_ref,
    of_type,
    submit,
)

C = Category
SHIPPED = {
    System.orders: {C.contact, C.payment, C.purchases},  # goods_and_services (contract)
    System.crm: {C.contact, C.marketing_preferences},  # and direct_marketing_electronic
    System.marketing: {C.contact, C.marketing_preferences},  # direct_marketing_electronic
    System.web: {C.contact, C.web},  # goods_and_services and web_analytics (consent)
}
"""What the shipped data map makes portable, read from its purposes by hand: credit is
the credit reference agencies' (credit_accounts has a source), interactions and CCTV are
held on legitimate interests, so telephony and cctv are never asked."""


def port(context: wf.Context, **kw: Any) -> wf.Outcome:
    outcome = wf.on_command(None, submit(RequestType.portability, **kw), context)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    return outcome


def test_the_shipped_data_map_makes_portable_what_its_purposes_say(dm: DataMap) -> None:  # noqa: F811
    assert dm.portable() == SHIPPED
    systems = {s["name"]: s["portable"] for s in ropa_record(dm)["systems"]}
    assert systems["orders"] == ["contact", "payment", "purchases"]
    assert systems["telephony"] == systems["cctv"] == []


@pytest.mark.parametrize(
    ("change", "portable"),
    [
        ({}, {C.contact, C.payment, C.purchases, C.credit}),
        ({"lawful_basis": "legitimate_interest", "legitimate_interest": "x"}, set()),
        ({"source": "A broker's list"}, set()),
        ({"lawful_basis": "consent"}, {C.contact, C.payment, C.purchases, C.credit}),
        ({"lawful_basis": "legal_obligation"}, set()),
    ],
)
def test_only_data_the_subject_gave_on_consent_or_contract_is_portable(
    dm: DataMap,  # noqa: F811
    change: dict[str, Any],
    portable: set[Category],
) -> None:
    data = dm.model_dump(mode="json") | {"recipients": []}
    data["purposes"] = {
        "sales": {
            "description": "Sales.",
            "lawful_basis": "contract",
            "categories": ["contact", "payment", "purchases", "credit"],
            "data_subjects": ["customers"],
            "systems": ["orders"],
        }
        | change
    }
    assert DataMap.model_validate(data).portable() == (
        {System.orders: portable} if portable else {}
    )


def test_a_portability_request_asks_only_for_the_portable_categories(ctx: wf.Context) -> None:  # noqa: F811
    outcome = port(ctx)
    exports = {t.system: t for t in of_type(outcome, r.Export)}
    assert set(exports) == set(SHIPPED)  # not telephony, not cctv
    for system, task in exports.items():
        assert task.portability is True
        assert set(task.categories) == SHIPPED[system]
    assert outcome.record is not None
    assert outcome.record.state is RequestState.awaiting_systems


def test_an_access_request_export_is_no_portability_one(ctx: wf.Context) -> None:  # noqa: F811
    outcome = wf.on_command(None, submit(RequestType.access), ctx)
    exports = of_type(outcome, r.Export)
    assert exports
    assert not any(t.portability for t in exports)
    assert any(C.credit in t.categories for t in exports)


def _each_copy(
    context: wf.Context, change: Callable[[System], dict[str, Any]], **answered: Any
) -> tuple[wf.RequestRecord, wf.Outcome]:
    """A portability request every system asked answers with a copy, its fields changed
    by ``change(system)`` (``answered``: the answers' other fields)."""
    rec = port(context).record
    assert rec is not None
    results = {
        t.system.value: answer(
            rec,
            t.system,
            export=export_ref(t.system).model_copy(update=change(t.system)),
            **answered,
        )
        for t in rec.tasks.values()
    }
    return answer_all(rec, context, **results)


def test_the_subject_gets_the_copies_and_no_manifest(ctx: wf.Context) -> None:  # noqa: F811
    rec, last = _each_copy(ctx, lambda _: {"categories": [C.contact]}, records_affected=4)
    assert rec.state is RequestState.completed
    assert rec.manifest is not None
    assert rec.manifest["kind"] == "portability_response"  # the record, no Art. 15 manifest
    assert "purposes" not in rec.manifest
    (note,) = of_type(last, r.SubjectNotification)
    assert note.kind == "portability_response"
    assert "machine-readable form (JSON)" in note.message
    assert "technically feasible" in note.message
    assert "kept until" in note.message  # the copies' fetch-by day
    assert note.document is None
    assert [e.location for e in note.exports] == [
        export_ref(s).location for s in sorted(SHIPPED, key=lambda s: s.value)
    ]
    assert all(e.categories is None for e in note.exports)  # sealed nowhere: not in clear


def test_a_subject_holding_nothing_portable_is_told_so(ctx: wf.Context) -> None:  # noqa: F811
    """Known only to CCTV (by a camera reference): footage is held on legitimate
    interests."""
    identity = merge(None, SUBJECT, System.cctv, {"camera_ref": "cam-3:2025-03-01"}, NOW)
    alone = at(ctx, NOW, identity=identity)
    outcome = port(alone)
    assert of_type(outcome, r.Export) == []
    rec = outcome.record
    assert rec is not None
    assert rec.state is RequestState.completed
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.kind == "portability_response"
    assert note.message == NOTHING_PORTABLE
    assert note.exports == []


def _answered_by(
    context: wf.Context, *holding: System, failed: tuple[System, ...] = ()
) -> tuple[wf.RequestRecord, r.SubjectNotification]:
    """The record and the notice once the systems ``holding`` sent a copy, those
    ``failed`` failed for good, and the others found nothing."""
    rec = port(context).record
    assert rec is not None

    def result(asked: wf.RequestRecord, system: System) -> r.TaskResult:
        if system in holding:
            return answer(asked, system, export=export_ref(system))
        if system in failed:
            return answer(asked, system, r.TaskFailed, reason="down", retryable=False)
        return answer(asked, system, r.NotFound)

    results = {t.system.value: result(rec, t.system) for t in rec.tasks.values()}
    rec, last = answer_all(rec, context, **results)
    (note,) = of_type(last, r.SubjectNotification)
    assert isinstance(note, r.SubjectNotification)
    return rec, note


def test_systems_that_hold_none_of_it_are_not_listed(ctx: wf.Context) -> None:  # noqa: F811
    _, note = _answered_by(ctx, System.orders)
    assert [e.location for e in note.exports] == [export_ref(System.orders).location]
    _, note = _answered_by(ctx)
    assert note.message == NOTHING_PORTABLE
    assert "Information Commissioner" in note.message  # not acted on as asked: redress


def test_a_system_that_failed_is_never_read_as_holding_nothing(ctx: wf.Context) -> None:  # noqa: F811
    """Review (session 39): every other system found nothing, orders failed, and the
    subject was told we hold none of their data, and that orders could not be done."""
    rec, note = _answered_by(ctx, failed=(System.orders,))
    assert rec.state is RequestState.partially_completed
    assert "hold none" not in note.message
    assert note.message.startswith("We could not yet make your copy")
    assert "orders" in note.message
    assert rec.manifest is not None
    assert rec.manifest["missing_exports"] == ["orders"]
    _, note = _answered_by(ctx, System.web, failed=(System.orders,))
    assert note.message.startswith("A copy of")
    assert "could not yet complete it in: orders" in note.message


def test_a_copy_of_no_record_is_no_copy(ctx: wf.Context) -> None:  # noqa: F811
    rec, last = _each_copy(ctx, lambda _: {"record_count": 0})
    (note,) = of_type(last, r.SubjectNotification)
    assert note.message == NOTHING_PORTABLE
    assert note.exports == []
    assert rec.state is RequestState.completed
    assert rec.manifest is not None
    assert rec.manifest["exports"] == []


def test_a_copy_of_no_record_beside_a_real_one_is_neither_told_nor_recorded(
    ctx: wf.Context,  # noqa: F811
) -> None:
    empty = export_ref(System.crm).model_copy(update={"record_count": 0})
    rec, last = _each_copy(ctx, lambda s: {"record_count": 0} if s is System.crm else {})
    (note,) = of_type(last, r.SubjectNotification)
    assert empty.location not in {e.location for e in note.exports}
    assert len(note.exports) == len(rec.tasks) - 1
    assert rec.manifest is not None
    assert "crm" not in {e["system"] for e in rec.manifest["exports"]}


def _copies(
    context: wf.Context, **by_system: r.ExportReference
) -> tuple[wf.RequestRecord, wf.Outcome]:
    """A portability request answered with ``by_system``'s copies, the others not found."""
    rec = port(context).record
    assert rec is not None
    results = {
        t.system.value: (
            answer(rec, t.system, export=by_system[t.system.value])
            if t.system.value in by_system
            else answer(rec, t.system, r.NotFound)
        )
        for t in rec.tasks.values()
    }
    return answer_all(rec, context, **results)


@pytest.mark.parametrize(
    ("media_types", "told"),
    [
        (("application/json; charset=utf-8", "Text/CSV"), "(JSON, CSV)"),
        (("application/json", "application/json"), "(JSON)"),
        (("application/vnd.allled.orders+json", "application/x-ndjson"), "(JSON, NDJSON)"),
    ],
)
def test_the_subject_is_told_each_format_once(
    ctx: wf.Context,  # noqa: F811
    media_types: tuple[str, str],
    told: str,
) -> None:
    first, second = (
        export_ref(s).model_copy(update={"media_type": m})
        for s, m in zip((System.crm, System.orders), media_types, strict=True)
    )
    rec, last = _copies(ctx, crm=first, orders=second)
    assert rec.state is RequestState.completed
    (note,) = of_type(last, r.SubjectNotification)
    assert f"machine-readable form {told} that" in note.message


def test_a_media_types_words_never_reach_the_audit(ctx: wf.Context) -> None:  # noqa: F811
    """The media type is the system's own text: a file name in its parameters may name
    the subject, and the refusal's reason is audited."""
    named = export_ref(System.orders, "R-1.pdf").model_copy(
        update={"media_type": 'application/pdf; name="Ann Jones 12 Acacia Ave.pdf"'}
    )
    rec = port(ctx).record
    assert rec is not None
    outcome = wf.on_result(rec, answer(rec, System.orders, export=named), ctx)
    assert outcome.record is not None
    audited = " ".join(f"{a.after} {a.reason}" for a in outcome.audit)
    assert "export_not_machine_readable" in audited
    assert "'application/pdf'" in audited
    assert "Ann" not in audited
    assert "Acacia" not in audited
    odd = export_ref(System.crm).model_copy(update={"media_type": "application/ann.jones-12"})
    again = wf.on_result(rec, answer(rec, System.crm, export=odd), ctx)
    audited = " ".join(f"{a.after} {a.reason}" for a in again.audit)
    assert "an unrecognised media type" in audited
    assert "Ann" not in audited


def test_a_copy_of_more_than_was_asked_is_failed(ctx: wf.Context) -> None:  # noqa: F811
    """A connector that ignores ``portability`` copies everything, the credit file too."""
    everything = export_ref(System.orders).model_copy(
        update={"categories": [C.contact, C.credit, C.purchases]}
    )
    rec, last = _copies(ctx, orders=everything)
    orders = next(t for t in rec.tasks.values() if t.system is System.orders)
    assert orders.state is TaskState.failed
    assert (orders.outcome_reason or "").startswith("export_not_portable: the copy holds credit")
    (note,) = of_type(last, r.SubjectNotification)
    assert note.exports == []
    assert note.message.startswith("We could not yet make your copy")


@pytest.mark.parametrize("said", [[], [C.contact]])
def test_a_retained_answer_is_never_read_as_holding_nothing(
    ctx: wf.Context,  # noqa: F811
    said: list[Category],
) -> None:
    """Nothing is kept by making no copy: the answer made none, and the DPO follows it up
    as a failure, whether or not it named categories (third review, session 39)."""
    rec = port(ctx).record
    assert rec is not None
    results = {
        t.system.value: (
            answer(rec, t.system, r.TaskRetained, reason="kept", categories=said)
            if t.system is System.orders
            else answer(rec, t.system, r.NotFound)
        )
        for t in rec.tasks.values()
    }
    rec, last = answer_all(rec, ctx, **results)
    assert rec.state is RequestState.partially_completed
    assert rec.kept == []
    (note,) = of_type(last, r.SubjectNotification)
    assert note.message.startswith("We could not yet make your copy")
    assert "could not yet complete it in: orders" in note.message
    assert rec.manifest is not None
    assert rec.manifest["missing_exports"] == ["orders"]


@pytest.mark.parametrize(
    ("media_type", "name"),
    [
        ("application/json", "JSON"),
        ("Application/JSON; charset=utf-8", "JSON"),
        ("application/vnd.acme_orders+json", "JSON"),
        ("application/vnd.allled.orders+xml", "XML"),
        ("text/csv", "CSV"),
        ("image/svg+xml", None),  # a picture
        ("application/xhtml+xml", None),  # a page
        ("application/pdf", None),
        ("text/plain", None),
    ],
)
def test_which_media_types_are_machine_readable(media_type: str, name: str | None) -> None:
    assert format_name(media_type) == name


def test_a_copy_in_no_machine_readable_format_is_failed(ctx: wf.Context) -> None:  # noqa: F811
    rec = port(ctx).record
    assert rec is not None
    pdf = export_ref(System.orders, "R-1.pdf").model_copy(update={"media_type": "application/pdf"})
    csv = export_ref(System.crm, "R-1.csv").model_copy(update={"media_type": "text/csv"})
    copies = {System.orders: pdf, System.crm: csv}
    results = {
        t.system.value: (
            answer(rec, t.system, export=copies[t.system])
            if t.system in copies
            else answer(rec, t.system, r.NotFound)
        )
        for t in rec.tasks.values()
    }
    rec, last = answer_all(rec, ctx, **results)
    orders = next(t for t in rec.tasks.values() if t.system is System.orders)
    assert orders.state is TaskState.failed
    assert (orders.outcome_reason or "").startswith("export_not_machine_readable: ")
    (note,) = of_type(last, r.SubjectNotification)
    assert [e.location for e in note.exports] == [csv.location]
    assert "machine-readable form (CSV)" in note.message
    # An access copy may be a PDF: the check is portability's.
    access = wf.on_command(None, submit(RequestType.access, request_id="R-9"), ctx).record
    assert access is not None
    task = next(t for t in access.tasks.values() if t.system is System.orders)
    pdf9 = pdf.model_copy(update={"location": pdf.location.replace("R-1", "R-9")})
    outcome = wf.on_result(access, answer(access, System.orders, export=pdf9), ctx)
    assert outcome.record is not None
    assert outcome.record.tasks[task.task_id].state is TaskState.done


def test_a_copy_showing_others_waits_for_the_dpo_under_art_20_4(ctx: wf.Context) -> None:  # noqa: F811
    rec = _held(ctx)  # nothing goes out meanwhile (asserted there)
    letter = "A neighbour's email is in it."
    outcome = wf.on_command(
        rec, command(r.AccessResponseApproved, withheld=[System.crm], reason=letter), ctx
    )
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.state is RequestState.partially_completed
    (note,) = of_type(outcome, r.SubjectNotification)
    assert "we left out the copy from crm (UK GDPR Art. 20(4))" in note.message
    assert "the letter with this notice" in note.message
    assert note.document == letter
    assert "Information Commissioner" in note.message
    assert export_ref(System.crm).location not in {e.location for e in note.exports}
    # The record keeps what was left out and why (Art. 5(2)); request status reads it.
    kept = outcome.record.manifest
    assert kept is not None
    assert kept["withheld_exports"][0]["system"] == "crm"
    assert kept["review_reason"] == letter
    assert "crm" not in {e["system"] for e in kept["exports"]}
    shown = _marked({"manifest": kept, "tasks": _tasks_json(outcome.record)})
    assert {e["system"]: e["withheld"] for e in shown}["crm"] is True


def _tasks_json(rec: wf.RequestRecord) -> list[dict[str, Any]]:
    """The tasks as GET /requests/{id} shows them (agents.http.request_json)."""
    return [
        {"system": t.system.value, "export": t.export.model_dump(mode="json") if t.export else None}
        for t in rec.tasks.values()
    ]


def _held(context: wf.Context) -> wf.RequestRecord:
    """A portability response whose CRM copy shows others, held for the DPO."""
    rec, held = _each_copy(context, lambda s: {"shows_others": s is System.crm})
    assert rec.state is RequestState.awaiting_review
    assert of_type(held, r.SubjectNotification) == []
    return rec


def test_with_every_copy_left_out_the_subject_is_told_none_can_be_given(ctx: wf.Context) -> None:  # noqa: F811
    rec = _held(ctx)
    every = [t.system for t in rec.tasks.values()]
    outcome = wf.on_command(
        rec, command(r.AccessResponseApproved, withheld=every, reason="Others throughout."), ctx
    )
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.state is RequestState.partially_completed
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.message.startswith("We cannot give you a copy")
    assert "machine-readable" not in note.message
    assert note.exports == []
    kept = outcome.record.manifest
    assert kept is not None
    assert kept["exports"] == []
    assert sorted(w["system"] for w in kept["withheld_exports"]) == sorted(s.value for s in every)


def test_a_copy_left_out_beside_a_failed_one_says_the_copy_is_not_yet_made(
    ctx: wf.Context,  # noqa: F811
) -> None:
    rec = port(ctx).record
    assert rec is not None
    results = {
        t.system.value: (
            answer(
                rec, t.system, export=export_ref(t.system).model_copy(update={"shows_others": True})
            )
            if t.system is System.crm
            else answer(rec, t.system, r.TaskFailed, reason="down", retryable=False)
        )
        for t in rec.tasks.values()
    }
    rec, _ = answer_all(rec, ctx, **results)
    approved = command(r.AccessResponseApproved, withheld=[System.crm], reason="Others.")
    outcome = wf.on_command(rec, approved, ctx)
    assert outcome.record is not None
    assert outcome.record.state is RequestState.partially_completed
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.message.startswith("We could not yet make your copy")
    assert "we left out the copy from crm" in note.message


def test_a_redacted_copy_goes_out_in_place_of_the_systems(ctx: wf.Context) -> None:  # noqa: F811
    rec = _held(ctx)
    redacted = export_ref(System.crm, "R-1/redacted.json")
    outcome = wf.on_command(rec, command(r.ExportRedacted, system=System.crm, export=redacted), ctx)
    assert outcome.record is not None
    approved = command(r.AccessResponseApproved, reason="A neighbour's name is cut.")
    done = wf.on_command(outcome.record, approved, ctx)
    assert done.rejected is None, done.message
    assert done.record is not None
    assert done.record.state is RequestState.completed
    (note,) = of_type(done, r.SubjectNotification)
    sent = {e.location for e in note.exports}
    assert redacted.location in sent
    assert export_ref(System.crm).location not in sent
    assert "we redacted the copy from crm (UK GDPR Art. 20(4))" in note.message
    kept = done.record.manifest
    assert kept is not None
    assert {e["system"]: e["redacted"] for e in kept["exports"]}["crm"] is True


def test_no_copy_is_redacted_to_nothing_nor_a_copy_of_nothing_withheld(ctx: wf.Context) -> None:  # noqa: F811
    rec = _held(ctx)
    nothing = export_ref(System.crm, "R-1/redacted.json").model_copy(update={"record_count": 0})
    outcome = wf.on_command(rec, command(r.ExportRedacted, system=System.crm, export=nothing), ctx)
    assert outcome.rejected is not None
    assert "withhold the copy instead" in (outcome.message or "")
    empty = next(t for t in rec.tasks.values() if t.system is System.web)
    assert empty.export is not None
    empty.export = empty.export.model_copy(update={"record_count": 0})
    something = export_ref(System.web, "R-1/redacted.json")  # of a copy of nothing
    outcome = wf.on_command(
        rec, command(r.ExportRedacted, system=System.web, export=something), ctx
    )
    assert outcome.rejected is not None
    assert "web's copy holds no record: there is nothing to redact" in (outcome.message or "")
    withheld = command(
        r.AccessResponseApproved, withheld=[System.web], disclosed=[System.crm], reason="x"
    )
    outcome = wf.on_command(rec, withheld, ctx)
    assert outcome.rejected is not None
    assert "web's copy holds no record" in (outcome.message or "")


def test_the_status_of_a_portability_request_shows_no_art_15_response(
    ctx: wf.Context,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rec = _held(ctx)
    outcome = wf.on_command(
        rec, command(r.AccessResponseApproved, withheld=[System.crm], reason="Others."), ctx
    )
    assert outcome.record is not None
    body = {
        "request_id": "R-1",
        "request_type": "portability",
        "state": outcome.record.state.value,
        "tasks": _tasks_json(outcome.record),
        "manifest": outcome.record.manifest,
    }
    out = io.StringIO()
    monkeypatch.setattr(status_cli, "console", Console(file=out, width=200, color_system=None))
    status_cli.render_status(body)
    shown = out.getvalue()
    assert "Art. 15" not in shown
    assert "crm (shows others) (withheld)" in shown


def test_a_redacted_copy_must_be_machine_readable_too(ctx: wf.Context) -> None:  # noqa: F811
    rec = _held(ctx)
    scan = export_ref(System.crm, "R-1/redacted.pdf").model_copy(
        update={"media_type": "application/pdf"}
    )
    outcome = wf.on_command(rec, command(r.ExportRedacted, system=System.crm, export=scan), ctx)
    assert outcome.rejected is not None
    assert "machine-readable" in (outcome.message or "")
    fine = scan.model_copy(
        update={
            "location": scan.location.replace(".pdf", ".json"),
            "media_type": "application/json",
        }
    )
    outcome = wf.on_command(rec, command(r.ExportRedacted, system=System.crm, export=fine), ctx)
    assert outcome.rejected is None, outcome.message


def test_portability_needs_the_identity_verified(ctx: wf.Context) -> None:  # noqa: F811
    outcome = port(ctx, verified=False)
    assert of_type(outcome, r.Export) == []
    assert outcome.record is not None
    assert outcome.record.state is RequestState.identity_unverified


def test_portability_may_be_refused_as_not_applying(ctx: wf.Context) -> None:  # noqa: F811
    rec = port(ctx, verified=False).record
    refusal = command(
        r.RequestRefused, ground=RefusalGround.right_does_not_apply, reason="Held on our LI."
    )
    outcome = wf.on_command(rec, refusal, ctx)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.state is RequestState.refused
    (note,) = of_type(outcome, r.SubjectNotification)
    assert "does not apply" in note.message
    assert "Information Commissioner" in note.message


def test_portability_may_be_extended_but_takes_no_further_copies_fee(ctx: wf.Context) -> None:  # noqa: F811
    rec = port(ctx, verified=False).record
    assert rec is not None
    fee = command(r.FeeReceived, received_on=NOW.date(), ground=FeeGround.further_copies)
    refused = wf.on_command(rec, fee, ctx)
    assert refused.rejected is not None
    assert "access request only" in (refused.message or "")
    started = port(ctx, request_id="R-2").record
    assert started is not None
    extension = command(r.DeadlineExtended, reason="Many systems.", notified_on=NOW.date())
    extended = wf.on_command(started, extension.model_copy(update={"request_id": "R-2"}), ctx)
    assert extended.rejected is None, extended.message
    assert extended.record is not None
    assert started.due_on is not None
    assert extended.record.due_on is not None
    assert extended.record.due_on > started.due_on


def test_an_unknown_subject_is_refused_as_for_the_other_rights(ctx: wf.Context) -> None:  # noqa: F811
    stranger = at(ctx, NOW, identity=None, known_subject=False)
    outcome = wf.on_command(None, submit(RequestType.portability), stranger)
    assert outcome.rejected is wf.Reason.unknown_subject


def test_a_purpose_may_say_which_of_its_categories_are_portable(dm: DataMap) -> None:  # noqa: F811
    data = dm.model_dump(mode="json")
    data["purposes"]["credit_accounts"]["portable"] = ["purchases", "credit"]
    changed = DataMap.model_validate(data)
    assert changed.portable()[System.orders] == SHIPPED[System.orders] | {C.credit}
    data["purposes"]["credit_accounts"]["portable"] = ["interactions"]
    with pytest.raises(ValueError, match="portable: interactions is not among"):
        DataMap.model_validate(data)
    data["purposes"]["credit_accounts"]["portable"] = None
    data["purposes"]["fraud_prevention"]["portable"] = ["contact"]
    with pytest.raises(ValueError, match="consent or a contract only"):
        DataMap.model_validate(data)
    data["purposes"]["fraud_prevention"]["portable"] = None
    data["purposes"]["web_analytics"]["portable"] = []  # none of it, says the DPO
    assert DataMap.model_validate(data).portable()[System.web] == {C.contact}
    data["purposes"]["web_analytics"]["systems"] = []  # any system holding web data
    data["purposes"]["web_analytics"]["portable"] = None
    assert C.web in DataMap.model_validate(data).portable()[System.web]


def test_portability_takes_no_clarification_pause(ctx: wf.Context) -> None:  # noqa: F811
    rec = port(ctx).record
    outcome = wf.on_command(rec, command(r.ClarificationRequested, asked_on=NOW.date()), ctx)
    assert outcome.rejected is not None
    assert "only for an access request" in (outcome.message or "")


def test_the_export_task_carries_the_flag_through_avro() -> None:
    task = r.Export(
        task_id="T-1",
        request_id="R-1",
        subject_id=SUBJECT,
        system=System.orders,
        issued_at=NOW,
        identifiers={"customer_id": "C-1"},
        categories=[C.contact],
        portability=True,
    )
    codec = Codec(contract.schema_dir())
    schema = codec.latest[task.fullname()].schema
    assert codec.decode(schema, codec.encode(task)) == task
    submitted = submit(RequestType.portability)
    schema = codec.latest[submitted.fullname()].schema
    assert codec.decode(schema, codec.encode(submitted)) == submitted


# --- the reference systems -------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, customers: list[FakeCustomer]) -> Path:  # noqa: F811
    seed_stores(tmp_path, customers)
    return tmp_path


def _copy(data_dir: Path, ref: r.ExportReference | None) -> dict[str, Any]:
    assert ref is not None
    path = exported_file(data_dir, ref.location)
    assert path is not None
    document: dict[str, Any] = json.loads(path.read_bytes())
    return document


def test_the_reference_store_exports_the_portable_categories_only(
    data_dir: Path,
    customers: list[FakeCustomer],  # noqa: F811
) -> None:
    with_credit = next(c for c in customers if c.credit is not None and c.orders)
    portable = sorted(SHIPPED[System.orders])
    full = task_of(r.Export, with_credit, System.orders, request_id="REQ-A")
    ported = task_of(
        r.Export,
        with_credit,
        System.orders,
        request_id="REQ-P",
        categories=portable,
        portability=True,
    )
    everything = asyncio.run(OrdersConnector(data_dir).export(full)).export
    assert everything is not None
    assert C.credit in (everything.categories or [])
    ref = asyncio.run(OrdersConnector(data_dir).export(ported)).export
    document = _copy(data_dir, ref)
    assert ref is not None
    assert C.credit not in (ref.categories or [])
    assert {t["category"] for t in document["tables"].values()} <= {c.value for c in portable}
    assert document["portability"] == {
        "article": "UK GDPR Art. 20",
        "categories": [c.value for c in C if c in SHIPPED[System.orders]],
    }
    assert 0 < ref.record_count < everything.record_count


def test_a_statement_about_a_category_not_ported_stays_out(
    data_dir: Path,
    customers: list[FakeCustomer],  # noqa: F811
) -> None:
    customer = next(c for c in customers if c.messages)  # CRM holds their interactions
    rectify = task_of(
        r.Rectify,
        customer,
        System.crm,
        changes={"statement:interactions": "I never called.", "statement:contact": "Mx."},
    )
    assert asyncio.run(CrmConnector(data_dir).rectify(rectify)).kind is TaskOutcome.completed
    ported = task_of(
        r.Export,
        customer,
        System.crm,
        request_id="REQ-P",
        categories=sorted(SHIPPED[System.crm]),
        portability=True,
    )
    document = _copy(data_dir, asyncio.run(CrmConnector(data_dir).export(ported)).export)
    assert [s["category"] for s in document["supplementary_statements"]] == ["contact"]
    full = task_of(r.Export, customer, System.crm, request_id="REQ-A")
    document = _copy(data_dir, asyncio.run(CrmConnector(data_dir).export(full)).export)
    assert sorted(s["category"] for s in document["supplementary_statements"]) == [
        "contact",
        "interactions",
    ]


def test_a_system_holding_none_of_the_categories_answers_not_found(
    data_dir: Path,
    customers: list[FakeCustomer],  # noqa: F811
) -> None:
    customer = next(c for c in customers if c.orders)
    ported = task_of(
        r.Export,
        customer,
        System.orders,
        request_id="REQ-P",
        categories=[C.marketing_preferences],  # not held by orders
        portability=True,
    )
    answered = asyncio.run(OrdersConnector(data_dir).export(ported))
    assert answered.export is None
    assert answered.kind is TaskOutcome.not_found
    assert not list((data_dir / "exports").rglob("REQ-P*"))


def test_the_cli_verb_is_listed_with_its_article() -> None:
    from typer.testing import CliRunner

    from privops.cli.main import app

    result = CliRunner().invoke(app, ["request", "port", "--help"])
    assert result.exit_code == 0, result.output
    assert "Art. 20" in result.output


def test_what_the_system_worked_out_or_others_told_it_stays_out(
    data_dir: Path,
    customers: list[FakeCustomer],  # noqa: F811
) -> None:
    """The marketing platform's lawful basis and the TPS register's answer are not what
    the subject gave: a portability copy leaves those columns out, an access copy not."""
    subscriber = next(c for c in customers if c.in_system(System.marketing))
    portable = sorted(SHIPPED[System.marketing])

    def subscriptions(**kw: Any) -> list[dict[str, Any]]:
        task = task_of(r.Export, subscriber, System.marketing, **kw)
        copy = _copy(data_dir, asyncio.run(MarketingConnector(data_dir).export(task)).export)
        rows: list[dict[str, Any]] = copy["tables"]["subscriptions"]["rows"]
        assert rows
        return rows

    assert all({"basis", "tps_listed"} <= set(row) for row in subscriptions(request_id="REQ-A"))
    ported = subscriptions(request_id="REQ-P", categories=portable, portability=True)
    assert not any({"basis", "tps_listed"} & set(row) for row in ported)
    assert all("channel" in row and "status" in row for row in ported)
