"""An erasure's leftovers in two steps, each safe to run again (agents.requests,
``erase_leftovers``; docs/crypto-shredding.md, step 6): what retention keeps is decided
and stored while ``main`` still opens it, then ``main`` is destroyed as recorded.

Before (review, session 26), ``main`` was destroyed before the flush that stored what
the erasure keeps. That flush dropped (the partitions moving) or lost in a crash, the
input was replayed against the identity map still sealed under the destroyed key: the
kept system's identifiers were gone for good (the follow-up erasure years later sent it
no task), and the replay audited a different ``keys_shredded`` step at the same place in
the request's chain, a fork ``audit verify`` reports.

The agents, the real key store and the worker's sealer are those of
tests/agents/test_erasure_shred.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaError
from faust.types import Message

from agents.ingest import ingest
from agents.requests import on_message, workflow
from privops.adapters.key_topic import KeyRecordCodec
from privops.adapters.serde import Serde
from privops.core import records as r
from privops.core import sealing, shredding
from privops.core.audit import keyring, verify
from privops.core.erasure import SubjectFacts
from privops.core.fieldcrypt import DataKey
from privops.core.subject_keys import SubjectKey
from privops.core.topics import AUDIT, COMMANDS, task_results_topic
from privops.core.vocab import Category, RequestState, System
from streams import batching, keystore, pipeline
from streams.audit import AUDIT_KEY, AUDIT_KEY_VERSION
from streams.keystore import KeyStore
from streams.sealing import WorkerSealer
from streams.state import StateFailed, Unsealable, state
from streams.tables import IDENTITIES, REQUESTS, erased_at, identities, requests
from tests.agents import test_erasure_shred as shred_tests
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.test_erasure_shred import (
    ANN,
    INVOICE,
    answer_all,
    history,
    kept_until,
    known,
    shred_steps,
    suppress,
    tombstones,
)
from tests.agents.test_workflow_agent import TASKED, erasure
from tests.unit.test_keystore import Log, following, new_store

# That module's fixtures, found here too (the key topic's, the key store, the sealer).
key_log, codec, kek_path = shred_tests.key_log, shred_tests.codec, shred_tests.kek_path
store, sealer, shifted = shred_tests.store, shred_tests.sealer, shred_tests.shifted
signers_path = shred_tests.signers_path


async def sealed_ann(store: KeyStore) -> tuple[SubjectKey, SubjectKey]:
    """Ann known to three systems, her identity map stored sealed under ``main`` as a
    flush leaves it; her keys: ``main`` and the invoices' retained scope."""
    main = await store.get_or_create(ANN)
    invoices = await store.get_or_create(ANN, shredding.key_scope(Category.purchases, kept_until()))
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    key = store.key(main.key_id)
    assert key is not None
    identities.data[ANN] = sealing.seal(identities.data[ANN], sealing.IDENTITIES, ANN, key)
    return main, invoices


def kept_for_orders(invoices: SubjectKey) -> None:
    """Orders' identifiers are all the identity map keeps, sealed under the invoices' key."""
    kept = state.get(IDENTITIES, ANN)
    assert kept is not None
    assert kept.identifiers() == {System.orders: {"customer_id": "C-1"}}
    assert sealing.key_ids(identities.data[ANN], sealing.IDENTITIES) == {invoices.key_id}


async def followup_reaches_orders(
    flow: Any, serde: Serde, outbox: Outbox, shifted: Callable[[datetime], None]
) -> str:
    """Six years on, the follow-up erasure sends orders its task; its request id."""
    followup = await shred_tests.followup_issued(flow, serde, outbox, shifted)
    await wait_for(lambda: bool(erase_tasks(outbox, followup.request_id)))
    (task,) = erase_tasks(outbox, followup.request_id)
    assert task.system is System.orders
    assert set(task.identifiers) == {"customer_id"}
    return followup.request_id


def erase_tasks(outbox: Outbox, request_id: str) -> list[r.Erase]:
    return [
        s.record
        for s in outbox.on_prefix("privacy.tasks.")
        if isinstance(s.record, r.Erase) and s.record.request_id == request_id
    ]


