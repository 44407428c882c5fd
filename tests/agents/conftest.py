"""Faust agent tests: the DESIGN.md section 2 pattern, with no broker and no registry.

The environment is set before ``streams.app`` is imported (memory store, a temporary
table directory). Every outbound send (emit, audit, dead letter, table changelogs) is
mocked, and ``streams.io.serde`` is replaced by a Serde whose schema-id caches are filled
locally from the bundled schemas, so framed Avro encodes and decodes offline.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from unittest.mock import AsyncMock

import pytest
from faust.types import Message
from yarl import URL

from privops.core import consent as rules
from privops.core.consent import ConsentFact, FactKind
from privops.core.vocab import System

# Set before streams.app reads the settings, and put back afterwards so worker
# subprocesses started by integration tests in the same session keep their own store.
# The directory is removed when the test process ends (the object's finalizer).
_DATA_DIR = tempfile.TemporaryDirectory(prefix="privops-agent-tests-")
_AGENT_ENV = {
    "PRIVOPS_STORE": "memory://",
    "PRIVOPS_DATA_DIR": _DATA_DIR.name,
}
_saved = {name: os.environ.get(name) for name in _AGENT_ENV}
os.environ.update(_AGENT_ENV)
try:
    from privops.adapters.settings import get_settings

    get_settings.cache_clear()
    import faust.tables.table

    import agents.ingest as agents_ingest
    from privops.adapters.serde import Serde
    from privops.core.records import Record
    from privops.core.vocab import RequestState
    from privops.core.workflow import RequestRecord
    from streams import io as streams_io
    from streams import state as streams_state
    from streams import tables as streams_tables
    from streams.app import app as faust_app
    from streams.batching import Outgoing
    from streams.context import collaborators
    from streams.schedule import Schedule
finally:
    for _name, _value in _saved.items():
        if _value is None:
            os.environ.pop(_name, None)
        else:
            os.environ[_name] = _value


AGENT_TESTS_CLUSTER = "agent-tests-cluster-id"
"""The Kafka cluster id the agents run under (Collaborators.deployment, set per test)."""

R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    record: Record


class Outbox:
    """Everything the agents sent, decoded back to records, in send order."""

    def __init__(self, serde: Serde) -> None:
        self.serde = serde
        self.sent: list[Sent] = []
        # Tombstones sent on privops' compacted output topics (topic, key), in order.
        self.tombstones: list[tuple[str, bytes | None]] = []
        # Every record and tombstone (None) in send order: what a compacted topic ends with.
        self.writes: list[tuple[str, bytes | None, Record | None]] = []
        # The global views' topics carry plain strings, not Avro.
        self.views: list[tuple[str, bytes | None, bytes]] = []

    def record(self, topic: str, key: bytes | None, value: bytes) -> None:
        if topic in {view.topic for view in streams_tables.GLOBAL_VIEWS}:
            self.views.append((topic, key, value))
            return
        self.sent.append(Sent(topic, key, value, self.serde.decode(value)))
        self.writes.append((topic, key, self.sent[-1].record))

    def tombstone(self, topic: str, key: bytes | None) -> None:
        self.tombstones.append((topic, key))
        self.writes.append((topic, key, None))

    def latest(self, prefix: str) -> dict[tuple[str, bytes | None], Record | None]:
        """The last value sent per (topic, key) on topics starting with ``prefix``: what
        a compacted topic keeps (None: a tombstone)."""
        return {(t, k): v for t, k, v in self.writes if t.startswith(prefix)}

    def on(self, topic: str) -> list[Record]:
        return [s.record for s in self.sent if s.topic == topic]

    def of(self, topic: str, model: type[R]) -> list[R]:
        """What was sent on `topic`, typed (and checked) as `model`."""
        records = self.on(topic)
        assert all(isinstance(x, model) for x in records), records
        return [x for x in records if isinstance(x, model)]

    def on_prefix(self, prefix: str) -> list[Sent]:
        return [s for s in self.sent if s.topic.startswith(prefix)]


def local_serde() -> Serde:
    """A Serde that never calls a registry: ids 1..N for the bundled latest schemas."""
    serde = Serde("http://registry.invalid", get_settings().schema_dir)
    for schema_id, fullname in enumerate(sorted(serde.codec.latest), start=1):
        serde._id_by_name[fullname] = schema_id
        serde._schema_by_id[schema_id] = serde.codec.schema_text(fullname)
    return serde


@pytest.fixture
def serde(monkeypatch: pytest.MonkeyPatch) -> Serde:
    serde = local_serde()
    monkeypatch.setattr(streams_io, "serde", serde)
    return serde


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real app, finalized, on the memory store, with table changelogs switched off.

    Tables are cleared and the workflow's timer index is fresh for each test; afterwards
    every request it tracked is untracked, so the process-wide gauges it set (pending
    tasks, open requests, due dates) are back to zero for later tests.
    """
    faust_app.finalize()
    if faust_app.conf.store.scheme != "memory":  # env set it already; re-setting warns
        faust_app.conf.store = URL("memory://")
    faust_app.flow_control.resume()
    monkeypatch.setattr(faust.tables.table.Table, "on_key_set", lambda _s, _k, _v: None)
    monkeypatch.setattr(faust.tables.table.Table, "on_key_del", lambda _s, _k: None)
    schedule = Schedule(
        collaborators().schedule.thresholds, record_days=collaborators().schedule.record_days
    )
    monkeypatch.setattr(collaborators(), "schedule", schedule)
    # The cluster the worker would have learnt at start-up: commands are signed for it
    # (tests.agents.signers), so a path that verifies or signs without it fails here.
    monkeypatch.setattr(collaborators(), "deployment", AGENT_TESTS_CLUSTER)
    for table in faust_app.tables.values():
        table.data.clear()
    for view in streams_tables.GLOBAL_VIEWS:
        view.clear()
        # Read to the end, as once a worker has started; a new event, not one bound to
        # an earlier test's event loop by a wait there.
        monkeypatch.setattr(view, "ready", asyncio.Event())
        view.ready.set()
    # No delivery still under way (or failed) from an earlier test, nothing an earlier
    # test decided and never flushed (a failed state keeps it), and a lock that is not
    # bound to an earlier test's event loop (it binds to the loop it is first waited for in).
    monkeypatch.setattr(streams_state.state, "_delivering", None)
    monkeypatch.setattr(streams_state.state, "_changelog_queued", None)
    monkeypatch.setattr(streams_state.state, "_held", {})
    monkeypatch.setattr(streams_state.state, "_dropping", False)
    monkeypatch.setattr(streams_state.state, "_rebalancing", False)
    monkeypatch.setattr(streams_state.state, "revocation_deadline", None)
    monkeypatch.setattr(streams_state.state, "failure", None)
    monkeypatch.setattr(streams_state.state, "_dirty", {})
    monkeypatch.setattr(streams_state.state, "_out", [])
    monkeypatch.setattr(streams_state.state, "_done", [])
    streams_state.state.forget()
    monkeypatch.setattr(streams_state.state, "lock", asyncio.Lock())
    yield faust_app
    for raw in list(streams_tables.requests.data.values()):
        rec = RequestRecord.model_validate(raw)
        schedule.track(rec.model_copy(update={"state": RequestState.cancelled}))
    for table in faust_app.tables.values():
        table.data.clear()


