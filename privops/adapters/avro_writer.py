"""Avro binary writers compiled once per schema: fastavro's bytes, in about a quarter of
the time.

``fastavro.schemaless_writer`` walks the schema's dicts for every datum it writes: for
the hot path's records (an AuditEvent per consent change or workflow step, a
ConsentState per changed subject, a task per system) that walk cost 25-50 µs a record,
more than building the record. ``compile_writer`` walks the parsed schema once and
writes the source of one plain function per record schema, every field's write inline
(5.6 µs an AuditEvent, 10.3 a ConsentState with its preferences, against 10.7 and 15.4
for a closure per schema node, which this replaced: docs/benchmarks.md, session 21).
The source holds no text from the schema but its field names, as string literals; its
symbols and tags are constants beside it, so even a schema from elsewhere could not put
code into it (and only privops' own committed schemas are compiled: ``Codec``).

The bytes are fastavro's, and fastavro stays the reference:
- Each write accepts only the exact Python types privops writes (str, int, bool,
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
        write = _Generator(named).compile(schema)
    # Nesting deeper than Python's compiler takes (blocks, indentation, recursion).
    except (_NotCompiled, SyntaxError, RecursionError, MemoryError):
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


class _Generator:
    """Writes the source of one function per record schema: its fields' writes inline,
    in order, each checking the exact type it takes (``Unwritable`` otherwise), a nested
    record a call to its own function. Compiled once per schema (``compile_writer``)."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self._named = named
        self._functions: dict[str, str] = {}  # record name -> its function's name
        self._sources: list[str] = []
        self._compiling: set[str] = set()
        self.constants: dict[str, object] = {}
        self._variables = 0

    def compile(self, schema: Any) -> Write:
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise _NotCompiled("not a record")
        entry = self._record_function(schema)
        namespace: dict[str, Any] = {
            "Unwritable": Unwritable,
            "Enum": Enum,
            "_SMALL": _SMALL,
            "_SMALL_COUNT": _SMALL_COUNT,
            "_zigzag": _zigzag,
            "_long": _long,
            "_int": _int,
            "_timestamp_micros": _timestamp_micros,
            "_date": _date,
            **self.constants,
        }
        # Our own source: field names as literals, everything else a constant (above).
        exec("\n\n".join(self._sources), namespace)  # noqa: S102
        write: Write = namespace[entry]
        return write

    def _constant(self, value: object) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    def _variable(self) -> str:
        self._variables += 1
        return f"v{self._variables}"

    def _record_function(self, schema: Mapping[str, Any]) -> str:
        name = schema["name"]
        if name in self._functions:
            return self._functions[name]
        function = self._functions[name] = f"_record{len(self._functions)}"
        self._compiling.add(name)
        body = ["if type(value) is not dict:", "    raise Unwritable", "try:"]
        for field in schema["fields"]:
            if type(field["name"]) is not str:
                raise _NotCompiled("a field name that is not text")
            value = self._variable()
            body.append(f"    {value} = value[{field['name']!r}]")
            body += [f"    {line}" for line in self.node(field["type"], value)]
        if not schema["fields"]:
            body.append("    pass")
        body += [
            "except KeyError:",
            "    raise Unwritable from None  # fastavro fills in the default",
            "except UnicodeEncodeError:  # a lone surrogate: fastavro's error, not ours",
            "    raise Unwritable from None",
        ]
        self._compiling.discard(name)
        lines = "\n".join(f"    {line}" for line in body)
        self._sources.append(f"def {function}(value, out):\n{lines}")
        return function

    def node(self, schema: Any, value: str) -> list[str]:
        """Lines that append ``value``'s Avro to ``out`` (or raise ``Unwritable``)."""
        if isinstance(schema, str):
            if schema in _INLINE:
                return _INLINE[schema](value)
            return self._reference(schema, value)
        if isinstance(schema, list):
            return self._union(schema, value)
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None:
            call = _LOGICAL.get((kind, logical))
            if call is None:
                raise _NotCompiled(f"{kind}/{logical}")
            return [f"{call}({value}, out)"]
        if kind == "record":
            return [f"{self._record_function(schema)}({value}, out)"]
        if kind == "enum":
            return self._enum(schema, value)
        if kind == "array":
            return self._array(schema["items"], value)
        if kind == "map":
            return self._map(schema["values"], value)
        if isinstance(kind, str) and kind in _INLINE:
            return _INLINE[kind](value)
        raise _NotCompiled(str(kind))

    def _reference(self, name: str, value: str) -> list[str]:
        if name not in self._named or name in self._compiling:
            raise _NotCompiled(name)  # unknown, or recursive
        return self.node(self._named[name], value)

    def _union(self, branches: list[Any], value: str) -> list[str]:
        if len(branches) != 2 or "null" not in branches:
            raise _NotCompiled("union")
        null_at = branches.index("null")
        other = self.node(branches[1 - null_at], value)
        null_tag, other_tag = _small(null_at), _small(1 - null_at)
        return [
            f"if {value} is None:",
            f"    out += {null_tag!r}",
            f"elif type({value}) is tuple:  # fastavro's (name, value) notation",
            "    raise Unwritable",
            "else:",
            f"    out += {other_tag!r}",
            *(f"    {line}" for line in other),
        ]

    def _enum(self, schema: Mapping[str, Any], value: str) -> list[str]:
        index = self._constant({symbol: _small(i) for i, symbol in enumerate(schema["symbols"])})
        tag = self._variable()
        # fastavro looks the symbol up with ==: a str-valued member equals its value.
        return [
            f"if type({value}) is str:",
            f"    {tag} = {index}.get({value})",
            f"elif isinstance({value}, str) and isinstance({value}, Enum):",
            f"    {tag} = {index}.get({value}._value_)",
            "else:",
            f"    {tag} = None",
            f"if {tag} is None:",
            "    raise Unwritable",
            f"out += {tag}",
        ]

    def _array(self, items: Any, value: str) -> list[str]:
        item = self._variable()
        return [
            f"if type({value}) is not list:",
            "    raise Unwritable",
            f"if {value}:",
            f"    _zigzag(len({value}), out)",
            f"    for {item} in {value}:",
            *(f"        {line}" for line in self.node(items, item)),
            "out.append(0)",
        ]

    def _map(self, values: Any, value: str) -> list[str]:
        key, item = self._variable(), self._variable()
        return [
            f"if type({value}) is not dict:",
            "    raise Unwritable",
            f"if {value}:",
            f"    _zigzag(len({value}), out)",
            f"    for {key}, {item} in {value}.items():",
            *(f"        {line}" for line in _string(key)),
            *(f"        {line}" for line in self.node(values, item)),
            "out.append(0)",
        ]


