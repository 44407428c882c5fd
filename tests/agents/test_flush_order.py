"""What a flush hands the broker first, and when the tables say an input was decided
(streams.state; issue #11, at-least-once on the batched path).

A flush's outputs go first; its changelog records only once they, and every earlier
flush's outputs, are delivered; its values reach the local store only once those are
delivered too; its inputs are acknowledged last. So however a flush fails part-way (the
broker refuses a record, the worker is killed), no table says an input was decided
whose outputs were not delivered, and the restart that replays the input sends them. On
the old order (the store written and every record queued at the flush) a restart on the
same store found the input already folded in (its event id remembered) and sent
nothing: its consent-state and audit records were lost for good, and its change never
reached the changelog that standbys and the partition's next owner read.

A flush dropped because the partitions are moving (``Unsealable``) drops every flush
after it until the rebalance: a later flush's acknowledgement, in the same generation,
would let Faust commit past the dropped inputs; should no rebalance come, the state
fails after ``DROPPING_LIMIT_SECONDS`` (the worker stops and its restart replays them).
A flush cancelled part-way fails the state: nothing decided after it is written or
acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaError
from faust.types import Message

from privops.adapters import metrics
from privops.core.fieldcrypt import DataKey
from streams import batching, health, pipeline
from streams import state as streams_state
from streams.state import (
    DROPPING_LIMIT_SECONDS,
    NoRebalance,
    RebalanceTooSlow,
    Slot,
    State,
    StateFailed,
    Unsealable,
    state,
)
from streams.tables import identities
from tests.agents.test_batching import message

OUT = "privacy.consent-state"
CHANGELOG_OF = batching.changelog_topic


class Broker:
    """``State.queue_all`` as the producer answers it: each call's records, and a
    delivery the test resolves (offsets) or fails."""

    def __init__(self) -> None:
        self.calls: list[list[batching.Outgoing]] = []
        self.deliveries: list[asyncio.Future[list[int]]] = []

    async def queue_all(self, records: Sequence[batching.Outgoing]) -> Awaitable[list[int]]:
        self.calls.append(list(records))
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]

    def topics(self, call: int) -> set[str]:
        return {topic for topic, _, _, _ in self.calls[call]}

    def deliver(self, call: int) -> None:
        self.deliveries[call].set_result(list(range(len(self.calls[call]))))


@pytest.fixture
def broker(app: Any) -> Broker:
    return Broker()


def view_over(broker: Broker, acknowledged: list[Message]) -> State:
    view = State()
    view.queue_all = broker.queue_all
    view.acknowledge = acknowledged.extend
    return view


SLOT: Slot[dict[str, int]] = Slot(identities, dict, dict)


def decide(view: State, offset: int, key: str, *, output: bool = True) -> Message:
    """One input: ``key``'s new value in the table and, with ``output``, a record out."""
    item = message("crm.events", offset)
    view.message = item
    view.put(SLOT, key, {"n": offset})
    if output:
        view.emit(OUT, key.encode(), b"{}")
    view.done(item)
    view.message = None
    return item


def decide_sealed(view: State, offset: int, subject: str) -> Message:
    """One input whose output is sealed under ``subject``'s key (a sealer is asked)."""
    item = message("crm.events", offset)
    view.message = item
    view.emit_sealed(OUT, subject.encode(), subject, lambda _key: b"{}", lambda: b"{}")
    view.done(item)
    view.message = None
    return item


async def turns() -> None:
    await asyncio.sleep(0.01)


async def test_the_changelog_follows_the_outputs_and_the_store_follows_both(
    broker: Broker,
) -> None:
    acknowledged: list[Message] = []
    view = view_over(broker, acknowledged)
    item = decide(view, 0, "S1")
    await view.flush()
    assert [broker.topics(0)] == [{OUT}]  # the outputs alone
    await turns()
    assert len(broker.calls) == 1  # no changelog record before the outputs are delivered
    assert view.get_at(SLOT, 0, "S1") == {"n": 0}  # read back before it is stored
    assert identities.data.get("S1") is None

    broker.deliver(0)
    await turns()
    assert broker.topics(1) == {CHANGELOG_OF(identities)}
    assert identities.data.get("S1") is None  # not before its changelog record is delivered
    assert view.get_at(SLOT, 0, "S1") == {"n": 0}
    assert acknowledged == []

    broker.deliver(1)
    await view.settle()
    assert identities.data["S1"] == {"n": 0}
    assert view.get_at(SLOT, 0, "S1") == {"n": 0}
    assert view._held == {}  # reads go to the store again
    assert acknowledged == [item]


