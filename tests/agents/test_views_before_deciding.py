"""The agents decide nothing before the global views have read their topics.

Table recovery can end before the suppression list and the request index are read
(local RocksDB; a worker rebuilt under a new app id starts with empty tables), and
before, the agents then decided against half-read views: an erased subject's replayed
event made them a live consent state for good, and a request id another subject owns
was accepted and re-pointed in the index (review, session 26)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import Message

from privops.core.errors import RuntimeUnavailable
from streams import pipeline
from streams.keystore import KeyStore
from streams.tables import request_index, suppression
from tests.agents.test_batching import message
from tests.agents.test_erasure_shred import store as store  # the worker's key store
from tests.unit import test_keystore as keystore_tests

key_log, codec, kek_path = keystore_tests.log, keystore_tests.codec, keystore_tests.kek_path


@pytest.mark.parametrize("view", [suppression, request_index], ids=lambda v: v.topic)
async def test_no_input_is_decided_before_every_view_is_read(app: Any, view: Any) -> None:
    decided: list[int] = []

    async def handle(msg: Message) -> None:
        decided.append(msg.offset)

    view.ready.clear()
    try:
        working = asyncio.ensure_future(pipeline.work([message("crm.events", 7, 0)], handle, None))
        await asyncio.sleep(0.05)
        assert decided == []  # waits for the view, not deciding against half of it
        view.ready.set()  # the view's follower reached the end
        await asyncio.wait_for(working, 5)
        assert decided == [7]
    finally:
        view.ready.set()


async def test_the_api_asks_to_retry_while_the_suppression_list_is_read(
    app: Any, store: KeyStore
) -> None:
    """The HTTP views answer from the suppression list too: while it was still read, a
    rebuilt worker answered an erased subject `unknown` and its key service made them a
    new key. Both are a 503 (retry) now."""
    from agents import http

    suppression.ready.clear()
    try:
        with pytest.raises(RuntimeUnavailable, match="still being read"):
            http.consent_answer("S-not-here", None, None)
        with pytest.raises(RuntimeUnavailable):
            await store.get_or_create("S-not-here", erased=http._erased)
        assert await store.records("S-not-here") == []
    finally:
        suppression.ready.set()
    assert http.consent_answer("S-not-here", None, None)[1] == 404  # read: unknown indeed


async def test_waiting_for_a_view_is_not_an_agents_stall(app: Any) -> None:
    """A view read takes as long as the topic is long (the request index is kept for
    ever): counted as the agent's work, a long one paged as a stalled worker."""
    inlet = pipeline.inlet("test-views-inlet", ["crm.events"])
    inlet.carried = 1
    request_index.ready.clear()
    try:
        working = asyncio.ensure_future(pipeline.work([message("crm.events", 3, 0)], _none, inlet))
        await asyncio.sleep(0.02)
        assert inlet.stalled_for() == 0.0  # waiting for the view, not working
        request_index.ready.set()
        await asyncio.wait_for(working, 5)
    finally:
        request_index.ready.set()


async def _none(_msg: Message) -> None:
    return None
