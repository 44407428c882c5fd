"""What business events and directives mean for consent and retention (privops.core.facts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from privops.adapters.datamap_file import load_datamap
from privops.core import records as r
from privops.core.consent import ConsentFact, FactKind, SoftOptIn, SubjectConsent, apply, decide
from privops.core.datamap import Grant
from privops.core.erasure import (
    MAX_CLOSED_INVESTIGATIONS,
    MAX_OPEN_INVESTIGATIONS,
    Disclosure,
    SubjectFacts,
    plan_erasure,
)
from privops.core.errors import WrongTopic
from privops.core.facts import (
    MAX_CLOCK_SKEW,
    DirectiveKind,
    SoftOptInNotFromSale,
    UndeclaredDisclosure,
    UnknownDirectiveKind,
    admit_ingest,
    consent_facts,
    consent_state_record,
    directive_fact,
    fact_event_id,
    foreign_fact,
    granted_facts,
    recalled_suppression,
    source_may_seal,
    too_far_ahead,
    too_far_back,
    updated_facts,
)
from privops.core.topics import SUBJECT_DIRECTIVES, SUPPRESSION
from privops.core.vocab import Category, Channel, LawfulBasis, Purpose, System

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SUBJECT = "S-1"
F = FactKind
M = Purpose.marketing
email, sms, phone = Channel.email, Channel.sms, Channel.telephone
SOFT = LawfulBasis.soft_opt_in
VALID_SOFT = SoftOptIn(
    collected_in_sale_or_negotiation=True, own_similar_products=True, opt_out_offered=True
)
DM = load_datamap(Path(__file__).resolve().parents[2] / "deploy" / "datamap.yaml")


def event(
    kind: type[r.UpstreamEvent],
    source: System = System.orders,
    event_id: str = "ev-1",
    **fields: Any,
) -> Any:
    return kind(
        event_id=event_id,
        occurred_at=T0,
        source=source,
        subject_id=SUBJECT,
        identifiers=r.Identifiers(customer_id="C-1"),
        **fields,
    )


def order(**flags: bool) -> r.OrderPlaced:
    """A sale that collected the customer's email and phone (a soft opt-in covers only
    the details the sale collected: tests/unit/test_soft_opt_in_channels.py)."""
    return r.OrderPlaced(
        event_id="ev-1",
        occurred_at=T0,
        source=System.orders,
        subject_id=SUBJECT,
        identifiers=r.Identifiers(customer_id="C-1", email="ann@example.com", phone="07700900123"),
        order_id="O-1",
        total_pence=4200,
        **flags,
    )


# (event, expected [(kind, purpose, channel, basis)])
CONSENT_MEANING = [
    pytest.param(
        event(r.ConsentGiven, System.crm, purpose=M, channel=email),
        [(F.granted, M, email, LawfulBasis.consent)], id="consent-given",
    ),
    pytest.param(
        event(r.ConsentWithdrawn, System.crm, purpose=M, channel=sms),
        [(F.withdrawn, M, sms, LawfulBasis.none)], id="consent-withdrawn",
    ),
    pytest.param(
        event(r.UnsubscribeClicked, System.marketing, campaign_id="C"),
        [(F.withdrawn, M, email, LawfulBasis.none)], id="unsubscribe-link",
    ),
    pytest.param(
        event(r.StopReplyReceived, System.marketing, campaign_id="C"),
        [(F.withdrawn, M, sms, LawfulBasis.none)], id="stop-reply",
    ),
    pytest.param(
        event(r.MarketingObjectionRecorded, System.crm),
        [(F.objected, None, None, LawfulBasis.none)], id="objection",
    ),
    pytest.param(
        event(r.TpsStatusChecked, System.telephony, listed=True),
        [(F.tps_listed, None, None, LawfulBasis.none)], id="tps-listed",
    ),
    pytest.param(
        event(r.TpsStatusChecked, System.telephony, listed=False),
        [(F.tps_unlisted, None, None, LawfulBasis.none)], id="tps-unlisted",
    ),
    pytest.param(
        event(r.TpsWaiverRecorded, System.telephony, evidence_ref="call-1"),
        [(F.tps_no_objection, None, None, LawfulBasis.none)], id="tps-do-not-object-notice",
    ),
    # PECR reg. 22(3): a soft opt-in needs the sale, similar products AND the opt-out offered.
    pytest.param(
        order(marketing_opt_out_offered=True, similar_products_marketing=True),
        [(F.granted, M, email, SOFT), (F.granted, M, sms, SOFT)],
        id="pecr22-3-sale-with-all-conditions",
    ),
    # Issue 14 point 3: absent flags mean "not offered"; the old code granted here.
    pytest.param(order(), [], id="pecr22-3-sale-silent-on-opt-out-no-soft-opt-in"),
    pytest.param(
        order(marketing_opt_out_offered=True), [],
        id="pecr22-3-opt-out-offered-but-not-similar-products",
    ),
    pytest.param(
        order(similar_products_marketing=True), [],
        id="pecr22-3-similar-products-but-no-opt-out-offered",
    ),
    pytest.param(
        order(marketing_opt_out_offered=True, marketing_opt_out_ticked=True,
              similar_products_marketing=True),
        [(F.withdrawn, M, email, LawfulBasis.none), (F.withdrawn, M, sms, LawfulBasis.none)],
        id="opt-out-box-ticked-is-a-refusal",
    ),
    # Issue 14 point 5 (PECR reg. 6): the marketing-cookie choice governs profiling; the
    # analytics choice is not mapped (DUAA 2025 analytics exception is the web system's).
    pytest.param(
        event(r.CookieConsentRecorded, System.web, analytics=True, marketing=False),
        [(F.marketing_cookies_refused, None, None, LawfulBasis.none)],
        id="pecr6-marketing-cookies-refused",
    ),
    pytest.param(
        event(r.CookieConsentRecorded, System.web, analytics=False, marketing=True),
        [(F.marketing_cookies_accepted, None, None, LawfulBasis.none)],
        id="marketing-cookies-accepted",
    ),
    pytest.param(event(r.PaymentRecorded, payment_id="P", order_id="O", amount_pence=1), [],
                 id="payment-no-consent-meaning"),
]  # fmt: skip


@pytest.mark.parametrize(("source_event", "expected"), CONSENT_MEANING)
def test_consent_meaning(source_event: r.UpstreamEvent, expected: list[tuple[Any, ...]]) -> None:
    facts = consent_facts(source_event)
    assert [(f.kind, f.purpose, f.channel, f.basis) for f in facts] == expected
    for fact in facts:
        assert fact.event_id == source_event.event_id
        assert fact.occurred_at == source_event.occurred_at
        assert fact.source is source_event.source
        assert fact.evidence == f"{source_event.source}.events:{type(source_event).__name__}:ev-1"


def test_sale_soft_opt_in_records_its_conditions() -> None:
    facts = consent_facts(order(marketing_opt_out_offered=True, similar_products_marketing=True))
    assert {f.soft_opt_in for f in facts} == {VALID_SOFT}


@pytest.mark.parametrize(
    "claimed",
    [
        r.SoftOptIn(collected_in_sale_or_negotiation=True, own_similar_products=True),
        r.SoftOptIn(
            collected_in_sale_or_negotiation=True, own_similar_products=True, opt_out_offered=True
        ),
        None,
    ],
    ids=["conditions-missing", "conditions-claimed-met", "no-conditions"],
)
def test_a_consent_given_claiming_a_soft_opt_in_is_refused(claimed: r.SoftOptIn | None) -> None:
    """DESIGN.md section 5: a soft opt-in arises only from a sale event saying the opt-out
    was offered. Before, any system's ConsentGiven could declare one, conditions and all,
    and email marketing was allowed with no sale behind it (review, session 25)."""
    given = event(
        r.ConsentGiven, System.web, purpose=M, channel=email, basis=SOFT, soft_opt_in=claimed
    )
    with pytest.raises(
        SoftOptInNotFromSale, match=r"sale or negotiation event \(OrderPlaced, QuoteRequested\)"
    ) as info:
        consent_facts(given)
    assert isinstance(info.value, ValueError)  # the ingest agent dead-letters it


def test_a_consent_given_with_conditions_but_consent_basis_is_plain_consent() -> None:
    conditions = r.SoftOptIn(collected_in_sale_or_negotiation=True)
    given = event(r.ConsentGiven, System.crm, purpose=M, channel=sms, soft_opt_in=conditions)
    (fact,) = consent_facts(given)
    assert (fact.basis, fact.soft_opt_in) == (LawfulBasis.consent, None)


def test_consent_given_with_an_impossible_shape_is_rejected() -> None:
    given = event(r.ConsentGiven, System.crm, purpose=Purpose.service, channel=email)
    with pytest.raises(ValidationError, match="service"):
        consent_facts(given)


# --------------------------------------------------------------------- retention facts

LATER = T0 + timedelta(days=3)
OPEN = SubjectFacts(open_credit_account=True)

# (facts before, event, facts after)
RETENTION = [
    pytest.param(SubjectFacts(), order(), SubjectFacts(latest_financial_record_at=T0),
                 id="order-is-a-financial-record"),
    pytest.param(
        SubjectFacts(latest_financial_record_at=LATER), order(),
        SubjectFacts(latest_financial_record_at=LATER), id="older-record-keeps-the-latest",
    ),
    pytest.param(
        SubjectFacts(), event(r.PaymentRecorded, payment_id="P", order_id="O", amount_pence=1),
        SubjectFacts(latest_financial_record_at=T0), id="payment-is-a-financial-record",
    ),
    pytest.param(
        SubjectFacts(),
        event(r.AccountBalanceChanged, credit_account_open=True, balance_pence=100),
        SubjectFacts(open_credit_account=True, balance_at=T0), id="credit-account-open",
    ),
    pytest.param(
        OPEN, event(r.AccountBalanceChanged, credit_account_open=False, balance_pence=0),
        SubjectFacts(credit_closed_at=T0, balance_at=T0), id="account-closed-and-settled",
    ),
    pytest.param(
        OPEN, event(r.AccountBalanceChanged, credit_account_open=False, balance_pence=500),
        SubjectFacts(open_debt=True, balance_at=T0), id="closed-with-balance-is-open-debt",
    ),
    pytest.param(
        OPEN,
        event(r.AccountBalanceChanged, credit_account_open=True, balance_pence=0,
              overdue_pence=10),
        SubjectFacts(open_credit_account=True, open_debt=True, balance_at=T0),
        id="overdue-is-open-debt",
    ),
    pytest.param(
        SubjectFacts(open_investigation_ids=("INC-2",)),
        event(r.InvestigationOpened, System.cctv, investigation_id="INC-1", reason="theft"),
        SubjectFacts(
            open_investigation_ids=("INC-1", "INC-2"), opened_investigations=(("INC-1", T0),)
        ),
        id="investigation-opened",
    ),
    pytest.param(
        SubjectFacts(open_investigation_ids=("INC-1", "INC-2")),
        event(r.InvestigationClosed, System.cctv, investigation_id="INC-1"),
        SubjectFacts(
            open_investigation_ids=("INC-2",),
            closed_investigations=(("INC-1", T0),),
            investigation_closed_at=T0,
        ),
        id="investigation-closed",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("before", "source_event", "after"), RETENTION)
def test_retention_facts(
    before: SubjectFacts, source_event: r.UpstreamEvent, after: SubjectFacts
) -> None:
    assert updated_facts(before, source_event, DM) == after


def balance(at: datetime, *, open_: bool, pence: int, overdue: int = 0) -> Any:
    made = event(
        r.AccountBalanceChanged,
        event_id=f"bal-{at.isoformat()}",
        credit_account_open=open_,
        balance_pence=pence,
        overdue_pence=overdue,
    )
    return made.model_copy(update={"occurred_at": at})


def test_a_late_older_balance_does_not_settle_a_newer_debt() -> None:
    """The latest balance by occurred_at wins (DESIGN.md section 5). Before, a settled
    balance from 2024 arriving after an overdue one from 2025 closed the debt, and an
    erasure then deleted the purchases and kept credit only until 2030."""
    facts = updated_facts(SubjectFacts(), balance(LATER, open_=False, pence=500, overdue=500), DM)
    assert facts.open_debt
    late = updated_facts(facts, balance(T0, open_=False, pence=0), DM)
    assert late is facts
    # A newer one still settles it.
    settled = updated_facts(facts, balance(LATER + timedelta(days=1), open_=False, pence=0), DM)
    assert not settled.open_debt
    assert settled.credit_closed_at == LATER + timedelta(days=1)


def investigation(kind: type[r.UpstreamEvent], at: datetime, iid: str) -> Any:
    extra = {"reason": "theft"} if kind is r.InvestigationOpened else {}
    made = event(kind, System.cctv, f"{iid}-{kind.__name__}", investigation_id=iid, **extra)
    return made.model_copy(update={"occurred_at": at})


def test_the_latest_investigation_close_counts_whatever_order_they_arrive_in() -> None:
    """Footage is kept two years after the conclusion of any investigation (privacy
    notice): a late close of an older investigation must not bring that date forward."""
    facts = SubjectFacts()
    steps: list[tuple[type[r.UpstreamEvent], datetime, str]] = [
        (r.InvestigationOpened, T0, "A"),
        (r.InvestigationOpened, T0, "B"),
        (r.InvestigationClosed, LATER, "B"),
        (r.InvestigationClosed, T0 + timedelta(hours=1), "A"),
    ]
    for kind, at, iid in steps:
        facts = updated_facts(facts, investigation(kind, at, iid), DM)
    assert facts.open_investigation_ids == ()
    assert facts.investigation_closed_at == LATER


def test_an_investigation_opened_after_its_close_arrived_stays_closed() -> None:
    """Before, the late open reopened it for good: the footage was never erased."""
    facts = updated_facts(SubjectFacts(), investigation(r.InvestigationClosed, LATER, "Z"), DM)
    facts = updated_facts(facts, investigation(r.InvestigationOpened, T0, "Z"), DM)
    assert facts.open_investigation_ids == ()
    assert facts.investigation_closed_at == LATER


def test_closed_investigations_remembered_are_bounded() -> None:
    facts = SubjectFacts()
    for n in range(MAX_CLOSED_INVESTIGATIONS + 5):
        facts = updated_facts(facts, investigation(r.InvestigationClosed, T0, f"I-{n}"), DM)
    assert len(facts.closed_investigations) == MAX_CLOSED_INVESTIGATIONS
    assert facts.closed_investigations[-1] == (f"I-{MAX_CLOSED_INVESTIGATIONS + 4}", T0)


def test_open_investigations_listed_are_bounded_and_one_past_them_keeps_the_footage() -> None:
    """Before, every id a system opened was listed, until the subject's facts were a
    changelog record Kafka refused (review, session 25). Past the bound an id is not
    listed, but that one is open is kept: closing every listed one still keeps CCTV
    with no end date, as erasing footage under investigation cannot be undone."""
    facts = SubjectFacts()
    for n in range(MAX_OPEN_INVESTIGATIONS + 3):
        facts = updated_facts(facts, investigation(r.InvestigationOpened, T0, f"I-{n:03}"), DM)
    assert len(facts.open_investigation_ids) == MAX_OPEN_INVESTIGATIONS
    assert facts.unlisted_investigation_open
    again = investigation(r.InvestigationOpened, T0, f"I-{MAX_OPEN_INVESTIGATIONS + 9}")
    assert updated_facts(facts, again, DM) is facts  # nothing more to write
    for iid in facts.open_investigation_ids:
        facts = updated_facts(facts, investigation(r.InvestigationClosed, LATER, iid), DM)
    assert facts.open_investigation_ids == ()
    plan = plan_erasure(SUBJECT, DM, None, [], facts, LATER + timedelta(days=3650))
    (cctv,) = [k for i in plan.instructions for k in i.keep if k.category is Category.cctv]
    assert cctv.until is None
    assert "not listed" in cctv.reason


def test_an_investigation_reopened_after_its_close_is_open_again() -> None:
    """Opened 1 Mar, closed 5 Mar, opened again 20 Mar, in order: open (the footage is
    kept with no end date). Only an open from before the close is the late one."""
    facts = SubjectFacts()
    steps: list[tuple[type[r.UpstreamEvent], datetime]] = [
        (r.InvestigationOpened, T0),
        (r.InvestigationClosed, T0 + timedelta(days=4)),
        (r.InvestigationOpened, T0 + timedelta(days=19)),
    ]
    for kind, at in steps:
        facts = updated_facts(facts, investigation(kind, at, "INV-7"), DM)
    assert facts.open_investigation_ids == ("INV-7",)
    # Its second close counts, and a late copy of the first changes nothing.
    closed = updated_facts(
        facts, investigation(r.InvestigationClosed, T0 + timedelta(days=30), "INV-7"), DM
    )
    assert closed.open_investigation_ids == ()
    late = updated_facts(
        closed, investigation(r.InvestigationClosed, T0 + timedelta(days=4), "INV-7"), DM
    )
    assert late is closed


OPENED, CLOSED, REOPENED = T0, T0 + timedelta(days=31), T0 + timedelta(days=59)
ROUND_TWO: list[tuple[type[r.UpstreamEvent], datetime]] = [
    (r.InvestigationOpened, OPENED),
    (r.InvestigationClosed, CLOSED),
    (r.InvestigationOpened, REOPENED),
]


@pytest.mark.parametrize(
    "order", [(0, 1, 2), (0, 2, 1), (2, 0, 1), (2, 1, 0), (1, 0, 2), (1, 2, 0)]
)
def test_a_reopened_investigation_is_open_whatever_order_its_events_arrive_in(
    order: tuple[int, int, int],
) -> None:
    """Opened in January, closed in February, opened again in March: open, in every
    order of arrival. Before, the close arriving after the reopening closed it, and the
    footage of an investigation still open could be erased (review, session 44)."""
    facts = SubjectFacts()
    for i in order:
        kind, at = ROUND_TWO[i]
        facts = updated_facts(facts, investigation(kind, at, "INV-9"), DM)
    assert facts.open_investigation_ids == ("INV-9",)
    plan = plan_erasure(SUBJECT, DM, None, [], facts, REOPENED + timedelta(days=3650))
    (cctv,) = [k for i in plan.instructions for k in i.keep if k.category is Category.cctv]
    assert cctv.until is None
    # The close of the second round closes it, and nothing of the first is left timed.
    later = REOPENED + timedelta(days=1)
    done = updated_facts(facts, investigation(r.InvestigationClosed, later, "INV-9"), DM)
    assert (done.open_investigation_ids, done.opened_investigations) == ((), ())


def test_an_investigation_opened_before_its_open_was_timed_still_closes() -> None:
    """Facts stored before 0.44 list an open investigation with no time: a close closes
    it, as before."""
    facts = SubjectFacts(open_investigation_ids=("INV-3",))
    closed = updated_facts(facts, investigation(r.InvestigationClosed, CLOSED, "INV-3"), DM)
    assert closed.open_investigation_ids == ()


def test_event_without_retention_meaning_returns_the_same_facts() -> None:
    facts = SubjectFacts(open_debt=True)
    unsubscribed = event(r.UnsubscribeClicked, System.marketing, campaign_id="C")
    assert updated_facts(facts, unsubscribed, DM) is facts


# ------------------------------------------- who may move a category's retention facts


def fact_bearing(kind: type[r.UpstreamEvent], source: System) -> Any:
    fields: dict[type[r.UpstreamEvent], dict[str, Any]] = {
        r.OrderPlaced: {"order_id": "O-1", "total_pence": 4200},
        r.PaymentRecorded: {"payment_id": "P-1", "order_id": "O-1", "amount_pence": 4200},
        r.AccountBalanceChanged: {"credit_account_open": False, "balance_pence": 0},
        r.InvestigationOpened: {"investigation_id": "INC-2", "reason": "theft"},
        r.InvestigationClosed: {"investigation_id": "INC-1"},
    }
    return event(kind, source, **fields[kind])


HOLDERS = {
    r.OrderPlaced: Category.purchases,
    r.PaymentRecorded: Category.payment,
    r.AccountBalanceChanged: Category.credit,
    r.InvestigationOpened: Category.cctv,
    r.InvestigationClosed: Category.cctv,
}
# What an open investigation and an open debt keep, and a financial record dated later:
# what a foreign event would have moved.
KEEPING = SubjectFacts(
    open_investigation_ids=("INC-1",),
    open_credit_account=True,
    open_debt=True,
    balance_at=T0 - timedelta(days=1),
    latest_financial_record_at=T0 - timedelta(days=1),
)


@pytest.mark.parametrize("source", list(System), ids=str)
@pytest.mark.parametrize("kind", list(HOLDERS), ids=lambda k: k.__name__)
def test_only_a_system_holding_the_category_moves_its_retention_facts(
    kind: type[r.UpstreamEvent], source: System
) -> None:
    """Review, session 34: the topic proved which system wrote an event, not that it
    held the data whose retention the event moves. web's InvestigationClosed closed
    cctv's investigation (its footage became erasable), marketing's balance closed an
    open debt, crm's orders stretched the six-year financial retention."""
    made = fact_bearing(kind, source)
    if HOLDERS[kind] in DM.systems[source].categories:
        assert foreign_fact(made, DM) is None
        assert updated_facts(KEEPING, made, DM) != KEEPING
        return
    assert updated_facts(KEEPING, made, DM) is KEEPING  # the fact is not taken ...
    why = foreign_fact(made, DM)  # ... and the worker says why (once per system and type)
    assert why is not None
    assert f"{kind.__name__} from {source.value}" in why
    assert f"{source.value} holds {HOLDERS[kind].value}" in why


