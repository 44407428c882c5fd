"""Issue 11 point 6: three KRaft brokers, one SIGKILLed while records flow.

The module runs its own 3-node cluster (``runtime.KafkaCluster``, the same code as
`privops local up --brokers 3`) on ports of its own, beside the session's single broker,
which it never touches. Topics get replication factor 3 and min.insync.replicas=2, the
producer acks=all with idempotence (``producer_options``), so a record the broker acked
must survive losing any one node, and a batch retried across the failover must not be
written twice.

Then the same with the product on it: a worker and the reference connectors on the
cluster, consent events and erasure commands flowing, and the broker that leads the
commands' first partition SIGKILLed in the middle. The worker goes on: every erasure
(submitted before and after the kill) completes, every consent state is right, and
every task was executed once (the connectors' ledgers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from privops.adapters import runtime
from privops.adapters.kafka import (
    broker_count,
    create_topics,
    one_copy_problem,
    producer_options,
    read_all,
    stop_client,
)
from privops.adapters.settings import Settings
from privops.connectors.reference import seed_customers
from privops.core.topics import COMMANDS, TopicSpec, catalogue
from privops.core.vocab import System
from tests.conftest import WorkerProcess, port, start_worker
from tests.integration.helpers import executions, fresh, produce, wait_for
from tests.integration.test_request_flow import cli, customer_events, request, simulate, stop
from tests.integration.test_scale_out import consent, decision

pytestmark = pytest.mark.integration

FIRST_PORT = port(510)  # nodes on +0/+10/+20, controllers one above each
HOME = Path(tempfile.gettempdir()) / f"privops-three-brokers-{FIRST_PORT}"
PARTITIONS = 2  # the catalogue's; fewer logs to recover make the restart quicker
STREAM_PARTITIONS = 3  # one led by each node, usually
RATE_PER_S = 200
BEFORE_KILL_S = 3.0
AFTER_KILL_S = 8.0  # records sent while the victim is not yet fenced (9 s) wait for the new leader
SETTLE_S = 60.0  # longest wait for the producer to settle its sends, and for a client to stop


@pytest.fixture(scope="module")
def three_brokers(runtime_installed: None) -> Iterator[runtime.KafkaCluster]:
    settings = Settings(
        # Replication under broker loss is what this module checks; SASL and ACLs have
        # their own test (test_kafka_acls.py), so this cluster listens without them.
        kafka_security_protocol="PLAINTEXT",
        home=HOME,
        kafka_bootstrap=f"127.0.0.1:{FIRST_PORT}",
        kafka_controller_port=FIRST_PORT + 1,
        kafka_node_port_step=10,
        replication_factor=3,
    )
    kafka = runtime.KafkaCluster(settings, runtime.layout_of(settings, 3))
    with fresh(kafka, HOME):
        yield kafka


@dataclass
class Flow:
    """What the producer had acked and what the consumer group received, by sequence."""

    sent_at: dict[int, float] = field(default_factory=dict)
    acked: dict[int, tuple[int, int]] = field(default_factory=dict)  # seq -> partition, offset
    acked_at: dict[int, float] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)
    consumed: dict[int, set[tuple[int, int]]] = field(default_factory=dict)
    deliveries: int = 0
    pending: list[asyncio.Future[Any]] = field(default_factory=list)

    def settle(self, seq: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self.failed[seq] = repr(future.exception()) if not future.cancelled() else "cancelled"
            return
        meta = future.result()
        self.acked[seq] = (meta.partition, meta.offset)
        self.acked_at[seq] = time.monotonic()


def test_no_acked_record_is_lost_or_doubled_when_a_broker_dies(
    three_brokers: runtime.KafkaCluster, uid: str
) -> None:
    kafka = three_brokers
    bootstrap = kafka.layout.bootstrap
    topic = f"privops.test.three-brokers-{uid}"
    specs = [*catalogue(PARTITIONS), TopicSpec(topic, "sequence number", STREAM_PARTITIONS)]
    open_client = {"bootstrap_servers": bootstrap}  # this cluster listens without SASL
    # What a production worker counts before it takes the default of one copy.
    brokers = asyncio.run(broker_count(open_client))
    assert brokers == 3
    assert one_copy_problem(brokers) is not None
    outcomes = asyncio.run(create_topics(open_client, specs, replication_factor=3))
    assert [o.note for o in outcomes if o.note] == []
    names = [s.name for s in specs]
    # Topics are created asynchronously: a broker may describe a new topic's configs
    # (or its replicas) a moment before it has them (CI once read min.insync.replicas
    # unset on every topic, right after creating 41). Waited for, then held to it.
    problems: list[str] = []

    def replicated() -> bool:
        problems[:] = asyncio.run(replication_problems(bootstrap, names))
        return not problems

    try:
        wait_for("the new topics' replicas and configs on every broker", replicated, timeout=30)
    except AssertionError:
        assert problems == []

    leaders = asyncio.run(partition_leaders(bootstrap, topic))
    victim = kafka.nodes[leaders[0] - 1]  # leads partition 0, so the producer must fail over
    led = {p for p, leader in leaders.items() if leader == victim.node.node_id}
    print(f"SIGKILL {victim.name} (leader of partitions {sorted(led)} of {topic})")

    started = time.monotonic()
    flow, killed_at = asyncio.run(stream_through_a_kill(bootstrap, topic, victim, uid))
    print(
        f"sent {len(flow.sent_at)}, acked {len(flow.acked)}, failed {len(flow.failed)}, "
        f"unsettled {len(flow.sent_at) - len(flow.acked) - len(flow.failed)}, "
        f"consumer deliveries {flow.deliveries} in {time.monotonic() - started:.1f}s"
    )

    lost = sorted(set(flow.acked) - set(flow.consumed))
    assert lost == [], f"{len(lost)} acked records never reached the consumer group: {lost[:20]}"
    doubled = {seq: at for seq, at in flow.consumed.items() if len(at) > 1}
    assert doubled == {}, f"records written twice: {dict(list(doubled.items())[:10])}"
    for seq, (partition, offset) in flow.acked.items():
        assert flow.consumed[seq] == {(partition, offset)}, seq

    # The log itself, read from the start without a group: each sequence once at most.
    log = asyncio.run(read_all(open_client, topic))
    counts = Counter(int(c.value) for c in log if isinstance(c.value, bytes))
    assert [seq for seq, n in counts.items() if n > 1] == []
    assert set(flow.acked) <= set(counts)

    # The victim's partitions took writes again after it died: leadership moved.
    after = {
        flow.acked[seq][0] for seq, at in flow.acked_at.items() if flow.sent_at[seq] > killed_at
    }
    assert led <= after, f"no acked write after the kill on {sorted(led - after)}"
    gap = first_ack_after(flow, killed_at, led) - killed_at
    print(f"victim's partitions writable again {gap:.1f}s after the kill")

    victim.wait_ready(print)  # relaunched as soon as the producing stopped
    wait_for(
        "the restarted broker back in every in-sync replica set",
        lambda: not asyncio.run(replication_problems(bootstrap, [topic])),
        timeout=60,
        interval=1,
    )
    print(f"{victim.name} back in sync {time.monotonic() - killed_at:.1f}s after the kill")


async def stream_through_a_kill(
    bootstrap: str, topic: str, victim: runtime.Kafka, uid: str
) -> tuple[Flow, float]:
    """Produce numbered records at a steady rate, SIGKILL ``victim`` a few seconds in,
    keep producing, restart the victim, and let the consumer group catch up with
    everything acked (while the victim comes back)."""
    flow = Flow()
    producer = AIOKafkaProducer(**producer_options(bootstrap), linger_ms=5)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"three-brokers-{uid}",
        auto_offset_reset="earliest",
        auto_commit_interval_ms=500,
    )
    await producer.start()
    await consumer.start()
    reading = asyncio.create_task(consume(consumer, flow))
    try:
        killed_at = await produce_through_a_kill(producer, topic, victim, flow)
        victim.launch(print)
        # Bounded: a send the client still retries after SETTLE_S is not acked, and the
        # claims below are about acked records only (one hang in four parallel runs was
        # the client's flush after the victim came back; it must not stall the suite).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(producer.flush(), SETTLE_S)
        if flow.pending:
            await asyncio.wait(flow.pending, timeout=SETTLE_S)  # every settle() that can
        for _ in range(300):  # up to 60 s for the group to read everything acked
            if set(flow.acked) <= set(flow.consumed):
                break
            await asyncio.sleep(0.2)
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        for client in (consumer, producer):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_client(client), SETTLE_S)
    return flow, killed_at


async def produce_through_a_kill(
    producer: AIOKafkaProducer, topic: str, victim: runtime.Kafka, flow: Flow
) -> float:
    started = time.monotonic()
    killed_at = 0.0
    seq = 0
    while time.monotonic() < started + BEFORE_KILL_S + AFTER_KILL_S:
        if not killed_at and time.monotonic() >= started + BEFORE_KILL_S:
            pid = victim.pid()
            assert pid is not None, f"{victim.name} is not running"
            os.killpg(pid, signal.SIGKILL)
            killed_at = time.monotonic()
        flow.sent_at[seq] = time.monotonic()
        future = await producer.send(topic, value=str(seq).encode(), key=str(seq).encode())
        future.add_done_callback(lambda f, s=seq: flow.settle(s, f))
        flow.pending.append(future)
        seq += 1
        await asyncio.sleep(1 / RATE_PER_S)
    return killed_at


async def consume(consumer: AIOKafkaConsumer, flow: Flow) -> None:
    while True:
        batch = await consumer.getmany(timeout_ms=200)
        for messages in batch.values():
            for msg in messages:
                assert msg.value is not None
                flow.consumed.setdefault(int(msg.value), set()).add((msg.partition, msg.offset))
                flow.deliveries += 1


def first_ack_after(flow: Flow, killed_at: float, partitions: set[int]) -> float:
    return min(
        at
        for seq, at in flow.acked_at.items()
        if flow.sent_at[seq] > killed_at and flow.acked[seq][0] in partitions
    )


async def partition_leaders(bootstrap: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
        return {p["partition"]: p["leader"] for p in described["partitions"]}
    finally:
        await admin.close()


async def replication_problems(bootstrap: str, topics: list[str]) -> list[str]:
    """Every partition with 3 replicas all in sync, every topic with min.insync.replicas=2."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        problems = [
            f"{d['topic']}[{p['partition']}]: replicas {p['replicas']} isr {p['isr']}"
            for d in await admin.describe_topics(topics)
            for p in d["partitions"]
            if len(p["replicas"]) != 3 or len(p["isr"]) != 3
        ]
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
        for response in await admin.describe_configs(resources):
            for _, _, _, name, entries in response.resources:
                config = {entry[0]: entry[1] for entry in entries}
                if config.get("min.insync.replicas") != "2":
                    problems.append(
                        f"{name}: min.insync.replicas={config.get('min.insync.replicas')}"
                    )
        return problems
    finally:
        await admin.close()


