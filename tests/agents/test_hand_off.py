"""An inlet's chunks reach their agent across a rebalance (streams.pipeline's pump, over
``batching.HandOff``): Faust's flow control, resuming at the end of a rebalance's
recovery, empties the channel queues it manages and cancels a put waiting on one. A
chunk handed over after the rebalance's seek was lost so, and so was the pump (a
consent withdrawal never decided in the 3-worker kill test)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import ChannelT

from streams import batching, pipeline
from streams.state import state
from tests.agents.test_batching import message


async def _chunk(reader: ChannelT[Any]) -> list[int]:
    """The offsets of the next chunk the agent's stream would get."""
    event: Any = await asyncio.wait_for(reader.get(), 1)
    return [m.offset for m in event.value]


def _pumped(app: Any, channel: ChannelT[Any]) -> tuple[batching.Inlet, ChannelT[Any], Any]:
    """An inlet pumped onto ``channel``, and the clone an agent's stream reads."""
    inlet = batching.Inlet("test", ["a.events"])
    reader = channel.clone(is_iterator=True)  # what an agent iterates
    agent: Any = SimpleNamespace(channel=channel)  # all the pump uses of an agent
    pumping = asyncio.ensure_future(pipeline.pump(inlet, agent))
    return inlet, reader, pumping


async def _fill(inlet: batching.Inlet, pumping: Any) -> None:
    """One chunk waiting in the channel (the agent busy) and the pump waiting for room."""
    inlet.put(message("a.events", 0))
    await asyncio.sleep(0.01)
    inlet.put(message("a.events", 1))
    await asyncio.sleep(0.01)
    assert len(inlet) == 0
    assert inlet.carried == 2
    assert not pumping.done()


async def test_chunks_handed_over_outlive_the_flow_resuming(app: Any) -> None:
    """The waiting chunk and the pump's next one both reach the agent after Faust
    resumes the flow, and the pump goes on with what is fetched after."""
    inlet, reader, pumping = _pumped(app, pipeline.chunks())
    try:
        await _fill(inlet, pumping)
        app.flow_control.resume()  # as Faust does once a rebalance's recovery is done
        await asyncio.sleep(0.01)
        assert not pumping.done()
        assert await _chunk(reader) == [0]
        assert await _chunk(reader) == [1]
        inlet.put(message("a.events", 2))
        assert await _chunk(reader) == [2]
    finally:
        pumping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pumping  # the worker stopping still stops the pump


async def test_a_pump_whose_hand_off_is_cancelled_stops_the_worker(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a channel Faust empties (its own ``app.channel``), the waiting chunk is
    dropped and the pump's put cancelled: the pump does not end silently, leaving its
    agent starved, but fails the state, which stops the worker."""
    told: list[BaseException] = []
    monkeypatch.setattr(state, "on_failure", told.append)
    inlet, reader, pumping = _pumped(app, app.channel(maxsize=1))
    try:
        await _fill(inlet, pumping)
        app.flow_control.resume()
        await asyncio.wait_for(pumping, 1)  # returns: it does not raise
        assert reader.queue.empty()  # Faust's own channel lost the waiting chunk
        assert [type(exc) for exc in told] == [pipeline.HandOffCancelled]
        assert isinstance(state.failure, pipeline.HandOffCancelled)
    finally:
        pumping.cancel()


def test_a_faust_whose_channel_queue_is_no_property_stops_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``HandOff`` replaces ``Channel.queue``: a Faust that makes it otherwise is refused."""
    batching.check_faust()
    monkeypatch.setattr(faust.Channel, "queue", None)
    with pytest.raises(batching.FaustChanged, match=r"Channel\.queue is no longer a property"):
        batching.check_faust()
