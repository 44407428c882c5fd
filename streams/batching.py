"""Whole fetches in, one write per changed key and batched sends out: the worker's hot path.

Faust hands every message to an agent through per-message machinery (a decoded event,
a queue put, several tasks and an ``asyncio.wait``: ~110 µs of CPU per message measured,
see docs/benchmarks.md) and writes every table assignment at once (JSON twice, a
changelog send, an offset put: ~200 µs). privops' agents instead take the messages of
their topics in chunks (an ``Inlet``), decide on an in-memory view of the state
(``streams.state``), and flush: each changed key once, as one RocksDB write batch and
one changelog record per key, those and every output handed to the producer as whole
batches per topic-partition (``send_batched``), and only when all of it is delivered
are the input messages acknowledged, so Faust commits their offsets.
At-least-once holds: a crash before the acknowledgement replays the chunk, and every
handler is idempotent.

This is the only module that reaches into Faust's internals. It was written for
faust-streaming 0.15.3 (pinned in pyproject.toml); ``check_faust`` stops the worker
at start-up if any internal it uses is missing, and tests/agents/test_batching.py fails
loudly on an upgrade that changes them. What it uses:
- ``Conductor._build_handler(tp, channels)``: the per-partition message callback the
  conductor builds after each assignment; wrapped so the inlets' topics go to them.
- ``Consumer.ack(message)`` (marks the offset done; Faust commits contiguous acks), and
  the consumer's ``_committed_offset`` and ``_read_offset`` (``next_to_process``).
- ``Consumer._drain_messages`` (overridden by ``InletConsumer``, to append an inlet's
  messages without a task each) and what it keeps: ``_read_offset``, ``_add_gap``,
  ``_n_acked``/``_commit_every``/``commit``, ``suspend_flow``, ``callback``; and
  ``Consumer.on_partitions_revoked`` (overridden to count revocations before Faust
  forgets the revoked partitions' offsets: a fetch never sets them again after).
- ``rocksdb.Store._db_for_partition`` and its ``_dbs`` (the open partitions),
  ``Store.set_persisted_offset``, the memory
  store's ``data`` dict, and ``Collection.changelog_topic``.
- the aiokafka driver's ``Producer._ensure_producer()`` (the app's aiokafka producer):
  ``send_batched`` hands it whole record batches (aiokafka's public ``create_batch``/
  ``send_batch``), one per topic-partition, instead of one awaited send per record.
- aiokafka's (0.14.0, checked like Faust's version) ``AIOKafkaProducer.
  _message_accumulator``: its ``_batches`` (per topic-partition, the batches still
  waiting for the sender), ``_closed`` and ``_exception``, and ``MessageBatch.append``:
  ``queue_batched`` adds a flush's records to the batch still waiting on their
  partition instead of awaiting its departure (see there).
- ``aiokafka`` driver ``Producer._settings_extra`` (the producer's extra aiokafka
  options) and the app's ``transport`` setter: ``idempotent_producer`` makes the worker's
  producer idempotent (``enable_idempotence``, ``acks=all``). Faust turns idempotence
  on only inside exactly-once transactions; without it, a send retried after a lost
  acknowledgement (a broker failing over) can write a record twice.
- the aiokafka driver's ``Consumer._new_consumer_thread`` and
  ``AIOKafkaConsumerThread._create_worker_consumer``, and aiokafka's
  ``AIOKafkaConsumer._fetch_min_bytes``/``_fetch_max_wait_ms`` (read when it starts):
  ``FetchingThread`` sets the fetch's wait, which Faust does not expose.
- ``PrometheusMonitor._metrics`` (the Faust metrics it updates) and the monitor's
  ``track_tp_end_offset``, which Faust's consumer calls for every fetched message:
  ``FetchMonitor`` does it without a label lookup each time.
- ``Channel.queue`` (a property making the channel's queue, kept in ``_queue``) and
  the app's ``FlowControlQueue(maxsize, clear_on_resume=...)``: ``HandOff`` makes
  its queue without ``clear_on_resume``, so Faust's flow control never empties it.
A smaller version of this (a batch callback per fetched partition) would be worth
offering upstream: Faust's per-message path is most of its cost for small records.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import aiokafka
import faust
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import MessageBatch
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.stores import memory
from faust.transport.conductor import Conductor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.consumer import Consumer as ConsumerBase
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, AppT, Message, TableT

from privops.core.errors import RuntimeUnavailable

log = logging.getLogger(__name__)

FAUST_VERSION = "0.15.3"
AIOKAFKA_VERSION = "0.14.0"

ConsumerCallback = Callable[[Message], Awaitable[None]]


class FaustChanged(RuntimeError):
    """The Faust installed is not the one this module was written for."""


def _methods_used() -> list[tuple[str, Any, str]]:
    """(what to call it, its owner, the method's name): every Faust method used here."""
    driver = "the aiokafka driver's "
    return [
        ("Conductor", Conductor, "_build_handler"),
        *(
            ("Consumer", ConsumerBase, name)
            for name in (
                "_drain_messages",
                "_add_gap",
                "getmany",
                "commit",
                "on_partitions_revoked",
            )
        ),
        (driver + "Consumer", aiokafka_driver.Consumer, "_new_consumer_thread"),
        (
            driver + "AIOKafkaConsumerThread",
            aiokafka_driver.AIOKafkaConsumerThread,
            "_create_worker_consumer",
        ),
        (driver + "Producer", aiokafka_driver.Producer, "_ensure_producer"),
        (driver + "Producer", aiokafka_driver.Producer, "_settings_extra"),
        ("PrometheusMonitor", PrometheusMonitor, "track_tp_end_offset"),
    ]


def check_faust() -> None:
    """Refuse to run on a Faust whose internals this module does not know."""
    problems = []
    if faust.__version__ != FAUST_VERSION:
        problems.append(f"faust-streaming {faust.__version__} (written for {FAUST_VERSION})")
    if aiokafka.__version__ != AIOKAFKA_VERSION:
        problems.append(f"aiokafka {aiokafka.__version__} (written for {AIOKAFKA_VERSION})")
    if not callable(getattr(MessageBatch, "append", None)):
        problems.append("aiokafka's MessageBatch.append is gone")
    try:
        from faust.stores import rocksdb
    except ImportError:  # pragma: no cover - rocksdict is a dependency
        rocksdb = None  # type: ignore[assignment]
    if not isinstance(getattr(faust.Channel, "queue", None), property):
        problems.append("Channel.queue is no longer a property")
    if rocksdb is not None and not hasattr(rocksdb.Store, "_db_for_partition"):
        problems.append("rocksdb.Store._db_for_partition is gone")
    for label, owner, name in _methods_used():
        if not callable(getattr(owner, name, None)):
            problems.append(f"{label}.{name} is gone")
    if problems:
        raise FaustChanged("streams.batching: " + "; ".join(problems))


class IdempotentProducer(aiokafka_driver.Producer):
    """Faust's aiokafka producer, idempotent outside transactions too: the broker drops a
    batch it already has (producer id and sequence), so a retried send writes once."""

    def _settings_extra(self) -> dict[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class FetchingThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, with fetches that wait briefly for more data.

    With Kafka's default (a fetch answers as soon as it has one byte) a trickle of
    commands, directives and ticks makes every message its own fetch, and each fetch
    names every assigned partition: at 100 commands/s the consumer thread took 23% of
    a core, 9.8% with a fetch that waits up to ``max_wait_ms`` for ``min_bytes`` (the
    Java client's fetch.max.wait.ms / fetch.min.bytes). A backlog is fetched at once as
    before; a lone message waits up to ``max_wait_ms`` more, and an idle worker fetches
    1000 / ``max_wait_ms`` times a second (6.5% of a core in the bench, at 20 ms and 60
    partitions). ``set_fetch_wait`` (the worker's settings) chooses; Faust's own is 1
    byte and 1,500 ms."""

    min_bytes = 64 * 1024
    max_wait_ms = 20

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by the consumer's start(), which makes its fetcher with them.
        consumer._fetch_min_bytes = self.min_bytes
        consumer._fetch_max_wait_ms = self.max_wait_ms
        return consumer


def set_fetch_wait(min_bytes: int, max_wait_ms: int) -> None:
    """How the worker's fetches wait for data (``FetchingThread``); before it starts."""
    if min_bytes < 1 or not 0 <= max_wait_ms <= 1500:  # Faust's own wait is the longest
        raise ValueError(f"fetch wait out of range: {min_bytes} bytes, {max_wait_ms} ms")
    FetchingThread.min_bytes = min_bytes
    FetchingThread.max_wait_ms = max_wait_ms


class InletConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, handing an inlet's messages over without a task each.

    Faust's drain loop (``Consumer._drain_messages``) delivers every fetched message as
    ``wait_first(callback(message), suspend_flow.wait())``: four tasks, an
    ``asyncio.wait``, three cancellations and the conductor's lock per message. py-spy
    put ~8% of the worker's samples under the drain loop, but most of the tasks' cost
    lands in the event loop's own frames: going without them took 46% off the CPU per
    consent event (docs/benchmarks.md, session 9). This loop is Faust's, except that a
    message of a topic an inlet takes (``inlets``, set by ``install``) is appended to it
    directly, and the loop waits only when the inlet is full or the flow is held (a
    rebalance: then the message takes Faust's path, which waits for the flow). Read
    offsets, gaps and the periodic commit are kept as Faust keeps them; every other
    topic (table changelogs in recovery, Faust's own) goes Faust's way.
    """

    # topic -> its inlet; none until ``install`` routes them (then every topic goes
    # Faust's way, as in a consumer that is not the worker's).
    inlets: Mapping[str, Inlet] = MappingProxyType({})
    # Revocations begun so far: a fetch made before one is not delivered after it.
    revocations = 0
    # Told first thing in each revocation (``install``; the worker's ``pipeline``).
    on_revocation: Callable[[], None] | None = None

    def _new_consumer_thread(self) -> FetchingThread:
        return FetchingThread(self, loop=self.loop, beacon=self.beacon)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Counted before Faust forgets the revoked partitions' offsets (``_deliver``),
        and told (``on_revocation``) before Faust's app waits for anything."""
        self.revocations += 1
        if self.on_revocation is not None:
            self.on_revocation()
        await super().on_partitions_revoked(revoked)

    async def _drain_messages(self, fetcher: Any) -> None:
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                revocations = self.revocations
                fetched = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany may not give the loop a turn
                if not self.should_stop:
                    await self._deliver(fetched, revocations)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(
        self, fetched: AsyncIterator[tuple[TP, Message]], revocations: int | None = None
    ) -> None:
        """One fetch's messages, each to its inlet or through Faust's callback, until a
        revocation begins (``revocations``: the count when the fetch was made).

        Faust forgets a revoked partition's read offset first thing in the revocation,
        and the worker's handler then drops what the inlets hold. A message handed over
        before that, or waited on through it (a full inlet), must not set the offset
        again: after the assignment the fetcher reads the partition from its commit,
        and a stale read offset dropped every message before it as "seen" (neither
        decided nor acknowledged: Faust then committed past them, or never committed
        the partition again; Faust's own drain loop has the same flaw). Nor is a
        message fetched before the revocation delivered after it: its partition may be
        another's now, and if it stays, it is read again from its commit."""
        if revocations is None:
            revocations = self.revocations
        callback = self.callback
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        flow_open = self.app.flow_control.is_active
        suspend_flow = self.suspend_flow
        inlets = self.inlets
        since_yield = 0
        async for tp, message in fetched:
            since_yield += 1
            if since_yield > 100:
                await asyncio.sleep(0)
                since_yield = 0
            if self.revocations != revocations:
                return
            offset = message.offset
            read = get_read_offset(tp)
            if read is not None and offset < read:
                continue  # seen before a seek: Faust drops it too
            if read and offset - read > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, read + 1, offset)
            if commit_every is not None and self._n_acked >= commit_every:
                self._n_acked = 0
                await self.commit()
                if self.revocations != revocations:
                    return
            inlet = inlets.get(tp.topic)
            if inlet is not None and flow_open() and not suspend_flow.is_set():
                if inlet.put(message):  # full: hold the fetcher until there is room
                    await self.wait_first(inlet.room(), suspend_flow.wait())
            else:
                await self.wait_first(callback(message), suspend_flow.wait())
            if self.revocations != revocations:
                return  # the revocation forgot this partition's offsets: keep it so
            set_read_offset(tp, offset)


class IdempotentTransport(aiokafka_driver.Transport):
    Producer = IdempotentProducer
    Consumer = InletConsumer


def idempotent_producer(app: AppT) -> None:
    """Make ``app``'s producer idempotent. Call before anything touches ``app.transport``
    (the producer is made from it); refuses a ``broker`` that is not Kafka."""
    url = app.conf.broker_consumer[0]
    if url.scheme not in ("kafka", "aiokafka"):
        raise FaustChanged(f"streams.batching: idempotent producer needs kafka://, not {url}")
    app.transport = IdempotentTransport(app.conf.broker_consumer, app)


class FetchMonitor(PrometheusMonitor):
    """Faust's Prometheus monitor, finding each partition's end-offset gauge once.

    Faust's consumer reports a partition's end offset for every message it fetches
    (``Consumer.getmany``), and Faust's monitor looks the gauge's labelled child up each
    time: 2.3 µs a message in process (0.57 µs here), 1.7% of a consent event's samples
    under py-spy (docs/benchmarks.md, session 18). The same gauge, the same values, and
    Faust's own record of them (``tp_end_offsets``, which its lag figures read)."""

    def __init__(self, metrics: FaustMetrics, **kwargs: Any) -> None:
        super().__init__(metrics=metrics, **kwargs)
        self._end_offsets: dict[TP, Any] = {}

    def track_tp_end_offset(self, tp: TP, offset: int) -> None:
        self.tp_end_offsets[tp] = offset
        gauge = self._end_offsets.get(tp)
        if gauge is None:
            end_offset = self._metrics.topic_partition_end_offset
            gauge = end_offset.labels(topic=tp.topic, partition=tp.partition)
            self._end_offsets[tp] = gauge
        gauge.set(offset)


def fetch_monitor(app: AppT) -> None:
    """Give ``app`` a ``FetchMonitor`` over the metrics of the Prometheus monitor that
    ``faust.sensors.prometheus.setup_prometheus_sensors`` installed (call after it)."""
    installed = app.monitor
    if not isinstance(installed, PrometheusMonitor):
        raise FaustChanged("streams.batching: no Prometheus monitor to replace")
    app.monitor = FetchMonitor(metrics=installed._metrics)


# --- outputs ----------------------------------------------------------------------------

Outgoing = tuple[str, bytes | None, bytes | None, int | None]
"""A record to send: topic, key, value, partition (None: by key, as the producer would)."""

_partitioner = DefaultPartitioner()  # the producer's own (Faust sets no other)


@functools.lru_cache(maxsize=1 << 16)
def _keyed_partition(key: bytes, known: tuple[int, ...]) -> int:
    """Where the producer's partitioner puts ``key`` (pure-Python murmur2: remembered,
    a subject's outputs go to the same place every flush)."""
    partition: int = _partitioner(key, known, known)
    return partition


async def _by_partition(
    producer: AIOKafkaProducer, records: Sequence[Outgoing]
) -> dict[tuple[str, int], list[int]]:
    """The records' indices per topic-partition, in order."""
    partitions: dict[str, tuple[int, ...]] = {}
    by_tp: dict[tuple[str, int], list[int]] = {}
    for index, (topic, key, _, partition) in enumerate(records):
        if partition is None:
            known = partitions.get(topic)
            if known is None:
                known = partitions[topic] = tuple(sorted(await producer.partitions_for(topic)))
            if key is None:
                partition = _partitioner(None, known, known)
            else:
                partition = _keyed_partition(key, known)
        by_tp.setdefault((topic, partition), []).append(index)
    return by_tp


def _join_waiting(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    records: Sequence[Outgoing],
    indices: list[int],
) -> list[tuple[Awaitable[Any], list[int]]]:
    """Add the first of ``indices`` to the batch still waiting for the sender on
    ``topic``/``partition``, if there is one, for as long as it has room; each added
    record's delivery (its own offset) and index. This is what aiokafka's own ``send``
    does with a waiting batch (``MessageAccumulator.add_message``), without a coroutine
    per record. A batch in flight is no longer waiting (the sender took it), and a
    retried one refuses records (its builder is closed), so nothing joins a batch out
    of order; a producer closing or failed gets nothing here (``send_batch`` says why)."""
    accumulator = producer._message_accumulator
    joined: list[tuple[Awaitable[Any], list[int]]] = []
    if accumulator._closed or accumulator._exception is not None:
        return joined
    waiting = accumulator._batches.get(TopicPartition(topic, partition))
    if not waiting:
        return joined
    batch: MessageBatch = waiting[-1]
    for index in indices:
        _, key, value, _ = records[index]
        delivery = batch.append(key, value, None)
        if delivery is None:
            break  # full: the rest go in new batches, each queued once this one leaves
        joined.append((delivery, [index]))
    return joined


async def send_batched(app: AppT, records: Sequence[Outgoing]) -> list[int]:
    """Send ``records`` and return each one's offset once every one is delivered."""
    delivery = await queue_batched(app, records)
    return await delivery


async def queue_batched(app: AppT, records: Sequence[Outgoing]) -> asyncio.Future[list[int]]:
    """Hand ``records`` to the producer; return, once all of them are queued, what
    answers each one's offset when every one is delivered.

    Each topic-partition's records go as whole producer batches, in order, through the
    app's (idempotent) aiokafka producer: one future per batch, not one send, future and
    callback per record (~30% of the worker's CPU when each was sent alone). A record
    without a partition goes where the producer's default partitioner puts its key, as
    every other producer of privops' topics does (murmur2, the Java client's). Records
    queued by a later call follow these on every partition (the producer keeps one
    batch per partition in its queue, in the order handed to it), so a caller that
    queues one call after another never reorders a partition.

    aiokafka keeps one produce request in flight per broker, and queues a new batch for
    a partition only once the one before it has left. So while a request is slow to
    come back, a flush used to wait for it here, holding the agents' lock: at 100
    commands/s, one produce request that the broker took ~170 ms to append (a shared
    disk's write stall) held every decision for as long (measured, session 12). Records
    for a partition whose last batch is still waiting (not yet sent) are now added to
    that batch (``_join_waiting``), after what it holds, so the call returns at once and
    they leave with it; only a full batch is waited for, as before.
    """
    producer: AIOKafkaProducer = app.producer._ensure_producer()  # type: ignore[attr-defined]
    by_tp = await _by_partition(producer, records)

    async def one_partition(
        topic: str, partition: int, indices: list[int]
    ) -> list[tuple[Awaitable[Any], list[int]]]:
        # In order: a batch is queued once the one before it on this partition is drained.
        sent = _join_waiting(producer, topic, partition, records, indices)
        at = len(sent)
        while at < len(indices):
            batch = producer.create_batch()
            members: list[int] = []
            while at < len(indices):
                _, key, value, _ = records[indices[at]]
                if batch.append(timestamp=None, key=key, value=value) is None:
                    break  # full (a batch always takes its first record)
                members.append(indices[at])
                at += 1
            sent.append((await producer.send_batch(batch, topic, partition=partition), members))
        return sent

    queued = await asyncio.gather(*(one_partition(t, p, i) for (t, p), i in by_tp.items()))

    async def delivered() -> list[int]:
        offsets = [-1] * len(records)
        for sent in queued:
            for delivery, members in sent:
                base = (await delivery).offset
                for relative, index in enumerate(members):
                    offsets[index] = base + relative
        return offsets

    return asyncio.ensure_future(delivered())


class Inlet:
    """The messages of some topics, taken from Faust's conductor as they are fetched.

    ``take`` hands them out in chunks (all partitions mixed, in fetch order per
    partition). When ``high_water`` messages wait, the fetcher is held back (the
    callback awaits), which is Faust's own back-pressure path.

    Messages of the ``background`` topics (the timers' ticks) wait behind the others:
    a chunk holds them only when nothing else waits, and at most ``BACKGROUND_CHUNK``
    of them, so a command that arrives behind a sweep's burst of overdue re-sends waits
    for a few ticks, not the whole burst. Each topic keeps its own order (a topic's
    messages are all one kind), so no partition is reordered. Behind is not never: once
    the oldest background message has waited ``BACKGROUND_MAX_WAIT`` seconds (ticks
    carry deadline alerts), a chunk of them goes first, taking turns with the rest, so
    a flood of commands slows the ticks down but cannot stop them, and a backlog of
    overdue ticks cannot stop the commands either.
    """

    BACKGROUND_CHUNK = 16
    BACKGROUND_MAX_WAIT = 1.0

    def __init__(
        self,
        name: str,
        topics: Iterable[str],
        high_water: int = 20_000,
        *,
        background: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.topics = frozenset(topics)
        self.background = frozenset(background)
        if not self.background <= self.topics:
            raise ValueError(f"inlet {name}: background topics must be among its topics")
        self.high_water = high_water
        self._buffer: deque[Message] = deque()
        # Background messages, each with when it arrived (``clock``).
        self._later: deque[tuple[float, Message]] = deque()
        self._clock = clock
        # The last chunk was of overdue background messages: the next is of the rest.
        self._took_overdue = False
        # Chunks taken and handed on but not yet picked up by the agent (streams.pipeline).
        self.carried = 0
        # Since when messages have waited with no chunk taken (None: none wait), and
        # since when the agent has worked on its current chunk (None: on none).
        self._waiting_since: float | None = None
        self._working_since: float | None = None
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._buffer) + len(self._later)

    def put(self, message: Message) -> bool:
        """Add ``message``; True when the inlet is full (the fetcher waits for ``room``)."""
        if message.topic in self.background:
            self._later.append((self._clock(), message))
        else:
            self._buffer.append(message)
        if self._waiting_since is None:
            self._waiting_since = self._clock()
        self._arrived.set()
        if len(self) < self.high_water:
            return False
        self._room.clear()
        return True

    async def room(self) -> None:
        """Until fewer than half of ``high_water`` messages wait (or the inlet is dropped)."""
        await self._room.wait()

    def handler(self, app: AppT) -> ConsumerCallback:
        """Faust's way in (a callback per message, for a consumer that is not an
        ``InletConsumer``, and while the flow is held)."""
        acquire_flow_control = app.flow_control.acquire

        async def on_message(message: Message) -> None:
            # Held while a rebalance is under way, as Faust's own handler is; the
            # consumer is re-positioned at the committed offsets after it.
            await acquire_flow_control()
            if self.put(message):
                await self.room()

        return on_message

    async def take(self, limit: int) -> list[Message]:
        """Up to ``limit`` messages, waiting until there is at least one; background
        ones only when nothing else waits or the oldest has waited too long, and fewer
        of them."""
        while not (self._buffer or self._later):
            self._arrived.clear()
            await self._arrived.wait()
        overdue = not self._took_overdue and self._overdue()
        self._took_overdue = overdue and bool(self._buffer)
        if self._buffer and not overdue:
            chunk = [self._buffer.popleft() for _ in range(min(limit, len(self._buffer)))]
        else:
            count = min(limit, self.BACKGROUND_CHUNK, len(self._later))
            chunk = [self._later.popleft()[1] for _ in range(count)]
        waiting = len(self)
        self._waiting_since = self._clock() if waiting else None
        if waiting < self.high_water // 2:
            self._room.set()
        return chunk

    def working(self, busy: bool) -> None:
        """The agent starts (True) or ends (False) a chunk taken from here."""
        self._working_since = self._clock() if busy else None

    def stalled_for(self) -> float:
        """Seconds the agent has not moved on: the longer of how long messages have
        waited here with no chunk taken, and how long its current chunk has taken (0
        when nothing waits and it works on nothing). Under load a chunk is taken and
        finished every few hundred milliseconds, so minutes mean the agent is stuck."""
        started = [t for t in (self._waiting_since, self._working_since) if t is not None]
        return self._clock() - min(started) if started else 0.0

    def _overdue(self) -> bool:
        """The oldest background message has waited ``BACKGROUND_MAX_WAIT`` or more."""
        later = self._later
        return bool(later) and self._clock() - later[0][0] >= self.BACKGROUND_MAX_WAIT

    def drop(self) -> int:
        """Forget what waits (a rebalance: Faust seeks every partition back to its
        committed offset, so nothing unacknowledged is lost)."""
        dropped = len(self)
        self._buffer.clear()
        self._later.clear()
        # Chunks already handed on belong to the old consumer generation: the agent's
        # stream skips them, so none of them is still to come.
        self.carried = 0
        self._waiting_since = None
        self._room.set()
        return dropped


class HandOff(faust.Channel[Any]):
    """The in-memory channel an inlet's chunks take to their agent (streams.pipeline).

    Faust empties every channel queue it made (``clear_on_resume``) at each revocation
    and each time its flow control resumes, the last time at the end of a rebalance's
    recovery, after the stream partitions were sought to their committed offsets.
    Emptying cancels a put waiting for room, too. For a chunk handed over after that
    seek, both were losses: the chunk waiting in the queue was gone and nothing would
    read its messages again (the read offsets were past them), and the pump whose put
    was cancelled ended, so its agent got nothing more (a consent withdrawal was lost
    so in the 3-worker kill test in session 18). This channel's queues are never
    emptied: a chunk of an earlier consumer generation is skipped by the agent's
    stream (each carrier bears the generation it was taken in), a chunk of the current
    one is decided, and a pump waiting for room waits on."""

    @property
    def queue(self) -> Any:  # a ThrowableQueue, as Faust's own channel's
        if self._queue is None:
            maxsize = self.maxsize
            if maxsize is None:
                maxsize = self.app.conf.stream_buffer_maxsize
            self._queue = self.app.FlowControlQueue(maxsize=maxsize, clear_on_resume=False)
        return self._queue


def install(
    app: AppT, inlets: Iterable[Inlet], on_revocation: Callable[[], None] | None = None
) -> None:
    """Subscribe the inlets' topics and route their messages to the inlets; tell
    ``on_revocation`` first thing in each revocation."""
    by_topic = {topic: inlet for inlet in inlets for topic in inlet.topics}
    conductor = app.topics
    build = conductor._build_handler  # type: ignore[attr-defined]
    handlers: dict[str, ConsumerCallback] = {}

    def build_handler(tp: TP, channels: Any) -> ConsumerCallback:
        inlet = by_topic.get(tp.topic)
        if inlet is None:
            callback: ConsumerCallback = build(tp, channels)
            return callback
        if inlet.name not in handlers:
            handlers[inlet.name] = inlet.handler(app)
        return handlers[inlet.name]

    conductor._build_handler = build_handler  # type: ignore[attr-defined]
    consumer = app.consumer
    if isinstance(consumer, InletConsumer):  # the worker's: messages go straight in
        consumer.inlets = by_topic
        consumer.on_revocation = on_revocation
    # A channel per inlet makes the conductor subscribe its topics (and build handlers
    # for their partitions); nothing ever reads the channel itself.
    conductor.add(
        app.topic(
            *sorted(by_topic),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
    )


# Per partition, the offset after the last one this worker acknowledged (``acknowledge``;
# forgotten at each revocation): where what is not yet processed starts.
_acknowledged: dict[TP, int] = {}


def acknowledge(app: AppT, messages: Iterable[Message]) -> None:
    """Mark messages done; Faust commits each partition up to its contiguous acks."""
    consumer = app.consumer
    acknowledged = _acknowledged
    for message in messages:
        consumer.ack(message)
        acknowledged[message.tp] = message.offset + 1


def forget_acknowledged() -> None:
    """Partitions are moving: what was acknowledged here before says nothing after."""
    _acknowledged.clear()


def next_to_process(app: AppT, tp: TP) -> int | None:
    """The first offset of ``tp`` this worker has not processed: after its last
    acknowledgement, else the group's committed offset, else after the last message
    read (None before any). Messages fetched but not yet decided and delivered, up to
    an inlet's ``high_water``, are not processed: the read offset alone hid them."""
    consumer = app.consumer
    done = _acknowledged.get(tp)
    committed = consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
    known = [offset for offset in (done, committed) if offset is not None]
    if known:
        return max(known)
    read = consumer._read_offset.get(tp)  # type: ignore[attr-defined]
    return None if read is None else read + 1


# --- table storage --------------------------------------------------------------------


def holds_python(table: TableT[Any, Any]) -> bool:
    """The table's store keeps Python values (the memory store), not bytes (RocksDB)."""
    return isinstance(table.data, memory.Store)


Stored = tuple[Any, bytes | None]
"""A value as ``write_partition`` stores it: (its JSON-able form, kept by a store of Python
values only; its JSON bytes, for RocksDB and the changelog), or (None, None) to delete."""


def write_partition(table: TableT[Any, Any], partition: int, items: dict[str, Stored]) -> None:
    """Write one partition's changed keys to the table's local store in one batch.

    The memory store keeps Python values by key; RocksDB keeps bytes per partition,
    written as one WriteBatch.
    """
    store = table.data
    if isinstance(store, memory.Store):
        for key, (value, _) in items.items():
            if value is None:
                store.data.pop(key, None)
            else:
                store.data[key] = value
        return
    from rocksdict import WriteBatch

    batch = WriteBatch(raw_mode=True)
    index = store._key_index  # type: ignore[attr-defined]
    for key, (_, raw) in items.items():
        encoded = key.encode()
        if raw is None:
            batch.delete(encoded)
        else:
            batch.put(encoded, raw)
        index[encoded] = partition
    store._db_for_partition(partition).write(batch)  # type: ignore[attr-defined]


def stored_value(table: TableT[Any, Any], item: Stored) -> Any:
    """What ``read_partition`` answers for a key once ``item`` is written to it."""
    value, raw = item
    store = table.data
    if isinstance(store, memory.Store) or raw is None:
        return value
    return store._decode_value(raw)  # type: ignore[attr-defined]


def read_partition(
    table: TableT[Any, Any], partition: int, key: str, *, open_only: bool = False
) -> Any:
    """The stored value of ``key`` in ``partition`` (JSON-decoded), or None.

    ``open_only``: read only a partition whose database is open here (the store's
    ``_dbs``), else ``RuntimeUnavailable``. An HTTP view must not open, or create, the
    database of a partition Faust has just closed on a revocation."""
    store = table.data
    if isinstance(store, memory.Store):
        return store.data.get(key)
    if open_only:
        db = store._dbs.get(partition)  # type: ignore[attr-defined]
        if db is None:
            raise RuntimeUnavailable(f"partition {partition} of {table.name} is not open here")
    else:
        db = store._db_for_partition(partition)  # type: ignore[attr-defined]
    raw = db.get(key.encode())
    if raw is None:
        return None
    return store._decode_value(raw)  # type: ignore[attr-defined]


def changelog_topic(table: TableT[Any, Any]) -> str:
    name: str = table.changelog_topic.get_topic_name()
    return name


def persist_offsets(table: TableT[Any, Any], offsets: dict[int, int]) -> None:
    """Remember the changelog offsets written, so a restart recovers only what follows."""
    store = table.data
    if isinstance(store, memory.Store):
        return
    topic = changelog_topic(table)
    for partition, offset in offsets.items():
        store.set_persisted_offset(TP(topic, partition), offset)  # type: ignore[attr-defined]
