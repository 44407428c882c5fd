"""The ingest agent on faust's test_context: upstream events -> tables, consent state, audit."""

from __future__ import annotations

import io as io_
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest
from faust.types import Message

import agents.ingest as ingest_module
from agents.ingest import ingest
from privops.adapters.serde import Serde, frame
from privops.core import records as r
from privops.core.datamap import Grant
from privops.core.topics import (
    AUDIT,
    CONSENT_STATE,
    DEADLETTER,
    SUBJECT_DIRECTIVES,
    task_results_topic,
)
from privops.core.vocab import Category, Channel, LawfulBasis, Purpose, System
from streams import io
from streams.state import state
from streams.tables import consent, identities, legal_holds, subject_facts
from tests.agents.conftest import Outbox, erased_consent, put_on, wait_for

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


def dead_letters(outbox: Outbox) -> list[r.DeadLetter]:
    return [d for d in outbox.on(DEADLETTER) if isinstance(d, r.DeadLetter)]


def consent_given(
    event_id: str = "ev-1",
    subject: str = "S1",
    identifiers: r.Identifiers | None = None,
) -> r.ConsentGiven:
    return r.ConsentGiven(
        event_id=event_id,
        occurred_at=NOW,
        source=System.marketing,
        subject_id=subject,
        identifiers=identifiers or r.Identifiers(email="ann@example.com"),
        purpose=Purpose.marketing,
        channel=Channel.email,
    )


@pytest.mark.usefixtures("app")
async def test_consent_given_updates_table_and_emits_state_and_audit(
    serde: Serde, outbox: Outbox
) -> None:
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", serde.encode(consent_given()))
        await wait_for(lambda: bool(outbox.on(AUDIT)))

    stored = consent.data.get("S1")
    assert stored is not None
    assert identities.data["S1"]["systems"]["marketing"]["email"]["value"] == "ann@example.com"

    states = [s for s in outbox.sent if s.topic == CONSENT_STATE]
    assert len(states) == 1
    assert states[0].key == b"S1"
    state = states[0].record
    assert isinstance(state, r.ConsentState)
    assert [(p.purpose, p.channel, p.status) for p in state.preferences] == [
        (Purpose.marketing, Channel.email, "granted")
    ]
    audits = outbox.on(AUDIT)
    assert len(audits) == 1
    event = audits[0]
    assert isinstance(event, r.AuditEvent)
    assert event.action == "consent_changed"
    assert event.after == "granted"
    assert event.subject_ref is not None
    assert event.subject_ref.startswith("sr_")
    assert "ann@example.com" not in event.model_dump_json()  # no raw PII in audit
    assert outbox.on(DEADLETTER) == []


@pytest.mark.usefixtures("app")
async def test_garbage_is_dead_lettered_and_the_next_event_processed(
    serde: Serde, outbox: Outbox
) -> None:
    garbage = b"\x07not avro at all"
    produced = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", garbage, timestamp=produced.timestamp())
        await put_on(agent, "marketing.events", b"S1", serde.encode(consent_given()))
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))
    # Its audit step is dated by the input, not the clock: replayed after a crash, the
    # same step is the same record, not a fork of its chain (review, session 35).
    (step,) = [a for a in outbox.of(AUDIT, r.AuditEvent) if a.action == "dead_lettered"]
    assert step.occurred_at == produced

    letters = [s for s in outbox.sent if s.topic == DEADLETTER]
    assert len(letters) == 1
    letter = letters[0].record
    assert isinstance(letter, r.DeadLetter)
    assert letter.reason == "undecodable"
    assert letter.value is None  # a business system's bytes: could be plaintext
    assert f"the value ({len(garbage)} bytes) is not kept" in letter.error
    assert letter.key == b"S1"
    assert letter.original_topic == "marketing.events"
    assert letter.consumer == "ingest"
    assert letters[0].key == b"S1"
    assert consent.data.get("S1") is not None


@pytest.mark.usefixtures("app")
async def test_unknown_schema_id_is_dead_lettered(
    serde: Serde, outbox: Outbox, monkeypatch: Any
) -> None:
    async def missing(schema_id: int) -> str:
        from privops.core.errors import DecodeError

        raise DecodeError("unknown_schema", f"schema id {schema_id} is not in the registry")

    monkeypatch.setattr(serde, "_fetch_async", missing)
    payload = serde.codec.encode(consent_given())
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", frame(99_999, payload))
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    assert [d.reason for d in dead_letters(outbox)] == ["unknown_schema"]


@pytest.mark.usefixtures("app")
async def test_event_without_identifiers_is_dead_lettered(serde: Serde, outbox: Outbox) -> None:
    bare = consent_given(subject="S2", identifiers=r.Identifiers())
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S2", serde.encode(bare))
        await put_on(agent, "marketing.events", b"S1", serde.encode(consent_given("ev-2")))
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))

    assert [d.reason for d in dead_letters(outbox)] == ["missing_identifier"]
    assert consent.data.get("S2") is None
    assert identities.data.get("S2") is None
    assert consent.data.get("S1") is not None