async def test_a_refused_output_leaves_no_table_saying_its_input_was_decided(
    broker: Broker,
) -> None:
    """The restart replays the input onto a store without it, so it is decided again
    and its outputs sent again."""
    acknowledged: list[Message] = []
    view = view_over(broker, acknowledged)
    decide(view, 0, "S1")
    await view.flush()
    broker.deliveries[0].set_exception(KafkaError("refused"))
    with pytest.raises(StateFailed):
        await view.settle()
    assert len(broker.calls) == 1  # no changelog record was handed over
    assert identities.data.get("S1") is None
    assert acknowledged == []


async def test_a_flush_logs_its_changes_only_after_every_earlier_flushs_outputs(
    broker: Broker,
) -> None:
    """The second flush built on the first's values: its changelog record of S1 holds
    the first's change too, so it must not be logged while the first's outputs may
    still be refused."""
    acknowledged: list[Message] = []
    view = view_over(broker, acknowledged)
    first = decide(view, 0, "S1")
    await view.flush()
    second = decide(view, 1, "S1")
    await view.flush()
    broker.deliver(1)  # the second flush's outputs are delivered first
    await turns()
    assert len(broker.calls) == 2  # its changelog waits for the first's outputs
    broker.deliver(0)
    await turns()
    assert [broker.topics(2), broker.topics(3)] == [{CHANGELOG_OF(identities)}] * 2
    assert [broker.calls[2][0][2], broker.calls[3][0][2]] == [b'{"n": 0}', b'{"n": 1}']
    broker.deliver(3)
    await turns()
    assert acknowledged == []  # in flush order
    broker.deliver(2)
    await view.settle()
    assert acknowledged == [first, second]
    assert identities.data["S1"] == {"n": 1}


async def test_an_earlier_flushs_refused_outputs_keep_a_later_flush_out_of_the_changelog(
    broker: Broker,
) -> None:
    acknowledged: list[Message] = []
    view = view_over(broker, acknowledged)
    decide(view, 0, "S1")
    await view.flush()
    decide(view, 1, "S1")
    await view.flush()
    broker.deliver(1)
    broker.deliveries[0].set_exception(KafkaError("refused"))
    with pytest.raises(StateFailed):
        await view.settle()
    await turns()
    assert len(broker.calls) == 2  # neither flush's changelog was handed over
    assert identities.data.get("S1") is None
    assert acknowledged == []


class MovingSealer:
    """The key store of a worker whose partitions began to move: the first flush that
    needs a storage key cannot have it."""

    def __init__(self) -> None:
        self.asked = 0

    async def ready(self) -> None:
        return None

    async def storage_keys(self, wanted: Mapping[str, int]) -> dict[str, DataKey | None]:
        self.asked += 1
        if self.asked == 1:
            raise Unsealable("partition 0 of privacy.subject-keys is not this worker's")
        return dict.fromkeys(wanted)

    def lookup(self, key_id: str) -> DataKey | None:
        return None


