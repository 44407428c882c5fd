"""A completed erasure shreds the subject's keys and drops their table entries, except what
retention keeps, which the follow-up erasure takes when the retention ends (issue #15,
step 6 of docs/crypto-shredding.md).

The workflow and ingest agents run on faust's test_context; the ingest agent applies the
erasure's own suppression directive, as in the worker. The key store is the real
``streams.keystore.KeyStore`` with real rings and KEK over the in-memory topic of
tests/unit/test_keystore.py, whose log shows every record and tombstone written.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError, KafkaTimeoutError, TopicAuthorizationFailedError

from agents.ingest import ingest
from agents.requests import workflow
from privops.adapters.key_topic import KeyRecordCodec
from privops.adapters.serde import Serde
from privops.core import records as r
from privops.core import sealing, shredding
from privops.core.clock import Clock
from privops.core.erasure import SubjectFacts, retention_end
from privops.core.identity import IdentityMap, merge
from privops.core.subject_keys import SubjectErased
from privops.core.topics import (
    AUDIT,
    COMMANDS,
    REQUEST_TICKS,
    SUBJECT_DIRECTIVES,
    task_results_topic,
)
from privops.core.vocab import Category, RequestState, System
from streams import keystore
from streams.context import collaborators
from streams.keystore import KeyStore
from streams.sealing import WorkerSealer
from streams.state import state
from streams.tables import (
    FACTS,
    IDENTITIES,
    consent,
    erased_at,
    identities,
    requests,
    subject_facts,
)
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.signers import trust
from tests.agents.test_workflow_agent import TASKED, erasure
from tests.unit import test_keystore as keystore_tests
from tests.unit.test_keystore import Log, following, new_store, subject_on

NOW = datetime.now(UTC)
ANN, BOB = subject_on(0, 0), subject_on(0, 1)  # partition 0, where put_on puts messages
EMAIL = "ann@example.com"
SYSTEM_IDS = {
    System.orders: {"customer_id": "C-1"},
    System.crm: {"contact_id": "K-1", "email": EMAIL},
    System.marketing: {"email": EMAIL},
}
INVOICE = NOW - timedelta(days=30)


def kept_until() -> datetime:
    """When the subject's invoices may go: six years from their financial year's end."""
    dm = collaborators().datamap
    end = retention_end(dm.retention_for(Category.purchases), INVOICE, dm.organisation)
    assert end is not None
    return end


@pytest.fixture(autouse=True)
def signers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return trust(monkeypatch, tmp_path)


# The key topic's fixtures (an in-memory log, its codec, a KEK file) are the key store's.
key_log, codec, kek_path = keystore_tests.log, keystore_tests.codec, keystore_tests.kek_path


@pytest.fixture
async def store(
    key_log: Log, codec: KeyRecordCodec, kek_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[KeyStore]:
    """The worker's key store (``key_store()``), owning every partition."""
    async with following(new_store(key_log, codec, kek_path), {0, 1, 2, 3}) as found:
        monkeypatch.setattr(keystore, "_built", [found])
        yield found


