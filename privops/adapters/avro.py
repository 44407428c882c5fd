"""Avro schemas for ``privops.core.records``: generation, the versioned files, compatibility.

Layout: ``schemas/<namespace>/<Name>.v<N>.avsc``, one file per record version, each
self-contained (nested records and enums are inlined). The newest version of each record
is what privops writes; older versions stay for the BACKWARD-compatibility check.
"""

from __future__ import annotations

import io
import json
import re
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import fastavro
from fastavro.utils import generate_many
from pydantic import BaseModel

from privops.core.errors import DecodeError
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
        simple = {
            bool: "boolean",
            int: "long",
            float: "double",
            str: "string",
            bytes: "bytes",
        }
        if hint in simple:
            return simple[hint]
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
    """Write a new version file for every record whose model changed. Returns new files."""
    existing = load_versions(schema_dir)
    written = []
    for model in ALL_RECORDS:
        schema = to_avro(model)
        versions = existing.get(model.fullname(), [])
        if versions and versions[-1].schema == schema:
            continue
        version = versions[-1].version + 1 if versions else 1
        path = schema_path(schema_dir, model.fullname(), version)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written


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
            fastavro.schemaless_reader(buf, parsed_old, parsed_new)
        except Exception as exc:
            problems.append(f"old data unreadable with new schema: {exc}")
            break
    return problems


# --- encoding -----------------------------------------------------------------------------


class Codec:
    """Avro binary for the newest schema of each record (no framing: see privops.wire)."""

    def __init__(self, schema_dir: Path) -> None:
        self.latest = latest_schemas(schema_dir)
        missing = [m.fullname() for m in ALL_RECORDS if m.fullname() not in self.latest]
        if missing:
            raise ValueError(f"no schema file for {missing}; run `privops schemas generate`")
        self._parsed = {
            name: fastavro.parse_schema(v.schema, named_schemas={})
            for name, v in self.latest.items()
        }
        # Writer schemas seen so far, parsed once: (model, parsed writer, reader or None
        # when the writer is our own newest schema, so no resolution is needed).
        self._writers: dict[str, tuple[type[Record], Any, Any]] = {}

    def schema_text(self, fullname: str) -> str:
        return self.latest[fullname].text

    def encode(self, record: Record) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(
            buf, self._parsed[record.fullname()], record.model_dump(mode="python")
        )
        return buf.getvalue()

    def decode(self, writer_schema: Schema | str, payload: bytes) -> Record:
        """Decode with the writer's schema, resolved to our newest schema of that record."""
        key = writer_schema if isinstance(writer_schema, str) else None
        cached = self._writers.get(key) if key is not None else None
        if cached is None:
            cached = self._writer(writer_schema)
            if key is not None:
                self._writers[key] = cached
        model, parsed_writer, reader = cached
        try:
            datum = fastavro.schemaless_reader(io.BytesIO(payload), parsed_writer, reader)
        except Exception as exc:
            raise DecodeError(
                "undecodable", f"{model.fullname()}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            return model.model_validate(datum)
        except Exception as exc:
            raise DecodeError("invalid_record", f"{model.fullname()}: {exc}") from exc

    def _writer(self, writer_schema: Schema | str) -> tuple[type[Record], Any, Any]:
        """Parse a writer schema once (JSON + fastavro parsing cost more than the data)."""
        writer = json.loads(writer_schema) if isinstance(writer_schema, str) else writer_schema
        fullname = _fullname(writer)
        model = RECORDS_BY_NAME.get(fullname)
        if model is None:
            raise DecodeError("unknown_record", f"no record named {fullname!r} in this version")
        try:
            parsed_writer = fastavro.parse_schema(writer, named_schemas={})
        except Exception as exc:
            raise DecodeError("undecodable", f"{fullname}: {type(exc).__name__}: {exc}") from exc
        reader = self._parsed[fullname]
        return model, parsed_writer, None if parsed_writer == reader else reader


def _fullname(schema: Schema) -> str:
    name = str(schema.get("name", ""))
    if "." in name:
        return name
    return f"{schema.get('namespace', '')}.{name}"
