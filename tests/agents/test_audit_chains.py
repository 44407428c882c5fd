"""The workflow agent's audit chains stay one line each, whatever arrives where (review,
session 25): a chain's head lives in the table partition of the input that advances it,
so a step written from a partition that does not hold the request forks the chain, and
`privops audit verify` then fails for good (and `audit anchor` refuses to run).

Production keeps one RocksDB database per partition; the agent tests' memory store is
one dict for every partition, which hides a fork. ``per_partition`` models the first.
"""

from __future__ import annotations

import copy
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

import agents.ingest as agents_ingest
from agents.requests import workflow
from privops.adapters.key_topic import subject_partition
from privops.adapters.serde import Serde
from privops.core import records as r
from privops.core.audit import keyring, verify
from privops.core.topics import AUDIT, COMMAND_RESULTS, COMMANDS, task_results_topic
from privops.core.vocab import RequestType, System
from streams import batching
from streams import tables as streams_tables
from streams.app import app as faust_app
from streams.app import settings
from streams.context import collaborators
from streams.state import state
from tests.agents.conftest import Outbox, put_on, wait_for
from tests.agents.signers import sign, trust
from tests.agents.test_workflow_agent import SUBJECT, known_subject

PARTITIONS = 4
RING = keyring(settings.audit_key, settings.audit_key_version, settings.audit_previous_keys)
PRODUCED_AT = time.time() - 60  # the inputs' record timestamp (seconds)
_ids = itertools.count(1)


@pytest.fixture(autouse=True)
def four_partitions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    trust(monkeypatch, tmp_path)
    monkeypatch.setattr(agents_ingest, "PARTITIONS", PARTITIONS)


@pytest.fixture
def per_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    """One store per table partition, as RocksDB keeps them (streams.batching)."""
    stores: dict[tuple[str, int], dict[str, Any]] = {}

    def write(table: Any, partition: int, items: dict[str, Any]) -> None:
        store = stores.setdefault((table.name, partition), {})
        for key, (value, _) in items.items():
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value

    def read(table: Any, partition: int, key: str, *, open_only: bool = False) -> Any:
        store = stores.get((table.name, partition), {})
        return store[key] if key in store else table.data.data.get(key)

    monkeypatch.setattr(batching, "write_partition", write)
    monkeypatch.setattr(batching, "read_partition", read)


async def put(
    agent: Any, topic: str, value: bytes, key: bytes, partition: int, at: float = PRODUCED_AT
) -> None:
    await put_on(agent, topic, key, value, partition=partition, timestamp=at)


def submitted(request_id: str) -> r.RequestSubmitted:
    today = collaborators().clock.today()
    return sign(
        r.RequestSubmitted(
            command_id=f"audit-chain-{next(_ids)}",
            request_id=request_id,
            issued_at=collaborators().clock.now(),
            actor="dpo",
            request_type=RequestType.access,
            subject_id=SUBJECT,
            received_on=today,
            identity_verified_on=today,
        )
    )


async def answered(outbox: Outbox, command_id: str) -> None:
    await wait_for(
        lambda: any(a.command_id == command_id for a in outbox.of(COMMAND_RESULTS, r.CommandAnswer))
    )
    await state.settle()


def chain(outbox: Outbox, request_id: str) -> list[r.AuditEvent]:
    name = f"{settings.app_id}/{request_id}"
    return [a for a in outbox.of(AUDIT, r.AuditEvent) if a.chain == name]


def elsewhere() -> tuple[str, int]:
    """A subject, and its partition, that is not SUBJECT's."""
    home = subject_partition(SUBJECT, PARTITIONS)
    other = next(
        f"S-{i}" for i in itertools.count() if subject_partition(f"S-{i}", PARTITIONS) != home
    )
    return other, subject_partition(other, PARTITIONS)


@pytest.mark.usefixtures("app", "per_partition")
async def test_an_unsigned_command_elsewhere_leaves_the_requests_chain_whole(
    serde: Serde, outbox: Outbox
) -> None:
    """No key is needed to send it: before, its rejection took seq 1 of the request's
    chain again (the head read on a partition that does not hold the request)."""
    known_subject()
    home = subject_partition(SUBJECT, PARTITIONS)
    other_subject, other = elsewhere()
    async with workflow.test_context() as agent:
        ok = submitted("R-whole")
        await put(agent, COMMANDS, serde.encode(ok), SUBJECT.encode(), home)
        await answered(outbox, ok.command_id)
        forged = r.RequestCancelled(
            command_id="audit-chain-unsigned",
            request_id="R-whole",
            issued_at=collaborators().clock.now(),
            actor="dpo",
            reason="x",
        )
        await put(agent, COMMANDS, serde.encode(forged), other_subject.encode(), other)
        await answered(outbox, forged.command_id)
    records = chain(outbox, "R-whole")
    assert [a.seq for a in records] == list(range(1, len(records) + 1))
    assert verify(records, RING).ok
    rejected = [a for a in outbox.of(AUDIT, r.AuditEvent) if a.action == "command_rejected"]
    assert [a.chain for a in rejected] == [f"{settings.app_id}/rejected/workflow/{other}"]
    assert rejected[0].request_id == "R-whole"  # `audit show R-whole` still finds it