@pytest.mark.parametrize("dropped", ["decision", "after_shred"])
async def test_a_dropped_flush_replays_into_the_same_erasure_and_keeps_what_retention_keeps(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,
    sealer: WorkerSealer,
    key_log: Log,
    shifted: Callable[[datetime], None],
    monkeypatch: pytest.MonkeyPatch,
    dropped: str,
) -> None:
    """The partitions move while the erasure's writes are being flushed: the flush is
    dropped, and the input replayed after the rebalance. Dropped with the decision (the
    first flush that stores the completed request), nothing was destroyed yet and it is
    decided again; dropped after the shred (the key store revoked as its tombstones
    went), the recorded decision is destroyed again and what is kept written again from
    the copy sealed under the retained scope. Either way orders keeps its identifiers
    and the follow-up erasure reaches it; before, the second case lost them."""
    main, invoices = await sealed_ann(store)
    moved: list[str] = []
    storage_keys, shred = sealer.storage_keys, store.shred

    async def dropping_the_decision(wanted: Mapping[str, int]) -> dict[str, DataKey | None]:
        flushed = state.get_at(REQUESTS, 0, "R-drop")
        if not moved and flushed is not None and not flushed.open:
            moved.append("decision")
            raise Unsealable("the partitions are moving (test)")
        return await storage_keys(wanted)

    async def revoking_after_the_shred(subject_id: str, key_ids: Collection[str]) -> list[str]:
        done = await shred(subject_id, key_ids)
        if not moved:
            moved.append("after_shred")
            store.revoke()  # the group revokes while the tombstones were in flight
        return done

    if dropped == "decision":
        monkeypatch.setattr(sealer, "storage_keys", dropping_the_decision)
    else:
        monkeypatch.setattr(store, "shred", revoking_after_the_shred)

    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(erasure("R-drop", ANN)))
        await suppress(facts_agent, serde, outbox, "R-drop")
        await wait_for(lambda: len(erase_tasks(outbox, "R-drop")) == len(TASKED))
        await answer_all(flow, serde, outbox, "R-drop", orders=r.TaskRetained)
        await wait_for(lambda: moved == [dropped])
        await pipeline.on_revoked()  # the rebalance: the partitions stay (or move whole)
        if dropped == "after_shred":
            store.assign({0, 1, 2, 3})
            await store.until_loaded()

        # The inputs since the last commit, again: every system's answer.
        await answer_all(flow, serde, outbox, "R-drop", orders=r.TaskRetained)
        await wait_for(lambda: shredding.KEYS_SHREDDED in history("R-drop"))

        assert set(tombstones(key_log)) == {main.key_id}
        assert store.ring(0).records(ANN) == [invoices]
        kept_for_orders(invoices)
        scope = invoices.scope
        for step in shred_steps(outbox):
            assert step.reason is not None
            assert step.reason.startswith(
                f"shredded main; kept {scope}; identities kept for orders"
            )

        followup = await followup_reaches_orders(flow, serde, outbox, shifted)
        await answer_all(flow, serde, outbox, followup)
        await wait_for(lambda: shredding.KEYS_SHREDDED in history(followup))

    assert requests.data[followup]["state"] == RequestState.completed.value
    assert set(tombstones(key_log)) == {main.key_id, invoices.key_id}
    assert store.ring(0).records(ANN) == []
    assert ANN not in identities.data


def answers(serde: Serde, outbox: Outbox, request_id: str) -> list[Message]:
    """Every system's answer to the request's erase tasks as one chunk (orders keeps the
    invoices), each record dated now by its producer."""
    chunk = []
    for offset, task in enumerate(erase_tasks(outbox, request_id)):
        model: type[r.TaskResult] = r.TaskCompleted
        extra: dict[str, Any] = {}
        if task.system is System.orders:
            model, extra = r.TaskRetained, {"reason": "invoices: kept 6 years"}
        result = model(
            task_id=task.task_id,
            request_id=request_id,
            system=task.system,
            answered_at=datetime.now().astimezone(),
            **extra,
        )
        chunk.append(
            Message(
                topic=task_results_topic(task.system),
                partition=0,
                offset=1_000 + offset,
                timestamp=time.time(),
                timestamp_type=0,
                headers=None,
                key=ANN.encode(),
                value=serde.encode(result),
                checksum=None,
            )
        )
    return chunk


