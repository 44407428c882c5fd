"""Plain aiokafka clients for the bench: producing input fast, offsets, round trips.

The consent baselines built on them are in `baselines`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from privops.adapters.kafka import refresh_metadata
from privops.tools.bench.inputs import Message


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
    await refresh_metadata(consumer)
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
