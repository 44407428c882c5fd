"""The ingest agent decrypts upstream events' personal fields through the worker's key store
before the identity map, suppression hashes and consent see them (issue #15, step 4 of
docs/crypto-shredding.md); what cannot be decrypted is a dead letter with its reason.

The key store is the real ``streams.keystore.KeyStore`` with real rings and KEK, fed by
the in-memory topic of tests/unit/test_keystore.py (its consumer reads back what the
store produces), so a miss is only called shredded once the ring has read up to date.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import agents.ingest as ingest_module
from agents.ingest import ciphertexts, ingest, labelled, personal_values, readable
from privops.adapters import metrics
from privops.adapters.key_topic import KeyRecordCodec
from privops.adapters.serde import Serde
from privops.connectors.encryption import encrypt_record, personal_fields
from privops.core import consent as rules
from privops.core import fieldcrypt
from privops.core import records as r
from privops.core.fieldcrypt import (
    MalformedField,
    TamperedField,
    decrypt_field,
    encrypt_field,
    parse_field,
)
from privops.core.identity import identifier_keys
from privops.core.topics import AUDIT, CONSENT_STATE, DEADLETTER, SUBJECT_DIRECTIVES
from privops.core.vocab import Channel, Purpose, System
from streams import keystore
from streams.app import settings
from streams.audit import PSEUDONYM_KEY, ref
from streams.keystore import KeyStore
from streams.state import state
from streams.tables import consent, identities, suppression
from tests.agents.conftest import Outbox, erased_consent, put_on, wait_for
from tests.unit import test_keystore
from tests.unit.test_keystore import Log, following, new_store, subject_on

NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
ANN, BOB = subject_on(0, 0), subject_on(0, 1)  # on partition 0, where put_on puts events
CID = subject_on(1)  # on a partition this worker does not own
EMAIL, PHONE = " Ann@Example.COM", "07700 900123"

# The key store's own fixtures: the topic in memory, its KEK file, its record codec.
log, kek_path, codec = test_keystore.log, test_keystore.kek_path, test_keystore.codec


@pytest.fixture
async def store(
    log: Log, codec: KeyRecordCodec, kek_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[KeyStore]:
    """The worker's key store (``key_store()``), owning partition 0, with Ann's and Bob's
    keys stored."""
    async with following(new_store(log, codec, kek_path), {0}) as found:
        monkeypatch.setattr(keystore, "_built", [found])
        await found.get_or_create(ANN)
        await found.get_or_create(BOB)
        yield found


def refusing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        ingest_module,
        "settings",
        settings.model_copy(update={"personal_plaintext": "refuse"}),
    )


def created(subject: str = ANN, **ids: str | None) -> r.CustomerCreated:
    return r.CustomerCreated(
        event_id=f"ev-created-{subject}",
        occurred_at=NOW,
        source=System.crm,
        subject_id=subject,
        identifiers=r.Identifiers(customer_id="C-1", **(ids or {"email": EMAIL, "phone": PHONE})),
    )


def consent_given(subject: str = ANN, email: str = EMAIL) -> r.ConsentGiven:
    return r.ConsentGiven(
        event_id=f"ev-consent-{subject}",
        occurred_at=NOW,
        source=System.marketing,
        subject_id=subject,
        identifiers=r.Identifiers(email=email),
        purpose=Purpose.marketing,
        channel=Channel.email,
    )


def dead_letters(outbox: Outbox) -> list[r.DeadLetter]:
    return outbox.of(DEADLETTER, r.DeadLetter)


def plaintext_count(system: str) -> float:
    found = metrics.REGISTRY.get_sample_value(
        "privops_plaintext_personal_fields_total", {"system": system}
    )
    return found or 0.0


async def test_encrypted_events_are_decrypted_before_identity_consent_and_suppression(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    on_crm = serde.encode(encrypt_record(created(), store))
    on_marketing = serde.encode(encrypt_record(consent_given(), store))
    assert b"pv1:" in on_crm
    assert b"Example" not in on_crm + on_marketing
    assert b"07700" not in on_crm
    erase = r.SubjectDirective(
        directive_id="D-1", subject_id=ANN, request_id="REQ-1", kind="suppressed", occurred_at=NOW
    )
    counted = plaintext_count("crm"), plaintext_count("marketing")

    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", ANN.encode(), on_crm)
        await put_on(agent, "marketing.events", ANN.encode(), on_marketing)
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))
        await put_on(agent, SUBJECT_DIRECTIVES, ANN.encode(), serde.encode(erase))
        await wait_for(lambda: bool(suppression.data))

    assert dead_letters(outbox) == []
    identity = identities.data[ANN]
    assert identity["email"]["value"] == "ann@example.com"
    assert identity["phone"]["value"] == "+447700900123"
    assert identity["systems"]["crm"]["email"]["value"] == EMAIL.strip()
    assert "pv1:" not in repr(identity)
    first_sight, given, _erased = outbox.of(CONSENT_STATE, r.ConsentState)
    assert first_sight.preferences == []
    assert [(p.purpose, p.channel, p.status) for p in given.preferences] == [
        (Purpose.marketing, Channel.email, "granted")
    ]
    expected = identifier_keys(PSEUDONYM_KEY, {"email": EMAIL, "phone": PHONE})
    assert len(expected) == 2
    assert expected <= set(suppression.data)
    assert (plaintext_count("crm"), plaintext_count("marketing")) == counted


async def test_an_encrypted_reimport_of_an_erased_email_is_flagged(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """The suppression list holds keyed hashes of plaintext: only a decrypted email
    matches it (a ciphertext is new random bytes every time)."""
    for key in identifier_keys(PSEUDONYM_KEY, {"email": "ann@example.com"}):
        suppression._set(key, "sr_erased")  # as read from the topic
    again = serde.encode(encrypt_record(consent_given(BOB, "ANN@example.com"), store))
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", BOB.encode(), again)
        await wait_for(
            lambda: any(a.after == "reimport_flagged" for a in outbox.of(AUDIT, r.AuditEvent))
        )
    assert consent.data.get(BOB) is None
    assert identities.data.get(BOB) is None


async def test_a_withdrawal_carrying_an_erased_persons_identifier_still_applies(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """Bob shares an identifier with an erased person (a household landline, an address
    they once used): his unsubscribe carrying it was dropped whole as a re-import, and
    he stayed contactable. A fact that can only reduce contact applies; a grant carrying
    it still re-activates nobody (review, session 25)."""
    grant = consent_given(BOB, "bob@example.com")
    for key in identifier_keys(PSEUDONYM_KEY, {"email": "ann@example.com"}):
        suppression._set(key, "sr_erased")  # as read from the topic
    unsubscribe = r.UnsubscribeClicked(
        event_id="ev-unsub-bob",
        occurred_at=NOW + timedelta(minutes=5),
        source=System.marketing,
        subject_id=BOB,
        identifiers=r.Identifiers(email="ann@example.com"),
        campaign_id="CMP-1",
    )
    regrant = consent_given(BOB, "ann@example.com").model_copy(
        update={"event_id": "ev-regrant-bob", "occurred_at": NOW + timedelta(minutes=9)}
    )
    async with ingest.test_context() as agent:
        for event in (grant, unsubscribe, regrant):
            value = serde.encode(encrypt_record(event, store))
            await put_on(agent, "marketing.events", BOB.encode(), value)
        await wait_for(
            lambda: [a.after for a in outbox.of(AUDIT, r.AuditEvent)].count("reimport_flagged") == 2
        )
    stored = rules.SubjectConsent.model_validate(consent.data[BOB])
    assert stored.status(Purpose.marketing, Channel.email).value == "withdrawn"
    ids = identities.data[BOB]["systems"]["marketing"]
    assert ids["email"]["value"] == "bob@example.com"  # the shared identifier not merged


async def test_a_shredded_key_is_a_dead_letter_and_nothing_is_applied(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    value = serde.encode(encrypt_record(created(), store))
    await store.shred(ANN, [record.key_id for record in await store.records(ANN)])
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", ANN.encode(), value)
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    (letter,) = dead_letters(outbox)
    assert (letter.reason, letter.original_topic, letter.value) == (
        "shredded_key",
        "crm.events",
        value,
    )
    assert identities.data.get(ANN) is None
    assert consent.data.get(ANN) is None
    assert outbox.on(CONSENT_STATE) == []


async def test_an_erased_subjects_event_under_their_destroyed_key_is_flagged_not_dead_lettered(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """After an erasure, a replay (or a late event) of the subject's encrypted events is
    expected: audited as a flagged re-import, not applied, and no dead letter (the
    dead-letter alert is for input that needs a look)."""
    value = serde.encode(encrypt_record(created(), store))
    await store.shred(ANN, [record.key_id for record in await store.records(ANN)])
    consent.data[ANN] = erased_consent(ANN)
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", ANN.encode(), value)
        await wait_for(
            lambda: any(a.after == "reimport_flagged" for a in outbox.of(AUDIT, r.AuditEvent))
        )
    assert dead_letters(outbox) == []
    assert identities.data.get(ANN) is None
    assert outbox.on(CONSENT_STATE) == []


@pytest.mark.parametrize("under_destroyed_key", [False, True])
async def test_an_erased_subjects_retention_facts_still_move(
    serde: Serde, outbox: Outbox, store: KeyStore, under_destroyed_key: bool
) -> None:
    """What an erasure keeps for an open debt has no end date; the debt being settled
    later is what ends it. Before, every event of an erased subject was only flagged, so
    the facts never moved and the data was kept for ever. Now a balance or investigation
    event still updates the kept facts (read from no personal field, plaintext or under
    the destroyed key), and is still flagged, nothing else applied."""
    from privops.core.erasure import SubjectFacts
    from streams.tables import subject_facts

    settled = r.AccountBalanceChanged(
        event_id="bal-late",
        occurred_at=datetime(2026, 4, 1, tzinfo=UTC),
        source=System.orders,
        subject_id=ANN,
        identifiers=r.Identifiers(customer_id="C-1", email="ann@example.com"),
        credit_account_open=False,
        balance_pence=0,
    )
    event = encrypt_record(settled, store) if under_destroyed_key else settled
    await store.shred(ANN, [record.key_id for record in await store.records(ANN)])
    consent.data[ANN] = erased_consent(ANN)
    subject_facts.data[ANN] = SubjectFacts(open_debt=True).model_dump(mode="json")
    async with ingest.test_context() as agent:
        await put_on(agent, "orders.events", ANN.encode(), serde.encode(event))
        await wait_for(
            lambda: any(a.after == "reimport_flagged" for a in outbox.of(AUDIT, r.AuditEvent))
        )
    facts = SubjectFacts.model_validate(subject_facts.data[ANN])
    assert not facts.open_debt
    assert facts.credit_closed_at == settled.occurred_at
    assert dead_letters(outbox) == []
    assert identities.data.get(ANN) is None
    assert outbox.on(CONSENT_STATE) == []
    # An erased subject with nothing kept (no facts) gets none made.
    del subject_facts.data[ANN]
    async with ingest.test_context() as agent:
        again = settled.model_copy(update={"event_id": "bal-later"})
        await put_on(agent, "orders.events", ANN.encode(), serde.encode(again))
        await wait_for(
            lambda: sum(a.after == "reimport_flagged" for a in outbox.of(AUDIT, r.AuditEvent)) == 2
        )
    assert ANN not in subject_facts.data


def moved_from_bob(store: KeyStore) -> r.CustomerCreated:
    key = store.current_key(BOB, "main")
    return created(email=encrypt_field(key, BOB, "identifiers.email", "bob@example.com"))


def moved_to_phone(store: KeyStore) -> r.CustomerCreated:
    key = store.current_key(ANN, "main")
    return created(phone=encrypt_field(key, ANN, "identifiers.email", "ann@example.com"))


async def moved_from_cid(log: Log, codec: KeyRecordCodec, kek_path: Path) -> r.CustomerCreated:
    """Cid's key lives on partition 1, which this worker does not own: refused at once,
    never waited for."""
    async with following(new_store(log, codec, kek_path), {1}) as elsewhere:
        record = await elsewhere.get_or_create(CID)
        key = await elsewhere.key_for(record.key_id)
    assert key is not None
    return created(email=encrypt_field(key, CID, "identifiers.email", "cid@example.com"))


@pytest.mark.parametrize("move", ["from_bob", "to_phone", "from_cid"])
async def test_a_ciphertext_moved_from_another_subject_or_field_is_tampered(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,
    log: Log,
    codec: KeyRecordCodec,
    kek_path: Path,
    move: str,
) -> None:
    if move == "from_bob":
        event = moved_from_bob(store)
    elif move == "to_phone":
        event = moved_to_phone(store)
    else:
        event = await moved_from_cid(log, codec, kek_path)
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", ANN.encode(), serde.encode(event))
        await wait_for(lambda: bool(outbox.on(DEADLETTER)), seconds=2)
    (letter,) = dead_letters(outbox)
    assert letter.reason == "tampered_field"
    assert identities.data.get(ANN) is None


async def test_plaintext_is_refused_when_the_setting_says_so(
    serde: Serde, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing(monkeypatch)
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", ANN.encode(), serde.encode(created()))
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    (letter,) = dead_letters(outbox)
    assert letter.reason == "malformed_field"
    assert "identifiers.email, identifiers.phone: plaintext" in letter.error
    assert "example" not in letter.error.lower()
    assert identities.data.get(ANN) is None
    # A dead letter is not shredded with Ann's key: it must not keep her plaintext.
    assert letter.value is None
    assert "not kept (personal data in plaintext)" in letter.error


@pytest.mark.usefixtures("app")
async def test_plaintext_is_accepted_and_counted_by_default(serde: Serde, outbox: Outbox) -> None:
    before = plaintext_count("crm")
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", ANN.encode(), serde.encode(created()))
        await wait_for(lambda: identities.data.get(ANN) is not None)
    assert identities.data[ANN]["email"]["value"] == "ann@example.com"
    assert plaintext_count("crm") == before + 2
    assert dead_letters(outbox) == []


async def test_a_value_that_looks_like_ciphertext_is_never_taken_for_plaintext(
    serde: Serde, outbox: Outbox
) -> None:
    async with ingest.test_context() as agent:
        await put_on(
            agent, "crm.events", ANN.encode(), serde.encode(created(email="pv1:not-a-key:AAAA"))
        )
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    (letter,) = dead_letters(outbox)
    assert letter.reason == "malformed_field"
    assert letter.error.startswith("identifiers.email: ")
    assert identities.data.get(ANN) is None


async def test_a_key_store_that_cannot_answer_is_waited_for_not_dead_lettered(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """The partition's keys are gone from this worker (assigned elsewhere: NotOwned):
    the event waits for the store, and is applied once the partition is back."""
    value = serde.encode(encrypt_record(created(), store))
    store.assign(set())
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", ANN.encode(), value)
        await asyncio.sleep(0.3)
        assert identities.data.get(ANN) is None
        store.assign({0})
        await wait_for(lambda: identities.data.get(ANN) is not None)
    assert dead_letters(outbox) == []
    assert identities.data[ANN]["email"]["value"] == "ann@example.com"


async def test_reads_go_on_between_a_revocation_and_the_next_assignment(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """A revocation must not stop reads: the reader holds the agents' state lock, which
    the revocation's own handler waits for (Faust calls the two in no fixed order), so
    waiting for the next assignment there would never end. The held ring answers."""
    value = serde.encode(encrypt_record(created(), store))
    store.revoke()
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", ANN.encode(), value)
        await wait_for(lambda: identities.data.get(ANN) is not None)
    assert dead_letters(outbox) == []
    assert identities.data[ANN]["email"]["value"] == "ann@example.com"


@pytest.mark.usefixtures("app")
async def test_an_event_with_nothing_encrypted_is_not_rebuilt() -> None:
    event = created()
    before = opening_seconds()
    assert await readable(event, 0) is event
    assert opening_seconds() == before  # nothing to open: nothing counted


def opening_seconds() -> float:
    found = metrics.REGISTRY.get_sample_value("privops_personal_fields_open_seconds_total")
    assert found is not None
    return found


@pytest.mark.usefixtures("app")
async def test_the_time_spent_opening_fields_is_counted(store: KeyStore) -> None:
    event = encrypt_record(created(), store)
    before = opening_seconds()
    assert await readable(event, 0) == created()
    assert 0 < opening_seconds() - before < 1


# --- the pure helpers -----------------------------------------------------------------------


def test_personal_values_reads_nested_fields_maps_and_lists_in_place() -> None:
    event = created(email="a@example.com", phone=None)
    assert personal_values(event, labelled(personal_fields("privops.events.CustomerCreated"))) == [
        ("identifiers.email", "a@example.com")
    ]
    notice: dict[str, Any] = {
        "document": "doc",
        "exports": [{"location": "s3://one"}, {"location": "s3://two"}],
    }
    paths = labelled(personal_fields("privops.notifications.SubjectNotification"))
    assert sorted(personal_values(notice, paths)) == [
        ("document", "doc"),
        ("exports[].location", "s3://one"),
        ("exports[].location", "s3://two"),
    ]
    task = {"identifiers": {"email": "a@example.com", "customer_id": "C-1"}}
    assert sorted(personal_values(task, labelled(personal_fields("privops.tasks.Erase")))) == [
        ("identifiers{}", "C-1"),
        ("identifiers{}", "a@example.com"),
    ]


def test_ciphertexts_finds_and_parses_ciphertexts_and_plaintext_and_refuses_the_rest() -> None:
    key_id = f"{ANN}/main/{'0' * 16}"
    token = f"pv1:{key_id}:{'A' * 40}"
    assert ciphertexts(ANN, [("a", token), ("b", token), ("c", "plain")]) == (
        {token: parse_field(token)},
        ["c"],
    )
    with pytest.raises(TamperedField, match="another subject"):
        ciphertexts(BOB, [("identifiers.email", token)])
    with pytest.raises(MalformedField, match=r"identifiers\.phone"):
        ciphertexts(ANN, [("identifiers.phone", "pv1:ann@example.com")])


@pytest.mark.usefixtures("app")
async def test_each_ciphertext_is_parsed_once(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check before the keys are looked up parses each ciphertext; opening it does
    not parse it again (``decrypt_field`` would: it parses through fieldcrypt's own)."""
    event = encrypt_record(created(), store)
    parses: list[str] = []

    def counted(token: str) -> tuple[str, bytes]:
        parses.append(token)
        return parse_field(token)

    monkeypatch.setattr(fieldcrypt, "parse_field", counted)
    monkeypatch.setattr(ingest_module, "parse_field", counted)
    assert await readable(event, 0) == created()
    sealed = [event.identifiers.email, event.identifiers.phone]
    assert sorted(parses) == sorted(value for value in sealed if value)
    assert len(parses) == 2


