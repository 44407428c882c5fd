"""Data keys at rest: wrapped by the key-encryption key, one record per key, and the ring.

``privacy.subject-keys`` is compacted and holds one ``SubjectKey`` per key id (the Kafka
key is the key id, the partition the subject's): a record is never replaced by a
different key, so a second creator racing the first (a zombie worker during a
rebalance) adds a key instead of overwriting one that data was already written under.
Readers converge on one current key per subject and scope (the newest), and every key
stays readable until its own tombstone. docs/crypto-shredding.md has the whole design.

The data key is wrapped with AES-256-GCM under a versioned KEK, with the subject id
and key id as associated data, so a wrapped key copied onto another subject or key id
does not unwrap. Pure: the KEK comes in as an argument (``privops.adapters.kek`` keeps it).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import ClassVar, Final, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import Field, model_validator

from privops.core.errors import PrivopsError
from privops.core.fieldcrypt import (
    KEY_BYTES,
    MAIN_SCOPE,
    NONCE_BYTES,
    TAG_BYTES,
    DataKey,
    associated_data,
    check_scope,
    split_key_id,
)
from privops.core.records import Record

WRAPPED_BYTES: Final = NONCE_BYTES + KEY_BYTES + TAG_BYTES
RETAINED: Final = "retained"
_WRAP_LABEL: Final = b"privops-kek-wrap/1"


class KeyUnwrapFailed(PrivopsError):
    """A wrapped key that does not open under its KEK version: altered, or the wrong KEK."""


class TooManyKeys(ValueError):
    """A subject already has ``MAX_KEYS_PER_SUBJECT`` live keys of a category
    (``KeyRing.live``): no system needs more (a retained scope per kept category and
    year), and each costs every lookup of the subject and every answer listing their
    keys."""


# Live keys of one category one subject may have made on request (retained scopes whose
# day passed do not count; ``main`` is one a subject and never counts; an erasure's own
# storage scope is always made). Per category: counted over all, one system making 32
# dated scopes of its own category blocked the subject's keys of every other category,
# ``main`` included, for as long as those stayed live (review, session 43). Systems
# holding the same category still share its 32 (a key id does not say who made it).
MAX_KEYS_PER_SUBJECT: Final = 32


class SubjectErased(PrivopsError):
    """The subject was erased: the key service creates no key for them again."""


@dataclass(frozen=True, slots=True)
class Kek:
    """One version of the key-encryption key."""

    version: int
    secret: bytes = field(repr=False)
    _aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ValueError("KEK versions start at 1")
        if len(self.secret) != KEY_BYTES:
            raise ValueError(f"a KEK is {KEY_BYTES} bytes, not {len(self.secret)}")
        object.__setattr__(self, "_aead", AESGCM(self.secret))

    def wrap(self, key: DataKey) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key.secret, _wrap_ad(key.key_id))

    def unwrap(self, key_id: str, wrapped: bytes) -> DataKey:
        try:
            secret = self._aead.decrypt(
                wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_ad(key_id)
            )
        except InvalidTag as exc:
            raise KeyUnwrapFailed(
                f"the wrapped key {key_id!r} does not open under KEK version {self.version}"
            ) from exc
        return DataKey(key_id, secret)


def _wrap_ad(key_id: str) -> bytes:
    subject_id, _, _ = split_key_id(key_id)
    return associated_data(_WRAP_LABEL, subject_id, key_id)


# --- scopes -------------------------------------------------------------------------------


def retained_scope(category: str, until: date) -> str:
    """The scope of data a retention rule keeps until ``until`` (e.g. invoices, 6 years).

    One key per category and end date: a subject's invoices of one financial year share
    it, and the follow-up erasure on that date shreds exactly them.
    """
    return check_scope(f"{RETAINED}:{category}:{until.isoformat()}")


def _category(scope: str) -> str | None:
    """The category of a retained scope (``retained:<category>:<day>``), else None. Not
    ``shredding.scope_category``, which also wants a real day: a scope whose day is not
    one must still count against its category's cap."""
    kind, _, rest = scope.partition(":")
    return (rest.rpartition(":")[0] or None) if kind == RETAINED else None


def retained_until(scope: str) -> date | None:
    """The end of a retained scope's retention; None for any other scope."""
    kind, _, rest = scope.partition(":")
    _, _, until = rest.rpartition(":")
    if kind != RETAINED or not until:
        return None
    try:
        return date.fromisoformat(until)
    except ValueError:
        return None


# --- the record on privacy.subject-keys -----------------------------------------------------


