"""What a completed erasure leaves behind (privops.core.shredding): which keys are shredded
given the retention the erasure keeps and the day, what each table entry becomes, and
when the worker tries (again). Erasure records come from the real workflow decisions on
the real data map."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core import sealing, shredding
from privops.core import workflow as wf
from privops.core.datamap import DataMap
from privops.core.erasure import Disclosure, LegalHold, SubjectFacts
from privops.core.fanout import SYSTEMS_OWN_GROUND
from privops.core.fieldcrypt import DataKey
from privops.core.identity import IdentityMap, merge
from privops.core.request import Leftovers
from privops.core.subject_keys import Kek, SubjectKey, create, retained_until
from privops.core.ticks import Tick, TickKind
from privops.core.vocab import Capacity, Category, RequestState, RequestType, System

C = Category
NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
SUBJECT = "subj-erased"
INVOICE = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)  # financial year ending 31 March 2026
# Six years from that year end: kept through 31 March 2032, erasable from 1 April 00:00 UK.
RETENTION_END = datetime(2032, 3, 31, 23, 0, tzinfo=UTC)
SYSTEM_IDS = {
    System.orders: {"customer_id": "C-1"},
    System.crm: {"contact_id": "K-1", "email": "ann@example.com"},
    System.marketing: {"email": "ann@example.com"},
}
KEK = Kek(1, bytes(range(32)))


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap()


def identity() -> IdentityMap:
    found: IdentityMap | None = None
    for system, ids in SYSTEM_IDS.items():
        found = merge(found, SUBJECT, system, ids, NOW - timedelta(days=30))
    assert found is not None
    return found


def context(dm: DataMap, now: datetime = NOW, **changes: Any) -> wf.Context:
    ctx = wf.Context(
        now=now,
        today=now.date(),
        datamap=dm,
        subject_ref="sr_test",
        identity=identity(),
        facts=SubjectFacts(latest_financial_record_at=INVOICE),
    )
    return dataclasses.replace(ctx, **changes)


def submitted(ctx: wf.Context, request_type: RequestType = RequestType.erasure) -> wf.RequestRecord:
    """A verified request, its tasks sent."""
    command = r.RequestSubmitted(
        command_id="c-1",
        request_id="R-1",
        issued_at=ctx.now,
        actor="dpo",
        request_type=request_type,
        subject_id=SUBJECT,
        received_on=ctx.today,
        identity_verified_on=ctx.today,
        rectification={"email": "new@example.com"}
        if request_type is RequestType.rectification
        else {},
    )
    rec = wf.on_command(None, command, ctx).record
    assert rec is not None
    return rec


def erased(
    ctx: wf.Context, request_type: RequestType = RequestType.erasure, **answers: type
) -> wf.RequestRecord:
    """A request answered by every system (TaskCompleted unless given; a TaskRetained keeps
    what the plan said, a TaskFailed is final)."""
    return erased_from(submitted(ctx, request_type), ctx, **answers)


def erased_from(rec: wf.RequestRecord, ctx: wf.Context, **answers: type) -> wf.RequestRecord:
    """``rec`` answered by every system, as ``erased``."""
    for task in list(rec.tasks.values()):
        model = answers.get(task.system.value, r.TaskCompleted)
        extra: dict[str, Any] = {} if model is r.TaskCompleted else {"reason": "kept by law"}
        if model is r.TaskFailed:
            extra["retryable"] = False
        result = model(
            task_id=task.task_id,
            request_id=rec.request_id,
            system=task.system,
            answered_at=ctx.now,
            **extra,
        )
        answered = wf.on_result(rec, result, ctx).record
        assert answered is not None
        rec = answered
    return rec


def hold(**changes: Any) -> LegalHold:
    placed = LegalHold(
        hold_id="H-1",
        subject_id=SUBJECT,
        categories=(C.cctv,),
        reason="incident 42",
        placed_at=NOW - timedelta(days=1),
    )
    return placed.model_copy(update=changes)


def keys(*scopes: str) -> list[SubjectKey]:
    return [create(SUBJECT, scope, KEK, NOW)[0] for scope in scopes]


PURCHASES = shredding.key_scope(C.purchases, RETENTION_END)


# --- which keys --------------------------------------------------------------------------------


def test_a_retained_scope_is_named_by_the_last_uk_day_of_its_retention() -> None:
    assert PURCHASES == "retained:purchases:2032-03-31"
    noon = datetime(2027, 5, 10, 13, 0, tzinfo=UTC)  # 14:00 BST: kept until then
    assert shredding.key_scope(C.cctv, noon) == "retained:cctv:2027-05-09"
    assert shredding.scope_category(PURCHASES) == "purchases"
    assert shredding.scope_category("main") is None


NOTHING = shredding.Kept(frozenset(), frozenset())
PAYMENTS = Disclosure(
    recipient="payments",
    recipient_ref="pay-77",
    categories=(C.payment,),
    first_at=INVOICE,
    last_at=INVOICE,
)
"""The payments processor, told of the invoices' payment records (a kept category)."""
KEEPS_PURCHASES = shredding.Kept(frozenset({C.purchases, C.payment}), frozenset({System.orders}))
HELD_CCTV = shredding.Kept(frozenset({C.cctv}), frozenset({System.cctv}))


