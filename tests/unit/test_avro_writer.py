"""The compiled Avro writers write fastavro's bytes (privops.adapters.avro_writer).

Datums are generated from each committed schema itself (every branch of every union,
full 64-bit longs, any Unicode, times in any zone, empty and long arrays and maps), so
the comparison covers the types the schemas use rather than the values privops happens
to write. What a compiled writer declines goes to fastavro: those cases must come out
exactly as fastavro alone answers them, bytes or error.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privops.adapters.avro import Codec
from privops.adapters.avro_writer import Unwritable, compile_writer
from privops.core.records import ALL_RECORDS, AuditEvent, ConsentState, Record
from privops.core.vocab import Purpose
from tests.unit.test_schemas import build

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CODEC = Codec(SCHEMAS)
NAMES = sorted(CODEC.latest)
LONGS = st.integers(-(2**63), 2**63 - 1)
INDIA, PACIFIC = timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))
ZONES = st.sampled_from([UTC, INDIA, PACIFIC])
TIMES = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES)


def fastavro_bytes(fullname: str, datum: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, CODEC._parsed[fullname], datum)
    return buf.getvalue()


def datums(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Any datum of ``schema`` (parsed by fastavro), as privops' dumps hold them."""
    if isinstance(schema, str):
        primitive = {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": LONGS,
            "string": st.text(max_size=40),
            "bytes": st.binary(max_size=40),
        }.get(schema)
        if primitive is not None:
            return primitive
        return st.deferred(lambda: datums(named[schema], named))
    if isinstance(schema, list):
        return st.one_of([datums(branch, named) for branch in schema])
    logical = schema.get("logicalType")
    if logical == "timestamp-micros":
        return st.one_of(TIMES, LONGS)
    if logical == "date":
        return st.one_of(st.dates(), st.integers(-(2**31), 2**31 - 1))
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries(
            {field["name"]: datums(field["type"], named) for field in schema["fields"]}
        )
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(datums(schema["items"], named), max_size=5)
    if kind == "map":
        return st.dictionaries(st.text(max_size=10), datums(schema["values"], named), max_size=4)
    return datums(kind, named)


def named_schemas(fullname: str) -> dict[str, Any]:
    named: dict[str, Any] = {}
    fastavro.parse_schema(CODEC.latest[fullname].schema, named_schemas=named)
    return named


@pytest.mark.parametrize("fullname", NAMES)
def test_every_committed_schema_compiles(fullname: str) -> None:
    """None would mean fastavro writes every datum of it: correct, but the slow path."""
    named = named_schemas(fullname)
    assert compile_writer(named[fullname], named) is not None


@pytest.mark.parametrize("fullname", NAMES)
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_generated_datums_are_written_as_fastavro_writes_them(
    fullname: str, data: st.DataObject
) -> None:
    named = named_schemas(fullname)
    writer = compile_writer(named[fullname], named)
    assert writer is not None
    datum = data.draw(datums(named[fullname], named))
    assert writer(datum) == fastavro_bytes(fullname, datum)


@pytest.mark.parametrize("model", ALL_RECORDS, ids=lambda m: m.fullname())
def test_a_models_dump_is_written_by_the_compiled_writer(model: Any) -> None:
    """Enum members, aware times and dates as pydantic dumps them: compiled, not declined."""
    record = build(model)
    named = named_schemas(model.fullname())
    writer = compile_writer(named[model.fullname()], named)
    assert writer is not None
    datum = record.model_dump(mode="python")
    assert writer(datum) == fastavro_bytes(model.fullname(), datum)


class Colour(Enum):  # not str-valued: fastavro's == finds no symbol
    marketing = "marketing"


NOW = datetime(2026, 11, 29, 9, 30, 15, 123456, tzinfo=UTC)


def _audit(**changes: Any) -> dict[str, Any]:
    datum = build(AuditEvent).model_dump(mode="python")
    datum.update(changes)
    return datum


def _without(datum: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in datum.items() if k != name}


def _consent(**preference: Any) -> dict[str, Any]:
    """A ConsentState datum whose first preference has ``preference``'s values."""
    datum = build(ConsentState).model_dump(mode="python")
    first, *rest = datum["preferences"]
    return {**datum, "preferences": [{**first, **preference}, *rest]}


