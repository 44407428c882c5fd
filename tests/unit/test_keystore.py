"""The worker's key store (streams.keystore): rings of the owned partitions, fed in order,
the key service (one creation per subject, answered once stored, erased subjects
refused), shredding, catching up before a miss counts as shredded, and re-wrapping.

The topic is an in-memory log here (what the store produces, its consumer reads back in
order); tests/integration/test_subject_keys.py runs the same against the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition

from privops.adapters import kek as kekfile
from privops.adapters.key_topic import KeyRecordCodec, subject_partition
from privops.adapters.serde import Serde
from privops.core.fieldcrypt import MAIN_SCOPE, ShreddedKey, decrypt_field, encrypt_field
from privops.core.subject_keys import MAX_KEYS_PER_SUBJECT, SubjectErased, TooManyKeys, create
from privops.core.topics import SUBJECT_KEYS
from streams import keystore
from streams.keystore import KeyStore, NotOwned

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
PARTITIONS = 4
NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


def subject_on(partition: int, n: int = 0) -> str:
    """A subject id whose partition is ``partition``."""
    found = (f"subj-{i}" for i in range(10_000))
    on = [s for s in found if subject_partition(s, PARTITIONS) == partition]
    return on[n]


class Log:
    """One topic in memory: what the store sends is appended, its consumer reads it."""

    def __init__(self) -> None:
        self.parts: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in range(PARTITIONS)}
        self.delay = 0.0
        self.batches = 0

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: int) -> int:
        assert topic == SUBJECT_KEYS
        await asyncio.sleep(self.delay)  # the broker's round trip: others run meanwhile
        self.parts[partition].append((key, value))
        return len(self.parts[partition]) - 1

    async def send_many(self, records: list[tuple[str, bytes, bytes | None, int]]) -> None:
        """Many records in one round trip (the worker's producer batches)."""
        self.batches += 1
        await asyncio.sleep(self.delay)
        for topic, key, value, partition in records:
            assert topic == SUBJECT_KEYS
            self.parts[partition].append((key, value))

    def consumer(self) -> LogConsumer:
        return LogConsumer(self)


class LogConsumer:
    """The few calls of AIOKafkaConsumer the store makes, over a ``Log``."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.pos: dict[int, int] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def assign(self, tps: list[TopicPartition]) -> None:
        self.pos = {tp.partition: len(self.log.parts[tp.partition]) for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos[tp.partition] = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.pos[tp.partition] = 0

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log.parts[tp.partition]) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.pos[tp.partition]

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0.005)
        out = {}
        for p, at in self.pos.items():
            found = self.log.parts[p][at:]
            if found:
                out[TopicPartition(SUBJECT_KEYS, p)] = [
                    SimpleNamespace(key=k, value=v, offset=at + i) for i, (k, v) in enumerate(found)
                ]
                self.pos[p] = len(self.log.parts[p])
        return out


def registry(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": 7})


@pytest.fixture
def codec() -> KeyRecordCodec:
    serde = Serde("http://registry.test", SCHEMAS, transport=httpx.MockTransport(registry))
    return KeyRecordCodec(serde)


@pytest.fixture
def kek_path(tmp_path: Path) -> Path:
    kekfile.create(tmp_path / "keys" / "kek.json", NOW)
    return tmp_path / "keys" / "kek.json"


def new_store(log: Log, codec: KeyRecordCodec, kek_path: Path) -> KeyStore:
    watch = kekfile.KekWatch(kek_path, "prod", print)
    return KeyStore(watch, codec, PARTITIONS, send=log.send, consumer=log.consumer)


@contextlib.asynccontextmanager
async def following(
    store: KeyStore, partitions: set[int], seconds: float = 5.0
) -> AsyncIterator[KeyStore]:
    """The store following ``partitions``, loaded (also on the real broker)."""
    task = asyncio.create_task(store.follow())
    store.assign(partitions)
    try:
        async with asyncio.timeout(seconds):
            await store.until_loaded()
        yield store
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def log() -> Log:
    return Log()


async def test_two_concurrent_requests_for_a_new_subject_get_one_stored_key(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    log.delay = 0.05
    ann = subject_on(1)
    async with following(new_store(log, codec, kek_path), {0, 1}) as store:
        first, second = await asyncio.gather(
            store.get_or_create(ann, MAIN_SCOPE), store.get_or_create(ann, MAIN_SCOPE)
        )
    assert first == second
    assert [(k.decode(), v is not None) for k, v in log.parts[1]] == [(first.key_id, True)]
    assert codec.decode(log.parts[1][0][1] or b"") == first


async def test_a_key_is_answered_only_once_the_broker_has_it(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    async def refused(*_: object) -> int:
        raise keystore.KeyStoreBehind("broker gone")

    ann = subject_on(0)
    async with following(new_store(log, codec, kek_path), {0}) as store:
        store._send = refused
        with pytest.raises(keystore.KeyStoreBehind):
            await store.get_or_create(ann)
        assert store.ring(0).records(ann) == []  # nothing handed out, nothing kept
        store._send = log.send
        assert (await store.get_or_create(ann)).subject_id == ann


@pytest.mark.parametrize("batched", [False, True], ids=["record-by-record", "batched"])
async def test_a_flush_gets_its_subjects_storage_keys_together(
    log: Log, codec: KeyRecordCodec, kek_path: Path, batched: bool
) -> None:
    """Existing keys are read, missing main keys created at once (one round trip for
    all, not one each) and handed out only once stored; none for an erased subject.
    Batched (the worker's store): all of them in one ``send_many``."""
    log.delay = 0.2
    known, gone = subject_on(0), subject_on(0, 1)
    new = [subject_on(p, n) for p in (0, 1) for n in range(2, 7)]
    made = new_store(log, codec, kek_path)
    if batched:
        made = KeyStore(
            made.kek,
            codec,
            PARTITIONS,
            send=log.send,
            consumer=log.consumer,
            send_many=log.send_many,
        )
    async with following(made, {0, 1}) as store:
        log.delay = 0.0
        existing = await store.get_or_create(known)
        log.delay = 0.2
        log.batches = 0
        started = asyncio.get_running_loop().time()
        keys = await store.storage_keys({known: False, gone: True, **dict.fromkeys(new, False)})
        took = asyncio.get_running_loop().time() - started
        assert took < 2 * log.delay  # ten keys stored concurrently, not one after another
        assert keys[known] == store.ring(0).get(existing.key_id)
        assert keys[gone] is None
        for subject in new:
            stored = store.ring(store.partition_of(subject)).current_record(subject)
            assert stored is not None
            assert keys[subject] == store.ring(store.partition_of(subject)).get(stored.key_id)
        sent = [codec.decode(v or b"") for p in (0, 1) for _k, v in log.parts[p]]
        assert sorted(r.subject_id for r in sent) == sorted([known, *new])
        assert await store.storage_keys(dict.fromkeys(new, False)) == {s: keys[s] for s in new}
        assert sum(len(part) for part in log.parts.values()) == len(new) + 1  # none again
        assert log.batches == (1 if batched else 0)


async def test_a_record_read_from_the_topic_is_checked_when_first_used(
    log: Log, codec: KeyRecordCodec, kek_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Records are indexed unread at load; one that is damaged, or filed under another
    key id, reads as no key when used, and says so in the log (never its value)."""
    ann, bob = subject_on(0), subject_on(0, 1)
    store = new_store(log, codec, kek_path)
    async with following(store, {0}):
        good = await store.get_or_create(ann)
    kek = kekfile.load(kek_path).current()
    other = create(bob, MAIN_SCOPE, kek, NOW)[0]
    fresh = new_store(log, codec, kek_path)
    fresh.assign({0})
    fresh.apply(0, good.key_id.encode(), codec.encode(good))
    fresh.apply(0, other.key_id.encode(), codec.encode(good))  # filed under bob's id
    with caplog.at_level("ERROR"):
        fresh.apply(0, b"not a key id", codec.encode(good))
        assert len(fresh.ring(0)) == 2  # the bad key id was refused at once
        assert fresh.ring(0).get(other.key_id) is None
        assert fresh.ring(0).get(good.key_id) is not None
    said = [r.getMessage() for r in caplog.records]
    assert said[0].startswith(f"{SUBJECT_KEYS}[0]: not a key id")
    assert said[1:] == [f"{SUBJECT_KEYS}[0]: a key record under another key id"]


async def test_scopes_get_their_own_keys(log: Log, codec: KeyRecordCodec, kek_path: Path) -> None:
    ann = subject_on(2)
    async with following(new_store(log, codec, kek_path), {2}) as store:
        main = await store.get_or_create(ann)
        kept = await store.get_or_create(ann, "retained:purchases:2032-03-31")
        assert main.key_id != kept.key_id
        assert await store.get_or_create(ann) == main
        assert [r.key_id for r in await store.records(ann)] == sorted([main.key_id, kept.key_id])


async def test_erased_subjects_get_no_key(log: Log, codec: KeyRecordCodec, kek_path: Path) -> None:
    ann = subject_on(0)
    async with following(new_store(log, codec, kek_path), {0}) as store:
        with pytest.raises(SubjectErased):
            await store.get_or_create(ann, erased=lambda _s: True)
        assert log.parts[0] == []


async def test_an_erasure_makes_its_storage_scope_after_an_earlier_shred(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """A second erasure of a subject in the process that shredded the first (a failed
    erase task's ``unerased`` scope, a follow-up) makes the scope it keeps data under.
    Before, ``SubjectErased`` was raised, uncaught, and the worker stopped (review,
    session 24); it went through after the restart, which forgets the shred."""
    ann = subject_on(1)
    async with following(new_store(log, codec, kek_path), {1}) as store:
        main = await store.get_or_create(ann)
        await store.shred(ann, [main.key_id])
        scope = "retained:unerased:2026-03-11"
        with pytest.raises(SubjectErased):  # a system still gets nothing
            await store.get_or_create(ann, scope)
        made = await store.get_or_create(ann, scope, erased=lambda _s: True, erasing=True)
        assert made.scope == scope
        with pytest.raises(ValueError, match="retained scope"):
            await store.get_or_create(ann, MAIN_SCOPE, erasing=True)


async def test_a_subject_gets_at_most_max_keys_on_request(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """A system looping POST /subject-keys?scope=retained:<category>:<each day> gave one
    subject thousands of keys: every lookup of them scans all, every GET lists all
    (20,000 took 9 ms a lookup and a 6 MB answer: review, session 24)."""
    ann = subject_on(1)
    async with following(new_store(log, codec, kek_path), {1}) as store:
        for day in range(MAX_KEYS_PER_SUBJECT):
            await store.get_or_create(ann, f"retained:purchases:2027-01-{day + 1:02d}")
        with pytest.raises(TooManyKeys):
            await store.get_or_create(ann, "retained:purchases:2027-03-01")
        assert len(await store.records(ann)) == MAX_KEYS_PER_SUBJECT
        # One system's dated scopes never block another's, nor ``main``: counted over
        # all, crm's 32 made orders' keys of the subject, and their main, 409 (review,
        # session 43).
        assert (await store.get_or_create(ann, MAIN_SCOPE)).scope == MAIN_SCOPE
        contact = await store.get_or_create(ann, "retained:contact:2027-01-01")
        assert contact.scope == "retained:contact:2027-01-01"
        # What exists is still answered, and an erasure still makes its own scope.
        existing = await store.get_or_create(ann, "retained:purchases:2027-01-01")
        assert existing.scope == "retained:purchases:2027-01-01"
        await store.get_or_create(ann, "retained:unerased:2027-02-01", erasing=True)
    # Years on, the days of those scopes have passed: they no longer count (an orders
    # system making a scope a year would otherwise be refused after some years).
    watch = kekfile.KekWatch(kek_path, "prod", print)
    june = datetime(2027, 6, 1, tzinfo=UTC)
    later = KeyStore(
        watch, codec, PARTITIONS, send=log.send, consumer=log.consumer, now=lambda: june
    )
    async with following(later, {1}) as store:
        made = await store.get_or_create(ann, "retained:purchases:2034-03-31")
        assert made.scope == "retained:purchases:2034-03-31"


async def test_an_erasure_while_the_key_was_stored_shreds_it(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    ann = subject_on(0)
    checks = iter([False, True])  # not erased before the produce, erased after it
    async with following(new_store(log, codec, kek_path), {0}) as store:
        with pytest.raises(SubjectErased):
            await store.get_or_create(ann, erased=lambda _s: next(checks))
        assert store.ring(0).records(ann) == []
    key_id = log.parts[0][0][0]
    assert log.parts[0][1] == (key_id, None)  # its tombstone


async def test_a_main_key_made_after_the_erasure_read_the_keys_is_shredded_with_them(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """The key service's /seal checked the subject (not erased), then stored a new
    ``main`` while the erasure was decided from the keys it read before (none): the shred
    destroyed only those, and the new key kept the DPO's text readable (review, session
    32). ``main`` always goes: the shred takes it whatever list it was given."""
    ann = subject_on(2)
    async with following(new_store(log, codec, kek_path), {2}) as store:
        decided: list[str] = []  # what the erasure read: no key yet
        made = await store.storage_key(ann, erased=False)  # /seal, meanwhile
        assert made is not None
        shredded = await store.shred(ann, decided)
        assert store.ring(2).current_record(ann, MAIN_SCOPE) is None
    ((main_id, _record), tombstone) = log.parts[2]
    assert shredded == [main_id.decode()]
    assert tombstone == (main_id, None)


async def test_only_the_owners_partitions_are_served(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    async with following(new_store(log, codec, kek_path), {0}) as store:
        with pytest.raises(NotOwned):
            await store.get_or_create(subject_on(3))
        with pytest.raises(NotOwned):
            await store.shred(subject_on(3), [])
        store.revoke()  # a rebalance began: nothing is served until the next assignment
        with pytest.raises(NotOwned):
            await store.get_or_create(subject_on(0))
    with pytest.raises(ValueError, match="scope"):
        await store.get_or_create(subject_on(0), "Not A Scope")


async def test_a_shred_writes_tombstones_and_the_ring_forgets(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    ann, bob = subject_on(1, 0), subject_on(1, 1)
    async with following(new_store(log, codec, kek_path), {1}) as store:
        record = await store.get_or_create(ann)
        other = await store.get_or_create(bob)
        key = await store.key_for(record.key_id)
        assert key is not None
        token = encrypt_field(key, ann, "identifiers.email", "ann@example.com")
        with pytest.raises(ValueError, match="this subject"):
            await store.shred(bob, [record.key_id])
        assert await store.shred(ann, [record.key_id]) == [record.key_id]
        assert await store.records(ann) == []
        assert log.parts[1][-1] == (record.key_id.encode(), None)
        assert store.key(record.key_id) is None
        assert await store.key_for(record.key_id) is None
        with pytest.raises(ShreddedKey):
            decrypt_field(token, ann, "identifiers.email", store.key)
        assert await store.key_for(other.key_id) is not None  # bob's is untouched


async def test_after_a_partial_erasure_the_kept_key_is_still_listed_and_read(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """An erasure that keeps purchases shreds main only: what GET /subject-keys lists
    (``records``) still holds the retained key, and it is read by id, erased or not. The
    connector runner opens a task sealed under it, and seals its answer under it, that
    way (the key service makes nothing new for the erased subject)."""
    ann = subject_on(1)
    retained = "retained:purchases:2032-03-31"
    async with following(new_store(log, codec, kek_path), {1}) as store:
        main = await store.get_or_create(ann)
        kept = await store.get_or_create(ann, retained)
        assert await store.shred(ann, [main.key_id]) == [main.key_id]
        assert [r.key_id for r in await store.records(ann)] == [kept.key_id]
        assert await store.key_for(kept.key_id) is not None
        with pytest.raises(SubjectErased):
            await store.get_or_create(ann, retained, erased=lambda _s: True)


async def test_the_kept_storage_key_is_read_never_made(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """What the key service seals the DPO's text under when no key may be made for it
    (``"new_key": false``): ``main``, after an erasure the retained scope that lasts
    longest, else nothing, and no key record is written for a subject who has none."""
    ann, bob = subject_on(1), subject_on(1, 2)
    async with following(new_store(log, codec, kek_path), {1}) as store:
        assert await store.kept_storage_key(bob, erased=False) is None
        assert await store.kept_storage_key(bob, erased=True) is None
        assert await store.records(bob) == []
        main = await store.get_or_create(ann)
        await store.get_or_create(ann, "retained:purchases:2032-03-31")
        longest = await store.get_or_create(ann, "retained:credit:2033-01-31")
        found = await store.kept_storage_key(ann, erased=False)
        assert found is not None
        assert found.key_id == main.key_id
        await store.shred(ann, [main.key_id])
        found = await store.kept_storage_key(ann, erased=True)
        assert found is not None
        assert found.key_id == longest.key_id


async def test_a_subject_first_met_by_a_retained_key_is_sealed_under_main(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """A system meeting a new subject may ask first for a retained key (billing's
    purchases key). privops still seals its own copies under ``main``, which the
    erasure shreds: before, it sealed them under billing's key, which the erasure keeps
    for years (review, session 44). After the erasure, the retained key it is."""
    ann, bob = subject_on(1), subject_on(1, 3)
    async with following(new_store(log, codec, kek_path), {1}) as store:
        kept = await store.get_or_create(ann, "retained:purchases:2032-03-31")
        await store.get_or_create(bob, "retained:purchases:2032-03-31")
        found = (await store.storage_keys({ann: False}))[ann]
        main = store.ring(1).current_record(ann, MAIN_SCOPE)
        assert main is not None
        assert found is not None
        assert found.key_id == main.key_id != kept.key_id
        sealed = await store.kept_storage_key(bob, erased=False)  # /seal, "new_key": false
        bobs_main = store.ring(1).current_record(bob, MAIN_SCOPE)
        assert bobs_main is not None
        assert sealed is not None
        assert sealed.key_id == bobs_main.key_id
        await store.shred(ann, [main.key_id])
        after = (await store.storage_keys({ann: True}))[ann]
        assert after is not None
        assert after.key_id == kept.key_id


async def test_a_miss_reads_up_to_the_partitions_end_before_it_counts(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """A key stored by another worker (the previous owner) just before this one read the
    event: the lookup waits for the ring to read it instead of calling it shredded."""
    ann = subject_on(2)
    async with following(new_store(log, codec, kek_path), {2}) as store:
        elsewhere = new_store(log, codec, kek_path)
        async with following(elsewhere, {2}):
            record = await elsewhere.get_or_create(ann)
        assert await store.key_for(record.key_id) is not None
        assert await store.key_for(record.key_id.replace(record.key_id[-4:], "0000")) is None


async def test_an_assignment_drops_the_partitions_that_went_and_reads_new_ones(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    zero, one = subject_on(0), subject_on(1)
    writer = new_store(log, codec, kek_path)
    async with following(writer, {0, 1}):
        on_zero = await writer.get_or_create(zero)
        on_one = await writer.get_or_create(one)
    async with following(new_store(log, codec, kek_path), {0}) as store:
        assert store.ring(0).records(zero) == [on_zero]
        store.assign({1})
        assert 0 not in store.rings  # keys and cache gone with the partition
        async with asyncio.timeout(5):
            await store.until_loaded()
        assert store.ring(1).records(one) == [on_one]
        with pytest.raises(NotOwned):
            store.ring(0)


async def test_after_a_revocation_the_store_is_ready_only_once_assigned_again(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """Faust tells the key store and the agents of an assignment in no fixed order: an
    agent that asks after a revocation (``until_loaded``, before it decides) waits for
    the next assignment, and then owns what it was given; it never decides in between
    and has a new subject's key refused (``NotOwned``), dropping its flush."""
    ann = subject_on(1)
    async with following(new_store(log, codec, kek_path), {0}) as store:
        store.revoke()
        assert not store.ready
        waiting = asyncio.create_task(store.until_loaded())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        store.assign({0, 1})
        async with asyncio.timeout(5):
            await waiting
        assert store.ready
        assert (await store.get_or_create(ann)).key_id.startswith(ann)


async def test_a_wait_for_partitions_an_assignment_took_away_ends(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """Waiting for partitions 0 and 1 to load, then an assignment of 2 alone: the wait
    ends once 2 is loaded (it waited for ever on 0's and 1's loading before)."""
    store = new_store(log, codec, kek_path)
    store.assign({0, 1})  # not followed yet: nothing loads
    waiting = asyncio.create_task(store.until_loaded())
    await asyncio.sleep(0.02)
    assert not waiting.done()
    async with following(store, {2}):
        async with asyncio.timeout(5):
            await waiting
        assert store.ready
        assert set(store.rings) == {2}


async def test_stored_keys_are_rewrapped_after_a_kek_rotation(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    ann = subject_on(3)
    async with following(new_store(log, codec, kek_path), {3}) as store:
        record = await store.get_or_create(ann)
        key = await store.key_for(record.key_id)
        kekfile.rotate(kek_path, NOW)
        assert await store.rewrap_stale() == 1
        assert await store.rewrap_stale() == 0
        rewrapped = store.ring(3).record(record.key_id)
        assert rewrapped is not None
        assert (rewrapped.kek_version, rewrapped.created_at) == (2, record.created_at)
        assert codec.decode(log.parts[3][-1][1] or b"") == rewrapped
        new = await store.get_or_create(subject_on(3, 1))
        assert new.kek_version == 2  # new keys under the new version at once
    # A fresh reader after the old version is retired opens the re-wrapped key.
    kekfile.retire(kek_path, 1)
    async with following(new_store(log, codec, kek_path), {3}) as fresh:
        assert await fresh.key_for(record.key_id) == key


def copied(kek: Path, to: Path) -> Path:
    """A copy of the KEK file, as another worker's (mode 0600, as a KEK file must be)."""
    to.write_bytes(kek.read_bytes())
    to.chmod(0o600)
    return to


async def test_keys_under_a_kek_this_worker_lacks_are_left_not_a_crash(
    log: Log, codec: KeyRecordCodec, kek_path: Path, tmp_path: Path
) -> None:
    """A key record wrapped under a KEK version this worker's file does not hold (another
    deployment's KEK on a shared topic, a version retired here too early) made the
    re-wrap pass raise, which stopped the worker (clean-clone CI, session 26). It is left
    as it is now; one newer than this worker's current version is never wrapped down."""
    before = copied(kek_path, tmp_path / "kek-before-rotation.json")  # not given a rotation
    ahead = copied(kek_path, tmp_path / "kek-ahead.json")  # given one more
    kekfile.rotate(kek_path, NOW)
    kekfile.retire(kek_path, 1)  # this worker holds version 2 alone
    kekfile.rotate(ahead, NOW)
    kekfile.rotate(ahead, NOW)
    foreign = []
    for path, subject in ((before, subject_on(2)), (ahead, subject_on(2, 1))):
        async with following(new_store(log, codec, path), {2}) as elsewhere:
            foreign.append(await elsewhere.get_or_create(subject))
    assert [k.kek_version for k in foreign] == [1, 3]
    async with following(new_store(log, codec, kek_path), {2}) as store:
        assert await store.rewrap_stale() == 0
        assert [store.ring(2).record(k.key_id) for k in foreign] == foreign


async def test_a_shred_is_not_undone_by_a_rewrap(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    ann = subject_on(1)
    async with following(new_store(log, codec, kek_path), {1}) as store:
        record = await store.get_or_create(ann)
        kekfile.rotate(kek_path, NOW)
        await asyncio.gather(store.shred(ann, [record.key_id]), store.rewrap_stale())
        assert store.ring(1).record(record.key_id) is None
    values = [v for k, v in log.parts[1] if k == record.key_id.encode()]
    assert values[-1] is None  # the last word on the key id is its tombstone


async def test_a_zombie_owner_does_not_write_back_a_key_the_new_owner_shredded(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """A worker that lost the partition and has not heard yet (a zombie) re-wraps after
    a KEK rotation while the new owner shreds: it checked only its own ring, which had
    not read the tombstone yet, and wrote the key back behind it (review, session 26)."""
    ann = subject_on(1)
    async with following(new_store(log, codec, kek_path), {1}) as zombie:
        record = await zombie.get_or_create(ann)
        kekfile.rotate(kek_path, NOW)
        async with following(new_store(log, codec, kek_path), {1}) as owner:
            await owner.shred(ann, [record.key_id])
            assert await zombie.rewrap_stale() == 0
    values = [v for k, v in log.parts[1] if k == record.key_id.encode()]
    assert values[-1] is None
    async with following(new_store(log, codec, kek_path), {1}) as fresh:
        assert await fresh.key_for(record.key_id) is None


async def test_a_key_written_back_after_its_tombstone_is_ignored_and_tombstoned_again(
    log: Log, codec: KeyRecordCodec, kek_path: Path
) -> None:
    """The second line: a zombie's write that lands after the new owner's tombstone
    anyway (the owner shredded between the zombie's catching up and its write). Key ids
    are never reused, so a record after its key id's tombstone is always a shredded key
    written back."""
    ann = subject_on(1)
    async with following(new_store(log, codec, kek_path), {1}) as owner:
        record = await owner.get_or_create(ann)
        written = log.parts[1][-1]
        await owner.shred(ann, [record.key_id])
        log.parts[1].append(written)  # the zombie's write, behind the tombstone
        stored = len(log.parts[1])
        async with asyncio.timeout(5):
            while len(log.parts[1]) == stored:  # noqa: ASYNC110 (the log is a list, no event)
                await asyncio.sleep(0.01)
        assert log.parts[1][-1] == (record.key_id.encode(), None)
        assert owner.ring(1).record(record.key_id) is None
        assert await owner.key_for(record.key_id) is None
    async with following(new_store(log, codec, kek_path), {1}) as fresh:
        assert await fresh.key_for(record.key_id) is None


async def test_a_key_written_back_during_a_rebalance_is_tombstoned_again_once_assigned(
    log: Log, codec: KeyRecordCodec, kek_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read while a rebalance ran (``revoke``: nothing owned until the next assignment),
    a written-back key was logged and dropped; the partition stayed here, so it was not
    read again, and once compaction dropped the first tombstone the key was live for
    every reader (review, session 44). Tombstoned again once the partition is assigned;
    a send that fails is tried again a while later."""
    monkeypatch.setattr(keystore, "RETRY_SECONDS", 0.2)
    ann = subject_on(1)
    async with following(new_store(log, codec, kek_path), {1}) as owner:
        record = await owner.get_or_create(ann)
        written = log.parts[1][-1]
        await owner.shred(ann, [record.key_id])
        owner.revoke()
        owner.apply(1, *written)  # the zombie's write, read meanwhile
        await asyncio.sleep(0.05)
        assert log.parts[1][-1] == (record.key_id.encode(), None)  # the first tombstone only
        stored = len(log.parts[1])

        async def refused(*_: object) -> int:
            raise keystore.KeyStoreBehind("broker gone")

        owner._send = refused
        owner.assign({1})
        await asyncio.sleep(0.05)
        assert len(log.parts[1]) == stored  # not sent: tried again in a while
        owner._send = log.send
        async with asyncio.timeout(5):
            while len(log.parts[1]) == stored:  # noqa: ASYNC110 (the log is a list, no event)
                await asyncio.sleep(0.01)
        assert log.parts[1][-1] == (record.key_id.encode(), None)


def test_a_missing_or_development_kek_stops_the_worker_outside_dev(tmp_path: Path) -> None:
    from privops.adapters.settings import Settings
    from privops.core.errors import ConfigError

    missing = Settings(home=tmp_path, env="prod", pseudonym_key="p" * 20, audit_key="a" * 20)
    with pytest.raises(ConfigError, match="no KEK file"):
        keystore.load_kek(missing)
    kekfile.create(missing.kek_file, NOW, dev=True)
    with pytest.raises(ConfigError, match="development KEK"):
        keystore.load_kek(missing)
    dev = Settings(home=tmp_path / "dev", env="dev")
    assert keystore.load_kek(dev).file.dev
    assert (tmp_path / "dev" / "keys" / "kek.json").exists()
