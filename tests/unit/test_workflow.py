"""Table tests of the pure request workflow (privops.core.workflow) on the real data map.

Each test drives on_command / on_result / on_tick the way the workflow agent does, with a
Context built here: an identity map merged from several systems, the subject's retention
facts, legal holds and a fixed clock.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import admission, deadlines
from privops.core import records as r
from privops.core import workflow as wf
from privops.core.consent import ConsentFact, FactKind, apply_all
from privops.core.datamap import DataMap
from privops.core.erasure import Disclosure, LegalHold, SubjectFacts
from privops.core.facts import directive_fact
from privops.core.fanout import restrictions_in_force
from privops.core.identity import IdentityMap, for_system, merge
from privops.core.manifest import render_manifest_text
from privops.core.personal import WITHHELD
from privops.core.ticks import Tick, TickKind
from privops.core.topics import ALERTS, COMMANDS, NOTIFICATIONS, SUBJECT_DIRECTIVES, tasks_topic
from privops.core.vocab import (
    Category,
    Channel,
    ConsentStatus,
    LawfulBasis,
    ObjectionScope,
    Purpose,
    RequestState,
    RequestType,
    System,
    TaskAction,
    TaskState,
)

C = Category
S = RequestState
NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)  # a Monday
TODAY = NOW.date()
SUBJECT = "subj-1"
INVOICE = NOW - timedelta(days=365)  # 10 March 2024
# Financial records: 6 years from the end of the financial year holding the invoice
# (year end 31 March in the data map), so kept through 31 March 2030 and erasable from
# 1 April 2030 00:00 UK time (BST), not 6 years from the invoice date.
KEPT_UNTIL = datetime(2030, 3, 31, 23, 0, tzinfo=UTC)

# What each system calls the subject. web is deliberately absent: it never reported them.
SYSTEM_IDS: dict[System, dict[str, str]] = {
    System.orders: {"customer_id": "C-100", "email": "ann@example.com"},
    System.crm: {"contact_id": "K-7", "email": "ann@example.com"},
    System.telephony: {"phone": "07700 900123"},
    System.marketing: {"email": "ann@example.com"},
    System.cctv: {"camera_ref": "cam-3:2025-03-01"},
}
KNOWN = set(SYSTEM_IDS)
# web never reported the subject, but looks subjects up by customer number and email, both
# known: it is asked too, by those (privops.core.fanout.holdings; review, session 27).
WEB_IDS = {"customer_id": "C-100", "email": "ann@example.com"}
ASKED = KNOWN | {System.web}


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def identity_map() -> IdentityMap:
    identity: IdentityMap | None = None
    for system, ids in SYSTEM_IDS.items():
        identity = merge(identity, SUBJECT, system, ids, NOW - timedelta(days=30))
    assert identity is not None
    return identity


@pytest.fixture
def ctx(dm: DataMap) -> wf.Context:
    return wf.Context(
        now=NOW,
        today=TODAY,
        datamap=dm,
        subject_ref="sr_0123456789abcdef01234567",
        identity=identity_map(),
        facts=SubjectFacts(),
    )


def at(ctx: wf.Context, when: datetime, **changes: Any) -> wf.Context:
    return dataclasses.replace(ctx, now=when, today=when.date(), **changes)


_counter = iter(range(1, 10_000))


def cmd_id() -> str:
    return f"cmd-{next(_counter)}"


def submit(request_type: RequestType, *, verified: bool = True, **kw: Any) -> r.RequestSubmitted:
    fields: dict[str, Any] = {
        "command_id": cmd_id(),
        "request_id": "R-1",
        "issued_at": NOW,
        "actor": "dpo",
        "request_type": request_type,
        "subject_id": SUBJECT,
        "received_on": TODAY,
        "identity_verified_on": TODAY if verified else None,
    }
    fields.update(kw)
    return r.RequestSubmitted(**fields)


def command(model: type[r.Command], issued_at: datetime = NOW, **kw: Any) -> r.Command:
    return model(command_id=cmd_id(), request_id="R-1", issued_at=issued_at, actor="dpo", **kw)


def start(request_type: RequestType, ctx: wf.Context, **kw: Any) -> wf.RequestRecord:
    outcome = wf.on_command(None, submit(request_type, **kw), ctx)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    return outcome.record


def tasks_out(outcome: wf.Outcome) -> list[r.Task]:
    return [o.record for o in outcome.out if isinstance(o.record, r.Task)]


def of_type(outcome: wf.Outcome, model: type[r.Record]) -> list[Any]:
    return [o.record for o in outcome.out if isinstance(o.record, model)]


def answer(
    rec: wf.RequestRecord,
    system: System,
    model: type[r.TaskResult] = r.TaskCompleted,
    *,
    task_id: str | None = None,
    when: datetime = NOW,
    **kw: Any,
) -> r.TaskResult:
    if task_id is None:
        task_id = next(t.task_id for t in rec.tasks.values() if t.system is system)
    return model(task_id=task_id, request_id=rec.request_id, system=system, answered_at=when, **kw)


def answer_all(
    rec: wf.RequestRecord, ctx: wf.Context, **by_system: r.TaskResult
) -> tuple[wf.RequestRecord, wf.Outcome]:
    """Answer every task (TaskCompleted unless given); returns the last outcome."""
    outcome = wf.Outcome(record=rec)
    for task in list(rec.tasks.values()):
        result = by_system.get(task.system.value) or answer(rec, task.system)
        outcome = wf.on_result(rec, result, ctx)
        assert outcome.rejected is None, outcome.message
        assert outcome.record is not None
        rec = outcome.record
    return rec, outcome


def unchanged(outcome: wf.Outcome, rec: wf.RequestRecord) -> bool:
    """Nothing of the request changed: at most the answer it gave was remembered."""
    kept = outcome.record
    return kept is None or kept.model_copy(update={"answered": rec.answered}) == rec


def tick(rec: wf.RequestRecord, kind: str, when: datetime = NOW, **kw: Any) -> Tick:
    return Tick(request_id=rec.request_id, kind=TickKind(kind), at=when, **kw)


# --- erasure --------------------------------------------------------------------------------


def test_erasure_before_identity_verification_sends_nothing(ctx: wf.Context) -> None:
    outcome = wf.on_command(None, submit(RequestType.erasure, verified=False), ctx)
    rec = outcome.record
    assert rec is not None
    assert rec.state is S.identity_unverified
    assert rec.tasks == {}
    assert outcome.out == []
    assert rec.clock_start is None
    assert rec.due_on is None


def test_identity_verified_sends_one_erase_per_known_system(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx, verified=False)
    later = at(ctx, NOW + timedelta(days=2))
    outcome = wf.on_command(rec, command(r.IdentityVerified, verified_on=later.today), later)
    assert outcome.rejected is None
    rec2 = outcome.record
    assert rec2 is not None
    assert rec2.state is S.awaiting_systems
    assert rec2.clock_start == later.today
    assert rec2.due_on == deadlines.due_date(later.today)

    erases = [(o, o.record) for o in outcome.out if isinstance(o.record, r.Erase)]
    systems = [task.system for _, task in erases]
    assert sorted(systems) == sorted(ASKED)  # one per system known, and web
    for o, task in erases:
        assert o.topic == tasks_topic(task.system)
        assert o.key == SUBJECT
        assert task.identifiers == (for_system(identity_map(), task.system) or WEB_IDS)
        assert task.attempt == 1
        assert task.request_id == "R-1"
    assert all(t.state is TaskState.sent for t in rec2.tasks.values())
    directives = of_type(outcome, r.SubjectDirective)
    assert [d.kind for d in directives] == ["suppressed"]


# name, facts, holds, expected {system: {kept category: (ground fragment, until)}}
KEEP_CASES: list[
    tuple[str, SubjectFacts, tuple[LegalHold, ...], dict[System, dict[Category, Any]]]
] = [
    ("plain customer", SubjectFacts(), (), {}),
    (
        "invoices within 6 years kept in orders",
        SubjectFacts(latest_financial_record_at=INVOICE),
        (),
        {
            System.orders: {
                C.payment: ("financial records", KEPT_UNTIL),
                C.purchases: ("financial records", KEPT_UNTIL),
            }
        },
    ),
    (
        "open debt keeps credit",
        SubjectFacts(open_debt=True),
        (),
        {
            System.orders: {
                C.credit: ("legal_claims: a debt owed", None),
                C.payment: ("legal_claims: a debt owed", None),
                C.purchases: ("legal_claims: a debt owed", None),
            }
        },
    ),
    (
        "an open credit account keeps credit: a contract, not a legal claim",
        SubjectFacts(open_credit_account=True),
        (),
        {
            System.orders: {
                C.credit: ("contract: an open credit account", None),
                C.payment: ("contract: an open credit account", None),
                C.purchases: ("contract: an open credit account", None),
            }
        },
    ),
    (
        "legal hold keeps its category",
        SubjectFacts(),
        (
            LegalHold(
                hold_id="H-1",
                subject_id=SUBJECT,
                categories=(C.interactions,),
                reason="claim 2025/3",
                placed_at=NOW - timedelta(days=1),
            ),
        ),
        {
            System.crm: {C.interactions: ("legal hold H-1", None)},
            System.telephony: {C.interactions: ("legal hold H-1", None)},
        },
    ),
    (
        "cctv under investigation",
        SubjectFacts(open_investigation_ids=("INV-9",)),
        (),
        {System.cctv: {C.cctv: ("investigation hold", None)}},
    ),
]


@pytest.mark.parametrize(
    ("name", "facts", "holds", "expected"), KEEP_CASES, ids=[c[0] for c in KEEP_CASES]
)
def test_erase_tasks_carry_keep_lists(
    ctx: wf.Context,
    dm: DataMap,
    name: str,
    facts: SubjectFacts,
    holds: tuple[LegalHold, ...],
    expected: dict[System, dict[Category, Any]],
) -> None:
    outcome = wf.on_command(
        None, submit(RequestType.erasure), at(ctx, NOW, facts=facts, holds=holds)
    )
    erases = {t.system: t for t in of_type(outcome, r.Erase)}
    assert set(erases) == ASKED, name
    for system, task in erases.items():
        wanted = expected.get(system, {})
        kept = {k.category: k for k in task.keep}
        assert set(kept) == set(wanted), system
        for category, (ground, until) in wanted.items():
            assert ground in kept[category].ground
            assert kept[category].until == until
        held = set(dm.systems[system].categories)
        assert set(task.categories) == held - set(wanted), system
    assert outcome.record is not None
    followups = {(f.system, c) for f in outcome.record.followups for c in f.categories}
    dated = {(s, c) for s, cats in expected.items() for c, (_, u) in cats.items() if u}
    assert followups == dated


def disclosed(recipient: str, ref: str | None, *categories: Category) -> Disclosure:
    when = NOW - timedelta(days=90)
    return Disclosure(
        recipient=recipient, recipient_ref=ref, categories=categories, first_at=when, last_at=when
    )


# What the systems reported disclosing (Art. 19 goes to these, not to the data map's list).
DISCLOSED = SubjectFacts(
    disclosures=(
        disclosed("Credit reference agencies", "CRA-77", C.contact, C.credit),
        disclosed("Banks and payment processors", "PSP-1", C.payment),
        disclosed("Law enforcement agencies (on valid request)", None, C.cctv),
    )
)


def test_erasure_notifies_recipients_of_erased_categories(ctx: wf.Context) -> None:
    outcome = wf.on_command(None, submit(RequestType.erasure), at(ctx, NOW, facts=DISCLOSED))
    notes = of_type(outcome, r.RecipientNotification)
    assert all(n.action is TaskAction.erase for n in notes)
    assert all(n.subject_ref == ctx.subject_ref for n in notes)
    by_name = {n.recipient: n for n in notes}
    # Law enforcement is not notified by policy (notify_on_rights_requests: false).
    assert set(by_name) == {"Credit reference agencies", "Banks and payment processors"}
    assert by_name["Credit reference agencies"].recipient_refs == ["CRA-77"]
    assert by_name["Credit reference agencies"].categories == [C.contact, C.credit]


def test_erasure_of_a_customer_nobody_received_notifies_no_recipient(ctx: wf.Context) -> None:
    outcome = wf.on_command(None, submit(RequestType.erasure), ctx)
    assert of_type(outcome, r.RecipientNotification) == []


def test_erasure_with_nothing_known_completes_without_tasks(ctx: wf.Context) -> None:
    outcome = wf.on_command(None, submit(RequestType.erasure), at(ctx, NOW, identity=None))
    assert outcome.record is not None
    assert outcome.record.state is S.completed
    assert tasks_out(outcome) == []


# --- restriction and lift ---------------------------------------------------------------


def test_restriction_sends_restrict_tasks_directive_and_recipient_notices(
    ctx: wf.Context,
) -> None:
    outcome = wf.on_command(None, submit(RequestType.restriction), at(ctx, NOW, facts=DISCLOSED))
    assert outcome.record is not None
    assert outcome.record.state is S.awaiting_systems
    restricts = of_type(outcome, r.Restrict)
    assert sorted(t.system for t in restricts) == sorted(ASKED)
    directives = [o for o in outcome.out if o.topic == SUBJECT_DIRECTIVES]
    assert [d.record.kind for d in directives if isinstance(d.record, r.SubjectDirective)] == [
        "restricted"
    ]
    assert directives[0].key == SUBJECT
    notes = of_type(outcome, r.RecipientNotification)
    assert notes
    assert {n.action for n in notes} == {TaskAction.restrict}
    assert all(n.categories for n in notes)


def test_lift_tells_the_subject_before_any_lift_task(ctx: wf.Context) -> None:
    restricted = at(ctx, NOW, restricted=True)
    outcome = wf.on_command(None, submit(RequestType.restriction_lift), restricted)
    kinds = [
        "notice"
        if isinstance(o.record, r.SubjectNotification)
        else "lift"
        if isinstance(o.record, r.LiftRestriction)
        else "other"
        for o in outcome.out
    ]
    assert kinds.count("notice") == 1
    assert kinds.count("lift") == len(ASKED)
    assert kinds.index("notice") < kinds.index("lift")
    note = of_type(outcome, r.SubjectNotification)[0]
    assert note.kind == "restriction_lift_pending"
    directives = of_type(outcome, r.SubjectDirective)
    assert [d.kind for d in directives] == ["restriction_lifted"]


def test_a_lift_tells_the_subject_why_and_that_they_may_complain(ctx: wf.Context) -> None:
    """Art. 18(3), Art. 12(4) and ICO guidance: a lift follows a finding against the
    subject (the data is accurate, the objection failed): they are told why, and may
    complain. Before, the notice said only that it would be lifted (legal review,
    session 35)."""
    restricted = at(ctx, NOW, restricted=True)
    why = "We checked the address you disputed against your signed order: it is correct."
    outcome = wf.on_command(None, submit(RequestType.restriction_lift, reason=why), restricted)
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.document == why
    assert "our reasons are in the letter" in note.message
    assert "Information Commissioner" in note.message
    bare = wf.on_command(None, submit(RequestType.restriction_lift, request_id="R-2"), restricted)
    (note,) = of_type(bare, r.SubjectNotification)
    assert note.document is None
    assert "our reasons" not in note.message  # none given: none promised
    assert "Information Commissioner" in note.message


# --- several restrictions: a lift ends the one it names (review, session 44) --------------


def restrictions(ctx: wf.Context, *ids: str, answered: bool = True) -> list[wf.RequestRecord]:
    """Restriction requests applied a minute apart, oldest first; ``answered``: every
    system answered its Restrict (completed), else they wait for the answers."""
    whens = [NOW - timedelta(minutes=10 - n) for n in range(len(ids))]
    made = [
        start(RequestType.restriction, at(ctx, when), request_id=rid, issued_at=when)
        for when, rid in zip(whens, ids, strict=True)
    ]
    assert all(rec.state is S.awaiting_systems for rec in made)
    return [rec.model_copy(update={"state": S.completed}) if answered else rec for rec in made]


def with_requests(ctx: wf.Context, *records: wf.RequestRecord) -> wf.Context:
    return at(ctx, NOW, restricted=True, subject_requests=lambda: records)


def test_a_lift_naming_no_restriction_is_refused_while_several_stand(ctx: wf.Context) -> None:
    both = with_requests(ctx, *restrictions(ctx, "R-A", "R-B"))
    outcome = wf.on_command(None, submit(RequestType.restriction_lift, reason="x"), both)
    assert outcome.rejected is wf.Reason.restriction_not_named
    assert "R-A, R-B" in (outcome.message or "")
    assert outcome.out == []


def test_a_lift_ends_only_the_restriction_it_names_while_another_stands(
    ctx: wf.Context,
) -> None:
    """Before, one lift ended every restriction: ending the one placed while a complaint
    was investigated also freed data restricted while its accuracy was contested."""
    both = with_requests(ctx, *restrictions(ctx, "R-A", "R-B"))
    lift = submit(RequestType.restriction_lift, request_id="L-1", linked_request_id="R-A")
    outcome = wf.on_command(None, lift, both)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.state is S.completed
    assert outcome.record.still_restricted_by == ["R-B"]
    assert of_type(outcome, r.LiftRestriction) == []
    assert of_type(outcome, r.SubjectDirective) == []  # the consent state stays restricted
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.kind != "restriction_lift_pending"
    assert "stays restricted" in note.message


def test_the_last_restriction_standing_is_lifted_by_a_lift_naming_it(ctx: wf.Context) -> None:
    first, second = restrictions(ctx, "R-A", "R-B")
    ended = wf.on_command(
        None,
        submit(RequestType.restriction_lift, request_id="L-1", linked_request_id="R-A"),
        with_requests(ctx, first, second),
    ).record
    assert ended is not None
    named = submit(RequestType.restriction_lift, request_id="L-2", linked_request_id="R-B")
    outcome = wf.on_command(None, named, with_requests(ctx, first, second, ended))
    assert len(of_type(outcome, r.LiftRestriction)) == len(ASKED)
    assert [d.kind for d in of_type(outcome, r.SubjectDirective)] == ["restriction_lifted"]
    unnamed = submit(RequestType.restriction_lift, request_id="L-3")
    only = wf.on_command(None, unnamed, with_requests(ctx, first, second, ended))
    assert only.record is not None
    assert only.record.linked_request_id == "R-B"  # the only one in force, recorded
    assert len(of_type(only, r.LiftRestriction)) == len(ASKED)


def test_a_lift_naming_a_restriction_not_in_force_is_refused(ctx: wf.Context) -> None:
    (first,) = restrictions(ctx, "R-A")
    unverified = start(
        RequestType.restriction, at(ctx, NOW), request_id="R-U", verified=False
    )  # not applied until the subject's identity is verified
    one = with_requests(ctx, first, unverified)
    for named in ("R-U", "R-Z"):
        lift = submit(RequestType.restriction_lift, request_id="L-1", linked_request_id=named)
        outcome = wf.on_command(None, lift, one)
        assert outcome.rejected is wf.Reason.not_restricted
        assert "(in force: R-A)" in (outcome.message or "")


def test_a_lift_from_before_named_none_and_ended_every_restriction_before_it(
    ctx: wf.Context,
) -> None:
    """A lift recorded by 0.44 named no restriction and lifted all of them: those made
    before it are ended, one made after it stands."""
    first, later = restrictions(ctx, "R-A", "R-C")
    when = NOW - timedelta(minutes=9, seconds=30)
    old_lift = start(
        RequestType.restriction_lift,
        at(ctx, when, restricted=True),
        request_id="L-0",
        issued_at=when,
    )
    assert old_lift.linked_request_id is None
    assert restrictions_in_force(with_requests(ctx, first, old_lift, later)) == ["R-C"]


# --- rectification -------------------------------------------------------------------------


def test_rectification_goes_only_to_systems_holding_contact(ctx: wf.Context, dm: DataMap) -> None:
    changes = {"email": "ann.new@example.com"}
    outcome = wf.on_command(
        None,
        submit(RequestType.rectification, rectification=changes),
        at(ctx, NOW, facts=DISCLOSED),
    )
    rectifies = of_type(outcome, r.Rectify)
    holding_contact = {s for s in ASKED if C.contact in dm.systems[s].categories}
    assert System.cctv not in holding_contact
    assert {t.system for t in rectifies} == holding_contact
    for task in rectifies:
        assert task.changes == changes
        assert task.categories == [C.contact]
    notes = of_type(outcome, r.RecipientNotification)
    # Only the recipient that received contact data (not the payment processor).
    assert [(n.recipient, n.categories) for n in notes] == [
        ("Credit reference agencies", [C.contact])
    ]
    # With the corrected values, so it can correct its own copy (review, session 24:
    # told only that something changed); a sealed field, as every personal value.
    assert notes[0].changes == changes


def test_rectification_of_unknown_field_is_rejected(ctx: wf.Context) -> None:
    outcome = wf.on_command(
        None, submit(RequestType.rectification, rectification={"shoe_size": "9"}), ctx
    )
    assert outcome.rejected == "invalid_command"
    assert outcome.record is None


# --- access ---------------------------------------------------------------------------------


def export_ref(system: System, name: str = "R-1.json") -> r.ExportReference:
    return r.ExportReference(
        location=f"https://exports.allled.example/dsar/{system.value}/{name}",
        record_count=4,
        checksum="sha256:ab",
    )


def approved(
    rec: wf.RequestRecord, ctx: wf.Context, **kw: Any
) -> tuple[wf.RequestRecord, wf.Outcome]:
    """The DPO approves an access response held for review (cctv's footage: as it is,
    unless ``kw`` says otherwise)."""
    assert rec.state is S.awaiting_review
    if not kw:
        kw = {"disclosed": [System.cctv]}
    outcome = wf.on_command(rec, command(r.AccessResponseApproved, **kw), ctx)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    return outcome.record, outcome


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example/login",
        "https://exports.allled.example/dsar/crm/R-1/orders.json",
        "https://exports.allled.example/dsar/orders/%2e%2e/crm/R-1.json",
        "https://exports.allled.example/dsar/orders/R-2.json",
    ],
)
def test_export_outside_the_systems_root_never_reaches_the_subject(
    ctx: wf.Context, location: str
) -> None:
    rec = start(RequestType.access, ctx)
    forged = export_ref(System.orders).model_copy(update={"location": location})
    results = {
        t.system.value: answer(
            rec, t.system, export=forged if t.system is System.orders else export_ref(t.system)
        )
        for t in rec.tasks.values()
    }
    rec, last = approved(*answer_all(rec, ctx, **results)[:1], ctx)
    orders = next(t for t in rec.tasks.values() if t.system is System.orders)
    assert orders.state is TaskState.failed
    assert orders.export is None
    assert (orders.outcome_reason or "").startswith("export_outside_root: ")
    assert rec.state is S.partially_completed
    assert location not in json.dumps(rec.manifest, default=str)
    (note,) = of_type(last, r.SubjectNotification)
    assert location not in {e.location for e in note.exports}
    assert rec.manifest is not None
    assert "orders" in rec.manifest["missing_exports"]


def test_access_sends_export_tasks_and_completes_with_manifest(ctx: wf.Context) -> None:
    outcome = wf.on_command(None, submit(RequestType.access), ctx)
    exports = of_type(outcome, r.Export)
    assert sorted(t.system for t in exports) == sorted(ASKED)
    rec = outcome.record
    assert rec is not None

    results = {
        t.system.value: answer(rec, t.system, export=export_ref(t.system), records_affected=4)
        for t in rec.tasks.values()
    }
    rec, held = answer_all(rec, ctx, **results)
    # cctv's footage shows other visitors: nothing goes out until the DPO approves
    assert rec.state is S.awaiting_review
    assert rec.manifest is None
    assert of_type(held, r.SubjectNotification) == []
    assert [(a.action, a.after) for a in held.audit][-2:] == [
        ("response_review_required", "cctv"),
        ("request_transitioned", "awaiting_review"),
    ]
    rec, last = approved(rec, ctx)
    assert rec.state is S.completed
    assert rec.manifest is not None
    notes = of_type(last, r.SubjectNotification)
    assert [n.kind for n in notes] == ["access_response"]
    note = notes[0]
    assert note.document is not None
    document = json.loads(note.document)
    assert document == json.loads(json.dumps(rec.manifest, default=str))
    assert {e.location for e in note.exports} == {export_ref(s).location for s in ASKED}
    assert [o.topic for o in last.out if o.record is note] == [NOTIFICATIONS]


def held_for_review(rec: wf.RequestRecord, ctx: wf.Context) -> wf.RequestRecord:
    """Every export of ``rec``, an access request, answered with a copy: the CCTV footage
    holds the response for the DPO."""
    results = {
        t.system.value: answer(rec, t.system, export=export_ref(t.system))
        for t in rec.tasks.values()
    }
    rec, _ = answer_all(rec, ctx, **results)
    assert rec.state is S.awaiting_review
    return rec


def _held_for_review(ctx: wf.Context) -> wf.RequestRecord:
    return held_for_review(start(RequestType.access, ctx), ctx)


def _rejected(rec: wf.RequestRecord, cmd: r.Command, ctx: wf.Context) -> str:
    outcome = wf.on_command(rec, cmd, ctx)
    assert outcome.rejected is wf.Reason.invalid_transition
    assert outcome.record is not None
    assert outcome.record.state is rec.state
    assert outcome.record.tasks == rec.tasks  # nothing changed but the answer kept
    return outcome.message or ""


def test_the_dpo_redacts_a_copy_and_the_subject_is_told(ctx: wf.Context) -> None:
    rec = _held_for_review(ctx)
    redacted = export_ref(System.cctv, "R-1/redacted.mp4")
    outcome = wf.on_command(
        rec, command(r.ExportRedacted, system=System.cctv, export=redacted), ctx
    )
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    rec = outcome.record
    assert rec.state is S.awaiting_review  # recorded, not sent: approval sends it
    assert of_type(outcome, r.SubjectNotification) == []
    assert [(a.action, a.after) for a in outcome.audit] == [("export_redacted", "cctv")]
    message = _rejected(rec, command(r.AccessResponseApproved), ctx)
    assert "--reason" in message  # the subject is told why: a reason is required
    rec, last = approved(rec, ctx, reason="Other visitors are in the footage.")
    assert rec.state is S.completed
    (note,) = of_type(last, r.SubjectNotification)
    assert "we redacted the copy from cctv" in note.message
    assert redacted.location in {e.location for e in note.exports}
    assert export_ref(System.cctv).location not in json.dumps(rec.manifest, default=str)
    assert rec.manifest is not None
    assert rec.manifest["review_reason"] == "Other visitors are in the footage."
    audit = [(a.action, a.after) for a in last.audit]
    assert ("response_approved", "redacted: cctv; withheld: -; disclosed: -") in audit
    (cctv,) = [t for t in rec.tasks.values() if t.system is System.cctv]
    assert cctv.original_export == export_ref(System.cctv)  # the system's, for the DPO


def test_a_copy_held_for_review_is_not_sent_unless_the_dpo_says_how(ctx: wf.Context) -> None:
    """Approved as it was, the raw footage went out with the subject told it was blurred
    (diff review, session 34): each copy held is redacted, withheld or disclosed."""
    rec = _held_for_review(ctx)
    message = _rejected(rec, command(r.AccessResponseApproved, reason="Faces blurred."), ctx)
    assert "cctv" in message
    assert "--disclose" in message
    told = command(r.AccessResponseApproved, disclosed=[System.cctv], reason="x")
    assert "nothing was redacted" in _rejected(rec, told, ctx)
    both = command(r.AccessResponseApproved, disclosed=[System.cctv], withheld=[System.cctv])
    assert "say one" in _rejected(rec, both, ctx)
    rec, last = approved(rec, ctx, disclosed=[System.cctv])
    assert rec.state is S.completed
    (note,) = of_type(last, r.SubjectNotification)
    assert "redacted" not in note.message
    assert export_ref(System.cctv).location in {e.location for e in note.exports}
    assert rec.manifest is not None
    assert rec.manifest["review_reason"] is None


def test_a_copy_its_system_says_shows_others_is_held_for_review_too(ctx: wf.Context) -> None:
    """A call recording with someone else on the line, an email naming a neighbour: the
    data map marks only cctv, so those went out unreviewed (legal review, session 35).
    The system's own copy says so (``ExportReference.shows_others``)."""
    rec = start(RequestType.access, ctx)
    results = {
        t.system.value: answer(
            rec,
            t.system,
            export=export_ref(t.system).model_copy(
                update={"shows_others": t.system is System.telephony}
            ),
        )
        for t in rec.tasks.values()
    }
    rec, held = answer_all(rec, ctx, **results)
    assert rec.state is S.awaiting_review
    assert ("response_review_required", "cctv,telephony") in [
        (a.action, a.after) for a in held.audit
    ]
    message = _rejected(rec, command(r.AccessResponseApproved, disclosed=[System.cctv]), ctx)
    assert "telephony" in message  # each copy held needs the DPO's word
    redacted = export_ref(System.telephony, "R-1/redacted.mp3")
    outcome = wf.on_command(
        rec, command(r.ExportRedacted, system=System.telephony, export=redacted), ctx
    )
    assert outcome.record is not None
    # Redacted, the DPO's copy (which says nothing of others) does not let it drop out
    # of the review: the system's own copy said so.
    rec, last = approved(
        outcome.record, ctx, disclosed=[System.cctv], reason="Another caller's voice is cut."
    )
    assert rec.state is S.completed
    (note,) = of_type(last, r.SubjectNotification)
    assert "we redacted the copy from telephony" in note.message


