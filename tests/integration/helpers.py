"""Helpers for integration tests: produce records, wait for what the worker emits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from privops.adapters import runtime
from privops.adapters.acls import ADMIN, DPO, system_principal, writer_of
from privops.adapters.api_auth import api_auth
from privops.adapters.kafka import Consumed, client_options, producer, read_all, stop_client
from privops.adapters.kek import KekProvider
from privops.adapters.serde import Serde
from privops.adapters.settings import Settings, get_settings
from privops.connectors.encryption import WorkerKeySource
from privops.core import records as r
from privops.core.vocab import System

_SERDES: dict[str, Serde] = {}


def serde_for(settings: Settings) -> Serde:
    if settings.registry_url not in _SERDES:
        serde = Serde(settings.registry_url, settings.schema_dir)
        serde.register_all()
        _SERDES[settings.registry_url] = serde
    return _SERDES[settings.registry_url]


ToProduce = tuple[str, str | bytes, r.Record | bytes]
"""(topic, key, record or raw bytes): what ``produce`` sends."""


def produce(settings: Settings, items: list[ToProduce]) -> None:
    """Send (topic, key, record-or-raw-bytes) in order and wait for the acks, each as the
    principal that writes its topic (a system its events and answers, the DPO commands)."""
    serde = serde_for(settings)

    async def run() -> None:
        async with AsyncExitStack() as stack:
            producers: dict[str, AIOKafkaProducer] = {}
            for topic, key, value in items:
                who = writer_of(topic)
                if who not in producers:
                    client = client_options(settings, who)
                    producers[who] = await stack.enter_async_context(producer(client))
                raw = value if isinstance(value, bytes) else serde.encode(value)
                k = key if isinstance(key, bytes) else key.encode()
                await producers[who].send_and_wait(topic, raw, key=k)

    asyncio.run(run())


def read_topic(settings: Settings, topic: str) -> list[Consumed]:
    serde = serde_for(settings)

    def decode(raw: bytes | None) -> object:
        try:
            return serde.decode(raw)
        except Exception as exc:
            return exc

    return asyncio.run(read_all(client_options(settings), topic, decode=decode))


CRM = system_principal(System.crm)


def end_offsets(settings: Settings, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Where each of ``tps`` ends now: the offset its next record will get."""

    async def run() -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(**client_options(settings, ADMIN))
        await consumer.start()
        try:
            return dict(await consumer.end_offsets(tps))
        finally:
            await stop_client(consumer)

    return asyncio.run(run())


