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

from privops.adapters import metrics
from streams import batching, health, pipeline
from streams.state import StateFailed, state
from tests.agents.test_batching import message


async def _chunk(reader: ChannelT[Any]) -> list[int]:
    """The offsets of the next chunk the agent's stream would get."""
    event: Any = await asyncio.wait_for(reader.get(), 1)
    return [m.offset for m in event.value]


def _pumped(channel: ChannelT[Any]) -> tuple[batching.Inlet, ChannelT[Any], Any]:
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
    inlet, reader, pumping = _pumped(pipeline.chunks())
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
    inlet, reader, pumping = _pumped(app.channel(maxsize=1))
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


def test_an_inlet_says_how_long_its_input_has_waited_untaken() -> None:
    """From the first message put while none waited, until a chunk is taken: then from
    the take if some still wait; nothing waits, or a rebalance dropped it: 0."""
    now = [100.0]
    inlet = batching.Inlet("test", ["a.events"], clock=lambda: now[0])
    assert inlet.stalled_for() == 0.0
    inlet.put(message("a.events", 0))
    now[0] += 5
    inlet.put(message("a.events", 1))
    now[0] += 5
    assert inlet.stalled_for() == 10.0  # from the first, not the latest
    asyncio.run(inlet.take(1))
    assert inlet.stalled_for() == 0.0  # one still waits, from now
    now[0] += 3
    assert inlet.stalled_for() == 3.0
    asyncio.run(inlet.take(10))
    now[0] += 3
    assert inlet.stalled_for() == 0.0
    inlet.put(message("a.events", 2))
    now[0] += 7
    assert inlet.stalled_for() == 7.0
    inlet.drop()
    assert inlet.stalled_for() == 0.0


def test_an_inlet_says_how_long_its_agent_has_worked_on_a_chunk() -> None:
    """A chunk in the agent's hands counts from when it started, nothing waiting or
    not; the longer of the two is the figure."""
    now = [0.0]
    inlet = batching.Inlet("test", ["a.events"], clock=lambda: now[0])
    inlet.working(True)
    now[0] = 4.0
    assert inlet.stalled_for() == 4.0
    inlet.put(message("a.events", 0))
    now[0] = 6.0
    assert inlet.stalled_for() == 6.0  # the chunk started before the input waited
    inlet.working(False)
    assert inlet.stalled_for() == 2.0  # the input still waits
    asyncio.run(inlet.take(1))
    assert inlet.stalled_for() == 0.0


async def test_work_marks_its_chunk_on_the_inlet_until_it_ends(app: Any) -> None:
    """``pipeline.work`` tells the inlet when it starts and ends a chunk, even one
    whose handler raises (the worker stops then)."""
    now = [0.0]
    inlet = batching.Inlet("test", ["a.events"], clock=lambda: now[0])
    seen: list[float] = []

    async def handle(_: Any) -> None:
        now[0] += 30
        seen.append(inlet.stalled_for())

    inlet.carried = 1
    await pipeline.work([message("a.events", 0), message("a.events", 1)], handle, inlet)
    assert seen == [30.0, 60.0]
    assert inlet.stalled_for() == 0.0

    async def broken(_: Any) -> None:
        raise RuntimeError("a bug")

    inlet.carried = 1
    with pytest.raises(StateFailed):
        await pipeline.work([message("a.events", 2)], broken, inlet)
    assert inlet.stalled_for() == 0.0


def test_an_agent_stuck_makes_the_worker_unhealthy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a pump cut off, or an agent hung in a handler, leaves: input waiting and
    none taken. The fetcher reads on, so the consumer lag does not show it; /health
    does, once it has lasted ``STALLED_AFTER_SECONDS``, and the gauge all along."""
    now = [0.0]
    stuck = batching.Inlet("ingest", ["a.events"], clock=lambda: now[0])
    moving = batching.Inlet("workflow", ["b.events"], clock=lambda: now[0])
    monkeypatch.setattr(pipeline, "FEEDS", [(stuck, None), (moving, None)])
    stuck.put(message("a.events", 0))
    now[0] = health.STALLED_AFTER_SECONDS - 1
    assert health.stalled_agents() == []
    assert _stalled("ingest") == health.STALLED_AFTER_SECONDS - 1
    now[0] = health.STALLED_AFTER_SECONDS + 30
    assert health.stalled_agents() == [
        "the ingest agent has not moved on for 120 s or more "
        "(its input waits untaken, or its chunk unfinished)"
    ]
    assert _stalled("ingest") == health.STALLED_AFTER_SECONDS + 30
    assert _stalled("workflow") == 0.0
    asyncio.run(stuck.take(10))
    assert health.stalled_agents() == []
    assert _stalled("ingest") == 0.0


def _stalled(agent: str) -> float | None:
    return metrics.REGISTRY.get_sample_value("privops_agent_stalled_seconds", {"agent": agent})


async def test_worker_ready_follows_what_keeps_health_from_200(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Review, session 24: a worker whose table recovery never ended answered /health 503
    but nothing exported it, and no alert fired (its deadline gauges read 0). Now
    privops_worker_ready says so; privops_worker_up stays "running well", so a normal
    takeover's recovery raises no critical worker-down page."""
    from privops.adapters import metrics

    async def fine() -> None:
        return None

    monkeypatch.setattr(health._broker, "problem", fine)
    monkeypatch.setattr(health, "registry_problem", lambda _url, _ca=None: fine())
    monkeypatch.setattr(health, "stalled_agents", list)
    monkeypatch.setattr(health, "dropped_flushes", list)
    await health.refresh(lambda: ["tables recovering"])
    assert health.health.ok  # the broker and registry answer: shutdown still flushes
    assert metrics.REGISTRY.get_sample_value("privops_worker_up") == 1  # not down ...
    assert metrics.REGISTRY.get_sample_value("privops_worker_ready") == 0  # ... not serving
    await health.refresh(list)
    assert metrics.REGISTRY.get_sample_value("privops_worker_ready") == 1


async def test_a_signers_check_raising_leaves_the_health_computed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Review, session 45: the health check re-reads the signers file, and anything that
    raised there ended the check before the health was set: /health and
    privops_worker_up kept what the check before had found. Now it is logged (once, with
    no personal data) and the rest of the check runs."""
    from privops.adapters import metrics
    from streams.context import collaborators

    async def fine() -> None:
        return None

    def raising() -> None:
        raise RuntimeError("alice@example.com's key")  # text the log must not carry

    monkeypatch.setattr(health._broker, "problem", fine)
    monkeypatch.setattr(health, "registry_problem", lambda _url, _ca=None: fine())
    monkeypatch.setattr(health, "stalled_agents", list)
    monkeypatch.setattr(health, "dropped_flushes", list)
    monkeypatch.setattr(collaborators().signers, "refresh", raising)
    monkeypatch.setattr(health, "_signers_failures", set())
    monkeypatch.setattr(health.health, "problems", ["the broker not answering (before)"])
    metrics.set_worker_up(False)
    metrics.set_worker_ready(False)
    with caplog.at_level("ERROR", logger=health.log.name):
        await health.refresh(list)
        await health.refresh(list)
    assert health.health.ok
    assert health.health.problems == []
    assert metrics.REGISTRY.get_sample_value("privops_worker_up") == 1
    assert metrics.REGISTRY.get_sample_value("privops_worker_ready") == 1
    logged = [r.getMessage() for r in caplog.records if r.name == health.log.name]
    assert len(logged) == 1, logged  # once, not every 5 s
    assert "RuntimeError" in logged[0]
    assert "alice" not in logged[0]