def test_a_response_held_for_review_may_be_cancelled(ctx: wf.Context) -> None:
    """Withdrawn by the subject while held, it had no way out but being sent."""
    rec = _held_for_review(ctx)
    outcome = wf.on_command(rec, command(r.RequestCancelled, reason="withdrawn"), ctx)
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.state is S.cancelled
    assert of_type(outcome, r.SubjectNotification) == []
    refused = command(r.RequestRefused, reason="excessive", ground="excessive")
    assert "cannot be refused" in _rejected(rec, refused, ctx)


def test_a_response_whose_subject_was_erased_meanwhile_says_nothing_untrue(
    ctx: wf.Context,
) -> None:
    """The erasure strips the copies' locations; a redaction recorded before is no
    redaction now, and a reason the CLI could not seal (no key) is no reason."""
    rec = _held_for_review(ctx)
    redacted = export_ref(System.cctv, "R-1/redacted.mp4")
    unsealed = redacted.model_copy(update={"location": WITHHELD})  # no key to seal under
    unsealed_redaction = command(r.ExportRedacted, system=System.cctv, export=unsealed)
    assert "erased meanwhile" in _rejected(rec, unsealed_redaction, ctx)
    outcome = wf.on_command(
        rec, command(r.ExportRedacted, system=System.cctv, export=redacted), ctx
    )
    assert outcome.record is not None
    stripped = {
        k: t.model_copy(update={"export": None, "original_export": None})
        for k, t in outcome.record.tasks.items()
    }
    rec = outcome.record.model_copy(update={"tasks": stripped})
    late = redacted.model_copy(update={"location": WITHHELD})
    late_redaction = command(r.ExportRedacted, system=System.cctv, export=late)
    assert "cctv sent no copy" in _rejected(rec, late_redaction, ctx)
    rec, last = approved(rec, ctx, reason=WITHHELD)
    (note,) = of_type(last, r.SubjectNotification)
    assert "redacted" not in note.message
    assert rec.manifest is not None
    assert rec.manifest["review_reason"] is None