def test_the_shipped_data_map_lets_only_orders_and_cctv_move_retention_facts() -> None:
    movers = {
        (kind.__name__, source.value)
        for kind, category in HOLDERS.items()
        for source in System
        if category in DM.systems[source].categories
    }
    assert movers == {
        ("OrderPlaced", "orders"),
        ("PaymentRecorded", "orders"),
        ("AccountBalanceChanged", "orders"),
        ("InvestigationOpened", "cctv"),
        ("InvestigationClosed", "cctv"),
    }


# (source, scope, may seal its events under it)
SEALING = [
    pytest.param(System.crm, "main", True, id="main"),
    pytest.param(System.orders, "retained:purchases:2032-03-30", True, id="own-category"),
    pytest.param(System.orders, "retained:credit:2019-01-01", True, id="own-category-past"),
    pytest.param(System.crm, "retained:contact:9999-12-31", True, id="own-category-open-ended"),
    pytest.param(System.crm, "retained:purchases:2032-03-30", False,
                 id="another-systems-category"),
    pytest.param(System.web, "retained:cctv:2028-01-01", False, id="cctv-from-web"),
    pytest.param(System.crm, "retained:unerased:2026-03-01", False, id="privops-own-scope"),
    pytest.param(System.orders, "retained:purchases:20320330", False, id="second-spelling"),
    pytest.param(System.orders, f"retained:{'a' * 46}:20320330", False,
                 id="second-spelling-at-the-longest"),
    pytest.param(System.orders, "retained:purchases", False, id="no-date"),
    pytest.param(System.orders, "purchases", False, id="not-a-retained-scope"),
]  # fmt: skip