async def test_the_associated_data_alone_refuses_another_subjects_ciphertext(
    store: KeyStore,
) -> None:
    """What the key id check adds to: even given Bob's key, his ciphertext does not open
    as Ann's (her subject id is in the associated data), nor in another field."""
    key = store.current_key(BOB, "main")
    token = encrypt_field(key, BOB, "identifiers.email", "bob@example.com")
    with pytest.raises(TamperedField):
        decrypt_field(token, ANN, "identifiers.email", lambda _id: key)
    with pytest.raises(TamperedField):
        decrypt_field(token, BOB, "identifiers.phone", lambda _id: key)
    assert decrypt_field(token, BOB, "identifiers.email", lambda _id: key) == "bob@example.com"


async def test_a_rebuilt_worker_flags_an_erased_subjects_event_by_the_suppression_list(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """A worker rebuilt from the topics under a new app id has no consent state for Ann,
    but the suppression list (its own compacted topic) holds her subject ref: an event
    under her destroyed key is a flagged re-import, not a dead letter."""
    value = serde.encode(encrypt_record(created(), store))
    await store.shred(ANN, [record.key_id for record in await store.records(ANN)])
    for key in identifier_keys(PSEUDONYM_KEY, {"email": EMAIL}):
        suppression.put(key, ref(ANN))
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", ANN.encode(), value)
        await wait_for(
            lambda: any(a.after == "reimport_flagged" for a in outbox.of(AUDIT, r.AuditEvent))
        )
    assert dead_letters(outbox) == []
    assert identities.data.get(ANN) is None
    assert consent.data.get(ANN) is None


# --- keys a system may seal under (review, session 34) ---------------------------------

SEALED_UNDER = [
    pytest.param(System.crm, "retained:purchases:2032-03-30", False,
                 id="crm-under-orders-retained-purchases-key"),
    pytest.param(System.crm, "retained:unerased:2026-03-10", False,
                 id="crm-under-privops-own-scope"),
    pytest.param(System.web, "retained:cctv:2028-03-10", False, id="web-under-a-cctv-key"),
    pytest.param(System.orders, "retained:purchases:2032-03-30", True,
                 id="orders-under-its-own-retained-key"),
    pytest.param(System.crm, "retained:contact:2032-03-30", True,
                 id="crm-under-a-retained-key-of-its-own-category"),
    pytest.param(System.crm, "main", True, id="main"),
]  # fmt: skip


@pytest.mark.parametrize(("system", "scope", "taken"), SEALED_UNDER)
async def test_an_event_is_opened_only_under_a_key_its_system_may_seal_under(
    serde: Serde, outbox: Outbox, store: KeyStore, system: System, scope: str, taken: bool
) -> None:
    """The key service lists every stored key of a subject to any system (a connector
    opens a task sealed under privops' storage key with it), and ingest opened fields
    under any of them: crm sealed under orders' retained purchases key, which outlives
    an erasure for years, kept its copies readable after the subject's erasure."""
    await store.get_or_create(ANN, scope)
    event = encrypt_record(created().model_copy(update={"source": system}), store, scope=scope)
    value = serde.encode(event)
    async with ingest.test_context() as agent:
        await put_on(agent, f"{system.value}.events", ANN.encode(), value)
        await wait_for(lambda: bool(outbox.on(DEADLETTER) or outbox.on(CONSENT_STATE)))
    if taken:
        assert dead_letters(outbox) == []
        assert identities.data[ANN]["email"]["value"] == "ann@example.com"
        return
    (letter,) = dead_letters(outbox)
    assert letter.reason == "tampered_field"
    assert f"that {system.value} may not use" in letter.error
    assert letter.value == value  # only ciphertext: kept
    assert identities.data.get(ANN) is None
    assert consent.data.get(ANN) is None


async def test_an_erased_subjects_retention_facts_move_only_by_the_category_holder(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """An event under an erased subject's destroyed key still moves the facts an
    erasure keeps; before, web's InvestigationClosed ended cctv's investigation hold
    there too (review, session 34)."""
    from privops.core.erasure import SubjectFacts
    from streams.tables import subject_facts

    closed = r.InvestigationClosed(
        event_id="inc-closed",
        occurred_at=NOW,
        source=System.web,
        subject_id=ANN,
        identifiers=r.Identifiers(customer_id="C-1", email="ann@example.com"),
        investigation_id="INC-1",
    )
    value = serde.encode(encrypt_record(closed, store))
    await store.shred(ANN, [record.key_id for record in await store.records(ANN)])
    consent.data[ANN] = erased_consent(ANN)
    keeping = SubjectFacts(open_investigation_ids=("INC-1",)).model_dump(mode="json")
    subject_facts.data[ANN] = keeping
    async with ingest.test_context() as agent:
        await put_on(agent, "web.events", ANN.encode(), value)
        await wait_for(
            lambda: any(a.after == "reimport_flagged" for a in outbox.of(AUDIT, r.AuditEvent))
        )
    assert dead_letters(outbox) == []
    assert subject_facts.data[ANN] == keeping


# --- events not where, or when, they could be taken (review, session 25) ------------------


@pytest.mark.parametrize("sealed", [False, True], ids=["plaintext", "sealed"])
async def test_a_wrongly_keyed_event_is_dead_lettered_its_plaintext_never_kept(
    serde: Serde, outbox: Outbox, store: KeyStore, sealed: bool
) -> None:
    """A dead letter is never shredded with its subject's key: one holding an email in
    plaintext outlived the subject's erasure. Before, only the refused-plaintext case
    dropped the value; a wrong key, partition or topic kept it whole."""
    event = encrypt_record(created(), store) if sealed else created()
    value = serde.encode(event)
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", BOB.encode(), value)  # Ann's event, Bob's key
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    (letter,) = dead_letters(outbox)
    assert letter.reason == "wrong_key"
    assert letter.value == (value if sealed else None)
    assert identities.data.get(ANN) is None
    assert identities.data.get(BOB) is None


@pytest.mark.parametrize("sealed", [False, True], ids=["plaintext", "sealed"])
async def test_a_business_event_on_a_results_topic_is_dead_lettered_its_plaintext_never_kept(
    serde: Serde, outbox: Outbox, store: KeyStore, sealed: bool
) -> None:
    """The workflow's dead letters kept the value whole: an email in plaintext put on a
    system's results topic by mistake outlived the subject's erasure (review, session
    43). Its ciphertext is kept, as the ingest agent's refusals keep it."""
    from agents.requests import workflow
    from privops.core.topics import task_results_topic

    event = encrypt_record(created(), store) if sealed else created()
    value = serde.encode(event)
    async with workflow.test_context() as agent:
        await put_on(agent, task_results_topic(System.crm), ANN.encode(), value)
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
    (letter,) = dead_letters(outbox)
    assert (letter.reason, letter.consumer) == ("wrong_topic", "workflow")
    assert letter.value == (value if sealed else None)


async def test_an_event_dated_ahead_of_the_clock_is_dead_lettered(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """The latest event by occurred_at wins: a grant dated 2099 outranked every real
    withdrawal until then, and an order dated 9999 stopped the erasure planner on every
    restart. A few minutes of clock skew are taken."""
    now = datetime.now(UTC)
    ahead = consent_given().model_copy(update={"occurred_at": now + timedelta(days=1)})
    skewed = consent_given(BOB).model_copy(update={"occurred_at": now + timedelta(minutes=2)})
    async with ingest.test_context() as agent:
        await put_on(agent, "marketing.events", ANN.encode(), serde.encode(ahead))
        await put_on(agent, "marketing.events", BOB.encode(), serde.encode(skewed))
        await wait_for(lambda: bool(outbox.on(CONSENT_STATE)))
    (letter,) = dead_letters(outbox)
    assert letter.reason == "implausible_time"
    assert "ahead of privops' clock" in letter.error
    assert letter.value is None  # its email was plaintext
    assert consent.data.get(ANN) is None
    assert consent.data.get(BOB) is not None


async def test_an_investigation_opened_by_a_fast_clock_is_taken_as_of_its_record(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """What can only keep data longer is never lost to a system's clock either: an
    investigation opened an hour ahead (UK summer time stamped as UTC) was dead-lettered,
    and an erasure meanwhile deleted the footage under investigation (review, session
    44). A close that far ahead is still refused: it would end the period."""
    from streams.tables import subject_facts

    now = datetime.now(UTC)
    produced = now - timedelta(seconds=30)

    def event(
        model: type[r.InvestigationOpened | r.InvestigationClosed], event_id: str, **fields: Any
    ) -> r.UpstreamEvent:
        return model(
            event_id=event_id,
            occurred_at=now + timedelta(hours=1),
            source=System.cctv,
            subject_id=ANN,
            identifiers=r.Identifiers(customer_id="V-1"),
            investigation_id="INC-7",
            **fields,
        )

    opened = event(r.InvestigationOpened, "ev-open-fast", reason="theft at the depot")
    closed = event(r.InvestigationClosed, "ev-close-fast")
    async with ingest.test_context() as agent:
        for record in (opened, closed):
            await put_on(
                agent, "cctv.events", ANN.encode(), serde.encode(record),
                timestamp=produced.timestamp(),
            )  # fmt: skip
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
        await state.settle()
    (letter,) = dead_letters(outbox)  # the close: it would have ended the period
    assert letter.reason == "implausible_time"
    facts = subject_facts.data[ANN]
    assert facts["open_investigation_ids"] == ["INC-7"]


async def test_an_event_dated_before_any_real_date_is_refused_or_if_protective_redated(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """A system's default date (1970-01-01): taken as dated, an unsubscribe lost to every
    grant unaudited, and an investigation closed "in 1970" made its footage erasable at
    once (review, session 44). A grant so dated is refused; an unsubscribe is taken as of
    its record, as one from a fast clock is."""
    now = datetime.now(UTC)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    grant = consent_given().model_copy(update={"occurred_at": now - timedelta(days=1)})
    bogus_grant = consent_given(BOB).model_copy(update={"occurred_at": epoch})
    unsubscribe = r.UnsubscribeClicked(
        event_id="ev-unsub-epoch",
        occurred_at=epoch,
        source=System.marketing,
        subject_id=ANN,
        identifiers=r.Identifiers(email=EMAIL),
        campaign_id="CMP-1",
    )
    produced = now - timedelta(seconds=30)
    async with ingest.test_context() as agent:
        for event, key in ((grant, ANN), (unsubscribe, ANN), (bogus_grant, BOB)):
            await put_on(
                agent, "marketing.events", key.encode(), serde.encode(event),
                timestamp=produced.timestamp(),
            )  # fmt: skip
        await wait_for(lambda: bool(outbox.on(DEADLETTER)))
        await wait_for(lambda: len(outbox.on(CONSENT_STATE)) == 2)
    (letter,) = dead_letters(outbox)
    assert letter.reason == "implausible_time"
    assert "before 2000-01-01" in letter.error
    assert consent.data.get(BOB) is None
    stored = rules.SubjectConsent.model_validate(consent.data[ANN])
    entry = stored.entries[f"{Purpose.marketing.value}:{Channel.email.value}"]
    assert (entry.status.value, entry.occurred_at) == ("withdrawn", produced)


async def test_an_unsubscribe_from_a_fast_clock_is_taken_as_of_its_record(
    serde: Serde, outbox: Outbox, store: KeyStore
) -> None:
    """What can only reduce contact is never lost to a system's clock: an unsubscribe an
    hour ahead is applied, dated now (a grant that far ahead is refused, above)."""
    now = datetime.now(UTC)
    grant = consent_given().model_copy(update={"occurred_at": now - timedelta(days=1)})
    unsubscribe = r.UnsubscribeClicked(
        event_id="ev-unsub-fast-clock",
        occurred_at=now + timedelta(hours=1),
        source=System.marketing,
        subject_id=ANN,
        identifiers=r.Identifiers(email=EMAIL),
        campaign_id="CMP-1",
    )
    produced = now - timedelta(seconds=30)  # the record's timestamp
    async with ingest.test_context() as agent:
        for event in (grant, unsubscribe):
            await put_on(
                agent,
                "marketing.events",
                ANN.encode(),
                serde.encode(event),
                timestamp=produced.timestamp(),
            )
        await wait_for(lambda: len(outbox.on(CONSENT_STATE)) == 2)
    assert dead_letters(outbox) == []
    stored = rules.SubjectConsent.model_validate(consent.data[ANN])
    entry = stored.entries[f"{Purpose.marketing.value}:{Channel.email.value}"]
    assert entry.status.value == "withdrawn"
    # Dated as its record was produced, not when it was decided: a replay after a crash
    # must date it (and its audit step) the same, or the chain forks (review, session 35).
    assert entry.occurred_at == produced
    (step,) = [a for a in outbox.of(AUDIT, r.AuditEvent) if a.after == "withdrawn"]
    assert step.occurred_at == produced