def test_a_withheld_copy_leaves_the_response_partial_and_tells_the_subject(
    ctx: wf.Context,
) -> None:
    rec = _held_for_review(ctx)
    assert "--reason" in _rejected(
        rec, command(r.AccessResponseApproved, withheld=[System.cctv]), ctx
    )
    rec, last = approved(rec, ctx, withheld=[System.cctv], reason="Cannot be redacted.")
    assert rec.state is S.partially_completed
    (note,) = of_type(last, r.SubjectNotification)
    assert "we left out the copy from cctv" in note.message
    assert "Information Commissioner" in note.message  # Art. 12(4): redress when not acting
    assert export_ref(System.cctv).location not in {e.location for e in note.exports}
    assert rec.manifest is not None
    assert rec.manifest["withheld_exports"][0]["system"] == "cctv"
    assert "cctv" not in rec.manifest["missing_exports"]


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("https://exports.allled.example/dsar/crm/R-1/redacted.mp4", "export root"),
        ("https://exports.allled.example/dsar/cctv/R-2/redacted.mp4", "does not name"),
    ],
)
def test_a_redacted_copy_outside_the_systems_root_is_refused(
    ctx: wf.Context, location: str, why: str
) -> None:
    rec = _held_for_review(ctx)
    export = export_ref(System.cctv).model_copy(update={"location": location})
    message = _rejected(rec, command(r.ExportRedacted, system=System.cctv, export=export), ctx)
    assert why in message
    assert location not in message