@pytest.mark.parametrize(
    ("scopes", "kept", "now", "shredded"),
    [
        pytest.param(["main"], NOTHING, NOW, ["main"], id="main-at-completion"),
        pytest.param(
            ["main", PURCHASES], KEEPS_PURCHASES, NOW, ["main"], id="retained-kept-by-the-plan"
        ),
        pytest.param(
            ["main", PURCHASES],
            NOTHING,
            NOW,
            ["main", PURCHASES],
            id="a-retained-scope-nothing-keeps-goes-whatever-its-date",
        ),
        pytest.param(
            ["main", "retained:contact:9999-12-31", PURCHASES],
            KEEPS_PURCHASES,
            NOW,
            ["main", "retained:contact:9999-12-31"],
            id="a-scope-named-for-a-category-nothing-keeps-goes",
        ),
        pytest.param(
            [PURCHASES],
            KEEPS_PURCHASES,
            datetime(2032, 3, 31, 22, 59, tzinfo=UTC),
            [],
            id="kept-through-its-last-day",
        ),
        pytest.param([PURCHASES], NOTHING, RETENTION_END, [PURCHASES], id="followup-at-the-end"),
        pytest.param(
            [PURCHASES],
            KEEPS_PURCHASES,
            RETENTION_END + timedelta(days=400),
            [],
            id="an-open-ended-ground-outlives-the-date",
        ),
        pytest.param(
            ["main", "retained:cctv:2026-01-31"],
            HELD_CCTV,
            NOW,
            ["main"],
            id="a-hold-keeps-what-it-holds",
        ),
        pytest.param(
            ["main", "retained:cctv:2026-01-31", PURCHASES],
            KEEPS_PURCHASES,
            NOW,
            ["main", "retained:cctv:2026-01-31"],
            id="an-ended-retention-goes",
        ),
    ],
)
def test_which_keys_an_erasure_shreds(
    scopes: list[str], kept: shredding.Kept, now: datetime, shredded: list[str]
) -> None:
    stored = keys(*scopes)
    decision = shredding.keys_to_destroy(stored, kept, now)
    assert decision.shredded_scopes == tuple(sorted(shredded))
    assert set(decision.kept_scopes) == set(scopes) - set(shredded)
    by_scope = {k.scope: k.key_id for k in stored}
    assert decision.key_ids == tuple(sorted(by_scope[s] for s in shredded))


def test_the_followup_due_at_the_retention_end_shreds_the_key_the_retention_named() -> None:
    """Whatever the end instant (a UK midnight, an afternoon, across the clock change)."""
    for end in [
        RETENTION_END,
        datetime(2027, 5, 10, 13, 0, tzinfo=UTC),
        datetime(2027, 10, 31, 0, 30, tzinfo=UTC),
        datetime(2028, 1, 1, 0, 0, tzinfo=UTC),
    ]:
        stored = keys(shredding.key_scope(C.credit, end))
        assert shredding.keys_to_destroy(stored, NOTHING, end).key_ids == (stored[0].key_id,)
        day_before = end - timedelta(days=1)  # the retention still keeps credit
        keeps_credit = shredding.Kept(frozenset({C.credit}), frozenset({System.orders}))
        assert shredding.keys_to_destroy(stored, keeps_credit, day_before).key_ids == ()