class SubjectKey(Record):
    """privacy.subject-keys (compacted, keyed by key id): one data key, wrapped by the KEK.

    Erasure writes the key id's tombstone; there is no other copy of the key.
    """

    namespace: ClassVar[str] = "privops.keys"
    subject_id: str
    key_id: str
    scope: str
    kek_version: int = Field(ge=1)
    wrapped: bytes
    created_at: datetime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        subject_id, scope, _ = split_key_id(self.key_id)
        if (subject_id, scope) != (self.subject_id, self.scope):
            raise ValueError("key_id must name this record's subject and scope")
        if len(self.wrapped) != WRAPPED_BYTES:
            raise ValueError(f"a wrapped key is {WRAPPED_BYTES} bytes")
        if self.created_at.tzinfo is None or self.created_at.utcoffset() is None:
            raise ValueError("created_at must be timezone-aware")
        return self

    def topic_key(self) -> bytes:
        return self.key_id.encode()


def wrap(key: DataKey, kek: Kek, now: datetime) -> SubjectKey:
    return SubjectKey(
        subject_id=key.subject_id,
        key_id=key.key_id,
        scope=key.scope,
        kek_version=kek.version,
        wrapped=kek.wrap(key),
        created_at=now.astimezone(UTC),
    )


def unwrap(record: SubjectKey, kek: Kek) -> DataKey:
    if kek.version != record.kek_version:
        raise KeyUnwrapFailed(
            f"{record.key_id!r} is wrapped under KEK version {record.kek_version}, "
            f"not {kek.version}"
        )
    return kek.unwrap(record.key_id, record.wrapped)


def create(subject_id: str, scope: str, kek: Kek, now: datetime) -> tuple[SubjectKey, DataKey]:
    """A new data key and its record. Hand the key out only once the record is stored."""
    key = DataKey.generate(subject_id, scope)
    return wrap(key, kek, now), key


def rewrap(record: SubjectKey, old: Kek, new: Kek) -> SubjectKey:
    """The same data key under another KEK version (rotation); created_at is kept."""
    return wrap(unwrap(record, old), new, record.created_at)


# --- the ring: one process's view of the topic -------------------------------------------


Opener = Callable[[str, bytes], SubjectKey | None]
"""Decodes a key id's record as the topic holds it; None when it is unusable (the opener
says why: the ring only drops it)."""
VersionOf = Callable[[bytes], int | None]
"""The KEK version a record as the topic holds it is wrapped under, without decoding it
whole; None when that cannot be read."""