def test_review_commands_apply_only_to_a_response_awaiting_review(ctx: wf.Context) -> None:
    rec = start(RequestType.access, ctx)  # awaiting its systems
    assert "not awaiting review" in _rejected(rec, command(r.AccessResponseApproved), ctx)
    redact = command(r.ExportRedacted, system=System.cctv, export=export_ref(System.cctv))
    assert "not awaiting review" in _rejected(rec, redact, ctx)
    erasure = start(RequestType.erasure, ctx, request_id="R-E")
    assert "only an access or portability request" in _rejected(
        erasure,
        r.AccessResponseApproved(command_id=cmd_id(), request_id="R-E", issued_at=NOW, actor="dpo"),
        ctx,
    )
    held = _held_for_review(ctx)
    web = command(r.AccessResponseApproved, withheld=[System.web], reason="x")
    # web's answer carried a copy here; a system that sent none cannot be withheld
    nothing = held.model_copy(
        update={
            "tasks": {
                k: t.model_copy(update={"export": None}) if t.system is System.web else t
                for k, t in held.tasks.items()
            }
        }
    )
    assert "web sent no copy" in _rejected(nothing, web, ctx)


def test_footage_with_no_records_is_not_held_for_review(ctx: wf.Context) -> None:
    rec = start(RequestType.access, ctx)
    empty = export_ref(System.cctv).model_copy(update={"record_count": 0})
    results = {
        t.system.value: answer(rec, t.system, export=export_ref(t.system))
        for t in rec.tasks.values()
    }
    rec, _ = answer_all(rec, ctx, **{**results, "cctv": answer(rec, System.cctv, export=empty)})
    assert rec.state is S.completed


def test_access_not_finished_until_every_export_is_in(ctx: wf.Context) -> None:
    rec = start(RequestType.access, ctx)
    outcome = wf.on_result(rec, answer(rec, System.orders, export=export_ref(System.orders)), ctx)
    assert outcome.record is not None
    assert outcome.record.state is S.awaiting_systems
    assert of_type(outcome, r.SubjectNotification) == []


# --- answers -------------------------------------------------------------------------------


def test_retained_answer_gives_partially_completed_listing_what_was_kept(
    ctx: wf.Context,
) -> None:
    ctx = at(ctx, NOW, facts=SubjectFacts(latest_financial_record_at=INVOICE))
    rec = start(RequestType.erasure, ctx)
    retained = answer(
        rec, System.orders, r.TaskRetained, reason="invoices", categories=[C.payment, C.purchases]
    )
    rec, last = answer_all(rec, ctx, orders=retained)
    assert rec.state is S.partially_completed
    assert {(k.system, k.category) for k in rec.kept} == {
        (System.orders, C.payment),
        (System.orders, C.purchases),
    }
    assert all("financial records" in k.ground for k in rec.kept)
    assert all(k.until == KEPT_UNTIL for k in rec.kept)
    outcome_notes = [n for n in of_type(last, r.SubjectNotification) if n.kind == "erasure_outcome"]
    assert len(outcome_notes) == 1
    assert "orders/payment" in outcome_notes[0].message


def test_all_completed_gives_completed(ctx: wf.Context) -> None:
    rec, _ = answer_all(start(RequestType.erasure, ctx), ctx)
    assert rec.state is S.completed
    assert rec.closed_at == NOW
    assert all(t.state is TaskState.done for t in rec.tasks.values())


def test_not_found_counts_as_final(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx)
    rec, _ = answer_all(rec, ctx, cctv=answer(rec, System.cctv, r.NotFound))
    assert rec.state is S.completed
    assert rec.tasks["R-1:cctv:erase"].state is TaskState.not_found


def test_final_failure_gives_partially_completed(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx)
    failed = answer(rec, System.crm, r.TaskFailed, reason="db down", retryable=False)
    rec, _ = answer_all(rec, ctx, crm=failed)
    assert rec.state is S.partially_completed
    assert rec.tasks["R-1:crm:erase"].state is TaskState.failed


def test_retryable_failure_keeps_task_open_for_resend(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx)
    later = at(ctx, NOW + timedelta(seconds=3))
    failed = answer(rec, System.crm, r.TaskFailed, reason="timeout", retryable=True)
    outcome = wf.on_result(rec, failed, later)
    assert outcome.record is not None
    task = outcome.record.tasks["R-1:crm:erase"]
    assert task.state is TaskState.sent
    # Re-sent after the system's backoff for the attempt that failed, not at the next
    # sweep: a system answering "not now" at once used up every attempt in seconds and
    # was escalated as silent (review, session 33).
    backoff = ctx.datamap.systems[System.crm].retry.delay_after(task.attempts)
    assert task.next_check_at == later.now + timedelta(seconds=backoff)
    assert backoff > 0


def test_a_systems_failure_text_stays_on_the_request_not_in_the_audit(
    ctx: wf.Context,
) -> None:
    """A system's free text can name a person or an address no pattern catches; the
    audit outlives every key, so it keeps only which task failed (review, session 25)."""
    rec = start(RequestType.erasure, ctx)
    words = "no account for John Smith, 12 High Street, Leeds LS1 4AB"
    failed = answer(rec, System.crm, r.TaskFailed, reason=words, retryable=True)
    outcome = wf.on_result(rec, failed, at(ctx, NOW + timedelta(seconds=3)))
    assert outcome.record is not None
    assert outcome.record.tasks["R-1:crm:erase"].outcome_reason == words
    texts = " ".join(f"{s.reason} {s.after}" for s in outcome.audit)
    assert "Smith" not in texts
    assert "High Street" not in texts