@pytest.mark.parametrize(("source", "scope", "ok"), SEALING)
def test_a_system_seals_only_under_main_or_its_own_categories_retained_keys(
    source: System, scope: str, ok: bool
) -> None:
    """Review, session 34: the key service lists every stored key of a subject, and
    ingest opened fields under any of them: crm sealed under orders' retained purchases
    key kept its data readable for years after an erasure."""
    assert source_may_seal(source, scope, DM) is ok


# ----------------------------------------------------------- disclosures (Art. 19, 14.12)

CRA = "Credit reference agencies"


def disclosure(
    recipient: str = CRA, categories: tuple[Category, ...] = (Category.credit,), **fields: Any
) -> r.DataDisclosed:
    disclosed: r.DataDisclosed = event(
        r.DataDisclosed,
        disclosure_id="DISC-1",
        recipient=recipient,
        categories=list(categories),
        **fields,
    )
    return disclosed


def test_a_disclosure_is_remembered_with_the_recipients_reference() -> None:
    disclosed = disclosure(categories=(Category.credit, Category.contact), recipient_ref="S-77")
    facts = updated_facts(SubjectFacts(open_debt=True), disclosed, DM)
    assert facts.open_debt
    assert facts.disclosures == (
        Disclosure(
            recipient=CRA,
            recipient_ref="S-77",
            categories=(Category.contact, Category.credit),
            first_at=T0,
            last_at=T0,
        ),
    )
    assert updated_facts(facts, disclosed, DM) is facts  # redelivered: nothing changes


