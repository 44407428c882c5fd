"""``privops.adapters.kafka.stop_client``: aiokafka's ``stop()`` raises CancelledError
when a fetch it was retrying (its broker gone) is cancelled as it stops
(aio-libs/aiokafka#647; the three-broker kill test met it in CI). The helper keeps that
from passing for a cancellation of its caller, and lets a real one through."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from privops.adapters.kafka import stop_client


class LikeAiokafka:
    """A client whose stop awaits an internal task it cancelled, as aiokafka's Fetcher
    does (``x.cancel(); await x``)."""

    def __init__(self) -> None:
        self.stopped = False

    async def stop(self) -> None:
        retrying = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        retrying.cancel()
        self.stopped = True
        await retrying  # raises CancelledError: not the caller's


async def test_the_clients_own_cancelled_task_does_not_escape_its_stop() -> None:
    client: Any = LikeAiokafka()
    with pytest.raises(asyncio.CancelledError):
        await client.stop()  # what aiokafka does
    client = LikeAiokafka()
    await stop_client(client)
    assert client.stopped


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
