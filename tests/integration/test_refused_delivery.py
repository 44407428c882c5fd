"""A flush the broker refuses stops the worker, and a restart redoes it (issue #11, the
batched path's at-least-once).

Inputs are acknowledged only once everything their flush wrote is delivered; a refused
delivery holds back every acknowledgement after it (streams.state). A worker that went
on deciding would never commit again, so it stops, non-zero, naming the error: its
orchestrator restarts it, and the restart replays the inputs from the last commit.

The refusal is real: the broker is told that this worker's consent changelog takes no
record of its size (``max.message.bytes``), a non-retriable error for the producer, and
only for a topic no other test writes.

The restart must decide the input again, not find it decided: a flush writes its values
to the local store only once its changelog records are delivered (streams.state), so
the restarted worker, on the same store, folds the SMS consent in again and the
changelog (what standbys and the partition's next owner read) gets it. Written to the
store at the flush, as before, the restart found the event remembered, did nothing,
and the changelog never held the change.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from privops.adapters.acls import ADMIN
from privops.adapters.kafka import client_options, read_all
from privops.adapters.key_topic import subject_partition
from privops.adapters.settings import Settings
from privops.core import records as r
from privops.core.vocab import Channel, Purpose, System
from tests.conftest import port, start_worker
from tests.integration.helpers import Subject, http_json, produce, wait_for, wait_for_commit

pytestmark = pytest.mark.integration


async def _alter(settings: Settings, topic: str, config: dict[str, str | None]) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings, ADMIN), request_timeout_ms=15000)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, config)])
    finally:
        await admin.close()


@contextmanager
def refusing(settings: Settings, topic: str) -> Iterator[None]:
    """``topic`` takes no record batch over 16 bytes until the block ends."""
    asyncio.run(_alter(settings, topic, {"max.message.bytes": "16"}))
    try:
        yield
    finally:
        asyncio.run(_alter(settings, topic, {"max.message.bytes": "1048588"}))


def allowed(url: str, subject: Subject, channel: Channel) -> bool | None:
    status, body = http_json(f"{url}/consent/{subject.id}?purpose=marketing&channel={channel}")
    return body.get("allowed") if status == 200 else None


def logged_consent(settings: Settings, app_id: str, subject: Subject) -> dict[str, object]:
    """The subject's last consent value on the worker's consent changelog ({} if none)."""
    topic = f"{app_id}-consent-changelog"
    records = asyncio.run(read_all(client_options(settings, ADMIN), topic))
    values = [c.value for c in records if c.key == subject.id.encode()]
    last = values[-1] if values else None
    return json.loads(last) if isinstance(last, bytes) else {}


def granted(value: dict[str, object], key: str) -> bool:
    entries = value.get("entries")
    entry = entries.get(key) if isinstance(entries, dict) else None
    return isinstance(entry, dict) and entry.get("status") == "granted"


def test_a_flush_the_broker_refuses_stops_the_worker_and_a_restart_redoes_it(
    local_runtime: Settings, uid: str
) -> None:
    name = f"refused-{uid}"
    ann = Subject(uid)
    crm = TopicPartition("crm.events", subject_partition(ann.id, local_runtime.topic_partitions))
    email = ann.event(
        r.ConsentGiven, System.crm, 1, purpose=Purpose.marketing, channel=Channel.email
    )
    sms = ann.event(r.ConsentGiven, System.crm, 2, purpose=Purpose.marketing, channel=Channel.sms)
    worker = start_worker(local_runtime, name, web_port=port(87))
    try:
        produce(local_runtime, [ann.event(r.CustomerCreated, System.crm), email])
        wait_for("the email consent", lambda: allowed(worker.url, ann, Channel.email), 60)
        wait_for_commit(local_runtime, f"privops-{name}", [crm])  # Ann's first two events
        with refusing(local_runtime, f"privops-{name}-consent-changelog"):
            produce(local_runtime, [sms])
            code = worker.proc.wait(60)
    finally:
        worker.stop(kill=True)
    log = worker.log.read_text()
    assert code != 0, log[-3000:]
    assert "were not delivered" in log
    assert "MessageSizeTooLarge" in log or "RecordBatchTooLarge" in log, log[-3000:]
    assert ann.email not in log

    again = start_worker(local_runtime, name, web_port=port(87))
    try:  # the SMS consent was never acknowledged: the restart decides it again
        wait_for("the SMS consent, replayed", lambda: allowed(again.url, ann, Channel.sms), 60)
        assert allowed(again.url, ann, Channel.email)
        wait_for(
            "the SMS consent on the changelog",
            lambda: granted(logged_consent(local_runtime, f"privops-{name}", ann), "marketing:sms"),
            30,
        )
    finally:
        again.stop()