async def test_a_crash_after_the_shred_is_audited_before_its_changelog_replays_the_same_step(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,
    sealer: WorkerSealer,
    key_log: Log,
    codec: KeyRecordCodec,
    kek_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker dies once the shred's outputs (tombstones, audit step) are delivered and
    before its table writes are (the changelog): its restart replays the answers from
    the last commit. The replay destroys the recorded keys again and sends the very
    same ``keys_shredded`` record, a redelivery ``audit verify`` accepts; before, it
    decided again without ``main`` (identities dropped) and forked the chain."""
    main, invoices = await sealed_ann(store)
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(erasure("R-crash", ANN)))
        await suppress(facts_agent, serde, outbox, "R-crash")
        await wait_for(lambda: len(erase_tasks(outbox, "R-crash")) == len(TASKED))
    chunk = answers(serde, outbox, "R-crash")

    queue_all = state.queue_all

    async def dying_before_the_changelog(records: Sequence[batching.Outgoing]) -> Any:
        changelog = any(partition is not None for *_, partition in records)
        if changelog and tombstones(key_log):
            raise KafkaError("the worker is killed")
        return await queue_all(records)

    monkeypatch.setattr(state, "queue_all", dying_before_the_changelog)
    with pytest.raises(StateFailed):
        await pipeline.work(chunk, on_message, None)
    assert tombstones(key_log) == [main.key_id]
    assert len(shred_steps(outbox)) == 1

    # The restart: nothing of the process is left but its tables' stored values (and
    # their changelog), the key topic and what the broker was sent.
    restarted_state: list[tuple[str, object]] = [
        ("failure", None),
        ("_delivering", None),
        ("_changelog_queued", None),
        ("_held", {}),
        ("_dirty", {}),
        ("_out", []),
        ("_done", []),
        ("queue_all", queue_all),
    ]
    for name, value in restarted_state:
        monkeypatch.setattr(state, name, value)
    state.forget()
    async with following(new_store(key_log, codec, kek_path), {0, 1, 2, 3}) as restarted:
        monkeypatch.setattr(keystore, "_built", [restarted])
        monkeypatch.setattr(state, "sealer", WorkerSealer(erased_at, store=lambda: restarted))
        await pipeline.work(chunk, on_message, None)  # from the last commit

        kept_for_orders(invoices)
        assert restarted.ring(0).records(ANN) == [invoices]

    sent = [s for s in outbox.sent if s.topic == AUDIT and s.record in shred_steps(outbox)]
    first, again = sent
    assert first.value == again.value  # byte for byte: a redelivery, not a fork
    assert isinstance(first.record, r.AuditEvent)
    assert first.record.reason is not None
    assert "identities kept for orders" in first.record.reason
    checked = verify(outbox.of(AUDIT, r.AuditEvent), keyring(AUDIT_KEY, AUDIT_KEY_VERSION))
    assert checked.ok, checked.first_break
    assert set(tombstones(key_log)) == {main.key_id}
    assert history("R-crash")[-2:] == [shredding.SHRED_DUE, shredding.KEYS_SHREDDED]


async def test_the_decision_is_stored_before_any_key_is_destroyed(
    serde: Serde,
    outbox: Outbox,
    store: KeyStore,
    sealer: WorkerSealer,
    key_log: Log,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The normal path, one input: when the first tombstone is written, the stored
    request already holds the keys to destroy and a copy of what is kept sealed under
    the retained scope, and the stored identity map is trimmed to what is kept; the
    erasure then completes in the same input (tests/agents/test_erasure_shred.py has the
    rest of what it leaves)."""
    main, invoices = await sealed_ann(store)
    seen: list[dict[str, Any]] = []
    shred = store.shred

    async def looking(subject_id: str, key_ids: Collection[str]) -> list[str]:
        seen.append(dict(requests.data["R-once"]))
        assert set(identities.data[ANN]["systems"]) == {"orders"}
        return await shred(subject_id, key_ids)

    monkeypatch.setattr(store, "shred", looking)
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(erasure("R-once", ANN)))
        await suppress(facts_agent, serde, outbox, "R-once")
        await wait_for(lambda: len(erase_tasks(outbox, "R-once")) == len(TASKED))
        answered_at = time.time()
        for message in answers(serde, outbox, "R-once"):
            await put_on(flow, message.topic, ANN.encode(), message.value, timestamp=answered_at)
        await wait_for(lambda: shredding.KEYS_SHREDDED in history("R-once"))

    (stored,) = seen
    decided = stored.get("leftovers")
    assert decided is not None
    assert decided["key_ids"] == [main.key_id]
    kept = decided["kept"][sealing.IDENTITIES.name]
    assert sealing.key_ids(kept, sealing.IDENTITIES) == {invoices.key_id}
    assert "C-1" not in str(decided)
    assert requests.data["R-once"]["leftovers"] is None
    assert history("R-once")[-2:] == [shredding.SHRED_DUE, shredding.KEYS_SHREDDED]
    (step,) = shred_steps(outbox)
    assert step.after == "1"
    assert step.occurred_at.timestamp() == pytest.approx(answered_at)  # the input's date
    kept_for_orders(invoices)
