"""privacy.subject-keys on the wire (privops.adapters.key_topic): the partition a subject's
keys land on, the record's bytes, and folding the topic into the keys it still holds."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from privops.adapters.kafka import Consumed
from privops.adapters.key_topic import (
    FULLNAME,
    MAX_RECORD_BYTES,
    KeyRecordCodec,
    fold,
    subject_partition,
)
from privops.adapters.serde import Serde, frame
from privops.core.errors import DecodeError
from privops.core.fieldcrypt import MAIN_SCOPE, DataKey, MalformedField
from privops.core.subject_keys import Kek, KeyRing, SubjectKey, create, unwrap, wrap

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
KEY_SCHEMA_ID = 41


def registry(request: httpx.Request) -> httpx.Response:
    """A registry that gives the key record one id (and any other record another)."""
    subject = request.url.path.split("/subjects/")[1].split("/")[0]
    return httpx.Response(200, json={"id": KEY_SCHEMA_ID if subject == FULLNAME else 42})


@pytest.fixture
def codec() -> KeyRecordCodec:
    return KeyRecordCodec(
        Serde("http://registry.test", SCHEMAS, transport=httpx.MockTransport(registry))
    )


@pytest.fixture
def kek() -> Kek:
    return Kek(1, b"k" * 32)


# Kafka's own murmur2 test vectors (clients' UtilsTest), as the Java client hashes keys.
JAVA_MURMUR2 = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}


@pytest.mark.parametrize(("subject", "hashed"), JAVA_MURMUR2.items())
@pytest.mark.parametrize("partitions", [1, 4, 7, 256])
def test_a_subjects_keys_land_where_every_producer_puts_the_subject(
    subject: str, hashed: int, partitions: int
) -> None:
    """The Java client's default partitioner: toPositive(murmur2(key)) % partitions."""
    assert subject_partition(subject, partitions) == (hashed & 0x7FFFFFFF) % partitions


def test_a_key_record_round_trips(codec: KeyRecordCodec, kek: Kek) -> None:
    record, _ = create("subj-ann", "retained:purchases:2032-03-31", kek, NOW)
    raw = codec.encode(record)
    assert raw[1:5] == KEY_SCHEMA_ID.to_bytes(4, "big")
    assert codec.decode(raw) == record


def test_a_record_under_another_schema_id_is_refused(codec: KeyRecordCodec, kek: Kek) -> None:
    record, _ = create("subj-ann", MAIN_SCOPE, kek, NOW)
    payload = codec.encode(record)[5:]
    with pytest.raises(DecodeError) as info:
        codec.decode(frame(42, payload))
    assert info.value.reason == "unknown_schema"


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw + b"\x00",  # bytes after the record
        lambda raw: raw[:-3],  # cut short
        lambda raw: raw[:5] + b"\x00" * (MAX_RECORD_BYTES + 1),  # far too long for a key
        lambda raw: b"\x01" + raw[1:],  # not Confluent framing
    ],
    ids=["trailing", "short", "long", "magic"],
)
def test_damaged_key_records_are_decode_errors(
    codec: KeyRecordCodec, kek: Kek, damage: Callable[[bytes], bytes]
) -> None:
    record, _ = create("subj-ann", MAIN_SCOPE, kek, NOW)
    with pytest.raises(DecodeError):
        codec.decode(damage(codec.encode(record)))


def test_an_inconsistent_record_is_invalid(codec: KeyRecordCodec, kek: Kek) -> None:
    record, _ = create("subj-ann", MAIN_SCOPE, kek, NOW)
    other = record.model_copy(update={"subject_id": "subj-bob"})  # not revalidated
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.serde.encode(other))
    assert info.value.reason == "invalid_record"


def test_folding_the_topic_keeps_what_no_tombstone_followed(
    codec: KeyRecordCodec, kek: Kek
) -> None:
    ann, _ = create("subj-ann", MAIN_SCOPE, kek, NOW)
    bob, _ = create("subj-bob", MAIN_SCOPE, kek, NOW)
    old, _ = create("subj-cat", MAIN_SCOPE, kek, NOW)
    log = [
        (ann.key_id, codec.encode(ann)),
        (bob.key_id, codec.encode(bob)),
        (ann.key_id, None),  # ann erased
        (old.key_id, codec.encode(old)),
        (old.key_id, b"\x00\x00\x00\x00\x2a junk"),  # unreadable: not a key any more
        (None, codec.encode(bob)),  # no key: not a key record
    ]
    consumed = [
        Consumed(0, n, 0, None if k is None else k.encode(), v) for n, (k, v) in enumerate(log)
    ]
    assert fold(codec, consumed) == {bob.key_id: bob}


def test_a_records_kek_version_is_read_without_decoding_it(codec: KeyRecordCodec, kek: Kek) -> None:
    record, _ = create("subj-ann", MAIN_SCOPE, Kek(7, b"k" * 32), NOW)
    raw = codec.encode(record)
    assert codec.kek_version(raw) == 7
    assert codec.kek_version(raw[:-40]) is None  # cut short
    assert codec.kek_version(frame(42, raw[5:])) is None  # another schema's id


class Opened:
    """A ring's opener over the codec that counts what it decoded."""

    def __init__(self, codec: KeyRecordCodec) -> None:
        self.codec = codec
        self.ids: list[str] = []

    def __call__(self, key_id: str, value: bytes) -> SubjectKey | None:
        self.ids.append(key_id)
        try:
            return self.codec.decode(value)
        except DecodeError:
            return None