def test_a_withdrawal_of_one_consent_withdraws_that_one_only(ctx: wf.Context) -> None:
    """The DPO records what the subject said ("no more marketing emails"): before, every
    withdrawal withdrew every consent on every channel, and the CLI had no verb for it
    (review, session 25; UK GDPR Art. 7(3))."""
    outcome = wf.on_command(
        None,
        submit(
            RequestType.consent_withdrawal,
            withdrawn_purpose=Purpose.marketing,
            withdrawn_channel=Channel.email,
        ),
        ctx,
    )
    assert outcome.rejected is None, outcome.message
    (directive,) = of_type(outcome, r.SubjectDirective)
    assert (directive.kind, directive.purpose, directive.channel) == (
        "withdrawn",
        Purpose.marketing,
        Channel.email,
    )
    granted = [
        ConsentFact(
            event_id=f"grant-{channel.value}",
            occurred_at=NOW - timedelta(days=1),
            source=System.marketing,
            kind=FactKind.granted,
            purpose=Purpose.marketing,
            channel=channel,
            basis=LawfulBasis.consent,
            evidence=f"marketing.events:ConsentGiven:grant-{channel.value}",
        )
        for channel in (Channel.email, Channel.sms)
    ]
    state, _ = apply_all(None, SUBJECT, [*granted, directive_fact(directive)])
    assert state is not None
    assert state.status(Purpose.marketing, Channel.email) is ConsentStatus.withdrawn
    assert state.status(Purpose.marketing, Channel.sms) is ConsentStatus.granted
    assert [t.system for t in tasks_out(outcome)] == []  # the consent state tells systems
    (notice,) = [n for n in of_type(outcome, r.SubjectNotification) if n.kind.endswith("_outcome")]
    assert "to marketing by email" in notice.message


@pytest.mark.parametrize(
    ("request_type", "scope"),
    [
        (RequestType.erasure, {"withdrawn_channel": Channel.email}),
        (RequestType.consent_withdrawal, {"withdrawn_purpose": Purpose.service}),
    ],
    ids=["scope-on-another-request", "service-rests-on-no-consent"],
)
def test_a_withdrawal_scope_that_cannot_apply_is_refused(
    ctx: wf.Context, request_type: RequestType, scope: dict[str, Any]
) -> None:
    outcome = wf.on_command(None, submit(request_type, **scope), ctx)
    assert outcome.rejected == "invalid_command"
    assert outcome.record is None


def test_duplicate_answer_changes_nothing(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx)
    first = wf.on_result(rec, answer(rec, System.crm), ctx)
    assert first.record is not None
    again = wf.on_result(first.record, answer(rec, System.crm), ctx)
    assert again.record is None
    assert again.rejected is None
    assert again.out == []


def test_answer_for_unknown_task_is_rejected(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx)
    outcome = wf.on_result(rec, answer(rec, System.crm, task_id="R-1:crm:nope"), ctx)
    assert outcome.rejected == "unknown_task"
    assert outcome.record is None
    assert [a.action for a in outcome.audit] == ["command_rejected"]


def test_answer_for_unknown_request_is_rejected(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx)
    outcome = wf.on_result(None, answer(rec, System.crm), ctx)
    assert outcome.rejected == "unknown_request"


def test_answer_from_the_wrong_system_is_rejected(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx)
    outcome = wf.on_result(rec, answer(rec, System.marketing, task_id="R-1:crm:erase"), ctx)
    assert outcome.rejected == "invalid_command"
    assert outcome.record is None


# --- SLA timer: re-send, escalate ---------------------------------------------------------


def test_overdue_task_is_resent_until_max_attempts_then_escalated_once(
    ctx: wf.Context, dm: DataMap
) -> None:
    rec = start(RequestType.erasure, ctx)
    task_id = "R-1:crm:erase"
    max_attempts = dm.systems[System.crm].retry.max_attempts
    when = NOW
    for attempt in range(2, max_attempts + 1):
        when = rec.tasks[task_id].next_check_at or when
        outcome = wf.on_tick(rec, tick(rec, "task_overdue", when, task_id=task_id), at(ctx, when))
        assert outcome.record is not None
        rec = outcome.record
        sent = of_type(outcome, r.Erase)
        assert [(t.task_id, t.attempt) for t in sent] == [(task_id, attempt)]
        assert rec.tasks[task_id].attempts == attempt
        assert of_type(outcome, r.TaskEscalated) == []
    # A tick raised before the re-send's own deadline changes nothing.
    early = wf.on_tick(rec, tick(rec, "task_overdue", NOW, task_id=task_id), ctx)
    assert early.record is None

    when = rec.tasks[task_id].next_check_at or when
    outcome = wf.on_tick(rec, tick(rec, "task_overdue", when, task_id=task_id), at(ctx, when))
    assert outcome.record is not None
    rec = outcome.record
    alerts = [o for o in outcome.out if isinstance(o.record, r.TaskEscalated)]
    assert len(alerts) == 1
    assert alerts[0].topic == ALERTS
    escalated = alerts[0].record
    assert isinstance(escalated, r.TaskEscalated)
    assert escalated.attempts == max_attempts
    assert escalated.system is System.crm
    assert tasks_out(outcome) == []
    assert rec.tasks[task_id].state is TaskState.escalated
    assert "task_escalated" in [a.action for a in outcome.audit]
    escalated_check = rec.tasks[task_id].next_check_at
    assert escalated_check is not None
    assert escalated_check > when
    assert (escalated_check, task_id) in wf.next_checks(rec)

    # Escalated tasks keep being re-sent at the longest backoff, never re-escalated.
    later = escalated_check + timedelta(seconds=1)
    again = wf.on_tick(rec, tick(rec, "task_overdue", later, task_id=task_id), at(ctx, later))
    assert again.record is not None
    assert [t.attempt for t in of_type(again, r.Erase)] == [max_attempts + 1]
    assert of_type(again, r.TaskEscalated) == []
    assert again.record.tasks[task_id].state is TaskState.escalated


def test_late_answer_after_escalation_completes_the_request(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx)
    task_id = "R-1:crm:erase"
    for _ in range(5):
        when = rec.tasks[task_id].next_check_at
        if when is None:
            break
        outcome = wf.on_tick(rec, tick(rec, "task_overdue", when, task_id=task_id), at(ctx, when))
        assert outcome.record is not None
        rec = outcome.record
    assert rec.tasks[task_id].state is TaskState.escalated
    rec, _ = answer_all(rec, ctx)
    assert rec.state is S.completed
    assert rec.tasks[task_id].state is TaskState.done


# --- deadlines ---------------------------------------------------------------------------


def test_deadline_alerts_fire_once_each(ctx: wf.Context) -> None:
    rec = start(RequestType.access, ctx)
    assert rec.due_on == date(2025, 4, 10)
    due = rec.due_on
    week_before = at(ctx, datetime(2025, 4, 3, 8, tzinfo=UTC))
    first = wf.on_tick(
        rec, tick(rec, "deadline_approaching", days_before=7, due_on=due), week_before
    )
    assert first.record is not None
    alerts = [o for o in first.out if o.topic == ALERTS]
    assert len(alerts) == 1
    assert isinstance(alerts[0].record, r.DeadlineApproaching)
    assert alerts[0].record.days_left == 7
    rec = first.record

    same = wf.on_tick(
        rec, tick(rec, "deadline_approaching", days_before=7, due_on=due), week_before
    )
    assert same.record is None
    assert same.out == []

    after_due = at(ctx, datetime(2025, 4, 12, 8, tzinfo=UTC))
    breach = wf.on_tick(rec, tick(rec, "deadline_breached", due_on=due), after_due)
    assert breach.record is not None
    breached = of_type(breach, r.DeadlineBreached)
    assert len(breached) == 1
    assert breached[0].days_overdue == 2
    rec = breach.record
    assert wf.on_tick(rec, tick(rec, "deadline_breached", due_on=due), after_due).record is None
    # A less urgent threshold arriving late after the breach raises nothing.
    late = wf.on_tick(rec, tick(rec, "deadline_approaching", days_before=1, due_on=due), after_due)
    assert late.out == []


def test_stale_deadline_tick_for_an_old_due_date_is_ignored(ctx: wf.Context) -> None:
    rec = start(RequestType.access, ctx)
    outcome = wf.on_tick(rec, tick(rec, "deadline_breached", due_on=date(2025, 1, 1)), ctx)
    assert outcome.record is None
    assert outcome.out == []


def test_completed_request_raises_no_deadline_alert(ctx: wf.Context) -> None:
    rec = start(RequestType.access, ctx)
    exports = {
        t.system.value: answer(rec, t.system, export=export_ref(t.system))
        for t in rec.tasks.values()
    }
    rec, _ = approved(answer_all(rec, ctx, **exports)[0], ctx)
    assert rec.state is S.completed
    for kind, days in (("deadline_approaching", 3), ("deadline_breached", None)):
        outcome = wf.on_tick(rec, tick(rec, kind, days_before=days, due_on=rec.due_on), ctx)
        assert outcome.record is None
        assert outcome.out == []


def test_extension_inside_first_month_recomputes_due_and_tells_subject(
    ctx: wf.Context,
) -> None:
    rec = start(RequestType.access, ctx)
    inside = at(ctx, NOW + timedelta(days=20))
    outcome = wf.on_command(
        rec,
        command(
            r.DeadlineExtended,
            issued_at=inside.now,
            reason="numerous requests",
            notified_on=inside.today,
        ),
        inside,
    )
    assert outcome.rejected is None
    assert outcome.record is not None
    assert outcome.record.extended is True
    assert outcome.record.due_on == deadlines.due_date(TODAY, extended=True)
    assert outcome.record.due_on == date(2025, 6, 10)
    notes = of_type(outcome, r.SubjectNotification)
    assert [n.kind for n in notes] == ["deadline_extended"]
    # The DPO's reason travels sealed (the document), never in the message (review,
    # session 24: free text may name people).
    assert notes[0].document == "numerous requests"
    assert "numerous requests" not in notes[0].message
    # Nor in the audit, which outlives every key.
    assert not any("numerous requests" in (a.reason or "") for a in outcome.audit)
    assert "2025-06-10" in notes[0].message


