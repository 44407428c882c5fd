"""The connector SDK against the real broker and registry: answer, dedupe, retry, skip."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from privops.adapters import kek as kekfile
from privops.adapters.kafka import client_options, producer
from privops.adapters.serde import Serde
from privops.adapters.settings import Settings
from privops.connectors.encryption import RingKeySource, decrypt_record
from privops.connectors.reference import (
    CrmConnector,
    Knobs,
    open_store,
    seed_customers,
    seed_stores,
)
from privops.connectors.sdk import Answer, ConnectorRunner, TransientRetry, metric_value
from privops.core.fieldcrypt import is_encrypted
from privops.core.records import (
    Erase,
    Export,
    Restrict,
    Task,
    TaskCompleted,
    TaskFailed,
    TaskResult,
)
from privops.core.subject_keys import KeyRing, SubjectKey, create
from privops.core.topics import task_results_topic, tasks_topic
from privops.core.vocab import Category, System
from privops.tools.simulate import build_runners, publish_business_day, run_connectors

pytestmark = pytest.mark.integration

CRM = System.crm


class Results:
    """Reads privacy.task-results from its end at creation; finds answers by task id."""

    def __init__(self, consumer: AIOKafkaConsumer, serde: Serde) -> None:
        self.consumer = consumer
        self.serde = serde
        self.seen: list[tuple[bytes | None, TaskResult]] = []

    async def wait_for(self, task: Task, attempt: int, within: float = 12.0) -> TaskResult:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            for key, result in self.seen:
                if result.task_id == task.task_id and result.attempt == attempt:
                    # Keyed by the subject's id: the answer reaches the request's partition.
                    assert key == task.subject_id.encode()
                    return result
            batch = await self.consumer.getmany(timeout_ms=300)
            for messages in batch.values():
                for msg in messages:
                    record = self.serde.decode(msg.value)
                    if isinstance(record, TaskResult) and record.task_id == task.task_id:
                        self.seen.append((msg.key, record))
        raise AssertionError(f"no answer for {task.task_id} attempt {attempt} in {within} s")

    async def none_for(self, task_id: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        batch = await self.consumer.getmany(timeout_ms=300)
        for messages in batch.values():
            for msg in messages:
                record = self.serde.decode(msg.value)
                assert not (isinstance(record, TaskResult) and record.task_id == task_id)


@asynccontextmanager
async def results(settings: Settings, serde: Serde) -> AsyncIterator[Results]:
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [
            TopicPartition(task_results_topic(s), p)
            for s in System
            for p in range(settings.topic_partitions)
        ]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        yield Results(consumer, serde)
    finally:
        await consumer.stop()


@asynccontextmanager
async def running(runner: ConnectorRunner) -> AsyncIterator[ConnectorRunner]:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        ready = asyncio.create_task(runner.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        assert ready in done, "connector did not get its partitions in 15 s"
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def send(settings: Settings, serde: Serde, task: Task | bytes, key: str = "k") -> None:
    async with producer(settings.kafka_bootstrap) as prod:
        if isinstance(task, bytes):
            await prod.send_and_wait(tasks_topic(CRM), key=key.encode(), value=task)
        else:
            value = serde.encode(task)
            await prod.send_and_wait(tasks_topic(CRM), key=task.subject_id.encode(), value=value)


class CountingCrm(CrmConnector):
    def __init__(self, data_dir: Path, knobs: Knobs | None = None) -> None:
        super().__init__(data_dir, knobs)
        self.calls = 0

    async def handle(self, task: Task) -> Answer:
        self.calls += 1
        return await super().handle(task)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    seed_stores(tmp_path / "systems", seed_customers(12))
    return tmp_path / "systems"


@pytest.fixture
async def serde(local_runtime: Settings) -> Serde:
    s = Serde(local_runtime.registry_url, local_runtime.schema_dir)
    await asyncio.to_thread(s.register_all)
    return s


def runner_for(
    connector: CrmConnector, settings: Settings, uid: str, tmp_path: Path
) -> ConnectorRunner:
    return ConnectorRunner(
        connector,
        settings,
        group_id=f"test-connector-crm-{uid}",
        ledger=tmp_path / "crm-ledger.db",
        retry=TransientRetry(retries=2, first_delay=0.05),
        start_from="latest",
        # No worker here to ask for keys: a ring of its own, so the legal holds other
        # tests left on the topic are read (a key it does not have opens nothing: the
        # hold is told without identifiers) and erasures may go ahead.
        keys=local_keys(settings),
    )


async def test_erase_answers_once_and_resend_is_answered_from_the_ledger(
    local_runtime: Settings, serde: Serde, data_dir: Path, tmp_path: Path, uid: str
) -> None:
    customer = seed_customers(12)[4]
    store = open_store(data_dir, CRM)
    assert store.rows(customer.identifiers(CRM))["contacts"]
    task = Erase(
        task_id=f"T-erase-{uid}",
        request_id=f"R-{uid}",
        subject_id=customer.subject_id,
        system=CRM,
        issued_at=datetime.now(UTC),
        identifiers=customer.identifiers(CRM),
        categories=[Category.contact, Category.interactions, Category.marketing_preferences],
    )
    connector = CountingCrm(data_dir)
    duplicates = metric_value("privops_connector_duplicates_total", system="crm")

    async with (
        results(local_runtime, serde) as answers,
        running(runner_for(connector, local_runtime, uid, tmp_path)),
    ):
        await send(local_runtime, serde, task)
        first = await answers.wait_for(task, attempt=1)

        assert isinstance(first, TaskCompleted)
        assert first.request_id == task.request_id
        assert first.system is CRM
        assert first.records_affected > 0
        assert all(rows == [] for rows in store.rows({"customer_id": customer.subject_id}).values())

        await send(local_runtime, serde, task.model_copy(update={"attempt": 2}))
        second = await answers.wait_for(task, attempt=2)

    assert isinstance(second, TaskCompleted)
    assert second.records_affected == first.records_affected
    assert connector.calls == 1
    assert metric_value("privops_connector_duplicates_total", system="crm") == duplicates + 1


async def test_transient_failures_answer_retryable_then_the_resend_succeeds(
    local_runtime: Settings, serde: Serde, data_dir: Path, tmp_path: Path, uid: str
) -> None:
    customer = seed_customers(12)[5]
    task = Restrict(
        task_id=f"T-restrict-{uid}",
        request_id=f"R-{uid}",
        subject_id=customer.subject_id,
        system=CRM,
        issued_at=datetime.now(UTC),
        identifiers={"email": customer.email},
    )
    connector = CountingCrm(data_dir, Knobs(fail_first=1))
    retries = metric_value(
        "privops_connector_transient_retries_total", system="crm", action="restrict"
    )
    skipped = metric_value("privops_connector_skipped_total", system="crm", reason="undecodable")

    async with (
        results(local_runtime, serde) as answers,
        running(runner_for(connector, local_runtime, uid, tmp_path)),
    ):
        await send(local_runtime, serde, b"not avro at all")
        await send(local_runtime, serde, task)
        failed = await answers.wait_for(task, attempt=1)
        assert isinstance(failed, TaskFailed)
        assert failed.retryable
        assert connector.calls == 3  # first try + 2 in-process retries

        await send(local_runtime, serde, task.model_copy(update={"attempt": 2}))
        done = await answers.wait_for(task, attempt=2)

    assert isinstance(done, TaskCompleted)
    assert done.records_affected > 0
    rows = open_store(data_dir, CRM).rows({"email": customer.email})
    assert all(r["restricted"] == 1 for table in rows.values() for r in table)
    assert (
        metric_value("privops_connector_transient_retries_total", system="crm", action="restrict")
        == retries + 2
    )
    assert metric_value("privops_connector_skipped_total", system="crm", reason="undecodable") == (
        skipped + 1
    )


async def test_silent_connector_consumes_and_never_answers(
    local_runtime: Settings, serde: Serde, data_dir: Path, tmp_path: Path, uid: str
) -> None:
    customer = seed_customers(12)[6]
    task = Erase(
        task_id=f"T-silent-{uid}",
        request_id=f"R-{uid}",
        subject_id=customer.subject_id,
        system=CRM,
        issued_at=datetime.now(UTC),
        identifiers=customer.identifiers(CRM),
    )
    runner = runner_for(CrmConnector(data_dir, Knobs(silent=True)), local_runtime, uid, tmp_path)
    async with results(local_runtime, serde) as answers, running(runner):
        await send(local_runtime, serde, task)
        for _ in range(40):
            if runner.stats.handled:
                break
            await asyncio.sleep(0.25)
        await answers.none_for(task.task_id, 1.0)
    assert runner.stats.by_outcome == {"no_answer": 1}
    assert open_store(data_dir, CRM).rows(customer.identifiers(CRM))["contacts"]


async def test_simulated_systems_publish_a_day_and_answer_exports(
    local_runtime: Settings, serde: Serde, tmp_path: Path, uid: str
) -> None:
    people = seed_customers(6)
    # No worker here: events in plaintext, the connectors' keys from a ring of their own.
    counts = await publish_business_day(
        local_runtime, people, seed=int(uid[:6], 16), plaintext=True
    )
    assert counts["CustomerCreated"] == 12
    assert counts["ConsentGiven"] > 0

    data_dir = tmp_path / "sim"
    keys = local_keys(local_runtime)
    runners = build_runners(
        local_runtime,
        data_dir,
        group_prefix=f"test-sim-{uid}",
        start_from="latest",
        keys=lambda _system: keys,
    )
    stop = asyncio.Event()
    fleet = asyncio.create_task(
        run_connectors(local_runtime, data_dir, stop=stop, customers=people, runners=runners)
    )
    customer = people[0]
    task = Export(
        task_id=f"T-export-{uid}",
        request_id=f"R-{uid}",
        subject_id=customer.subject_id,
        system=System.orders,
        issued_at=datetime.now(UTC),
        identifiers=customer.identifiers(System.orders),
    )
    try:
        async with results(local_runtime, serde) as answers:
            await asyncio.wait_for(asyncio.gather(*(r.ready.wait() for r in runners)), 20)
            async with producer(local_runtime.kafka_bootstrap) as prod:
                await prod.send_and_wait(
                    tasks_topic(System.orders), key=b"k", value=serde.encode(task)
                )
            answer = await answers.wait_for(task, attempt=1)
    finally:
        stop.set()
        stats = await asyncio.wait_for(fleet, 15)
    assert isinstance(answer, TaskCompleted)
    assert answer.export is not None
    assert is_encrypted(answer.export.location)  # under the subject's main key
    opened = decrypt_record(answer, keys, subject_id=customer.subject_id)
    assert opened.export is not None
    assert opened.export.location == f"https://exports.allled.example/dsar/orders/R-{uid}.json"
    assert answer.export.record_count == answer.records_affected > 0
    assert stats[System.orders].handled == 1


def local_keys(settings: Settings) -> RingKeySource:
    """Keys for connectors with no worker to ask: created in a ring of their own, under
    the session's KEK (the worker's key service would also store them)."""
    kek = kekfile.provider(settings.kek_file, settings.env, print)

    def key_service(subject_id: str, scope: str) -> SubjectKey:
        record, _ = create(subject_id, scope, kek.current(), datetime.now(UTC))
        return record

    return RingKeySource(KeyRing(kek.unwrapper()), key_service)
