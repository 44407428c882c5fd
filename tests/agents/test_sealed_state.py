"""privops' own copies of personal data are sealed under the subject's key (issue #15, step
5; privops.core.sealing, streams.sealing): the tables' stored values, the tasks privops
sends and the rectified values it keeps hold only ciphertext, opened again by the agents
that read them; an erasure moves what retention keeps under the retained scope before
``main`` is destroyed, and the follow-up erasure's tasks travel under it.

The agents run on faust's test_context with the worker's sealer installed (as
``pipeline.start`` does in the worker) over the real ``KeyStore``, rings and KEK of
tests/agents/test_erasure_shred.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import pytest
from aiokafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError

from agents import ingest as ingest_module
from agents.ingest import ingest
from agents.requests import workflow
from privops.adapters import metrics
from privops.adapters.serde import Serde
from privops.connectors.encryption import RingKeySource, decrypt_record
from privops.core import records as r
from privops.core import sealing, shredding
from privops.core.erasure import SubjectFacts
from privops.core.fieldcrypt import encrypt_field, is_encrypted, parse_field, seal_fields
from privops.core.identity import IdentityMap, merge
from privops.core.personal import WITHHELD
from privops.core.subject_keys import SubjectKey
from privops.core.topics import (
    COMMAND_RESULTS,
    COMMANDS,
    DEADLETTER,
    NOTIFICATIONS,
    SUBJECT_DIRECTIVES,
)
from privops.core.vocab import Category, RequestType, System
from streams import state as streams_state
from streams.app import settings
from streams.batching import Outgoing
from streams.keystore import KeyStore
from streams.sealing import WorkerSealer
from streams.state import State, state
from streams.tables import (
    HOLDS,
    IDENTITIES,
    REQUESTS,
    erased_at,
    identities,
    legal_holds,
    request_index,
    requests,
    subject_facts,
)
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.signers import sign
from tests.agents.test_erasure_free_text import hold_on_ann
from tests.agents.test_erasure_shred import (  # noqa: F401
    ANN,
    BOB,
    EMAIL,
    INVOICE,
    answer_all,
    codec,
    history,
    kek_path,
    kept_until,
    key_log,
    known,
    shifted,
    signers_path,
    store,
    suppress,
    tick_due,
)
from tests.agents.test_workflow_agent import (
    NOW,
    SUBJECT,
    TASKED,
    answered_access,
    erasure,
    known_subject,
    submitted,
)


@pytest.fixture
def sealed(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> WorkerSealer:  # noqa: F811
    """The worker's sealer over the test's key store."""
    sealer = WorkerSealer(erased_at, store=lambda: store)
    monkeypatch.setattr(streams_state.state, "sealer", sealer)
    return sealer


BOB_CREATED: Final = r.CustomerCreated(
    event_id="E-bob-1",
    source=System.crm,
    occurred_at=INVOICE,
    subject_id=BOB,
    identifiers=r.Identifiers(email="bob@example.com"),
)
"""Bob, met for the first time: his identity holds an address, so he needs a key."""


def _no_new_keys(subject_id: str, scope: str) -> SubjectKey:
    raise AssertionError(f"reading must not create a key ({subject_id}, {scope})")


def source(store: KeyStore) -> RingKeySource:  # noqa: F811
    return RingKeySource(store.ring(0), _no_new_keys)


def stored_key_ids(table: sealing.TableSealing, value: dict[str, Any]) -> set[str]:
    return sealing.key_ids(value, table)


def tasks_of(outbox: Outbox, request_id: str) -> list[r.Task]:
    return [
        s.record
        for s in outbox.on_prefix("privacy.tasks.")
        if isinstance(s.record, r.Task) and s.record.request_id == request_id
    ]


async def test_ingest_seals_the_identity_map_under_a_key_it_creates(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
) -> None:
    assert store.ring(0).records(BOB) == []
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", BOB.encode(), serde.encode(BOB_CREATED))
        await wait_for(lambda: BOB in identities.data)
    stored = identities.data[BOB]
    assert "bob@example.com" not in json.dumps(stored)
    (main,) = store.ring(0).records(BOB)  # created for the write, stored on the key topic
    assert main.scope == "main"
    assert stored_key_ids(sealing.IDENTITIES, stored) == {main.key_id}
    opened = state.opened(  # what the agents read back after a restart
        streams_state.Slot(identities, IdentityMap.model_validate, dict, None, sealing.IDENTITIES),
        BOB,
        stored,
    )
    assert IdentityMap.model_validate(opened).email is not None
    assert IdentityMap.model_validate(opened).email.value == "bob@example.com"  # type: ignore[union-attr]


async def test_a_broker_error_while_a_new_subjects_key_is_stored_is_retried(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker refuses the key record of a subject met for the first time (a leader
    moving): the flush waits and tries again (``WorkerSealer.storage_keys``), so nothing
    is lost, nothing is written unsealed or under a key the broker does not have, and
    the warning names the error, not the subject."""
    sending = store._send
    refusals = [KafkaTimeoutError()]

    async def flaky(topic: str, key: bytes, value: bytes | None, partition: int) -> object:
        if refusals:
            raise refusals.pop()
        return await sending(topic, key, value, partition)

    monkeypatch.setattr(store, "_send", flaky)
    with caplog.at_level("WARNING", logger="streams.sealing"):
        async with ingest.test_context() as agent:
            await put_on(agent, "crm.events", BOB.encode(), serde.encode(BOB_CREATED))
            await wait_for(lambda: BOB in identities.data)
    (main,) = store.ring(0).records(BOB)  # the refused key was never handed out
    assert stored_key_ids(sealing.IDENTITIES, identities.data[BOB]) == {main.key_id}
    said = [r.getMessage() for r in caplog.records if r.name == "streams.sealing"]
    assert said == ["subject keys unavailable (KafkaTimeoutError); retrying in 0.5 s"]
    assert refusals == []