@pytest.mark.usefixtures("app")
async def test_redelivered_event_changes_nothing(serde: Serde, outbox: Outbox) -> None:
    value = serde.encode(consent_given())
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", value)
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))
        await put_on(agent, "marketing.events", b"S1", value)
        await put_on(agent, "marketing.events", b"S9", serde.encode(consent_given("ev-9", "S9")))
        await wait_for(lambda: consent.data.get("S9") is not None)
    s1_states = [s for s in outbox.sent if s.topic == CONSENT_STATE and s.key == b"S1"]
    assert len(s1_states) == 1
    granted = [a for a in outbox.on(AUDIT) if isinstance(a, r.AuditEvent) and a.after == "granted"]
    assert len(granted) == 2  # S1 once, S9 once


@pytest.mark.usefixtures("app")
async def test_source_on_the_wrong_topic_is_dead_lettered(serde: Serde, outbox: Outbox) -> None:
    async with ingest.test_context() as agent:
        await put_on(agent, "orders.events", b"S1", serde.encode(consent_given()))
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    assert consent.data.get("S1") is None
    assert [d.reason for d in dead_letters(outbox)] == ["wrong_topic"]


def sale(event_id: str = "ev-sale", **flags: bool) -> r.OrderPlaced:
    """A sale that collected an email and a phone: the soft opt-in covers the details
    the sale collected, no others (PECR reg. 22(3)(a))."""
    return r.OrderPlaced(
        event_id=event_id,
        occurred_at=NOW,
        source=System.orders,
        subject_id="S1",
        identifiers=r.Identifiers(customer_id="C-1", email="s1@example.com", phone="07700900123"),
        order_id="O-1",
        total_pence=4200,
        **flags,
    )


@pytest.mark.usefixtures("app")
async def test_sale_with_the_soft_opt_in_conditions_grants_email_and_sms(
    serde: Serde, outbox: Outbox
) -> None:
    offered = sale(marketing_opt_out_offered=True, similar_products_marketing=True)
    async with ingest.test_context() as agent:
        await put_on(agent, "orders.events", b"S1", serde.encode(offered))
        await wait_for(lambda: len(outbox.on(AUDIT)) >= 2)
    (state,) = outbox.on(CONSENT_STATE)
    assert isinstance(state, r.ConsentState)
    assert [(p.channel, p.status, p.basis) for p in state.preferences] == [
        (Channel.email, "granted", LawfulBasis.soft_opt_in),
        (Channel.sms, "granted", LawfulBasis.soft_opt_in),
    ]


