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

from streams import pipeline
from streams.tables import request_index, suppression
from tests.agents.test_batching import message


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