@pytest.fixture
def outbox(app: Any, serde: Serde, monkeypatch: pytest.MonkeyPatch) -> Outbox:
    """Mock every topic's send; what was sent is decoded into the outbox."""
    assert app is faust_app  # requested so that the app is set up before its topics
    box = Outbox(serde)
    for name, topic in streams_io.TOPICS.items():

        def make(name: str) -> AsyncMock:
            async def send(*, key: bytes | None = None, value: bytes, **_: Any) -> None:
                box.record(name, key, value)

            return AsyncMock(side_effect=send)

        monkeypatch.setattr(topic, "send", make(name))

    async def flushed(records: Sequence[Outgoing]) -> Awaitable[list[int]]:
        """What an agent's flush sends: outputs into the outbox; table changelogs
        (JSON, the same values the tables now hold) are not kept. Delivered at once."""
        for topic, key, value, _ in records:
            if topic in streams_io.TOPICS and value is not None:
                box.record(topic, key, value)
            elif topic in streams_io.TOPICS:
                box.tombstone(topic, key)
        return asyncio.sleep(0, result=list(range(len(records))))

    monkeypatch.setattr(streams_state.state, "queue_all", flushed)
    return box


async def wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Agents that do not yield give no signal when done: poll for the effect."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("timed out waiting for the agent")
        await asyncio.sleep(0.01)


def subject_key(record: Any) -> bytes:
    """The key the CLI would give ``record``: its subject's id, else its request's subject
    (from the request index, as the worker tells the CLI), else a key no subject has."""
    subject = getattr(record, "subject_id", None)
    if subject is None:
        subject = streams_tables.request_index.get(getattr(record, "request_id", ""))
    return (subject or "no-such-subject").encode()


_offsets = itertools.count()


@pytest.fixture(autouse=True)
def one_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    """``put_on`` puts every message on partition 0: the agents' check that an input is on
    its subject's partition counts one partition (a test that checks it sets more)."""
    monkeypatch.setattr(agents_ingest, "PARTITIONS", 1)


async def put_on(
    agent: Any,
    topic: str,
    key: bytes,
    value: bytes | None,
    *,
    partition: int = 0,
    timestamp: float = 0.0,
) -> None:
    """Put one message on the test agent as a chunk of its own, as if fetched from
    ``topic`` (partition 0 unless told: the agents check partitions as if there were
    one, ``one_partition``; ``timestamp`` is the record's, seconds, 0 for none)."""
    message = Message(
        topic=topic,
        partition=partition,
        offset=next(_offsets),
        timestamp=timestamp,
        timestamp_type=0,
        headers=None,
        key=key,
        value=value,
        checksum=None,
    )
    await agent.put(value=[message], wait=False)


def erased_consent(subject: str) -> dict[str, Any]:
    """The consent state an erasure leaves: the suppression marker."""
    fact = ConsentFact(
        event_id="erasure-1",
        occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
        source=System.crm,
        kind=FactKind.suppressed,
        evidence="privacy.commands:R-1",
    )
    state, _ = rules.apply(None, subject, fact)
    assert state.suppressed
    return state.model_dump(mode="json")