def test_an_empty_recipient_ref_is_no_reference() -> None:
    facts = updated_facts(SubjectFacts(), disclosure(recipient_ref=""), DM)
    assert [d.recipient_ref for d in facts.disclosures] == [None]


# (disclosure, error) - the data map's recipients say who may receive what
UNDECLARED = [
    pytest.param(
        disclosure("Acme Data Brokers"), r"named \(17 characters\) is not in the data map",
        id="recipient-not-in-the-data-map",
    ),
    pytest.param(
        disclosure(CRA, (Category.credit, Category.cctv, Category.web)),
        "'Credit reference agencies' is not declared to receive cctv, web",
        id="category-the-recipient-is-not-declared-to-receive",
    ),
    pytest.param(disclosure(CRA, ()), "names no category", id="no-category"),
]  # fmt: skip


@pytest.mark.parametrize(("disclosed", "error"), UNDECLARED)
def test_an_undeclared_disclosure_is_a_typed_error(disclosed: r.DataDisclosed, error: str) -> None:
    with pytest.raises(UndeclaredDisclosure, match=error) as raised:
        updated_facts(SubjectFacts(), disclosed, DM)
    assert raised.value.reason == "undeclared_disclosure"
    # A name the data map does not hold is the producer's text, perhaps a person's: the
    # dead letter's error never repeats it (review, session 35).
    assert "Acme" not in str(raised.value)