@pytest.mark.parametrize(
    ("scope", "allowed"),
    [
        ("main", True),
        ("retained:purchases:2032-03-31", True),
        ("retained:contact:9999-12-31", False),  # not among the categories given
        ("retained:unerased:2026-03-10", False),  # privops' own
        ("hold:cctv", False),
        # Past any retention: it would outlast privops' own scopes, and the flush seals
        # under the longest-dated one (review, session 24) ...
        ("retained:purchases:9999-12-31", False),
        ("retained:purchases:2034-03-11", False),
        ("retained:purchases:2034-03-10", True),
        # ... nor another spelling of a day (fromisoformat takes the basic format), nor a
        # day already past (it would not count against the subject's keys).
        ("retained:purchases:20320331", False),
        ("retained:purchases:2026-03-09", False),
        ("retained:purchases:2026-03-10", True),
    ],
)
def test_a_system_may_ask_for_main_or_a_retained_scope_of_its_own_categories(
    scope: str, allowed: bool
) -> None:
    orders_holds = (C.purchases, C.payment, C.credit)
    assert shredding.system_may_ask(scope, orders_holds, date(2026, 3, 10)) is allowed


def test_an_open_ended_retention_names_a_scope_that_outlasts_every_dated_one(
    dm: DataMap,
) -> None:
    """A legal hold beside invoices kept for years: what privops keeps is sealed under
    the hold's scope, which the worker's key store takes as the longest-dated one. Before,
    the hold's scope was named by yesterday, the invoices' key won, and their follow-up
    destroyed it while the hold still ran: the held system's identifiers were lost."""
    rec = erased(context(dm), orders=r.TaskRetained)
    kept = shredding.still_kept(rec, [hold()], dm.holdings(), NOW)
    assert kept.categories == {C.cctv, C.purchases, C.payment}
    scope = shredding.storage_scope(rec, kept, [hold()], NOW)
    assert scope == "retained:cctv:9999-12-31"
    invoices = max(
        k.until for k in rec.kept + [k for t in rec.tasks.values() for k in t.keep] if k.until
    )
    dated = shredding.key_scope(C.purchases, invoices)
    assert retained_until(scope) > retained_until(dated)  # type: ignore[operator]
    # No system may name it (nor anything past privops' own dated scopes).
    assert not shredding.system_may_ask(scope, (C.cctv,), NOW.date())


# --- what retention still keeps ----------------------------------------------------------------


def test_a_completed_erasure_with_invoices_keeps_them_at_orders_until_their_end(
    dm: DataMap,
) -> None:
    rec = erased(context(dm), orders=r.TaskRetained)
    assert rec.state is RequestState.partially_completed
    kept = shredding.still_kept(rec, [], dm.holdings(), NOW)
    assert kept.categories == {C.purchases, C.payment}
    assert kept.systems == {System.orders}
    assert shredding.still_kept(rec, [], dm.holdings(), RETENTION_END).nothing


def test_a_system_that_kept_without_saying_what_keeps_all_its_task_covers(dm: DataMap) -> None:
    """A "retained" answer naming no category (the schema's default), with nothing
    planned to keep, recorded nothing: the erasure closed completed, the subject was
    told everything was erased, and the system's identifiers went (review, session 43).
    Now all the task covers counts as kept, on the system's own ground."""
    ctx = context(dm, facts=SubjectFacts())
    rec = erased(ctx, crm=r.TaskRetained)
    crm = next(t for t in rec.tasks.values() if t.system is System.crm)
    assert crm.keep == []  # nothing planned
    assert rec.state is RequestState.partially_completed
    assert {(k.system, k.category) for k in rec.kept} == {(System.crm, c) for c in crm.categories}
    assert {k.ground for k in rec.kept} == {SYSTEMS_OWN_GROUND}
    kept = shredding.still_kept(rec, [], dm.holdings(), NOW)
    assert kept.systems == {System.crm}


def test_a_retained_answer_naming_only_categories_outside_its_task_keeps_the_task(
    dm: DataMap,
) -> None:
    ctx = context(dm, facts=SubjectFacts())
    rec = submitted(ctx)
    crm = next(t for t in rec.tasks.values() if t.system is System.crm)
    foreign = next(c for c in Category if c not in crm.categories)
    for task in list(rec.tasks.values()):
        if task.system is System.crm:
            answer: r.TaskResult = r.TaskRetained(
                task_id=task.task_id,
                request_id=rec.request_id,
                system=task.system,
                answered_at=NOW,
                categories=[foreign],
                reason="kept",
            )
        else:
            answer = r.TaskCompleted(
                task_id=task.task_id, request_id=rec.request_id, system=task.system, answered_at=NOW
            )
        outcome = wf.on_result(rec, answer, ctx)
        assert outcome.record is not None
        rec = outcome.record
    assert rec.state is RequestState.partially_completed
    assert {k.category for k in rec.kept} == set(crm.categories)
    assert foreign not in {k.category for k in rec.kept}