def test_a_ring_decodes_a_record_from_the_topic_only_when_it_is_used(
    codec: KeyRecordCodec, kek: Kek
) -> None:
    opened = Opened(codec)
    ring = KeyRing(lambda rec: unwrap(rec, kek), opener=opened)
    records = [create(f"subj-{n}", MAIN_SCOPE, kek, NOW)[0] for n in range(3)]
    for record in records:
        ring.apply_encoded(record.key_id, codec.encode(record))
    assert len(ring) == 3
    assert opened.ids == []  # indexed by key id alone
    assert ring.current_record("subj-1") == records[1]
    assert ring.get(records[1].key_id) is not None
    assert opened.ids == [records[1].key_id]  # decoded once, then kept
    ring.apply(records[2].key_id, None)  # a tombstone of a record never used
    assert ring.records("subj-2") == []
    assert len(ring) == 2
    assert opened.ids == [records[1].key_id]


def test_a_record_this_process_wrote_is_not_decoded_again_when_the_topic_brings_it_back(
    codec: KeyRecordCodec, kek: Kek
) -> None:
    """The worker creates a subject's key (``add`` with the bytes it sent): the topic
    bringing those bytes back keeps the record decoded and the key unwrapped. Other
    bytes under the key id (a re-wrap) replace it, and so does a record that came back
    before the creator applied it (nothing is left waiting for it)."""
    opened = Opened(codec)
    unwrapped: list[str] = []

    def unwrapper(record: SubjectKey) -> DataKey:
        unwrapped.append(record.key_id)
        return unwrap(record, kek)

    ring = KeyRing(unwrapper, opener=opened)
    record, key = create("subj-ann", MAIN_SCOPE, kek, NOW)
    sent = codec.encode(record)
    assert ring.add(record, key, encoded=sent) is key
    ring.apply_encoded(record.key_id, sent)
    assert ring.current("subj-ann") is key
    assert (opened.ids, unwrapped) == ([], [])

    rewrapped = wrap(key, Kek(2, b"n" * 32), NOW)
    ring.apply_encoded(record.key_id, codec.encode(rewrapped))  # not what was sent
    assert ring.current_record("subj-ann") == rewrapped
    assert opened.ids == [record.key_id]

    bob, bobs_key = create("subj-bob", MAIN_SCOPE, kek, NOW)
    ring.apply_encoded(bob.key_id, codec.encode(bob))  # back before its creator applied it
    ring.add(bob, bobs_key, encoded=codec.encode(bob))
    assert ring._sent == {}
    again, _ = create("subj-cy", MAIN_SCOPE, kek, NOW)
    ring.add(again, encoded=codec.encode(again))
    ring.apply(again.key_id, None)  # shredded before it came back
    assert ring._sent == {}


def test_an_unusable_record_from_the_topic_reads_as_no_key(codec: KeyRecordCodec, kek: Kek) -> None:
    ring = KeyRing(lambda rec: unwrap(rec, kek), opener=Opened(codec))
    ann, bob = (create(s, MAIN_SCOPE, kek, NOW)[0] for s in ("subj-ann", "subj-bob"))
    ring.apply_encoded(ann.key_id, codec.encode(ann)[:-3])  # damaged
    ring.apply_encoded(bob.key_id, codec.encode(ann))  # another key id's record
    assert (ring.get(ann.key_id), ring.get(bob.key_id)) == (None, None)
    assert (len(ring), ring.records("subj-ann")) == (0, [])
    with pytest.raises(MalformedField):
        ring.apply_encoded("no key id", codec.encode(ann))
    assert len(ring) == 0


def test_only_stale_records_are_decoded_to_be_rewrapped(codec: KeyRecordCodec) -> None:
    old, new = Kek(1, b"o" * 32), Kek(2, b"n" * 32)
    opened = Opened(codec)
    ring = KeyRing(lambda rec: unwrap(rec, old if rec.kek_version == 1 else new), opener=opened)
    under_old = create("subj-ann", MAIN_SCOPE, old, NOW)[0]
    under_new = [create(f"subj-{n}", MAIN_SCOPE, new, NOW)[0] for n in range(5)]
    for record in (under_old, *under_new):
        ring.apply_encoded(record.key_id, codec.encode(record))
    assert ring.stale(2, codec.kek_version) == [under_old]
    assert opened.ids == [under_old.key_id]
    assert ring.stale(1, codec.kek_version) == under_new  # decoded now, in order


def test_the_current_main_key_follows_records_as_they_come_and_go(kek: Kek) -> None:
    """The ring remembers each subject's current ``main`` record (a flush asks for it per
    subject); a newer record, a tombstone, or another subject crowding it out of the
    memory never leaves an older answer behind."""
    ring = KeyRing(lambda rec: unwrap(rec, kek), cache_size=1)
    first = create("subj-ann", MAIN_SCOPE, kek, NOW)[0]
    later = create("subj-ann", MAIN_SCOPE, kek, NOW + timedelta(days=1))[0]
    bobs = create("subj-bob", MAIN_SCOPE, kek, NOW)[0]
    ring.apply(first.key_id, first)
    assert ring.current_record("subj-ann") == first
    ring.apply(later.key_id, later)
    assert ring.current_record("subj-ann") == later
    assert ring.current("subj-ann") == unwrap(later, kek)
    ring.apply(bobs.key_id, bobs)
    assert ring.current_record("subj-bob") == bobs  # ann's is forgotten (one remembered)
    assert ring.current_record("subj-ann") == later
    ring.apply(later.key_id, None)  # tombstone
    assert ring.current_record("subj-ann") == first
    ring.forget_subject("subj-ann")
    assert ring.current_record("subj-ann") is None
    assert ring.current_record("subj-bob") == bobs