# ------------------------------------------------------------------------ directives


def directive(kind: str, **fields: Any) -> r.SubjectDirective:
    return r.SubjectDirective(
        directive_id=f"REQ-1:{kind}",
        subject_id=SUBJECT,
        request_id="REQ-1",
        kind=kind,
        occurred_at=T0,
        **fields,
    )


@pytest.mark.parametrize("kind", list(DirectiveKind))
def test_every_directive_kind_is_a_fact(kind: DirectiveKind) -> None:
    fact = directive_fact(directive(kind.value))
    assert fact.kind is FactKind(kind.value)
    assert fact.evidence == "privacy.commands:REQ-1"
    assert fact.event_id == f"REQ-1:{kind}"


def test_withdrawal_directive_keeps_its_purpose_and_channel() -> None:
    fact = directive_fact(directive("withdrawn", purpose=M, channel=sms))
    assert (fact.purpose, fact.channel) == (M, sms)


def test_unknown_directive_kind_is_a_typed_error() -> None:
    with pytest.raises(UnknownDirectiveKind, match=r"'paused' \(known: restricted"):
        directive_fact(directive("paused"))


def test_a_suppression_recalled_from_the_list_cites_it_and_suppresses() -> None:
    fact = recalled_suppression("sr_0123456789abcdef01234567", T0)
    assert fact.kind is FactKind.suppressed
    assert fact.evidence == f"{SUPPRESSION}:sr_0123456789abcdef01234567"
    state, changes = apply(None, SUBJECT, fact)
    assert state.suppressed
    assert [c.kind for c in changes] == [FactKind.suppressed]