def _string(value: str) -> list[str]:
    return [
        f"if type({value}) is not str:",
        "    raise Unwritable",
        f"{value} = {value}.encode()",
        *_length_and(value),
    ]


def _bytes(value: str) -> list[str]:
    return [f"if type({value}) is not bytes:", "    raise Unwritable", *_length_and(value)]


def _length_and(data: str) -> list[str]:
    return [
        f"if len({data}) < _SMALL_COUNT:",
        f"    out += _SMALL[len({data})]",
        "else:",
        f"    _zigzag(len({data}), out)",
        f"out += {data}",
    ]


def _null(value: str) -> list[str]:
    return [f"if {value} is not None:", "    raise Unwritable"]


def _boolean(value: str) -> list[str]:
    return [
        f"if {value} is True:",
        "    out.append(1)",
        f"elif {value} is False:",
        "    out.append(0)",
        "else:",
        "    raise Unwritable",
    ]


_INLINE: Final[dict[str, Callable[[str], list[str]]]] = {
    "null": _null,
    "boolean": _boolean,
    "int": lambda value: [f"_int({value}, out)"],
    "long": lambda value: [f"_long({value}, out)"],
    "string": _string,
    "bytes": _bytes,
}
_LOGICAL: Final[dict[tuple[str, str], str]] = {
    ("long", "timestamp-micros"): "_timestamp_micros",
    ("int", "date"): "_date",
}
