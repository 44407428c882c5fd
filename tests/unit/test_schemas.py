"""The Avro contract: every record round-trips, schemas/ matches the models, and every
schema change is BACKWARD compatible with the version before it."""

from __future__ import annotations

import copy
import itertools
import shutil
import types
import typing
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest

from privops.adapters.avro import Codec, backward_problems, generate, load_versions, to_avro
from privops.adapters.guard import fingerprint
from privops.adapters.serde import frame, unframe
from privops.core.errors import DecodeError
from privops.core.records import ALL_RECORDS, Identifiers, Record

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
WHEN = datetime(2025, 3, 10, 9, 30, 15, 123456, tzinfo=UTC)
DAY = date(2025, 3, 10)


def value_for(hint: Any, name: str) -> Any:
    """A realistic, non-default value for a field type (every optional filled in)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return value_for(inner, name)
    if origin is list:
        (item,) = get_args(hint)
        return [value_for(item, name), value_for(item, name + "_2")]
    if origin is dict:
        _, item = get_args(hint)
        return {f"{name}_a": value_for(item, name), f"{name}_b": value_for(item, name + "_b")}
    if isinstance(hint, type):
        if issubclass(hint, Record):
            return build(hint)
        if issubclass(hint, Enum):
            members = list(hint)
            return members[len(name) % len(members)]
        if hint is bool:
            return True
        if hint is int:
            return 1_000 + len(name)
        if hint is float:
            return 2.5
        if hint is str:
            # Audit hashes are validated as 64 hex digits, like the real ones.
            return f"{len(name):064x}" if name.endswith("hash") else f"{name}-value"
        if hint is bytes:
            return b"\x00\xffraw-" + name.encode()
        if hint is datetime:
            return WHEN
        if hint is date:
            return DAY
    raise TypeError(f"no test value for {hint!r} ({name})")


def build(model: type[Record]) -> Record:
    hints = typing.get_type_hints(model)
    values = {name: value_for(hints[name], name) for name in model.model_fields}
    if model is Identifiers:
        values.update(email="ann@example.com", phone="+447700900123")
    return model.model_validate(values)


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(SCHEMAS)


@pytest.mark.parametrize("model", ALL_RECORDS, ids=lambda m: m.fullname())
def test_every_record_round_trips(codec: Codec, model: type[Record]) -> None:
    record = build(model)
    payload = codec.encode(record)
    decoded = codec.decode(codec.schema_text(model.fullname()), payload)
    assert type(decoded) is model
    assert decoded == record


@pytest.mark.parametrize("model", ALL_RECORDS, ids=lambda m: m.fullname())
def test_every_record_round_trips_with_defaults_only(codec: Codec, model: type[Record]) -> None:
    hints = typing.get_type_hints(model)
    required = {
        name: value_for(hints[name], name)
        for name, info in model.model_fields.items()
        if info.is_required()
    }
    record = model.model_validate(required)
    decoded = codec.decode(codec.schema_text(model.fullname()), codec.encode(record))
    assert decoded == record


def test_every_record_has_a_schema_file() -> None:
    versions = load_versions(SCHEMAS)
    assert {m.fullname() for m in ALL_RECORDS} <= set(versions)


def test_committed_schemas_match_the_models(tmp_path: Path) -> None:
    copy_dir = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, copy_dir)
    written = generate(copy_dir)
    assert written == [], f"run `privops schemas generate` and commit: {written}"
    latest = {name: v[-1].schema for name, v in load_versions(SCHEMAS).items()}
    for model in ALL_RECORDS:
        assert latest[model.fullname()] == to_avro(model)


def test_a_change_of_personal_marks_alone_rewrites_the_newest_version(tmp_path: Path) -> None:
    """A mark is the reader's knowledge, not the wire format: marking a field personal
    rewrites the newest version's file (a new version would share its fingerprint, and
    a writer's schema could not say which of the two it is)."""
    copy_dir = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, copy_dir)
    newest = load_versions(copy_dir)["privops.commands.LegalHoldPlaced"][-1]
    marked = newest.path.read_text()
    unmarked = marked.replace(',\n      "privops.personal": true', "")
    assert unmarked != marked
    newest.path.write_text(unmarked)
    assert generate(copy_dir) == [newest.path]
    assert newest.path.read_text() == marked
    assert len(load_versions(copy_dir)["privops.commands.LegalHoldPlaced"]) == newest.version


