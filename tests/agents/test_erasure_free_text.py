"""Free text that may name the subject, in privops' own tables: the DPO's reasons on a
request, a system's answer on its task, a legal hold's reason. They were stored as they
came (the ``requests`` and ``legal-holds`` tables, their RocksDB stores and changelogs)
and outlived the erasure that shredded every other copy (review, session 26). Now they
are sealed under the subject's key like the request's other personal values, read back
opened (the DPO's ``GET /requests/{id}`` included), and cleared once the erasure is done.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from agents.http import request_json
from agents.ingest import ingest
from agents.requests import workflow
from privops.adapters.serde import Serde
from privops.core import records as r
from privops.core import sealing, shredding
from privops.core.erasure import SubjectFacts
from privops.core.topics import COMMANDS, SUBJECT_DIRECTIVES, task_results_topic
from privops.core.vocab import Category, RequestState, RequestType
from streams.context import collaborators
from streams.keystore import KeyStore
from streams.sealing import WorkerSealer
from streams.state import state
from streams.tables import HOLDS, REQUESTS, legal_holds, newest, requests
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.signers import sign, trust
from tests.agents.test_erasure_shred import (
    ANN,
    INVOICE,
    erased_keeping_invoices,
    history,
    known,
    suppress,
)

# The worker's key store and sealer over an in-memory key topic: the erasure tests'.
from tests.agents.test_erasure_shred import sealer as sealer
from tests.agents.test_erasure_shred import store as store
from tests.agents.test_workflow_agent import NOW, TASKED, submitted
from tests.unit import test_keystore as keystore_tests

NAME = "Ann Jones, 12 Acacia Avenue"
key_log, codec, kek_path = keystore_tests.log, keystore_tests.codec, keystore_tests.kek_path


@pytest.fixture(autouse=True)
def signers_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    return trust(monkeypatch, tmp_path)


def stored(table_data: Mapping[Any, Any], key: str) -> str:
    """The JSON the table's store and changelog hold for ``key``."""
    return json.dumps(table_data[key])


async def test_a_requests_free_text_is_sealed_read_back_and_cleared_by_the_erasure(
    serde: Serde, outbox: Outbox, store: KeyStore, sealer: WorkerSealer
) -> None:
    await store.get_or_create(ANN)
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    refusal = sign(
        r.RequestRefused(
            command_id="R-prior:refuse",
            request_id="R-prior",
            issued_at=NOW,
            actor="dpo",
            reason=f"{NAME}: a duplicate of an earlier request",
            ground="excessive",
        )
    )
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        prior = sign(  # not verified yet: the DPO may refuse it
            r.RequestSubmitted(
                command_id="R-prior:submit",
                request_id="R-prior",
                issued_at=NOW,
                actor="dpo",
                request_type=RequestType.access,
                subject_id=ANN,
                received_on=NOW.date(),
                reason=f"{NAME} phoned",
            )
        )
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(prior))
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(refusal))
        await wait_for(lambda: (requests.data.get("R-prior") or {}).get("state") == "refused")
        await state.flush()
        assert "Acacia" not in stored(requests.data, "R-prior")
        # The DPO's view (GET /requests/{id}, `privops request status`) opens it.
        shown = newest(REQUESTS, ANN, "R-prior")
        assert shown is not None
        assert request_json(shown)["reason"] == refusal.reason
        assert request_json(shown)["refusal_ground"] == "excessive"

        asked = submitted("R-er", RequestType.erasure, ANN, reason=f"asked by {NAME}")
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(asked))
        await suppress(facts_agent, serde, outbox, "R-er")
        await wait_for(lambda: len(outbox.on_prefix("privacy.tasks.")) == len(TASKED))
        for sent in outbox.on_prefix("privacy.tasks."):
            task = sent.record
            assert isinstance(task, r.Erase)
            answer: r.TaskResult = r.TaskCompleted(
                task_id=task.task_id,
                request_id="R-er",
                system=task.system,
                answered_at=collaborators().clock.now(),
            )
            if task.system.value == "orders":
                answer = r.TaskRetained(
                    task_id=task.task_id,
                    request_id="R-er",
                    system=task.system,
                    answered_at=collaborators().clock.now(),
                    categories=[],
                    reason=f"invoices of {NAME} kept 6 years",
                )
            await put_on(flow, task_results_topic(task.system), ANN.encode(), serde.encode(answer))
        await wait_for(lambda: shredding.KEYS_SHREDDED in history("R-er"))
        await state.flush()

    done = newest(REQUESTS, ANN, "R-er")
    assert done is not None
    assert done.reason is None
    assert all(t.outcome_reason is None for t in done.tasks.values())
    assert done.kept  # what was kept, and why, stays
    assert all("financial records" in k.ground for k in done.kept)
    # The subject's earlier request, found through the request index, is cleared too:
    # not only unreadable (its key is gone), the ciphertext itself gone.
    assert json.loads(stored(requests.data, "R-prior"))["reason"] is None
    # ... but not the ground it was refused on: the controller can still show it.
    assert json.loads(stored(requests.data, "R-prior"))["refusal_ground"] == "excessive"
    for request_id in ("R-prior", "R-er"):
        assert "Acacia" not in stored(requests.data, request_id)
        assert sealing.plaintext_left(requests.data[request_id], sealing.REQUESTS) == []