async def test_during_a_rebalance_a_broker_error_drops_the_flush_instead_of_waiting(
    store: KeyStore,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rebalance's own flush (``pipeline.on_revoked``, holding the state lock) must
    not wait out a broker problem: it waited with backoff for as long as it lasted, and
    the group, past its rebalance timeout, gave the partitions to another worker while
    this one's writes were still to land. Dropped, its inputs are replayed."""

    async def refused(topic: str, key: bytes, value: bytes | None, partition: int) -> object:
        raise KafkaTimeoutError()

    monkeypatch.setattr(store, "_send", refused)
    moving = [True]
    sealer = WorkerSealer(erased_at, store=lambda: store, moving=lambda: moving[0])
    async with asyncio.timeout(1):
        with pytest.raises(streams_state.Unsealable, match="KafkaTimeoutError during a rebalance"):
            await sealer.storage_keys({BOB: 0})
    moving[0] = False  # outside a rebalance, the same error is waited out
    waiting = asyncio.ensure_future(sealer.storage_keys({BOB: 0}))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    waiting.cancel()


async def test_a_key_record_the_broker_refuses_for_good_fails_the_flush(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An authorization refusal of a new subject's key record (a write ACL taken away)
    is not waited out: retrying would hold the agents' lock for ever. The flush fails,
    and with it the state (the worker stops: streams.pipeline); nothing is written."""
    attempts: list[str] = []

    async def refused(topic: str, key: bytes, value: bytes | None, partition: int) -> object:
        attempts.append(topic)
        raise TopicAuthorizationFailedError()

    told: list[BaseException] = []
    monkeypatch.setattr(store, "_send", refused)
    monkeypatch.setattr(state, "on_failure", told.append)
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", BOB.encode(), serde.encode(BOB_CREATED))
        await wait_for(lambda: bool(told))
    assert [type(exc) for exc in told] == [TopicAuthorizationFailedError]
    assert len(attempts) == 1  # not retried
    assert BOB not in identities.data
    assert store.ring(0).records(BOB) == []


async def test_tasks_and_tables_are_sealed_and_the_followup_reads_the_retained_scope(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
    shifted: Callable[[datetime], None],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known(SubjectFacts(latest_financial_record_at=INVOICE))  # written before sealing: plaintext
    keys = source(store)
    # Plaintext refused: the follow-up the worker issues carries privops' own words
    # unsealed (signed as written), and is taken all the same.
    monkeypatch.setattr(
        ingest_module, "settings", settings.model_copy(update={"personal_plaintext": "refuse"})
    )
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(erasure("R-seal-1", ANN)))
        await suppress(facts_agent, serde, outbox, "R-seal-1")
        await wait_for(lambda: len(tasks_of(outbox, "R-seal-1")) == len(TASKED))
        main = store.ring(0).current_record(ANN)
        assert main is not None

        # Every task's identifiers are ciphertext under Ann's main key, and open to what
        # each system knows her by.
        for task in tasks_of(outbox, "R-seal-1"):
            assert all(is_encrypted(v) for v in task.identifiers.values()), task.identifiers
            assert {parse_field(v)[0] for v in task.identifiers.values()} == {main.key_id}
            assert decrypt_record(task, keys).identifiers == TASKED[task.system]
        # The request's stored record holds them sealed too.
        stored = requests.data["R-seal-1"]
        assert EMAIL not in json.dumps(stored)
        assert stored_key_ids(sealing.REQUESTS, stored) == {main.key_id}

        await answer_all(flow, serde, outbox, "R-seal-1", orders=r.TaskRetained)
        await wait_for(lambda: shredding.KEYS_SHREDDED in history("R-seal-1"))

        # main is destroyed; what retention keeps (orders' identifiers, the facts) is
        # sealed under the retained scope, and opens with the keys left.
        scope = shredding.key_scope(Category.purchases, kept_until())
        retained = store.ring(0).current_record(ANN, scope)
        assert retained is not None
        assert store.key(main.key_id) is None
        kept = identities.data[ANN]
        assert stored_key_ids(sealing.IDENTITIES, kept) == {retained.key_id}
        opened = sealing.open_(kept, sealing.IDENTITIES, ANN, store.key)
        assert opened is not None
        assert IdentityMap.model_validate(opened).identifiers() == {
            System.orders: {"customer_id": "C-1"}
        }
        # As a JSON string: "C-1" alone turns up in random base64url ciphertext.
        assert '"C-1"' not in json.dumps(subject_facts.data[ANN]) + json.dumps(kept)

        # Six years on, the follow-up's task to orders travels under the retained key.
        shifted(kept_until() + timedelta(hours=1))
        await tick_due(flow, serde)
        await wait_for(lambda: len(outbox.of(COMMANDS, r.RequestSubmitted)) == 1)
        (followup,) = outbox.of(COMMANDS, r.RequestSubmitted)
        assert followup.reason is not None
        assert not is_encrypted(followup.reason)
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(followup))
        await wait_for(lambda: len(tasks_of(outbox, followup.request_id)) == 1)
        (task,) = tasks_of(outbox, followup.request_id)
        assert {parse_field(v)[0] for v in task.identifiers.values()} == {retained.key_id}
        assert decrypt_record(task, keys).identifiers == {"customer_id": "C-1"}
        await answer_all(flow, serde, outbox, followup.request_id)
        await wait_for(lambda: shredding.KEYS_SHREDDED in history(followup.request_id))

    assert store.ring(0).records(ANN) == []
    assert ANN not in identities.data
    # Nothing the requests table holds of Ann opens any more, and none of it is plaintext.
    for request_id in ("R-seal-1", followup.request_id):
        assert not sealing.plaintext_left(requests.data[request_id], sealing.REQUESTS)


async def test_a_flush_whose_partitions_are_moving_is_dropped_whole_and_not_acknowledged(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebalance began (the key store was revoked) while a new subject's identity waited
    to be sealed: nothing is written or sent, and the input is not acknowledged, so the
    partition's new owner replays it."""
    acknowledged: list[object] = []
    monkeypatch.setattr(state, "acknowledge", acknowledged.extend)
    event = r.CustomerCreated(
        event_id="E-bob-2",
        source=System.crm,
        occurred_at=INVOICE,
        subject_id=BOB,
        identifiers=r.Identifiers(email="bob@example.com"),
    )
    store.revoke()
    async with ingest.test_context() as agent:
        await put_on(agent, "crm.events", BOB.encode(), serde.encode(event))
        await wait_for(lambda: state.pending == 0 and not state._dirty)
        await asyncio.sleep(0.2)
    assert outbox.sent == []
    assert outbox.views == []
    assert BOB not in identities.data
    assert acknowledged == []
    assert state.get_at(IDENTITIES, 0, BOB) is None  # the unflushed write is forgotten too


async def test_a_rectification_sealed_under_another_subjects_key_is_rejected_not_dropped(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
) -> None:
    """The signature covers the ciphertext; a value that then does not open (here: Bob's
    key on Ann's request) is answered CommandRejected, so the CLI is told, and no request
    is stored. A value sealed under Ann's own key opens and is kept (sealed again)."""
    known(SubjectFacts())
    bobs = store.ring(0).get((await store.get_or_create(BOB)).key_id)
    anns = store.ring(0).get((await store.get_or_create(ANN)).key_id)
    assert bobs is not None
    assert anns is not None

    def rectify(request_id: str, value: str) -> r.RequestSubmitted:
        return sign(
            erasure(request_id, ANN).model_copy(
                update={
                    "command_id": f"{request_id}:submit",
                    "request_type": RequestType.rectification,
                    "rectification": {"name": value},
                }
            )
        )

    moved = encrypt_field(bobs, BOB, "rectification{name}", "Ann Other")
    own = encrypt_field(anns, ANN, "rectification{name}", "Ann Other")
    async with workflow.test_context() as flow:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(rectify("R-moved", moved)))
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(rectify("R-own", own)))
        await wait_for(lambda: len(outbox.on(COMMAND_RESULTS)) == 2)
    rejected, accepted = outbox.on(COMMAND_RESULTS)
    assert isinstance(rejected, r.CommandRejected)
    assert rejected.reason == "invalid_command"
    assert "tampered_field" in rejected.message
    assert "Ann Other" not in rejected.message
    assert "R-moved" not in requests.data
    assert isinstance(accepted, r.CommandAccepted)
    stored = requests.data["R-own"]
    assert "Ann Other" not in json.dumps(stored)
    opened = state.opened(REQUESTS, "R-own", stored)
    assert opened["rectification"] == {"name": "Ann Other"}