def test_extension_after_first_month_is_rejected(ctx: wf.Context) -> None:
    rec = start(RequestType.access, ctx)
    outside = at(ctx, datetime(2025, 4, 11, 9, tzinfo=UTC))
    late = command(
        r.DeadlineExtended, issued_at=outside.now, reason="complex", notified_on=outside.today
    )
    outcome = wf.on_command(rec, late, outside)
    assert outcome.rejected == "invalid_transition"
    assert unchanged(outcome, rec)


def test_second_extension_is_rejected(ctx: wf.Context) -> None:
    rec = start(RequestType.access, ctx)
    reason = "Ann Jones' solicitor at 12 Acacia Avenue sent 40 boxes"
    first = wf.on_command(rec, command(r.DeadlineExtended, reason=reason, notified_on=TODAY), ctx)
    assert first.record is not None
    again = wf.on_command(
        first.record, command(r.DeadlineExtended, reason="more", notified_on=TODAY), ctx
    )
    assert again.rejected == "already_extended"
    assert unchanged(again, first.record)
    assert again.out == []
    # The first extension's reason is the DPO's sealed text: the refusal goes to the
    # audit, the answer topic and the record's answers, which outlive an erasure.
    assert "Acacia" not in (again.message or "")
    assert not any("Acacia" in (a.reason or "") for a in again.audit)
    assert str(first.record.due_on) in (again.message or "")


def test_clarification_pause_adds_the_days_waited(ctx: wf.Context) -> None:
    rec = start(RequestType.access, ctx)
    assert rec.state is S.awaiting_systems
    assert rec.due_on == date(2025, 4, 10)
    asked = at(ctx, datetime(2025, 3, 12, 9, tzinfo=UTC))
    paused = wf.on_command(rec, command(r.ClarificationRequested, asked_on=asked.today), asked)
    assert paused.record is not None
    assert paused.record.state is S.paused
    received = at(ctx, datetime(2025, 3, 17, 9, tzinfo=UTC))
    resumed = wf.on_command(
        paused.record, command(r.ClarificationReceived, received_on=received.today), received
    )
    assert resumed.record is not None
    assert resumed.record.state is S.awaiting_systems  # its exports still to come
    # Art. 12A (DUAA 2025): 12 to 17 March, both days included, is 6 days (was 5).
    assert resumed.record.paused_days == 6
    assert resumed.record.due_on == deadlines.due_date(TODAY, paused_days=6)
    assert resumed.record.due_on == date(2025, 4, 16)


# --- objection ---------------------------------------------------------------------------


def test_direct_marketing_objection_is_absolute(ctx: wf.Context) -> None:
    outcome = wf.on_command(
        None, submit(RequestType.objection, objection_scope=ObjectionScope.direct_marketing), ctx
    )
    assert outcome.record is not None
    assert outcome.record.state is S.awaiting_systems
    assert [d.kind for d in of_type(outcome, r.SubjectDirective)] == ["objected"]
    tasks = tasks_out(outcome)
    # Every system the data map has doing direct marketing (the CRM's calls and post as
    # well as the marketing platform), marked as an objection so that no restriction
    # lift undoes it (review, session 24: only marketing got one, as a plain restrict).
    assert [(type(t), t.system) for t in tasks] == [
        (r.Restrict, System.crm),
        (r.Restrict, System.marketing),
    ]
    assert all(isinstance(t, r.Restrict) and t.marketing_objection for t in tasks)
    crm = next(t for t in tasks if t.system is System.crm)
    assert set(crm.categories) == {Category.contact, Category.marketing_preferences}
    restriction = tasks_out(wf.on_command(None, submit(RequestType.restriction), ctx))
    assert restriction
    assert not any(isinstance(t, r.Restrict) and t.marketing_objection for t in restriction)


def test_legitimate_interest_objection_waits_for_the_dpo(ctx: wf.Context) -> None:
    outcome = wf.on_command(
        None,
        submit(RequestType.objection, objection_scope=ObjectionScope.legitimate_interest),
        ctx,
    )
    assert outcome.record is not None
    assert outcome.record.state is S.in_progress
    assert outcome.out == []


def test_an_upheld_objection_stops_the_legitimate_interest_purposes_only(
    ctx: wf.Context,
) -> None:
    """It restricted all processing at every system: the subject's orders (a contract)
    froze with it (review, session 34). Each system processing the subject's data for a
    purpose based on legitimate interests is told which to stop; the others get no task."""
    rec = start(RequestType.objection, ctx, objection_scope=ObjectionScope.legitimate_interest)
    outcome = wf.on_command(
        rec, command(r.ObjectionDecided, accepted=True, reason="no overriding interest"), ctx
    )
    assert outcome.rejected is None
    assert outcome.record is not None
    assert outcome.record.state is S.awaiting_systems
    restricts = {t.system: t for t in of_type(outcome, r.Restrict)}
    assert {s: t.objected_purposes for s, t in restricts.items()} == {
        System.orders: ["business_intelligence", "debt_recovery", "fraud_prevention"],
        System.crm: ["customer_support"],
        System.telephony: ["customer_support"],
        System.cctv: ["premises_security"],
    }  # not marketing (its objection is Art. 21(2)'s) nor web (contract and consent only)
    assert not any(t.marketing_objection for t in restricts.values())
    (note,) = of_type(outcome, r.SubjectNotification)
    assert note.kind == "objection_accepted"
    assert "Handle requests for assistance" in note.message  # what was stopped, in words
    assert ".;" not in note.message
    assert "Information Commissioner" not in note.message  # upheld in full
    assert note.document is None

    # A re-send says what the first send said, whatever the data map says by then: an
    # empty list would be a plain restriction, which a lift undoes (review, session 34).
    rec = outcome.record
    crm = next(t for t in rec.tasks.values() if t.system is System.crm)
    renamed = {
        ("customer_care" if k == "customer_support" else k): v
        for k, v in ctx.datamap.purposes.items()
    }
    later = at(
        ctx, NOW + timedelta(hours=2), datamap=ctx.datamap.model_copy(update={"purposes": renamed})
    )
    resent = wf.on_tick(rec, tick(rec, "task_overdue", later.now, task_id=crm.task_id), later)
    (again,) = of_type(resent, r.Restrict)
    assert again.objected_purposes == ["customer_support"]
    again = wf.on_command(
        outcome.record, command(r.ObjectionDecided, accepted=False, reason="x"), ctx
    )
    assert again.rejected == "invalid_transition"


def test_an_objection_upheld_for_some_purposes_stops_those_and_says_so(
    ctx: wf.Context,
) -> None:
    rec = start(RequestType.objection, ctx, objection_scope=ObjectionScope.legitimate_interest)
    decided = command(
        r.ObjectionDecided,
        accepted=True,
        reason="fraud prevention overrides",
        upheld_purposes=["customer_support"],
    )
    outcome = wf.on_command(rec, decided, ctx)
    assert outcome.record is not None
    assert {t.system: t.objected_purposes for t in of_type(outcome, r.Restrict)} == {
        System.crm: ["customer_support"],
        System.telephony: ["customer_support"],
    }
    (note,) = of_type(outcome, r.SubjectNotification)
    assert "Information Commissioner" in note.message  # not all of it: Art. 12(4)
    assert "We continue to use it for: " in note.message
    assert "Detect and prevent fraud" in note.message  # what goes on, in words
    assert note.document == "fraud prevention overrides"  # and why
    wrong = command(
        r.ObjectionDecided, accepted=True, reason="x", upheld_purposes=["goods_and_services"]
    )
    refused = wf.on_command(rec, wrong, ctx)
    assert refused.rejected is wf.Reason.invalid_command  # not "the state does not allow it"
    assert "goods_and_services" in (refused.message or "")
    assert "customer_support" in (refused.message or "")  # the ones it may be


def test_a_later_access_response_says_what_an_upheld_objection_stopped(ctx: wf.Context) -> None:
    """A standing choice of the subject's, as a marketing objection is among the flags
    (session 34's note): the request record keeps the purposes, the response says them."""
    objection = start(
        RequestType.objection,
        ctx,
        objection_scope=ObjectionScope.legitimate_interest,
        request_id="R-0",
    )
    decided = command(
        r.ObjectionDecided, accepted=True, reason="x", upheld_purposes=["customer_support"]
    ).model_copy(update={"request_id": "R-0"})
    upheld = wf.on_command(objection, decided, ctx).record
    assert upheld is not None
    later = dataclasses.replace(ctx, subject_requests=lambda: [upheld])
    rec = start(RequestType.access, later)
    results = {
        t.system.value: answer(rec, t.system, export=export_ref(t.system))
        for t in rec.tasks.values()
    }
    rec, _ = approved(*answer_all(rec, later, **results)[:1], later)
    assert rec.manifest is not None
    (listed,) = rec.manifest["privacy_records"]["rights_requests"]["listed"]
    assert (listed["request_id"], listed["type"]) == ("R-0", "objection")
    assert [u["purpose"] for u in listed["objection_upheld_for"]] == ["customer_support"]