def test_a_retained_task_leaves_its_request_partial_even_with_nothing_to_name(
    dm: DataMap,
) -> None:
    """A task of no category (none the plan could name) answered "retained": the system
    kept something all the same, so the request is partial, never completed."""
    ctx = context(dm, facts=SubjectFacts())
    rec = submitted(ctx)
    for task in rec.tasks.values():
        if task.system is System.crm:
            task.categories = []
    rec = erased_from(rec, ctx, crm=r.TaskRetained)
    assert rec.kept == []
    assert rec.state is RequestState.partially_completed


def test_nothing_is_kept_after_a_complete_erasure_without_financial_records(dm: DataMap) -> None:
    rec = erased(context(dm, facts=SubjectFacts()))
    assert rec.state is RequestState.completed
    assert shredding.still_kept(rec, [], dm.holdings(), NOW).nothing


def test_an_active_hold_and_a_failed_task_keep_their_systems(dm: DataMap) -> None:
    rec = erased(context(dm, facts=SubjectFacts()), marketing=r.TaskFailed)
    kept = shredding.still_kept(rec, [hold()], dm.holdings(), NOW)
    assert kept.categories == {C.cctv}
    assert kept.systems == {System.cctv, System.marketing}
    released = hold(released_at=NOW - timedelta(hours=1))
    assert shredding.still_kept(rec, [released], dm.holdings(), NOW).systems == {System.marketing}


# --- table entries -----------------------------------------------------------------------------


def test_nothing_kept_drops_identity_facts_and_released_holds() -> None:
    released = hold(released_at=NOW - timedelta(hours=1))
    facts = SubjectFacts(latest_financial_record_at=INVOICE)
    remains = shredding.what_remains(NOTHING, identity(), facts, [released], NOW)
    assert remains == shredding.Remains(identity=None, facts=None, holds=None)


def test_retention_keeps_the_identifiers_of_the_systems_that_keep_data() -> None:
    disclosures = (
        PAYMENTS,
        Disclosure(
            recipient="mailer",
            recipient_ref="ann@example.com",
            categories=(C.contact,),
            first_at=INVOICE,
            last_at=INVOICE,
        ),
    )
    facts = SubjectFacts(latest_financial_record_at=INVOICE, disclosures=disclosures)
    active = hold(categories=(C.purchases,))
    remains = shredding.what_remains(KEEPS_PURCHASES, identity(), facts, [active], NOW)
    assert remains.identity is not None
    assert remains.identity.identifiers() == {System.orders: {"customer_id": "C-1"}}
    assert remains.identity.email is None  # orders never knew them by it
    assert remains.facts is not None
    assert remains.facts.latest_financial_record_at == INVOICE  # the follow-up re-plans
    assert [d.recipient for d in remains.facts.disclosures] == ["payments"]
    assert remains.holds == (active,)


def test_a_kept_system_that_knows_the_email_keeps_it() -> None:
    kept = shredding.Kept(frozenset(), frozenset({System.crm}))
    remains = shredding.what_remains(kept, identity(), None, [], NOW)
    assert remains.identity is not None
    assert remains.identity.email is not None
    assert set(remains.identity.systems) == {System.crm}


def test_closed_requests_lose_their_personal_values_open_ones_keep_them(dm: DataMap) -> None:
    rec = erased(context(dm), RequestType.rectification)
    assert rec.rectification
    assert any(t.changes for t in rec.tasks.values())
    clean = shredding.scrubbed(rec)
    assert clean is not None
    assert clean.rectification == {}
    assert all(not t.identifiers and not t.changes for t in clean.tasks.values())
    assert clean.state is rec.state
    assert clean.history == rec.history
    assert shredding.scrubbed(clean) is None

    access = erased(context(dm), RequestType.access)
    assert access.manifest is not None
    assert (shredding.scrubbed(access) or access).manifest is None

    opened = submitted(context(dm))
    assert opened.open
    assert shredding.scrubbed(opened) is None


NAME = "Ann Jones, 12 Acacia Avenue"