class KeyRing:
    """The keys a process can read, fed from ``privacy.subject-keys``, records and tombstones.

    Wrapped records are kept for every key; unwrapped keys only in a bounded cache, so
    a worker with a million subjects does not hold a million plaintext keys. A
    tombstone removes both at once: this is the purge every cache must do.

    Records may arrive as the topic holds them (``apply_encoded``, with an ``opener``):
    each is decoded the first time it is used, then kept decoded. A worker that reads a
    million keys at start-up indexes them in seconds and holds ~0.5 KB per key it has
    not used, where decoding each up front took ~38 µs and ~1.7 KB (docs/benchmarks.md,
    session 6).
    """

    def __init__(
        self,
        unwrapper: Callable[[SubjectKey], DataKey],
        cache_size: int = 4096,
        opener: Opener | None = None,
    ) -> None:
        self._unwrap = unwrapper
        self._open = opener
        self._records: dict[str, SubjectKey | bytes] = {}
        self._by_subject: dict[str, set[str]] = {}
        self._cache: OrderedDict[str, DataKey] = OrderedDict()
        self._cache_size = cache_size
        # subject id -> the key id of their current ``main`` record (what a flush asks
        # for each subject it seals): dropped whenever one of their records comes or goes.
        self._main: dict[str, str] = {}
        # key id -> the bytes this process wrote for the record it holds (``apply`` with
        # ``encoded``): the topic bringing the same bytes back changes nothing.
        self._sent: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._records)

    def live(self, subject_id: str, today: date, scope: str | None = None) -> int:
        """How many of the subject's keys are still live: all but retained scopes whose
        day has passed (read from the key ids: nothing is decoded); with a retained
        ``scope``, only those of its category."""
        category = _category(scope) if scope is not None else None
        count = 0
        for key_id in self._by_subject.get(subject_id, ()):
            held = split_key_id(key_id)[1]
            if category is not None and _category(held) != category:
                continue
            until = retained_until(held)
            count += until is None or until >= today
        return count

    def apply(
        self, key_id: str, record: SubjectKey | None, *, encoded: bytes | None = None
    ) -> None:
        """One record of the topic, in order; None is the key id's tombstone.

        ``encoded``: the bytes this process wrote to the topic for ``record`` (a key it
        created). When the topic brings those same bytes back (``apply_encoded``), the
        record stays as it is, decoded, and its key unwrapped: decoding it again costs
        ~40 µs per new subject for nothing."""
        came_back = encoded is not None and self._records.get(key_id) == encoded
        self._remove(key_id)
        if record is None:
            return
        if record.key_id != key_id:
            raise ValueError(f"record {record.key_id!r} arrived under key {key_id!r}")
        self._add(key_id, record.subject_id, record)
        if encoded is not None and not came_back:
            self._sent[key_id] = encoded

    def apply_encoded(self, key_id: str, value: bytes) -> None:
        """One record of the topic as it holds it, decoded when first used. Raises
        ``MalformedField`` for a key that is no key id (the record is not kept)."""
        if self._open is None:
            raise TypeError("this ring has no opener: apply decoded records")
        if self._sent.pop(key_id, None) == value:
            return  # what this process wrote and holds decoded already
        subject_id, _, _ = split_key_id(key_id)
        self._remove(key_id)
        self._add(key_id, subject_id, value)

    def _add(self, key_id: str, subject_id: str, entry: SubjectKey | bytes) -> None:
        self._main.pop(subject_id, None)
        self._records[key_id] = entry
        self._by_subject.setdefault(subject_id, set()).add(key_id)

    def _remove(self, key_id: str) -> None:
        self._cache.pop(key_id, None)
        self._sent.pop(key_id, None)
        if self._records.pop(key_id, None) is None:
            return
        subject_id = split_key_id(key_id)[0]
        self._main.pop(subject_id, None)
        ids = self._by_subject[subject_id]
        ids.discard(key_id)
        if not ids:
            del self._by_subject[subject_id]

    def forget_subject(self, subject_id: str) -> list[str]:
        """Apply the tombstones of all of a subject's keys; the ids, to send them."""
        ids = sorted(self._by_subject.get(subject_id, ()))
        for key_id in ids:
            self.apply(key_id, None)
        return ids

    def record(self, key_id: str) -> SubjectKey | None:
        entry = self._records.get(key_id)
        if isinstance(entry, bytes):
            return self._opened(key_id, entry)
        return entry

    def _opened(self, key_id: str, value: bytes) -> SubjectKey | None:
        """The record decoded and kept; an unusable one is dropped (privops wrote every
        record: another version's, or a bug) and reads as no key."""
        assert self._open is not None  # only apply_encoded stores bytes
        record = self._open(key_id, value)
        if record is None or record.key_id != key_id:
            self._remove(key_id)
            return None
        self._records[key_id] = record
        return record

    def stale(self, version: int, version_of: VersionOf) -> list[SubjectKey]:
        """The records not wrapped under KEK ``version`` (to re-wrap after a rotation);
        a record not used yet is decoded only if it is one (``version_of`` reads its
        version alone)."""
        stale: list[SubjectKey] = []
        for key_id, entry in list(self._records.items()):
            if isinstance(entry, bytes) and version_of(entry) == version:
                continue
            record = self._opened(key_id, entry) if isinstance(entry, bytes) else entry
            if record is not None and record.kek_version != version:
                stale.append(record)
        return stale

    def records(self, subject_id: str) -> list[SubjectKey]:
        found = (self.record(k) for k in sorted(self._by_subject.get(subject_id, ())))
        return [record for record in found if record is not None]

    def get(self, key_id: str) -> DataKey | None:
        """The unwrapped key, or None if there is none (a ``KeyLookup``)."""
        key = self._cache.get(key_id)
        if key is not None:
            self._cache.move_to_end(key_id)
            return key
        record = self.record(key_id)
        return None if record is None else self._unwrapped(record)

    def add(
        self, record: SubjectKey, key: DataKey | None = None, *, encoded: bytes | None = None
    ) -> DataKey:
        """Apply a record known before the topic brings it (the key service's answer);
        ``key``, when its creator holds it, is what the record wraps (not unwrapped again);
        ``encoded``, what its creator wrote to the topic (``apply``)."""
        self.apply(record.key_id, record, encoded=encoded)
        if key is None or key.key_id != record.key_id:
            return self._unwrapped(record)
        self._remember(record.key_id, key)
        return key

    def _unwrapped(self, record: SubjectKey) -> DataKey:
        key = self._unwrap(record)
        self._remember(record.key_id, key)
        return key

    def _remember(self, key_id: str, key: DataKey) -> None:
        self._cache[key_id] = key
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def current_record(self, subject_id: str, scope: str = MAIN_SCOPE) -> SubjectKey | None:
        """The record of the key new data is written under: the newest (then highest id),
        so every reader picks the same one whatever order two racing records arrived in."""
        if scope == MAIN_SCOPE and (known := self._main.get(subject_id)) is not None:
            record = self.record(known)
            if record is not None:  # else it was unusable, and is gone: look again
                return record
        candidates = [r for r in self.records(subject_id) if r.scope == scope]
        if not candidates:
            return None
        newest = max(candidates, key=lambda r: (r.created_at, r.key_id))
        if scope == MAIN_SCOPE:
            if len(self._main) >= self._cache_size:
                del self._main[next(iter(self._main))]  # the oldest remembered
            self._main[subject_id] = newest.key_id
        return newest

    def current(self, subject_id: str, scope: str = MAIN_SCOPE) -> DataKey | None:
        """The key new data is written under (``current_record``), unwrapped."""
        newest = self.current_record(subject_id, scope)
        return None if newest is None else self.get(newest.key_id)

    def cached(self) -> int:
        return len(self._cache)