async def test_a_dropped_flush_drops_every_flush_until_the_rebalance(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offset 0 (a sealed output) is dropped with its flush. Offset 1, decided after it
    in the same generation, must not be sent, stored or acknowledged either: its
    acknowledgement would let Faust commit past offset 0 (Faust forgets a revoked
    partition's committed offset before the worker's revocation handler runs), and
    its table values, replayed before offset 0's, would put a later decision first.
    After the rebalance (``pipeline.on_revoked``; Faust then seeks every partition to
    its commit) flushes go through again."""
    acknowledged: list[Message] = []
    monkeypatch.setattr(state, "queue_all", broker.queue_all)
    monkeypatch.setattr(state, "acknowledge", acknowledged.extend)
    monkeypatch.setattr(state, "sealer", MovingSealer())
    decide_sealed(state, 0, "S1")
    await state.flush()
    decide(state, 1, "S2")
    await state.flush()
    await state.settle()
    assert broker.calls == []  # neither was sent
    assert identities.data.get("S2") is None
    assert state.get_at(SLOT, 0, "S2") is None  # nor kept decoded
    assert acknowledged == []

    await pipeline.on_revoked()
    after = decide(state, 2, "S3")
    await state.flush()
    broker.deliver(0)
    await turns()
    broker.deliver(1)
    await state.settle()
    assert identities.data["S3"] == {"n": 2}
    assert acknowledged == [after]


async def test_a_read_sees_the_newest_flushed_value_while_older_flushes_are_stored(
    broker: Broker,
) -> None:
    """Three flushes in flight on one key: deleted, written, deleted again. As the first
    two are delivered and stored, reads still answer the third's delete (each flush
    releases only what it still holds itself, and two deletes look alike)."""
    view = view_over(broker, [])
    identities.data["S1"] = {"n": -1}
    values: list[dict[str, int] | None] = [None, {"n": 1}, None]  # None deletes
    slot: Slot[dict[str, int] | None] = Slot(identities, dict, lambda value: value)
    for offset, value in enumerate(values):
        item = message("crm.events", offset)
        view.message = item
        view.put(slot, "S1", value)
        view.done(item)
        view.message = None
        await view.flush()
    await turns()
    assert len(broker.calls) == 3  # three changelog records, in flush order
    broker.deliver(0)
    broker.deliver(1)
    await turns()
    assert identities.data.get("S1") == {"n": 1}  # the second is stored
    assert view.get_at(SLOT, 0, "S1") is None  # the third, not yet stored, is what holds
    broker.deliver(2)
    await view.settle()
    assert "S1" not in identities.data
    assert view.get_at(SLOT, 0, "S1") is None


async def test_a_flush_cancelled_part_way_writes_and_acknowledges_nothing_more(
    broker: Broker,
) -> None:
    """Cancelled while handing its outputs over (some may be sent): what is decided
    after it built on it, so no later flush may log it or acknowledge anything."""
    acknowledged: list[Message] = []
    told: list[BaseException] = []
    view = view_over(broker, acknowledged)
    view.on_failure = told.append
    gate = asyncio.Event()

    async def stuck(records: Sequence[batching.Outgoing]) -> Awaitable[list[int]]:
        await gate.wait()
        return await broker.queue_all(records)

    view.queue_all = stuck
    decide(view, 0, "S1")
    flushing = asyncio.ensure_future(view.flush())
    await turns()
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert [type(exc) for exc in told] == [asyncio.CancelledError]
    view.queue_all = broker.queue_all
    decide(view, 1, "S1", output=False)
    with pytest.raises(StateFailed):
        await view.flush()
    assert broker.calls == []
    assert identities.data.get("S1") is None
    assert acknowledged == []


async def test_the_local_write_counts_as_its_agents_flush(broker: Broker) -> None:
    """``privops_agent_busy_seconds{stage="flush"}`` covers the store's write too, which
    now happens once the flush is delivered, outside the agent's own turn."""
    busy = metrics.AGENT_BUSY_SECONDS.labels(agent="ingest", stage="flush")
    view = view_over(broker, [])
    decide(view, 0, "S1", output=False)
    await view.flush(agent="ingest")
    before = busy._value.get()
    await turns()
    broker.deliver(0)
    await view.settle()
    assert identities.data["S1"] == {"n": 0}
    assert busy._value.get() > before