def test_closed_requests_lose_the_free_text_that_may_name_the_person(dm: DataMap) -> None:
    """The DPO's reasons and the systems' answers were kept whole after the erasure (a
    refusal "Ann Jones, 12 Acacia Avenue: duplicate", "invoices of Ann Jones kept 6
    years"): review, session 26. What was kept and why stays."""
    rec = erased(context(dm), orders=r.TaskRetained).model_copy(
        update={
            "reason": f"asked by {NAME}",
            "extension_reason": f"{NAME}: paper files",
            "send_to": f"Bright Energy, for {NAME}",  # a portability request's (Art. 20(2))
            "representative": f"Smith & Co Solicitors, for {NAME}",  # made for them (0.41)
            "capacity": Capacity.authorised,
        }
    )
    task_id = next(t for t, task in rec.tasks.items() if task.system is System.orders)
    rec.tasks[task_id].outcome_reason = f"invoices of {NAME} kept 6 years"
    rec.kept.append(  # recorded before grounds were privops' own: a system's words
        rec.kept[0].model_copy(update={"category": C.contact, "ground": f"{NAME} owes us"})
    )
    clean = shredding.scrubbed(rec)
    assert clean is not None
    assert NAME not in clean.model_dump_json()
    assert (clean.reason, clean.extension_reason, clean.send_to) == (None, None, None)
    # who, and in what capacity ("deputy" tells of the subject's mental capacity)
    assert (clean.representative, clean.capacity) == (None, None)
    assert all(t.outcome_reason is None for t in clean.tasks.values())
    planned = [k.ground for k in rec.kept[:-1]]
    assert planned
    assert all("financial records" in ground for ground in planned)
    assert [k.ground for k in clean.kept] == [*planned, SYSTEMS_OWN_GROUND]
    assert shredding.scrubbed(clean) is None


def crm_keeping_contact(dm: DataMap, reason: str) -> tuple[wf.RequestRecord, list[Any]]:
    """An erasure every system answers done but the CRM, which keeps contact details for
    reasons of its own (``reason``, its free text): the record, and what was sent."""
    ctx = context(dm, facts=SubjectFacts())
    rec = submitted(ctx)
    out: list[Any] = []
    for task in list(rec.tasks.values()):
        result: r.TaskResult = r.TaskCompleted(
            task_id=task.task_id, request_id=rec.request_id, system=task.system, answered_at=NOW
        )
        if task.system is System.crm:
            result = r.TaskRetained(
                task_id=task.task_id,
                request_id=rec.request_id,
                system=task.system,
                answered_at=NOW,
                categories=[C.contact],
                reason=reason,
            )
        outcome = wf.on_result(rec, result, ctx)
        assert outcome.record is not None
        rec, out = outcome.record, [*out, *outcome.out]
    return rec, out


def test_what_a_system_keeps_for_reasons_of_its_own_says_so_without_quoting_it(
    dm: DataMap,
) -> None:
    """Its answer's free text became the kept item's ground, which the DPO's view keeps
    after the erasure and the subject's erasure notice quotes: now it stays in the
    task's answer (sealed, cleared by the erasure), and the ground points at it."""
    rec, out = crm_keeping_contact(dm, f"{NAME} has a complaint open")
    assert [(k.system, k.ground) for k in rec.kept] == [(System.crm, SYSTEMS_OWN_GROUND)]
    crm = next(t for t in rec.tasks.values() if t.system is System.crm)
    assert crm.outcome_reason == f"{NAME} has a complaint open"
    notices = [o.record for o in out if isinstance(o.record, r.SubjectNotification)]
    assert notices
    assert not [n for n in notices if "Acacia" in n.model_dump_json()]


# --- when ------------------------------------------------------------------------------------


def test_only_a_completed_erasure_is_pending_until_done(dm: DataMap) -> None:
    rec = erased(context(dm), orders=r.TaskRetained)
    assert shredding.pending(rec)
    assert not shredding.pending(erased(context(dm), RequestType.access))
    assert shredding.retry_at(rec) is None  # tried at once, not by a timer
    assert wf.pending_followups(rec) == [RETENTION_END]

    later = NOW + timedelta(seconds=3)
    waiting = shredding.deferred(shredding.deferred(rec, NOW), later)
    assert [h.event for h in waiting.history].count(shredding.DEFERRED) == 1
    assert shredding.retry_at(waiting) == later + shredding.RETRY_AFTER
    assert wf.pending_followups(waiting) == [RETENTION_END, later + shredding.RETRY_AFTER]

    finished = shredding.done(waiting, later)
    assert not shredding.pending(finished)
    assert shredding.retry_at(finished) is None
    assert wf.pending_followups(finished) == [RETENTION_END]


