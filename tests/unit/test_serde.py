"""Contract-pinned, bounded decoding (issue 13, item 4): which writer schemas are trusted,
what a registry answer may be, and what hostile bytes can cost.

The Serde under test is the real one, with its registry lookups served in-process by
``LocalRegistry`` (an httpx transport answering ``GET /schemas/ids/{id}``); the schema
ids of our newest schemas are filled in the way ``tests/agents/conftest.py`` does.
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field

from privops.adapters import serde as serde_module
from privops.adapters.avro import Codec, load_versions
from privops.adapters.bounds import MAX_COLLECTION_ITEMS, Node, check_items, plan
from privops.adapters.guard import MAX_PAYLOAD_BYTES, MAX_REGISTRY_ANSWER_BYTES, guarded
from privops.adapters.serde import Serde, frame
from privops.adapters.settings import Settings
from privops.core.errors import DecodeError, RegistryError, RegistryUnreachable
from privops.core.records import RECORDS_BY_NAME, IdentityVerified, Record
from tests.unit.test_schemas import build

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
VERSIONS = load_versions(SCHEMAS)
#: Every reason a decode may end with (streams/io.py dead-letters each with it).
REASONS = {"undecodable", "unknown_schema", "unknown_record", "invalid_record"}
FIRST_FREE_ID = 1_000


class LocalRegistry:
    """A schema registry in-process: schema id -> (status, body); 404 for the rest."""

    def __init__(self) -> None:
        self.answers: dict[int, tuple[int, bytes]] = {}
        self.requests = 0
        self.next_id = FIRST_FREE_ID

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        schema_id = int(request.url.path.rsplit("/", 1)[1])
        status, body = self.answers.get(schema_id, (404, b'{"error_code": 40403}'))
        return httpx.Response(status, content=body)

    def add(self, schema: str, **extra: Any) -> int:
        """Register ``schema`` (any text at all) under a fresh id, as an open registry would."""
        return self.answer(200, json.dumps({"schema": schema, **extra}).encode())

    def answer(self, status: int, body: bytes) -> int:
        self.next_id += 1
        self.answers[self.next_id] = (status, body)
        return self.next_id


def local_serde(registry: LocalRegistry) -> Serde:
    """Our newest schemas at ids 1..N (as after register_all); other ids go to ``registry``."""
    serde = Serde(
        "http://registry.invalid", SCHEMAS, transport=httpx.MockTransport(registry.handler)
    )
    for schema_id, fullname in enumerate(sorted(serde.codec.latest), start=1):
        serde._id_by_name[fullname] = schema_id
        serde._schema_by_id[schema_id] = serde.codec.schema_text(fullname)
    return serde


def decode(serde: Serde, data: bytes, *, use_async: bool) -> Record:
    if use_async:
        return asyncio.run(serde.decode_async(data))
    return serde.decode(data)


def reason_of(serde: Serde, data: bytes, *, use_async: bool = False) -> str:
    with pytest.raises(DecodeError) as info:
        decode(serde, data, use_async=use_async)
    return info.value.reason


def schema_of(fullname: str) -> dict[str, Any]:
    return copy.deepcopy(VERSIONS[fullname][-1].schema)


@pytest.fixture
def registry() -> LocalRegistry:
    return LocalRegistry()


@pytest.fixture
def serde(registry: LocalRegistry) -> Serde:
    return local_serde(registry)


TASK = "privops.tasks.Erase"


def nested_arrays(depth: int) -> str:
    return '{"type": "array", "items": ' * depth + '"null"' + "}" * depth


def _with_field(fullname: str, field: dict[str, Any]) -> str:
    schema = schema_of(fullname)
    schema["fields"].append(field)
    return json.dumps(schema)


def _renamed_namespace(fullname: str) -> str:
    schema = schema_of(fullname)
    schema["namespace"] = "elsewhere"
    return json.dumps(schema)


def recursive_schema(fullname: str) -> str:
    schema = schema_of(fullname)
    schema["fields"].append({"name": "next", "type": ["null", fullname], "default": None})
    return json.dumps(schema)


HOSTILE_SCHEMAS = {
    "recursion-20000-deep": nested_arrays(20_000),
    "nested-33-deep": nested_arrays(33),
    "array-null-field": _with_field(
        TASK, {"name": "x", "type": {"type": "array", "items": "null"}}
    ),
    "recursive-record": recursive_schema(TASK),
    "different-record-same-name": _with_field(TASK, {"name": "extra", "type": "long"}),
    "same-record-other-namespace": _renamed_namespace(TASK),
    "primitive-string": '"string"',
    "primitive-null": "null",
    "number": "42",
    "list": "[]",
    "union": '["null", "string"]',
    "malformed-json": '{"type": "record", "name": "Erase",',
    "not-json": "syntax = 'proto3'; message Erase {}",
    "empty": "",
    "too-large": json.dumps({**schema_of(TASK), "doc": "x" * 70_000}),
    "fields-not-a-list": json.dumps({"type": "record", "name": TASK, "fields": 5}),
    "unknown-type": json.dumps(
        {"type": "record", "name": TASK, "fields": [{"name": "a", "type": "no.Such"}]}
    ),
}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("text", HOSTILE_SCHEMAS.values(), ids=HOSTILE_SCHEMAS.keys())
def test_hostile_writer_schema_is_unknown_schema_and_remembered(
    serde: Serde, registry: LocalRegistry, text: str, use_async: bool
) -> None:
    schema_id = registry.add(text)
    payload = serde.codec.encode(build(IdentityVerified))
    assert reason_of(serde, frame(schema_id, payload), use_async=use_async) == "unknown_schema"
    assert reason_of(serde, frame(schema_id, payload), use_async=use_async) == "unknown_schema"
    assert registry.requests == 1  # the verdict is cached per id


REGISTRY_ANSWERS = {
    "not-found": (404, b'{"error_code": 40403}', "unknown_schema"),
    "body-not-json": (200, b"<html>proxy error</html>", "unknown_schema"),
    "body-not-utf8": (200, b"\xff\xfe\x00", "unknown_schema"),
    "body-a-list": (200, b"[1, 2]", "unknown_schema"),
    "no-schema-field": (200, b'{"id": 3}', "unknown_schema"),
    "schema-not-a-string": (200, b'{"schema": {"type": "string"}}', "unknown_schema"),
    "protobuf": (200, b'{"schema": "syntax", "schemaType": "PROTOBUF"}', "unknown_schema"),
    "deep-envelope": (200, b"[" * 100_000, "unknown_schema"),
    "oversized": (
        200,
        b'{"schema": "' + b" " * MAX_REGISTRY_ANSWER_BYTES + b'"}',
        "unknown_schema",
    ),
    "server-error": (500, b"boom", "registry"),
}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    ("status", "body", "expected"), REGISTRY_ANSWERS.values(), ids=REGISTRY_ANSWERS.keys()
)
def test_registry_answer_is_parsed_defensively(
    serde: Serde, registry: LocalRegistry, status: int, body: bytes, expected: str, use_async: bool
) -> None:
    """Any answer but an Avro schema is a typed error; a failing registry is RegistryError
    (not the message's fault: the connector runner retries it)."""
    schema_id = registry.answer(status, body)
    data = frame(schema_id, serde.codec.encode(build(IdentityVerified)))
    for _ in range(2):
        if expected == "registry":
            with pytest.raises(RegistryError):
                decode(serde, data, use_async=use_async)
        else:
            assert reason_of(serde, data, use_async=use_async) == expected
    # A registry's answer for an id is final; a missing id is believed for a while only
    # (below), and a failing registry is asked again every time.
    assert registry.requests == (2 if status == 500 else 1)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_unreachable_registry_is_a_registry_error(use_async: bool) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    serde = Serde("http://registry.invalid", SCHEMAS, transport=httpx.MockTransport(refuse))
    with pytest.raises(RegistryError):
        decode(serde, frame(7, b""), use_async=use_async)


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def clocked_serde(registry: LocalRegistry, clock: Clock) -> Serde:
    transport = httpx.MockTransport(registry.handler)
    return Serde("http://registry.invalid", SCHEMAS, transport=transport, clock=clock)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_an_id_the_registry_does_not_know_is_looked_up_once_an_interval(
    registry: LocalRegistry, use_async: bool
) -> None:
    """The module promises a hostile id costs one lookup, not one per message; an id the
    registry answered 404 for was looked up again (a new HTTP client) for every message
    (review, session 25). It is believed for ABSENT_ID_SECONDS, then asked again: a
    registry that lagged may know it by then."""
    clock = Clock()
    serde = clocked_serde(registry, clock)
    bogus = registry.next_id + 1  # no answer: 404
    payload = serde.codec.encode(build(IdentityVerified))
    for _ in range(100):
        assert reason_of(serde, frame(bogus, payload), use_async=use_async) == "unknown_schema"
    assert registry.requests == 1
    clock.now += serde_module.ABSENT_ID_SECONDS - 1
    reason_of(serde, frame(bogus, payload), use_async=use_async)
    assert registry.requests == 1
    # Registered meanwhile (a committed schema): once the interval is over, it decodes.
    text = serde.codec.schema_text(IdentityVerified.fullname())
    registry.answers[bogus] = (200, json.dumps({"schema": text}).encode())
    clock.now += 1
    assert isinstance(decode(serde, frame(bogus, payload), use_async=use_async), IdentityVerified)
    assert registry.requests == 2


def _unavailable(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(503, content=b"unavailable")


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


FAILURES = {"server-error": _unavailable, "connection-refused": _refused}


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_failing_registry_is_never_remembered_as_an_unknown_id(
    failure: Callable[[httpx.Request], httpx.Response], use_async: bool
) -> None:
    """Not the message's fault: asked again every time (the agent retries with backoff),
    and the id decodes as soon as the registry answers, with no interval to wait out."""
    calls: list[int] = []
    failing = True
    text = Codec(SCHEMAS).schema_text(IdentityVerified.fullname())

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if failing:
            return failure(request)
        return httpx.Response(200, content=json.dumps({"schema": text}).encode())

    serde = Serde("http://registry.invalid", SCHEMAS, transport=httpx.MockTransport(handler))
    data = frame(4242, serde.codec.encode(build(IdentityVerified)))
    for _ in range(3):
        with pytest.raises(RegistryError):
            decode(serde, data, use_async=use_async)
    assert len(calls) == 3
    failing = False
    assert isinstance(decode(serde, data, use_async=use_async), IdentityVerified)


def test_absent_ids_are_remembered_within_a_bound(
    registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A producer cycling through more bogus ids than the bound costs a lookup a message,
    never unbounded memory; the oldest go first, and expired ones go as new ones come."""
    monkeypatch.setattr(serde_module, "MAX_ABSENT_IDS", 3)
    clock = Clock()
    serde = clocked_serde(registry, clock)
    ids = [registry.next_id + n for n in range(1, 6)]
    for schema_id in ids:
        reason_of(serde, frame(schema_id, b""))
    assert list(serde._absent) == ids[-3:]
    clock.now += serde_module.ABSENT_ID_SECONDS
    reason_of(serde, frame(ids[0], b""))
    assert list(serde._absent) == [ids[0]]


# --- what is trusted ------------------------------------------------------------------


def _variants(text: str) -> list[str]:
    """The same schema as another producer may register it: reformatted, re-documented."""
    schema = json.loads(text)
    redocumented = {**schema, "doc": "registered by someone else"}
    return [text, json.dumps(schema, indent=4), json.dumps(redocumented)]


@pytest.mark.parametrize(
    "version",
    [v for vs in VERSIONS.values() for v in vs],
    ids=lambda v: f"{v.fullname}.v{v.version}",
)
def test_every_committed_version_is_trusted_in_any_spelling(serde: Serde, version: Any) -> None:
    for text in _variants(version.text):
        assert serde.codec.contract.version_of(text) == version


def test_older_committed_version_from_the_registry_decodes_to_the_newest_model(
    serde: Serde, registry: LocalRegistry
) -> None:
    v1 = VERSIONS[IdentityVerified.fullname()][0]
    assert v1.version == 1
    record = build(IdentityVerified).model_copy(update={"information_received_on": None})
    payload = serde.codec.encode(record)
    trimmed = payload[: -len(b"\x00")]  # v1 has no information_received_on (last field)
    schema_id = registry.add(v1.text)
    assert asyncio.run(serde.decode_async(frame(schema_id, trimmed))) == record
    assert serde.decode(frame(schema_id, trimmed)) == record
    assert registry.requests == 1


def test_committed_schema_without_a_model_is_unknown_record(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, schemas)
    gone = {"type": "record", "name": "Gone", "namespace": "privops.events", "fields": []}
    (schemas / "privops.events" / "Gone.v1.avsc").write_text(json.dumps(gone))
    with pytest.raises(DecodeError) as info:
        Codec(schemas).decode(json.dumps(gone), b"")
    assert info.value.reason == "unknown_record"


def test_committed_schema_with_unbounded_items_is_refused_at_start_up(tmp_path: Path) -> None:
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, schemas)
    bad = schema_of(TASK)
    bad["fields"].append({"name": "blanks", "type": {"type": "array", "items": "null"}})
    (schemas / "privops.tasks" / "Erase.v2.avsc").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"Erase\.v2\.avsc: blanks\[\] items"):
        Codec(schemas)


def test_rejected_ids_are_remembered_within_a_bound(
    serde: Serde, registry: LocalRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serde_module, "MAX_REJECTED_IDS", 3)
    ids = [registry.add('"string"') for _ in range(5)]
    for schema_id in ids:
        reason_of(serde, frame(schema_id, b""))
    assert list(serde._rejected) == ids[-3:]


# --- the bounded-read rule, planned once per committed schema ---------------------------


def _record(*types: Any) -> dict[str, Any]:
    fields = [{"name": f"f{i}", "type": t} for i, t in enumerate(types)]
    return {"type": "record", "name": "R", "namespace": "t", "fields": fields}


def _array_of(items: Any) -> dict[str, Any]:
    return _record({"type": "array", "items": items})


UNBOUNDED = {
    "array<null>": _array_of("null"),
    "array<fixed>": _array_of({"type": "fixed", "name": "F", "size": 16}),
    "array<empty record>": _array_of(_record() | {"name": "E"}),
    "array<record of nulls>": _array_of(_record("null", "null") | {"name": "N"}),
    "array<array<null>>": _array_of({"type": "array", "items": "null"}),
    "recursive record": _record(["null", "t.R"]),
    "unknown named type": _record("t.Nowhere"),
}
BOUNDED = {
    "array<long>": _array_of("long"),
    "array<union>": _array_of(["null", "string"]),
    "array<record null+long>": _array_of(_record("null", "long") | {"name": "M"}),
    "array<enum by reference>": _record(
        {"type": "enum", "name": "C", "symbols": ["a"]}, {"type": "array", "items": "t.C"}
    ),
    "map<null> (keys cost bytes)": _record({"type": "map", "values": "null"}),
    "logical type": _record({"type": "long", "logicalType": "timestamp-micros"}),
}


@pytest.mark.parametrize("schema", UNBOUNDED.values(), ids=UNBOUNDED.keys())
def test_plan_refuses_unbounded_schemas(schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="here"):
        plan(schema, "here")


@pytest.mark.parametrize("schema", BOUNDED.values(), ids=BOUNDED.keys())
def test_plan_accepts_bounded_schemas(schema: dict[str, Any]) -> None:
    plan(schema, "here")


def zigzag(value: int) -> bytes:
    n = (value << 1) ^ (value >> 70)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


LONGS = Node("array", (Node("varint"),))
STRINGS = Node("map", (Node("prefixed"),))
UNION = Node("union", (Node("sized"), Node("varint")))
SCANS: dict[str, tuple[Node, bytes, str | None]] = {
    "valid array": (LONGS, zigzag(2) + b"\x02\x04" + zigzag(0), None),
    "valid map": (STRINGS, zigzag(1) + b"\x02k\x02v" + b"\x00", None),
    "negative count with size": (LONGS, zigzag(-2) + zigzag(2) + b"\x02\x04\x00", None),
    "count 2^40 in a few bytes": (LONGS, zigzag(2**40) + b"\x02" * 20, "block of"),
    "negative count 2^40": (LONGS, zigzag(-(2**40)) + b"\x02" * 20, "block of"),
    "items past the cap": (
        LONGS,
        (zigzag(1) + b"\x02") * (MAX_COLLECTION_ITEMS + 1) + b"\x00",
        "collection items",
    ),
    "string longer than the rest": (STRINGS, zigzag(1) + zigzag(2**40), "length of"),
    "negative string length": (STRINGS, zigzag(1) + zigzag(-1), "length of"),
    "overlong varint": (LONGS, b"\xff" * 11, "varint"),
    "truncated varint": (LONGS, b"\xff", "varint"),
    "union branch out of range": (UNION, zigzag(2), "union branch"),
    "negative union branch": (UNION, zigzag(-1), "union branch"),
}


@pytest.mark.parametrize(("node", "payload", "problem"), SCANS.values(), ids=SCANS.keys())
def test_check_items(node: Node, payload: bytes, problem: str | None) -> None:
    if problem is None:
        check_items(node, payload)
        return
    with pytest.raises(DecodeError, match=problem) as info:
        check_items(node, payload)
    assert info.value.reason == "undecodable"


# --- hostile bytes with a trusted schema ------------------------------------------------


def _erase_with_categories(serde: Serde, count: int) -> bytes:
    """A framed Erase with one identifier and ``count`` categories, in one block."""
    update = {
        "identifiers": {"email": "e"},
        "previous_identifiers": {},
        "categories": [],
        "keep": [],
    }
    record = build(RECORDS_BY_NAME[TASK]).model_copy(update=update)
    encoded = serde.encode(record)
    empty_categories = zigzag(0) + zigzag(0)  # categories [] then keep []
    assert encoded.endswith(empty_categories)
    return encoded[: -len(empty_categories)] + zigzag(count) + b"\x00" * count + b"\x00\x00"


BYTES_CASES = {
    "trailing bytes": (lambda s: s.encode(build(IdentityVerified)) + b"\x00", "undecodable"),
    "over the payload cap": (
        lambda s: frame(s.schema_id(TASK), b"\x00" * (MAX_PAYLOAD_BYTES + 1)),
        "undecodable",
    ),
    "items at the cap": (lambda s: _erase_with_categories(s, MAX_COLLECTION_ITEMS - 1), None),
    "items past the cap": (
        lambda s: _erase_with_categories(s, MAX_COLLECTION_ITEMS),
        "undecodable",
    ),
    "count 2^40, nothing behind it": (
        lambda s: _erase_with_categories(s, 1)[:-4] + zigzag(2**40),
        "undecodable",
    ),
}


@pytest.mark.parametrize(("make", "expected"), BYTES_CASES.values(), ids=BYTES_CASES.keys())
def test_hostile_bytes_with_a_trusted_schema(serde: Serde, make: Any, expected: str | None) -> None:
    data = make(serde)
    if expected is None:
        assert type(serde.decode(data)).fullname() == TASK
    else:
        assert reason_of(serde, data) == expected


# --- the error boundary --------------------------------------------------------------------


class _Contact(BaseModel):
    code: str = Field(pattern=r"^[A-Z]{3}$")


def test_validation_detail_names_the_field_but_not_the_value() -> None:
    with pytest.raises(DecodeError) as info:
        guarded("invalid_record", "Contact", _Contact.model_validate, {"code": "ann@example.com"})
    assert info.value.reason == "invalid_record"
    assert "code" in info.value.detail
    assert "ann@example.com" not in str(info.value)


@pytest.mark.parametrize(
    "error", [ValueError("v"), KeyError("k"), RecursionError("r"), MemoryError(), EOFError()]
)
def test_anything_raised_inside_becomes_the_typed_error(error: Exception) -> None:
    def fail() -> None:
        raise error

    with pytest.raises(DecodeError) as info:
        guarded("undecodable", "X", fail)
    assert info.value.reason == "undecodable"
    assert info.value.__cause__ is error


class _ReadOnlyRegistry:
    """A registry that takes writes from the contract's publisher only: this client's
    POST .../versions is refused; the lookup (POST /subjects/{name}) is a read."""

    def __init__(self, registered: set[str]) -> None:
        self.registered = registered
        self.lookups = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/versions"):
            return httpx.Response(403, json={"error_code": 40301, "message": "forbidden"})
        name = path.rsplit("/", 1)[1]
        self.lookups += 1
        if name not in self.registered:
            return httpx.Response(404, json={"error_code": 40403})
        return httpx.Response(200, json={"id": 40 + sorted(self.registered).index(name)})


def test_a_client_that_may_not_register_looks_the_contract_up() -> None:
    """A connector registered every schema at start; a registry taking writes only from
    the contract's publisher stopped it there (review, session 25)."""
    names = sorted(load_versions(SCHEMAS))
    registry = _ReadOnlyRegistry(set(names))
    serde = Serde(
        "http://registry.invalid", SCHEMAS, transport=httpx.MockTransport(registry.handler)
    )
    assert serde.register_all() == len(serde.codec.latest)
    assert serde.schema_id(names[0]) == 40
    missing = _ReadOnlyRegistry(set())
    unpublished = Serde(
        "http://registry.invalid", SCHEMAS, transport=httpx.MockTransport(missing.handler)
    )
    with pytest.raises(RegistryError, match="privops schemas register"):
        unpublished.register_all()


# --- a registry that asks who is asking -----------------------------------------------------


class GuardedRegistry(LocalRegistry):
    """A registry that answers only a reader it knows (HTTP basic auth), 401 otherwise."""

    def __init__(self, user: str, password: str) -> None:
        super().__init__()
        self.expected = httpx.BasicAuth(user, password)._auth_header

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != self.expected:
            return httpx.Response(401, content=b'{"error_code": 40101}')
        return super().handler(request)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_the_configured_registry_user_is_who_asks(use_async: bool) -> None:
    """privops' clients sent no credentials, so a production registry that asks for
    them (every managed one does) refused the worker, connectors and CLI alike (session
    25's note)."""
    guarded_registry = GuardedRegistry("privops-reader", "s3cret-registry-pass")
    schema_id = guarded_registry.add(json.dumps(schema_of("privops.audit.AuditEvent")))
    data = frame(schema_id, b"")
    cfg = Settings(registry_username="privops-reader", registry_password="s3cret-registry-pass")
    serde = Serde.for_settings(cfg)
    serde._transport = httpx.MockTransport(guarded_registry.handler)
    assert reason_of(serde, data, use_async=use_async) in REASONS  # asked, and answered
    anonymous = Serde.for_settings(Settings())
    anonymous._transport = httpx.MockTransport(guarded_registry.handler)
    with pytest.raises(RegistryError, match="PRIVOPS_REGISTRY_USERNAME") as refused:
        decode(anonymous, data, use_async=use_async)
    assert "refused the credentials (401), asked without credentials" in str(refused.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"registry_url": "https://u:pw@registry.example/apis/ccompat/v7"}, "holds a password"),
        ({"registry_username": "reader"}, "go together"),
        ({"registry_password": "pw"}, "go together"),
    ],
    ids=["password-in-url", "user-alone", "password-alone"],
)
def test_registry_credentials_are_set_apart_and_together(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings(**env)  # type: ignore[arg-type]


def _not_reachable(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    ("answer", "unreachable"),
    [
        (lambda request: httpx.Response(503, json={"error_code": 50301}), True),
        (_not_reachable, True),
        (lambda request: httpx.Response(401, json={"message": "no"}), False),
        (lambda request: httpx.Response(409, json={"message": "incompatible"}), False),
        (lambda request: httpx.Response(429, json={"message": "slow down"}), True),
        (lambda request: httpx.Response(408, json={"message": "timeout"}), True),
    ],
    ids=["registry-failing", "not-reachable", "refused", "incompatible", "busy", "timed-out"],
)
def test_registration_says_whether_asking_again_can_help(
    answer: Callable[[httpx.Request], httpx.Response], unreachable: bool
) -> None:
    """A connector waits out a registry it cannot reach or that fails (RegistryUnreachable)
    and stops on a refusal, which asking again will not mend (review, session 33)."""
    serde = Serde("http://registry.invalid", SCHEMAS, transport=httpx.MockTransport(answer))
    with pytest.raises(RegistryError) as raised:
        serde.register_all()
    assert isinstance(raised.value, RegistryUnreachable) is unreachable
    # A schema fetched by id is judged alike: a busy registry is waited out, not an error
    with pytest.raises(RegistryError) as fetched:
        serde.decode(frame(4242, b"\x00"))
    assert isinstance(fetched.value, RegistryUnreachable) is unreachable