@pytest.fixture
def shifted(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Move the worker's clock (as PRIVOPS_CLOCK_OFFSET_DAYS does) to a given instant."""

    def to(instant: datetime) -> None:
        monkeypatch.setattr(collaborators(), "clock", Clock(instant - datetime.now(UTC)))

    return to


def known(facts: SubjectFacts) -> None:
    """Ann as the ingest agent left her: identifiers from three systems, her facts."""
    identity: IdentityMap | None = None
    for system, ids in SYSTEM_IDS.items():
        identity = merge(identity, ANN, system, ids, NOW - timedelta(days=3))
    assert identity is not None
    identities.data[ANN] = identity.model_dump(mode="json")
    subject_facts.data[ANN] = facts.model_dump(mode="json")


def _ident(value: str) -> dict[str, Any]:
    """An identifier as the identities table stores it (with when it was last seen)."""
    return {
        "value": value,
        "occurred_at": (NOW - timedelta(days=3)).isoformat().replace("+00:00", "Z"),
    }


def history(request_id: str) -> list[str]:
    stored = requests.data.get(request_id)
    return [h["event"] for h in stored["history"]] if stored else []


def tombstones(log: Log) -> list[str]:
    return [key.decode() for key, value in log.parts[0] if value is None]


def shred_steps(outbox: Outbox) -> list[r.AuditEvent]:
    return [a for a in outbox.of(AUDIT, r.AuditEvent) if a.action == shredding.KEYS_SHREDDED]


async def answer_all(
    agent: Any, serde: Serde, outbox: Outbox, request_id: str, **models: type
) -> None:
    """Every task of the request answered: TaskCompleted unless a model is given."""
    for sent in outbox.on_prefix("privacy.tasks."):
        task = sent.record
        assert isinstance(task, r.Erase)
        if task.request_id != request_id:
            continue
        model = models.get(task.system.value, r.TaskCompleted)
        extra = {} if model is r.TaskCompleted else {"reason": "invoices: kept 6 years"}
        result = model(
            task_id=task.task_id,
            request_id=request_id,
            system=task.system,
            answered_at=collaborators().clock.now(),
            **extra,
        )
        await put_on(agent, task_results_topic(task.system), ANN.encode(), serde.encode(result))


async def suppress(agent: Any, serde: Serde, outbox: Outbox, request_id: str) -> None:
    """The ingest agent applies the erasure's own suppression directive."""
    await wait_for(lambda: any(d.request_id == request_id for d in directives(outbox)))
    (directive,) = [d for d in directives(outbox) if d.request_id == request_id]
    await put_on(agent, SUBJECT_DIRECTIVES, ANN.encode(), serde.encode(directive))
    await wait_for(lambda: (consent.data.get(ANN) or {}).get("suppressed") is True)


async def erased_keeping_invoices(
    flow: Any, facts_agent: Any, serde: Serde, outbox: Outbox, request_id: str
) -> None:
    """Ann's erasure, its suppression applied, every system answering and orders keeping
    the invoices; returns once her keys are shredded."""
    await put_on(flow, COMMANDS, ANN.encode(), serde.encode(erasure(request_id, ANN)))
    await suppress(facts_agent, serde, outbox, request_id)
    await wait_for(lambda: len(outbox.on_prefix("privacy.tasks.")) == len(TASKED))
    await answer_all(flow, serde, outbox, request_id, orders=r.TaskRetained)
    await wait_for(lambda: shredding.KEYS_SHREDDED in history(request_id))


def directives(outbox: Outbox) -> list[r.SubjectDirective]:
    return outbox.of(SUBJECT_DIRECTIVES, r.SubjectDirective)


async def tick_due(agent: Any, serde: Serde) -> None:
    """Hand every tick the worker's timer finds due now to the workflow agent."""
    clock = collaborators().clock
    due = collaborators().schedule.due(clock.now(), clock.today())
    assert due, "the timer has nothing due"
    for tick in due:
        await put_on(agent, REQUEST_TICKS, ANN.encode(), serde.encode(tick.to_record()))


async def test_an_erasure_shreds_main_keeps_the_retained_key_and_the_followup_shreds_it(
    serde: Serde, outbox: Outbox, store: KeyStore, key_log: Log, shifted: Callable[[datetime], None]
) -> None:
    main = await store.get_or_create(ANN)
    scope = shredding.key_scope(Category.purchases, kept_until())
    invoices = await store.get_or_create(ANN, scope)
    bobs = await store.get_or_create(BOB)
    known(SubjectFacts(latest_financial_record_at=INVOICE))

    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await erased_keeping_invoices(flow, facts_agent, serde, outbox, "R-shred-1")

        stored = requests.data["R-shred-1"]
        assert stored["state"] == RequestState.partially_completed.value
        assert tombstones(key_log) == [main.key_id]
        assert store.ring(0).records(ANN) == [invoices]
        assert store.ring(0).records(BOB) == [bobs]
        assert store.key(main.key_id) is None
        with pytest.raises(SubjectErased):  # no new key for Ann, even before any flush
            await store.get_or_create(ANN)
        assert await store.get_or_create(ANN, scope) == invoices

        # Orders keeps the invoices: its identifiers and the retention facts stay.
        assert identities.data[ANN]["systems"] == {"orders": {"customer_id": _ident("C-1")}}
        assert subject_facts.data[ANN]["latest_financial_record_at"] is not None
        assert EMAIL not in json.dumps(identities.data[ANN]) + json.dumps(stored)
        (step,) = shred_steps(outbox)
        assert step.after == "1"
        assert step.reason is not None
        assert step.reason.startswith(f"shredded main; kept {scope}; identities kept for orders")
        assert main.key_id not in step.reason
        assert ANN not in step.reason

        # Six years on, the follow-up erasure the timer issues takes the rest.
        followup = await followup_issued(flow, serde, outbox, shifted)
        followup_tasks = [
            s.record
            for s in outbox.on_prefix("privacy.tasks.")
            if isinstance(s.record, r.Erase) and s.record.request_id == followup.request_id
        ]
        assert [t.system for t in followup_tasks] == [System.orders]
        await answer_all(flow, serde, outbox, followup.request_id)
        await wait_for(lambda: shredding.KEYS_SHREDDED in history(followup.request_id))

    assert requests.data[followup.request_id]["state"] == RequestState.completed.value
    assert tombstones(key_log) == [main.key_id, invoices.key_id]
    assert store.ring(0).records(ANN) == []
    assert store.ring(0).records(BOB) == [bobs]
    assert ANN not in identities.data
    assert ANN not in subject_facts.data
    assert consent.data[ANN]["suppressed"] is True  # the mark the key service refuses by
    assert [s.after for s in shred_steps(outbox)] == ["1", "1"]


async def test_an_erasure_completed_before_its_suppression_waits_for_it(
    serde: Serde, outbox: Outbox, store: KeyStore, key_log: Log, shifted: Callable[[datetime], None]
) -> None:
    """Nothing is shredded or dropped while the key service could still hand out a key and
    the suppression list lacks the identifiers' hashes; the timer tries again."""
    main = await store.get_or_create(ANN)
    known(SubjectFacts())

    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(erasure("R-shred-2", ANN)))
        await wait_for(lambda: len(outbox.on_prefix("privacy.tasks.")) == len(TASKED))
        await answer_all(flow, serde, outbox, "R-shred-2")
        await wait_for(lambda: shredding.DEFERRED in history("R-shred-2"))

        assert requests.data["R-shred-2"]["state"] == RequestState.completed.value
        assert tombstones(key_log) == []
        assert store.ring(0).records(ANN) == [main]
        assert ANN in identities.data
        assert shred_steps(outbox) == []

        await suppress(facts_agent, serde, outbox, "R-shred-2")
        shifted(datetime.now(UTC) + shredding.RETRY_AFTER + timedelta(seconds=1))
        await tick_due(flow, serde)
        await wait_for(lambda: shredding.KEYS_SHREDDED in history("R-shred-2"))

    assert tombstones(key_log) == [main.key_id]
    assert store.ring(0).records(ANN) == []
    assert ANN not in identities.data
    assert ANN not in subject_facts.data
    (step,) = shred_steps(outbox)
    assert step.reason is not None
    assert "identities dropped; subject-facts dropped" in step.reason


