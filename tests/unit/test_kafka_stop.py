"""``privops.adapters.kafka.stop_client``: aiokafka's ``stop()`` raises CancelledError
when a fetch it was retrying (its broker gone) is cancelled as it stops
(aio-libs/aiokafka#647; the three-broker kill test met it in CI), and the stop ends
there, its connections open. The helper absorbs that error, finishes the stop, and
lets a cancellation of its caller through."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.fetcher import Fetcher

from privops.adapters.kafka import stop_client


class Inner:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class LikeAiokafka:
    """A consumer shaped as aiokafka 0.14's: its stop awaits the fetches it cancels
    (``Fetcher.close``: ``x.cancel(); await x``), and closes its client only after."""

    def __init__(self) -> None:
        self._client = Inner()
        self._fetcher: Any = type("F", (), {})()
        self._fetcher._pending_tasks = set()

    async def start_fetches(self, n: int) -> None:
        for _ in range(n):
            self._fetcher._pending_tasks.add(asyncio.ensure_future(asyncio.sleep(10)))
        await asyncio.sleep(0)

    async def stop(self) -> None:
        for pending in list(self._fetcher._pending_tasks):
            pending.cancel()
            await pending  # the first raises CancelledError: not the caller's
        await self._client.close()


async def test_the_clients_own_cancelled_fetch_ends_its_stop_but_not_stop_client() -> None:
    client: Any = LikeAiokafka()
    await client.start_fetches(3)
    with pytest.raises(asyncio.CancelledError):
        await client.stop()  # what aiokafka does
    assert not client._client.closed
    client = LikeAiokafka()
    await client.start_fetches(3)
    await stop_client(client)
    assert client._client.closed  # the connections closed all the same
    assert all(t.done() for t in client._fetcher._pending_tasks)


async def test_a_cancellation_of_the_caller_still_propagates() -> None:
    class Slow:
        async def stop(self) -> None:
            await asyncio.sleep(10)

    client: Any = Slow()
    task = asyncio.ensure_future(stop_client(client))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_follower_cancelled_at_shutdown_still_ends_cancelled() -> None:
    """In the ``finally`` of a task being cancelled (a global view's follower at
    shutdown), the stop's error is the caller's: re-raised, the task ends cancelled."""
    client: Any = LikeAiokafka()
    await client.start_fetches(1)

    async def follow() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await stop_client(client)

    task = asyncio.ensure_future(follow())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_the_aiokafka_internals_it_finishes_with_are_there() -> None:
    """Pinned to aiokafka 0.14 (requirements): if these move, ``_finish_stopping``
    silently closes nothing, so this fails loudly instead."""
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    assert hasattr(consumer, "_client")
    assert hasattr(consumer, "_fetcher")
    assert "_pending_tasks" in inspect.getsource(Fetcher.__init__)
    assert "await x" in inspect.getsource(Fetcher.close)  # the bug this works around
    # refresh_metadata's one reach inside: the client's own call that asks the broker
    assert isinstance(consumer._client, AIOKafkaClient)
    assert "self._md_update_fut" in inspect.getsource(AIOKafkaClient.force_metadata_update)
    await consumer.stop()
