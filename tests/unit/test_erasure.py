from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from privops.core.datamap import DataMap, load_datamap
from privops.core.erasure import (
    ErasurePlan,
    Followup,
    LegalHold,
    SubjectFacts,
    plan_erasure,
    recipients_to_notify,
)
from privops.core.errors import DomainError
from privops.core.vocab import Category, System

C = Category
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SIX_YEARS = timedelta(days=2192)
TWO_YEARS = timedelta(days=730)
SUBJECT = "subj-1"
REAL = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap(REAL)


def hold(categories: tuple[Category, ...], **kw: object) -> LegalHold:
    fields: dict[str, object] = {
        "hold_id": "H-1",
        "subject_id": SUBJECT,
        "categories": categories,
        "reason": "litigation: claim 2026/17",
        "placed_at": NOW - timedelta(days=10),
    }
    fields.update(kw)
    return LegalHold.model_validate(fields)


def kept(plan: ErasurePlan) -> dict[tuple[System, Category], datetime | None]:
    return {(i.system, r.category): r.until for i in plan.instructions for r in i.keep}


INVOICE_2Y = NOW - timedelta(days=2 * 365)
INVOICE_7Y = NOW - timedelta(days=7 * 365)
CLOSED_1Y = NOW - timedelta(days=365)
CLOSED_3Y = NOW - timedelta(days=3 * 365)

# name, facts, legal holds, expected kept {(system, category): until}
CASES: list[
    tuple[str, SubjectFacts, list[LegalHold], dict[tuple[System, Category], datetime | None]]
] = [
    ("plain customer", SubjectFacts(), [], {}),
    (
        "invoices inside 6 years",
        SubjectFacts(latest_financial_record_at=INVOICE_2Y),
        [],
        {
            (System.orders, C.payment): INVOICE_2Y + SIX_YEARS,
            (System.orders, C.purchases): INVOICE_2Y + SIX_YEARS,
        },
    ),
    ("invoices older than 6 years", SubjectFacts(latest_financial_record_at=INVOICE_7Y), [], {}),
    (
        "open debt",
        SubjectFacts(open_debt=True, latest_financial_record_at=INVOICE_7Y),
        [],
        {
            (System.orders, C.payment): None,
            (System.orders, C.purchases): None,
            (System.orders, C.credit): None,
        },
    ),
    (
        "open credit account",
        SubjectFacts(open_credit_account=True),
        [],
        {
            (System.orders, C.payment): None,
            (System.orders, C.purchases): None,
            (System.orders, C.credit): None,
        },
    ),
    (
        "credit account closed a year ago",
        SubjectFacts(credit_closed_at=CLOSED_1Y),
        [],
        {(System.orders, C.credit): CLOSED_1Y + SIX_YEARS},
    ),
    (
        "cctv under investigation",
        SubjectFacts(open_investigation_ids=("INC-9", "INC-4")),
        [],
        {(System.cctv, C.cctv): None},
    ),
    (
        "investigation closed within 2 years",
        SubjectFacts(investigation_closed_at=CLOSED_1Y),
        [],
        {(System.cctv, C.cctv): CLOSED_1Y + TWO_YEARS},
    ),
    (
        "investigation closed over 2 years ago",
        SubjectFacts(investigation_closed_at=CLOSED_3Y),
        [],
        {},
    ),
    (
        "active legal hold",
        SubjectFacts(),
        [hold((C.interactions, C.contact))],
        {
            (System.orders, C.contact): None,
            (System.crm, C.contact): None,
            (System.crm, C.interactions): None,
            (System.telephony, C.interactions): None,
            (System.telephony, C.contact): None,
            (System.marketing, C.contact): None,
            (System.web, C.contact): None,
        },
    ),
    (
        "legal hold outranks the 6-year period",
        SubjectFacts(latest_financial_record_at=INVOICE_2Y),
        [hold((C.purchases,))],
        {
            (System.orders, C.payment): INVOICE_2Y + SIX_YEARS,
            (System.orders, C.purchases): None,
        },
    ),
    (
        "released, future and other subjects' holds are ignored",
        SubjectFacts(),
        [
            hold((C.cctv,), released_at=NOW - timedelta(days=1)),
            hold((C.cctv,), placed_at=NOW + timedelta(days=1)),
            hold((C.cctv,), subject_id="someone-else"),
        ],
        {},
    ),
]