@pytest.mark.parametrize(
    ("refusal", "for_good"),
    [(TopicAuthorizationFailedError, True), (KafkaTimeoutError, False)],
)
async def test_a_shred_refused_for_good_stops_the_worker_and_one_refused_for_now_waits(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,
    key_log: Log,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    refusal: type[KafkaError],
    for_good: bool,
) -> None:
    """The broker refuses the erasure's key tombstones. Refused for good (the worker may
    no longer write the keys' topic), waiting would defer the erasure at every tick with
    nobody told, so the state fails and the worker stops, as for a new subject's key
    (streams.sealing.REFUSED); nothing is destroyed, and what was decided before the
    shred (stored first, so that the restart destroys exactly that) is all that was
    written. Refused for now (a broker away), the erasure waits for a later tick."""
    main = await store.get_or_create(ANN)
    known(SubjectFacts())
    told: list[BaseException] = []
    sending = store._send

    async def refusing(topic: str, key: bytes, value: bytes | None, partition: int) -> object:
        if value is None:
            raise refusal()
        return await sending(topic, key, value, partition)

    monkeypatch.setattr(store, "_send", refusing)
    monkeypatch.setattr(state, "on_failure", told.append)
    with caplog.at_level("INFO", logger="agents.requests"):
        async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
            await put_on(flow, COMMANDS, ANN.encode(), serde.encode(erasure("R-shred-9", ANN)))
            await suppress(facts_agent, serde, outbox, "R-shred-9")
            await wait_for(lambda: len(outbox.on_prefix("privacy.tasks.")) == len(TASKED))
            await answer_all(flow, serde, outbox, "R-shred-9")
            if for_good:
                await wait_for(lambda: bool(told))
            else:
                await wait_for(lambda: shredding.DEFERRED in history("R-shred-9"))
    assert tombstones(key_log) == []
    assert store.ring(0).records(ANN) == [main]  # not forgotten: the broker has it
    assert shredding.KEYS_SHREDDED not in history("R-shred-9")
    stored = requests.data["R-shred-9"]
    assert stored["leftovers"]["key_ids"] == [main.key_id]  # decided, stored, not done
    if for_good:
        assert [type(exc) for exc in told] == [refusal]
        assert shredding.DEFERRED not in history("R-shred-9")
        assert history("R-shred-9")[-1] == shredding.SHRED_DUE
    else:
        assert told == []
        assert f"the key store cannot answer ({refusal.__name__})" in caplog.text