def test_an_objection_upheld_where_no_system_serves_a_purpose_says_only_what_stopped(
    ctx: wf.Context,
) -> None:
    """Told "CCTV ... stopped" though no system was asked (no camera holds the subject)."""
    no_cctv = dataclasses.replace(
        ctx,
        identity=IdentityMap(
            subject_id=SUBJECT,
            systems={s: v for s, v in ctx.identity.systems.items() if s is not System.cctv},  # type: ignore[union-attr]
        ),
    )
    rec = start(RequestType.objection, no_cctv, objection_scope=ObjectionScope.legitimate_interest)
    upheld = command(
        r.ObjectionDecided, accepted=True, reason="x", upheld_purposes=["premises_security"]
    )
    outcome = wf.on_command(rec, upheld, no_cctv)
    assert outcome.record is not None
    assert of_type(outcome, r.Restrict) == []
    (note,) = of_type(outcome, r.SubjectNotification)
    assert "CCTV" not in note.message
    assert "none uses your data" in note.message
    assert any(
        "no system of the subject's serves: premises_security" in (a.reason or "")
        for a in outcome.audit
    )


def test_an_objection_cannot_be_upheld_where_the_data_map_bases_nothing_on_legitimate_interests(
    ctx: wf.Context,
) -> None:
    rec = start(RequestType.objection, ctx, objection_scope=ObjectionScope.legitimate_interest)
    consent_only = {
        k: v.model_copy(update={"lawful_basis": LawfulBasis.consent, "legitimate_interest": None})
        for k, v in ctx.datamap.purposes.items()
    }
    bare = dataclasses.replace(
        ctx, datamap=ctx.datamap.model_copy(update={"purposes": consent_only})
    )
    outcome = wf.on_command(rec, command(r.ObjectionDecided, accepted=True, reason="x"), bare)
    assert outcome.rejected is wf.Reason.invalid_command
    assert "refuse or answer" in (outcome.message or "")


def test_refused_legitimate_interest_objection_is_recorded_and_notified(
    ctx: wf.Context,
) -> None:
    rec = start(RequestType.objection, ctx, objection_scope=ObjectionScope.legitimate_interest)
    outcome = wf.on_command(
        rec, command(r.ObjectionDecided, accepted=False, reason="fraud prevention overrides"), ctx
    )
    assert outcome.record is not None
    assert outcome.record.state is S.refused
    assert outcome.record.reason == "fraud prevention overrides"
    assert tasks_out(outcome) == []
    notes = of_type(outcome, r.SubjectNotification)
    assert [n.kind for n in notes] == ["objection_refused"]
    assert notes[0].document == "fraud prevention overrides"
    assert "fraud prevention overrides" not in notes[0].message


def test_direct_marketing_objection_takes_no_dpo_decision(ctx: wf.Context) -> None:
    rec = start(RequestType.objection, ctx, objection_scope=ObjectionScope.direct_marketing)
    outcome = wf.on_command(rec, command(r.ObjectionDecided, accepted=True, reason="x"), ctx)
    assert outcome.rejected == "invalid_transition"


# --- complaints --------------------------------------------------------------------------


def test_complaint_gets_an_acknowledgement_deadline_and_notice(ctx: wf.Context) -> None:
    outcome = wf.on_command(None, submit(RequestType.complaint, verified=False), ctx)
    rec = outcome.record
    assert rec is not None
    assert rec.state is S.in_progress
    assert rec.due_on == deadlines.complaint_ack_due(TODAY, 30)
    # DPA 2018 s.164A (DUAA 2025): 30 days from the day after receipt (was receipt + 29).
    assert rec.due_on == date(2025, 4, 9)
    notes = of_type(outcome, r.SubjectNotification)
    assert [n.kind for n in notes] == ["complaint_acknowledged"]
    assert tasks_out(outcome) == []


def test_complaint_ack_days_are_configurable(ctx: wf.Context) -> None:
    rec = start(RequestType.complaint, at(ctx, NOW, complaint_ack_days=10), verified=False)
    assert rec.due_on == TODAY + timedelta(days=10)  # s.164A: counted from the day after


def test_request_answered_completes_a_complaint(ctx: wf.Context) -> None:
    rec = start(RequestType.complaint, ctx, verified=False)
    outcome = wf.on_command(
        rec, command(r.RequestAnswered, reason="Investigated; records corrected."), ctx
    )
    assert outcome.record is not None
    assert outcome.record.state is S.completed
    assert [n.kind for n in of_type(outcome, r.SubjectNotification)] == ["complaint_answered"]


def test_complaint_clarification_does_not_acknowledge_twice(ctx: wf.Context) -> None:
    rec = start(RequestType.complaint, ctx, verified=False)
    paused = wf.on_command(rec, command(r.ClarificationRequested, asked_on=TODAY), ctx)
    assert paused.record is not None
    later = at(ctx, NOW + timedelta(days=2))
    resumed = wf.on_command(
        paused.record, command(r.ClarificationReceived, received_on=later.today), later
    )
    assert resumed.record is not None
    assert resumed.record.state is S.in_progress
    assert of_type(resumed, r.SubjectNotification) == []


# --- bad and repeated input -----------------------------------------------------------------


def test_unknown_subject_is_rejected(ctx: wf.Context) -> None:
    unknown = at(ctx, NOW, identity=None, known_subject=False)
    outcome = wf.on_command(None, submit(RequestType.erasure), unknown)
    assert outcome.rejected == "unknown_subject"
    assert outcome.record is None
    assert outcome.out == []
    assert [a.action for a in outcome.audit] == ["command_rejected"]


def test_complaint_from_unknown_subject_is_accepted(ctx: wf.Context) -> None:
    unknown = at(ctx, NOW, identity=None, known_subject=False)
    outcome = wf.on_command(None, submit(RequestType.complaint, verified=False), unknown)
    assert outcome.rejected is None


def test_redelivered_command_changes_nothing(ctx: wf.Context) -> None:
    submitted = submit(RequestType.erasure, verified=False)
    rec = wf.on_command(None, submitted, ctx).record
    assert rec is not None
    again = wf.on_command(rec, submitted, ctx)
    assert again.record is None
    assert again.rejected is None
    assert again.out == []
    assert again.audit == []

    verified = command(r.IdentityVerified, verified_on=TODAY)
    first = wf.on_command(rec, verified, ctx)
    assert first.record is not None
    replay = wf.on_command(first.record, verified, ctx)
    assert replay.record is None
    assert replay.out == []


def test_second_submission_with_the_same_request_id_is_rejected(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx)
    outcome = wf.on_command(rec, submit(RequestType.erasure), ctx)
    assert outcome.rejected == "duplicate"


def test_command_for_unknown_request_is_rejected(ctx: wf.Context) -> None:
    outcome = wf.on_command(None, command(r.IdentityVerified, verified_on=TODAY), ctx)
    assert outcome.rejected == "unknown_request"


def test_command_on_a_closed_request_is_rejected(ctx: wf.Context) -> None:
    rec, _ = answer_all(start(RequestType.erasure, ctx), ctx)
    outcome = wf.on_command(rec, command(r.RequestCancelled, reason="changed mind"), ctx)
    assert outcome.rejected == "request_finished"
    assert unchanged(outcome, rec)


def test_cancel_before_identity_verified(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx, verified=False)
    outcome = wf.on_command(rec, command(r.RequestCancelled, reason="withdrawn"), ctx)
    assert outcome.record is not None
    assert outcome.record.state is S.cancelled


# --- follow-up erasure -------------------------------------------------------------------------


def test_followup_tick_after_retention_end_submits_a_new_erasure(ctx: wf.Context) -> None:
    ctx = at(ctx, NOW, facts=SubjectFacts(latest_financial_record_at=INVOICE))
    rec = start(RequestType.erasure, ctx)
    retained = answer(rec, System.orders, r.TaskRetained, reason="invoices")
    rec, _ = answer_all(rec, ctx, orders=retained)
    assert rec.state is S.partially_completed
    due_at = KEPT_UNTIL
    assert wf.pending_followups(rec) == [due_at]

    before = at(ctx, due_at - timedelta(days=1))
    assert wf.on_tick(rec, tick(rec, "followup", before.now), before).record is None

    after = at(ctx, due_at + timedelta(hours=1))
    outcome = wf.on_tick(rec, tick(rec, "followup", after.now), after)
    assert outcome.record is not None
    commands = [o for o in outcome.out if o.topic == COMMANDS]
    assert len(commands) == 1
    cmd = commands[0].record
    assert isinstance(cmd, r.RequestSubmitted)
    assert cmd.request_type is RequestType.erasure
    assert cmd.subject_id == SUBJECT
    assert cmd.linked_request_id == "R-1"
    assert cmd.identity_verified_on == after.today
    assert commands[0].key == SUBJECT  # a request lives on its subject's partition
    assert wf.pending_followups(outcome.record) == []

    again = wf.on_tick(outcome.record, tick(rec, "followup", after.now), after)
    assert again.record is None
    assert again.out == []


# --- decisions never edit what they are given -----------------------------------------------


def test_no_decision_edits_the_record_it_is_given(ctx: wf.Context) -> None:
    """The worker hands a decision the record its state holds (agents.requests.load):
    every decision edits a copy and returns it, or the stored request would change
    with no write, no audit step and nothing sent."""
    rec = start(RequestType.erasure, ctx)
    stored = rec.model_dump()
    task = next(iter(rec.tasks.values()))
    later = at(ctx, NOW + timedelta(days=3))
    outcomes = [
        wf.on_result(rec, answer(rec, task.system), ctx),
        wf.on_result(rec, answer(rec, task.system, r.NotFound), ctx),
        wf.on_tick(rec, tick(rec, "task_overdue", later.now, task_id=task.task_id), later),
        wf.on_tick(rec, tick(rec, "followup", later.now), later),
        wf.on_command(rec, command(r.RequestCancelled, reason="withdrawn"), ctx),
        wf.on_command(
            rec,
            command(r.RequestRefused, reason="manifestly unfounded", ground="manifestly_unfounded"),
            ctx,
        ),
        wf.on_command(rec, submit(RequestType.erasure), ctx),  # refused: a duplicate
        wf.on_command(rec, command(r.DeadlineExtended, reason="complex", notified_on=TODAY), ctx),
    ]
    assert any(o.record is not None and o.record != rec for o in outcomes)  # they did decide
    assert rec.model_dump() == stored
    assert all(o.record is not rec for o in outcomes)