# -------------------------------------------------------------------------- event ids


@pytest.mark.parametrize(
    "event_id",
    [
        "sms-stop-07700900123-20250310T0900",
        "stop 07700 900123",
        "call+447700900123",
        "stop_07700900123",
        "STOP07700900123x",
        "+44 (0)20 7946 0958 opted out",
        "ann@example.com",
        "x" * 121,
        # numbers privops takes in any form normalise_phone does (review, session 35)
        "sms-stop 0044 7700 900123",
        "stop 0044 7700 900123",
        "sms-stop-+14155550100",
        "stop_+33612345678",
    ],
)
def test_an_event_id_holding_contact_details_is_cited_by_a_digest(event_id: str) -> None:
    """Consent facts cite their event, and the consent state (kept whole after an
    erasure) remembers it: only an ``@`` was screened, so an id made with a phone number
    was kept for ever (review, session 26)."""
    digest = fact_event_id(event_id)
    assert digest.startswith("sha256:")
    assert digest == fact_event_id(event_id)  # a redelivery is still known
    stop = r.StopReplyReceived(
        event_id=event_id,
        occurred_at=T0,
        source=System.marketing,
        subject_id=SUBJECT,
        identifiers=r.Identifiers(customer_id="C-1"),
        campaign_id="spring",
    )
    (fact,) = consent_facts(stop)
    state, _ = apply(None, SUBJECT, fact)
    text = state.model_dump_json()
    assert "900123" not in text
    assert "7946" not in text
    assert "example" not in text
    assert "555" not in text
    assert "612345678" not in text


@pytest.mark.parametrize(
    "event_id",
    ["ev-1", "9ac82884-cd15-4b58-b006-733404b1c69c", "order-1710000000123", "ORD-2025-000123"],
)
def test_an_ordinary_event_id_is_cited_as_it_is(event_id: str) -> None:
    assert fact_event_id(event_id) == event_id