@pytest.mark.usefixtures("app")
async def test_a_sale_grants_no_channel_for_a_detail_its_system_is_not_listed_for(
    serde: Serde, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data map says web knows no one by phone: a web shop's sale carrying one made
    SMS marketing lawful while that number was not taken as the subject's (review of
    session 43's identifier rule). Email, which web is listed for, is granted (in a data
    map that lets web record soft opt-ins: the shipped one does not)."""
    from streams.context import collaborators

    datamap = collaborators().datamap
    web = datamap.systems[System.web].model_copy(update={"grants": (Grant.soft_opt_in,)})
    monkeypatch.setattr(
        collaborators(),
        "datamap",
        datamap.model_copy(update={"systems": {**datamap.systems, System.web: web}}),
    )
    offered = sale(marketing_opt_out_offered=True, similar_products_marketing=True)
    web_sale = offered.model_copy(update={"source": System.web})
    async with ingest.test_context() as agent:
        await put_on(agent, "web.events", b"S1", serde.encode(web_sale))
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))
    (state,) = outbox.on(CONSENT_STATE)
    assert isinstance(state, r.ConsentState)
    assert [(p.channel, p.status) for p in state.preferences] == [(Channel.email, "granted")]


@pytest.mark.usefixtures("app")
async def test_sale_silent_on_the_opt_out_grants_nothing(serde: Serde, outbox: Outbox) -> None:
    async with ingest.test_context() as agent:
        await put_on(agent, "orders.events", b"S1", serde.encode(sale()))
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))
    (state,) = outbox.on(CONSENT_STATE)
    assert isinstance(state, r.ConsentState)
    assert state.preferences == []
    assert outbox.on(AUDIT) == []


def directive(kind: str, directive_id: str = "D-1") -> r.SubjectDirective:
    return r.SubjectDirective(
        directive_id=directive_id,
        subject_id="S1",
        request_id="REQ-1",
        kind=kind,
        occurred_at=NOW,
    )


@pytest.mark.usefixtures("app")
async def test_unknown_directive_kind_is_dead_lettered_with_its_reason(
    serde: Serde, outbox: Outbox
) -> None:
    async with ingest.test_context() as agent:
        await put_on(agent, SUBJECT_DIRECTIVES, b"S1", serde.encode(directive("paused")))
        await put_on(agent, SUBJECT_DIRECTIVES, b"S1", serde.encode(directive("restricted", "D-2")))
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))
    (letter,) = dead_letters(outbox)
    assert letter.reason == "unknown_value"
    assert "unknown directive kind 'paused'" in letter.error
    (state,) = outbox.on(CONSENT_STATE)
    assert isinstance(state, r.ConsentState)
    assert state.restricted


def hold_command(cmd: type[r.LegalHoldPlaced | r.LegalHoldReleased], **fields: Any) -> Any:
    return cmd(
        command_id=f"cmd-{cmd.__name__}",
        request_id="REQ-1",
        issued_at=NOW,
        actor="dpo",
        hold_id="H-1",
        subject_id="S1",
        **fields,
    )


@pytest.mark.usefixtures("app")
async def test_legal_holds_are_kept_once_and_released(serde: Serde, outbox: Outbox) -> None:
    placed = hold_command(r.LegalHoldPlaced, categories=[Category.cctv], reason="claim")
    released = hold_command(r.LegalHoldReleased)
    async with ingest.test_context() as agent:
        await put_on(agent, SUBJECT_DIRECTIVES, b"S1", serde.encode(placed))
        await put_on(agent, SUBJECT_DIRECTIVES, b"S1", serde.encode(placed))
        await wait_for(lambda: legal_holds.data.get("S1") is not None)
        assert len(legal_holds.data["S1"]) == 1
        assert legal_holds.data["S1"][0]["released_at"] is None
        await put_on(agent, SUBJECT_DIRECTIVES, b"S1", serde.encode(released))
        await wait_for(lambda: legal_holds.data["S1"][0]["released_at"] is not None)
    assert outbox.on(DEADLETTER) == []


# --- records on the wrong topic (issue 13 point 2) ----------------------------------------


def restricted(subject: str = "S1") -> bool:
    return bool((consent.data.get(subject) or {}).get("restricted"))


def hold_active() -> bool:
    return any(h["released_at"] is None for h in legal_holds.data.get("S1") or [])


PLACED = hold_command(r.LegalHoldPlaced, categories=[Category.cctv], reason="claim")

# (setup on its own topic, attack: (topic, record), what must still hold afterwards)
WRONG_TOPIC: list[Any] = [
    pytest.param(
        (SUBJECT_DIRECTIVES, directive("restricted")),
        ("crm.events", directive("restriction_lifted", "D-2")),
        restricted,
        id="directive-on-crm-events-lifts-no-restriction",
    ),
    pytest.param(
        (SUBJECT_DIRECTIVES, PLACED),
        ("marketing.events", hold_command(r.LegalHoldReleased)),
        hold_active,
        id="hold-release-on-marketing-events-releases-nothing",
    ),
    pytest.param(
        None,
        ("cctv.events", PLACED),
        lambda: legal_holds.data.get("S1") is None,
        id="hold-placed-on-cctv-events-places-nothing",
    ),
    pytest.param(
        None,
        (SUBJECT_DIRECTIVES, consent_given("ev-attack")),
        lambda: consent.data.get("S1") is None and identities.data.get("S1") is None,
        id="upstream-event-on-the-directives-topic-is-not-ingested",
    ),
]


@pytest.mark.usefixtures("app")
@pytest.mark.parametrize(("setup", "attack", "still"), WRONG_TOPIC)
async def test_record_on_the_wrong_topic_is_dead_lettered_and_audited(
    serde: Serde,
    outbox: Outbox,
    setup: tuple[str, r.Record] | None,
    attack: tuple[str, r.Record],
    still: Callable[[], bool],
) -> None:
    topic, record = attack
    async with ingest.test_context() as agent:
        if setup is not None:
            await put_on(agent, setup[0], b"S1", serde.encode(setup[1]))
        await put_on(agent, topic, b"S1", serde.encode(record))
        await put_on(agent, "marketing.events", b"S9", serde.encode(consent_given("ev-9", "S9")))
        await wait_for(lambda: consent.data.get("S9") is not None)

    (letter,) = dead_letters(outbox)
    assert letter.reason == "wrong_topic"
    assert letter.original_topic == topic
    assert f"{type(record).__name__} does not belong on {topic}" in letter.error
    audited = [a for a in outbox.of(AUDIT, r.AuditEvent) if a.action == "dead_lettered"]
    where = f"{topic}[{letter.partition}]@{letter.offset}"
    assert [a.reason for a in audited] == [f"{where}: wrong_topic"]
    assert still()


# --- disclosures (issue 14 point 12) -----------------------------------------------------


def disclosed(recipient: str, *categories: Category, subject: str = "S1") -> r.DataDisclosed:
    return r.DataDisclosed(
        event_id=f"ev-disc-{subject}",
        occurred_at=NOW,
        source=System.orders,
        subject_id=subject,
        identifiers=r.Identifiers(customer_id=f"C-{subject}"),
        disclosure_id=f"DISC-{subject}",
        recipient=recipient,
        categories=list(categories),
        recipient_ref="SRCH-1",
    )


@pytest.mark.usefixtures("app")
async def test_a_disclosure_is_remembered_in_the_subjects_facts(
    serde: Serde, outbox: Outbox
) -> None:
    value = serde.encode(disclosed("Credit reference agencies", Category.credit))
    async with ingest.test_context() as agent:
        await put_on(agent, "orders.events", b"S1", value)
        await put_on(agent, "orders.events", b"S1", value)
        await wait_for(lambda: subject_facts.data.get("S1") is not None)
    (entry,) = subject_facts.data["S1"]["disclosures"]
    assert (entry["recipient"], entry["recipient_ref"], entry["categories"]) == (
        "Credit reference agencies",
        "SRCH-1",
        ["credit"],
    )
    assert outbox.on(DEADLETTER) == []


UNDECLARED = [
    pytest.param(("Acme Data Brokers", Category.contact), "is not in the data map",
                 id="recipient-not-in-the-data-map"),
    pytest.param(("Credit reference agencies", Category.cctv), "not declared to receive cctv",
                 id="category-not-declared-for-the-recipient"),
]  # fmt: skip


@pytest.mark.usefixtures("app")
@pytest.mark.parametrize(("what", "error"), UNDECLARED)
async def test_an_undeclared_disclosure_is_dead_lettered_before_anything_is_written(
    serde: Serde, outbox: Outbox, what: tuple[str, Category], error: str
) -> None:
    recipient, category = what
    async with ingest.test_context() as agent:
        await put_on(
            agent,
            "orders.events",
            b"S2",
            serde.encode(disclosed(recipient, category, subject="S2")),
        )
        await put_on(agent, "marketing.events", b"S9", serde.encode(consent_given("ev-9", "S9")))
        await wait_for(lambda: consent.data.get("S9") is not None)
    (letter,) = dead_letters(outbox)
    assert letter.reason == "undeclared_disclosure"
    assert error in letter.error
    assert identities.data.get("S2") is None
    assert subject_facts.data.get("S2") is None
    assert consent.data.get("S2") is None


# --- retention facts only from a system holding their category (review, session 34) ---


def fact_event(kind: type[r.UpstreamEvent], source: System, **fields: Any) -> r.UpstreamEvent:
    return kind(
        event_id=f"ev-{source.value}-{kind.__name__}",
        occurred_at=NOW,
        source=source,
        subject_id="S1",
        identifiers=r.Identifiers(customer_id="C-1"),
        **fields,
    )


FOREIGN_FACTS = [
    pytest.param(fact_event(r.InvestigationClosed, System.web, investigation_id="INC-1"),
                 id="web-closes-cctvs-investigation"),
    pytest.param(fact_event(r.InvestigationOpened, System.telephony, investigation_id="INC-9",
                            reason="x"), id="telephony-opens-an-investigation"),
    pytest.param(fact_event(r.AccountBalanceChanged, System.marketing,
                            credit_account_open=False, balance_pence=0),
                 id="marketing-settles-the-debt"),
    pytest.param(fact_event(r.OrderPlaced, System.crm, order_id="O-9", total_pence=1),
                 id="crm-stretches-financial-retention"),
    pytest.param(fact_event(r.PaymentRecorded, System.web, payment_id="P-9", order_id="O-9",
                            amount_pence=1), id="web-stretches-financial-retention"),
]  # fmt: skip


@pytest.mark.usefixtures("app")
@pytest.mark.parametrize("erased", [False, True], ids=["live", "erased"])
@pytest.mark.parametrize("foreign", FOREIGN_FACTS)
async def test_a_system_not_holding_a_category_moves_none_of_its_retention_facts(
    serde: Serde,
    outbox: Outbox,
    foreign: r.UpstreamEvent,
    erased: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, any system could close cctv's investigation (its footage became erasable),
    open one no one would close, settle an open debt or stretch the six-year financial
    retention: only the topic was checked, not that the system holds the category. An
    erased subject's kept facts, which events still move, alike."""
    from privops.core.erasure import SubjectFacts

    keeping = SubjectFacts(
        open_investigation_ids=("INC-1",),
        open_credit_account=True,
        open_debt=True,
        balance_at=datetime(2025, 3, 1, tzinfo=UTC),
        latest_financial_record_at=datetime(2025, 3, 1, tzinfo=UTC),
    ).model_dump(mode="json")
    subject_facts.data["S1"] = keeping
    if erased:
        consent.data["S1"] = erased_consent("S1")
    topic = f"{foreign.source.value}.events"
    ingest_module._FOREIGN_TOLD.clear()
    with caplog.at_level(logging.WARNING, logger=ingest_module.log.name):
        async with ingest.test_context() as agent:
            await put_on(agent, topic, b"S1", serde.encode(foreign))
            await put_on(agent, topic, b"S1", serde.encode(foreign))  # said once
            if erased:  # nothing of it re-activates anyone: flagged as a re-import
                await wait_for(lambda: len(reimports(outbox)) == 2)
            else:  # the rest of the event is taken: the subject is known from it
                await wait_for(lambda: identities.data.get("S1") is not None)
    assert dead_letters(outbox) == []  # a dead letter lost the event's other meaning
    assert subject_facts.data["S1"] == keeping
    told = [rec.getMessage() for rec in caplog.records if "not taken" in rec.getMessage()]
    assert len(told) == 1
    assert f"the data map does not say {foreign.source.value} holds" in told[0]


