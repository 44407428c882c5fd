"""A legal hold reaches the systems' deletion by age (``privacy.legal-holds.<system>``),
sealed like a task, and again once an erasure has destroyed the key it was sealed under.

The workflow and ingest agents run on faust's test_context with the worker's real key
store and sealer (tests/agents/test_erasure_shred.py); the systems' side, reading the
topic and keeping held rows past their period, is tests/integration/ and the reference
connectors'.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.ingest import ingest
from agents.requests import workflow
from privops.adapters.serde import Serde
from privops.connectors.encryption import decrypt_record
from privops.core import records as r
from privops.core import shredding
from privops.core.erasure import SubjectFacts
from privops.core.fieldcrypt import parse_field
from privops.core.topics import (
    COMMANDS,
    LEGAL_HOLDS_PREFIX,
    SUBJECT_DIRECTIVES,
    task_results_topic,
)
from privops.core.vocab import Category, RequestType, System
from streams.context import collaborators
from streams.keystore import KeyStore
from streams.sealing import WorkerSealer
from streams.state import state
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.signers import sign, trust
from tests.agents.test_erasure_free_text import hold_on_ann, place
from tests.agents.test_erasure_shred import (
    ANN,
    EMAIL,
    INVOICE,
    erased_keeping_invoices,
    history,
    known,
    suppress,
)
from tests.agents.test_erasure_shred import store as store
from tests.agents.test_sealed_state import sealed as sealed
from tests.agents.test_sealed_state import source
from tests.agents.test_workflow_agent import NOW, TASKED, erasure, rectified, submitted
from tests.unit import test_keystore as keystore_tests

key_log, codec, kek_path = keystore_tests.log, keystore_tests.codec, keystore_tests.kek_path

CONTACT_HOLDERS = {System.orders, System.crm, System.telephony, System.marketing, System.web}


@pytest.fixture(autouse=True)
def signers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return trust(monkeypatch, tmp_path)


def hold_records(outbox: Outbox) -> list[tuple[System, r.LegalHoldState, bytes]]:
    found = []
    for sent in outbox.on_prefix(LEGAL_HOLDS_PREFIX):
        assert sent.key == ANN.encode()
        assert isinstance(sent.record, r.LegalHoldState)
        found.append((System(sent.topic.removeprefix(LEGAL_HOLDS_PREFIX)), sent.record, sent.value))
    return found


def release_of(hold_id: str) -> r.LegalHoldReleased:
    return sign(
        r.LegalHoldReleased(
            command_id=f"{hold_id}:release",
            request_id=hold_id,
            issued_at=NOW,
            actor="dpo",
            hold_id=hold_id,
            subject_id=ANN,
        )
    )


async def test_a_hold_reaches_each_system_sealed_and_its_release_is_a_tombstone(
    serde: Serde, outbox: Outbox, store: KeyStore, sealed: WorkerSealer
) -> None:
    main = await store.get_or_create(ANN)
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await place(flow, facts_agent, serde, outbox, hold_on_ann("H-1"))
        records = hold_records(outbox)
        assert {system for system, _, _ in records} == CONTACT_HOLDERS
        for system, record, raw in records:
            assert (record.categories, record.hold_ids) == ([Category.contact], ["H-1"])
            # Sealed under Ann's key, as her tasks are; the DPO's reason never travels.
            assert EMAIL.encode() not in raw
            assert b"Acacia" not in raw
            assert b"solicitor" not in raw
            assert {parse_field(v)[0] for v in record.identifiers.values()} == {main.key_id}
            opened = decrypt_record(record, source(store))
            assert opened.identifiers, system
        crm = next(rec for s, rec, _ in records if s is System.crm)
        assert decrypt_record(crm, source(store)).identifiers == {
            "contact_id": "K-1",
            "email": EMAIL,
        }

        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(release_of("H-1")))
        await wait_for(lambda: len(outbox.tombstones) == len(CONTACT_HOLDERS))
    assert {(t, k) for t, k in outbox.tombstones} == {
        (f"{LEGAL_HOLDS_PREFIX}{s.value}", ANN.encode()) for s in CONTACT_HOLDERS
    }


async def test_an_erasure_sends_the_hold_again_under_a_key_that_stays(
    serde: Serde, outbox: Outbox, store: KeyStore, sealed: WorkerSealer
) -> None:
    """Sent before, the records were sealed under ``main``; the erasure destroys it, and
    a system re-reading its topic could no longer open whom to keep."""
    main = await store.get_or_create(ANN)
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await place(flow, facts_agent, serde, outbox, hold_on_ann("H-2"))
        outbox.sent.clear()  # the erasure's helpers read only its own directives
        await erased_keeping_invoices(flow, facts_agent, serde, outbox, "R-held")
        await state.flush()
        assert shredding.KEYS_SHREDDED in history("R-held")
    assert store.key(main.key_id) is None
    again = hold_records(outbox)
    assert {system for system, _, _ in again} <= CONTACT_HOLDERS
    assert {System.orders, System.crm, System.marketing} <= {system for system, _, _ in again}
    for system, record, raw in again:
        assert EMAIL.encode() not in raw
        key_ids = {parse_field(v)[0] for v in record.identifiers.values()}
        assert key_ids, system
        assert main.key_id not in key_ids, system
        assert decrypt_record(record, source(store)).identifiers, system
    crm = next(rec for s, rec, _ in again if s is System.crm)
    assert json.loads(decrypt_record(crm, source(store)).model_dump_json())["identifiers"] == {
        "contact_id": "K-1",
        "email": EMAIL,
    }


def crm_event(event_id: str, email: str) -> r.CustomerCreated:
    return r.CustomerCreated(
        event_id=event_id,
        source=System.crm,
        occurred_at=datetime.now(UTC),  # after what tests/agents/test_erasure_shred.known says
        subject_id=ANN,
        identifiers=r.Identifiers(email=email),
    )


async def test_a_new_identifier_reaches_the_systems_a_hold_reaches(
    serde: Serde, outbox: Outbox, store: KeyStore, sealed: WorkerSealer
) -> None:
    """Held rows under a new address would otherwise be deleted by age: the record is
    sent again with it. An event that only confirms what is known sends nothing."""
    await store.get_or_create(ANN)
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    new_email = "ann.new@example.com"
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await place(flow, facts_agent, serde, outbox, hold_on_ann("H-3"))
        outbox.sent.clear()
        await put_on(facts_agent, "crm.events", ANN.encode(), serde.encode(crm_event("E-1", EMAIL)))
        await state.flush()
        assert hold_records(outbox) == []  # her email again, seen later: nothing new

        await put_on(
            facts_agent, "crm.events", ANN.encode(), serde.encode(crm_event("E-2", new_email))
        )
        await wait_for(lambda: bool(hold_records(outbox)))
        await state.flush()
    records = {system: record for system, record, _ in hold_records(outbox)}
    assert set(records) == CONTACT_HOLDERS
    crm = decrypt_record(records[System.crm], source(store))
    assert crm.identifiers == {"contact_id": "K-1", "email": new_email}
    assert crm.previous_identifiers == {"email": [EMAIL]}
    assert crm.hold_ids == ["H-3"]


async def test_a_rectified_email_a_system_confirmed_reaches_the_systems_a_hold_reaches(
    serde: Serde, outbox: Outbox, store: KeyStore, sealed: WorkerSealer
) -> None:
    """As an event's new email does (above): a rectification a system confirms puts the
    new one in the identity map, and the hold is sent again with it. Before, it was not,
    and held rows under the corrected address were deleted by age (review, session 44)."""
    await store.get_or_create(ANN)
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    new_email = "ann.corrected@example.com"
    fix = submitted(
        "R-fix-held", RequestType.rectification, ANN, rectification={"email": new_email}
    )
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await place(flow, facts_agent, serde, outbox, hold_on_ann("H-5"))
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(fix))
        await wait_for(lambda: any(s.topic.startswith("privacy.tasks.") for s in outbox.sent))
        outbox.sent.clear()
        done = rectified("R-fix-held", System.crm)
        await put_on(flow, task_results_topic(System.crm), ANN.encode(), serde.encode(done))
        await wait_for(lambda: bool(hold_records(outbox)))
        await state.flush()
    records = {system: record for system, record, _ in hold_records(outbox)}
    crm = decrypt_record(records[System.crm], source(store))
    assert crm.identifiers == {"contact_id": "K-1", "email": new_email}
    assert crm.hold_ids == ["H-5"]


# --- decisions that follow one another before the ingest agent has caught up (review,
# session 28): the workflow stores each hold as it decides it, so the next decision about
# the subject reads it; the directive the ingest agent also gets is never fed back here.


def placed_on_ann(hold_id: str, category: Category, second: int) -> r.LegalHoldPlaced:
    hold = hold_on_ann(hold_id).model_copy(
        update={"categories": [category], "issued_at": NOW + timedelta(seconds=second)}
    )
    return sign(hold)


def released_from_ann(hold_id: str, second: int) -> r.LegalHoldReleased:
    release = release_of(hold_id).model_copy(update={"issued_at": NOW + timedelta(seconds=second)})
    return sign(release)


def held_at(outbox: Outbox, system: System) -> tuple[list[str], list[str]] | None:
    """What ``system``'s topic ends with for Ann: (categories, hold ids), or None."""
    last = outbox.latest(LEGAL_HOLDS_PREFIX)[(f"{LEGAL_HOLDS_PREFIX}{system.value}", ANN.encode())]
    if last is None:
        return None
    assert isinstance(last, r.LegalHoldState)
    return [c.value for c in last.categories], last.hold_ids


