"""Small aiokafka helpers shared by the CLI, the connector SDK and the tests.

Not the worker's wiring (that is ``streams``): these are plain clients for tools that
publish commands, create topics or read a topic from the beginning.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, StaleMetadata

from privops.core.errors import RuntimeUnavailable
from privops.core.topics import TopicSpec


def unreachable(bootstrap: str, exc: BaseException) -> RuntimeUnavailable:
    return RuntimeUnavailable(
        f"Kafka broker at {bootstrap} is unreachable ({type(exc).__name__}); "
        "start it with `privops local up` or set PRIVOPS_KAFKA_BOOTSTRAP"
    )


@dataclass(frozen=True)
class Consumed:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: object


@dataclass(frozen=True)
class TopicOutcome:
    name: str
    created: bool
    partitions: int
    note: str = ""


async def cluster_id(bootstrap: str) -> str:
    """The broker cluster's id: local table state belongs to one cluster's changelogs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        await admin.start()
        described = await admin.describe_cluster()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        raise unreachable(bootstrap, exc) from exc
    finally:
        await admin.close()
    return str(described.get("cluster_id") or "")


async def create_topics(bootstrap: str, specs: Iterable[TopicSpec]) -> list[TopicOutcome]:
    """Create missing topics; report existing ones (and a partition-count mismatch)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        await admin.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        raise unreachable(bootstrap, exc) from exc
    try:
        specs = list(specs)
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(s.name, s.partitions, 1, topic_configs=dict(s.config)) for s in missing]
            )
        described = await admin.describe_topics([s.name for s in specs])
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        outcomes = []
        for spec in specs:
            note = ""
            have = counts.get(spec.name, 0)
            if have != spec.partitions:
                note = f"has {have} partitions, catalogue says {spec.partitions}"
            outcomes.append(TopicOutcome(spec.name, spec in missing, have, note))
        return outcomes
    finally:
        await admin.close()


@asynccontextmanager
async def producer(bootstrap: str, **kwargs: object) -> AsyncIterator[AIOKafkaProducer]:
    prod = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **kwargs
    )
    try:
        await prod.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await prod.stop()
        raise unreachable(bootstrap, exc) from exc
    try:
        yield prod
    finally:
        await prod.stop()


async def read_all(
    bootstrap: str,
    topic: str,
    *,
    decode: Callable[[bytes | None], object] | None = None,
    idle_ms: int = 1500,
) -> list[Consumed]:
    """Every record on ``topic`` from the beginning up to its current end (no group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        await consumer.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        await consumer.stop()
        raise unreachable(bootstrap, exc) from exc
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await _end_offsets(consumer, tps)
        out: list[Consumed] = []
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=idle_ms)
            if not batch:
                break
            for tp, messages in batch.items():
                for msg in messages:
                    value = decode(msg.value) if decode else msg.value
                    out.append(Consumed(msg.partition, msg.offset, msg.timestamp, msg.key, value))
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


async def _end_offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], attempts: int = 20
) -> dict[TopicPartition, int]:
    """End offsets, waiting out the moment after topic creation when leaders are unknown."""
    for attempt in range(attempts):
        try:
            return dict(await consumer.end_offsets(tps))
        except StaleMetadata:
            if attempt == attempts - 1:
                raise
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.25)
    raise AssertionError("unreachable")
