"""Plain aiokafka clients for the bench: producing input fast, and the baselines.

The baselines use the same broker, topics and decoder as the worker, without the worker:
what privops costs is the difference.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from privops.adapters.serde import Serde
from privops.tools.bench.inputs import Message

RAW_READ_GIVE_UP_S = 120.0


async def produce(bootstrap: str, messages: Sequence[Message]) -> float:
    """Produce pre-encoded messages as fast as the client allows; returns seconds taken."""
    prod = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await prod.start()
    started = time.perf_counter()
    try:
        pending = []
        for topic, key, value in messages:
            pending.append(await prod.send(topic, value=value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await prod.stop()
    return time.perf_counter() - started


async def partitions(consumer: AIOKafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()
    return [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]


async def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions(consumer, topics)
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def commit_at_end(bootstrap: str, group: str, topics: Sequence[str]) -> None:
    """Commit `group`'s offsets at the end of `topics` (a new group then skips them)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await partitions(consumer, topics)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit(dict(ends))
    finally:
        await consumer.stop()


async def raw_consume_decode(
    bootstrap: str, serde: Serde, topics: Sequence[str]
) -> tuple[int, float]:
    """Baseline: a plain aiokafka consumer reads every message on `topics` and decodes it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = await partitions(consumer, topics)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        total = sum(ends.values())
        count = 0
        started = time.perf_counter()
        while count < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10000)
            if not batch and time.perf_counter() - started > RAW_READ_GIVE_UP_S:
                break
            for messages in batch.values():
                for msg in messages:
                    serde.decode(msg.value)
                    count += 1
        return count, time.perf_counter() - started
    finally:
        await consumer.stop()


@asynccontextmanager
async def round_trip_clients(
    bootstrap: str, topics: Sequence[str]
) -> AsyncIterator[tuple[AIOKafkaConsumer, AIOKafkaProducer]]:
    """A low-latency consumer positioned at the end of `topics`, and an unbatched producer.

    Latency scenarios send one message at a time and time its arrival, so neither side
    may wait to fill a batch.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=5)
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await prod.start()
    try:
        tps = await partitions(consumer, topics)
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        yield consumer, prod
    finally:
        await prod.stop()
        await consumer.stop()


async def read_until(
    consumer: AIOKafkaConsumer, handle: Callable[[Any, float], None], done: Callable[[], bool]
) -> None:
    """Hand each message to `handle` with the time it arrived, until `done()`."""
    while not done():
        batch = await consumer.getmany(timeout_ms=50)
        now = time.perf_counter()
        for msgs in batch.values():
            for msg in msgs:
                handle(msg, now)