async def test_an_erased_subjects_values_are_not_kept_decoded_once_stored_without_them(
    app: Any,
    store: KeyStore,  # noqa: F811
) -> None:
    """Ann's keys are destroyed and nothing of hers is kept: her identity is written as a
    deletion, and the write-back cache does not go on answering it in plaintext."""
    view = State()
    view.cache_size = 100
    view.sealer = WorkerSealer(erased_at, store=lambda: store)

    async def queue_all(records: Sequence[Outgoing]) -> Awaitable[list[int]]:
        return asyncio.sleep(0, result=list(range(len(records))))

    view.queue_all = queue_all
    main = await store.get_or_create(ANN)
    await store.shred(ANN, [main.key_id])
    identity = merge(None, ANN, System.crm, {"email": EMAIL}, INVOICE)
    assert identity is not None
    view.put(IDENTITIES, ANN, identity)
    assert view.get(IDENTITIES, ANN) == identity
    await view.flush()
    assert ANN not in identities.data
    assert view.get(IDENTITIES, ANN) is None


async def test_the_dpos_free_text_sealed_by_the_key_service_opens_and_stays_sealed(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
) -> None:
    """A hold's reason and a complaint's answer, sealed under Ann's key as the key service
    seals them for the CLI (privops.cli.request.sealing), open in the workflow after the
    signature check: the answer reaches Ann's notification, and every copy privops
    writes (the holds and requests tables, the hold forwarded to ingest, the
    notification) holds only ciphertext. A plaintext reason (an older CLI) is taken."""
    known(SubjectFacts())
    anns = store.ring(0).get((await store.get_or_create(ANN)).key_id)
    assert anns is not None
    secret, answer = "Ann's solicitor, case 2026/114", "Ann: your complaint is upheld"

    answered = sign(
        r.RequestAnswered(
            command_id="R-c:answer",
            request_id="R-c",
            issued_at=NOW,
            actor="dpo",
            reason=seal_fields(anns, ANN, {"reason": answer})["reason"],
        )
    )
    async with workflow.test_context() as flow:
        sealed_reason = seal_fields(anns, ANN, {"reason": secret})["reason"]
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(hold_on_ann("H-1", sealed_reason)))
        await put_on(
            flow, COMMANDS, ANN.encode(), serde.encode(hold_on_ann("H-2", "plain, older CLI"))
        )
        complaint = submitted("R-c", RequestType.complaint, ANN)
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(complaint))
        await wait_for(lambda: len(outbox.on(COMMAND_RESULTS)) == 3)
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(answered))
        await wait_for(lambda: len(outbox.on(COMMAND_RESULTS)) == 4)
        await wait_for(lambda: state.pending == 0 and not state._dirty)
    assert all(isinstance(a, r.CommandAccepted) for a in outbox.on(COMMAND_RESULTS))
    holds = state.opened(HOLDS, ANN, legal_holds.data[ANN])
    assert [h["reason"] for h in holds] == [secret, "plain, older CLI"]
    assert secret not in json.dumps(legal_holds.data[ANN])
    forwarded = outbox.of(SUBJECT_DIRECTIVES, r.LegalHoldPlaced)
    assert [is_encrypted(h.reason) for h in forwarded] == [True, True]
    assert [decrypt_record(h, source(store)).reason for h in forwarded] == [
        secret,
        "plain, older CLI",
    ]
    assert answer not in json.dumps(requests.data["R-c"])
    assert state.opened(REQUESTS, "R-c", requests.data["R-c"])["reason"] == answer
    (note,) = [n for n in outbox.of(NOTIFICATIONS, r.SubjectNotification) if n.document]
    assert note.document is not None
    assert is_encrypted(note.document)
    assert decrypt_record(note, source(store), subject_id=ANN).document == answer
    for sent in outbox.sent:
        assert secret.encode() not in sent.value
        assert answer.encode() not in sent.value


