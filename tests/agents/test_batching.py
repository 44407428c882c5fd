"""The one module that reaches into Faust (streams.batching): it fails here, loudly, if a
Faust upgrade moves what it uses, and its inlets keep order and apply back-pressure."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record.memory_records import MemoryRecords
from faust.types import TP, Message

from privops.adapters import metrics
from privops.core.topics import COMMANDS, REQUEST_TICKS
from streams import batching, pipeline
from streams.state import Abandoned, Slot, State, StateFailed, state
from streams.tables import CONSENT, identities


def message(topic: str, offset: int, partition: int = 0) -> Message:
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0.0,
        timestamp_type=0,
        headers=None,
        key=b"S1",
        value=b"v",
        checksum=None,
    )


async def _ignored(_message: Message) -> None:
    return None


async def _revoked(_partitions: set[TP]) -> None:
    return None


def inlet_consumer(
    app: Any, callback: Callable[[Message], Awaitable[None]] = _ignored
) -> batching.InletConsumer:
    """The worker's consumer, delivering to ``callback``, on this test's event loop (the
    transport's is an earlier test's)."""
    return batching.InletConsumer(
        app.transport,
        callback=callback,
        on_partitions_revoked=_revoked,
        on_partitions_assigned=None,
        loop=asyncio.get_running_loop(),
    )


def test_the_installed_faust_is_the_one_the_module_was_written_for() -> None:
    batching.check_faust()
    assert faust.__version__ == batching.FAUST_VERSION


def test_another_aiokafka_version_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiokafka

    monkeypatch.setattr(aiokafka, "__version__", "0.15.0")
    with pytest.raises(batching.FaustChanged, match=r"aiokafka 0\.15\.0"):
        batching.check_faust()


def test_another_faust_version_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust, "__version__", "0.16.0")
    with pytest.raises(batching.FaustChanged, match=r"0\.16\.0"):
        batching.check_faust()


def test_the_fetch_monitor_keeps_faust_s_end_offsets_and_gauge() -> None:
    """Faust's consumer reports a partition's end offset for every message it fetches:
    the worker's monitor sets the same gauge, looking its labelled child up once."""
    from streams.app import app

    monitor = app.monitor
    assert isinstance(monitor, batching.FetchMonitor)
    tp = TP("orders.events", 7)
    labels = {"topic": "orders.events", "partition": "7"}
    name = f"{metrics.FAUST_SENSOR_PREFIX}_topic_partition_end_offset"
    for offset in (41, 42):
        monitor.track_tp_end_offset(tp, offset)
        assert metrics.REGISTRY.get_sample_value(name, labels) == offset
        assert monitor.tp_end_offsets[tp] == offset
    other = TP("orders.events", 8)
    monitor.track_tp_end_offset(other, 5)
    assert metrics.REGISTRY.get_sample_value(name, {**labels, "partition": "8"}) == 5
    assert metrics.REGISTRY.get_sample_value(name, labels) == 42


def test_no_prometheus_monitor_to_replace_is_refused() -> None:
    class Plain:
        monitor = object()

    with pytest.raises(batching.FaustChanged, match="no Prometheus monitor"):
        batching.fetch_monitor(Plain())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("owner", "name"),
    [
        ("AIOKafkaConsumerThread", "_create_worker_consumer"),
        ("Consumer", "_new_consumer_thread"),
        ("Producer", "_settings_extra"),
    ],
)
def test_a_faust_without_a_method_it_overrides_stops_the_worker(
    monkeypatch: pytest.MonkeyPatch, owner: str, name: str
) -> None:
    from faust.transport.drivers import aiokafka as driver

    monkeypatch.setattr(getattr(driver, owner), name, None)
    with pytest.raises(batching.FaustChanged, match=f"{owner}.{name} is gone"):
        batching.check_faust()


async def test_the_workers_producer_is_idempotent(app: Any) -> None:
    """Faust turns idempotence on only in transactions; the worker's app makes its
    aiokafka producer with it, and with acks=all, whatever Faust's defaults say."""
    assert isinstance(app.transport, batching.IdempotentTransport)
    producer = app.transport.create_producer()
    assert isinstance(producer, batching.IdempotentProducer)
    client = producer._new_producer()
    try:
        assert client._txn_manager is not None  # what aiokafka builds for enable_idempotence
        assert client._txn_manager.transactional_id is None  # idempotent, not transactional
        assert producer._settings_extra() == {"acks": "all", "enable_idempotence": True}
    finally:
        await client.stop()  # never started: nothing to flush, its client closed


def test_a_broker_that_is_not_kafka_is_refused() -> None:
    other = faust.App("privops-test-other", broker="memory://")
    with pytest.raises(batching.FaustChanged, match="kafka://"):
        batching.idempotent_producer(other)


def test_the_conductor_internals_it_wraps_are_there(app: Any) -> None:
    """Conductor._build_handler(tp, channels) and Consumer.ack(message), as 0.15.3 has."""
    conductor = app.topics
    assert callable(conductor._build_handler)
    assert callable(app.consumer.ack)
    assert callable(app.flow_control.acquire)


