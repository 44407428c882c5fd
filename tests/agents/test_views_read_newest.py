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
from typing import Any

import pytest
from faust.types import Message

from agents import http
from privops.adapters.key_topic import subject_partition
from privops.core.consent import SubjectConsent
from privops.core.consent.model import FactKind, Marker
from privops.core.request import RequestRecord
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
