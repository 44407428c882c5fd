"""The worker's key store: its subjects' data keys, followed from ``privacy.subject-keys``.

A worker owns whole subjects (their partition), so it holds the keys of the partitions
it owns and no others: one ``KeyRing`` per partition, fed in order (records and
tombstones) by a group-less consumer of those partitions of the compacted topic. On an
assignment, a new partition's ring is read from the beginning; a partition the worker
no longer owns is dropped with its ring (its wrapped records and its cached keys).
The topic is the ring's changelog: there is no second copy of a wrapped key in any
table. A record is kept as the topic holds it until first used, then decoded (reading a
million keys takes seconds, not the ~38 s decoding them all did). Memory: ~0.5 KB per
key not used yet (its bytes, the dict entries, the per-subject index), ~2 KB per key
used, plus a bounded cache of unwrapped keys per partition.

The key service is here too: the owner of a subject's partition is the only creator of
its keys, one creation per subject at a time (an ``asyncio.Lock`` per subject: the
owner is one process), and a key is handed out only after the broker acknowledged its
record, so no data is ever written under a key that is not stored. Erasure destroys
keys with ``shred`` (tombstones, then the ring forgets). docs/crypto-shredding.md has
the design; ``install`` wires the store into the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from privops.adapters import kek as kekfile
from privops.adapters.kafka import stop_client
from privops.adapters.kek import UnknownKekVersion
from privops.adapters.key_topic import KeyRecordCodec, subject_partition
from privops.adapters.settings import Settings
from privops.core.errors import DecodeError, RuntimeUnavailable
from privops.core.fieldcrypt import (
    MAIN_SCOPE,
    DataKey,
    MalformedField,
    check_scope,
    check_subject_id,
)
from privops.core.fieldcrypt import split_key_id as _split
from privops.core.subject_keys import (
    MAX_KEYS_PER_SUBJECT,
    KeyRing,
    SubjectErased,
    SubjectKey,
    TooManyKeys,
    create,
    retained_until,
    wrap,
)
from privops.core.topics import COMMANDS, SUBJECT_KEYS

log = logging.getLogger(__name__)

RETRY_SECONDS: Final = 2.0
CATCH_UP_SECONDS: Final = 30.0
FETCH_MS: Final = 500
REWRAP_CHECK_SECONDS: Final = 30.0
SHREDDED_MEMORY: Final = 65_536
TOMBSTONED_MEMORY: Final = 65_536
"""Key ids remembered as tombstoned (~100 bytes each): a key written back after its
tombstone is refused while its tombstone is among the newest this many."""

Send = Callable[[str, bytes, bytes | None, int], Awaitable[object]]
"""Produce (topic, key, value, partition) and return once the broker acknowledged it."""
SendMany = Callable[[list[tuple[str, bytes, bytes | None, int]]], Awaitable[object]]
"""Produce many such records and return once the broker acknowledged every one."""
ConsumerFactory = Callable[[], AIOKafkaConsumer]


class NotOwned(RuntimeUnavailable):
    """The subject's partition is not this worker's (now): ask its owner, or retry."""


class KeyStoreBehind(RuntimeUnavailable):
    """The ring could not be brought up to date in time (broker slow or gone)."""


def owned_partitions(assignment: Iterable[Any]) -> frozenset[int]:
    """The subject partitions in a worker's assignment (every co-partitioned topic has the
    same, so the commands topic stands for them all)."""
    return frozenset(tp.partition for tp in assignment if tp.topic == COMMANDS)


def key_subject(key_id: str) -> str:
    """The subject a key id names (``MalformedField`` if it names none)."""
    return _split(key_id)[0]


class KeyStore:
    """The rings of the partitions this worker follows, their reader, and the key service."""

    def __init__(
        self,
        kek: kekfile.KekWatch,
        codec: KeyRecordCodec,
        partitions: int,
        *,
        send: Send,
        consumer: ConsumerFactory,
        send_many: SendMany | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache_size: int = 4096,
    ) -> None:
        self.kek = kek
        self.codec = codec
        self.partitions = partitions
        self.rings: dict[int, KeyRing] = {}
        self._send = send
        self._send_many = send_many
        self._new_consumer = consumer
        self._now = now
        self._cache_size = cache_size
        self._owned: frozenset[int] = frozenset()
        self._unknown_keks: set[int] = set()  # KEK versions said missing (``_unknown_kek``)
        self._wanted: frozenset[int] | None = None  # None: no assignment yet
        self._positions: dict[int, int] = {}  # next offset the ring reads
        self._loaded: dict[int, asyncio.Event] = {}  # read up to the end at assignment
        self._targets: dict[int, int] = {}  # those end offsets, until reached
        self._synced: dict[int, float] = {}  # loop time of the last end offset reached
        self._syncs: dict[int, tuple[float, asyncio.Future[None]]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._progress = asyncio.Condition()
        self._reassigned = asyncio.Event()  # for the reader: follow the new partitions
        self._assigned = asyncio.Event()  # an assignment since the last revocation
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Subjects this process shredded, newest last: refused a new key at once, before
        # the erasure's consent state (what the key service checks) is flushed.
        self._shredded: OrderedDict[str, None] = OrderedDict()
        # Key ids seen tombstoned, newest last (``apply``): a record of one coming after
        # its tombstone is a shredded key written back, never a key to use.
        self._tombstoned: OrderedDict[str, None] = OrderedDict()
        self._retombstoning: set[asyncio.Future[object]] = set()
        # Written-back keys to tombstone again once their partition is owned (read while
        # a rebalance ran) or after a send failed, by partition (``_written_back``).
        self._unsent: dict[int, set[bytes]] = {}
        self._unsent_wait: dict[int, float] = {}  # the next retry's delay, by partition

    # --- assignment ----------------------------------------------------------------

    def assign(self, partitions: Collection[int]) -> None:
        """The worker owns ``partitions`` now: follow them, and only them."""
        wanted = frozenset(partitions)
        self._owned = wanted
        for partition in set(self.rings) - wanted:
            self._drop(partition)
        for partition in wanted - set(self.rings):
            self.rings[partition] = KeyRing(
                self.kek.unwrapper(), self._cache_size, opener=self._opener(partition)
            )
            self._loaded[partition] = asyncio.Event()
        self._wanted = wanted
        self._reassigned.set()
        for partition in set(self._unsent):
            if partition in wanted:
                self._send_unsent(partition)
            else:  # its new owner reads it and tombstones them
                del self._unsent[partition]
        self._assigned.set()

    def revoke(self) -> None:
        """A rebalance began: serve nothing until the next assignment says what is ours
        (the rings keep following, so a partition that stays needs no re-read), and be
        not ``ready`` until then. The agents wait for ``ready`` before they decide: Faust
        sends its assignment signal to its receivers in no fixed order and resumes the
        partitions from its recovery task, so the agents may take the new assignment's
        input before this store hears of it, and a key created for it would be refused
        (``NotOwned``: the flush dropped, and with no rebalance after it, the worker
        stopped at ``DROPPING_LIMIT_SECONDS``)."""
        self._owned = frozenset()
        self._assigned.clear()

    def _drop(self, partition: int) -> None:
        del self.rings[partition]
        for table in (self._positions, self._targets, self._synced):
            table.pop(partition, None)
        dropped = self._loaded.pop(partition, None)
        if dropped is not None:
            dropped.set()  # wakes whoever waits for it (``until_loaded`` looks again)

    @property
    def ready(self) -> bool:
        """Assigned since the last revocation, and every owned partition's ring read up to
        its end at assignment."""
        return (
            self._assigned.is_set()
            and self._wanted is not None
            and all(self._loaded[p].is_set() for p in self._wanted if p in self._loaded)
        )

    async def until_loaded(self) -> None:
        """Wait for an assignment since the last revocation, then until its partitions
        are loaded (``ready``). Never call it holding what the revocation's handlers
        wait for (the agents' state lock)."""
        while True:
            await self._assigned.wait()
            wanted = self._wanted or frozenset()
            await asyncio.gather(*(self._loaded[p].wait() for p in wanted if p in self._loaded))
            if self.ready:  # not revoked (or revoked and assigned again) meanwhile
                return

    def partition_of(self, subject_id: str) -> int:
        return subject_partition(subject_id, self.partitions)

    def ring(self, partition: int) -> KeyRing:
        """The ring of a partition this worker owns; ``NotOwned`` otherwise."""
        ring = self.rings.get(partition)
        if ring is None or partition not in self._owned:
            raise NotOwned(f"partition {partition} of {SUBJECT_KEYS} is not this worker's")
        return ring

    def held(self, partition: int) -> KeyRing:
        """The ring of a partition this worker still holds, also between a revocation and
        the next assignment (for reading keys only: creating and shredding need
        ``ring``). Reads must not wait on the assignment: a reader may hold the agents'
        state lock, which the revocation's own handler waits for, and Faust calls the
        two in no fixed order. Safe: the rings keep following the topic, and no other
        worker writes a partition's keys before that partition is assigned again."""
        ring = self.rings.get(partition)
        if ring is None:
            raise NotOwned(f"partition {partition} of {SUBJECT_KEYS} is not this worker's")
        return ring

    # --- following the topic ----------------------------------------------------------

    def apply(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        """One message of the topic, in order: a key record, or a key id's tombstone."""
        ring = self.rings.get(partition)
        if ring is None or key is None:
            return
        key_id = key.decode(errors="replace")
        if value is None:
            ring.apply(key_id, None)
            self._remember_tombstone(key_id)
            return
        if key_id in self._tombstoned:
            self._written_back(partition, key)
            return
        try:
            ring.apply_encoded(key_id, value)  # decoded when first used
        except MalformedField as exc:
            log.error("%s[%d]: not a key id (%s)", SUBJECT_KEYS, partition, exc)

    def _remember_tombstone(self, key_id: str) -> None:
        self._tombstoned[key_id] = None
        self._tombstoned.move_to_end(key_id)
        if len(self._tombstoned) > TOMBSTONED_MEMORY:
            self._tombstoned.popitem(last=False)

    def _written_back(self, partition: int, key: bytes) -> None:
        """A record of a key id after its tombstone: a shredded key written back (a
        zombie owner's re-wrap, still serving before it learns it lost the partition,
        raced the new owner's shred). Key ids are never reused, so it is never a key to
        use: the ring ignores it, and the partition's owner tombstones it again, so
        that a reader with no memory of the first tombstone (a rebuilt worker,
        ``forget-check``) does not find the key live either."""
        log.warning(
            "%s[%d]: a shredded key was written back; tombstoned again", SUBJECT_KEYS, partition
        )
        if partition not in self._owned:
            # Read while a rebalance runs (``revoke`` owns nothing until the next
            # assignment): kept for it. Before, it was dropped, and a partition that
            # stayed here is not read again, so the key stayed live for every reader
            # after compaction dropped the first tombstone (review, session 44).
            self._unsent.setdefault(partition, set()).add(key)
            return
        self._retombstone(partition, key)

    def _retombstone(self, partition: int, key: bytes) -> None:
        task = asyncio.ensure_future(self._send(SUBJECT_KEYS, key, None, partition))
        self._retombstoning.add(task)
        task.add_done_callback(partial(self._retombstoned, partition, key))

    def _retombstoned(self, partition: int, key: bytes, task: asyncio.Future[object]) -> None:
        self._retombstoning.discard(task)
        if task.cancelled() or task.exception() is None:
            self._unsent_wait.pop(partition, None)
            return
        # Tried again in a while (twice as long each time, up to a minute: a broker away
        # is not logged every two seconds), and at the next assignment (a partition that
        # goes elsewhere: its next owner re-reads it and tombstones it again).
        wait = self._unsent_wait.get(partition, RETRY_SECONDS)
        self._unsent_wait[partition] = min(2 * wait, 60.0)
        log.error(
            "%s: tombstoning a written-back key failed: %r; again in %.0f s",
            SUBJECT_KEYS,
            task.exception(),
            wait,
        )
        self._unsent.setdefault(partition, set()).add(key)
        asyncio.get_running_loop().call_later(wait, self._send_unsent, partition)

    def _send_unsent(self, partition: int) -> None:
        """The written-back keys of ``partition`` not tombstoned yet, again, if it is
        still this worker's."""
        if partition in self._owned and (keys := self._unsent.pop(partition, None)):
            for key in keys:
                self._retombstone(partition, key)

    def _opener(self, partition: int) -> Callable[[str, bytes], SubjectKey | None]:
        def opened(key_id: str, value: bytes) -> SubjectKey | None:
            try:
                record = self.codec.decode(value)
            except (DecodeError, ValueError) as exc:
                # Only privops writes here: another version's record, or a bug. It reads
                # as no key; nothing of the value is logged.
                log.error("%s[%d]: unusable key record (%s)", SUBJECT_KEYS, partition, exc)
                return None
            if record.key_id != key_id:
                log.error("%s[%d]: a key record under another key id", SUBJECT_KEYS, partition)
                return None
            return record

        return opened

    async def follow(self) -> None:
        """Read the owned partitions for the worker's life (reconnecting after errors)."""
        while True:
            try:
                await self._follow_once()
            except (KafkaError, OSError) as exc:
                log.warning("%s: %s; reconnecting in %.0f s", SUBJECT_KEYS, exc, RETRY_SECONDS)
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow_once(self) -> None:
        consumer = self._new_consumer()
        await consumer.start()
        self._consumer = consumer
        following: frozenset[int] | None = None
        try:
            while True:
                if following != self._wanted:
                    following = self._wanted
                    self._reassigned.clear()
                    await self._reassign(consumer, following or frozenset())
                if not following:
                    await self._reassigned.wait()
                    continue
                batch = await consumer.getmany(timeout_ms=FETCH_MS, max_records=5_000)
                for tp, messages in batch.items():
                    for message in messages:
                        self.apply(tp.partition, message.key, message.value)
                await self._advance(consumer, following)
        finally:
            self._consumer = None
            await stop_client(consumer)

    async def _reassign(self, consumer: AIOKafkaConsumer, partitions: frozenset[int]) -> None:
        tps = {p: TopicPartition(SUBJECT_KEYS, p) for p in sorted(partitions)}
        consumer.assign(list(tps.values()))
        fresh = [tp for p, tp in tps.items() if p not in self._positions]
        for p, tp in tps.items():
            if p in self._positions:  # kept across the rebalance or a reconnect
                consumer.seek(tp, self._positions[p])
        if fresh:
            await consumer.seek_to_beginning(*fresh)
            ends = await consumer.end_offsets(fresh)
            for tp in fresh:
                self._targets[tp.partition] = ends[tp]
        await self._advance(consumer, partitions)

    async def _advance(self, consumer: AIOKafkaConsumer, partitions: frozenset[int]) -> None:
        for p in partitions:
            if p not in self.rings:  # dropped by an assignment meanwhile
                continue
            self._positions[p] = await consumer.position(TopicPartition(SUBJECT_KEYS, p))
            target = self._targets.get(p)
            if target is not None and self._positions[p] >= target:
                del self._targets[p]
                self._loaded[p].set()
                log.info("%s[%d]: %d keys", SUBJECT_KEYS, p, len(self.rings[p]))
        async with self._progress:
            self._progress.notify_all()

    # --- reading up to date ----------------------------------------------------------

    async def ensure_caught_up(self, partition: int, *, since: float | None = None) -> None:
        """Return once the ring holds everything written to ``partition`` before ``since``
        (the event loop's time; default now). Call it after reading an event whose key
        the ring lacks: a key is stored before any data under it, so a key still
        missing then is shredded (or never existed). Concurrent callers share one query
        of the partition's end offset. ``KeyStoreBehind`` after CATCH_UP_SECONDS.
        """
        loop = asyncio.get_running_loop()
        since = loop.time() if since is None else since
        self.held(partition)
        if self._synced.get(partition, -math.inf) >= since:
            return
        pending = self._syncs.get(partition)
        if pending is None or pending[0] < since:
            asked_at = loop.time()
            pending = (asked_at, asyncio.ensure_future(self._sync(partition, asked_at)))
            self._syncs[partition] = pending
        try:
            async with asyncio.timeout(CATCH_UP_SECONDS):
                await asyncio.shield(pending[1])
        except TimeoutError:
            raise KeyStoreBehind(
                f"{SUBJECT_KEYS}[{partition}] not read up to date in {CATCH_UP_SECONDS:.0f} s"
            ) from None

    async def _sync(self, partition: int, asked_at: float) -> None:
        try:
            await self._loaded_event(partition).wait()
            consumer = self._consumer
            if consumer is None:
                raise KeyStoreBehind(f"{SUBJECT_KEYS}: reconnecting to the broker")
            tp = TopicPartition(SUBJECT_KEYS, partition)
            end = (await consumer.end_offsets([tp]))[tp]
            async with self._progress:
                await self._progress.wait_for(
                    lambda: partition not in self.rings or self._positions[partition] >= end
                )
            self.held(partition)  # still held
            self._synced[partition] = max(self._synced.get(partition, -math.inf), asked_at)
        finally:
            if self._syncs.get(partition, (None, None))[0] == asked_at:
                del self._syncs[partition]

    def _loaded_event(self, partition: int) -> asyncio.Event:
        self.held(partition)
        return self._loaded[partition]

    async def _wait_loaded(self, partition: int) -> None:
        loaded = self._loaded_event(partition)
        try:
            async with asyncio.timeout(CATCH_UP_SECONDS):
                await loaded.wait()
        except TimeoutError:
            raise KeyStoreBehind(f"{SUBJECT_KEYS}[{partition}] still loading") from None

    async def key_for(self, key_id: str, partition: int | None = None) -> DataKey | None:
        """The key ``key_id`` names, or None once the ring is up to date and still lacks
        it (shredded). ``partition``: the event's, if known (saves the hash)."""
        since = asyncio.get_running_loop().time()
        where = self.partition_of(key_subject(key_id)) if partition is None else partition
        ring = self.held(where)
        found = ring.get(key_id)
        if found is None:
            await self.ensure_caught_up(where, since=since)
            found = ring.get(key_id)
        return found

    async def keys_for(self, key_ids: Iterable[str], partition: int) -> dict[str, DataKey | None]:
        """``key_for`` of each of an event's keys (all of ``partition``): a key the ring
        holds is read at once, without a coroutine of its own; a miss waits as there."""
        ring = self.held(partition)
        found: dict[str, DataKey | None] = {}
        for key_id in key_ids:
            key = ring.get(key_id)
            found[key_id] = key if key is not None else await self.key_for(key_id, partition)
        return found

    def key(self, key_id: str) -> DataKey | None:
        """The key if the ring has it now (a ``KeyLookup`` for ``decrypt_record``, after
        ``key_for`` made sure of a miss); None for a partition this worker does not own."""
        try:
            ring = self.held(self.partition_of(key_subject(key_id)))
        except NotOwned:
            return None
        return ring.get(key_id)

    def current_key(self, subject_id: str, scope: str) -> DataKey:
        """The subject's current key of ``scope`` (a ``KeySource`` for ``encrypt_record``),
        which ``get_or_create`` made sure of first."""
        found = self.ring(self.partition_of(subject_id)).current(subject_id, scope)
        if found is None:
            raise LookupError(f"no {scope} key yet: await get_or_create() before encrypting")
        return found

    # --- the key service ---------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _serialised(self, subject_id: str) -> AsyncIterator[None]:
        async with self._lock(subject_id):
            yield

    def _lock(self, subject_id: str) -> asyncio.Lock:
        lock = self._locks.get(subject_id)
        if lock is None:
            lock = self._locks[subject_id] = asyncio.Lock()
        return lock

    async def records(self, subject_id: str) -> list[SubjectKey]:
        """The subject's stored keys (wrapped), once the ring is up to date."""
        partition = self.partition_of(check_subject_id(subject_id))
        await self.ensure_caught_up(partition)
        return self.ring(partition).records(subject_id)

    async def get_or_create(
        self,
        subject_id: str,
        scope: str = MAIN_SCOPE,
        *,
        erased: Callable[[str], bool] = lambda _subject: False,
        erasing: bool = False,
    ) -> SubjectKey:
        """The subject's current key record of ``scope``, created and stored if there is
        none; ``SubjectErased`` for a subject ``erased`` says is gone (checked again
        once a new record is acknowledged: an erasure that ran meanwhile shreds it).

        ``erasing``: an erasure's own storage scope (``agents.requests``), made for what
        retention keeps of a subject whose keys this process shredded already (an
        earlier erasure): that erasure decided it, so ``SubjectErased`` is not raised
        for the shred, nor for ``erased``. Only a retained scope is made so."""
        check_subject_id(subject_id)
        check_scope(scope)
        partition = self.partition_of(subject_id)
        await self._wait_loaded(partition)
        if erasing and retained_until(scope) is None:
            raise ValueError(f"an erasure keeps data under a retained scope, not {scope!r}")
        async with self._serialised(subject_id):
            if not erasing and erased(subject_id):
                raise SubjectErased(f"the subject was erased: no new {scope} key")
            ring = self.ring(partition)
            found = ring.current_record(subject_id, scope)
            if found is not None:
                return found
            if subject_id in self._shredded and not erasing:
                raise SubjectErased(f"the subject's keys were shredded: no new {scope} key")
            # ``main`` is one a subject: never refused (MAX_KEYS_PER_SUBJECT).
            today = self._now().date()
            if (
                not erasing
                and scope != MAIN_SCOPE
                and ring.live(subject_id, today, scope) >= MAX_KEYS_PER_SUBJECT
            ):
                raise TooManyKeys(
                    f"the subject has {MAX_KEYS_PER_SUBJECT} keys of this kind already: no "
                    f"new {scope} key"
                )
            record, _ = create(subject_id, scope, self.kek.current(), self._now())
            sent = await self._stored([(partition, record)])
            ring.apply(record.key_id, record, encoded=sent[record.key_id])
            if not erasing and erased(subject_id):
                await self._tombstones(partition, [record.key_id])
                raise SubjectErased(f"the subject was erased meanwhile: no new {scope} key")
            return record

    async def storage_key(self, subject_id: str, *, erased: bool) -> DataKey | None:
        """The key privops seals its own copies of the subject's data under (tables,
        tasks, notifications: privops.core.sealing), on the subject's owner.

        ``main`` while the subject has one, created on first use; after an erasure, the
        retained scope that lasts longest (what retention keeps, the identity map's
        systems included, stays readable until its follow-up erasure), or None when
        nothing is kept: what would be sealed is dropped instead. An ``erased`` subject
        (the consent state says so) never gets a new ``main``."""
        return (await self.storage_keys({subject_id: erased}))[subject_id]

    async def kept_storage_key(self, subject_id: str, *, erased: bool) -> DataKey | None:
        """``storage_key`` for a subject privops already holds a key of, never making one
        for a subject who has none (None: no system has reported them). One whose only
        key is a system's retained one gets ``main`` made, as ``storage_key`` would."""
        partition = self.partition_of(subject_id)
        await self._wait_loaded(partition)
        ring = self.ring(partition)
        if erased or subject_id in self._shredded or not ring.records(subject_id):
            return _kept_key(ring, subject_id, erased=True)
        return await self.storage_key(subject_id, erased=False)

    async def storage_keys(self, erased: Mapping[str, bool]) -> dict[str, DataKey | None]:
        """``storage_key`` of many subjects at once (subject -> erased), as a flush needs
        them: the keys that exist are read from the rings, and the ``main`` keys still
        missing are created together, their records sent at once and awaited together
        (a first import meets thousands of new subjects per flush)."""
        found: dict[str, DataKey | None] = {}
        missing: list[str] = []
        for subject_id, gone in erased.items():
            partition = self.partition_of(subject_id)
            if not self._loaded_event(partition).is_set():
                await self._wait_loaded(partition)
            after = gone or subject_id in self._shredded
            key = _kept_key(self.ring(partition), subject_id, erased=after)
            if key is not None or after:
                found[subject_id] = key
            else:
                missing.append(subject_id)
        if missing:
            found.update(await self._create_main(missing))
        return found

    async def _create_main(self, subjects: list[str]) -> dict[str, DataKey | None]:
        """New ``main`` keys, one per subject (each under its subject's lock, so no other
        creation of theirs runs meanwhile), handed out once the broker has every record."""
        held: list[asyncio.Lock] = []
        try:
            for subject_id in sorted(subjects):  # one order: two batches never deadlock
                lock = self._lock(subject_id)
                await lock.acquire()  # free (the usual case): no wait, no context manager
                held.append(lock)
            found: dict[str, DataKey | None] = {}
            new: list[tuple[int, SubjectKey, DataKey]] = []
            kek, now = self.kek.current(), self._now()
            for subject_id in subjects:
                partition = self.partition_of(subject_id)
                ring = self.ring(partition)
                record = ring.current_record(subject_id, MAIN_SCOPE)  # made meanwhile?
                if record is not None:
                    found[subject_id] = ring.get(record.key_id)
                elif subject_id in self._shredded:
                    found[subject_id] = None
                else:
                    made, key = create(subject_id, MAIN_SCOPE, kek, now)
                    new.append((partition, made, key))
            sent = await self._stored([(partition, made) for partition, made, _ in new])
            for partition, made, key in new:
                ring = self.ring(partition)
                found[made.subject_id] = ring.add(made, key, encoded=sent[made.key_id])
            return found
        finally:
            for lock in held:
                lock.release()

    async def _stored(self, records: list[tuple[int, SubjectKey]]) -> dict[str, bytes]:
        """Produce new key records (partition, record), all at once; return when the
        broker has every one of them, with the bytes written for each (by key id)."""
        encoded = {record.key_id: self.codec.encode(record) for _, record in records}
        if self._send_many is not None:  # as producer batches (a first import: thousands)
            await self._send_many(
                [(SUBJECT_KEYS, r.topic_key(), encoded[r.key_id], p) for p, r in records]
            )
            return encoded
        await asyncio.gather(
            *(
                self._send(SUBJECT_KEYS, record.topic_key(), encoded[record.key_id], p)
                for p, record in records
            )
        )
        return encoded

    async def shred(self, subject_id: str, key_ids: Collection[str]) -> list[str]:
        """Destroy the subject's keys ``key_ids``: a tombstone each on the subject's
        partition, then the ring forgets them (record and cached key). For the erasure
        (``shredding.keys_to_destroy``) on the subject's owner. From then on this store
        creates no key for the subject (``get_or_create`` raises ``SubjectErased``),
        whatever ``erased`` says, so no key is handed out between the shred and the
        moment the erasure's consent state reaches the table the key service reads.

        A ``main`` key the ring holds that ``key_ids`` lacks goes too (an erasure always
        destroys ``main``: ``shredding.keys_to_destroy``): one the key service made while
        the erasure was decided (``/seal`` checked the subject before, and stored it
        after the erasure read their keys) outlived it, readable (review, session 32)."""
        ids = sorted(set(key_ids))
        if any(key_subject(key_id) != subject_id for key_id in ids):
            raise ValueError("every key id to shred must be one of this subject's")
        partition = self.partition_of(subject_id)
        ring = self.ring(partition)
        async with self._serialised(subject_id):
            late = ring.current_record(subject_id, MAIN_SCOPE)
            if late is not None and late.key_id not in ids:
                ids.append(late.key_id)  # the caller names it (it knows the request)
            self._shredded[subject_id] = None
            self._shredded.move_to_end(subject_id)
            if len(self._shredded) > SHREDDED_MEMORY:
                self._shredded.popitem(last=False)
            await self._tombstones(partition, ids)
        return ids

    async def _tombstones(self, partition: int, key_ids: list[str]) -> None:
        await asyncio.gather(
            *(self._send(SUBJECT_KEYS, k.encode(), None, partition) for k in key_ids)
        )
        ring = self.ring(partition)
        for key_id in key_ids:
            ring.apply(key_id, None)
            self._remember_tombstone(key_id)

    async def rewrap_stale(self) -> int:
        """Re-wrap every owned key record not under the current KEK version (after
        ``privops keys kek rotate``): same data key, key id and created_at, written back
        under the subject's lock so a shred of this process is never undone, and only
        once the ring has read the partition up to date, so that neither is one of
        another worker's (a zombie owner, which lost the partition and has not heard
        yet, wrote a shredded key back behind the new owner's tombstone: review, session
        26). One end-offset query per key re-wrapped, beside its acknowledged produce; a
        shred landing between the two is undone only until the new owner reads the
        record back (``_written_back``). The number re-wrapped."""
        current = self.kek.current()
        count = 0
        for partition in sorted(self._owned):
            ring = self.rings.get(partition)
            if ring is None:
                continue
            for record in ring.stale(current.version, self.codec.kek_version):
                if record.kek_version > current.version:
                    continue  # wrapped by a worker given a newer KEK: never wrapped back down
                async with self._serialised(record.subject_id):
                    await self.ensure_caught_up(partition)
                    if ring.record(record.key_id) != record:  # shredded or replaced
                        continue
                    try:
                        key = ring.get(record.key_id)
                    except UnknownKekVersion as exc:
                        self._unknown_kek(record.kek_version, exc)
                        continue
                    if key is None:
                        continue
                    new = wrap(key, current, record.created_at)
                    sent = await self._stored([(partition, new)])
                    ring.apply(new.key_id, new, encoded=sent[new.key_id])
                    count += 1
        return count

    def _unknown_kek(self, version: int, exc: UnknownKekVersion) -> None:
        """A stored key wrapped under a KEK version this worker's file lacks (retired here
        too early, or another deployment's KEK on a shared topic): left as it is, said
        once per version. Before, the re-wrap pass raised it and stopped the worker."""
        if version not in self._unknown_keks:
            self._unknown_keks.add(version)
            log.error("not re-wrapping keys under KEK version %d: %s", version, exc)

    async def keep_wrapped(self, interval: float = REWRAP_CHECK_SECONDS) -> None:
        """Re-wrap the owned keys whenever the KEK's current version or the assignment
        changed since the last complete pass (runs for the worker's life)."""
        done: tuple[int, frozenset[int]] | None = None
        while True:
            await asyncio.sleep(interval)
            state = (self.kek.current().version, self._owned)
            if state == done or not self.ready or not self._owned:
                continue
            try:
                count = await self.rewrap_stale()
            except (RuntimeUnavailable, KafkaError) as exc:
                log.warning("re-wrapping keys under the current KEK: %s; retrying", exc)
                continue
            if count:
                log.info("re-wrapped %d keys under KEK version %d", count, state[0])
            done = state


def _kept_key(ring: KeyRing, subject_id: str, *, erased: bool) -> DataKey | None:
    """The subject's ``main`` key; after their erasure (``erased``), else the key of the
    retained scope that lasts longest (``storage_key``); else None.

    Never a retained key before the erasure: a subject a system first met by asking for
    one (billing's ``retained:purchases:...``) had no ``main`` made, and privops sealed
    everything of theirs (the identity map, tasks, notices, the DPO's text) under a key
    the erasure keeps, readable for years after it (review, session 44)."""
    main = ring.current(subject_id, MAIN_SCOPE)
    if main is not None or not erased:
        return main
    retained = [r for r in ring.records(subject_id) if retained_until(r.scope) is not None]
    if not retained:
        return None
    longest = max(retained, key=lambda r: (retained_until(r.scope), r.created_at))
    return ring.current(subject_id, longest.scope)


# --- the worker's store -----------------------------------------------------------------

_keks: dict[Path, kekfile.KekWatch] = {}
_built: list[KeyStore] = []


def load_kek(settings: Settings) -> kekfile.KekWatch:
    """The worker's KEK (``kek_file``): a ConfigError for a missing or development KEK
    outside PRIVOPS_ENV=dev. Loaded once per process (start-up checks it first)."""
    if settings.kek_file not in _keks:
        _keks[settings.kek_file] = kekfile.KekWatch(settings.kek_file, settings.env, log.info)
    return _keks[settings.kek_file]


def key_store() -> KeyStore:
    """The worker's key store, built on first use from its settings, producer and codec."""
    if not _built:
        from streams import batching
        from streams.app import app, kafka_client, settings
        from streams.io import serde

        async def send(topic: str, key: bytes, value: bytes | None, partition: int) -> object:
            return await app.producer.send_and_wait(topic, key, value, partition, None, None)

        async def send_many(records: list[tuple[str, bytes, bytes | None, int]]) -> object:
            return await batching.send_batched(app, records)

        def consumer() -> AIOKafkaConsumer:
            return AIOKafkaConsumer(
                **kafka_client,
                enable_auto_commit=False,
                group_id=None,
                isolation_level="read_committed",
            )

        store = KeyStore(
            load_kek(settings),
            KeyRecordCodec(serde),
            settings.topic_partitions,
            send=send,
            consumer=consumer,
            send_many=send_many,
        )
        _built.append(store)
    return _built[0]


def _on_assigned(_sender: object, assigned: Iterable[Any], **_: object) -> None:
    key_store().assign(owned_partitions(assigned))


def _on_revoked(_sender: object, *_: object, **__: object) -> None:
    key_store().revoke()


async def _run() -> None:
    store = key_store()
    await asyncio.gather(store.follow(), store.keep_wrapped())


def install(app: Any) -> None:
    """Follow the owned partitions' keys for the worker's life: on every assignment and
    revocation (Faust's signals), with a task that reads the topic and re-wraps after a
    KEK rotation. Called once, at import, by the module that serves the keys."""
    app.on_partitions_assigned.connect(_on_assigned)
    app.on_partitions_revoked.connect(_on_revoked)
    app.task(_run)