async def test_install_routes_the_inlets_topics_and_leaves_the_others_to_faust(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conductor = app.topics
    original = conductor._build_handler
    built: list[TP] = []

    def faust_handler(tp: TP, _channels: Any) -> Any:
        built.append(tp)
        return "faust's own"

    monkeypatch.setattr(conductor, "_build_handler", faust_handler)
    inlet = batching.Inlet("test", ["a.events"])
    consumer = app.consumer
    assert isinstance(consumer, batching.InletConsumer)
    for name in ("inlets", "on_revocation"):  # put back after the test
        monkeypatch.setattr(consumer, name, getattr(consumer, name))
    revoking: list[str] = []
    batching.install(app, [inlet], on_revocation=lambda: revoking.append("told"))
    try:
        assert consumer.inlets == {"a.events": inlet}
        assert consumer.on_revocation is not None
        consumer.on_revocation()
        assert revoking == ["told"]
        handler = conductor._build_handler(TP("a.events", 1), set())
        assert conductor._build_handler(TP("b.events", 0), set()) == "faust's own"
        assert built == [TP("b.events", 0)]
        await handler(message("a.events", 7, partition=1))
        assert [m.offset for m in await inlet.take(10)] == [7]
        assert any("a.events" in t.topics for t in conductor)  # subscribed
    finally:
        monkeypatch.setattr(conductor, "_build_handler", original)


async def test_inlet_hands_out_chunks_in_arrival_order_and_holds_the_fetcher_when_full(
    app: Any,
) -> None:
    inlet = batching.Inlet("test", ["a.events"], high_water=4)
    handler = inlet.handler(app)
    for offset in range(3):
        await handler(message("a.events", offset))
    fourth = asyncio.ensure_future(handler(message("a.events", 3)))
    await asyncio.sleep(0.01)
    assert not fourth.done()  # four waiting: the fetcher waits for room
    assert [m.offset for m in await inlet.take(3)] == [0, 1, 2]
    await asyncio.wait_for(fourth, 1)
    assert [m.offset for m in await inlet.take(10)] == [3]
    taker = asyncio.ensure_future(inlet.take(10))
    await asyncio.sleep(0.01)
    assert not taker.done()  # nothing there: take waits
    await handler(message("a.events", 4))
    assert [m.offset for m in await asyncio.wait_for(taker, 1)] == [4]


async def test_background_messages_wait_behind_the_rest_and_come_a_few_at_a_time(
    app: Any,
) -> None:
    """A sweep's burst of ticks does not stand between a command and the agent: the
    ticks are handed out when nothing else waits, BACKGROUND_CHUNK at a time, each topic
    in its own order; they count towards the inlet's high water and are dropped with
    the rest."""
    few = batching.Inlet.BACKGROUND_CHUNK
    inlet = batching.Inlet("test", ["commands", "ticks"], background=["ticks"])
    for offset in range(few + 5):
        inlet.put(message("ticks", offset))
    inlet.put(message("commands", 0))
    assert len(inlet) == few + 6
    assert [(m.topic, m.offset) for m in await inlet.take(100)] == [("commands", 0)]
    assert [m.offset for m in await inlet.take(100)] == list(range(few))
    inlet.put(message("commands", 1))  # arrives while ticks still wait: goes first
    assert [(m.topic, m.offset) for m in await inlet.take(100)] == [("commands", 1)]
    assert [m.offset for m in await inlet.take(3)] == [few, few + 1, few + 2]
    assert inlet.drop() == 2
    assert len(inlet) == 0
    full = batching.Inlet("test", ["commands", "ticks"], high_water=2, background=["ticks"])
    assert full.put(message("ticks", 0)) is False
    assert full.put(message("ticks", 1)) is True  # the fetcher waits for room
    with pytest.raises(ValueError, match="among its topics"):
        batching.Inlet("test", ["commands"], background=["ticks"])


async def test_background_messages_that_waited_too_long_go_before_a_flood(app: Any) -> None:
    """Ticks carry deadline alerts: a steady flood of commands slows them, never stops
    them. Once the oldest tick has waited BACKGROUND_MAX_WAIT, a few ticks go first,
    taking turns with the commands (overdue ticks do not hold commands up either)."""
    now = [100.0]
    inlet = batching.Inlet(
        "test", ["commands", "ticks"], background=["ticks"], clock=lambda: now[0]
    )
    few, wait = inlet.BACKGROUND_CHUNK, inlet.BACKGROUND_MAX_WAIT
    for offset in range(few + 2):
        inlet.put(message("ticks", offset))
    now[0] += wait / 2
    inlet.put(message("ticks", few + 2))  # arrived later than the others
    for offset in range(5):
        inlet.put(message("commands", offset))
    assert [m.topic for m in await inlet.take(2)] == ["commands"] * 2  # not yet overdue
    now[0] += wait / 2
    assert [m.offset for m in await inlet.take(100)] == list(range(few))  # overdue: first
    assert [m.offset for m in await inlet.take(2)] == [2, 3]  # commands' turn
    # Still overdue: the next chunk of ticks, in order (the later one with them).
    assert [m.offset for m in await inlet.take(100)] == [few, few + 1, few + 2]
    assert [m.offset for m in await inlet.take(100)] == [4]
    inlet.put(message("ticks", few + 3))
    now[0] += wait
    inlet.put(message("commands", 5))
    assert [m.offset for m in await inlet.take(100)] == [few + 3]
    assert [m.offset for m in await inlet.take(100)] == [5]
    assert len(inlet) == 0


def test_the_workflows_ticks_are_its_background() -> None:
    from agents.requests import inlet  # the agent module registers with the app on import

    assert inlet.background == {REQUEST_TICKS}
    assert COMMANDS in inlet.topics


async def test_the_workers_fetches_wait_as_its_settings_say(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's consumer thread makes its aiokafka consumer with the fetch wait the
    settings give (PRIVOPS_FETCH_*), not Kafka's one byte, which made every trickled
    message a fetch of every assigned partition; out-of-range values are refused."""
    from streams.app import settings

    assert (batching.FetchingThread.min_bytes, batching.FetchingThread.max_wait_ms) == (
        settings.fetch_min_bytes,
        settings.fetch_max_wait_ms,
    )
    assert settings.fetch_min_bytes > 1

    consumer = inlet_consumer(app)
    thread = consumer._new_consumer_thread()
    assert isinstance(thread, batching.FetchingThread)
    monkeypatch.setattr(batching.FetchingThread, "min_bytes", 1)
    monkeypatch.setattr(batching.FetchingThread, "max_wait_ms", 1)
    batching.set_fetch_wait(4096, 7)
    client = thread._create_worker_consumer(app.transport)
    assert (client._fetch_min_bytes, client._fetch_max_wait_ms) == (4096, 7)
    for bad in ((0, 20), (1024, -1), (1024, 1501)):
        with pytest.raises(ValueError, match="fetch wait out of range"):
            batching.set_fetch_wait(*bad)


async def _fetched(*messages: Message) -> AsyncIterator[tuple[TP, Message]]:
    for one in messages:
        yield one.tp, one


async def test_the_workers_consumer_puts_an_inlets_messages_straight_in(app: Any) -> None:
    """No task per message for an inlet's topic: appended in fetch order, the read offset
    kept; a message seen before (offset behind the read one) is dropped as Faust drops
    it; any other topic, and an inlet's topic while the flow is held (a rebalance), goes
    through Faust's callback; a full inlet holds the fetch until there is room."""
    through_faust: list[tuple[str, int]] = []

    async def callback(one: Message) -> None:
        through_faust.append((one.topic, one.offset))

    assert app.transport.Consumer is batching.InletConsumer  # the worker's consumer
    consumer = inlet_consumer(app, callback)
    inlet = batching.Inlet("test", ["a.events"], high_water=3)
    consumer.inlets = {"a.events": inlet}
    a0 = TP("a.events", 0)
    await consumer._deliver(
        _fetched(message("a.events", 5), message("b.events", 9), message("a.events", 6))
    )
    assert [m.offset for m in await inlet.take(10)] == [5, 6]
    assert through_faust == [("b.events", 9)]
    assert consumer._read_offset[a0] == 6

    await consumer._deliver(_fetched(message("a.events", 4), message("a.events", 7)))
    assert [m.offset for m in await inlet.take(10)] == [7]  # 4 was read before

    app.flow_control.suspend()
    try:
        await consumer._deliver(_fetched(message("a.events", 8)))
    finally:
        app.flow_control.resume()
    assert through_faust[-1] == ("a.events", 8)
    assert len(inlet) == 0

    delivering = asyncio.ensure_future(
        consumer._deliver(_fetched(*(message("a.events", n) for n in range(9, 13))))
    )
    await asyncio.sleep(0.01)
    assert not delivering.done()  # three waiting: the fetch waits for room
    assert [m.offset for m in await inlet.take(10)] == [9, 10, 11]
    await asyncio.wait_for(delivering, 1)
    assert [m.offset for m in await inlet.take(10)] == [12]
    assert consumer._read_offset[a0] == 12


async def test_a_revocation_while_a_fetch_waits_leaves_the_partition_to_be_read_again(
    app: Any,
) -> None:
    """A backlog at a revocation (an independent review, session 22): the fetch holding
    offsets 10..14 waits for room; the revocation makes Faust forget the partition's
    offsets and the worker drop what the inlet holds. The waiting fetch must not set the
    read offset again (it did, to 14): the partition, assigned again and read from its
    commit at 10, then reached the inlet as 14..17 only, 10..13 dropped as "seen",
    neither decided nor acknowledged, and Faust committed past them or never again."""

    consumer = inlet_consumer(app)
    inlet = batching.Inlet("test", ["a.events"], high_water=5)
    consumer.inlets = {"a.events": inlet}
    a0 = TP("a.events", 0)
    consumer._committed_offset[a0] = 10
    consumer._read_offset[a0] = 10
    delivering = asyncio.ensure_future(
        consumer._deliver(_fetched(*(message("a.events", n) for n in range(10, 18))))
    )
    await asyncio.sleep(0.01)
    assert not delivering.done()  # 10..14 in the inlet, full: the fetch waits
    await consumer.on_partitions_revoked({a0})  # Faust forgets a0's offsets
    assert inlet.drop() == 5  # pipeline.on_revoked
    consumer.stop_flow()  # the app's revocation handler
    await asyncio.wait_for(delivering, 1)
    assert consumer._read_offset.get(a0) is None  # forgotten, and kept so
    assert len(inlet) == 0  # 15..17, fetched before the revocation, not delivered

    consumer.resume_flow()  # a0 assigned again, read from its commit
    consumer._committed_offset[a0] = 10
    await consumer._deliver(_fetched(*(message("a.events", n) for n in range(10, 14))))
    assert [m.offset for m in await inlet.take(10)] == [10, 11, 12, 13]


async def test_the_worker_hears_of_a_revocation_before_faust_forgets_or_waits(
    app: Any,
) -> None:
    """``install``'s ``on_revocation`` is told first thing (``pipeline.revocation_began``
    starts the revocation's deadline there), before Faust forgets the partitions'
    offsets and before its app waits for its producer."""
    consumer = inlet_consumer(app)
    a0 = TP("a.events", 0)
    consumer._read_offset[a0] = 10
    heard: list[int | None] = []
    consumer.on_revocation = lambda: heard.append(consumer._read_offset.get(a0))
    await consumer.on_partitions_revoked({a0})
    assert heard == [10]
    assert consumer._read_offset.get(a0) is None


async def test_a_rebalance_drops_what_waits(app: Any) -> None:
    inlet = batching.Inlet("test", ["a.events"])
    handler = inlet.handler(app)
    await handler(message("a.events", 0))
    assert inlet.drop() == 1
    assert len(inlet) == 0


async def test_state_reads_its_own_writes_until_the_flush_stores_them_once(app: Any) -> None:
    """One flush writes each changed key once, and only then are inputs acknowledged."""
    view = State()
    sends: list[tuple[str, bytes | None, int | None]] = []
    acknowledged: list[Message] = []

    async def queue_all(records: Sequence[batching.Outgoing]) -> Awaitable[list[int]]:
        sends.extend((topic, key, partition) for topic, key, _, partition in records)
        return asyncio.sleep(0, result=list(range(len(records))))

    view.queue_all = queue_all
    view.acknowledge = acknowledged.extend
    slot: Slot[dict[str, int]] = Slot(identities, dict, dict)
    inputs = [message("crm.events", offset, partition=2) for offset in range(3)]
    for count, item in enumerate(inputs, start=1):
        view.message = item
        view.put(slot, "S1", {"n": count})
        assert view.get(slot, "S1") == {"n": count}
        view.done(item)
    view.message = None
    assert identities.data.get("S1") is None  # nothing stored before the flush
    await view.flush()
    await view.settle()
    assert identities.data["S1"] == {"n": 3}
    changelog = batching.changelog_topic(identities)
    assert sends == [(changelog, b"S1", 2)]  # one write for three changes, on partition 2
    assert acknowledged == inputs
    assert CONSENT.name == "consent"


async def test_a_flush_acknowledges_its_inputs_once_delivered_and_in_flush_order(
    app: Any,
) -> None:
    """A flush returns with its records queued, not delivered: the agent decides on.
    Inputs are acknowledged after their flush's delivery and after every flush before
    it; a failed delivery holds back every later acknowledgement, the next flush (or
    ``settle``) raises it, and ``on_failure`` is told once (tests/integration/
    test_refused_delivery.py: the worker then stops). These flushes write a table and
    send nothing else, so each hands over its changelog records as soon as the flush
    before has (tests/agents/test_flush_order.py has outputs too)."""
    view = State()
    deliveries: list[asyncio.Future[list[int]]] = []

    async def queue_all(records: Sequence[batching.Outgoing]) -> Awaitable[list[int]]:
        deliveries.append(asyncio.get_running_loop().create_future())
        return deliveries[-1]

    view.queue_all = queue_all
    acknowledged: list[Message] = []
    view.acknowledge = acknowledged.extend
    slot: Slot[dict[str, int]] = Slot(identities, dict, dict)

    async def decide_and_flush(offset: int) -> Message:
        item = message("crm.events", offset)
        view.message = item
        view.put(slot, "S1", {"n": offset})
        view.done(item)
        view.message = None
        await view.flush()
        return item

    first = await decide_and_flush(0)
    second = await decide_and_flush(1)
    await asyncio.sleep(0.01)
    assert len(deliveries) == 2
    assert acknowledged == []  # queued, not delivered
    deliveries[1].set_result([0])
    await asyncio.sleep(0.01)
    assert acknowledged == []  # the second waits for the first
    deliveries[0].set_result([0])
    await view.settle()
    assert acknowledged == [first, second]

    told: list[BaseException] = []
    view.on_failure = told.append
    await decide_and_flush(2)
    await decide_and_flush(3)  # queued before the broker refuses the one before it
    await asyncio.sleep(0.01)
    refused = KafkaError("broker gone")
    deliveries[2].set_exception(refused)
    with pytest.raises(StateFailed, match="KafkaError"):
        await view.settle()
    with pytest.raises(StateFailed):
        await decide_and_flush(4)
    assert acknowledged == [first, second]
    assert len(deliveries) == 4  # nothing more was queued after the failure
    assert told == [refused]  # told once (the worker stops), not once per later flush


async def test_a_rebalance_waits_for_what_was_flushed_and_leaves_the_rest_unacknowledged(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partitions moving: the flush under way is delivered and acknowledged first; what
    was decided since is flushed and delivered, but not acknowledged (the new owner
    replays it); only then does the handler return."""
    deliveries: list[asyncio.Future[list[int]]] = []

    async def queue_all(records: Sequence[batching.Outgoing]) -> Awaitable[list[int]]:
        deliveries.append(asyncio.get_running_loop().create_future())
        return deliveries[-1]

    acknowledged: list[Message] = []
    monkeypatch.setattr(state, "queue_all", queue_all)
    monkeypatch.setattr(state, "acknowledge", acknowledged.extend)
    slot: Slot[dict[str, int]] = Slot(identities, dict, dict)

    def decide(offset: int) -> Message:
        item = message("crm.events", offset)
        state.message = item
        state.put(slot, "S1", {"n": offset})
        state.done(item)
        state.message = None
        return item

    first = decide(0)
    await state.flush()
    decide(1)
    revoking = asyncio.ensure_future(pipeline.on_revoked())
    await asyncio.sleep(0.01)
    assert (len(deliveries), revoking.done()) == (1, False)  # waits for the first
    deliveries[0].set_result([0])
    await asyncio.sleep(0.01)
    assert acknowledged == [first]
    assert (len(deliveries), revoking.done()) == (2, False)  # the second flushed, awaited
    deliveries[1].set_result([1])
    await asyncio.wait_for(revoking, 1)
    assert acknowledged == [first]
    assert identities.data["S1"] == {"n": 1}


async def test_what_is_not_yet_processed_starts_after_the_last_acknowledgement(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the consumer lag counts from (agents/timers.py): the first offset not yet
    decided and delivered, not the last one read (an inlet holds up to ``high_water``
    messages read and not processed). Before any acknowledgement here, the group's
    committed offset; before any commit, after the last one read. A revocation
    forgets the acknowledgements."""
    consumer = app.consumer
    for name, fresh in (("_acked", defaultdict(list)), ("_acked_index", defaultdict(set))):
        monkeypatch.setattr(consumer, name, fresh)  # the acks below leave nothing behind
    monkeypatch.setattr(consumer, "_n_acked", 0)
    tp = TP("a.events", 0)
    assert batching.next_to_process(app, tp) is None
    monkeypatch.setitem(consumer._read_offset, tp, 41)
    assert batching.next_to_process(app, tp) == 42
    monkeypatch.setitem(consumer._committed_offset, tp, 30)
    assert batching.next_to_process(app, tp) == 30
    batching.acknowledge(app, [message("a.events", 30), message("a.events", 31)])
    assert batching.next_to_process(app, tp) == 32
    await pipeline.on_revoked()
    assert batching.next_to_process(app, tp) == 30


async def test_an_agent_lets_the_other_in_between_slices_of_a_long_chunk(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk is decided a slice at a time: an agent waiting for the state decides its
    own chunk in between, not after the whole of the other's (here a slice is one
    message)."""
    monkeypatch.setattr(pipeline, "SLICE_SECONDS", 0.0)
    decided: list[str] = []

    async def handle(item: Message) -> None:
        decided.append(f"{item.topic}:{item.offset}")
        await asyncio.sleep(0)  # a key lookup, say: the other agent gets to wait

    ingest = [message("crm.events", n) for n in range(3)]
    commands = [message("privacy.commands", 0)]
    await asyncio.gather(pipeline.work(ingest, handle, None), pipeline.work(commands, handle, None))
    assert decided == ["crm.events:0", "privacy.commands:0", "crm.events:1", "crm.events:2"]


def busy(agent: str, stage: str) -> float:
    found = metrics.REGISTRY.get_sample_value(
        "privops_agent_busy_seconds_total", {"agent": agent, "stage": stage}
    )
    assert found is not None, (agent, stage)
    return found


async def test_an_agents_time_on_the_state_is_counted_by_stage(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deciding and flushing add the seconds the agent held the state to its busy
    counter: the share of the worker's event loop it takes."""
    monkeypatch.setattr(state, "queue_all", _queued)
    inlet = batching.Inlet("ingest", ["crm.events"])
    before = busy("ingest", "decide"), busy("ingest", "flush"), busy("workflow", "decide")

    async def handle(item: Message) -> None:
        state.put(Slot(identities, dict, dict), "S1", {"n": item.offset})
        until = time.perf_counter() + 0.01
        while time.perf_counter() < until:  # 10 ms of deciding per message
            pass

    await pipeline.work([message("crm.events", n) for n in range(3)], handle, inlet)
    await state.settle()
    decided = busy("ingest", "decide") - before[0]
    assert 0.03 <= decided < 1.0
    assert busy("ingest", "flush") > before[1]  # the chunk was flushed: nothing waits
    assert busy("workflow", "decide") == before[2]


async def _queued(records: Sequence[batching.Outgoing]) -> Awaitable[list[int]]:
    done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
    done.set_result([0] * len(records))
    return done


async def test_a_rebalance_between_slices_ends_the_chunk(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What was decided before the rebalance is flushed unacknowledged by it; the rest of
    the chunk is not decided here (the partitions' new owner replays all of it)."""
    monkeypatch.setattr(pipeline, "SLICE_SECONDS", 0.0)
    acknowledged: list[Message] = []
    monkeypatch.setattr(state, "acknowledge", acknowledged.extend)
    decided: list[int] = []
    revoking: list[asyncio.Future[None]] = []

    async def handle(item: Message) -> None:
        decided.append(item.offset)
        if not revoking:
            revoking.append(asyncio.ensure_future(pipeline.on_revoked()))
            await asyncio.sleep(0)  # the rebalance handler now waits for the state

    await pipeline.work([message("crm.events", n) for n in range(3)], handle, None)
    await asyncio.wait_for(revoking[0], 1)
    assert decided == [0]
    assert acknowledged == []
    assert state.pending == 0


async def test_a_handler_waiting_on_the_registry_gives_the_rebalance_its_lock(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler waiting out the registry or the key store (``State.backoff``, up to 30 s
    a try) holds the state lock; the revocation needs it for its flush, and past most of
    the group's rebalance timeout the worker stopped (``RebalanceTooSlow``; review,
    session 35). Now the wait ends when the rebalance begins: the chunk ends there,
    nothing fails, and the input is left to be decided again from the last commit."""
    acknowledged: list[Message] = []
    told: list[BaseException] = []
    monkeypatch.setattr(state, "acknowledge", acknowledged.extend)
    monkeypatch.setattr(state, "on_failure", told.append)
    decided: list[int] = []
    revoking: list[asyncio.Future[None]] = []

    async def handle(item: Message) -> None:
        if item.offset == 1:  # the registry is down: wait, as decode does
            revoking.append(asyncio.ensure_future(pipeline.on_revoked()))
            while True:
                await state.backoff(30.0)
        decided.append(item.offset)

    started = asyncio.get_running_loop().time()
    chunk = [message("crm.events", n) for n in range(3)]
    await asyncio.wait_for(pipeline.work(chunk, handle, None), 5)
    await asyncio.wait_for(revoking[0], 5)
    assert asyncio.get_running_loop().time() - started < 2  # not the 30 s backoff
    assert decided == [0]
    assert told == []
    assert state.failure is None
    assert acknowledged == []  # the revocation's flush acknowledges nothing
    state.rebalanced()


async def test_a_backoff_outside_a_rebalance_waits_its_time(app: Any) -> None:
    started = asyncio.get_running_loop().time()
    await state.backoff(0.3)
    assert asyncio.get_running_loop().time() - started >= 0.3
    state.rebalancing()
    try:
        with pytest.raises(Abandoned):
            await state.backoff(30.0)
    finally:
        state.rebalanced()


class _Batch:
    """aiokafka's BatchBuilder as send_batched uses it: full after ``room`` records."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, timestamp: None, key: bytes | None, value: bytes | None) -> Any:
        if len(self.records) >= self.room and self.records:
            return None
        self.records.append((key, value))
        return object()


class _Producer:
    """The producer calls send_batched makes; a log per topic-partition as the broker's."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.log: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        self.batches = 0
        # aiokafka's batches waiting for its sender: none here, each batch is "sent" at once
        self._message_accumulator = type(
            "Accumulator", (), {"_batches": {}, "_closed": False, "_exception": None}
        )()

    async def partitions_for(self, _topic: str) -> set[int]:
        return {0, 1, 2, 3}

    def create_batch(self) -> _Batch:
        return _Batch(self.room)

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> Any:
        self.batches += 1
        log = self.log.setdefault((topic, partition), [])
        base = len(log)
        log.extend(batch.records)
        delivered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        delivered.set_result(type("Meta", (), {"offset": base})())
        return delivered


async def test_send_batched_keeps_each_partitions_order_and_answers_every_offset() -> None:
    """Records go out as batches per topic-partition, in order, split when a batch is
    full; each record's offset is its batch's base plus its place; a record without a
    partition goes where the producer's own partitioner puts its key."""
    producer = _Producer(room=2)
    app = type("App", (), {"producer": type("P", (), {"_ensure_producer": lambda: producer})})
    keys = [f"subject-{n}".encode() for n in range(6)]
    records: list[batching.Outgoing] = [
        ("changelog", b"k1", b"v1", 1),
        ("out", keys[0], b"a", None),
        ("changelog", b"k2", b"v2", 1),
        ("changelog", b"k3", None, 1),  # a deletion
        ("out", keys[0], b"b", None),
        *(("out", key, b"c", None) for key in keys[1:]),
        ("changelog", b"k4", b"v4", 1),
    ]
    offsets = await batching.send_batched(app, records)  # type: ignore[arg-type]
    assert producer.log[("changelog", 1)] == [
        (b"k1", b"v1"),
        (b"k2", b"v2"),
        (b"k3", None),
        (b"k4", b"v4"),
    ]
    assert [offsets[i] for i in (0, 2, 3, -1)] == [0, 1, 2, 3]
    partitioner = DefaultPartitioner()
    for index, (topic, key, value, _) in enumerate(records):
        if topic != "out":
            continue
        partition = partitioner(key, [0, 1, 2, 3], [0, 1, 2, 3])
        assert producer.log[("out", partition)][offsets[index]] == (key, value)
    same_subject = producer.log[("out", partitioner(keys[0], [0, 1, 2, 3], [0, 1, 2, 3]))]
    assert same_subject.index((keys[0], b"a")) < same_subject.index((keys[0], b"b"))
    assert producer.batches == sum((len(log) + 1) // 2 for log in producer.log.values())


async def _waiting_batch(producer: AIOKafkaProducer, tp: TopicPartition, *values: bytes) -> Any:
    """A batch of ``values`` queued on the real aiokafka accumulator, as ``send_batch``
    queues it once it has the topic's metadata; not yet taken by the sender."""
    builder = producer.create_batch()
    for value in values:
        builder.append(timestamp=None, key=b"k", value=value)
    return await producer._message_accumulator.add_batch(builder, tp, timeout=1)


def _values(batch: Any) -> list[bytes | None]:
    """The values of a batch as the broker would read them from the request."""
    records = MemoryRecords(bytes(batch.get_data_buffer()))
    return [record.value for record in records.next_batch()]


async def test_a_flush_joins_the_batch_still_waiting_on_its_partition() -> None:
    """While a produce request is in flight, aiokafka queues no second batch for a
    partition until the first has left: a flush's records join the waiting batch, after
    what it holds, and the call returns without waiting (it used to wait, holding the
    agents' lock, for as long as the broker took). Each joined record answers its own
    offset when the batch is delivered. Real aiokafka objects; the producer never
    connects (a send that waited for the broker would time out here)."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9")
    try:
        await _joins_the_waiting_batch(producer)
    finally:
        await producer.stop()


async def _joins_the_waiting_batch(producer: AIOKafkaProducer) -> None:
    app = type("App", (), {"producer": type("P", (), {"_ensure_producer": lambda: producer})})
    first, second = TopicPartition("out", 1), TopicPartition("changelog", 0)
    delivered_first = await _waiting_batch(producer, first, b"earlier")
    await _waiting_batch(producer, second, b"e1", b"e2")
    records: list[batching.Outgoing] = [
        ("out", b"k", b"a", 1),
        ("changelog", b"k", b"b", 0),
        ("out", b"k", b"c", 1),
    ]
    delivery = await asyncio.wait_for(batching.queue_batched(app, records), 1)  # type: ignore[arg-type]
    accumulator = producer._message_accumulator
    in_flight = {tp: accumulator._pop_batch(tp) for tp in (first, second)}
    assert _values(in_flight[first]) == [b"earlier", b"a", b"c"]
    assert _values(in_flight[second]) == [b"e1", b"e2", b"b"]
    in_flight[first].done(base_offset=40)
    in_flight[second].done(base_offset=7)
    assert (await delivered_first).offset == 40
    assert await asyncio.wait_for(delivery, 1) == [41, 9, 42]


async def test_nothing_joins_a_batch_the_sender_has_taken_or_one_that_is_full() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_batch_size=1024)
    try:
        await _joins_only_a_waiting_batch_with_room(producer)
    finally:
        await producer.stop()


async def _joins_only_a_waiting_batch_with_room(producer: AIOKafkaProducer) -> None:
    tp = TopicPartition("out", 0)
    records: list[batching.Outgoing] = [("out", b"k", b"x" * 300, 0) for _ in range(5)]
    assert batching._join_waiting(producer, "out", 0, records, [0, 1]) == []  # none waits
    await _waiting_batch(producer, tp, b"y" * 300)
    joined = batching._join_waiting(producer, "out", 0, records, [0, 1, 2, 3, 4])
    assert 0 < len(joined) < 5  # room for some, not for all
    assert [members for _, members in joined] == [[i] for i in range(len(joined))]
    accumulator = producer._message_accumulator
    accumulator._exception = KafkaError("the broker refused an earlier batch")
    assert batching._join_waiting(producer, "out", 0, records, [4]) == []  # send_batch raises
    accumulator._exception = None
    accumulator._pop_batch(tp)  # the sender takes it
    assert batching._join_waiting(producer, "out", 0, records, [4]) == []


def withheld(exc: BaseException, text: str) -> str:
    """``exc`` formatted as a crash report prints it (its chain included), checked not to
    hold ``text``."""
    report = "".join(traceback.format_exception(exc))
    assert text not in report, report
    return report


async def test_an_input_no_handler_can_decide_fails_the_state_and_nothing_is_flushed(
    app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler raising what no handler expects (a bug): the worker is told to stop
    (``State.on_failure``), and neither the chunk's decisions before it nor what it
    half-wrote are flushed or acknowledged, now or later: the restart decides them again.
    The log names the input and the error's type, never its text (it may quote the
    input's personal data). Faust alone would restart the agent and leave the rest of the
    chunk undecided."""
    told: list[BaseException] = []
    queued: list[Sequence[batching.Outgoing]] = []
    acknowledged: list[Message] = []

    async def queue_all(records: Sequence[batching.Outgoing]) -> Awaitable[list[int]]:
        queued.append(records)
        return asyncio.sleep(0, result=list(range(len(records))))

    monkeypatch.setattr(state, "on_failure", told.append)
    monkeypatch.setattr(state, "queue_all", queue_all)
    monkeypatch.setattr(state, "acknowledge", acknowledged.extend)
    slot: Slot[dict[str, int]] = Slot(identities, dict, dict)
    decided: list[int] = []
    address = "ann@example.com"

    async def handle(item: Message) -> None:
        state.put(slot, f"S{item.offset}", {"n": item.offset})
        if item.offset == 1:
            raise TypeError(f"{address} is not a number")
        decided.append(item.offset)

    chunk = [message("crm.events", offset, partition=3) for offset in range(3)]
    with (
        caplog.at_level("CRITICAL", logger="streams.pipeline"),
        pytest.raises(StateFailed) as crash,
    ):
        await pipeline.work(chunk, handle, None)
    assert decided == [0]
    assert [type(exc) for exc in told] == [TypeError]
    with pytest.raises(StateFailed):
        await state.flush()
    assert queued == []
    assert acknowledged == []
    assert "S0" not in identities.data
    said = caplog.text
    assert "could not decide crm.events[3]@1 (TypeError, text withheld)" in said
    assert "in handle" in said  # where it was raised
    assert address not in said
    # What the agent crashes with, as Faust's crash report prints it: the type only.
    assert "TypeError" in withheld(crash.value, address)


@pytest.mark.parametrize("with_output", [True, False], ids=["outputs", "changelog"])
async def test_a_flush_that_raises_fails_the_state(
    app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, with_output: bool
) -> None:
    """The producer (or a store) raises while a flush hands its records over (its
    outputs, in the flush; or its changelog records, once the outputs are delivered):
    what the flush took is neither written whole nor acknowledged, so the state fails
    (the worker stops and its restart replays) instead of the agent deciding on over a
    gap its commits never pass. The log names the error's type, not its text."""
    told: list[BaseException] = []
    acknowledged: list[Message] = []
    address = "ann@example.com"

    async def queue_all(records: Sequence[batching.Outgoing]) -> Awaitable[list[int]]:
        raise RuntimeError(f"producer closed while sending {address}")

    monkeypatch.setattr(state, "on_failure", told.append)
    monkeypatch.setattr(state, "queue_all", queue_all)
    monkeypatch.setattr(state, "acknowledge", acknowledged.extend)
    slot: Slot[dict[str, int]] = Slot(identities, dict, dict)
    item = message("crm.events", 7)
    state.message = item
    state.put(slot, "S1", {"n": 7})
    if with_output:
        state.emit(COMMANDS, b"S1", b"{}")
    state.done(item)
    state.message = None

    async def flushed() -> None:
        await state.flush()  # raises here when the outputs cannot be handed over
        await state.settle()  # else here: the changelog's, once they are delivered

    with caplog.at_level("CRITICAL", logger="streams.state"), pytest.raises(StateFailed) as crash:
        await flushed()
    assert [type(exc) for exc in told] == [RuntimeError]
    assert identities.data.get("S1") is None
    assert "RuntimeError" in withheld(crash.value, address)
    with pytest.raises(StateFailed):
        await state.flush()
    assert acknowledged == []
    assert told == [state.failure]
    assert "a flush failed (RuntimeError, text withheld)" in caplog.text
    assert address not in caplog.text
