"""Avro binary writers compiled once per schema: fastavro's bytes, in about half the time.

``fastavro.schemaless_writer`` walks the schema's dicts for every datum it writes: for
the hot path's records (an AuditEvent per consent change or workflow step, a
ConsentState per changed subject, a task per system) that walk cost 25-50 µs a record,
more than building the record. ``compile_writer`` walks the parsed schema once and
returns one closure per node, so writing a datum is a chain of small calls that append
to one ``bytearray``.

The bytes are fastavro's, and fastavro stays the reference:
- Each closure accepts only the exact Python types privops writes (str, int, bool,
  bytes, aware datetimes, dates, str-valued enum members, lists, dicts, None) and raises
  ``Unwritable`` for anything else: a naive datetime, a tuple (fastavro's union tuple
  notation), a missing field (fastavro's default), an int out of range.
- ``Codec.encode_datum`` then writes that datum with fastavro, so what fastavro would
  accept, refuse or default is decided by fastavro, never guessed here.
- A schema with a construct compiled here does not cover (a union that is not
  ``[null, X]``, fixed, float, double, a recursive reference) compiles to None, and
  fastavro writes that record always.
- tests/unit/test_avro_writer.py holds the two byte-equal over generated datums of every
  committed schema, and checks that each refused value gets fastavro's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, Final

Write = Callable[[Any, bytearray], None]
"""Appends one datum's Avro binary to the buffer; raises ``Unwritable`` to decline it."""

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAYS: Final = date(1970, 1, 1).toordinal()
_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1
_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1
# Zig-zag varints of the small values (lengths, counts, union and enum indexes).
_SMALL_COUNT: Final = 1024


class Unwritable(Exception):
    """A datum outside what the compiled writer covers: fastavro writes it instead."""


def compile_writer(
    schema: Mapping[str, Any], named: Mapping[str, Any]
) -> Callable[[Any], bytes] | None:
    """The writer of a record schema parsed by ``fastavro.parse_schema`` (``named``: the
    named schemas it filled in), or None if the schema uses what is not compiled here."""
    try:
        write = _Compiler(named).node(schema)
    except _NotCompiled:
        return None

    def written(datum: Any) -> bytes:
        out = bytearray()
        write(datum, out)
        return bytes(out)

    return written


class _NotCompiled(Exception):
    """A schema construct this module leaves to fastavro."""


def _varint(n: int, out: bytearray) -> None:
    """An unsigned varint (n >= 0), seven bits a byte, low bits first."""
    while n > 0x3FFF:  # two bytes at a time: a time in microseconds is eight
        out += _PAIRS[n & 0x3FFF]
        n >>= 14
    if n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


# Every 14-bit group as its two varint bytes, both with the continuation bit.
_PAIRS: Final = tuple(bytes([(n & 0x7F) | 0x80, (n >> 7) | 0x80]) for n in range(1 << 14))


def _small(n: int) -> bytes:
    out = bytearray()
    _varint(n << 1, out)
    return bytes(out)


_SMALL: Final = tuple(_small(n) for n in range(_SMALL_COUNT))


def _zigzag(value: int, out: bytearray) -> None:
    if 0 <= value < len(_SMALL):
        out += _SMALL[value]
        return
    _varint((value << 1) ^ (value >> 63), out)


def _long(value: Any, out: bytearray) -> None:
    if type(value) is not int or not _LONG_MIN <= value <= _LONG_MAX:
        raise Unwritable
    _zigzag(value, out)


def _int(value: Any, out: bytearray) -> None:
    if type(value) is not int or not _INT_MIN <= value <= _INT_MAX:
        raise Unwritable
    _zigzag(value, out)


def _boolean(value: Any, out: bytearray) -> None:
    if value is True:
        out.append(1)
    elif value is False:
        out.append(0)
    else:
        raise Unwritable


def _string(value: Any, out: bytearray) -> None:
    if type(value) is not str:
        raise Unwritable
    try:
        data = value.encode()
    except UnicodeEncodeError:  # a lone surrogate: fastavro's error, not ours
        raise Unwritable from None
    _zigzag(len(data), out)
    out += data


def _bytes(value: Any, out: bytearray) -> None:
    if type(value) is not bytes:
        raise Unwritable
    _zigzag(len(value), out)
    out += value


def _null(value: Any, _out: bytearray) -> None:
    if value is not None:
        raise Unwritable