async def test_a_forwarded_hold_the_workflow_did_not_store_is_opened_before_it_is_kept(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
) -> None:
    """The hold the workflow forwards to ingest carries its reason sealed under the field's
    own label. Ingest applies it only if it is not stored (a replay, an earlier version's
    workflow): it opens the reason first, so the holds table reads back, and the next
    command about the subject is answered (review, session 29: the ciphertext was kept
    as the reason, every read of the subject's holds failed, and every later command
    about them was dead-lettered unanswered)."""
    known(SubjectFacts())
    secret = "Ann's solicitor, case 2026/114"
    async with workflow.test_context() as flow:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(hold_on_ann("H-1", secret)))
        await wait_for(lambda: len(outbox.on(COMMAND_RESULTS)) == 1)
        await wait_for(lambda: state.pending == 0 and not state._dirty)
    (forwarded,) = outbox.of(SUBJECT_DIRECTIVES, r.LegalHoldPlaced)
    assert is_encrypted(forwarded.reason)
    legal_holds.data.pop(ANN)  # not stored: what a replay, or an earlier workflow, leaves
    async with ingest.test_context() as facts_agent:
        await put_on(facts_agent, SUBJECT_DIRECTIVES, ANN.encode(), serde.encode(forwarded))
        await wait_for(lambda: ANN in legal_holds.data)
        await wait_for(lambda: state.pending == 0 and not state._dirty)
    assert secret not in json.dumps(legal_holds.data[ANN])
    assert [h["reason"] for h in state.opened(HOLDS, ANN, legal_holds.data[ANN])] == [secret]
    async with workflow.test_context() as flow:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(hold_on_ann("H-2", "another")))
        await wait_for(lambda: len(outbox.on(COMMAND_RESULTS)) == 2)
    assert isinstance(outbox.on(COMMAND_RESULTS)[-1], r.CommandAccepted)