def hold_on_ann(
    hold_id: str, reason: str = f"{NAME}: a claim against us, solicitor's letter"
) -> r.LegalHoldPlaced:
    return sign(
        r.LegalHoldPlaced(
            command_id=f"{hold_id}:place",
            request_id=hold_id,
            issued_at=NOW,
            actor="dpo",
            hold_id=hold_id,
            subject_id=ANN,
            categories=[Category.contact],
            reason=reason,
        )
    )


async def place(flow: Any, facts_agent: Any, serde: Serde, outbox: Outbox, hold: Any) -> None:
    """The hold through the workflow, its directive through ingest, and flushed."""
    await put_on(flow, COMMANDS, ANN.encode(), serde.encode(hold))
    await wait_for(lambda: bool(outbox.on_prefix(SUBJECT_DIRECTIVES)))
    (forwarded,) = outbox.on_prefix(SUBJECT_DIRECTIVES)
    await put_on(facts_agent, SUBJECT_DIRECTIVES, ANN.encode(), forwarded.value)
    await wait_for(lambda: legal_holds.data.get(ANN) is not None)
    await state.flush()


async def test_a_legal_holds_reason_is_sealed_in_the_holds_table(
    serde: Serde, outbox: Outbox, store: KeyStore, sealer: WorkerSealer
) -> None:
    await store.get_or_create(ANN)
    hold = hold_on_ann("H-1")
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await place(flow, facts_agent, serde, outbox, hold)
        assert "Acacia" not in stored(legal_holds.data, ANN)
        state.forget()  # read back from the store, not the decoded cache
        (kept,) = state.get(HOLDS, ANN) or []
    assert (kept.hold_id, kept.reason) == ("H-1", hold.reason)


async def test_a_hold_an_erasure_keeps_is_sealed_again_under_what_stays(
    serde: Serde, outbox: Outbox, store: KeyStore, sealer: WorkerSealer
) -> None:
    """A hold's reason is sealed now; the erasure destroys ``main``, so what it keeps of the
    holds must be sealed again under a key that stays (``erase_leftovers`` writes them
    whether or not they changed), and read back whole once the decoded copy is gone."""
    await store.get_or_create(ANN)
    known(SubjectFacts(latest_financial_record_at=INVOICE))
    hold = hold_on_ann("H-2")
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await place(flow, facts_agent, serde, outbox, hold)
        outbox.sent.clear()  # the erasure's helpers read only its own directives
        await erased_keeping_invoices(flow, facts_agent, serde, outbox, "R-hold-2")
        await state.flush()
        state.forget()  # read back from the store, under the keys that are left
        (kept,) = state.get(HOLDS, ANN) or []
    assert (kept.hold_id, kept.reason) == ("H-2", hold.reason)


async def test_an_open_request_about_someone_erased_keeps_its_text_until_it_closes(
    serde: Serde, outbox: Outbox, store: KeyStore, sealer: WorkerSealer
) -> None:
    """With nothing kept, an erased subject has no key: the free text of a later request
    about them was stripped at its first flush, so the DPO never read what a complaint
    ("you emailed me after I asked you to erase me") was about (review, session 26). It
    is kept as written while the request is open, and cleared when it closes."""
    from tests.agents.test_erasure_shred import answer_all
    from tests.agents.test_workflow_agent import erasure

    await store.get_or_create(ANN)
    known(SubjectFacts())
    async with workflow.test_context() as flow, ingest.test_context() as facts_agent:
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(erasure("R-all", ANN)))
        await suppress(facts_agent, serde, outbox, "R-all")
        await wait_for(lambda: len(outbox.on_prefix("privacy.tasks.")) == len(TASKED))
        await answer_all(flow, serde, outbox, "R-all")
        await wait_for(lambda: shredding.KEYS_SHREDDED in history("R-all"))
        assert await store.records(ANN) == []  # nothing kept: no key to seal under
        why = "You emailed me on 3 May after I asked you to erase my data"
        complaint = sign(submitted("R-cmp", RequestType.complaint, ANN, reason=why))
        await put_on(flow, COMMANDS, ANN.encode(), serde.encode(complaint))
        await wait_for(lambda: "R-cmp" in requests.data)
        await state.flush()
        await state.settle()
        state.forget()  # read back from the store
        found = newest(REQUESTS, ANN, "R-cmp")
    assert found is not None
    assert (found.open, found.reason) == (True, why)
    closed = shredding.scrubbed(found.model_copy(update={"state": RequestState.completed}))
    assert closed is not None
    assert closed.reason is None  # cleared as it closes
