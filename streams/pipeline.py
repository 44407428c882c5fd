"""How an agent works through its input: chunks from an inlet, decided, flushed.

Each agent (ingest, workflow) is a Faust agent over an in-memory channel of chunks
(``chunks()``: room for one waiting chunk): a pump moves fetched messages from the
agent's ``Inlet`` (streams.batching) onto the channel, at most ``CHUNK`` at a time,
so that one agent's chunk never keeps the other waiting long. The agent decides a
chunk message by message against ``state`` and flushes when nothing more waits for
it, or once ``FLUSH_EVERY`` decided messages are pending (a write-back of a busy
stream's hot subjects). Agent tests put chunks on the channel directly
(``agent.test_context()``), and each chunk is flushed at once.

A flush returns once its records are queued on the producer; their delivery, and then
the acknowledgement of the inputs, completes while the agent goes on deciding
(``State.flush``). On a rebalance the flushes under way are delivered and acknowledged
first; then the waiting messages are dropped (Faust seeks every partition back to its
committed offset), what was decided is flushed without acknowledging it (its
partitions may have moved; the new owner replays it, and every handler is idempotent),
and the decoded values are forgotten. A chunk already on an agent's channel stays
there (``batching.HandOff``: Faust's own channels are emptied at a revocation and
when its flow resumes, which lost chunks taken after the rebalance's seek): the
agent's stream skips one of an earlier consumer generation, and decides one of the
current.

The time an agent holds the state, deciding a slice or flushing, is counted in
``privops_agent_busy_seconds_total{agent,stage}`` (waits inside a handler included:
the other agent cannot decide meanwhile either): the share of the worker's one event
loop each agent takes.

What cannot be committed any more stops the worker (``State.fail``, ``_stop_worker``):
a flush the broker refused, a flush that raised, an input no handler could decide.
Deciding on would only pile up work no commit would ever pass; the restart replays
from the last commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust.types import AgentT, ChannelT, Message

from privops.adapters import metrics
from streams import batching
from streams.app import app
from streams.sealing import WorkerSealer
from streams.state import Abandoned, RebalanceTooSlow, StateFailed, error_frames, state
from streams.tables import GLOBAL_VIEWS, erased_at

log = logging.getLogger(__name__)

CHUNK = 1_000
FLUSH_EVERY = 20_000
# How long an agent decides before letting the other one in (see ``work``).
SLICE_SECONDS = 0.02

Handle = Callable[[Message], Awaitable[None]]

FEEDS: list[tuple[batching.Inlet, AgentT[Any]]] = []


def chunks() -> ChannelT[Any]:
    """An agent's input channel: one chunk may wait while the agent works on another,
    and neither it nor the pump waiting to put the next is dropped when Faust's flow
    control resumes (``batching.HandOff``)."""
    return batching.HandOff(app, maxsize=1)


def inlet(name: str, topics: Sequence[str], background: Sequence[str] = ()) -> batching.Inlet:
    """The inlet of an agent's topics (installed into Faust when the worker starts);
    ``background`` ones wait behind the rest (``batching.Inlet``)."""
    return batching.Inlet(name, topics, background=background)


async def work(chunk: list[Message], handle: Handle, source: batching.Inlet | None) -> None:
    """Decide every message of ``chunk``; flush if nothing more waits or enough is pending.

    The state is held a slice at a time (``SLICE_SECONDS`` of deciding): between
    slices the other agent, if it waits, decides its own (the lock is fair), so a
    thousand consent events never hold a command up for their whole chunk. A rebalance
    in between ends the chunk: the rest belongs to the partitions' new owners."""
    generation = state.generation
    agent = source.name if source is not None else None
    # Not counted as the agent's work: reading a view (the request index is kept for
    # ever) may take minutes on a rebuild, which would page as a stalled agent.
    await _views_read()
    if source is not None:
        source.carried -= 1
        source.working(True)  # how long it takes is watched (streams.health)
    try:
        if state.sealer is not None:  # sealed table values are read with the owned keys
            await state.sealer.ready()
        at = 0
        while True:
            async with state.lock:
                if state.generation != generation:
                    return  # partitions moved meanwhile: not ours to decide (nor acknowledge)
                started = time.perf_counter()
                try:
                    at = await _decide(chunk, at, handle)
                except Abandoned:
                    # Waiting on the registry or the key store when the rebalance began:
                    # what was decided goes out with the revocation's flush; the rest is
                    # the new owner's, from the last commit.
                    log.info("a rebalance began while an input waited; its chunk ends here")
                    return
                decided = time.perf_counter()
                metrics.add_agent_busy(agent, "decide", decided - started)
                if at < len(chunk):
                    continue  # the lock is released: a waiting agent goes first
                await _maybe_flush(source)
                metrics.add_agent_busy(agent, "flush", time.perf_counter() - decided)
                return
    finally:
        if source is not None:
            source.working(False)


