"""The HTTP views answer with the newest decided value (streams.tables.newest).

A flush writes a table's local store only once its records are delivered (a round trip
to the broker; longer while the broker is slow or retrying), so a view reading the
store alone answered a withdrawal or an erasure late: a business system asking
`/consent` right after a withdrawal could still be told "allowed", and the key service
could still make a key for a subject just erased. The views read through the agents'
state instead, without keeping what they decode (a view may read while a partition
recovers, and the agents must never build on that).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaError
from faust.stores import rocksdb
from faust.types import Message

from agents import http
from privops.adapters.key_topic import subject_partition
from privops.core.consent import SubjectConsent
from privops.core.consent.model import FactKind, Marker
from privops.core.errors import RuntimeUnavailable
from privops.core.request import RequestRecord
from streams import batching
from streams.app import settings
from streams.state import state
from streams.tables import CONSENT, REQUESTS, consent, newest, requests
from tests.agents.test_batching import message
from tests.agents.test_flush_order import Broker

SUBJECT = "S-views-1"
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def decided(partition: int, write: Any) -> Message:
    """One input on ``partition`` whose decision is ``write`` (puts through ``state``)."""
    item = message("crm.events", 0, partition)
    state.message = item
    write()
    state.done(item)
    state.message = None
    return item


@pytest.fixture
def broker(app: Any, monkeypatch: pytest.MonkeyPatch) -> Broker:
    broker = Broker()
    monkeypatch.setattr(state, "queue_all", broker.queue_all)
    return broker


async def test_an_erasure_is_seen_by_the_views_before_it_is_stored(broker: Broker) -> None:
    partition = subject_partition(SUBJECT, settings.topic_partitions)
    marker = Marker(
        kind=FactKind.suppressed, source="crm", event_id="E-1", occurred_at=NOW, evidence="x"
    )
    erased = SubjectConsent(subject_id=SUBJECT, suppression=marker, suppressed=True, updated_at=NOW)
    decided(partition, lambda: state.put(CONSENT, SUBJECT, erased))
    assert http._erased(SUBJECT)  # decided, not flushed

    await state.flush()  # its changelog record handed over, not delivered: not stored
    assert consent.get(SUBJECT) is None
    assert http._erased(SUBJECT)
    seen = newest(CONSENT, SUBJECT, SUBJECT)
    assert seen is not None
    assert seen.suppressed

    await _delivered(broker, 0)  # now stored
    assert consent.get(SUBJECT) is not None
    assert http._erased(SUBJECT)


async def test_a_request_is_seen_on_its_subjects_partition_before_it_is_stored(
    broker: Broker,
) -> None:
    partition = subject_partition(SUBJECT, settings.topic_partitions)
    record = RequestRecord.model_validate(
        {
            "request_id": "R-views-1",
            "request_type": "access",
            "subject_id": SUBJECT,
            "actor": "dpo",
            "state": "received",
            "received_on": NOW.date(),
            "due_on": NOW.date(),
            "created_at": NOW,
        }
    )
    decided(partition, lambda: state.put(REQUESTS, "R-views-1", record))
    await state.flush()
    assert requests.get("R-views-1") is None
    seen = newest(REQUESTS, SUBJECT, "R-views-1")
    assert seen is not None
    assert seen.request_id == "R-views-1"
    assert newest(REQUESTS, SUBJECT, "R-other") is None


async def test_a_views_read_is_not_kept_for_the_agents(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a view decodes from the store stays out of the agents' cache (it may have
    been read mid-recovery); an agent's own read keeps it."""
    monkeypatch.setattr(state, "cache_size", 100)
    partition = subject_partition(SUBJECT, settings.topic_partitions)
    consent.data[SUBJECT] = SubjectConsent(subject_id=SUBJECT, updated_at=NOW).model_dump(
        mode="json"
    )
    seen = newest(CONSENT, SUBJECT, SUBJECT)
    assert seen is not None
    assert (CONSENT.name, partition, SUBJECT) not in state._cache
    state.get_at(CONSENT, partition, SUBJECT)
    assert (CONSENT.name, partition, SUBJECT) in state._cache


async def _delivered(broker: Broker, call: int) -> None:
    """Wait for the ``call``-th hand-over, deliver it and settle."""
    for _ in range(100):
        if len(broker.calls) > call:
            break
        await _turn()
    broker.deliver(call)
    await state.settle()


async def _turn() -> None:
    await asyncio.sleep(0.01)


async def test_no_answer_while_what_the_state_holds_cannot_be_trusted(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed state's unflushed and undelivered values will never be stored, and
    values decided while flushes are dropped will be decided again: the views answer
    503 (``RuntimeUnavailable``), not what may never be."""
    partition = subject_partition(SUBJECT, settings.topic_partitions)
    decided(partition, lambda: state.put(CONSENT, SUBJECT, SubjectConsent(subject_id=SUBJECT)))
    assert newest(CONSENT, SUBJECT, SUBJECT) is not None
    monkeypatch.setattr(state, "_dropping", True)
    with pytest.raises(RuntimeUnavailable):
        newest(CONSENT, SUBJECT, SUBJECT)
    with pytest.raises(RuntimeUnavailable):
        http._erased(SUBJECT)
    monkeypatch.setattr(state, "_dropping", False)
    monkeypatch.setattr(state, "failure", KafkaError())
    with pytest.raises(RuntimeUnavailable):
        newest(CONSENT, SUBJECT, SUBJECT)


def test_a_subject_id_no_subject_can_have_is_refused_before_it_is_hashed() -> None:
    with pytest.raises(ValueError, match="printable"):
        newest(CONSENT, "x" * 10_000, "x")


def test_a_views_read_never_opens_a_partitions_store(app: Any) -> None:
    """On RocksDB, a partition's database is open only while the partition is held: a
    view's read of another one (a revocation racing the router) is refused rather than
    open, or create, the database Faust has just closed; the agents' reads open it."""
    store = rocksdb.Store("rocksdb://", app, consent)
    table = SimpleNamespace(data=store, name=consent.name)
    try:
        with pytest.raises(RuntimeUnavailable, match="partition 3"):
            batching.read_partition(table, 3, SUBJECT, open_only=True)  # type: ignore[arg-type]
        assert 3 not in store._dbs
        assert batching.read_partition(table, 3, SUBJECT) is None  # type: ignore[arg-type]
        assert 3 in store._dbs
        assert batching.read_partition(table, 3, SUBJECT, open_only=True) is None  # type: ignore[arg-type]
    finally:
        store._dbs.clear()