def leftovers(key_ids: list[str], **changes: Any) -> Leftovers:
    decided = Leftovers(key_ids=key_ids, cause="c-1:keys_shredded", at=NOW, reason="shredded main")
    return decided.model_copy(update=changes)


def test_decided_leftovers_wait_for_their_shred_and_are_tried_again_until_done(
    dm: DataMap,
) -> None:
    """Decided and recorded (``planned``) before any key goes: still pending, and the
    timer comes back for it if the worker does not destroy the keys at once."""
    rec = erased(context(dm), orders=r.TaskRetained)
    decided = shredding.planned(rec, leftovers(["k"]), NOW)
    assert shredding.pending(decided)
    assert decided.leftovers == leftovers(["k"])
    assert shredding.retry_at(decided) == NOW + shredding.RETRY_AFTER

    later = NOW + timedelta(seconds=20)
    waiting = shredding.deferred(decided, later)
    waited = [shredding.SHRED_DUE, shredding.DEFERRED]
    assert [h.event for h in waiting.history][-2:] == waited
    assert shredding.retry_at(waiting) == later + shredding.RETRY_AFTER
    again = shredding.planned(waiting, leftovers(["k", "l"]), later)
    assert [h.event for h in again.history].count(shredding.SHRED_DUE) == 1
    assert [h.event for h in again.history][-1] == shredding.SHRED_DUE

    finished = shredding.done(again, later)
    assert finished.leftovers is None
    assert not shredding.pending(finished)
    assert shredding.retry_at(finished) is None


def test_a_decision_is_taken_again_only_while_none_of_its_keys_is_gone() -> None:
    assert not shredding.begun(leftovers(["a", "b"]), {"a", "b", "c"})
    assert shredding.begun(leftovers(["a", "b"]), {"b", "c"})
    assert shredding.begun(leftovers([]), {"a"})  # nothing to protect by deciding again


def test_what_is_kept_is_copied_under_the_storage_key_and_opens_once_main_is_gone() -> None:
    (_, main), (_, storage) = (create(SUBJECT, s, KEK, NOW) for s in ("main", PURCHASES))
    disclosure = PAYMENTS
    facts = SubjectFacts(latest_financial_record_at=INVOICE, disclosures=(disclosure,))
    active = hold(categories=(C.purchases,))
    remains = shredding.what_remains(KEEPS_PURCHASES, identity(), facts, [active], NOW)
    copy = shredding.sealed_copy(remains, SUBJECT, storage)
    text = json.dumps(copy)
    assert all(v not in text for v in ("C-1", "pay-77", active.reason))

    def only_storage(key_id: str) -> DataKey | None:  # main is gone
        return storage if key_id == storage.key_id else None

    assert shredding.opened_copy(copy, SUBJECT, only_storage) == remains
    lost = shredding.opened_copy(copy, SUBJECT, lambda _key_id: None)
    assert lost.identity is None
    assert lost.holds is not None
    assert lost.holds[0].reason == sealing.HOLD_REASON_GONE
    assert main.key_id not in text

    # Nothing kept, no key: nothing personal is copied.
    bare = shredding.sealed_copy(remains, SUBJECT, None)
    assert sealing.IDENTITIES.name not in bare
    assert all(v not in json.dumps(bare) for v in ("C-1", "pay-77", active.reason))


def test_what_a_destroyed_key_took_is_restored_and_what_changed_since_stays() -> None:
    disclosure = PAYMENTS
    kept = hold(categories=(C.purchases,))
    copy = shredding.Remains(
        identity=identity(),
        facts=SubjectFacts(latest_financial_record_at=INVOICE, disclosures=(disclosure,)),
        holds=(kept,),
    )
    placed_since = hold(hold_id="H-2", reason="placed since")
    current = shredding.Remains(  # read once main is gone, a debt opened and a hold placed since
        identity=None,
        facts=SubjectFacts(
            latest_financial_record_at=INVOICE,
            open_debt=True,
            disclosures=(disclosure.model_copy(update={"recipient_ref": None}),),
        ),
        holds=(kept.model_copy(update={"reason": sealing.HOLD_REASON_GONE}), placed_since),
    )
    back = shredding.restored(current, copy)
    assert back.identity == copy.identity
    assert back.facts is not None
    assert back.facts.open_debt
    assert back.facts.disclosures == (disclosure,)
    assert back.holds == (kept, placed_since)
    # Read whole (main still there), nothing is taken from the copy.
    whole = shredding.Remains(identity=None, facts=None, holds=None)
    assert shredding.restored(copy, whole) == copy
    assert shredding.restored(whole, whole) == whole


