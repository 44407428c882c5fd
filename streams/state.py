"""The agents' view of the tables: read through, written back, flushed with the outputs.

An agent decides on a chunk of input messages at a time. Every table read and write
goes through ``state``, against the partition of the message being processed (every
input is keyed by subject id, so that partition owns everything the decision touches).
A write stays here, decoded, until the next ``flush``: then every output waiting in
``state`` is sent; once the broker has them, each changed key's changelog record; once
it has those, each changed key is written once to the local store (streams.batching)
and the chunk's input messages are acknowledged. Reads see the writes not yet flushed
or not yet stored, so a subject's second event in a chunk builds on its first. Nothing
in a table (its changelog or its store) says an input was decided before its outputs
are delivered, so a replay after any failure sends them again (``State.flush``).

Decoded values are also kept after a flush (a bounded LRU, dropped on every
rebalance), so a hot subject is not read and validated again per event. On the memory
store (agent tests, which edit and clear tables directly) only unflushed writes are
kept; every other read goes to the table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiokafka.errors import KafkaError
from faust.types import Message, TableT
from pydantic import BaseModel

from privops.adapters import metrics
from privops.core import sealing
from privops.core.errors import RuntimeUnavailable
from privops.core.fieldcrypt import DataKey
from privops.core.sealing import TableSealing
from streams import batching
from streams.app import app, settings

log = logging.getLogger(__name__)

V = TypeVar("V")
M = TypeVar("M", bound=BaseModel)
_MISSING: Any = object()

CACHE_SIZE = 200_000
# Flushes are dropped only while partitions move (``Unsealable``), for the moment between
# the key store's revocation and the state's (``rebalanced``). Dropping for longer means
# no rebalance is coming to end it: the worker would take and drop input for ever.
DROPPING_LIMIT_SECONDS = 60.0

QueueAll = Callable[[Sequence[batching.Outgoing]], Awaitable[Awaitable[list[int]]]]
"""Hands records to the producer; once all are queued, returns what answers each one's
offset when all are delivered (streams.batching.queue_batched)."""


class Sealer(Protocol):
    """Where the keys that seal privops' own copies of personal data come from
    (streams.sealing; installed when the worker starts, absent in agent tests that do
    not ask for it)."""

    async def ready(self) -> None:
        """Wait until the keys of the owned partitions are read (before reading tables)."""
        ...

    async def storage_keys(self, wanted: Mapping[str, int]) -> dict[str, DataKey | None]:
        """Each subject's storage key (subject id -> its partition), None for a subject
        with nothing left to seal under. ``Unsealable`` when the keys cannot be had now."""
        ...

    def lookup(self, key_id: str) -> DataKey | None:
        """A key by id from the rings this worker holds (None: shredded)."""
        ...


BACKOFF_CHECK_SECONDS = 0.25
"""How often a handler waiting to retry looks whether a rebalance began."""


class Unsealable(Exception):
    """The flush cannot have its keys because the partitions are moving: it is dropped,
    and the new owner replays its inputs."""


@dataclass(frozen=True, slots=True)
class SealedOutput:
    """An output holding personal values: encoded at the flush, once its subject's
    storage key is known (``encode(key)``; None: the values are blanked)."""

    topic: str
    key: bytes | None
    subject_id: str
    partition: int
    encode: Callable[[DataKey | None], bytes]


@dataclass(frozen=True)
class Slot(Generic[V]):
    """One table with how its values are decoded from and encoded to JSON.

    ``dump``, when given, writes a value's JSON bytes directly (pydantic's serializer,
    in Rust), the same JSON as ``json.dumps(encode(value))`` without the Python pass.
    """

    table: TableT[Any, Any]
    decode: Callable[[Any], V]
    encode: Callable[[V], Any]
    dump: Callable[[V], bytes] | None = None
    # Personal values in this table's JSON are sealed under the subject's key when
    # written, and opened when read (privops.core.sealing).
    sealing: TableSealing | None = None

    @property
    def name(self) -> str:
        name: str = self.table.name
        return name


def model_slot(
    table: TableT[Any, Any], model: type[M], sealing: TableSealing | None = None
) -> Slot[M]:
    """A table whose values are ``model``s, stored as their JSON."""

    def encode(value: M) -> Any:
        return value.model_dump(mode="json")

    def dump(value: M) -> bytes:
        return value.__pydantic_serializer__.to_json(value)

    return Slot(table, model.model_validate, encode, dump, sealing)


class NoRebalance(RuntimeError):
    """Flushes were dropped (the partitions were moving) and no rebalance came after."""


class Abandoned(Exception):
    """A handler gave up on its input while waiting out the registry or the key store,
    because a rebalance began (``State.backoff``): the chunk ends there, undecided and
    unacknowledged from that input on, and the partition's next owner decides it again
    from the last commit. Waiting on with the state lock held kept the revocation from
    its flush past the group's patience (``RebalanceTooSlow``), and the worker stopped
    (review, session 35)."""


class RebalanceTooSlow(RuntimeError):
    """A revocation's deliveries outlasted most of the group's rebalance timeout."""


class StateFailed(RuntimeError):
    """What every flush raises once the state has failed (``State.fail``), and what an
    agent then crashes with: the cause's type only. Its text may quote personal data
    (an input's value in a handler's error) and Faust logs an agent's crash with its
    text; the cause is ``State.failure``, and the log line that failed the state says
    where it was raised."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(
            f"{type(cause).__name__} (text withheld): nothing decided from now on is "
            "written or acknowledged"
        )