@pytest.mark.parametrize("policy", ["accept", "refuse"])
async def test_the_dpos_text_in_plaintext_is_counted_or_refused(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
) -> None:
    """An older CLI or a script sends the DPO's text unsealed: counted in
    privops_plaintext_command_fields_total under PRIVOPS_PERSONAL_PLAINTEXT=accept (the
    migration window), answered CommandRejected naming the field under refuse. A field
    at its default (verify's method) is privops' own word, and the CLI's WITHHELD no
    text: neither is ever counted."""
    monkeypatch.setattr(
        ingest_module, "settings", settings.model_copy(update={"personal_plaintext": policy})
    )
    known(SubjectFacts())
    name = "privops_plaintext_command_fields_total"
    before = metrics.REGISTRY.get_sample_value(name) or 0.0
    access = submitted("R-v", RequestType.access, ANN)
    access = sign(access.model_copy(update={"identity_verified_on": None, "signature": None}))
    verified = sign(
        r.IdentityVerified(
            command_id="R-v:verify",
            request_id="R-v",
            issued_at=NOW,
            actor="dpo",
            verified_on=NOW.date(),
        )
    )
    withheld = hold_on_ann("H-0", WITHHELD)  # no key to seal under: no text
    async with workflow.test_context() as flow:
        for command in (access, verified, withheld, hold_on_ann("H-1", "Ann's file")):
            await put_on(flow, COMMANDS, ANN.encode(), serde.encode(command))
        await wait_for(lambda: len(outbox.on(COMMAND_RESULTS)) == 4)
    *defaults, answer = outbox.on(COMMAND_RESULTS)
    assert all(isinstance(a, r.CommandAccepted) for a in defaults), defaults
    counted = (metrics.REGISTRY.get_sample_value(name) or 0.0) - before
    if policy == "accept":
        assert isinstance(answer, r.CommandAccepted)
        assert counted == 1
    else:
        assert isinstance(answer, r.CommandRejected)
        assert "reason: the command's text is not sealed" in answer.message
        assert "Ann" not in answer.message
        assert counted == 0
        holds = state.opened(HOLDS, ANN, legal_holds.data[ANN])
        assert [h["hold_id"] for h in holds] == ["H-0"]  # not H-1


