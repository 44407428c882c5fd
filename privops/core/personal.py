"""Which fields of the Avro contract are personal, and doing something to each of them.

The contract marks a personal field with ``"privops.personal": true`` on the field in
its .avsc (names, emails, phones, addresses, free text about a person, export
locations). Parsing Canonical Form drops attributes it does not know, so marking a field
changes no fingerprint and no wire format: a record written before the mark is read as
before. A mark is allowed on a string field, or an array or map of strings (every item
or value is personal); a record field is marked inside the record.

A path names the marked field from the top record: ``identifiers.email``,
``exports[].location`` (every item), ``identifiers{}`` (every map value). The label a
value is encrypted under is the path with the map key filled in
(``identifiers{email}``), so a value cannot move to another key of the map either.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import BaseModel, Field

PERSONAL_ATTR: Final = "privops.personal"
WITHHELD: Final = "(withheld: privops holds no key to seal it under)"
"""What a command carries in place of the DPO's text when there is no key to seal it under
(the subject erased with nothing kept, or someone no system has reported): a constant,
never personal, which the worker takes for no text (privops.tools.command_sealing)."""

ITEMS: Final = "[]"
VALUES: Final = "{}"

PERSONAL: Final[Any] = Field(json_schema_extra={PERSONAL_ATTR: True})
"""The model-side mark: ``email: Annotated[str | None, PERSONAL] = None`` (records.py)."""

M = TypeVar("M", bound=BaseModel)

Schema = dict[str, Any]
Visit = Callable[[str, str], str]
"""(label, value) -> new value, called for each personal string."""


@dataclass(frozen=True)
class PersonalPath:
    steps: tuple[str, ...]

    def __str__(self) -> str:
        out = ""
        for step in self.steps:
            out += step if step in (ITEMS, VALUES) or not out else f".{step}"
        return out


def personal_paths(schema: Schema) -> tuple[PersonalPath, ...]:
    """Every marked field of a record schema (as committed: nested types inlined once)."""
    found: list[PersonalPath] = []
    _Walker(found).record(schema, "", ())
    return tuple(found)


class _Walker:
    def __init__(self, found: list[PersonalPath]) -> None:
        self.found = found
        self.named: dict[str, Schema] = {}
        self.open: set[str] = set()

    def record(self, schema: Schema, namespace: str, prefix: tuple[str, ...]) -> None:
        fullname = _fullname(schema, namespace)
        if fullname in self.open:
            raise ValueError(f"{fullname} contains itself")
        self.open.add(fullname)
        inner = fullname.rpartition(".")[0]
        for field in schema.get("fields", []):
            path = (*prefix, field["name"])
            if field.get(PERSONAL_ATTR) is True:
                self.found.append(PersonalPath(path + _string_shape(field["type"], path)))
            else:
                self.type(field["type"], inner, path)
        self.open.discard(fullname)

    def type(self, avro: Any, namespace: str, path: tuple[str, ...]) -> None:
        if isinstance(avro, list):
            for branch in avro:
                self.type(branch, namespace, path)
        elif isinstance(avro, str):
            named = self.named.get(avro) or self.named.get(f"{namespace}.{avro}")
            if named is not None:
                self.record(named, namespace, path)
        elif isinstance(avro, dict):
            kind = avro.get("type")
            if kind == "record":
                self.named[_fullname(avro, namespace)] = avro
                self.record(avro, namespace, path)
            elif kind in ("enum", "fixed"):
                self.named[_fullname(avro, namespace)] = avro
            elif kind == "array":
                self.type(avro["items"], namespace, (*path, ITEMS))
            elif kind == "map":
                self.type(avro["values"], namespace, (*path, VALUES))


def _fullname(schema: Schema, namespace: str) -> str:
    name = str(schema["name"])
    if "." in name:
        return name
    return f"{schema.get('namespace', namespace)}.{name}"


def _string_shape(avro: Any, path: tuple[str, ...]) -> tuple[str, ...]:
    """The steps below a marked field to its strings; ValueError if it holds none."""
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) == 1:
            return _string_shape(branches[0], path)
    elif avro == "string" or (isinstance(avro, dict) and avro.get("type") == "string"):
        return ()
    elif isinstance(avro, dict) and avro.get("type") == "array":
        return (ITEMS, *_string_shape(avro["items"], path))
    elif isinstance(avro, dict) and avro.get("type") == "map":
        return (VALUES, *_string_shape(avro["values"], path))
    where = ".".join(path)
    raise ValueError(f"{where}: {PERSONAL_ATTR} marks strings (or collections of them) only")


# --- visiting the values --------------------------------------------------------------------


def map_personal(datum: Mapping[str, Any], paths: tuple[PersonalPath, ...], visit: Visit) -> Any:
    """``datum`` (a record as a dict) with ``visit`` applied to each personal string.

    Returns a new dict (copied along the paths only); absent and null fields are left.
    """
    out: Any = datum
    for path in paths:
        out = _apply(out, path.steps, "", visit)
    return out


def _apply(value: Any, steps: tuple[str, ...], label: str, visit: Visit) -> Any:
    if value is None:
        return None
    if not steps:
        if not isinstance(value, str):
            raise TypeError(f"{label}: a personal field holds a string, not {type(value).__name__}")
        return visit(label, value)
    step, rest = steps[0], steps[1:]
    if step == ITEMS:
        return [_apply(item, rest, f"{label}{ITEMS}", visit) for item in value]
    if step == VALUES:
        return {k: _apply(v, rest, f"{label}{{{k}}}", visit) for k, v in value.items()}
    if not isinstance(value, Mapping) or step not in value:
        return value
    copied = dict(value)
    copied[step] = _apply(value[step], rest, f"{label}.{step}" if label else step, visit)
    return copied


def typed_text(record: BaseModel, label: str, value: str) -> bool:
    """Whether ``value``, at ``label`` of ``record``, is text someone typed: not
    ``WITHHELD``, and not in a field (``rectification{name}``: ``rectification``) left
    at its default, which holds privops' own word (verify's method "documents"). What
    the CLI seals and the worker counts when it arrives unsealed."""
    if value == WITHHELD:
        return False
    name = re.split(r"[.{\[]", label, maxsplit=1)[0]
    info = type(record).model_fields.get(name)
    return info is None or getattr(record, name) != info.default


def holds_personal(
    datum: Mapping[str, Any], paths: tuple[PersonalPath, ...], *, empty: bool = True
) -> bool:
    """Whether any personal field on ``paths`` holds a string (``empty=False``: a
    non-empty one): what ``map_personal`` would visit at least once, found without
    copying or labelling anything, and stopping at the first (a flush asks this of
    every value it writes, and of every record it sends).

    A non-string where a string belongs raises a TypeError, as ``map_personal`` does,
    unless a string was found before it (the seal that follows a True raises then)."""
    for path in paths:  # noqa: SIM110 (loops: any() over a generator costs twice as much)
        if _holds(datum, path.steps, empty):
            return True
    return False


def _holds(value: Any, steps: tuple[str, ...], empty: bool) -> bool:
    if value is None:
        return False
    if not steps:
        if isinstance(value, str):
            return empty or bool(value)
        raise TypeError(f"a personal field holds a string, not {type(value).__name__}")
    step = steps[0]
    if step in (ITEMS, VALUES):
        rest = steps[1:]
        for item in value if step == ITEMS else value.values():
            if _holds(item, rest, empty):
                return True
        return False
    if not isinstance(value, Mapping) or step not in value:
        return False
    return _holds(value[step], steps[1:], empty)


# --- on a model, in place --------------------------------------------------------------------


def fields_only(paths: tuple[PersonalPath, ...]) -> bool:
    """Whether every path names record fields only (no list items, no map values): its
    values are read and replaced on the model itself (``visit_model``), not on a dump."""
    return all(step not in (ITEMS, VALUES) for path in paths for step in path.steps)


def visit_model(record: M, paths: tuple[PersonalPath, ...], visit: Visit) -> M:
    """``map_personal`` on a model for ``fields_only`` paths, without dumping it.

    ``visit`` sees each personal string with the same label; what it returns is put in
    place, and each model along a changed path is validated again from its fields, as
    ``model_validate`` of the dump would validate it (the others are shared). Nothing
    changed: ``record`` itself."""
    changed: dict[tuple[str, ...], str] = {}
    for path in paths:
        value: Any = record
        for step in path.steps:
            value = getattr(value, step, None)
            if value is None:
                break
        else:
            if not isinstance(value, str):
                kind = type(value).__name__
                raise TypeError(f"{path}: a personal field holds a string, not {kind}")
            new = visit(str(path), value)
            if new is not value:
                changed[path.steps] = new
    return _replaced(record, changed)


def _replaced(model: M, values: Mapping[tuple[str, ...], str]) -> M:
    if not values:
        return model
    fields: dict[str, Any] = {}
    inner: dict[str, dict[tuple[str, ...], str]] = {}
    for steps, value in values.items():
        if len(steps) == 1:
            fields[steps[0]] = value
        else:
            inner.setdefault(steps[0], {})[steps[1:]] = value
    for step, below in inner.items():
        fields[step] = _replaced(getattr(model, step), below)
    return type(model).model_validate({**model.__dict__, **fields})
