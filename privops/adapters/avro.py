"""Avro schemas for ``privops.core.records``: generation, the versioned files, compatibility.

Layout: ``schemas/<namespace>/<Name>.v<N>.avsc``, one file per record version, each
self-contained (nested records and enums are inlined). The newest version of each record
is what privops writes; older versions stay for the BACKWARD-compatibility check, and
every version is a writer schema privops will decode with (``Contract``): no other.
"""

from __future__ import annotations

import io
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import fastavro
from fastavro.utils import generate_many
from pydantic import BaseModel

from privops.adapters.avro_writer import Unwritable, compile_writer
from privops.adapters.bounds import MAX_COLLECTION_ITEMS, Node, check_items, plan
from privops.adapters.guard import (
    MAX_PAYLOAD_BYTES,
    fingerprint,
    guarded,
    schema_label,
    untrusted_schema,
)
from privops.core.errors import DecodeError
from privops.core.personal import PERSONAL_ATTR
from privops.core.records import ALL_RECORDS, RECORDS_BY_NAME, Record

Schema = dict[str, Any]
_VERSION_RE = re.compile(r"^(?P<name>\w+)\.v(?P<version>\d+)\.avsc$")


def to_avro(model: type[Record]) -> Schema:
    """The Avro record schema for a model (field order = model field order)."""
    return _record(model, set())


def _record(model: type[BaseModel], seen: set[str]) -> Schema:
    assert issubclass(model, Record)
    fullname = model.fullname()
    seen.add(fullname)
    fields = []
    hints = typing.get_type_hints(model)
    for name, info in model.model_fields.items():
        avro_type = _type(hints[name], seen)
        field: dict[str, Any] = {"name": name, "type": avro_type}
        if info.description:
            field["doc"] = info.description
        if not info.is_required():
            field["default"] = _default(info.get_default(call_default_factory=True))
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get(PERSONAL_ATTR):
            field[PERSONAL_ATTR] = True
        fields.append(field)
    schema: Schema = {"type": "record", "name": model.__name__, "namespace": model.namespace}
    if model.doc:
        schema["doc"] = model.doc
    schema["fields"] = fields
    return schema


def _type(hint: Any, seen: set[str]) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only X | None unions are supported, got {hint}")
        return ["null", _type(args[0], seen)]
    if origin is list:
        return {"type": "array", "items": _type(get_args(hint)[0], seen)}
    if origin is dict:
        key, value = get_args(hint)
        if key is not str:
            raise TypeError(f"map keys must be str, got {hint}")
        return {"type": "map", "values": _type(value, seen)}
    if isinstance(hint, type):
        return _class_type(hint, seen)
    raise TypeError(f"no Avro mapping for {hint!r}")


_SIMPLE = {bool: "boolean", int: "long", float: "double", str: "string", bytes: "bytes"}


def _class_type(hint: type, seen: set[str]) -> Any:
    if issubclass(hint, Record):
        return hint.fullname() if hint.fullname() in seen else _record(hint, seen)
    if issubclass(hint, Enum):
        fullname = f"privops.vocab.{hint.__name__}"
        if fullname in seen:
            return fullname
        seen.add(fullname)
        return {
            "type": "enum",
            "name": hint.__name__,
            "namespace": "privops.vocab",
            "symbols": [m.value for m in hint],
        }
    if hint in _SIMPLE:
        return _SIMPLE[hint]
    if hint is datetime:
        return {"type": "long", "logicalType": "timestamp-micros"}
    if hint is date:
        return {"type": "int", "logicalType": "date"}
    raise TypeError(f"no Avro mapping for {hint!r}")