@pytest.mark.usefixtures("app")
async def test_an_email_from_a_system_that_knows_no_one_by_email_is_not_taken(
    serde: Serde, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """cctv knows people by camera only (the data map): the email its event carried
    became the subject's, went to every system that never met them with their access or
    erasure task, and onto the suppression list at their erasure, flagging its owner's
    own events as an erased person's (review, session 43). The rest is taken."""
    known = fact_event(r.CustomerCreated, System.crm).model_copy(
        update={"identifiers": r.Identifiers(customer_id="C-1", email="ann@example.com")}
    )
    footage = fact_event(
        r.FootageCaptured, System.cctv, clip_id="K-1", camera="CAM-1", site="S"
    ).model_copy(
        update={
            "event_id": "ev-cctv-2",
            "occurred_at": NOW.replace(minute=NOW.minute + 1),
            "identifiers": r.Identifiers(
                system_ref="CAM-1/42", email="bob@example.com", phone="+447700900123"
            ),
        }
    )
    ingest_module._FOREIGN_TOLD.clear()
    with caplog.at_level(logging.WARNING, logger=ingest_module.log.name):
        async with ingest.test_context() as agent:
            await put_on(agent, "crm.events", b"S1", serde.encode(known))
            await put_on(agent, "cctv.events", b"S1", serde.encode(footage))
            await wait_for(
                lambda: System.cctv.value in (identities.data.get("S1") or {}).get("systems", {})
            )
    stored = identities.data["S1"]
    assert stored["email"]["value"] == "ann@example.com"
    assert stored["phone"] is None
    assert set(stored["systems"]["cctv"]) == {"system_ref"}
    assert dead_letters(outbox) == []
    told = [rec.getMessage() for rec in caplog.records if "knows subjects by" in rec.getMessage()]
    assert told == [
        "FootageCaptured from cctv carries email and phone, which the data map does not say "
        "cctv knows subjects by: not taken (the rest of the event is); said once per system "
        "and event type"
    ]


def reimports(outbox: Outbox) -> list[r.AuditEvent]:
    return [a for a in outbox.of(AUDIT, r.AuditEvent) if a.after == "reimport_flagged"]


@pytest.mark.usefixtures("app")
async def test_an_opt_out_on_a_sale_from_a_system_not_holding_purchases_still_counts(
    serde: Serde, outbox: Outbox
) -> None:
    """The order's retention fact is not web's to give, but the subject's opt-out on it
    is theirs: dead-lettered whole, the event left their marketing consent granted
    (second review, session 34)."""
    given = fact_event(r.ConsentGiven, System.marketing, purpose=Purpose.marketing,
                       channel=Channel.email)  # fmt: skip
    sale = fact_event(
        r.OrderPlaced, System.web, order_id="O-1", total_pence=100,
        marketing_opt_out_offered=True, marketing_opt_out_ticked=True,
    ).model_copy(update={"occurred_at": NOW.replace(minute=NOW.minute + 1)})  # fmt: skip
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", serde.encode(given))
        await put_on(agent, "web.events", b"S1", serde.encode(sale))
        await wait_for(lambda: len(outbox.on(CONSENT_STATE)) >= 2)
    assert dead_letters(outbox) == []
    latest = outbox.on(CONSENT_STATE)[-1]
    assert isinstance(latest, r.ConsentState)
    email = [p for p in latest.preferences if (p.purpose, p.channel) == ("marketing", "email")]
    assert [p.status for p in email] != ["granted"], latest.preferences
    assert [p.source for p in email] == [System.web]
    assert subject_facts.data.get("S1") is None or not subject_facts.data["S1"].get(
        "latest_financial_record_at"
    )


@pytest.mark.usefixtures("app")
async def test_the_system_holding_the_category_still_moves_its_retention_facts(
    serde: Serde, outbox: Outbox
) -> None:
    from privops.core.erasure import SubjectFacts

    subject_facts.data["S1"] = SubjectFacts(open_investigation_ids=("INC-1",)).model_dump(
        mode="json"
    )
    closed = fact_event(r.InvestigationClosed, System.cctv, investigation_id="INC-1")
    async with ingest.test_context() as agent:
        await put_on(agent, "cctv.events", b"S1", serde.encode(closed))
        await wait_for(lambda: not subject_facts.data["S1"]["open_investigation_ids"])
    assert dead_letters(outbox) == []
    facts = SubjectFacts.model_validate(subject_facts.data["S1"])
    assert facts.investigation_closed_at == NOW


@pytest.mark.usefixtures("app")
async def test_a_subject_erased_before_a_pseudonym_key_rotation_stays_suppressed(
    serde: Serde, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The list was keyed under the key a rotation replaced: the re-import is still
    flagged (not re-activated), and the identifiers' current keys join the list."""
    from privops.core.identity import identifier_keys
    from streams.tables import suppression

    old, new = b"pseudonym-key-before-the-rotation", b"pseudonym-key-after-the-rotation"
    monkeypatch.setattr(ingest_module, "PSEUDONYM_KEY", new)
    monkeypatch.setattr(ingest_module, "PSEUDONYM_KEYS", (new, old))
    ids = {"email": "ann@example.com"}
    for key in identifier_keys(old, ids):
        suppression._set(key, "sr_erased")  # as read from the topic

    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S7", serde.encode(consent_given("ev-7", "S7")))
        await wait_for(lambda: bool(outbox.on(AUDIT)))

    [flagged] = [a for a in outbox.of(AUDIT, r.AuditEvent) if a.after == "reimport_flagged"]
    assert flagged.actor == "marketing"
    assert consent.data.get("S7") is None  # not re-activated
    current = identifier_keys(new, ids)
    assert current <= set(suppression.data)
    assert {suppression.data[key] for key in current} == {"sr_erased"}
    assert {k.decode() for _, k, _ in outbox.views if k} >= current


def test_a_subject_erased_before_a_pseudonym_key_rotation_is_listed_erased(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Erased, with no consent state here (a worker rebuilt under a new app id): the
    suppression list's ref was made under the key a rotation replaced. Before, only the
    current key was tried, so /consent answered 404 and the key service made the erased
    subject a new ``main`` (review, session 44)."""
    from privops.core.identity import subject_ref
    from streams import tables

    old, new = b"pseudonym-key-before-the-rotation", b"pseudonym-key-after-the-rotation"
    monkeypatch.setattr(tables, "PSEUDONYM_KEYS", (new, old))
    tables.suppression._set("ik_of_ann_under_the_old_key", subject_ref(old, "S8"))
    assert tables.listed_erased("S8")
    assert not tables.listed_erased("S9")
    monkeypatch.setattr(tables, "PSEUDONYM_KEYS", (new,))  # the old key dropped
    assert not tables.listed_erased("S8")


def _deep(levels: int) -> str:
    """A record nested ``levels`` deep (the writer schema that segfaulted the worker)."""
    inner = '"string"'
    for i in range(levels):
        inner = f'{{"type":"record","name":"N{i}","fields":[{{"name":"x","type":{inner}}}]}}'
    return inner


HOSTILE_SCHEMAS = [
    pytest.param(_deep(20_000), b"\x00" * 64, id="nested-20000-deep"),
    # An array block count of 2^40 (zig-zag varint), of nulls that take no bytes each.
    pytest.param('{"type":"array","items":"null"}', b"\x80" * 6 + b"\x04", id="2^40-nulls"),
    pytest.param('"string"', b"\x06abc", id="primitive"),
    pytest.param('{"type":"record","name":', b"\x00", id="malformed-json"),
    pytest.param(
        '{"type":"record","name":"ConsentGiven","namespace":"privops.events",'
        '"fields":[{"name":"event_id","type":"string"}]}',
        b"\x06abc",
        id="our-name-not-our-schema",
    ),
]


@pytest.mark.usefixtures("app")
@pytest.mark.parametrize(("schema", "payload"), HOSTILE_SCHEMAS)
async def test_a_hostile_writer_schema_is_dead_lettered_and_the_agent_goes_on(
    serde: Serde, outbox: Outbox, schema: str, payload: bytes
) -> None:
    """Registered in an open registry under any id: only committed schemas are trusted
    (fingerprint), so each is a dead letter, and the next good event is processed."""
    hostile_id = 77_777
    serde._schema_by_id[hostile_id] = schema
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", frame(hostile_id, payload))
        await put_on(agent, "marketing.events", b"S9", serde.encode(consent_given("ev-9", "S9")))
        await wait_for(lambda: consent.data.get("S9") is not None)
    assert [d.reason for d in dead_letters(outbox)] in (["unknown_schema"], ["undecodable"])
    assert consent.data.get("S1") is None


@pytest.mark.usefixtures("app")
async def test_an_event_off_its_subjects_partition_is_dead_lettered(
    serde: Serde, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With four partitions, S1 lands on 3 and S2 on 0 (murmur2, the Java client's
    partitioner). A producer partitioning otherwise (librdkafka's CRC32 default) would
    split a subject: consent and identity here, keys, requests and HTTP answers on the
    partition its id hashes to. Such an event is a dead letter; the rest goes on."""
    monkeypatch.setattr(ingest_module, "PARTITIONS", 4)
    async with ingest.test_context() as agent:  # put_on puts every message on partition 0
        await put_on(agent, "marketing.events", b"S1", serde.encode(consent_given("ev-1", "S1")))
        await put_on(agent, "marketing.events", b"S2", serde.encode(consent_given("ev-2", "S2")))
        await wait_for(lambda: consent.data.get("S2") is not None)
    assert consent.data.get("S1") is None
    (letter,) = dead_letters(outbox)
    assert (letter.reason, letter.partition) == ("wrong_partition", 0)
    assert "murmur2" in letter.error


@pytest.mark.usefixtures("app")
async def test_an_event_with_no_subject_id_is_a_missing_identifier(
    serde: Serde, outbox: Outbox
) -> None:
    """Not a partition question: the event names no subject at all."""
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"", serde.encode(consent_given("ev-0", " ")))
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    assert [d.reason for d in dead_letters(outbox)] == ["missing_identifier"]


@pytest.mark.usefixtures("app")
@pytest.mark.parametrize("subject", ["S-1\n", "S" * 257], ids=["control-char", "257-chars"])
async def test_an_event_whose_subject_id_no_key_could_be_made_for_is_dead_lettered(
    serde: Serde, outbox: Outbox, subject: str
) -> None:
    """A subject id the key service would refuse (a control character, over 256
    characters) is refused where the event is read: it was taken in, and the flush that
    asked for its storage key failed the state, stopping the worker on every restart."""
    event = consent_given("ev-0").model_dump()
    payload = serde.encode_datum(r.ConsentGiven.fullname(), {**event, "subject_id": subject})
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"", payload)
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    (letter,) = dead_letters(outbox)
    assert letter.reason == "invalid_record"
    assert "printable" in letter.error
    assert subject not in letter.error
    assert state.failure is None
    assert not identities.data


@pytest.mark.usefixtures("app")
async def test_an_event_id_holding_an_address_is_applied_and_never_cited(
    serde: Serde, outbox: Outbox
) -> None:
    """A consent fact cites its event: an id made of an email address was refused (the
    evidence must never hold an address), so the event, a STOP as well as a grant, was
    dead-lettered and never applied. Now the fact cites a digest of such an id, and of
    one too long to cite (review, session 25)."""
    event = consent_given("ann.smith@example.com")
    long_id = consent_given("x" * 500, subject="S2")
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", serde.encode(event))
        await put_on(agent, "marketing.events", b"S2", serde.encode(long_id))
        await wait_for(lambda: len(outbox.on(CONSENT_STATE)) == 2)
    assert dead_letters(outbox) == []
    for subject in ("S1", "S2"):
        stored = consent.data[subject]
        assert stored["entries"], subject
        assert not any("example" in e or "xxxx" in e for e in stored["recent_event_ids"])
    assert "example" not in str(outbox.on(AUDIT))


@pytest.mark.usefixtures("app")
async def test_a_dead_letter_leaves_out_a_key_or_value_over_its_limit(
    serde: Serde, outbox: Outbox
) -> None:
    """Copied whole (with the key twice, as the letter's own key too), an input near the
    broker's record limit made a dead letter the broker refused: the worker stopped."""
    big_key, big_value = b"k" * (io.DEAD_LETTER_KEY_BYTES + 1), b"\x01" * (600 * 1024)
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", big_key, big_value)
        await put_on(agent, "marketing.events", b"small", b"\x01junk")
        await wait_for(lambda: len(outbox.on(DEADLETTER)) == 2)
    big, small = dead_letters(outbox)
    assert (big.key, big.value) == (None, None)
    assert f"the key ({len(big_key)} bytes, over 1024) is not kept" in big.error
    assert f"the value ({len(big_value)} bytes, over 524288) is not kept" in big.error
    assert [sent.key for sent in outbox.sent if sent.topic == DEADLETTER] == [None, b"small"]
    assert (small.key, small.value) == (b"small", None)


@pytest.mark.usefixtures("app")
async def test_a_new_telephone_number_undoes_the_old_ones_screening(
    serde: Serde, outbox: Outbox
) -> None:
    """A system reports the subject's new number: the TPS screening was of the old one,
    so the new number is not screened until it is (review, session 25)."""
    ids = r.Identifiers(customer_id="C-1", phone="+447700900001")
    screened = r.TpsStatusChecked(
        event_id="tps-1", occurred_at=NOW, source=System.marketing, subject_id="S1",
        identifiers=ids, listed=False,
    )  # fmt: skip
    moved = r.CustomerUpdated(
        event_id="moved-1",
        occurred_at=NOW.replace(hour=10),
        source=System.crm,
        subject_id="S1",
        identifiers=r.Identifiers(customer_id="C-1", phone="+447700900002"),
        changed_fields=["phone"],
    )
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", serde.encode(screened))
        await wait_for(lambda: (consent.data.get("S1") or {}).get("tps") is not None)
        await put_on(agent, "crm.events", b"S1", serde.encode(moved))
        await wait_for(
            lambda: (consent.data.get("S1") or {}).get("tps", {}).get("kind") == "number_changed"
        )
    assert dead_letters(outbox) == []


@pytest.mark.usefixtures("app")
async def test_a_business_systems_bytes_that_do_not_decode_are_not_kept(
    serde: Serde, outbox: Outbox
) -> None:
    """A dead letter from the decode step kept the input whole: a producer one schema
    version ahead (unknown_schema) or a record the model refuses (invalid_record) left
    its plaintext email and phone on privacy.deadletter, which is never shredded with
    the subject's key, even with PRIVOPS_PERSONAL_PLAINTEXT=refuse (review, session 26).
    privops' own topics' bytes are still kept: nothing there is plaintext."""
    email, phone = "ann.jones@example.com", "07700 900123"
    schema = json.loads(serde.codec.schema_text("privops.events.CustomerCreated"))
    schema["fields"].append({"name": "nickname", "type": ["null", "string"], "default": None})
    serde._schema_by_id[999] = json.dumps(schema)
    datum = {
        "event_id": "e1",
        "occurred_at": NOW,
        "source": "crm",
        "subject_id": "S1",
        "identifiers": {"customer_id": None, "email": email, "phone": phone, "system_ref": None},
        "collected_in_sale_or_negotiation": False,
        "display_name_present": True,
        "nickname": None,
    }
    ahead = io_.BytesIO()
    fastavro.schemaless_writer(ahead, fastavro.parse_schema(schema), datum)
    too_long = consent_given(identifiers=r.Identifiers(email=email, phone=phone))
    invalid = serde.encode(too_long.model_copy(update={"subject_id": "S" * 300}))
    garbage = b"\x07not avro"
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", b"S1", frame(999, ahead.getvalue()))
        await put_on(agent, "marketing.events", b"S1", invalid)
        await put_on(agent, SUBJECT_DIRECTIVES, b"S1", garbage)
        await wait_for(lambda: len(dead_letters(outbox)) == 3)
    ahead_letter, invalid_letter, internal = dead_letters(outbox)
    assert [ahead_letter.reason, invalid_letter.reason] == ["unknown_schema", "invalid_record"]
    for letter in (ahead_letter, invalid_letter):
        assert letter.value is None
        assert "is not kept (bytes from a business system" in letter.error
        assert letter.key == b"S1"  # the topic, partition and offset find the original
    assert internal.value == garbage
    assert not [s for s in outbox.sent if email.encode() in s.value or b"900123" in s.value]


@pytest.mark.usefixtures("app")
async def test_a_systems_answer_that_does_not_decode_is_not_kept(
    serde: Serde, outbox: Outbox
) -> None:
    garbage = b"\x07 export at /exports/ann.jones.zip"
    message = Message(
        topic=task_results_topic(System.crm),
        partition=0,
        offset=7,
        timestamp=0.0,
        timestamp_type=0,
        headers=None,
        key=b"S1",
        value=garbage,
        checksum=None,
    )
    assert await io.decode(message, "workflow") is None
    await state.flush()
    (letter,) = dead_letters(outbox)
    assert (letter.original_topic, letter.offset, letter.value) == (message.topic, 7, None)


# --- permissions to contact only from a system the data map lets record them ------------
# (review, session 44: any system could widen contact; from 0.45 the data map's grants)


def widened(subject: str = "S1") -> bool:
    """Whether the subject's stored consent state holds any permission to contact."""
    stored = consent.data.get(subject) or {}
    granted = any(e["status"] == "granted" for e in stored.get("entries", {}).values())
    marks = [(stored.get(name) or {}).get("kind") for name in ("tps", "marketing_cookies")]
    unlisted_or_accepted = {"tps_unlisted", "marketing_cookies_accepted"} & set(marks)
    return granted or bool(unlisted_or_accepted) or stored.get("tps_waiver") is not None


def widening(kind: type[r.UpstreamEvent], **fields: Any) -> Callable[[System], r.UpstreamEvent]:
    return lambda source: fact_event(kind, source, **fields).model_copy(
        update={"identifiers": r.Identifiers(customer_id="C-1", email="s1@example.com")}
    )


WIDENING = [
    pytest.param(widening(r.TpsStatusChecked, listed=False), System.cctv, System.marketing,
                 id="cctv-screens-a-number-unlisted"),
    pytest.param(widening(r.ConsentGiven, purpose=Purpose.marketing, channel=Channel.email),
                 System.telephony, System.marketing, id="telephony-records-email-consent"),
    pytest.param(widening(r.TpsWaiverRecorded, evidence_ref="call-1"), System.web, System.crm,
                 id="web-records-a-tps-waiver"),
    pytest.param(widening(r.CookieConsentRecorded, analytics=True, marketing=True),
                 System.orders, System.web, id="orders-records-marketing-cookies"),
    pytest.param(widening(r.OrderPlaced, order_id="O-1", total_pence=1,
                          marketing_opt_out_offered=True, similar_products_marketing=True),
                 System.web, System.orders, id="web-sale-makes-a-soft-opt-in"),
]  # fmt: skip


@pytest.mark.usefixtures("app")
@pytest.mark.parametrize(("event_from", "refused", "allowed"), WIDENING)
async def test_a_permission_to_contact_is_taken_only_from_a_system_that_may_grant_it(
    serde: Serde,
    outbox: Outbox,
    event_from: Callable[[System], r.UpstreamEvent],
    refused: System,
    allowed: System,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before, every system's events could widen contact: cctv's screening made a number
    callable, telephony's ConsentGiven opened email. The data map's ``grants`` (absent:
    what the system's categories imply) say which system records which permission; from
    another, the rest of the event is taken, the permission counted and told once."""
    from privops.adapters import metrics

    def not_taken() -> float:
        sample = metrics.REGISTRY.get_sample_value(
            "privops_event_parts_not_taken_total", {"system": refused.value, "part": "grant"}
        )
        return sample or 0.0

    before = not_taken()
    ingest_module._FOREIGN_TOLD.clear()
    with caplog.at_level(logging.WARNING, logger=ingest_module.log.name):
        async with ingest.test_context() as agent:
            await put_on(agent, f"{refused.value}.events", b"S1", serde.encode(event_from(refused)))
            await wait_for(lambda: identities.data.get("S1") is not None)
            assert not widened()
            assert not_taken() == before + 1
            granted = event_from(allowed).model_copy(update={"event_id": "ev-allowed"})
            await put_on(agent, f"{allowed.value}.events", b"S1", serde.encode(granted))
            await wait_for(widened)
    assert dead_letters(outbox) == []
    told = [rec.getMessage() for rec in caplog.records if "its grants" in rec.getMessage()]
    assert len(told) == 1
    assert f"from {refused.value} records" in told[0]


@pytest.mark.usefixtures("app")
async def test_a_tps_listing_and_a_ticked_opt_out_are_taken_from_any_system(
    serde: Serde, outbox: Outbox
) -> None:
    """Narrowing contact needs no grant: cctv's screening that finds the number listed
    ends marketing's "unlisted", and a web checkout's ticked opt-out box withdraws the
    soft opt-in orders' sale made."""
    unlisted = fact_event(r.TpsStatusChecked, System.marketing, listed=False)
    listed = fact_event(r.TpsStatusChecked, System.cctv, listed=True).model_copy(
        update={"occurred_at": NOW + timedelta(hours=1)}
    )
    offered = sale(marketing_opt_out_offered=True, similar_products_marketing=True)
    ticked = sale("ev-ticked", marketing_opt_out_ticked=True).model_copy(
        update={"source": System.web, "occurred_at": NOW + timedelta(hours=1)}
    )
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", serde.encode(unlisted))
        await put_on(agent, "orders.events", b"S1", serde.encode(offered))
        await wait_for(lambda: widened())
        await put_on(agent, "cctv.events", b"S1", serde.encode(listed))
        await put_on(agent, "web.events", b"S1", serde.encode(ticked))
        await wait_for(lambda: not widened())
    assert consent.data["S1"]["tps"]["kind"] == "tps_listed"
    assert dead_letters(outbox) == []
