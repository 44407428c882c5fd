"""The ingest agent refuses input that would grow or corrupt a subject's state
(review, session 25): on faust's test_context, as tests/agents/test_ingest_agent.py.

Each refused event is a dead letter with its reason, nothing of it is written, and the
agent goes on to the next event.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.ingest import ingest
from privops.adapters.serde import Serde
from privops.core import records as r
from privops.core.erasure import MAX_OPEN_INVESTIGATIONS
from privops.core.records import MAX_REF_CHARS
from privops.core.topics import CONSENT_STATE, DEADLETTER
from privops.core.vocab import Category, Channel, LawfulBasis, Purpose, System
from streams.state import state
from streams.tables import consent, identities, subject_facts
from tests.agents.conftest import Outbox, put_on, wait_for

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
KAFKA_RECORD_LIMIT = 1_048_576


def dead_letters(outbox: Outbox) -> list[r.DeadLetter]:
    return [d for d in outbox.on(DEADLETTER) if isinstance(d, r.DeadLetter)]


def base(event_id: str, subject: str, source: System, ids: r.Identifiers) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "occurred_at": NOW,
        "source": source,
        "subject_id": subject,
        "identifiers": ids,
    }


def consent_given(event_id: str, subject: str, **fields: Any) -> r.ConsentGiven:
    ids = r.Identifiers(email=f"{subject.lower()}@example.com")
    return r.ConsentGiven(
        **base(event_id, subject, System.marketing, ids),
        purpose=Purpose.marketing,
        channel=Channel.email,
        **fields,
    )


def opened(serde: Serde, event_id: str, iid: str, subject: str = "S-C") -> bytes:
    """An InvestigationOpened, encoded from plain data: the model refuses a long id."""
    event = base(event_id, subject, System.cctv, r.Identifiers(customer_id="V-1"))
    datum = {**event, "identifiers": event["identifiers"].model_dump()}
    datum |= {"investigation_id": iid, "reason": "theft"}
    return serde.encode_datum(r.InvestigationOpened.fullname(), datum)


async def then_a_good_event(agent: Any, serde: Serde, outbox: Outbox) -> None:
    """The agent goes on: a later event on another subject is applied."""
    await put_on(agent, "marketing.events", b"S-OK", serde.encode(consent_given("ok", "S-OK")))
    await wait_for(lambda: any(s.key == b"S-OK" for s in outbox.sent if s.topic == CONSENT_STATE))


@pytest.mark.usefixtures("app")
async def test_investigation_ids_that_would_outgrow_a_record_are_dead_lettered(
    serde: Serde, outbox: Outbox
) -> None:
    """Two InvestigationOpened with 600 kB ids, each a legal record, made the subject's
    facts a changelog value over 1 MiB: refused by the broker, the worker stopped on
    every restart. Now each is an invalid record, and the facts never see them."""
    huge = [opened(serde, f"i-{n}", f"{n}" + "x" * 600_000) for n in range(2)]
    assert all(len(value) < KAFKA_RECORD_LIMIT for value in huge)
    async with ingest.test_context() as agent:
        for value in huge:
            await put_on(agent, "cctv.events", b"S-C", value)
        await then_a_good_event(agent, serde, outbox)
    assert [d.reason for d in dead_letters(outbox)] == ["invalid_record"] * 2
    assert all(
        "investigation_id" in d.error and "xxxx" not in d.error for d in dead_letters(outbox)
    )
    assert subject_facts.data.get("S-C") is None
    assert state.failure is None


@pytest.mark.usefixtures("app")
async def test_open_investigations_past_the_bound_are_marked_not_listed(
    serde: Serde, outbox: Outbox
) -> None:
    """The widest ids allowed, more than are listed: the facts stay small, and still say
    an investigation is open (the erasure plan keeps the footage)."""
    count = MAX_OPEN_INVESTIGATIONS + 6
    async with ingest.test_context() as agent:
        for n in range(count):
            iid = f"{n:03}" + "I" * (MAX_REF_CHARS - 3)
            await put_on(agent, "cctv.events", b"S-C", opened(serde, f"i-{n}", iid))
        await then_a_good_event(agent, serde, outbox)
    assert dead_letters(outbox) == []
    stored = subject_facts.data["S-C"]
    assert len(stored["open_investigation_ids"]) == MAX_OPEN_INVESTIGATIONS
    assert stored["unlisted_investigation_open"] is True
    assert len(json.dumps(stored)) < 20_000


@pytest.mark.usefixtures("app")
async def test_a_recipient_ref_over_the_bound_is_dead_lettered(
    serde: Serde, outbox: Outbox
) -> None:
    event = base("d-1", "S-D", System.orders, r.Identifiers(customer_id="C-D"))
    datum = {**event, "identifiers": event["identifiers"].model_dump()}
    datum |= {
        "disclosure_id": "DISC-1",
        "recipient": "Credit reference agencies",
        "categories": [Category.credit],
        "recipient_ref": "R" * (MAX_REF_CHARS + 1),
    }
    async with ingest.test_context() as agent:
        await put_on(
            agent, "orders.events", b"S-D", serde.encode_datum(r.DataDisclosed.fullname(), datum)
        )
        await then_a_good_event(agent, serde, outbox)
    assert [d.reason for d in dead_letters(outbox)] == ["invalid_record"]
    assert subject_facts.data.get("S-D") is None


CONTROL = [
    pytest.param(r.Identifiers(email="ann@example.com\x00"), id="email-nul"),
    pytest.param(r.Identifiers(customer_id="K\x00-1"), id="customer-id-nul"),
    pytest.param(r.Identifiers(system_ref="R-1\n2", email="ann@example.com"), id="newline"),
]


@pytest.mark.usefixtures("app")
@pytest.mark.parametrize("ids", CONTROL)
async def test_an_identifier_with_a_control_character_is_a_missing_identifier(
    serde: Serde, outbox: Outbox, ids: r.Identifiers
) -> None:
    """Learnt, it had another suppression key than the identifier meant, so an erased
    subject re-imported that way was not recognised."""
    event = r.CustomerCreated(**base("c-1", "S-N", System.crm, ids))
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", b"S-N", serde.encode(event))
        await then_a_good_event(agent, serde, outbox)
    (letter,) = dead_letters(outbox)
    assert letter.reason == "missing_identifier"
    assert "malformed" in letter.error
    assert "\x00" not in letter.error
    assert identities.data.get("S-N") is None
    assert consent.data.get("S-N") is None


@pytest.mark.usefixtures("app")
async def test_a_soft_opt_in_claimed_by_consent_given_is_dead_lettered(
    serde: Serde, outbox: Outbox
) -> None:
    """Only a sale (OrderPlaced) saying the opt-out was offered makes a soft opt-in
    (DESIGN.md section 5); before, any system's ConsentGiven could, and email marketing
    was allowed with no sale behind it."""
    claimed = consent_given(
        "g-1",
        "S-W",
        basis=LawfulBasis.soft_opt_in,
        soft_opt_in=r.SoftOptIn(
            collected_in_sale_or_negotiation=True, own_similar_products=True, opt_out_offered=True
        ),
    )
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S-W", serde.encode(claimed))
        await then_a_good_event(agent, serde, outbox)
    (letter,) = dead_letters(outbox)
    assert letter.reason == "unknown_value"
    assert "OrderPlaced" in letter.error
    assert consent.data.get("S-W") is None
    assert identities.data.get("S-W") is None