def committed(
    settings: Settings, group: str, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """The offsets ``group`` has committed on ``tps`` (-1 where it has none)."""

    async def run() -> dict[TopicPartition, int]:
        admin = AIOKafkaAdminClient(**client_options(settings, ADMIN), request_timeout_ms=15000)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
        finally:
            await admin.close()
        return {tp: offsets[tp].offset if tp in offsets else -1 for tp in tps}

    return asyncio.run(run())


def start_group_at_end(settings: Settings, group: str, topics: list[str]) -> None:
    """Commit, for ``group`` before any of its workers starts, the end of every partition
    of ``topics``: where the tests' workers would start anyway (they reset to the latest
    offset, past earlier tests' records on the session's topics), but as a commit. So a
    worker killed before it committed a partition leaves its successor the start of the
    test, not the end of the partition: nothing it consumed and never flushed is skipped.
    """

    async def run() -> dict[TopicPartition, int]:
        admin = AIOKafkaAdminClient(**client_options(settings, ADMIN), request_timeout_ms=15000)
        await admin.start()
        try:
            described = await admin.describe_topics(topics)
        finally:
            await admin.close()
        tps = [
            TopicPartition(topic["topic"], partition["partition"])
            for topic in described
            for partition in topic["partitions"]
        ]
        missing = set(topics) - {tp.topic for tp in tps}
        assert not missing, f"no partitions for {sorted(missing)}"
        consumer = AIOKafkaConsumer(
            **client_options(settings, ADMIN), group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            ends = dict(await consumer.end_offsets(tps))
            consumer.assign(tps)  # no membership: a commit for the group while it is empty
            await consumer.commit(ends)
            return ends
        finally:
            await stop_client(consumer)

    ends = asyncio.run(run())
    stored = committed(settings, group, list(ends))
    assert stored == ends, f"{group}: committed {stored}, not {ends}"


def wait_for_commit(settings: Settings, group: str, tps: list[TopicPartition]) -> None:
    """Wait until ``group`` has committed everything written to ``tps`` so far, so a worker
    killed after this leaves its successor a place to start (the tests' workers start a
    partition without a commit at its end)."""
    written = end_offsets(settings, tps)
    wait_for(
        f"{group} to commit {sorted(f'{tp.topic}[{tp.partition}]' for tp in tps)}",
        lambda: all(committed(settings, group, tps)[tp] >= written[tp] for tp in tps),
    )


def wait_for(
    what: str, probe: Callable[[], Any], timeout: float = 60.0, interval: float = 0.5
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def http_json(
    url: str,
    *,
    principal: str | None = DPO,
    method: str = "GET",
    timeout: float = 5,
    trust: ssl.SSLContext | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    """A worker's answer, asked as ``principal`` (None: without credentials), with
    ``body`` as JSON if given; ``trust``: the CA context for an https worker."""
    headers = basic_auth(principal)
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=trust) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def request_reaching(
    worker_url: str, request_id: str, state: str, what: str, timeout: float = 90.0
) -> Any:
    """The worker's ``GET /requests/{id}`` answer once the request is in ``state``; fail
    with ``what`` on timeout."""
    return wait_for(
        what,
        lambda: (
            (b := http_json(f"{worker_url}/requests/{request_id}")[1])
            and b.get("state") == state
            and b
        ),
        timeout=timeout,
    )


def basic_auth(principal: str | None) -> dict[str, str]:
    """The Authorization header of ``principal`` with its password from the session's
    credentials file (none for None or on a PLAINTEXT runtime)."""
    auth = api_auth(get_settings(), principal) if principal else None
    if auth is None:
        return {}
    request = next(auth.auth_flow(httpx.Request("GET", "http://worker")))
    return {"Authorization": request.headers["Authorization"]}


def key_service(
    worker_url: str, kek: KekProvider, principal: str = CRM, **options: Any
) -> WorkerKeySource:
    """privops' key service as ``principal`` asks it (a system by default)."""
    return WorkerKeySource(worker_url, kek, auth=api_auth(get_settings(), principal), **options)


def executions(settings: Settings, task_ids: set[str]) -> Counter[str]:
    """How many times the reference connectors executed each of ``task_ids`` (their
    ledgers under the session's home)."""
    executed: Counter[str] = Counter()
    for db_path in (settings.home / "connectors").glob("*-ledger.db"):
        with sqlite3.connect(db_path) as db:
            for (task_id,) in db.execute("select task_id from answers"):
                if task_id in task_ids:
                    executed[task_id] += 1
    return executed


def records_where(settings: Settings, topic: str, pred: Callable[[Any], bool]) -> list[Any]:
    return [c.value for c in read_topic(settings, topic) if pred(c.value)]


class Subject:
    """A fake customer whose events carry consistent identifiers across systems."""

    def __init__(self, uid: str, n: int = 0, base: datetime | None = None) -> None:
        self.id = f"CUST-T{uid}-{n}"
        self.email = f"t{uid}{n}@example.com"
        self.phone = f"+4477009{int(uid[:5], 16) % 100000:05d}"[:13]
        self.base = base or datetime.now(UTC) - timedelta(hours=1)

    def ids(self, system: System) -> r.Identifiers:
        return r.Identifiers(
            customer_id=self.id,
            email=self.email,
            phone=self.phone,
            system_ref=f"{system.value}-{self.id}",
        )

    def event(
        self,
        cls: type[r.UpstreamEvent],
        system: System,
        minutes: float = 0,
        event_id: str | None = None,
        **fields: Any,
    ) -> tuple[str, str, r.Record]:
        record = cls(
            event_id=event_id or uuid.uuid4().hex,
            occurred_at=self.base + timedelta(minutes=minutes),
            source=system,
            subject_id=self.id,
            identifiers=self.ids(system),
            **fields,
        )
        return (f"{system.value}.events", self.id, record)


@contextlib.contextmanager
def fresh(kafka: runtime.Component, home: Path) -> Iterator[None]:
    """``kafka`` (the local runtime's code, on ports of its own beside the session's
    broker) started afresh under ``home``, and stopped at the end (its logs stay)."""
    kafka.stop(print)  # a previous run's leftovers, found by their pid files
    shutil.rmtree(home, ignore_errors=True)
    try:
        kafka.start(print)
        yield
    finally:
        kafka.stop(print)


@contextlib.contextmanager
def own_node(home: Path, broker_port: int, protocol: str) -> Iterator[Settings]:
    """A single node (`runtime.Kafka`) on ``broker_port`` (its controller one above)
    listening with ``protocol``, its settings (``fresh``)."""
    settings = Settings(
        home=home,
        kafka_bootstrap=f"127.0.0.1:{broker_port}",
        kafka_controller_port=broker_port + 1,
        kafka_security_protocol=protocol,
        replication_factor=1,
    )
    with fresh(runtime.Kafka(settings), home):
        yield settings