@pytest.fixture
def sealer(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> WorkerSealer:
    """The worker's sealer over the test's key store: table values are sealed as a
    flush leaves them (the tests above seed them in plaintext)."""
    made = WorkerSealer(erased_at, store=lambda: store)
    monkeypatch.setattr(state, "sealer", made)
    return made


@pytest.mark.parametrize("cache_size", [0, 200_000])
async def test_what_an_erasure_keeps_is_read_before_main_is_shredded(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,
    sealer: WorkerSealer,
    monkeypatch: pytest.MonkeyPatch,
    cache_size: int,
) -> None:
    """The identity map and facts are sealed under ``main``. Read after the shred, they
    opened only from the state's cache (emptied by a rebalance or a restart): orders'
    identifiers, kept for the follow-up erasure six years on, were dropped ("identities
    dropped" in the audit), and the follow-up could not reach orders."""
    monkeypatch.setattr(state, "cache_size", cache_size)
    main = await store.get_or_create(ANN)
    await store.get_or_create(ANN, shredding.key_scope(Category.purchases, kept_until()))
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    key = store.key(main.key_id)
    assert key is not None
    identities.data[ANN] = sealing.seal(identities.data[ANN], sealing.IDENTITIES, ANN, key)
    # The value as a JSON string: "C-1" alone turns up in random base64url ciphertext.
    assert '"C-1"' not in json.dumps(identities.data[ANN])

    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await erased_keeping_invoices(flow, facts_agent, serde, outbox, "R-sealed")

        (step,) = shred_steps(outbox)
        assert step.reason is not None
        assert "identities kept for orders" in step.reason
        kept = state.get(IDENTITIES, ANN)
        assert kept is not None
        assert set(kept.systems) == {System.orders}
        assert state.get(FACTS, ANN) is not None


async def test_a_rebuilt_worker_makes_no_key_for_a_subject_the_suppression_list_holds(
    app: Any, store: KeyStore, sealer: WorkerSealer
) -> None:
    """A worker under a new app id starts with empty tables: only the suppression list
    (which outlives them) remembers an erasure. Before, the key service and the flush's
    sealer read the consent table alone, so any system's POST /subject-keys made the
    erased subject a new ``main`` key, and its data was readable again."""
    from agents import http
    from streams.audit import ref
    from streams.tables import suppression

    suppression._set("hash-of-an-identifier", ref(ANN))
    try:
        assert ANN not in consent.data
        assert http._erased(ANN)
        with pytest.raises(SubjectErased):
            await store.get_or_create(ANN, erased=http._erased)
        assert await sealer.storage_keys({ANN: 0}) == {ANN: None}
        assert store.ring(0).records(ANN) == []
        # A subject the list does not hold gets a key as before.
        assert not http._erased(BOB)
        await store.get_or_create(BOB, erased=http._erased)
    finally:
        suppression.clear()


async def test_a_rebuilt_worker_answers_consent_for_an_erased_subject_as_suppressed(
    app: Any,
) -> None:
    """`/consent` for a subject the suppression list holds but no consent state names (a
    worker rebuilt under a new app id) answered 404 "unknown subject": a system may take
    that for "never heard of them" and mail from its own records. Now: suppressed."""
    from agents import http
    from streams.audit import ref
    from streams.tables import suppression

    suppression._set("hash-of-an-identifier", ref(ANN))
    try:
        assert ANN not in consent.data
        body, status = http.consent_answer(ANN, None, None)
        assert (status, body["suppressed"], set(body["decisions"].values())) == (200, True, {False})
        for channel in ("email", "post", "telephone"):
            body, status = http.consent_answer(ANN, "marketing", channel)
            assert (status, body["allowed"], body["rule"]) == (200, False, "suppressed")
        assert http.consent_answer(BOB, None, None)[1] == 404  # a stranger is still unknown
    finally:
        suppression.clear()


async def followup_issued(
    flow: Any, serde: Serde, outbox: Outbox, shifted: Callable[[datetime], None]
) -> r.RequestSubmitted:
    """Six years on, the follow-up erasure the timer issues, taken in by the workflow."""
    shifted(kept_until() + timedelta(hours=1))
    await tick_due(flow, serde)
    await wait_for(lambda: len(outbox.of(COMMANDS, r.RequestSubmitted)) == 1)
    (followup,) = outbox.of(COMMANDS, r.RequestSubmitted)
    await put_on(flow, COMMANDS, ANN.encode(), serde.encode(followup))
    await wait_for(lambda: requests.data.get(followup.request_id) is not None)
    return followup