DECLINED: dict[str, tuple[type[Record], dict[str, Any]]] = {
    "naive time": (AuditEvent, _audit(occurred_at=datetime(2026, 1, 1, 12))),
    "missing field with a default": (AuditEvent, _without(_audit(), "reason")),
    "missing required field": (AuditEvent, _without(_audit(), "chain")),
    "bool for a long": (AuditEvent, _audit(seq=True)),
    "long out of range": (AuditEvent, _audit(seq=2**64)),
    "float for a long": (AuditEvent, _audit(seq=1.5)),
    "int for a string": (AuditEvent, _audit(actor=7)),
    "lone surrogate": (AuditEvent, _audit(actor="a\udc80")),
    "tuple in a union": (AuditEvent, _audit(reason=("string", "x"))),
    "time as text": (AuditEvent, _audit(occurred_at="2026-01-01T00:00:00Z")),
    "enum not str-valued": (ConsentState, _consent(purpose=Colour.marketing)),
    "unknown symbol": (ConsentState, _consent(purpose="nope")),
}


@pytest.mark.parametrize("case", sorted(DECLINED))
def test_what_the_compiled_writer_declines_fastavro_answers(case: str) -> None:
    model, datum = DECLINED[case]
    fullname = model.fullname()
    named = named_schemas(fullname)
    writer = compile_writer(named[fullname], named)
    assert writer is not None
    with pytest.raises(Unwritable):
        writer(datum)
    try:
        expected: bytes | type[BaseException] = fastavro_bytes(fullname, datum)
    except Exception as exc:  # whatever fastavro raises, the codec raises
        expected = type(exc)
    if isinstance(expected, bytes):
        assert CODEC.encode_datum(fullname, datum) == expected
    else:
        with pytest.raises(expected):
            CODEC.encode_datum(fullname, datum)


def test_equal_times_in_other_zones_are_written_alike() -> None:
    """Times are remembered by value: an equal instant in another zone is the same bytes."""
    fullname = AuditEvent.fullname()
    india = NOW.astimezone(INDIA)
    first = CODEC.encode_datum(fullname, _audit(occurred_at=NOW))
    assert CODEC.encode_datum(fullname, _audit(occurred_at=india)) == first
    assert first == fastavro_bytes(fullname, _audit(occurred_at=india))


def test_str_valued_members_are_their_symbols() -> None:
    fullname = ConsentState.fullname()
    datum, as_text = _consent(purpose=Purpose.profiling), _consent(purpose="profiling")
    assert CODEC.encode_datum(fullname, datum) == CODEC.encode_datum(fullname, as_text)
    assert CODEC.encode_datum(fullname, datum) == fastavro_bytes(fullname, datum)


def test_dates_are_days_since_the_epoch() -> None:
    """A schema of ours with a date, written both ways for days around the epoch."""
    for model in ALL_RECORDS:
        dump = build(model).model_dump(mode="python")
        if any(type(v) is date for v in dump.values()):
            break
    else:
        pytest.fail("no record of ours has a top-level date field to test with")
    fullname = model.fullname()
    for day in (date(1, 1, 1), date(1969, 12, 31), date(1970, 1, 1), date(9999, 12, 31)):
        datum = {k: (day if type(v) is date else v) for k, v in dump.items()}
        assert CODEC.encode_datum(fullname, datum) == fastavro_bytes(fullname, datum)


def test_a_field_name_is_only_ever_a_key_in_the_written_source() -> None:
    """The writer is Python source built from the schema: a field name that reads as code
    must stay a dict key (the schemas are ours, but the writer must not depend on it)."""
    name = "x'] or __import__('os').abort() or value['"
    schema = {
        "type": "record",
        "name": "privops.Hostile",
        "fields": [{"name": name, "type": "string"}, {"name": "n", "type": "long"}],
    }
    writer = compile_writer(schema, {})
    assert writer is not None
    assert writer({name: "ok", "n": 3}) == b"\x04ok\x06"
    with pytest.raises(Unwritable):  # the key is missing: nothing else was looked up or run
        writer({"x": "ok", "n": 3})


def test_what_python_cannot_compile_is_left_to_fastavro() -> None:
    """Nesting deeper than Python's compiler takes, or a field name that is not text:
    no writer (fastavro writes every datum), never an error at start-up."""
    deep: Any = "long"
    for _ in range(40):
        deep = {"type": "array", "items": deep}
    nested = {"type": "record", "name": "privops.Deep", "fields": [{"name": "d", "type": deep}]}
    assert compile_writer(nested, {}) is None
    odd = {"type": "record", "name": "privops.Odd", "fields": [{"name": 7, "type": "long"}]}
    assert compile_writer(odd, {}) is None