def test_the_audit_summary_names_scopes_never_key_ids() -> None:
    stored = keys("main", PURCHASES)
    decision = shredding.keys_to_destroy(stored, KEEPS_PURCHASES, NOW)
    remains = shredding.what_remains(KEEPS_PURCHASES, identity(), None, [], NOW)
    text = shredding.summary(decision, remains, cleared=2)
    assert text == (
        "shredded main; kept retained:purchases:2032-03-31; identities kept for orders; "
        "subject-facts dropped; legal-holds: 0 active kept; 2 closed request(s) cleared"
    )
    assert all(k.key_id not in text for k in stored)
    assert SUBJECT not in text


# --- what an erasure keeps with no end date is looked at again (review, session 24) --------


def _followup_tick(rec: wf.RequestRecord, ctx: wf.Context) -> wf.Outcome:
    return wf.on_tick(rec, Tick(rec.request_id, TickKind.followup, ctx.now), ctx)


def test_a_released_hold_gets_its_followup_erasure(dm: DataMap) -> None:
    """A legal hold keeps cctv with no end date. Before, nothing followed: only dated
    retentions were scheduled, so the footage was kept for ever once the hold ended
    (DESIGN.md section 5: retained data gets a follow-up erasure when its retention
    ends). Now the closed erasure looks again daily, from the holds as they are."""
    interactions = hold(categories=(C.interactions,))
    held = context(dm, facts=SubjectFacts(), holds=(interactions,))
    rec = erased(held)
    assert shredding.pending(rec)  # the worker shreds its keys first ...
    assert wf.pending_followups(rec) == []  # (its own retries: no review tick meanwhile)
    assert _followup_tick(rec, dataclasses.replace(held, now=NOW + timedelta(days=2))).out == []
    rec = shredding.done(rec, NOW)  # ... then it is looked at again daily
    assert not rec.open
    # telephony too: it looks subjects up by the CRM's contact id (fanout.holdings).
    assert wf.open_ended(rec) == [(System.crm, C.interactions), (System.telephony, C.interactions)]
    assert rec.closed_at is not None
    assert rec.closed_at + wf.RETENTION_REVIEW in wf.pending_followups(rec)

    # A day on, the hold still runs: nothing issued, the next look a day later; a tick
    # before then (another timer of the request) looks at nothing.
    day = dataclasses.replace(held, now=NOW + timedelta(days=1))
    still = _followup_tick(rec, day)
    assert still.record is not None
    assert still.out == []
    assert still.record.retention_reviewed_at == day.now
    assert wf.pending_followups(still.record) == [day.now + wf.RETENTION_REVIEW]
    soon = dataclasses.replace(held, now=day.now + timedelta(hours=1))
    assert _followup_tick(still.record, soon).record is None

    # Released: the follow-up erasure of cctv is asked for at the next look.
    released = interactions.model_copy(update={"released_at": NOW + timedelta(days=2)})
    later = dataclasses.replace(held, now=NOW + timedelta(days=3), holds=(released,))
    ended = _followup_tick(still.record, later)
    assert ended.record is not None
    (child,) = [o.record for o in ended.out if isinstance(o.record, r.RequestSubmitted)]
    assert child.request_type is RequestType.erasure
    assert child.linked_request_id == rec.request_id
    assert [(f.system, f.categories, f.issued) for f in ended.record.followups] == [
        (System.crm, [C.interactions], True),
        (System.telephony, [C.interactions], False),  # the issued one re-plans it
    ]
    assert wf.open_ended(ended.record) == []
    assert wf.pending_followups(ended.record) == []


def test_once_a_followup_went_out_it_looks_after_the_rest(dm: DataMap) -> None:
    """Two holds on different systems, released apart: the first release's follow-up
    re-plans everything still kept (the other hold included) and reviews it itself. Had
    the parent kept reviewing too, the second release would erase twice, and each more
    ground doubled it (review, session 24)."""
    h1 = hold(categories=(C.interactions,))
    h2 = hold(hold_id="H-2", categories=(C.purchases,))
    held = context(dm, facts=SubjectFacts(), holds=(h1, h2))
    rec = shredding.done(erased(held), NOW)
    assert wf.open_ended(rec) == [
        (System.crm, C.interactions),
        (System.orders, C.purchases),
        (System.telephony, C.interactions),
    ]
    gone = h2.model_copy(update={"released_at": NOW + timedelta(hours=1)})
    later = dataclasses.replace(held, now=NOW + timedelta(days=2), holds=(h1, gone))
    first = _followup_tick(rec, later)
    assert first.record is not None
    assert [o.record.reason for o in first.out if isinstance(o.record, r.RequestSubmitted)] == [
        "retention ended for orders: purchases"
    ]
    assert wf.open_ended(first.record) == []
    assert wf.pending_followups(first.record) == []