SYSTEMS = [System.orders, System.crm, System.marketing]
# Asked by an erasure: the systems that reported the customers, and those the data map
# says look subjects up by the email and phone they carry (privops.core.fanout.holdings).
ASKED = [*SYSTEMS, System.telephony, System.web]
CUSTOMERS = 8
ERASED_BEFORE, ERASED_AFTER = 3, 2  # erasures submitted before and after the kill


def test_the_worker_goes_on_when_a_broker_dies(
    three_brokers: runtime.KafkaCluster, local_runtime: Settings, tmp_path: Path, uid: str
) -> None:
    kafka = three_brokers
    bootstrap = kafka.layout.bootstrap
    cluster = local_runtime.model_copy(
        update={
            "kafka_bootstrap": bootstrap,
            "kafka_security_protocol": "PLAINTEXT",
            "replication_factor": 3,
            "topic_partitions": PARTITIONS,
        }
    )
    outcomes = asyncio.run(
        create_topics({"bootstrap_servers": bootstrap}, catalogue(PARTITIONS), replication_factor=3)
    )
    assert [o.note for o in outcomes if o.note] == []
    # Everything of this test talks to the cluster; the registry, the KEK and the DPO's
    # signing keys are the session's.
    env = {
        "PRIVOPS_KAFKA_BOOTSTRAP": bootstrap,
        "PRIVOPS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "PRIVOPS_REPLICATION_FACTOR": "3",
        "PRIVOPS_TOPIC_PARTITIONS": str(PARTITIONS),
        "PRIVOPS_GROUP_SESSION_TIMEOUT_SECONDS": "8",
        "PRIVOPS_PSEUDONYM_KEY": f"three-{uid}-pseudonym-key-0123456789",
    }
    customers = seed_customers(CUSTOMERS)
    worker: WorkerProcess | None = None
    connectors = None
    try:
        worker = start_worker(local_runtime, f"three-{uid}", web_port=port(545), extra_env=env)
        connectors = simulate(
            local_runtime,
            tmp_path / "systems",
            customers=CUSTOMERS,
            worker_url=worker.url,
            env=env,
        )
        produce(cluster, [e for c in customers for e in customer_events(c, SYSTEMS)])
        produce(cluster, [consent(c.subject_id, 1, given=True) for c in customers])
        wait_for(
            "every subject's consent",
            lambda: all(decision(worker, c.subject_id) is True for c in customers),
        )

        def erase(customer: Any) -> str:
            return cli(
                "request", "erase", "--subject", customer.subject_id, "--verified-now", "-q",
                env=worker.env,
            )  # fmt: skip

        rids = [erase(c) for c in customers[:ERASED_BEFORE]]
        leaders = asyncio.run(partition_leaders(bootstrap, COMMANDS))
        victim = kafka.nodes[leaders[0] - 1]
        pid = victim.pid()
        assert pid is not None, f"{victim.name} is not running"
        os.killpg(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        print(f"SIGKILL {victim.name}, leader of {COMMANDS}[0]")
        # While it is down: consent withdrawn, and more erasures (each waits for its answer).
        kept = customers[ERASED_BEFORE + ERASED_AFTER :]
        produce(cluster, [consent(c.subject_id, 2, given=False) for c in kept])
        rids += [erase(c) for c in customers[ERASED_BEFORE : ERASED_BEFORE + ERASED_AFTER]]
        print(f"every command answered {time.monotonic() - killed_at:.1f}s after the kill")
        victim.launch(print)

        def finished(rid: str) -> bool:
            return request(worker, rid).get("state") in ("completed", "partially_completed")

        wait_for("every erasure to complete", lambda: all(map(finished, rids)), timeout=150)
        wait_for(
            "the consent withdrawn during the failover to hold",
            lambda: all(decision(worker, c.subject_id) is False for c in kept),
        )
        print(f"all done {time.monotonic() - killed_at:.1f}s after the kill")
        assert worker.proc.poll() is None, "the worker died with the broker"
        bodies = [request(worker, rid) for rid in rids]
    finally:
        if connectors is not None:
            stop(connectors)
        if worker is not None:
            worker.stop()
        for node in kafka.nodes:  # a later test finds every node up
            if node.pid() is None:
                node.launch(print)

    task_ids = {t["task_id"] for body in bodies for t in body["tasks"]}
    assert len(task_ids) == len(rids) * len(ASKED)
    executed = executions(local_runtime, task_ids)
    assert set(executed) == task_ids
    assert all(n == 1 for n in executed.values()), executed