async def _views_read() -> None:
    """Wait until every global view has read its topic to the end it had at start.

    Decisions read them: the suppression list says who was erased (a worker rebuilt
    under a new app id knows it from nothing else), the request index who owns a request
    id. Table recovery can end first (local RocksDB, or empty tables), and before, the
    agents then decided against half-read views: an erased subject's replayed event made
    them a live consent state for good, a reused request id was accepted (review,
    session 26). Once read, a view stays read: this costs a check per chunk."""
    for view in GLOBAL_VIEWS:
        if not view.ready.is_set():
            log.info("waiting for the global view %s before deciding", view.topic)
            await view.ready.wait()


async def _decide(chunk: list[Message], at: int, handle: Handle) -> int:
    """Decide ``chunk`` from ``at`` for up to a slice; where the next slice starts."""
    started = time.perf_counter()
    while at < len(chunk):
        message = chunk[at]
        state.message = message
        try:
            await handle(message)
        except Abandoned:
            # The chunk ends undecided from here; what this input did before it waited (an
            # erasure's leftovers) is safe to do again, as its replay will.
            raise
        except Exception as exc:  # noqa: BLE001  # raised again, sanitized
            _undecidable(message, exc)
            raise StateFailed(exc) from None
        finally:
            state.message = None
        state.done(message)
        at += 1
        if time.perf_counter() - started >= SLICE_SECONDS:
            break
    return at


def _undecidable(message: Message, exc: Exception) -> None:
    """An input no handler could decide: not bad input (that is dead-lettered where it is
    met), but a bug, or a store failing under the handler. What it half-wrote must not be
    flushed, nor anything after it acknowledged, so the state fails (``State.fail``: the
    worker stops) and the restart decides it again from the last commit. Faust alone
    would restart the agent and leave the rest of the chunk undecided and unacknowledged.

    The log names the input, the error's type and where it was raised; not the error's
    text, which may quote the input's personal data."""
    log.critical(
        "could not decide %s[%d]@%d (%s, text withheld); nothing more is written:\n%s",
        message.topic,
        message.partition,
        message.offset,
        type(exc).__name__,
        error_frames(exc),
    )
    state.fail(exc)


async def _maybe_flush(source: batching.Inlet | None) -> None:
    """Flush if nothing more waits for the agent, or enough is pending."""
    idle = source is None or not (len(source) or source.carried > 0)
    if not idle and state.pending < FLUSH_EVERY:
        return
    started = time.perf_counter()
    pending = state.pending
    await state.flush(agent=source.name if source is not None else None)
    if source is None:  # agent tests: what the chunk caused is delivered on return
        await state.settle()
    elapsed_ms = 1000 * (time.perf_counter() - started)
    log.debug("flushed %d inputs in %.1f ms", pending, elapsed_ms)


async def pump(source: batching.Inlet, agent: AgentT[Any]) -> None:
    """Move fetched messages onto the agent's channel, a chunk at a time."""
    channel: ChannelT[Any] = agent.channel
    offset = 0
    while True:
        chunk = await source.take(CHUNK)
        carrier = Message(
            topic=source.name,
            partition=0,
            offset=offset,
            timestamp=time.time(),
            timestamp_type=0,
            headers=None,
            key=None,
            value=chunk,  # type: ignore[arg-type]  # an in-memory channel carries objects
            checksum=None,
            # A stream skips an event of another consumer generation than the app's.
            generation_id=app.consumer_generation_id,
        )
        offset += 1
        source.carried += 1
        try:
            await channel.put(await channel.decode(carrier))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise  # the worker is stopping
            _cut_off(source)
            return