def test_an_editable_copy_is_equal_and_shares_nothing(ctx: wf.Context) -> None:
    rec = start(RequestType.erasure, ctx)
    stored = rec.model_dump()
    copy = rec.editable_copy()
    assert copy == rec
    next(iter(copy.tasks.values())).attempts += 1
    copy.history.clear()
    assert copy != rec
    assert rec.model_dump() == stored


def test_a_command_signed_long_ago_that_its_request_has_not_seen_is_refused(
    ctx: wf.Context,
) -> None:
    """A request remembers its last answers only: an old signed command it has
    forgotten (here: one it never saw), put on the topic again, would be acted on again:
    the request paused once more. Its own redelivery is answered from memory, however
    old."""
    rec = start(RequestType.access, ctx)
    asked = wf.on_command(rec, command(r.ClarificationRequested, asked_on=TODAY), ctx)
    assert asked.record is not None
    received = command(r.ClarificationReceived, received_on=TODAY)
    resumed = wf.on_command(asked.record, received, ctx)
    assert resumed.rejected is None
    assert resumed.record is not None
    later = at(ctx, NOW + admission.MAX_COMMAND_AGE + timedelta(minutes=1))
    again = wf.on_command(resumed.record, received, later)
    assert again.rejected is None  # answered from memory
    replayed = command(r.ClarificationRequested, asked_on=TODAY)
    refused = wf.on_command(resumed.record, replayed, later)
    assert refused.rejected == "invalid_command"
    assert refused.message is not None
    assert "signed more than 14 days ago" in refused.message
    assert unchanged(refused, resumed.record)
    # A worker whose clock is shifted (demos, deadline tests) counts on the wall clock.
    shifted = dataclasses.replace(later, clock_offset=later.now - NOW)
    assert wf.on_command(resumed.record, replayed, shifted).rejected is None


def test_the_access_answer_lists_only_systems_holding_data_and_what_was_disclosed(
    ctx: wf.Context,
) -> None:
    """Review, session 24: systems answering NotFound were listed as holding the
    subject's data and as exports "still to come"; a system answering completed with no
    export made the request completed with no copy from it; the recipients the subject's
    data was actually disclosed to were not named (Art. 15(1)(c))."""
    sent = Disclosure(
        recipient=ctx.datamap.recipients[0].name,
        categories=ctx.datamap.recipients[0].categories[:1],
        first_at=NOW - timedelta(days=90),
        last_at=NOW - timedelta(days=10),
    )
    police = Disclosure(
        recipient="Law enforcement agencies (on valid request)",
        categories=(Category.cctv,),
        first_at=NOW - timedelta(days=5),
        last_at=NOW - timedelta(days=5),
    )
    ctx = dataclasses.replace(ctx, facts=SubjectFacts(disclosures=(sent, police)))
    rec = start(RequestType.access, ctx)
    answers = {
        t.system.value: answer(rec, t.system, export=export_ref(t.system))
        for t in rec.tasks.values()
    }
    answers["cctv"] = answer(rec, System.cctv, r.NotFound)
    answers["telephony"] = answer(rec, System.telephony)  # completed, no export
    rec, _ = answer_all(rec, ctx, **answers)
    assert rec.state is S.partially_completed
    assert rec.tasks[next(k for k in rec.tasks if ":telephony:" in k)].state is TaskState.failed
    m = rec.manifest
    assert m is not None
    assert System.cctv.value not in [s["system"] for s in m["systems"]]
    assert m["missing_exports"] == [System.telephony.value]
    # Not when the police received it (exempt from rights-request notices: it could
    # prejudice an investigation).
    assert [d["recipient"] for d in m["disclosed"]] == [sent.recipient]
    assert sent.recipient in [x["name"] for x in m["recipients"]]
    text = " ".join(render_manifest_text(m).split())
    assert "could not be provided from: telephony" in text
    assert "still to come" not in text
    assert f"Who your data was actually sent to: - {sent.recipient}" in text


def test_the_subject_is_told_the_outcome_of_every_request(ctx: wf.Context) -> None:
    """Review, session 24: a rectification, restriction, objection or complete erasure
    closed without a word to the subject (Art. 12(3): the action taken). The notice
    names the systems where it could not be done, never a value."""
    rec = start(RequestType.rectification, ctx, rectification={"email": "new@example.com"})
    systems = [t.system for t in rec.tasks.values()]
    failed = {
        systems[0].value: answer(rec, systems[0], r.TaskFailed, reason="db down", retryable=False)
    }
    rec, last = answer_all(rec, ctx, **failed)
    assert rec.state is S.partially_completed
    (note,) = of_type(last, r.SubjectNotification)
    assert note.kind == "rectification_outcome"
    assert note.message.startswith("We corrected your personal data.")
    assert f"could not yet complete it in: {systems[0].value};" in note.message
    assert "new@example.com" not in note.message
    for kind in (RequestType.restriction, RequestType.erasure):
        done, last = answer_all(start(kind, dataclasses.replace(ctx, facts=SubjectFacts())), ctx)
        assert done.state is S.completed
        assert [n.kind for n in of_type(last, r.SubjectNotification)] == [f"{kind.value}_outcome"]


@pytest.mark.parametrize("change", [{"email": "ann@localhost"}, {"phone": "020 7946 0958 ext 2"}])
def test_a_rectified_identifier_that_is_not_one_is_refused(
    ctx: wf.Context, change: dict[str, str]
) -> None:
    """Review, session 24: a malformed new email or phone was accepted; once a system
    confirmed it, learning it into the identity map raised, and the worker stopped on
    the same answer after every restart. Refused at submission, the value not repeated."""
    outcome = wf.on_command(None, submit(RequestType.rectification, rectification=change), ctx)
    assert outcome.rejected == "invalid_command"
    assert outcome.message is not None
    assert "not a valid" in outcome.message
    assert next(iter(change.values())) not in outcome.message


def test_a_request_every_system_found_nothing_for_is_not_told_as_done(ctx: wf.Context) -> None:
    """Review, session 24: every system answering not found (none holds the field), the
    subject was told "We corrected your personal data"."""
    rec = start(RequestType.rectification, ctx, rectification={"address": "1 New St, Town"})
    nothing = {t.system.value: answer(rec, t.system, r.NotFound) for t in rec.tasks.values()}
    rec, last = answer_all(rec, ctx, **nothing)
    (note,) = of_type(last, r.SubjectNotification)
    assert "corrected" not in note.message
    assert "hold none of the personal data" in note.message


def test_a_lift_whose_restriction_ended_while_it_waited_for_identity_lifts_nothing(
    ctx: wf.Context,
) -> None:
    """Checked again when its work starts: another lift ended the restriction while this
    one waited for the identity, and lifting again would tell the subject twice and send
    the systems a second lift (review, session 45)."""
    (first,) = restrictions(ctx, "R-A")
    waiting = start(
        RequestType.restriction_lift,
        with_requests(ctx, first),
        request_id="L-1",
        linked_request_id="R-A",
        verified=False,
    )
    assert waiting.state is S.identity_unverified
    other = wf.on_command(
        None,
        submit(RequestType.restriction_lift, request_id="L-2", linked_request_id="R-A"),
        with_requests(ctx, first),
    ).record
    assert other is not None
    assert other.state is S.awaiting_systems
    verified = r.IdentityVerified(
        command_id=cmd_id(), request_id="L-1", issued_at=NOW, actor="dpo", verified_on=TODAY
    )
    outcome = wf.on_command(waiting, verified, with_requests(ctx, first, other, waiting))
    assert outcome.rejected is None, outcome.message
    assert outcome.record is not None
    assert outcome.record.state is S.completed
    assert of_type(outcome, r.LiftRestriction) == []
    assert of_type(outcome, r.SubjectDirective) == []
    (note,) = of_type(outcome, r.SubjectNotification)
    assert "had already ended" in note.message


def test_a_lift_naming_none_ends_what_stood_before_it_only_if_it_lifted(ctx: wf.Context) -> None:
    """A lift naming none that lifted nothing (another restriction was applied while it
    waited) ended nothing: that restriction still stands (review, session 45)."""
    (first,) = restrictions(ctx, "R-A")
    later = NOW + timedelta(minutes=1)
    lifted = start(
        RequestType.restriction_lift,
        at(ctx, later, restricted=True),
        request_id="L-1",
        issued_at=later,
    ).model_copy(update={"state": S.completed})
    assert restrictions_in_force(with_requests(ctx, first, lifted)) == []
    nothing = lifted.model_copy(update={"still_restricted_by": ["R-A"]})
    assert restrictions_in_force(with_requests(ctx, first, nothing)) == ["R-A"]


def test_a_lift_naming_none_that_waited_while_another_lifted_lifts_nothing(
    ctx: wf.Context,
) -> None:
    waiting = start(
        RequestType.restriction_lift,
        at(ctx, NOW, restricted=True),
        request_id="L-1",
        verified=False,
    )
    verified = r.IdentityVerified(
        command_id=cmd_id(), request_id="L-1", issued_at=NOW, actor="dpo", verified_on=TODAY
    )
    outcome = wf.on_command(waiting, verified, at(ctx, NOW, restricted=False))
    assert outcome.record is not None
    assert outcome.record.state is S.completed
    assert of_type(outcome, r.LiftRestriction) == []
    (note,) = of_type(outcome, r.SubjectNotification)
    assert "had already ended" in note.message
