"""Bounded reading: hostile bytes with a trusted schema cannot buy unbounded work.

fastavro reads a collection by looping over the block count the bytes claim, appending
one item at a time, and checks string/bytes lengths against what is left (1.13). Two
ways remained for bytes to cost far more than their length, and what we do about each:

- **Items that take no bytes.** An ``array<null>`` (or of ``fixed``, or of records made
  only of such fields) never reaches the end of the input, so a count of 2^40 loops for
  hours. Every committed schema is planned once at start-up (``plan``) and refused if a
  collection's item can be read from zero bytes or a named type contains itself. None
  of the committed schemas has such a type today; a future one fails the start-up (and
  the schema tests) naming the field. So every item costs at least one byte, and a
  payload of n bytes holds at most n items.
- **Many cheap items.** A 1 MiB payload of one-byte enum items still decodes to a
  million-item list (about 0.5 s of CPU, then the agent works on it). Collections are
  capped at ``MAX_COLLECTION_ITEMS`` items per record, in total. A payload no longer
  than the cap cannot exceed it (previous point), so only longer payloads, which none of
  our records needs in normal traffic, are pre-scanned (``check_items``): a walk over
  the bytes in Python that stops at the first count larger than the bytes left or past
  the cap, so its cost is bounded too. Normal decodes pay nothing for it.

Recursion depth needs no runtime check: with no recursive types, the nesting of the data
is that of the committed schema (at most ``guard.MAX_SCHEMA_DEPTH``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from privops.core.errors import DecodeError

#: Items in all the arrays and maps of one record; ours hold tens.
MAX_COLLECTION_ITEMS = 10_000
_SIZED = {"null": 0, "boolean": 1, "float": 4, "double": 8}
_VARINT = {"int", "long"}
_LENGTH_PREFIXED = {"bytes", "string"}
_MAX_VARINT_BYTES = 10


@dataclass(frozen=True)
class Node:
    """The shape of one type's encoding, as much as a walk over the bytes needs.

    ``kind`` is ``sized`` (``size`` bytes), ``varint``, ``prefixed`` (a length, then
    that many bytes), ``record`` (``parts`` in order), ``union`` (a branch index, then
    ``parts[index]``), ``array`` or ``map`` (blocks of ``parts[0]``).
    """

    kind: str
    parts: tuple[Node, ...] = ()
    size: int = 0
    named_fixed: bool = False

    @property
    def consumes(self) -> bool:
        """Reading it takes at least one byte (so it fails at the end of the input).

        A ``fixed`` does not count: fastavro before 1.13 returned short reads silently.
        """
        if self.kind == "record":
            return any(part.consumes for part in self.parts)
        if self.kind == "sized":
            return self.size > 0 and not self.named_fixed
        return True


def plan(schema: Any, where: str) -> Node:
    """``schema``'s encoding shape; ``ValueError`` naming the field if it is not bounded."""
    return _Planner(where).node(schema, "", "")


class _Planner:
    def __init__(self, where: str) -> None:
        self.where = where
        self.named: dict[str, Node] = {}
        self.open: set[str] = set()

    def node(self, schema: Any, namespace: str, path: str) -> Node:
        if isinstance(schema, list):
            return Node("union", tuple(self.node(b, namespace, path) for b in schema))
        if isinstance(schema, str):
            return self._reference(schema, namespace, path)
        kind = schema["type"]
        if kind in ("record", "error", "enum", "fixed"):
            return self._named(schema, namespace, path)
        if kind == "array":
            item = self.node(schema["items"], namespace, f"{path}[]")
            if not item.consumes:
                raise ValueError(f"{self.where}: {path}[] items can be read from zero bytes")
            return Node("array", (item,))
        if kind == "map":
            return Node("map", (self.node(schema["values"], namespace, f"{path}{{}}"),))
        return self.node(kind, namespace, path)  # a primitive with a logicalType

    def _reference(self, name: str, namespace: str, path: str) -> Node:
        if name in _SIZED:
            return Node("sized", size=_SIZED[name])
        if name in _VARINT:
            return Node("varint")
        if name in _LENGTH_PREFIXED:
            return Node("prefixed")
        fullname = name if "." in name or not namespace else f"{namespace}.{name}"
        if fullname in self.open:
            raise ValueError(f"{self.where}: {path} refers to {fullname} inside itself")
        if fullname not in self.named:
            raise ValueError(f"{self.where}: {path}: unknown type {name!r}")
        return self.named[fullname]

    def _named(self, schema: dict[str, Any], namespace: str, path: str) -> Node:
        name = str(schema["name"])
        namespace = name.rpartition(".")[0] or str(schema.get("namespace") or namespace)
        fullname = f"{namespace}.{name.rpartition('.')[2]}" if namespace else name
        if schema["type"] == "enum":
            node = Node("varint")
        elif schema["type"] == "fixed":
            node = Node("sized", size=int(schema["size"]), named_fixed=True)
        else:
            self.open.add(fullname)
            fields = tuple(
                self.node(f["type"], namespace, f"{path}.{f['name']}".lstrip("."))
                for f in schema["fields"]
            )
            self.open.discard(fullname)
            node = Node("record", fields)
        self.named[fullname] = node
        return node


def check_items(node: Node, payload: bytes, limit: int = MAX_COLLECTION_ITEMS) -> None:
    """Walk ``payload`` by ``node``: ``DecodeError("undecodable")`` at the first count or
    length larger than the bytes left, or once the record's items pass ``limit``."""
    _Scan(payload, limit).walk(node)


class _Scan:
    def __init__(self, data: bytes, limit: int) -> None:
        self.data = data
        self.pos = 0
        self.limit = limit
        self.items_left = limit

    def walk(self, node: Node) -> None:
        kind = node.kind
        if kind == "record":
            for part in node.parts:
                self.walk(part)
        elif kind == "union":
            index = self.long()
            if not 0 <= index < len(node.parts):
                self.fail(f"union branch {index} of {len(node.parts)}")
            self.walk(node.parts[index])
        elif kind in ("array", "map"):
            self.blocks(node.parts[0], keyed=kind == "map")
        elif kind == "varint":
            self.long()
        elif kind == "prefixed":
            self.skip(self.long())
        else:
            self.skip(node.size)

    def blocks(self, item: Node, *, keyed: bool) -> None:
        while count := self.long():
            if count < 0:  # a negative count is followed by the block's size in bytes
                count = -count
                self.long()
            if count > len(self.data) - self.pos:
                self.fail(f"a block of {count} items in {len(self.data) - self.pos} bytes")
            self.items_left -= count
            if self.items_left < 0:
                self.fail(f"more than {self.limit} collection items")
            for _ in range(count):
                if keyed:
                    self.skip(self.long())
                self.walk(item)

    def long(self) -> int:
        value = shift = 0
        for pos in range(self.pos, min(self.pos + _MAX_VARINT_BYTES, len(self.data))):
            byte = self.data[pos]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                self.pos = pos + 1
                return (value >> 1) ^ -(value & 1)
        self.fail("a truncated or overlong varint")

    def skip(self, size: int) -> None:
        if not 0 <= size <= len(self.data) - self.pos:
            self.fail(f"a length of {size} with {len(self.data) - self.pos} bytes left")
        self.pos += size

    def fail(self, what: str) -> NoReturn:
        raise DecodeError("undecodable", f"{what} at byte {self.pos}")