async def test_a_second_hold_decided_at_once_keeps_the_first(
    serde: Serde, outbox: Outbox, store: KeyStore, sealed: WorkerSealer
) -> None:
    await store.get_or_create(ANN)
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    async with workflow.test_context() as flow:
        for cmd in (
            placed_on_ann("H-1", Category.contact, 0),
            placed_on_ann("H-2", Category.interactions, 1),
        ):
            await put_on(flow, COMMANDS, ANN.encode(), serde.encode(cmd))
        await wait_for(lambda: len(outbox.on(SUBJECT_DIRECTIVES)) == 2)
        await state.flush()
        assert held_at(outbox, System.crm) == (["contact", "interactions"], ["H-1", "H-2"])
        assert held_at(outbox, System.orders) == (["contact"], ["H-1"])

        then: list[r.Command] = [
            released_from_ann("H-1", 2),
            placed_on_ann("H-3", Category.cctv, 3),
        ]
        for command in then:
            await put_on(flow, COMMANDS, ANN.encode(), serde.encode(command))
        await wait_for(lambda: len(outbox.on(SUBJECT_DIRECTIVES)) == 4)
        await state.flush()
    assert held_at(outbox, System.crm) == (["interactions"], ["H-2"])
    assert held_at(outbox, System.orders) is None