def test_one_followup_erasure_takes_over_the_others_dated_ones(dm: DataMap) -> None:
    """A hold keeps crm's interactions with no end date while orders keeps the invoices
    to a date. The hold's release issues a follow-up erasure, which re-plans everything
    still kept and schedules its own follow-up for the invoices: the parent's own dated
    one must never run too (before, both asked to erase the subject at that date)."""
    interactions = hold(categories=(C.interactions,))
    held = context(dm, holds=(interactions,))
    rec = shredding.done(erased(held, orders=r.TaskRetained), NOW)
    assert rec.closed_at is not None
    assert wf.pending_followups(rec) == [RETENTION_END, rec.closed_at + wf.RETENTION_REVIEW]
    released = interactions.model_copy(update={"released_at": NOW + timedelta(days=2)})
    later = dataclasses.replace(held, now=NOW + timedelta(days=3), holds=(released,))
    first = _followup_tick(rec, later)
    assert first.record is not None
    (child,) = [o.record for o in first.out if isinstance(o.record, r.RequestSubmitted)]
    assert wf.pending_followups(first.record) == []
    superseded = [f.superseded_by for f in first.record.followups if not f.issued]
    assert superseded == [child.request_id] * 2  # the invoices', and telephony's (its hold)
    at_the_end = dataclasses.replace(later, now=RETENTION_END + timedelta(hours=1))
    assert _followup_tick(first.record, at_the_end).out == []


def test_followups_due_together_are_one_erasure(dm: DataMap) -> None:
    """Two systems' retentions ending on one day: one follow-up erasure naming both, not
    two erasures of the subject at once."""
    rec = shredding.done(erased(context(dm), orders=r.TaskRetained), NOW)
    rec = rec.editable_copy()
    rec.followups.append(
        wf.FollowupItem(system=System.crm, categories=[C.interactions], due_at=RETENTION_END)
    )
    outcome = _followup_tick(rec, context(dm, now=RETENTION_END + timedelta(hours=1)))
    children = [o.record for o in outcome.out if isinstance(o.record, r.RequestSubmitted)]
    assert [c.reason for c in children] == [
        "retention ended for orders: payment, purchases; crm: interactions"
    ]
    assert outcome.record is not None
    assert wf.pending_followups(outcome.record) == []


def test_a_settled_debt_turns_its_open_ended_keep_into_a_dated_followup(dm: DataMap) -> None:
    """An open debt keeps the financial categories with no end date; once the facts say
    it was settled (ingest keeps an erased subject's retention facts moving), the credit
    period has an end, and the follow-up is scheduled for it."""
    debt = SubjectFacts(open_debt=True, latest_financial_record_at=INVOICE)
    rec = shredding.done(erased(context(dm, facts=debt), orders=r.TaskRetained), NOW)
    assert (System.orders, C.credit) in wf.open_ended(rec)
    settled_at = NOW + timedelta(days=40)
    settled = debt.model_copy(
        update={"open_debt": False, "credit_closed_at": settled_at, "balance_at": settled_at}
    )
    review = context(dm, now=settled_at + timedelta(days=1), facts=settled)
    outcome = _followup_tick(rec, review)
    assert outcome.record is not None
    assert not [o for o in outcome.out if isinstance(o.record, r.RequestSubmitted)]
    dated = {(f.system, c): f.due_at for f in outcome.record.followups for c in f.categories}
    assert dated[(System.orders, C.credit)] > review.now + timedelta(days=5 * 365)
    assert wf.open_ended(outcome.record) == []


def test_what_a_system_keeps_for_reasons_of_its_own_is_not_re_planned(dm: DataMap) -> None:
    """Only privops' own grounds are looked at again: a system saying it kept something
    the plan did not keep would be asked again every day, for ever."""
    rec, _ = crm_keeping_contact(dm, "a complaint is open")
    assert [(k.system, k.category, k.until) for k in rec.kept] == [(System.crm, C.contact, None)]
    assert wf.open_ended(rec) == []