class Dropped:
    """A flush dropped at a clock the test moves (``now``), with what the state told
    ``on_failure`` (``failures``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, broker: Broker) -> None:
        self.now = 1000.0
        self.failures: list[BaseException] = []
        monkeypatch.setattr("streams.state.time.monotonic", lambda: self.now)
        monkeypatch.setattr(state, "queue_all", broker.queue_all)
        monkeypatch.setattr(state, "sealer", MovingSealer())
        monkeypatch.setattr(state, "on_failure", self.failures.append)

    async def first(self) -> None:
        decide_sealed(state, 0, "S1")
        await state.flush()


async def test_flushes_dropped_with_no_rebalance_after_them_stop_the_worker(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the partitions' move that dropped a flush never end in a rebalance, every
    flush would be dropped for ever: input taken and never acknowledged, the agents
    moving on, only the lag growing. Health says so after a while; at
    ``DROPPING_LIMIT_SECONDS`` the state fails (the worker stops, and its restart
    replays every input after the last acknowledged one)."""
    acknowledged: list[Message] = []
    monkeypatch.setattr(state, "acknowledge", acknowledged.extend)
    dropped = Dropped(monkeypatch, broker)
    await dropped.first()
    assert health.dropped_flushes() == []

    dropped.now += health.DROPPING_REPORTED_AFTER_SECONDS
    decide(state, 1, "S2")
    await state.flush()  # dropped, the state not failed yet
    assert dropped.failures == []
    assert health.dropped_flushes() == [
        "every flush dropped for 10 s, waiting for a rebalance (the worker stops at 60 s; "
        "its restart replays what was dropped)"
    ]

    dropped.now = 1000.0 + DROPPING_LIMIT_SECONDS
    decide(state, 2, "S3")
    with pytest.raises(StateFailed, match="NoRebalance"):
        await state.flush()
    assert [type(exc) for exc in dropped.failures] == [NoRebalance]
    assert broker.calls == []
    assert acknowledged == []
    with pytest.raises(StateFailed):  # and so does every flush after it
        await state.flush()


async def test_a_worker_that_takes_no_input_after_the_drop_stops_too(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing more to flush, the dropped inputs would wait unprocessed for ever:
    the health timer gives up at the limit as a flush would."""
    dropped = Dropped(monkeypatch, broker)
    await dropped.first()
    dropped.now += DROPPING_LIMIT_SECONDS
    assert len(health.dropped_flushes()) == 1
    assert [type(exc) for exc in dropped.failures] == [NoRebalance]
    health.dropped_flushes()  # asked again: told once
    assert len(dropped.failures) == 1


@pytest.mark.parametrize("waited", [5.0, DROPPING_LIMIT_SECONDS * 2])
async def test_the_rebalance_ends_the_dropping_however_long_it_took_to_come(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, waited: float
) -> None:
    """The rebalance's own flush (``on_revoked``, which may wait long for deliveries
    while the broker is slow) never gives up: it is what replays the dropped inputs."""
    dropped = Dropped(monkeypatch, broker)
    await dropped.first()
    dropped.now += waited
    assert state.dropping_for() == waited
    state.rebalancing()  # begun: its settle may wait on deliveries
    assert state.dropping_for() == 0.0
    assert health.dropped_flushes() == []
    await pipeline.on_revoked()
    assert state.failure is None
    dropped.now += DROPPING_LIMIT_SECONDS * 2
    assert state.dropping_for() == 0.0
    decide(state, 1, "S2")
    await state.flush()  # goes through: no failure
    assert state.failure is None


def watched(
    monkeypatch: pytest.MonkeyPatch, broker: Broker, app: Any, settle_seconds: float
) -> tuple[list[Message], list[BaseException]]:
    """The state flushing to ``broker``, what it acknowledges and what fails it kept, and
    a revocation's deadline ``settle_seconds`` after it begins."""
    acknowledged: list[Message] = []
    failures: list[BaseException] = []
    monkeypatch.setattr(state, "queue_all", broker.queue_all)
    monkeypatch.setattr(state, "acknowledge", acknowledged.extend)
    monkeypatch.setattr(state, "on_failure", failures.append)
    share = settle_seconds / app.conf.broker_rebalance_timeout
    monkeypatch.setattr(pipeline, "SETTLE_SHARE", share)
    return acknowledged, failures


async def test_a_rebalance_whose_deliveries_do_not_settle_stops_the_worker_writing_nothing(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, app: Any
) -> None:
    """The broker holds a flush's outputs through a revocation (an independent review,
    session 22): the revocation waited for ever, the group gave the partitions to
    another worker, and this one's changelog records, queued once the outputs went out,
    landed after the new owner's for the same keys. Now the state fails at the limit,
    and nothing of the flush is written after, however late its outputs go out."""
    acknowledged, failures = watched(monkeypatch, broker, app, 0.1)
    decide(state, 0, "S1")
    await state.flush()  # its outputs are not delivered
    async with asyncio.timeout(2):
        await pipeline.on_revoked()
    assert [type(exc) for exc in failures] == [RebalanceTooSlow]
    broker.deliver(0)  # now they are
    await turns()
    assert broker.topics(0) == {OUT}
    assert len(broker.calls) == 1  # no changelog records after the failure
    assert identities.data.get("S1") is None
    assert acknowledged == []