async def test_a_release_just_before_an_erasure_completes_is_not_undone_by_it(
    serde: Serde, outbox: Outbox, store: KeyStore, sealed: WorkerSealer
) -> None:
    await store.get_or_create(ANN)
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await place(flow, facts_agent, serde, outbox, hold_on_ann("H-1"))
        outbox.sent.clear()  # the erasure's helpers read only its own directives
        await erased_with(release_of("H-1"), flow, facts_agent, serde, outbox, "R-rel")
    ends = {system: held_at(outbox, system) for system in CONTACT_HOLDERS}
    assert ends == dict.fromkeys(CONTACT_HOLDERS)


async def test_a_hold_placed_just_before_an_erasure_completes_opens_after_it(
    serde: Serde, outbox: Outbox, store: KeyStore, sealed: WorkerSealer
) -> None:
    main = await store.get_or_create(ANN)
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await erased_with(hold_on_ann("H-1"), flow, facts_agent, serde, outbox, "R-late")
    assert store.key(main.key_id) is None
    ends = outbox.latest(LEGAL_HOLDS_PREFIX)
    assert {topic.removeprefix(LEGAL_HOLDS_PREFIX) for topic, _ in ends} >= {"orders", "crm"}
    for (topic, _), record in ends.items():
        if record is None:
            continue
        assert isinstance(record, r.LegalHoldState)
        assert decrypt_record(record, source(store)).identifiers, topic


async def erased_with(
    cmd: r.Command, flow: Any, facts_agent: Any, serde: Serde, outbox: Outbox, request_id: str
) -> None:
    """Ann's erasure, with ``cmd`` decided just before its last system answers (before
    the ingest agent has applied anything of it); returns once her keys are shredded."""
    await put_on(flow, COMMANDS, ANN.encode(), serde.encode(erasure(request_id, ANN)))
    await suppress(facts_agent, serde, outbox, request_id)
    tasks = await erase_tasks(outbox, request_id)
    await answer(flow, serde, tasks[:-1])
    await put_on(flow, COMMANDS, ANN.encode(), serde.encode(cmd))
    await answer(flow, serde, tasks[-1:])
    await wait_for(lambda: shredding.KEYS_SHREDDED in history(request_id))
    await state.flush()


async def erase_tasks(outbox: Outbox, request_id: str) -> list[r.Task]:
    await wait_for(lambda: len(tasks_of(outbox, request_id)) >= len(TASKED))
    return list({task.system: task for task in tasks_of(outbox, request_id)}.values())


def tasks_of(outbox: Outbox, request_id: str) -> list[r.Task]:
    sent = [s.record for s in outbox.on_prefix("privacy.tasks.")]
    return [t for t in sent if isinstance(t, r.Task) and t.request_id == request_id]


async def answer(flow: Any, serde: Serde, tasks: list[r.Task]) -> None:
    for task in tasks:
        done = r.TaskCompleted(
            task_id=task.task_id,
            request_id=task.request_id,
            system=task.system,
            answered_at=collaborators().clock.now(),
        )
        await put_on(flow, task_results_topic(task.system), ANN.encode(), serde.encode(done))


async def test_a_hold_placed_before_any_system_reported_the_subject_reaches_them_later(
    serde: Serde, outbox: Outbox, store: KeyStore, sealed: WorkerSealer
) -> None:
    """Nobody could be told when it was placed (the answer says so); the first event
    that makes the subject findable sends it (review, session 28)."""
    await store.get_or_create(ANN)
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(hold_on_ann("H-4")))
        await wait_for(lambda: len(outbox.tombstones) == len(CONTACT_HOLDERS))
        assert hold_records(outbox) == []
        await put_on(facts_agent, "crm.events", ANN.encode(), serde.encode(crm_event("E-1", EMAIL)))
        await wait_for(lambda: bool(hold_records(outbox)))
        await state.flush()
    crm = held_at(outbox, System.crm)
    assert crm == (["contact"], ["H-4"])
