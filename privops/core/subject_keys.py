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
from collections.abc import Callable, Collection, Iterable
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


def keys_to_shred(
    records: Iterable[SubjectKey], today: date, keep_scopes: Collection[str] = ()
) -> list[str]:
    """The key ids an erasure destroys: all but retained scopes still within retention.

    ``keep_scopes`` are further scopes the erasure plan keeps (a legal hold); the
    follow-up erasure calls this again once they are released or run out.
    """
    doomed = []
    for record in records:
        until = retained_until(record.scope)
        if record.scope in keep_scopes or (until is not None and until >= today):
            continue
        doomed.append(record.key_id)
    return sorted(doomed)


# --- the ring: one process's view of the topic -------------------------------------------


class KeyRing:
    """The keys a process can read, fed from ``privacy.subject-keys``, records and tombstones.

    Wrapped records are kept for every key; unwrapped keys only in a bounded cache, so
    a worker with a million subjects does not hold a million plaintext keys. A
    tombstone removes both at once: this is the purge every cache must do.
    """

    def __init__(self, unwrapper: Callable[[SubjectKey], DataKey], cache_size: int = 4096) -> None:
        self._unwrap = unwrapper
        self._records: dict[str, SubjectKey] = {}
        self._by_subject: dict[str, set[str]] = {}
        self._cache: OrderedDict[str, DataKey] = OrderedDict()
        self._cache_size = cache_size

    def __len__(self) -> int:
        return len(self._records)

    def apply(self, key_id: str, record: SubjectKey | None) -> None:
        """One record of the topic, in order; None is the key id's tombstone."""
        self._cache.pop(key_id, None)
        old = self._records.pop(key_id, None)
        if old is not None:
            ids = self._by_subject[old.subject_id]
            ids.discard(key_id)
            if not ids:
                del self._by_subject[old.subject_id]
        if record is None:
            return
        if record.key_id != key_id:
            raise ValueError(f"record {record.key_id!r} arrived under key {key_id!r}")
        self._records[key_id] = record
        self._by_subject.setdefault(record.subject_id, set()).add(key_id)

    def forget_subject(self, subject_id: str) -> list[str]:
        """Apply the tombstones of all of a subject's keys; the ids, to send them."""
        ids = sorted(self._by_subject.get(subject_id, ()))
        for key_id in ids:
            self.apply(key_id, None)
        return ids

    def record(self, key_id: str) -> SubjectKey | None:
        return self._records.get(key_id)

    def all_records(self) -> list[SubjectKey]:
        """Every stored record (a copy: the caller may apply records while walking it)."""
        return list(self._records.values())

    def records(self, subject_id: str) -> list[SubjectKey]:
        return [self._records[k] for k in sorted(self._by_subject.get(subject_id, ()))]

    def get(self, key_id: str) -> DataKey | None:
        """The unwrapped key, or None if there is none (a ``KeyLookup``)."""
        key = self._cache.get(key_id)
        if key is not None:
            self._cache.move_to_end(key_id)
            return key
        record = self._records.get(key_id)
        return None if record is None else self._unwrapped(record)

    def add(self, record: SubjectKey) -> DataKey:
        """Apply a record known before the topic brings it (the key service's answer)."""
        self.apply(record.key_id, record)
        return self._unwrapped(record)

    def _unwrapped(self, record: SubjectKey) -> DataKey:
        key = self._unwrap(record)
        self._cache[record.key_id] = key
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return key

    def current_record(self, subject_id: str, scope: str = MAIN_SCOPE) -> SubjectKey | None:
        """The record of the key new data is written under: the newest (then highest id),
        so every reader picks the same one whatever order two racing records arrived in."""
        candidates = [r for r in self.records(subject_id) if r.scope == scope]
        if not candidates:
            return None
        return max(candidates, key=lambda r: (r.created_at, r.key_id))

    def current(self, subject_id: str, scope: str = MAIN_SCOPE) -> DataKey | None:
        """The key new data is written under (``current_record``), unwrapped."""
        newest = self.current_record(subject_id, scope)
        return None if newest is None else self.get(newest.key_id)

    def cached(self) -> int:
        return len(self._cache)