Write = tuple[Slot[Any], int, dict[str, batching.Stored]]
"""One table partition's changed keys, as a flush writes them to the local store."""


@dataclass(frozen=True, slots=True)
class Flush:
    """What one flush writes locally once its records are delivered, its changelog
    records (one per written key, in ``writes``' order), the inputs it acknowledges, and
    the agent whose flush it is (its busy time includes the local write)."""

    writes: list[Write]
    changelog: list[batching.Outgoing]
    done: list[Message]
    agent: str | None = None


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A flush's failure reaches the state through its delivery task; a future of its
    that nobody may ask (``queued`` when no flush follows, its changelog's delivery
    when the flush before failed first) must not make asyncio warn."""
    if not future.cancelled():
        future.exception()


class State:
    """Write-back table view, waiting outputs and processed inputs, flushed together."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        # Counts rebalances: an agent holding a chunk across one stops deciding it.
        self.generation = 0
        self.message: Message | None = None
        self._cache: OrderedDict[tuple[str, int, str], Any] = OrderedDict()
        self._dirty: dict[tuple[str, int], dict[str, Any]] = {}
        self._slots: dict[str, Slot[Any]] = {}
        self._out: list[tuple[str, bytes | None, bytes | None] | SealedOutput] = []
        self._done: list[Message] = []
        self.cache_size = 0 if settings.store.startswith("memory:") else CACHE_SIZE
        self.queue_all: QueueAll = _queue_all
        # The last flush's delivery: its offsets persisted and its inputs acknowledged
        # once the broker has it, after every flush before it (``_delivered``).
        self._delivering: asyncio.Future[None] | None = None
        # Resolved once the last flush's outputs are delivered and its changelog records
        # queued (the next flush queues its own after it: ``_delivered``).
        self._changelog_queued: asyncio.Future[None] | None = None
        # What flushes wrote that is not in the local stores yet (it goes there once
        # delivered): (table, partition) -> key -> (the writing flush's items, the value
        # as the store will hold it). A flush releases only what it still holds itself.
        self._held: dict[tuple[str, int], dict[str, tuple[object, batching.Stored]]] = {}
        # Set when a flush was dropped because the partitions are moving (``Unsealable``):
        # every flush is dropped until the rebalance (``rebalanced``), so nothing decided
        # on after the dropped inputs is sent, stored or acknowledged before they are.
        self._dropping = False
        self._dropping_since = 0.0  # time.monotonic() of the first dropped flush
        # Told after each flush whether its outputs were handed over (True) or dropped
        # (False): the global views undo a dropped flush's puts (``GlobalView.put``).
        self._settled: list[Callable[[bool], None]] = []
        self._rebalancing = False  # between ``rebalancing`` and ``rebalanced``
        self.revocation_deadline: float | None = None  # loop time (``rebalancing``)
        # How processed inputs are acknowledged (streams.pipeline sets it for the
        # inlets' Kafka messages; agent tests have none).
        self.acknowledge: Callable[[list[Message]], None] = lambda _messages: None
        # Seals personal values written to the sealing tables and outputs (the worker
        # installs it; without one they are written as they are: agent tests).
        self.sealer: Sealer | None = None
        # Told once when nothing decided from then on may be written or acknowledged
        # (``fail``): streams.pipeline stops the worker; agent tests are told nothing,
        # and every flush raises the failure.
        self.on_failure: Callable[[BaseException], None] = lambda _exc: None
        self.failure: BaseException | None = None

    # --- where ---------------------------------------------------------------------

    @property
    def partition(self) -> int:
        """The partition of the message being processed (0 outside one: agent tests)."""
        return self.message.partition if self.message is not None else 0

    # --- tables --------------------------------------------------------------------

    def get(self, slot: Slot[V], key: str) -> V | None:
        return self.get_at(slot, self.partition, key)

    def get_at(self, slot: Slot[V], partition: int, key: str) -> V | None:
        """``key``'s value in ``partition`` (``get`` is this, on the message's partition)."""
        return self._read(slot, partition, key, remember=True)

    def peek_at(self, slot: Slot[V], partition: int, key: str) -> V | None:
        """``get_at`` for a reader outside the agents (an HTTP view): the newest value
        decided (a write not yet flushed, or flushed and not yet stored), else the
        store's, without keeping what it decodes: a view may read while the partition
        is recovering, and the agents must never build on a value read then. Only a
        partition whose store is open here is read. ``RuntimeUnavailable`` when no
        answer can be trusted now: the state failed (what it holds will never be
        stored), flushes are being dropped (their values will be decided again), or the
        partition is not open here (it just moved)."""
        if self.failure is not None or self._dropping:
            raise RuntimeUnavailable("the worker's state is being replayed or stopping")
        return self._read(slot, partition, key, remember=False)

    def _read(self, slot: Slot[V], partition: int, key: str, *, remember: bool) -> V | None:
        dirty = self._dirty.get((slot.name, partition))
        if dirty is not None and key in dirty:
            return dirty[key]  # type: ignore[no-any-return]
        ckey = (slot.name, partition, key)
        value = self._cache.get(ckey, _MISSING)
        if value is not _MISSING:
            if remember:
                self._cache.move_to_end(ckey)
            return value  # type: ignore[no-any-return]
        held = self._held.get((slot.name, partition))
        entry = held.get(key) if held is not None else None
        if entry is not None:  # flushed, not delivered yet
            stored = batching.stored_value(slot.table, entry[1])
        else:
            stored = batching.read_partition(slot.table, partition, key, open_only=not remember)
        raw = self.opened(slot, key, stored)
        decoded = slot.decode(raw) if raw is not None else None
        if remember:
            self._remember(ckey, decoded)
        return decoded

    def opened(self, slot: Slot[Any], key: str, raw: Any) -> Any:
        """A stored value (JSON) with its sealed personal values opened (for views that
        read a table directly too); without them if their key is gone."""
        if raw is None or slot.sealing is None or self.sealer is None:
            return raw
        return sealing.open_(raw, slot.sealing, slot.sealing.subject(key, raw), self.sealer.lookup)

    def put(self, slot: Slot[V], key: str, value: V) -> None:
        """``value`` becomes ``key``'s value: visible at once, stored at the next flush."""
        self._slots[slot.name] = slot
        self._dirty.setdefault((slot.name, self.partition), {})[key] = value
        self._remember((slot.name, self.partition, key), value)

    def _remember(self, ckey: tuple[str, int, str], value: Any) -> None:
        if not self.cache_size:
            return
        self._cache[ckey] = value
        self._cache.move_to_end(ckey)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # --- outputs and inputs --------------------------------------------------------

    def on_outputs_settled(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener`` after each flush: True when its outputs were handed over,
        False when it was dropped (its inputs will be decided again)."""
        self._settled.append(listener)

    def _tell_settled(self, handed_over: bool) -> None:
        for listener in self._settled:
            listener(handed_over)

    def emit(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        """Send ``value`` at the next flush (in order with the other outputs)."""
        self._out.append((topic, key, value))

    def emit_sealed(
        self,
        topic: str,
        key: bytes | None,
        subject_id: str,
        encode: Callable[[DataKey | None], bytes],
        plain: Callable[[], bytes],
    ) -> None:
        """Send what ``encode`` makes of the subject's storage key at the next flush;
        without a sealer (agent tests), ``plain()``."""
        if self.sealer is None:
            self.emit(topic, key, plain())
            return
        self._out.append(SealedOutput(topic, key, subject_id, self.partition, encode))

    def done(self, message: Message) -> None:
        """``message`` is decided: acknowledge it once what it caused is delivered."""
        self._done.append(message)

    @property
    def pending(self) -> int:
        return len(self._done)

    # --- flush ---------------------------------------------------------------------

    async def flush(self, *, acknowledge: bool = True, agent: str | None = None) -> None:
        """Hand every output to the producer and, once the broker has them, every changed
        key's changelog record; once those are delivered too, write each changed key to
        the local store and acknowledge the inputs (not during a rebalance: the
        partitions may be gone; their inputs are replayed).

        The order is what makes a replay whole (``_delivered``): whatever stopped a
        flush part-way, its tables (changelog and local store) do not yet say its inputs
        were decided unless its outputs were delivered, so the restart that replays
        those inputs decides them again and sends their outputs again, never skipping
        them as already done. Reads see a flushed value at once (``_held``).

        The flush returns once its outputs are queued, in order after the last flush's:
        the agent decides on while the broker answers (a command no longer waits out a
        round trip per flush before the next is decided). Acknowledgements stay in flush
        order and follow delivery, so at-least-once holds. A delivery that failed fails
        the state (``fail``: the worker stops, streams.pipeline); so does a flush that
        raises (a store, the producer), which leaves what it took neither written whole
        nor acknowledged. Once failed, every flush (and ``settle``) raises ``StateFailed``.

        With a sealer, the subjects' storage keys are had first; if the partitions moved
        meanwhile, nothing is written or sent and nothing acknowledged, by this flush or
        any other until the rebalance (``rebalanced``): the inputs are replayed from the
        last commit, by the partitions' next owner, as after a crash.

        A flush cancelled part-way (the worker stopping) may have handed over part of
        its outputs, and what is decided after it builds on it: nothing more is written
        or acknowledged either (the state fails; quietly if the worker is stopping)."""
        self._raise_if_failed()
        try:
            await self._flush(acknowledge, agent)
        except asyncio.CancelledError as exc:
            if app.should_stop:
                self.failure = self.failure or exc
            else:
                self.fail(exc)
            raise
        except StateFailed:  # said where it was raised
            raise
        # A store, the producer, a bug: not one input's fault; raised again, sanitized.
        except Exception as exc:  # noqa: BLE001
            log.critical(
                "a flush failed (%s, text withheld); nothing more is written:\n%s",
                type(exc).__name__,
                error_frames(exc),
            )
            self.fail(exc)
            raise StateFailed(exc) from None

    async def _flush(self, acknowledge: bool, agent: str | None) -> None:
        if not self._dropping:
            try:  # first, while the writes are still visible (an erasure's consent state)
                keys, opened = await self._storage_keys(self._dirty, self._out)
            except Unsealable as exc:
                self._dropping, self._dropping_since = True, time.monotonic()
                log.warning(
                    "flush of %d inputs dropped (%s); they will be replayed, and every "
                    "flush is dropped until the rebalance",
                    len(self._done),
                    exc,
                )
        if self._dropping:
            self._dirty, self._out, self._done = {}, [], []
            self._tell_settled(False)
            self.forget()
            if acknowledge:  # not the rebalance's own flush (``pipeline.on_revoked``)
                self.give_up_dropping()
            return
        dirty, out, done = self._dirty, self._out, self._done
        self._dirty, self._out, self._done = {}, [], []
        self._tell_settled(True)
        writes: list[Write] = []
        changelog: list[batching.Outgoing] = []
        for (name, partition), values in dirty.items():
            slot = self._slots[name]
            items = _encoded(
                slot, values, keys, opened.get(name, {}), python=batching.holds_python(slot.table)
            )
            writes.append((slot, partition, items))
            held = self._held.setdefault((name, partition), {})
            topic = batching.changelog_topic(slot.table)
            for key, stored in items.items():
                held[key] = (items, stored)
                changelog.append((topic, key.encode(), stored[1], partition))
            self._forget_unsealable(slot, partition, opened.get(name, {}), keys)
        outputs: list[batching.Outgoing] = []
        for item in out:
            if isinstance(item, SealedOutput):
                value = item.encode(keys.get(item.subject_id))
                outputs.append((item.topic, item.key, value, None))
            else:
                outputs.append((item[0], item[1], item[2], None))
        delivery = await self.queue_all(outputs) if outputs else None
        queued = asyncio.get_running_loop().create_future()
        queued.add_done_callback(_retrieved)
        self._delivering = asyncio.ensure_future(
            self._delivered(
                Flush(writes, changelog, done if acknowledge else [], agent),
                delivery,
                self._changelog_queued,
                queued,
                self._delivering,
            )
        )
        self._changelog_queued = queued
        self._delivering.add_done_callback(self._report_failure)

    async def _delivered(
        self,
        flush: Flush,
        delivery: Awaitable[list[int]] | None,
        before_queued: asyncio.Future[None] | None,
        queued: asyncio.Future[None],
        before: asyncio.Future[None] | None,
    ) -> None:
        """A flush, from its queued outputs to its acknowledged inputs: once its outputs
        are delivered and the flush before has queued its changelog records, queue its
        own (``queued`` says so to the next flush, or fails as this one does); once those
        are delivered and the flush before has completed, write its values to the local
        stores, remember their changelog offsets, and acknowledge its inputs.

        So a table's changelog or store says an input was decided only once its outputs,
        and every earlier flush's, are delivered: a replay after any failure either
        finds an input decided with its outputs sent, or decides it again and sends
        them again (duplicates, which every reader absorbs), never neither."""
        try:
            if delivery is not None:
                await delivery
            if before_queued is not None:
                await before_queued
            self._check_deadline()
            if self.failure is not None:  # the worker is stopping: its restart replays
                raise StateFailed(self.failure)  # this flush (a late changelog record
                # could land after the partition's next owner wrote the same key)
            logged = await self.queue_all(flush.changelog) if flush.changelog else None
        except BaseException as exc:
            if isinstance(exc, Exception):
                queued.set_exception(exc)
            else:
                queued.cancel()
            raise
        queued.set_result(None)
        own = asyncio.ensure_future(logged) if logged is not None else None
        if own is not None:  # asked for even if the flush before fails first
            own.add_done_callback(_retrieved)
        if before is not None:  # stores are written in flush order
            await before
        delivered = await own if own is not None else []
        self._store(flush, delivered)
        if flush.done:
            self.acknowledge(flush.done)

    def _store(self, flush: Flush, delivered: list[int]) -> None:
        """A delivered flush's values into the local stores, with their changelog
        offsets (``delivered``, one per written key, in order)."""
        started = time.perf_counter()
        for slot, partition, items in flush.writes:
            batching.write_partition(slot.table, partition, items)
            self._release(slot.name, partition, items)
        if flush.agent is not None:
            metrics.add_agent_busy(flush.agent, "flush", time.perf_counter() - started)
        offsets: dict[str, dict[int, int]] = {}
        where = ((slot.name, part) for slot, part, items in flush.writes for _ in items)
        for (name, partition), offset in zip(where, delivered, strict=False):
            per_table = offsets.setdefault(name, {})
            per_table[partition] = max(offset, per_table.get(partition, -1))
        for name, per_partition in offsets.items():
            batching.persist_offsets(self._slots[name].table, per_partition)

    def _release(self, name: str, partition: int, items: dict[str, batching.Stored]) -> None:
        """``items`` are in the local store: reads go there, unless a later flush holds
        a newer value of the same key."""
        held = self._held.get((name, partition))
        if held is None:
            return
        for key in items:
            entry = held.get(key)
            if entry is not None and entry[0] is items:
                del held[key]
        if not held:
            del self._held[(name, partition)]

    def fail(self, exc: BaseException) -> None:
        """Nothing decided from now on may be written or acknowledged: the broker refused
        a flush's records, a flush raised, or an input could not be decided
        (streams.pipeline). ``exc`` is kept as ``failure``, every flush raises
        ``StateFailed`` from now on, and ``on_failure`` is told, once."""
        if self.failure is not None:
            return
        self.failure = exc
        self.on_failure(exc)

    def _raise_if_failed(self) -> None:
        delivering = self._delivering
        if delivering is not None and delivering.done():
            self._report_failure(delivering)  # a refusal whose callback has not run yet
        if self.failure is not None:
            raise StateFailed(self.failure)

    def _report_failure(self, delivering: asyncio.Future[None]) -> None:
        """The first refused delivery is logged and fails the state; every flush after
        it fails with the same error, which is not news."""
        if delivering.cancelled():
            return
        exc = delivering.exception()  # asked even when not news: asyncio must not warn
        if exc is None or self.failure is not None:
            return
        if isinstance(exc, KafkaError):  # the broker's answer: its text names no one
            log.error(
                "a flush's records were not delivered (%r); nothing after it is acknowledged",
                exc,
            )
        else:  # handing the changelog over raised (the producer, a bug)
            log.critical(
                "a flush failed (%s, text withheld); nothing more is written:\n%s",
                type(exc).__name__,
                error_frames(exc),
            )
        self.fail(exc)

    async def settle(self) -> None:
        """Until every flush so far is delivered and acknowledged (a rebalance, a test);
        raises ``StateFailed`` if the state failed (a refused delivery among them)."""
        if self._delivering is not None:
            await asyncio.wait([self._delivering])
        self._raise_if_failed()

    def _forget_unsealable(
        self,
        slot: Slot[Any],
        partition: int,
        opened: Mapping[str, Any],
        keys: Mapping[str, DataKey | None],
    ) -> None:
        """A value written without its personal values (its subject has no key left) is
        not kept decoded with them: the next read gets what was stored."""
        seal = slot.sealing
        if seal is None:
            return
        for key, jsonable in opened.items():
            if keys.get(seal.subject(key, jsonable)) is None:
                self._cache.pop((slot.name, partition, key), None)

    async def _storage_keys(
        self,
        dirty: dict[tuple[str, int], dict[str, Any]],
        out: list[tuple[str, bytes | None, bytes | None] | SealedOutput],
    ) -> tuple[dict[str, DataKey | None], dict[str, dict[str, Any]]]:
        """The storage key of every subject with personal values in this flush, and the
        sealing tables' values with personal values, as JSON (table -> key -> JSON)."""
        if self.sealer is None:
            return {}, {}
        wanted: dict[str, int] = {}
        opened: dict[str, dict[str, Any]] = {}
        for (name, partition), values in dirty.items():
            slot = self._slots[name]
            seal = slot.sealing
            if seal is None:
                continue
            for key, value in values.items():
                if value is None:
                    continue
                jsonable = slot.encode(value)
                if sealing.personal_values(jsonable, seal):
                    opened.setdefault(name, {})[key] = jsonable
                    wanted[seal.subject(key, jsonable)] = partition
        for item in out:
            if isinstance(item, SealedOutput):
                wanted[item.subject_id] = item.partition
        if not wanted:
            return {}, opened
        return await self.sealer.storage_keys(wanted), opened

    def forget(self) -> None:
        """Drop every decoded value (partitions moved; recovery may have changed them)."""
        self._cache.clear()

    def dropping_for(self) -> float:
        """Seconds since a flush was first dropped with no rebalance begun after it (0 if
        none, or while the rebalance that ends it is under way: ``rebalancing``)."""
        if not self._dropping or self._rebalancing:
            return 0.0
        return time.monotonic() - self._dropping_since

    def give_up_dropping(self) -> None:
        """Every flush has been dropped for ``DROPPING_LIMIT_SECONDS`` and no rebalance
        came to end it: the state fails (the worker stops; its restart replays every
        input after the last acknowledged one) rather than take and drop input for ever,
        or leave what it dropped unprocessed while no input comes (the health timer asks
        too, ``streams.health``). Raises ``StateFailed`` when it gives up."""
        dropping = self.dropping_for()
        if dropping < DROPPING_LIMIT_SECONDS or self.failure is not None:
            return
        log.critical(
            "every flush dropped for %.0f s and no rebalance came to replay them; "
            "stopping so that the restart replays them",
            dropping,
        )
        exc = NoRebalance(f"flushes dropped for {dropping:.0f} s with no rebalance")
        self.fail(exc)
        raise StateFailed(exc)

    @property
    def in_rebalance(self) -> bool:
        """Between ``rebalancing`` and ``rebalanced``."""
        return self._rebalancing

    async def backoff(self, seconds: float) -> None:
        """A handler's wait before it retries what is unavailable (the registry, the key
        store), with the state lock held: ``Abandoned`` at once if a rebalance is under
        way or begins meanwhile, since the revocation needs the lock for its flush."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        while not self._rebalancing:
            left = until - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, BACKOFF_CHECK_SECONDS))
        raise Abandoned("the partitions are moving")

    def rebalancing(self, deadline: float | None = None) -> None:
        """A rebalance has begun (``pipeline.revocation_began``, then ``on_revoked``):
        what was dropped will be replayed once it ends (``rebalanced``), and no flush
        queues changelog records after ``deadline`` (the event loop's time; the first
        one given stands): past it the group may have given the partitions to another
        worker, whose records for the same keys a late one would follow."""
        self._rebalancing = True
        if self.revocation_deadline is None:
            self.revocation_deadline = deadline

    def rebalanced(self) -> None:
        """The partitions moved, and every flush before is settled: forget the decoded
        values, and flush again (Faust seeks every partition it assigns to its committed
        offset, so what was dropped since a flush could not be sealed is replayed)."""
        self.forget()
        self._dropping = self._rebalancing = False
        self.revocation_deadline = None

    def _check_deadline(self) -> None:
        """Fail the state if a revocation's deadline has passed (``rebalancing``);
        quietly if the worker is stopping (Faust then skips the worker's revocation
        handler, which would have cleared the deadline: the late records are still not
        written, and the worker's exit is not turned into a crash)."""
        deadline = self.revocation_deadline
        if deadline is None or asyncio.get_running_loop().time() <= deadline:
            return
        exc = RebalanceTooSlow("deliveries pending past the rebalance's deadline")
        if app.should_stop:
            self.failure = self.failure or exc
            return
        log.critical("rebalance: deliveries still pending at its deadline")
        self.fail(exc)


def _encoded(
    slot: Slot[Any],
    values: dict[str, Any],
    keys: Mapping[str, DataKey | None],
    opened: Mapping[str, Any],
    *,
    python: bool,
) -> dict[str, batching.Stored]:
    """Each value as (its JSON-able form, only for a store that keeps Python values; its
    JSON bytes, for RocksDB and the changelog). ``opened``: the values holding personal
    values (as JSON), sealed under their subject's key from ``keys``, or without them
    when the subject has none (erased, nothing kept)."""
    items: dict[str, batching.Stored] = {}
    for key, value in values.items():
        if value is None:
            items[key] = (None, None)
            continue
        if key in opened and slot.sealing is not None:
            sealed = _sealed(slot.sealing, key, opened[key], keys)
            raw = None if sealed is None else json.dumps(sealed).encode()
            items[key] = (sealed if python else None, raw)
            continue
        jsonable = slot.encode(value) if python or not slot.dump else None
        raw = slot.dump(value) if slot.dump else json.dumps(jsonable).encode()
        items[key] = (jsonable, raw)
    return items


def error_frames(exc: BaseException) -> str:
    """Where ``exc`` was raised (its traceback's frames), for a log line that names the
    error's type but not its text, which may quote personal data."""
    return "".join(traceback.format_tb(exc.__traceback__))


def _sealed(seal: TableSealing, key: str, jsonable: Any, keys: Mapping[str, DataKey | None]) -> Any:
    subject = seal.subject(key, jsonable)
    data_key = keys.get(subject)
    if data_key is None:
        return seal.without_key(jsonable)
    return sealing.seal(jsonable, seal, subject, data_key)


async def _queue_all(records: Sequence[batching.Outgoing]) -> Awaitable[list[int]]:
    """Queue on the app's producer, a batch per topic-partition."""
    return await batching.queue_batched(app, records)


state = State()