def _timestamp_micros(value: Any, out: bytearray) -> None:
    if type(value) is not datetime or value.tzinfo is None:
        _long(value, out)  # an int as it is; a naive time is fastavro's to judge
        return
    written = _STAMPS.get(value)
    if written is None:
        delta = value - _EPOCH  # as fastavro computes it (an aware time, any zone)
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        buf = bytearray()
        _long(micros, buf)
        if len(_STAMPS) >= _STAMPS_KEPT:
            _STAMPS.clear()
        written = _STAMPS[value] = bytes(buf)
    out += written


# The same times recur (an event's time in its audit record and its consent state, a
# workflow step's "now" in each of its records): their bytes, remembered (bounded).
# Equal aware datetimes are the same instant, so they have the same bytes.
_STAMPS: dict[datetime, bytes] = {}
_STAMPS_KEPT: Final = 4096


def _date(value: Any, out: bytearray) -> None:
    if type(value) is date:
        value = value.toordinal() - _EPOCH_DAYS
    _int(value, out)


_PRIMITIVES: Final[dict[str, Write]] = {
    "null": _null,
    "boolean": _boolean,
    "int": _int,
    "long": _long,
    "string": _string,
    "bytes": _bytes,
}
_LOGICAL: Final[dict[tuple[str, str], Write]] = {
    ("long", "timestamp-micros"): _timestamp_micros,
    ("int", "date"): _date,
}


class _Compiler:
    def __init__(self, named: Mapping[str, Any]) -> None:
        self._named = named
        self._compiled: dict[str, Write] = {}
        self._compiling: set[str] = set()

    def node(self, schema: Any) -> Write:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema]
            return self._reference(schema)
        if isinstance(schema, list):
            return self._union(schema)
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None:
            write = _LOGICAL.get((kind, logical))
            if write is None:
                raise _NotCompiled(f"{kind}/{logical}")
            return write
        if kind == "record":
            return self._named_once(schema["name"], lambda: self._record(schema))
        if kind == "enum":
            return self._named_once(schema["name"], lambda: _enum(schema["symbols"]))
        if kind == "array":
            return _array(self.node(schema["items"]))
        if kind == "map":
            return _map(self.node(schema["values"]))
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        raise _NotCompiled(str(kind))

    def _reference(self, name: str) -> Write:
        if name in self._compiled:
            return self._compiled[name]
        if name not in self._named or name in self._compiling:
            raise _NotCompiled(name)  # unknown, or recursive
        return self.node(self._named[name])

    def _named_once(self, name: str, build: Callable[[], Write]) -> Write:
        if name in self._compiled:
            return self._compiled[name]
        self._compiling.add(name)
        write = self._compiled[name] = build()
        self._compiling.discard(name)
        return write

    def _record(self, schema: Mapping[str, Any]) -> Write:
        fields = tuple((field["name"], self.node(field["type"])) for field in schema["fields"])

        def record(value: Any, out: bytearray) -> None:
            if type(value) is not dict:
                raise Unwritable
            try:
                for name, write in fields:
                    write(value[name], out)
            except KeyError:
                raise Unwritable from None  # fastavro fills in the default

        return record

    def _union(self, branches: list[Any]) -> Write:
        if len(branches) != 2 or "null" not in branches:
            raise _NotCompiled("union")
        null_at = branches.index("null")
        other = self.node(branches[1 - null_at])
        null_tag, other_tag = _small(null_at), _small(1 - null_at)

        def union(value: Any, out: bytearray) -> None:
            if value is None:
                out += null_tag
                return
            if type(value) is tuple:
                raise Unwritable  # fastavro's (name, value) notation
            out += other_tag
            other(value, out)

        return union


def _enum(symbols: list[str]) -> Write:
    index = {symbol: _small(i) for i, symbol in enumerate(symbols)}

    def enum(value: Any, out: bytearray) -> None:
        # fastavro looks the symbol up with ==: a str-valued member equals its value.
        if isinstance(value, Enum):
            value = value.value if isinstance(value, str) else None
        tag = index.get(value) if type(value) is str else None
        if tag is None:
            raise Unwritable
        out += tag

    return enum


def _array(item: Write) -> Write:
    def array(value: Any, out: bytearray) -> None:
        if type(value) is not list:
            raise Unwritable
        if value:
            _zigzag(len(value), out)
            for element in value:
                item(element, out)
        out.append(0)

    return array


def _map(item: Write) -> Write:
    def mapping(value: Any, out: bytearray) -> None:
        if type(value) is not dict:
            raise Unwritable
        if value:
            _zigzag(len(value), out)
            for key, element in value.items():
                _string(key, out)
                item(element, out)
        out.append(0)

    return mapping