# ---------------------------------------------------------------------- state record


def test_consent_state_record() -> None:
    sale = order(marketing_opt_out_offered=True, similar_products_marketing=True)
    check = event(r.TpsStatusChecked, System.telephony, listed=True, event_id="ev-2")
    state = None
    for fact in [*consent_facts(sale), *consent_facts(check)]:
        state, _ = apply(state, SUBJECT, fact)
    assert state is not None
    record = consent_state_record(state, LATER)
    assert record.subject_id == SUBJECT
    assert record.updated_at == T0
    assert [(p.purpose, p.channel, p.status, p.basis) for p in record.preferences] == [
        (M, email, "granted", SOFT),
        (M, sms, "granted", SOFT),
    ]
    assert record.tps_listed
    assert (record.marketing_objection, record.restricted, record.suppressed) == (False,) * 3


NO_OPT_OUT = SoftOptIn(
    collected_in_sale_or_negotiation=True, own_similar_products=True, opt_out_offered=False
)


@pytest.mark.parametrize(
    ("conditions", "status", "basis"),
    [(VALID_SOFT, "granted", SOFT), (NO_OPT_OUT, "not_asked", LawfulBasis.none)],
    ids=["conditions-met", "opt-out-not-offered"],
)
def test_a_soft_opt_in_is_published_as_the_decision_takes_it(
    conditions: SoftOptIn, status: str, basis: LawfulBasis
) -> None:
    """State from before a ConsentGiven's soft opt-in was refused can hold one whose
    conditions fail: `decide` refuses it (soft_opt_in_invalid), but privacy.consent-state
    said "granted, soft_opt_in", without the conditions, so its readers took it for a yes
    (review, session 25)."""
    claimed = ConsentFact(
        event_id="ev-old",
        occurred_at=T0,
        source=System.web,
        kind=F.granted,
        purpose=M,
        channel=email,
        basis=SOFT,
        soft_opt_in=conditions,
        evidence="web.events:ConsentGiven:ev-old",
    )
    state, _ = apply(None, SUBJECT, claimed)
    (pref,) = consent_state_record(state, LATER).preferences
    assert (pref.status, pref.basis) == (status, basis)
    assert (pref.event_id, pref.evidence) == ("ev-old", claimed.evidence)
    assert decide(state, M, email, now=T0).allowed is (status == "granted")


def test_consent_state_record_of_a_state_without_time_uses_now() -> None:
    record = consent_state_record(SubjectConsent(subject_id=SUBJECT), LATER)
    assert record.updated_at == LATER
    assert record.preferences == []


# ------------------------------------------------------- records on their topic (13.2)
# DESIGN.md section 8: "a record type that does not belong on its topic" is a dead letter.
# Kafka's ACLs decide who writes a topic, so the topic says where a record came from.


def hold(cmd: type[r.LegalHoldPlaced | r.LegalHoldReleased], **fields: Any) -> Any:
    return cmd(
        command_id="CMD-1",
        request_id="REQ-1",
        issued_at=T0,
        actor="dpo",
        hold_id="H-1",
        subject_id=SUBJECT,
        **fields,
    )


PLACED = hold(r.LegalHoldPlaced, categories=[Category.cctv], reason="claim")
RELEASED = hold(r.LegalHoldReleased)
LIFT = directive("restriction_lifted")
UNSUBSCRIBED = event(r.UnsubscribeClicked, System.marketing, campaign_id="C")
ANSWER = r.TaskCompleted(task_id="T-1", request_id="REQ-1", system=System.crm, answered_at=T0)

# (topic, record) the ingest agent acts on
ADMITTED = [
    pytest.param("marketing.events", UNSUBSCRIBED, id="event-on-its-systems-topic"),
    pytest.param("orders.events", order(), id="order-on-orders"),
    pytest.param(SUBJECT_DIRECTIVES, LIFT, id="directive-on-the-internal-topic"),
    pytest.param(SUBJECT_DIRECTIVES, PLACED, id="hold-placed-on-the-internal-topic"),
    pytest.param(SUBJECT_DIRECTIVES, RELEASED, id="hold-released-on-the-internal-topic"),
]

# (topic, record, error): issue 13's attacks and their kin
REFUSED = [
    pytest.param("crm.events", LIFT, "SubjectDirective does not belong on crm.events",
                 id="directive-on-an-upstream-topic-lifts-no-restriction"),
    pytest.param("marketing.events", RELEASED, "LegalHoldReleased does not belong on",
                 id="hold-release-on-an-upstream-topic"),
    pytest.param("cctv.events", PLACED, "LegalHoldPlaced does not belong on",
                 id="hold-placed-on-an-upstream-topic"),
    pytest.param(SUBJECT_DIRECTIVES, UNSUBSCRIBED, "UnsubscribeClicked does not belong on",
                 id="upstream-event-on-the-directives-topic"),
    pytest.param("crm.events", ANSWER, "TaskCompleted does not belong on crm.events",
                 id="task-answer-on-an-upstream-topic"),
    pytest.param("orders.events", UNSUBSCRIBED, "UnsubscribeClicked from marketing published on",
                 id="event-naming-another-system-as-source"),
    pytest.param("privacy.commands", UNSUBSCRIBED, "privacy.commands is not an ingest topic",
                 id="topic-ingest-does-not-read"),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "record"), ADMITTED)