def test_a_change_the_fingerprint_cannot_see_still_adds_a_version(tmp_path: Path) -> None:
    """The Parsing Canonical Form drops a logical type (and defaults): a model moving
    from a plain long to a timestamp is a new version, never a rewrite of the old one."""
    copy_dir = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, copy_dir)
    newest = load_versions(copy_dir)["privops.commands.LegalHoldPlaced"][-1]
    plain = newest.path.read_text().replace(
        '{\n        "type": "long",\n        "logicalType": "timestamp-micros"\n      }', '"long"'
    )
    assert plain != newest.path.read_text()
    newest.path.write_text(plain)
    written = generate(copy_dir)
    assert [p.name for p in written] == [f"LegalHoldPlaced.v{newest.version + 1}.avsc"]
    assert newest.path.read_text() == plain


def test_no_two_versions_of_a_record_share_a_wire_format() -> None:
    for name, versions in load_versions(SCHEMAS).items():
        prints = [fingerprint(v.schema) for v in versions]
        assert len(set(prints)) == len(prints), name


def _pairs() -> list[tuple[str, int, int]]:
    pairs = []
    for name, versions in sorted(load_versions(SCHEMAS).items()):
        numbers = [v.version for v in versions]
        assert numbers == list(range(1, len(numbers) + 1)), f"{name}: versions {numbers}"
        pairs += [(name, a.version, b.version) for a, b in itertools.pairwise(versions)]
    return pairs


def test_versions_are_numbered_without_gaps() -> None:
    _pairs()


def test_each_schema_version_is_backward_compatible() -> None:
    """Every consecutive (v_n, v_n+1) pair; none yet while every record is at v1."""
    versions = load_versions(SCHEMAS)
    for name, old, new in _pairs():
        by_number = {v.version: v.schema for v in versions[name]}
        problems = backward_problems(by_number[old], by_number[new])
        assert problems == [], f"{name} v{old} -> v{new}: {problems}"


def test_latest_schemas_are_backward_compatible_with_themselves() -> None:
    for name, versions in load_versions(SCHEMAS).items():
        assert backward_problems(versions[-1].schema, versions[-1].schema) == [], name


# --- the check itself catches what it must --------------------------------------------------


def _v1() -> dict[str, Any]:
    return copy.deepcopy(load_versions(SCHEMAS)["privops.commands.RequestCancelled"][-1].schema)


def test_added_field_with_default_is_compatible() -> None:
    v2 = _v1()
    v2["fields"].append({"name": "channel", "type": ["null", "string"], "default": None})
    assert backward_problems(_v1(), v2) == []


def test_added_field_without_default_is_reported() -> None:
    v2 = _v1()
    v2["fields"].append({"name": "channel", "type": "string"})
    problems = backward_problems(_v1(), v2)
    assert any("channel" in p and "default" in p for p in problems), problems


def test_changed_field_type_is_reported() -> None:
    v2 = _v1()
    for field in v2["fields"]:
        if field["name"] == "reason":
            field["type"] = "long"
    problems = backward_problems(_v1(), v2)
    assert any("unreadable" in p for p in problems), problems


def test_removed_enum_symbol_is_reported() -> None:
    old = load_versions(SCHEMAS)["privops.results.TaskCompleted"][-1].schema
    new = copy.deepcopy(old)
    for field in new["fields"]:
        if isinstance(field["type"], dict) and field["type"].get("type") == "enum":
            field["type"]["symbols"] = field["type"]["symbols"][:1]
    assert backward_problems(old, new, samples=200) != []


# --- framing -----------------------------------------------------------------------------------


def test_frame_unframe_round_trip() -> None:
    assert unframe(frame(42, b"avro")) == (42, b"avro")


@pytest.mark.parametrize(
    "data",
    [None, b"", b"\x00\x00\x01", b"\x01\x00\x00\x00\x01payload", b"garbage bytes"],
    ids=["none", "empty", "short", "bad-magic", "garbage"],
)
def test_bad_frames_raise_undecodable(data: bytes | None) -> None:
    with pytest.raises(DecodeError) as info:
        unframe(data)
    assert info.value.reason == "undecodable"


def test_truncated_payload_is_undecodable(codec: Codec) -> None:
    model = ALL_RECORDS[0]
    payload = codec.encode(build(model))
    with pytest.raises(DecodeError) as info:
        codec.decode(codec.schema_text(model.fullname()), payload[: len(payload) // 3])
    assert info.value.reason == "undecodable"


def test_unknown_record_name_is_an_unknown_schema(codec: Codec) -> None:
    """Not a committed schema version, so untrusted (DESIGN.md section 4), whatever its name."""
    schema = {"type": "record", "name": "Nope", "namespace": "elsewhere", "fields": []}
    with pytest.raises(DecodeError) as info:
        codec.decode(schema, b"")
    assert info.value.reason == "unknown_schema"
