"""``privacy.subject-keys`` on the wire: which partition, which bytes, and reading it whole.

A key record is keyed by its key id but produced to its *subject's* partition (the
partition the subject id's own records get from the default partitioner), so the worker
that owns a subject owns its keys, and the compacted topic never lets a second key of a
subject replace the first (docs/crypto-shredding.md). A tombstone (null value) under
the key id destroys the key.

Values are Confluent-framed Avro like every privops record. ``SubjectKey`` is not one of
the records the agents decode (``privops.core.records.ALL_RECORDS``), so this module
reads it itself, and trusts only the schema id this process registered for it: only the
worker's principal may write the topic (ACL), and every worker registers the same
committed schema.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

import fastavro
from aiokafka.partitioner import DefaultPartitioner

from privops.adapters.guard import guarded
from privops.adapters.kafka import Client, Consumed, read_all
from privops.adapters.serde import Serde, unframe
from privops.core.errors import DecodeError
from privops.core.subject_keys import SubjectKey
from privops.core.topics import SUBJECT_KEYS

FULLNAME: Final = SubjectKey.fullname()
# A subject id (<= 256 characters), its key id, scope, version, 60 wrapped bytes and a
# timestamp: far below this; anything longer is not a key record.
MAX_RECORD_BYTES: Final = 4096

_partitioner = DefaultPartitioner()


@lru_cache(maxsize=65_536)
def subject_partition(subject_id: str, partitions: int) -> int:
    """The partition the subject id's records land on (the producers' default partitioner:
    murmur2 of the key, as the Java client), cached: it costs ~6 µs in pure Python."""
    every = list(range(partitions))
    partition: int = _partitioner(subject_id.encode(), every, every)
    return partition


@dataclass
class KeyRecordCodec:
    """Encode and decode ``SubjectKey`` values with one Serde's registered schema id."""

    serde: Serde
    _parsed: Any = field(init=False, repr=False)

    _version_only: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        schema = self.serde.codec.latest[FULLNAME].schema
        self._parsed = fastavro.parse_schema(schema, named_schemas={})
        # The same record read through a schema of its kek_version alone (Avro schema
        # resolution skips the rest): what a KEK rotation asks of every stored key.
        only = {**schema, "fields": [f for f in schema["fields"] if f["name"] == "kek_version"]}
        self._version_only = fastavro.parse_schema(only, named_schemas={})

    def encode(self, record: SubjectKey) -> bytes:
        return self.serde.encode(record)

    def decode(self, raw: bytes) -> SubjectKey:
        """The record in ``raw``, or ``DecodeError`` (never a value in its message)."""
        payload = self._payload(raw)
        buf = io.BytesIO(payload)
        datum = guarded("undecodable", FULLNAME, fastavro.schemaless_reader, buf, self._parsed)
        if buf.tell() != len(payload):
            raise DecodeError("undecodable", f"{FULLNAME}: bytes after the record")
        return guarded("invalid_record", FULLNAME, SubjectKey.model_validate, datum)

    def kek_version(self, raw: bytes) -> int | None:
        """The KEK version the record in ``raw`` is wrapped under, read without decoding
        the rest (~10x cheaper); None when it cannot be read (``decode`` says why)."""
        try:
            buf = io.BytesIO(self._payload(raw))
            read = fastavro.schemaless_reader
            datum = guarded("undecodable", FULLNAME, read, buf, self._parsed, self._version_only)
        except DecodeError:
            return None
        version = datum.get("kek_version") if isinstance(datum, dict) else None
        return version if isinstance(version, int) else None

    def _payload(self, raw: bytes) -> bytes:
        schema_id, payload = unframe(raw)
        if schema_id != self.serde.schema_id(FULLNAME):
            raise DecodeError("unknown_schema", f"schema id {schema_id} is not {FULLNAME}")
        if len(payload) > MAX_RECORD_BYTES:
            raise DecodeError("undecodable", f"{len(payload)} bytes is too long for a key")
        return payload


def fold(codec: KeyRecordCodec, consumed: Iterable[Consumed]) -> dict[str, SubjectKey]:
    """The keys a log still holds: the last record per key id, none after its tombstone.

    A value that does not decode is skipped (and so is the key it stood for): privops
    wrote every record of this topic, so it can only be another version's.
    """
    keys: dict[str, SubjectKey] = {}
    for item in consumed:
        if item.key is None:
            continue
        key_id = item.key.decode(errors="replace")
        record = _decoded(codec, item.value)
        if record is None:
            keys.pop(key_id, None)
        else:
            keys[key_id] = record
    return keys


def _decoded(codec: KeyRecordCodec, value: object) -> SubjectKey | None:
    if not isinstance(value, bytes):  # a tombstone
        return None
    try:
        return codec.decode(value)
    except DecodeError:
        return None


async def read_keys(client: Client, codec: KeyRecordCodec) -> dict[str, SubjectKey]:
    """Every key stored on the topic now, read from the beginning (no group)."""
    return fold(codec, await read_all(client, SUBJECT_KEYS))