async def test_deliveries_past_the_revocations_deadline_write_no_changelog(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, app: Any
) -> None:
    """Faust waits for its producer's queue to empty before it tells the worker's
    revocation handler (``on_revoked``) anything, for as long as the broker holds the
    records: the deadline starts when the revocation does (``revocation_began``, from
    the consumer), and outputs delivered after it queue no changelog record (an
    independent review found the bound of ``on_revoked`` alone started too late)."""
    acknowledged, failures = watched(monkeypatch, broker, app, 0.05)
    decide(state, 0, "S1")
    await state.flush()  # its outputs are held by the broker
    pipeline.revocation_began()
    await asyncio.sleep(0.1)  # Faust's producer flush, still waiting
    broker.deliver(0)
    await turns()
    assert [type(exc) for exc in failures] == [RebalanceTooSlow]
    assert len(broker.calls) == 1  # the outputs only: no changelog records
    assert identities.data.get("S1") is None
    assert acknowledged == []


async def test_after_a_rebalance_a_flush_past_its_deadline_goes_through(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, app: Any
) -> None:
    """The rebalance's end clears its deadline: kept, every healthy worker would have
    stopped at its first flush after the first rebalance's deadline."""
    acknowledged, failures = watched(monkeypatch, broker, app, 0.05)
    generation = state.generation
    pipeline.revocation_began()
    assert state.generation == generation + 1  # a chunk being decided stops (``work``)
    await pipeline.on_revoked()  # nothing pending: done at once
    await asyncio.sleep(0.1)  # past the deadline
    after = decide(state, 1, "S2")
    await state.flush()
    broker.deliver(0)
    await turns()
    broker.deliver(1)
    await state.settle()
    assert failures == []
    assert acknowledged == [after]


async def test_the_revocation_handler_keeps_the_deadline_the_revocation_began_with(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, app: Any
) -> None:
    """Faust's producer flush took the whole time before ``on_revoked`` was told: it
    fails the state at once rather than wait a new limit out."""
    _, failures = watched(monkeypatch, broker, app, 1.0)
    decide(state, 0, "S1")
    await state.flush()  # its outputs are held by the broker
    pipeline.revocation_began()
    await asyncio.sleep(1.05)
    async with asyncio.timeout(0.5):
        await pipeline.on_revoked()
    assert [type(exc) for exc in failures] == [RebalanceTooSlow]


def test_the_worker_starts_a_revocations_deadline_from_its_consumer(
    monkeypatch: pytest.MonkeyPatch, app: Any
) -> None:
    """``pipeline.start`` hands ``revocation_began`` to the consumer (``install``)."""
    handed: list[object] = []

    def install(_app: Any, _inlets: Any, on_revocation: object = None) -> None:
        handed.append(on_revocation)

    monkeypatch.setattr(batching, "install", install)
    monkeypatch.setattr(app, "task", lambda fn: fn)
    for name in ("acknowledge", "sealer", "on_failure"):  # put back after the test
        monkeypatch.setattr(state, name, getattr(state, name))
    pipeline.start()
    assert handed == [pipeline.revocation_began]


async def test_past_the_deadline_a_stopping_worker_writes_nothing_late_and_stops_quietly(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, app: Any
) -> None:
    """A revocation begun while the worker stops (Faust then skips ``on_revoked``, which
    clears the deadline): the late changelog is still not written, but the worker's
    exit is not turned into a crash."""
    _, failures = watched(monkeypatch, broker, app, 0.05)
    monkeypatch.setattr(streams_state, "app", SimpleNamespace(should_stop=True))
    decide(state, 0, "S1")
    await state.flush()
    pipeline.revocation_began()
    await asyncio.sleep(0.1)
    broker.deliver(0)
    await turns()
    assert failures == []
    assert isinstance(state.failure, RebalanceTooSlow)
    assert len(broker.calls) == 1