def _cut_off(source: batching.Inlet) -> None:
    """The pump's hand-off was cancelled under it (the channel's queue emptied: what
    ``batching.HandOff`` prevents), not the pump: its agent would get nothing more
    while the fetcher goes on, a silent stall. The state fails, so the worker stops
    and its restart replays from the last commit."""
    log.critical(
        "the %s agent's input was cut off (its hand-off cancelled); stopping the worker",
        source.name,
    )
    state.fail(HandOffCancelled(source.name))


class HandOffCancelled(RuntimeError):
    """A pump's put onto its agent's channel was cancelled while the worker ran."""


def feed(source: batching.Inlet, agent: AgentT[Any]) -> None:
    """``agent`` takes its chunks from ``source`` once the worker starts."""
    FEEDS.append((source, agent))


def start() -> None:
    """Route the inlets' topics to them and pump each into its agent (worker start, after
    the agents are imported; never in agent tests, which put chunks themselves)."""
    batching.check_faust()
    batching.install(app, [source for source, _ in FEEDS], on_revocation=revocation_began)
    state.acknowledge = lambda messages: batching.acknowledge(app, messages)
    state.sealer = WorkerSealer(erased_at, moving=lambda: state.in_rebalance)
    state.on_failure = _stop_worker
    for source, agent in FEEDS:
        app.task(_pumping(source, agent))


def _stop_worker(exc: BaseException) -> None:
    """Nothing decided from now on can be acknowledged (``State.fail``: a flush the
    broker refused after the producer's own retries, a flush that raised, or an input
    no handler could decide), so deciding on would only pile up work that is never
    committed. The worker stops, non-zero (Faust's ``crash``, as for a failed table
    recovery), so its orchestrator restarts it, and the restart replays every input
    after the last acknowledged one."""
    log.critical("stopping the worker: nothing decided from now on could be committed")
    app.add_future(app.crash(StateFailed(exc)))  # the type only: Faust logs the reason


def _pumping(source: batching.Inlet, agent: AgentT[Any]) -> Callable[[], Awaitable[None]]:
    # A task without parameters: Faust passes the app to a task that takes one.
    async def run_pump() -> None:
        await pump(source, agent)

    return run_pump


# The share of the group's rebalance timeout a revocation may wait for deliveries.
SETTLE_SHARE = 0.8


def settle_limit() -> float:
    """Seconds a revocation may wait for its deliveries: past the group's rebalance
    timeout (Faust's ``broker_rebalance_timeout``) the group gives this worker's
    partitions to others, while its changelog records would still be written, after
    the new owner's for the same keys (a later recovery would read the older value)."""
    return SETTLE_SHARE * float(app.conf.broker_rebalance_timeout)


def revocation_began() -> None:
    """First thing in a revocation (``batching.InletConsumer``), before Faust waits for
    its producer's queue to empty (which may take as long as a broker holds the
    records): the chunks being decided stop, and the deliveries get until
    ``settle_limit`` from now (``State.rebalancing``)."""
    state.rebalancing(deadline=asyncio.get_running_loop().time() + settle_limit())
    state.generation += 1


async def on_revoked(*_: Any, **__: Any) -> None:
    """Partitions are moving: what was flushed is delivered and acknowledged, what was
    decided since is flushed (and delivered) unacknowledged, what waits is dropped, and
    the cache forgotten. All of it by the revocation's deadline (``revocation_began``;
    ``settle_limit`` from now if it did not run): past it the state fails, the worker
    stops, nothing more of it is written (``State._delivered``), and its restart replays
    every input after the last commit."""
    state.rebalancing(deadline=asyncio.get_running_loop().time() + settle_limit())
    deadline = state.revocation_deadline
    dropped = 0
    try:
        async with asyncio.timeout_at(deadline), state.lock:
            state.generation += 1  # a chunk half decided stops here (``work``)
            dropped = sum(source.drop() for source, _ in FEEDS)
            await state.settle()
            await state.flush(acknowledge=False)
            await state.settle()
            state.rebalanced()
            batching.forget_acknowledged()
    except TimeoutError:
        # (A flush cut short here has failed the state already, as cancelled: this
        # line says why.)
        log.critical("rebalance: deliveries still pending at its deadline")
        state.fail(RebalanceTooSlow("deliveries pending past the rebalance's deadline"))
        return
    if dropped:
        log.info("rebalance: %d fetched messages left for their new owners", dropped)


app.on_partitions_revoked.connect(on_revoked)
