"""The ingest agent on faust's test_context: upstream events -> tables, consent state, audit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.ingest import ingest
from privops.adapters.serde import Serde, frame
from privops.core import records as r
from privops.core.topics import AUDIT, CONSENT_STATE, DEADLETTER
from privops.core.vocab import Channel, Purpose, System
from streams.tables import consent, identities
from tests.agents.conftest import Outbox, put_on, wait_for

NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


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


async def test_consent_given_updates_table_and_emits_state_and_audit(
    app: Any, serde: Serde, outbox: Outbox
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


async def test_garbage_is_dead_lettered_and_the_next_event_processed(
    app: Any, serde: Serde, outbox: Outbox
) -> None:
    garbage = b"\x07not avro at all"
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", garbage)
        await put_on(agent, "marketing.events", b"S1", serde.encode(consent_given()))
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))

    letters = [s for s in outbox.sent if s.topic == DEADLETTER]
    assert len(letters) == 1
    letter = letters[0].record
    assert isinstance(letter, r.DeadLetter)
    assert letter.reason == "undecodable"
    assert letter.value == garbage
    assert letter.key == b"S1"
    assert letter.original_topic == "marketing.events"
    assert letter.consumer == "ingest"
    assert letters[0].key == b"S1"
    assert consent.data.get("S1") is not None


async def test_unknown_schema_id_is_dead_lettered(
    app: Any, serde: Serde, outbox: Outbox, monkeypatch: Any
) -> None:
    async def missing(schema_id: int) -> str:
        from privops.core.errors import DecodeError

        raise DecodeError("unknown_schema", f"schema id {schema_id} is not in the registry")

    monkeypatch.setattr(serde, "_fetch_async", missing)
    payload = serde.codec.encode(consent_given())
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", frame(99_999, payload))
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    assert [d.reason for d in outbox.on(DEADLETTER)] == ["unknown_schema"]


async def test_event_without_identifiers_is_dead_lettered(
    app: Any, serde: Serde, outbox: Outbox
) -> None:
    bare = consent_given(identifiers=r.Identifiers())
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S2", serde.encode(bare))
        await put_on(agent, "marketing.events", b"S1", serde.encode(consent_given("ev-2")))
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))

    letters = outbox.on(DEADLETTER)
    assert [d.reason for d in letters] == ["missing_identifier"]
    assert consent.data.get("S2") is None
    assert identities.data.get("S2") is None
    assert consent.data.get("S1") is not None


async def test_redelivered_event_changes_nothing(app: Any, serde: Serde, outbox: Outbox) -> None:
    value = serde.encode(consent_given())
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", b"S1", value)
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))
        await put_on(agent, "marketing.events", b"S1", value)
        await put_on(agent, "marketing.events", b"S9", serde.encode(consent_given("ev-9", "S9")))
        await wait_for(lambda: consent.data.get("S9") is not None)
    s1_states = [s for s in outbox.sent if s.topic == CONSENT_STATE and s.key == b"S1"]
    assert len(s1_states) == 1
    assert len([a for a in outbox.on(AUDIT) if a.after == "granted"]) == 2  # S1 once, S9 once


async def test_source_on_the_wrong_topic_is_dead_lettered(
    app: Any, serde: Serde, outbox: Outbox
) -> None:
    async with ingest.test_context() as agent:
        await put_on(agent, "orders.events", b"S1", serde.encode(consent_given()))
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    assert consent.data.get("S1") is None
