"""The ingest agent after an erasure of a subject whose email and phone had changed
(review, session 27): the suppression list holds their earlier email too, so a
re-import carrying it under a new subject id is flagged as an erased person's, and
never made a contactable subject. Before, only the latest values were hashed.

Not their earlier phone: carriers reassign numbers, and the man who holds it now was
taken for the erased subject, his consent, identifiers and retention facts dropped from
then on (review, session 27)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agents.ingest import ingest
from privops.adapters.serde import Serde
from privops.core import consent as rules
from privops.core import records as r
from privops.core.topics import AUDIT, SUBJECT_DIRECTIVES
from privops.core.vocab import Channel, Purpose, System
from streams.state import state
from streams.tables import consent, identities
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.test_ingest_agent import NOW

ANN = "S-ann"
OLD_EMAIL, NEW_EMAIL = "ann.old@example.com", "ann.new@example.com"
OLD_PHONE, NEW_PHONE = "07700 900111", "07700 900222"


def _consent(
    event_id: str, subject: str, identifiers: r.Identifiers, days: int = 0
) -> r.ConsentGiven:
    return r.ConsentGiven(
        event_id=event_id,
        occurred_at=NOW + timedelta(days=days),
        source=System.marketing,
        subject_id=subject,
        identifiers=identifiers,
        purpose=Purpose.marketing,
        channel=Channel.email,
    )


def _flagged(outbox: Outbox) -> list[r.AuditEvent]:
    return [a for a in outbox.of(AUDIT, r.AuditEvent) if a.after == "reimport_flagged"]


ERASED = r.SubjectDirective(
    directive_id="R-1:suppressed",
    subject_id=ANN,
    request_id="R-1",
    kind="suppressed",
    occurred_at=NOW + timedelta(days=60),
)


REIMPORTS = [
    pytest.param(r.Identifiers(email=OLD_EMAIL), id="old-email"),
    pytest.param(r.Identifiers(email="ANN.OLD@example.com "), id="old-email-other-case"),
    pytest.param(r.Identifiers(email=NEW_EMAIL), id="latest-email"),
]


@pytest.mark.usefixtures("app")
@pytest.mark.parametrize("carried", REIMPORTS)
async def test_a_re_import_under_an_erased_subjects_earlier_identifier_is_flagged(
    serde: Serde, outbox: Outbox, carried: r.Identifiers
) -> None:
    before = r.Identifiers(email=OLD_EMAIL, phone=OLD_PHONE)
    after = r.Identifiers(email=NEW_EMAIL, phone=NEW_PHONE)
    async with ingest.test_context() as agent:
        await put_on(
            agent, "marketing.events", ANN.encode(), serde.encode(_consent("m-1", ANN, before))
        )
        await put_on(
            agent, "marketing.events", ANN.encode(), serde.encode(_consent("m-2", ANN, after, 30))
        )
        await wait_for(lambda: len(outbox.on(AUDIT)) >= 1 and ANN in identities.data)
        await put_on(agent, SUBJECT_DIRECTIVES, ANN.encode(), serde.encode(ERASED))
        await wait_for(lambda: consent.data.get(ANN, {}).get("suppressed") is True)
        await put_on(
            agent, "marketing.events", b"S-new", serde.encode(_consent("m-3", "S-new", carried, 90))
        )
        await wait_for(lambda: bool(_flagged(outbox)))
        await state.flush()

    (flagged,) = _flagged(outbox)
    assert flagged.actor == "marketing"
    assert consent.data.get("S-new") is None  # not made a subject to market to
    assert "S-new" not in identities.data
    for audit in outbox.of(AUDIT, r.AuditEvent):
        text = audit.model_dump_json()
        assert not [v for v in (OLD_EMAIL, "900111", NEW_EMAIL) if v in text]  # no raw PII


@pytest.mark.usefixtures("app")
async def test_someone_sharing_no_identifier_with_the_erased_subject_is_taken_as_before(
    serde: Serde, outbox: Outbox
) -> None:
    before = r.Identifiers(email=OLD_EMAIL)
    after = r.Identifiers(email=NEW_EMAIL)
    stranger = r.Identifiers(email="bob@example.com")
    async with ingest.test_context() as agent:
        await put_on(
            agent, "marketing.events", ANN.encode(), serde.encode(_consent("m-1", ANN, before))
        )
        await put_on(
            agent, "marketing.events", ANN.encode(), serde.encode(_consent("m-2", ANN, after, 30))
        )
        await put_on(agent, SUBJECT_DIRECTIVES, ANN.encode(), serde.encode(ERASED))
        await put_on(
            agent,
            "marketing.events",
            b"S-bob",
            serde.encode(_consent("b-1", "S-bob", stranger, 90)),
        )
        await wait_for(lambda: "S-bob" in consent.data)
    assert consent.data["S-bob"]["suppressed"] is False
    assert _flagged(outbox) == []


@pytest.mark.usefixtures("app")
async def test_the_man_holding_an_erased_subjects_old_number_is_not_suppressed(
    serde: Serde, outbox: Outbox
) -> None:
    """Ann's old number passed to Bob. His grant under it makes him a subject with
    consent, his identifiers are kept, and nothing is flagged. Before, the event was
    dropped as a re-import of Ann, and so was every later one of his."""
    before = r.Identifiers(email=OLD_EMAIL, phone=OLD_PHONE)
    after = r.Identifiers(email=NEW_EMAIL, phone=NEW_PHONE)
    bob = r.Identifiers(email="bob@example.com", phone=OLD_PHONE)
    grant = _consent("b-1", "S-bob", bob, 90).model_copy(update={"channel": Channel.sms})
    async with ingest.test_context() as agent:
        await put_on(
            agent, "marketing.events", ANN.encode(), serde.encode(_consent("m-1", ANN, before))
        )
        await put_on(
            agent, "marketing.events", ANN.encode(), serde.encode(_consent("m-2", ANN, after, 30))
        )
        await wait_for(lambda: ANN in identities.data)
        await put_on(agent, SUBJECT_DIRECTIVES, ANN.encode(), serde.encode(ERASED))
        await wait_for(lambda: consent.data.get(ANN, {}).get("suppressed") is True)
        await put_on(agent, "marketing.events", b"S-bob", serde.encode(grant))
        await wait_for(lambda: "S-bob" in consent.data)
        await state.flush()

    assert _flagged(outbox) == []
    held = rules.SubjectConsent.model_validate(consent.data["S-bob"])
    assert held.suppressed is False
    assert held.status(Purpose.marketing, Channel.sms).value == "granted"
    assert identities.data["S-bob"]["systems"]["marketing"]["phone"]["value"] == OLD_PHONE