@pytest.mark.usefixtures("app", "per_partition")
async def test_a_systems_answer_keyed_elsewhere_leaves_the_requests_chain_whole(
    serde: Serde, outbox: Outbox
) -> None:
    """A business system chooses the key of its answers: one for another subject's
    request, on its own partition, is rejected there, not chained into that request."""
    known_subject()
    home = subject_partition(SUBJECT, PARTITIONS)
    other_subject, other = elsewhere()
    async with workflow.test_context() as agent:
        ok = submitted("R-answered")
        await put(agent, COMMANDS, serde.encode(ok), SUBJECT.encode(), home)
        await answered(outbox, ok.command_id)
        before = len(outbox.of(AUDIT, r.AuditEvent))
        answer = r.TaskCompleted(
            task_id="R-answered:crm:export",
            request_id="R-answered",
            system=System.crm,
            answered_at=collaborators().clock.now(),
        )
        topic = task_results_topic(System.crm)
        await put(agent, topic, serde.encode(answer), other_subject.encode(), other)
        await wait_for(lambda: len(outbox.of(AUDIT, r.AuditEvent)) > before)
        await state.settle()
    records = chain(outbox, "R-answered")
    assert [a.seq for a in records] == list(range(1, len(records) + 1))
    assert verify(records, RING).ok


@pytest.mark.usefixtures("app")
async def test_an_input_replayed_after_a_crash_writes_the_same_audit_records(
    serde: Serde, outbox: Outbox
) -> None:
    """The flush's outputs went out, its table writes did not (a crash, a rebalance too
    slow): the input is decided again from the old heads. Dated by the worker's clock,
    the steps came out different at the same seq, a 'duplicate' no reader could tell
    from tampering; dated by the input they are the same records, which verify takes
    as redeliveries."""
    known_subject()
    home = subject_partition(SUBJECT, PARTITIONS)
    stored = {name: copy.deepcopy(dict(table.data)) for name, table in faust_app.tables.items()}
    async with workflow.test_context() as agent:
        cmd = submitted("R-replayed")
        await put(agent, COMMANDS, serde.encode(cmd), SUBJECT.encode(), home)
        await answered(outbox, cmd.command_id)
        for name, table in faust_app.tables.items():  # none of the writes reached Kafka
            table.data.clear()
            table.data.update(copy.deepcopy(stored[name]))
        for view in streams_tables.GLOBAL_VIEWS:
            view.clear()
        state.forget()
        sent = len(outbox.of(COMMAND_RESULTS, r.CommandAnswer))
        await put(agent, COMMANDS, serde.encode(cmd), SUBJECT.encode(), home)
        await wait_for(lambda: len(outbox.of(COMMAND_RESULTS, r.CommandAnswer)) > sent)
        await state.settle()
    records = chain(outbox, "R-replayed")
    assert len(records) > len({a.seq for a in records})  # written twice ...
    assert verify(records, RING).ok  # ... as the same records


@pytest.mark.parametrize("produced", [1.0, time.time() + 3600], ids=["1970", "an-hour-ahead"])
@pytest.mark.usefixtures("app")
async def test_a_producers_timestamp_out_of_bounds_does_not_date_the_audit(
    serde: Serde, outbox: Outbox, produced: float
) -> None:
    """The producer sets a record's timestamp: a system or a CLI host must not backdate
    (or postdate) privops' own audit with it."""
    known_subject()
    home = subject_partition(SUBJECT, PARTITIONS)
    async with workflow.test_context() as agent:
        cmd = submitted("R-dated")
        await put(agent, COMMANDS, serde.encode(cmd), SUBJECT.encode(), home, at=produced)
        await answered(outbox, cmd.command_id)
    records = chain(outbox, "R-dated")
    assert records
    now = collaborators().clock.now()
    assert all(abs((a.occurred_at - now).total_seconds()) < 300 for a in records)
