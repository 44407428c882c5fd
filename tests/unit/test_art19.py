"""Art. 19 recipients from what was actually disclosed (issue 14 point 12).

UK GDPR Art. 19: the controller communicates any rectification, erasure or restriction
"to each recipient to whom the personal data have been disclosed". ICO guidance on the
right to erasure ("Do we have to tell other organisations about the erasure?"): tell
each recipient you disclosed the data to. Recipients that never received the subject's
data are not told; the data map only says who may receive what.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from privops.adapters.datamap_file import load_datamap
from privops.core.datamap import DataMap
from privops.core.erasure import (
    MAX_REFS_PER_RECIPIENT,
    Disclosure,
    RecipientNotice,
    SubjectFacts,
    plan_erasure,
    recipients_exempt,
    recipients_to_notify,
)
from privops.core.vocab import Category

C = Category
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
REAL = Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml"

CRA = "Credit reference agencies"
DEBT = "Debt collection agencies"
BANKS = "Banks and payment processors"
GROUP = "ALL LED group companies"
POLICE = "Law enforcement agencies (on valid request)"


@pytest.fixture(scope="module")
def dm() -> DataMap:
    return load_datamap(REAL)


def sent(
    recipient: str, *categories: Category, ref: str | None = None, days: int = 0
) -> Disclosure:
    at = T0 + timedelta(days=days)
    return Disclosure(
        recipient=recipient, recipient_ref=ref, categories=categories, first_at=at, last_at=at
    )


def notice(recipient: str, categories: tuple[Category, ...], *refs: str) -> RecipientNotice:
    return RecipientNotice(recipient=recipient, categories=categories, recipient_refs=refs)


# ------------------------------------------------------------------- who is told, with what

# name, affected categories, disclosures, expected notices
NOTIFY = [
    pytest.param(
        {C.contact, C.purchases, C.payment}, [], [],
        id="cash-customer-no-disclosures-tells-nobody",
    ),
    pytest.param(
        {C.contact, C.credit}, [sent(CRA, C.contact, C.credit, ref="SRCH-1")],
        [notice(CRA, (C.contact, C.credit), "SRCH-1")],
        id="credit-search-tells-only-the-agency-searched-with-its-ref",
    ),
    pytest.param(
        {C.contact}, [sent(CRA, C.credit, ref="SRCH-1")], [],
        id="recipient-without-an-affected-category-is-not-told",
    ),
    pytest.param(
        {C.contact}, [sent(CRA, C.contact, C.credit, ref="SRCH-1")],
        [notice(CRA, (C.contact,), "SRCH-1")],
        id="notice-names-only-the-affected-categories",
    ),
    pytest.param(
        {C.contact, C.credit},
        [sent(CRA, C.credit, ref="SRCH-2"), sent(CRA, C.contact, ref="SRCH-1"),
         sent(CRA, C.contact)],
        [notice(CRA, (C.contact, C.credit), "SRCH-1", "SRCH-2")],
        id="every-ref-the-recipient-holds-one-notice",
    ),
    pytest.param(
        {C.contact}, [sent(CRA, C.contact, ref="SRCH-1"), sent(CRA, C.credit, ref="SRCH-2")],
        [notice(CRA, (C.contact,), "SRCH-1")],
        id="refs-only-from-disclosures-of-affected-categories",
    ),
    pytest.param(
        {C.cctv, C.contact}, [sent(POLICE, C.cctv, ref="CASE-9")], [],
        id="recipient-exempt-in-the-data-map-is-not-told",
    ),
    pytest.param(
        {C.contact, C.credit},
        [sent(DEBT, C.credit, ref="DC-7"), sent("Acme Collections (left the map)", C.contact),
         sent(CRA, C.contact, ref="SRCH-1")],
        [notice(CRA, (C.contact,), "SRCH-1"), notice(DEBT, (C.credit,), "DC-7"),
         notice("Acme Collections (left the map)", (C.contact,))],
        id="data-map-order-then-recipients-no-longer-listed",
    ),
    pytest.param(set(), [sent(CRA, C.contact, ref="SRCH-1")], [], id="nothing-affected"),
]  # fmt: skip


@pytest.mark.parametrize(("categories", "disclosures", "expected"), NOTIFY)
def test_recipients_to_notify(
    dm: DataMap,
    categories: set[Category],
    disclosures: list[Disclosure],
    expected: list[RecipientNotice],
) -> None:
    assert recipients_to_notify(dm, categories, disclosures) == expected


def test_an_exempt_recipient_that_received_affected_data_is_left_to_the_dpo(
    dm: DataMap,
) -> None:
    """Art. 19 has no standing exemption: privops does not tell an authority the data
    map exempts, but says it is there for the DPO to weigh (legal review, session 33).
    One that received nothing affected is not named."""
    police = [sent(POLICE, C.cctv, ref="CASE-9"), sent(CRA, C.contact, ref="SRCH-1")]
    assert recipients_exempt(dm, {C.cctv, C.contact}, police) == [POLICE]
    assert recipients_exempt(dm, {C.credit}, police) == []
    assert recipients_exempt(dm, {C.contact}, [sent(CRA, C.contact)]) == []


def test_an_erasure_plan_tells_the_recipients_of_what_it_erases(dm: DataMap) -> None:
    facts = SubjectFacts(open_credit_account=True).disclosed(sent(GROUP, C.contact, C.credit))
    facts = facts.disclosed(sent(BANKS, C.payment, ref="TOKEN-1"))
    plan = plan_erasure("S-1", dm, None, [], facts, T0)
    # Credit and payment are kept while the account is open; contact is erased. The group
    # company is told about contact only; the bank, which received only payment data
    # that stays, is not told.
    assert {C.credit, C.payment}.isdisjoint(plan.erased_categories)
    assert C.contact in plan.erased_categories
    assert recipients_to_notify(dm, plan.erased_categories, facts.disclosures) == [
        notice(GROUP, (C.contact,)),
    ]


# ------------------------------------------------------- what the subject's facts remember

# name, disclosures in arrival order, expected (recipient, ref, categories, first, last)
REMEMBER = [
    pytest.param(
        [sent(CRA, C.credit, C.contact, ref="S-1")],
        [(CRA, "S-1", (C.contact, C.credit), 0, 0)], id="one-disclosure",
    ),
    pytest.param(
        [sent(CRA, C.credit, ref="S-1", days=2), sent(CRA, C.contact, ref="S-1", days=1)],
        [(CRA, "S-1", (C.contact, C.credit), 1, 2)],
        id="same-recipient-and-ref-merge-categories-and-times",
    ),
    pytest.param(
        [sent(DEBT, C.credit, ref="D-1"), sent(CRA, C.credit, ref="S-2"), sent(CRA, C.credit)],
        [(CRA, None, (C.credit,), 0, 0), (CRA, "S-2", (C.credit,), 0, 0),
         (DEBT, "D-1", (C.credit,), 0, 0)],
        id="one-entry-per-recipient-and-ref-sorted",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("disclosures", "expected"), REMEMBER)
def test_facts_remember_disclosures(
    disclosures: list[Disclosure],
    expected: list[tuple[str, str | None, tuple[Category, ...], int, int]],
) -> None:
    facts = SubjectFacts()
    for disclosure in disclosures:
        facts = facts.disclosed(disclosure)
    assert [
        (d.recipient, d.recipient_ref, d.categories, (d.first_at - T0).days, (d.last_at - T0).days)
        for d in facts.disclosures
    ] == expected


def test_a_redelivered_disclosure_changes_nothing() -> None:
    facts = SubjectFacts().disclosed(sent(CRA, C.credit, ref="S-1"))
    assert facts.disclosed(sent(CRA, C.credit, ref="S-1")) is facts


def test_references_per_recipient_are_bounded_and_the_recipient_still_told(
    dm: DataMap,
) -> None:
    facts = SubjectFacts()
    for n in range(MAX_REFS_PER_RECIPIENT + 5):
        facts = facts.disclosed(sent(BANKS, C.payment, ref=f"TX-{n:03d}", days=n))
    facts = facts.disclosed(sent(BANKS, C.contact, ref="TX-020", days=30))
    banks = [d for d in facts.disclosures if d.recipient == BANKS]
    refs = [d.recipient_ref for d in banks if d.recipient_ref]
    assert len(refs) == MAX_REFS_PER_RECIPIENT
    assert "TX-000" not in refs  # the least recently used went first
    assert "TX-020" in refs
    (folded,) = [d for d in banks if d.recipient_ref is None]
    assert folded.categories == (C.payment,)
    assert (folded.first_at, folded.last_at) == (T0, T0 + timedelta(days=4))
    (told,) = recipients_to_notify(dm, {C.payment, C.contact}, facts.disclosures)
    assert told.categories == (C.contact, C.payment)
    assert len(told.recipient_refs) == MAX_REFS_PER_RECIPIENT


def test_facts_with_disclosures_survive_the_table_round_trip() -> None:
    facts = SubjectFacts().disclosed(sent(CRA, C.credit, C.contact, ref="S-1"))
    assert SubjectFacts.model_validate(facts.model_dump(mode="json")) == facts
    assert SubjectFacts.model_validate({}).disclosures == ()  # facts stored before this


def test_an_erasure_audits_the_exempt_recipient_it_did_not_tell(dm: DataMap) -> None:
    """The plan's wiring: the police's CCTV clip is erased, the police are not told, and
    the audit says so for the DPO (PrivopsRecipientNoticeForReview counts the step)."""
    from privops.core import workflow as wf
    from privops.core.identity import merge
    from privops.core.vocab import RequestType, System
    from tests.unit.test_outcome_notices import NOW, SUBJECT, context, submit

    seen = merge(None, SUBJECT, System.cctv, {"camera_ref": "cam-2"}, NOW - timedelta(days=9))
    facts = SubjectFacts(disclosures=(sent(POLICE, C.cctv, ref="CASE-9"),))
    ctx = replace(context(dm, facts), identity=seen)
    outcome = wf.on_command(None, submit(RequestType.erasure), ctx)
    steps = [(a.action, a.after) for a in outcome.audit if "notification" in a.action]
    assert steps == [("notification_withheld", POLICE)]