def test_records_on_their_own_topic_are_admitted(topic: str, record: r.Record) -> None:
    assert admit_ingest(topic, record) is record


@pytest.mark.parametrize(("topic", "record", "error"), REFUSED)
def test_records_on_another_topic_are_refused(topic: str, record: r.Record, error: str) -> None:
    with pytest.raises(WrongTopic, match=error) as raised:
        admit_ingest(topic, record)
    assert raised.value.reason == "wrong_topic"


def test_an_event_a_few_minutes_ahead_is_taken_and_one_further_is_not() -> None:
    now = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    assert too_far_ahead(now - timedelta(days=3650), now) is None  # history is fine
    assert too_far_ahead(now + MAX_CLOCK_SKEW, now) is None
    why = too_far_ahead(now + timedelta(hours=1), now)
    assert why is not None
    assert "60 minutes ahead" in why
    assert "stamps UTC" in why


def test_an_event_dated_before_any_real_date_is_not_taken_as_dated() -> None:
    assert too_far_back(datetime(2000, 1, 1, tzinfo=UTC)) is None
    assert too_far_back(datetime(2016, 4, 1, tzinfo=UTC)) is None  # history is fine
    why = too_far_back(datetime(1970, 1, 1, tzinfo=UTC))
    assert why is not None
    assert "1970-01-01, before 2000-01-01: a default or a bug" in why


def test_facts_without_open_times_store_as_an_earlier_release_wrote_them() -> None:
    """``opened_investigations`` is left out while empty: a worker rolled back to 0.43
    reads the facts of every subject with no investigation opened since (its model
    forbids fields it does not know)."""
    assert "opened_investigations" not in SubjectFacts(open_investigation_ids=("I",)).model_dump()
    opened = updated_facts(SubjectFacts(), investigation(r.InvestigationOpened, T0, "I"), DM)
    assert opened.model_dump(mode="json")["opened_investigations"] == [
        ["I", "2026-03-01T09:00:00Z"]
    ]


# --- permissions to contact, by the data map's grants (review, session 44) ---------------


@pytest.mark.parametrize(
    ("made", "grant"),
    [
        (lambda s: event(r.ConsentGiven, s, purpose=Purpose.marketing, channel=Channel.post),
         Grant.consent),
        (lambda s: event(r.TpsStatusChecked, s, listed=False), Grant.tps_screening),
        (lambda s: event(r.TpsWaiverRecorded, s, evidence_ref="call-1"), Grant.tps_waiver),
        (lambda s: event(r.CookieConsentRecorded, s, analytics=False, marketing=True),
         Grant.marketing_cookies),
        (lambda s: order(marketing_opt_out_offered=True, similar_products_marketing=True)
         .model_copy(update={"source": s}), Grant.soft_opt_in),
    ],
)  # fmt: skip
def test_a_permission_is_taken_only_from_a_system_the_data_map_lets_record_it(
    made: Any, grant: Grant
) -> None:
    for source, spec in DM.systems.items():
        meaning = consent_facts(made(source))
        kept, refused = granted_facts(source, meaning, DM)
        if grant in spec.may_grant:
            assert (kept, refused) == (meaning, []), source
        else:
            assert (kept, refused) == ([], [grant]), source


@pytest.mark.parametrize(
    "made",
    [
        lambda s: event(r.ConsentWithdrawn, s, purpose=Purpose.marketing, channel=Channel.sms),
        lambda s: event(r.MarketingObjectionRecorded, s),
        lambda s: event(r.TpsStatusChecked, s, listed=True),
        lambda s: event(r.CookieConsentRecorded, s, analytics=True, marketing=False),
        lambda s: order(marketing_opt_out_ticked=True).model_copy(update={"source": s}),
    ],
)
def test_what_only_narrows_contact_is_taken_from_every_system(made: Any) -> None:
    for source in System:
        meaning = consent_facts(made(source))
        assert meaning
        assert granted_facts(source, meaning, DM) == (meaning, [])


def test_a_system_the_data_map_does_not_describe_grants_nothing() -> None:
    """A deployment whose data map leaves a system out (no cctv): nothing says it records
    consent, so its grants are left out; its withdrawals are taken."""
    without_web = DM.model_copy(
        update={"systems": {s: spec for s, spec in DM.systems.items() if s is not System.web}}
    )
    given = event(r.ConsentGiven, System.web, purpose=Purpose.marketing, channel=Channel.email)
    assert granted_facts(System.web, consent_facts(given), without_web) == ([], [Grant.consent])
    withdrawn = event(
        r.ConsentWithdrawn, System.web, purpose=Purpose.marketing, channel=Channel.email
    )
    meaning = consent_facts(withdrawn)
    assert granted_facts(System.web, meaning, without_web) == (meaning, [])
