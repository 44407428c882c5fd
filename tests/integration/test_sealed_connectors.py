"""Issue 15 step 5, the business systems' side, on the real broker with a real worker:
the simulated systems publish their events' personal fields as ciphertext under keys from
the worker's key service, and a connector opens a sealed task through the same service,
answers its export encrypted, and skips (and commits past) a task under a key that is
not stored, without executing it."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from privops.adapters import kek as kekfile
from privops.adapters.acls import system_principal
from privops.adapters.kafka import client_options, producer
from privops.adapters.settings import Settings
from privops.connectors.encryption import (
    WorkerKeySource,
    decrypt_record,
    encrypt_record,
    plaintext_fields,
)
from privops.connectors.reference import FakeCustomer, OrdersConnector, seed_customers, seed_stores
from privops.connectors.sdk import Answer, ConnectorRunner, TransientRetry
from privops.core import records as r
from privops.core.fieldcrypt import DataKey, encrypt_field, is_encrypted
from privops.core.topics import events_topic, task_results_topic, tasks_topic
from privops.core.vocab import System
from privops.tools.simulate import publish_business_day
from tests.conftest import port, start_worker
from tests.integration.helpers import http_json, key_service, read_topic, serde_for, wait_for
from tests.integration.test_request_flow import known, own_pseudonym_key

pytestmark = pytest.mark.integration

ORDERS = System.orders


class CountingOrders(OrdersConnector):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.tasks: list[r.Task] = []

    async def handle(self, task: r.Task) -> Answer:
        self.tasks.append(task)
        return await super().handle(task)


def people_of(uid: str, n: int) -> list[FakeCustomer]:
    """Seeded customers under subject ids of this test's own (other tests erase the
    seeded ones)."""
    return [
        dataclasses.replace(c, subject_id=f"SEALED-{uid}-{c.number}") for c in seed_customers(n)
    ]


def test_simulated_systems_publish_ciphertext_and_connectors_answer_through_the_keys(
    local_runtime: Settings, tmp_path: Path, uid: str
) -> None:
    people = people_of(uid, 3)
    subjects = {c.subject_id for c in people}
    worker = start_worker(
        local_runtime, f"sealed-{uid}", web_port=port(221), extra_env=own_pseudonym_key(uid)
    )
    kek = kekfile.provider(local_runtime.kek_file, "dev", print)
    keys = key_service(worker.url, kek)
    try:
        started = time.monotonic()
        day = publish_business_day(
            local_runtime, people, seed=int(uid[:6], 16), worker_url=worker.url
        )
        counts = asyncio.run(day)
        print(f"published {sum(counts.values())} events in {time.monotonic() - started:.2f} s")

        # On the topics: every personal field is ciphertext that opens under the subject's key.
        events = [
            c.value
            for system in System
            for c in read_topic(local_runtime, events_topic(system))
            if isinstance(c.value, r.UpstreamEvent) and c.value.subject_id in subjects
        ]
        assert len(events) == sum(counts.values())
        emails = {c.email for c in people}
        for event in events:
            assert plaintext_fields(event) == []
            assert not any(email in event.model_dump_json() for email in emails)
            opened = decrypt_record(event, keys)
            assert opened.identifiers.email in (None, *emails)
        assert sum(e.identifiers.email is not None for e in events) > 0

        # The worker read them through the keys; each subject has one key, main.
        for c in people:
            wait_for(f"{c.subject_id} to be known", partial(known, worker, c.subject_id))
            status, body = http_json(f"{worker.url}/subject-keys/{c.subject_id}")
            assert status == 200
            assert [k["scope"] for k in body["keys"]] == ["main"]

        asyncio.run(connector_round(local_runtime, worker.url, keys, people[0], tmp_path, uid))
    finally:
        keys.close()
        worker.stop()


async def connector_round(
    settings: Settings,
    worker_url: str,
    keys: WorkerKeySource,
    customer: FakeCustomer,
    tmp_path: Path,
    uid: str,
) -> None:
    data_dir = tmp_path / "systems"
    seed_stores(data_dir, [customer])
    serde = serde_for(settings)
    now = datetime.now(UTC)
    export = r.Export(
        task_id=f"T-sealed-{uid}",
        request_id=f"R-{uid}",
        subject_id=customer.subject_id,
        system=ORDERS,
        issued_at=now,
        identifiers=customer.identifiers(ORDERS),
    )
    sealed = await asyncio.to_thread(encrypt_record, export, keys)
    # Under a key the key service never stored (what a destroyed one looks like).
    ghost = DataKey.generate(customer.subject_id)
    stale = r.Erase(
        task_id=f"T-stale-{uid}",
        request_id=f"R-stale-{uid}",
        subject_id=customer.subject_id,
        system=ORDERS,
        issued_at=now,
        identifiers={
            k: encrypt_field(ghost, customer.subject_id, f"identifiers{{{k}}}", v)
            for k, v in customer.identifiers(ORDERS).items()
        },
    )
    connector = CountingOrders(data_dir)
    runner = ConnectorRunner(
        connector,
        settings,
        group_id=f"test-sealed-{uid}",
        ledger=tmp_path / "orders-ledger.db",
        retry=TransientRetry(retries=1, first_delay=0.05),
        start_from="latest",
        worker_url=worker_url,
    )
    results = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await results.start()
    stop = asyncio.Event()
    running = asyncio.create_task(runner.run(stop))
    try:
        tps = [
            TopicPartition(task_results_topic(ORDERS), p) for p in range(settings.topic_partitions)
        ]
        results.assign(tps)
        await results.seek_to_end(*tps)
        for tp in tps:
            await results.position(tp)
        await asyncio.wait_for(runner.ready.wait(), 20)
        async with producer(settings.kafka_bootstrap) as prod:
            for task in (stale, sealed):
                await prod.send_and_wait(
                    tasks_topic(ORDERS), key=task.subject_id.encode(), value=serde.encode(task)
                )
        answer = await _answer_to(results, serde, export.task_id)
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)
        await results.stop()

    assert [t.task_id for t in connector.tasks] == [export.task_id]  # the stale one: never
    assert connector.tasks[0].identifiers == export.identifiers
    assert runner.stats.skipped == 1
    assert runner.stats.by_outcome == {"completed": 1}
    assert isinstance(answer, r.TaskCompleted)
    assert answer.export is not None
    assert is_encrypted(answer.export.location)
    opened = await asyncio.to_thread(decrypt_record, answer, keys, subject_id=customer.subject_id)
    assert opened.export is not None
    assert opened.export.location.endswith(f"/orders/R-{uid}.json")
    assert await _nothing_left(settings, runner.group_id)


async def _answer_to(results: AIOKafkaConsumer, serde: object, task_id: str) -> r.TaskResult:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        batch = await results.getmany(timeout_ms=300)
        for messages in batch.values():
            for msg in messages:
                record = serde.decode(msg.value)  # type: ignore[attr-defined]
                if isinstance(record, r.TaskResult) and record.task_id == task_id:
                    return record
    raise AssertionError(f"no answer to {task_id} in 30 s")


async def _nothing_left(settings: Settings, group: str) -> bool:
    """The group committed every task on the subject's partition: the skipped one too."""
    consumer = AIOKafkaConsumer(
        **client_options(settings, system_principal(ORDERS)),
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(tasks_topic(ORDERS), p) for p in range(settings.topic_partitions)]
        ends = await consumer.end_offsets(tps)
        committed = {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()
    used = [tp for tp in tps if committed[tp] is not None]
    assert used, "the runner committed nothing"
    return all(committed[tp] == ends[tp] for tp in used)
