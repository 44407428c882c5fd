"""Encrypting a record's personal fields before it is produced, and reading them back.

A business system calls ``encrypt_record`` on each event before sending it to
``<system>.events``: every field the contract marks personal (``privops.personal`` in
the .avsc) becomes ciphertext under the subject's data key, so the event log forgets
the subject when privops destroys that key. A connector calls ``task_identifiers`` (or
``decrypt_record``) to read the identifiers a task carries. Where the keys come from is
a ``KeySource``: ``RingKeySource`` over a ``KeyRing`` fed from ``privacy.subject-keys``,
asking privops' key service for a subject it has no key for (docs/crypto-shredding.md).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

from privops import contract
from privops.adapters.avro import latest_schemas
from privops.core.fieldcrypt import (
    MAIN_SCOPE,
    DataKey,
    decrypt_field,
    encrypt_field,
    is_encrypted,
)
from privops.core.personal import PersonalPath, map_personal, personal_paths
from privops.core.records import Record, Task
from privops.core.subject_keys import KeyRing, SubjectKey

R = TypeVar("R", bound=Record | dict[str, Any])


class KeySource(Protocol):
    def current_key(self, subject_id: str, scope: str) -> DataKey:
        """The key new data of ``subject_id`` in ``scope`` is written under (created if none)."""
        ...

    def key(self, key_id: str) -> DataKey | None:
        """A key by id; None once it is shredded."""
        ...


class RingKeySource:
    """Keys from a ring that follows ``privacy.subject-keys``; ``create`` asks for new ones.

    ``create(subject_id, scope)`` is privops' key service: it answers with the subject's
    current key record for that scope, creating it if there is none, and only once the
    broker has acknowledged it, so no data is ever written under a key that can be lost.
    The answer is wrapped, so it may travel over any channel; it is unwrapped here with
    the KEK, and its copy from the topic later changes nothing.
    """

    def __init__(self, ring: KeyRing, create: Callable[[str, str], SubjectKey]) -> None:
        self.ring = ring
        self._create = create

    def current_key(self, subject_id: str, scope: str) -> DataKey:
        found = self.ring.current(subject_id, scope)
        if found is not None:
            return found
        record = self._create(subject_id, scope)
        if (record.subject_id, record.scope) != (subject_id, scope):
            raise ValueError(f"the key service answered {record.key_id!r} for {subject_id!r}")
        return self.ring.add(record)

    def key(self, key_id: str) -> DataKey | None:
        return self.ring.get(key_id)


@cache
def _paths_by_record(schema_dir: Path) -> dict[str, tuple[PersonalPath, ...]]:
    return {name: personal_paths(v.schema) for name, v in latest_schemas(schema_dir).items()}


@cache
def _default_schema_dir() -> Path:
    return contract.schema_dir()  # looks at the file system: once


def personal_fields(record_name: str, schema_dir: Path | None = None) -> tuple[PersonalPath, ...]:
    """The personal field paths of a record, from its newest committed schema."""
    paths = _paths_by_record(schema_dir or _default_schema_dir())
    try:
        return paths[record_name]
    except KeyError:
        raise ValueError(f"no committed schema for {record_name!r}") from None


def _as_dict(
    record: Record | dict[str, Any], record_name: str | None
) -> tuple[dict[str, Any], str]:
    if isinstance(record, Record):
        return record.model_dump(mode="python"), record_name or record.fullname()
    if record_name is None:
        raise ValueError("a dict record needs its record_name (the Avro full name)")
    return record, record_name


def _subject(datum: dict[str, Any], subject_id: str | None) -> str:
    found = subject_id or datum.get("subject_id")
    if not isinstance(found, str) or not found:
        raise ValueError("the record has no subject_id field: pass subject_id (the Kafka key)")
    return found


def _rebuild(record: R, datum: dict[str, Any]) -> R:
    if isinstance(record, Record):
        return type(record).model_validate(datum)
    return datum  # type: ignore[return-value]  # R is the dict branch here


def encrypt_record(
    record: R,
    keys: KeySource,
    *,
    subject_id: str | None = None,
    scope: str = MAIN_SCOPE,
    record_name: str | None = None,
    schema_dir: Path | None = None,
) -> R:
    """``record`` with every personal field encrypted under the subject's key for ``scope``.

    Fields that already hold ciphertext are left as they are, so encrypting a record
    twice (a retry) changes nothing. ``scope`` is ``main`` unless the data is kept
    under a retention rule past an erasure (``subject_keys.retained_scope``).
    """
    datum, name = _as_dict(record, record_name)
    subject = _subject(datum, subject_id)
    paths = personal_fields(name, schema_dir)
    if not paths:
        return record
    key = keys.current_key(subject, scope)

    def seal(label: str, value: str) -> str:
        return value if is_encrypted(value) else encrypt_field(key, subject, label, value)

    return _rebuild(record, map_personal(datum, paths, seal))


def decrypt_record(
    record: R,
    keys: KeySource,
    *,
    subject_id: str | None = None,
    record_name: str | None = None,
    schema_dir: Path | None = None,
    legacy_plaintext: bool = False,
) -> R:
    """``record`` with its personal fields in plaintext.

    ``ShreddedKey`` when the subject's key is gone, ``TamperedField`` when a ciphertext
    does not belong to this subject and field, ``MalformedField`` when a personal field
    is not ciphertext (unless ``legacy_plaintext``: records from before encryption).
    """
    datum, name = _as_dict(record, record_name)
    subject = _subject(datum, subject_id)
    paths = personal_fields(name, schema_dir)
    if not paths:
        return record

    def open_(label: str, value: str) -> str:
        if legacy_plaintext and not is_encrypted(value):
            return value
        return decrypt_field(value, subject, label, keys.key)

    return _rebuild(record, map_personal(datum, paths, open_))


def task_identifiers(
    task: Task, keys: KeySource, *, legacy_plaintext: bool = False
) -> dict[str, str]:
    """The identifiers a task asks the connector to act on, in plaintext."""
    return decrypt_record(task, keys, legacy_plaintext=legacy_plaintext).identifiers