@pytest.mark.parametrize(("name", "facts", "holds", "expected"), CASES, ids=[c[0] for c in CASES])
def test_erasure_plan(
    dm: DataMap,
    name: str,
    facts: SubjectFacts,
    holds: list[LegalHold],
    expected: dict[tuple[System, Category], datetime | None],
) -> None:
    plan = plan_erasure(SUBJECT, dm, None, holds, facts, NOW)
    assert kept(plan) == expected
    assert plan.complete is (not expected)
    # One instruction per system; everything held is either erased or kept, never both.
    assert [i.system for i in plan.instructions] == list(System)
    for instruction in plan.instructions:
        held = set(dm.categories_of(instruction.system))
        kept_here = {r.category for r in instruction.keep}
        assert set(instruction.erase) | kept_here == held
        assert not set(instruction.erase) & kept_here
        assert all(r.ground and r.reason for r in instruction.keep)
    # A follow-up erasure for every retained category whose end is known, on that day.
    due = {(f.system, c): f.due_at for f in plan.followups for c in f.categories}
    assert due == {k: v for k, v in expected.items() if v is not None}


def test_followups_group_categories_by_system_and_date(dm: DataMap) -> None:
    facts = SubjectFacts(latest_financial_record_at=INVOICE_2Y)
    plan = plan_erasure(SUBJECT, dm, None, [], facts, NOW)
    assert plan.followups == (
        Followup(
            system=System.orders,
            categories=(C.payment, C.purchases),
            due_at=INVOICE_2Y + SIX_YEARS,
        ),
    )


def test_retained_carries_ground_and_reason(dm: DataMap) -> None:
    facts = SubjectFacts(open_investigation_ids=("INC-9",), open_debt=True)
    plan = plan_erasure(SUBJECT, dm, None, [hold((C.web,))], facts, NOW)
    cctv = plan.for_system(System.cctv)
    assert cctv is not None
    assert cctv.keep[0].ground.startswith("legal_claims: investigation hold")
    assert "INC-9" in cctv.keep[0].reason
    orders = plan.for_system(System.orders)
    assert orders is not None
    assert {r.reason for r in orders.keep} == {"debt open"}
    web = plan.for_system(System.web)
    assert web is not None
    assert web.keep[0].reason == "litigation: claim 2026/17"
    assert "H-1" in web.keep[0].ground


def test_known_holdings_limit_the_plan(dm: DataMap) -> None:
    holdings = {System.crm: {C.contact}, System.cctv: set[Category]()}
    plan = plan_erasure(SUBJECT, dm, holdings, [], SubjectFacts(), NOW)
    assert [(i.system, i.erase) for i in plan.instructions] == [(System.crm, (C.contact,))]
    assert plan.for_system(System.orders) is None
    assert plan.erased_categories == {C.contact}


def test_naive_now_is_rejected(dm: DataMap) -> None:
    with pytest.raises(DomainError, match="timezone-aware"):
        plan_erasure(SUBJECT, dm, None, [], SubjectFacts(), datetime(2026, 1, 1))


def test_system_missing_from_datamap_is_rejected(dm: DataMap) -> None:
    small = dm.model_copy(update={"systems": {System.crm: dm.systems[System.crm]}})
    with pytest.raises(DomainError, match="not in the data map"):
        plan_erasure(SUBJECT, small, {System.cctv: {C.cctv}}, [], SubjectFacts(), NOW)


def test_recipients_to_notify(dm: DataMap) -> None:
    credit = {r.name for r in recipients_to_notify(dm, {C.credit})}
    assert credit == {
        "Credit reference agencies",
        "Debt collection agencies",
        "ALL LED group companies",
        "Fraud and theft prevention agencies",
    }
    # Disclosures to authorities are not recalled by Art. 19 notifications.
    assert recipients_to_notify(dm, {C.cctv}) == []
    assert recipients_to_notify(dm, set()) == []


def test_recipients_of_a_plan(dm: DataMap) -> None:
    plan = plan_erasure(SUBJECT, dm, None, [], SubjectFacts(), NOW)
    names = {r.name for r in recipients_to_notify(dm, plan.erased_categories)}
    assert "Product suppliers" in names
    assert "Law enforcement agencies (on valid request)" not in names