def _default(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


# --- the versioned files ----------------------------------------------------------------


@dataclass(frozen=True)
class SchemaVersion:
    fullname: str
    version: int
    path: Path
    schema: Schema

    @property
    def text(self) -> str:
        return json.dumps(self.schema, sort_keys=True, separators=(",", ":"))


def schema_path(schema_dir: Path, fullname: str, version: int) -> Path:
    namespace, _, name = fullname.rpartition(".")
    return schema_dir / namespace / f"{name}.v{version}.avsc"


def load_versions(schema_dir: Path) -> dict[str, list[SchemaVersion]]:
    """Every schema file, grouped by record full name, ordered by version."""
    found: dict[str, list[SchemaVersion]] = {}
    for path in sorted(schema_dir.glob("*/*.avsc")):
        match = _VERSION_RE.match(path.name)
        if not match:
            raise ValueError(f"{path}: schema files must be named <Name>.v<N>.avsc")
        fullname = f"{path.parent.name}.{match['name']}"
        schema = json.loads(path.read_text())
        found.setdefault(fullname, []).append(
            SchemaVersion(fullname, int(match["version"]), path, schema)
        )
    for versions in found.values():
        versions.sort(key=lambda v: v.version)
    return found


def latest_schemas(schema_dir: Path) -> dict[str, SchemaVersion]:
    return {name: versions[-1] for name, versions in load_versions(schema_dir).items()}


def generate(schema_dir: Path) -> list[Path]:
    """Write a new version file for every record whose model changed. Returns the files
    written.

    A change to the personal-field marks alone (``privops.personal``) changes no wire
    format: the newest version's file is rewritten with them instead of a new version
    being added, since two versions with one fingerprint could not be told apart by a
    reader (``Contract.version_of``) and a mark is the reader's knowledge, not the
    writer's. A writer that registered the unmarked spelling stays trusted."""
    existing = load_versions(schema_dir)
    written = []
    for model in ALL_RECORDS:
        schema = to_avro(model)
        versions = existing.get(model.fullname(), [])
        if versions and versions[-1].schema == schema:
            continue
        if versions and unmarked(versions[-1].schema) == unmarked(schema):
            version = versions[-1].version  # only the marks changed
        else:
            version = versions[-1].version + 1 if versions else 1
        path = schema_path(schema_dir, model.fullname(), version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written


def unmarked(schema: Any) -> Any:
    """``schema`` without its personal-field marks (``privops.personal``): what a change
    of marks alone leaves equal. Everything else counts (a default, a logical type: the
    Parsing Canonical Form drops those too, so a fingerprint cannot tell)."""
    if isinstance(schema, dict):
        return {k: unmarked(v) for k, v in schema.items() if k != PERSONAL_ATTR}
    if isinstance(schema, list):
        return [unmarked(v) for v in schema]
    return schema


def backward_problems(old: Schema, new: Schema, samples: int = 25) -> list[str]:
    """Can a reader on ``new`` read data written with ``old``? Problems, empty if yes.

    Checked by Avro schema resolution itself: random data written with the old schema is
    read with the new one, and every field the new schema added must carry a default.
    """
    problems = []
    old_fields = {f["name"] for f in old.get("fields", [])}
    for field in new.get("fields", []):
        if field["name"] not in old_fields and "default" not in field:
            problems.append(f"new field {field['name']!r} has no default")
    parsed_old = fastavro.parse_schema(old)
    parsed_new = fastavro.parse_schema(new)
    for datum in generate_many(parsed_old, samples):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed_old, datum)
        buf.seek(0)
        try:
            guarded(
                "incompatible", "old data", fastavro.schemaless_reader, buf, parsed_old, parsed_new
            )
        except DecodeError as exc:
            problems.append(f"old data unreadable with new schema: {exc.detail}")
            break
    return problems


# --- the contract: which writer schemas are trusted -------------------------------------


class Contract:
    """Every committed schema version, by the fingerprint of its Parsing Canonical Form.

    A writer schema is used only if it is (in canonical form) one of these; the registry
    only tells us which one. See ``privops.adapters.guard`` for the limits and why.
    """

    def __init__(self, versions: dict[str, list[SchemaVersion]]) -> None:
        self._by_fingerprint: dict[str, SchemaVersion] = {}
        for version in (v for vs in versions.values() for v in vs):
            where = str(version.path)
            try:
                untrusted_schema(version.text)
            except DecodeError as exc:
                raise ValueError(f"{where}: outside the decode limits: {exc}") from exc
            self._by_fingerprint[fingerprint(version.schema)] = version

    def version_of(self, writer_schema: Schema | str) -> SchemaVersion:
        """The committed version ``writer_schema`` is, or ``DecodeError("unknown_schema")``."""
        schema = untrusted_schema(writer_schema)
        found = self._by_fingerprint.get(fingerprint(schema))
        if found is None:
            raise DecodeError(
                "unknown_schema", f"{schema_label(schema)} is not a committed schema version"
            )
        return found


@dataclass(frozen=True)
class Writer:
    """A trusted writer schema, parsed: how to read its bytes into our newest model."""

    version: SchemaVersion
    model: type[Record]
    parsed: Any
    reader: Any  # our newest parsed schema, or None when it is the writer itself
    plan: Node


# --- encoding -----------------------------------------------------------------------------


class Codec:
    """Avro binary for the newest schema of each record (framing: privops.adapters.serde)."""

    def __init__(self, schema_dir: Path) -> None:
        versions = load_versions(schema_dir)
        self.latest = {name: vs[-1] for name, vs in versions.items()}
        missing = [m.fullname() for m in ALL_RECORDS if m.fullname() not in self.latest]
        if missing:
            raise ValueError(f"no schema file for {missing}; run `privops schemas generate`")
        self.contract = Contract(versions)
        self._parsed: dict[str, Any] = {}
        # The newest schemas' writers, compiled (privops.adapters.avro_writer); None
        # where fastavro writes every datum.
        self._compiled: dict[str, Callable[[Any], bytes] | None] = {}
        for name, v in self.latest.items():
            named: dict[str, Any] = {}
            self._parsed[name] = fastavro.parse_schema(v.schema, named_schemas=named)
            self._compiled[name] = compile_writer(self._parsed[name], named)
        self._flat = frozenset(
            name for name, v in self.latest.items() if not _nests_records(v.schema["fields"])
        )
        # Every committed version parsed once, up front (all of them take ~10 ms), so
        # nothing from outside ever reaches fastavro's schema parser.
        self._writers = {
            (v.fullname, v.version): self._writer(v) for vs in versions.values() for v in vs
        }

    def schema_text(self, fullname: str) -> str:
        return self.latest[fullname].text

    def encode(self, record: Record) -> bytes:
        fullname = record.fullname()
        # A record of scalars is its own datum: its field dict holds what model_dump
        # would copy out (enum members, datetimes, lists of scalars), nothing nested.
        datum = record.__dict__ if fullname in self._flat else record.model_dump(mode="python")
        return self.encode_datum(fullname, datum)

    def encode_datum(self, fullname: str, datum: Mapping[str, Any]) -> bytes:
        """Avro bytes of the newest ``fullname`` schema for a plain dict of its fields.

        For the hot path's records built as dicts (ConsentState): the same bytes as
        ``encode`` of the model with those values, without building the model. The
        compiled writer writes it; a datum it declines, fastavro (the same bytes).
        """
        write = self._compiled[fullname]
        if write is not None:
            try:
                return write(datum)
            except Unwritable:
                pass
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self._parsed[fullname], datum)
        return buf.getvalue()

    def decode(self, writer_schema: Schema | str, payload: bytes) -> Record:
        """Decode with the writer's schema, resolved to our newest schema of that record."""
        return self.read(self.writer(writer_schema), payload)

    def writer(self, writer_schema: Schema | str) -> Writer:
        """The committed writer ``writer_schema`` stands for (callers cache it per id)."""
        version = self.contract.version_of(writer_schema)
        writer = self._writers[(version.fullname, version.version)]
        if writer is None:
            raise DecodeError(
                "unknown_record", f"no record named {version.fullname!r} in this version"
            )
        return writer

    def read(self, writer: Writer, payload: bytes) -> Record:
        """Avro bytes written with ``writer``, as a validated record; else ``DecodeError``."""
        name = writer.version.fullname
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise DecodeError("undecodable", f"{name}: {len(payload)} bytes is over the limit")
        if len(payload) > MAX_COLLECTION_ITEMS:  # shorter ones cannot hold more items
            check_items(writer.plan, payload)
        datum = guarded("undecodable", name, _read_all, writer, payload)
        return guarded("invalid_record", name, writer.model.model_validate, datum)

    def _writer(self, version: SchemaVersion) -> Writer | None:
        shape = plan(version.schema, str(version.path))
        model = RECORDS_BY_NAME.get(version.fullname)
        if model is None:  # a committed record this version no longer has
            return None
        parsed = fastavro.parse_schema(version.schema, named_schemas={})
        reader = self._parsed[version.fullname]
        return Writer(version, model, parsed, None if parsed == reader else reader, shape)


def _nests_records(node: Any) -> bool:
    """Whether a schema fragment defines a record (a nested model) anywhere inside it."""
    if isinstance(node, dict):
        return node.get("type") == "record" or any(_nests_records(v) for v in node.values())
    if isinstance(node, list):
        return any(_nests_records(item) for item in node)
    return False


def _read_all(writer: Writer, payload: bytes) -> Any:
    """One record that must take exactly the whole payload (trailing bytes are corruption)."""
    buf = io.BytesIO(payload)
    datum = fastavro.schemaless_reader(buf, writer.parsed, writer.reader)
    left = len(payload) - buf.tell()
    if left:
        raise DecodeError(
            "undecodable", f"{writer.version.fullname}: {left} bytes after the record"
        )
    return datum