async def test_a_command_answered_before_is_answered_the_same_though_its_key_is_gone(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
) -> None:
    """A redelivered command gets the answer it got, whatever it carries: its sealed text
    is not opened again, so a key destroyed since (the subject's erasure) does not turn
    an accepted hold into a rejection."""
    known(SubjectFacts())
    main = await store.get_or_create(ANN)
    anns = store.ring(0).get(main.key_id)
    assert anns is not None
    placed = hold_on_ann("H-1", seal_fields(anns, ANN, {"reason": "Ann's file"})["reason"])
    async with workflow.test_context() as flow:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(placed))
        await wait_for(lambda: len(outbox.on(COMMAND_RESULTS)) == 1)
        await wait_for(lambda: state.pending == 0 and not state._dirty)
        await store.shred(ANN, [main.key_id])
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(placed))
        await wait_for(lambda: len(outbox.on(COMMAND_RESULTS)) == 2)
    first, again = outbox.on(COMMAND_RESULTS)
    assert isinstance(first, r.CommandAccepted)
    assert isinstance(again, r.CommandAccepted), again


async def test_an_earlier_request_that_does_not_open_is_left_out_not_the_response(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,  # noqa: F811
    sealed: WorkerSealer,
) -> None:
    """An access response lists the subject's other requests: one whose sealed value
    does not open raised out of the decision, so the answer completing the access
    request was dead-lettered, again at every re-sent task, until its deadline passed
    (review, session 32). It is left out (and logged) now."""
    await store.get_or_create(SUBJECT)
    known_subject()
    await answered_access(serde, outbox, "R-first")
    await state.flush()
    broken = {**requests.data["R-first"], "request_id": "R-broken", "reason": "pv1:garbage"}
    requests.data["R-broken"] = broken
    request_index._set("R-broken", SUBJECT)
    try:
        outbox.sent.clear()
        note = await answered_access(serde, outbox, "R-second")
    finally:
        request_index._set("R-broken", None)
        # Closed, and sealed whole (a manifest): not for the teardown's plain reading.
        requests.data.clear()
    opened = decrypt_record(note, source(store))
    listed = json.loads(opened.document or "{}")["privacy_records"]["rights_requests"]
    assert [p["request_id"] for p in listed["listed"]] == ["R-first"]
    assert not outbox.on(DEADLETTER)
