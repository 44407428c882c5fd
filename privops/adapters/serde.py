"""Confluent wire format through the schema registry.

Frame: magic byte 0, 4-byte big-endian schema id, Avro binary. Subjects use the record
name strategy (subject = record full name), so one topic can carry several record types
(the commands, the upstream events) and a reader picks the model from the writer's
schema. Ids are cached both ways; all bundled schemas are registered once at start-up
(``register_all``) so encoding never blocks on the network, and decoding only goes to
the registry for a schema id it has never seen (a newer producer).

The registry is open, so what it answers is not trusted: a schema id is usable only if
its schema is one of the committed versions (``privops.adapters.avro.Contract``), and
that verdict is cached per id both ways, so a hostile id costs one lookup, not one per
message. An id the registry does not know (404) is believed absent for
``ABSENT_ID_SECONDS`` only, as a lagging registry may know it soon: one lookup per
interval. Every decode failure is a ``DecodeError`` (the agents dead-letter it); only an
unreachable or failing registry is a ``RegistryError``, since that is no fault of the
message and callers may retry (and it is never remembered).
"""

from __future__ import annotations

import json
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx

from privops.adapters.avro import Codec, Writer
from privops.adapters.guard import MAX_REGISTRY_ANSWER_BYTES
from privops.core.errors import DecodeError, RegistryError, RegistryUnreachable
from privops.core.records import Record

if TYPE_CHECKING:
    from privops.adapters.settings import Settings

MAGIC = 0
_HEADER = struct.Struct(">bI")
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: Rejected schema ids remembered; beyond this the oldest verdicts are dropped.
MAX_REJECTED_IDS = 10_000
#: How long a 404 for a schema id is believed. Before, every message with an id the
#: registry did not know was looked up again, each with a new HTTP client: a producer
#: repeating one bogus id cost a round trip per message on the agent's only path
#: (review, session 25). A registry that fails (5xx, unreachable) is never remembered.
ABSENT_ID_SECONDS = 60.0
#: Absent ids remembered at once; beyond this the oldest are dropped (asked again).
MAX_ABSENT_IDS = 10_000


def frame(schema_id: int, payload: bytes) -> bytes:
    return _HEADER.pack(MAGIC, schema_id) + payload


def unframe(data: bytes | None) -> tuple[int, bytes]:
    if data is None:
        raise DecodeError("undecodable", "empty value (tombstone) where a record was expected")
    if len(data) < _HEADER.size:
        raise DecodeError("undecodable", f"{len(data)} bytes is shorter than the 5-byte header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError("undecodable", f"magic byte {magic} is not 0 (not Confluent framing)")
    return schema_id, data[_HEADER.size :]


class Serde:
    """Encode records to framed Avro and decode them back, with cached registry ids.

    ``transport`` serves the registry in-process (tests); by default it is HTTP. ``auth``
    (user, password) is sent as basic auth where the registry asks for credentials;
    ``ca`` is the CA bundle an https registry is trusted by (default: the system's).
    """

    def __init__(
        self,
        registry_url: str,
        schema_dir: Path,
        *,
        timeout: float = 10.0,
        transport: httpx.MockTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        auth: tuple[str, str] | None = None,
        ca: Path | None = None,
    ) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.codec = Codec(schema_dir)
        self.timeout = timeout
        self._transport = transport
        self._auth = auth
        self._verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca)) if ca is not None else True
        )
        self._clock = clock
        self._id_by_name: dict[str, int] = {}
        self._schema_by_id: dict[int, str] = {}
        self._trusted: dict[int, Writer] = {}
        self._rejected: dict[int, tuple[str, str]] = {}
        # Schema id -> when its 404 stops being believed; oldest first (one interval).
        self._absent: dict[int, float] = {}

    @classmethod
    def for_settings(cls, cfg: Settings) -> Serde:
        """The registry this process is configured for, asked as its configured user."""
        return cls(cfg.registry_url, cfg.schema_dir, auth=cfg.registry_auth, ca=cfg.registry_ca)

    def _refused(self, status: int) -> str:
        who = f"as {self._auth[0]!r}" if self._auth else "without credentials"
        what = "refused the credentials" if status == 401 else "refused the read"
        return (
            f"the schema registry {what} ({status}), asked {who}: set "
            "PRIVOPS_REGISTRY_USERNAME and PRIVOPS_REGISTRY_PASSWORD to a user it lets read"
        )

    def _client(self) -> httpx.Client:
        return httpx.Client(
            timeout=self.timeout, transport=self._transport, auth=self._auth, verify=self._verify
        )

    def _async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.timeout, transport=self._transport, auth=self._auth, verify=self._verify
        )

    # --- registration ---------------------------------------------------------------
    def register_all(self) -> int:
        """Register every bundled schema (idempotent: the registry returns existing ids)."""
        with self._client() as client:
            for fullname in self.codec.latest:
                self._register(client, fullname)
        return len(self._id_by_name)

    def _register(self, client: httpx.Client, fullname: str) -> int:
        text = self.codec.schema_text(fullname)
        resp = self._post(client, f"/subjects/{fullname}/versions", text)
        if resp.status_code in (401, 403):
            resp = self._look_up(client, fullname, text, refused=resp.status_code)
        if resp.status_code in (401, 403):
            raise RegistryError(f"looking up {fullname}: {self._refused(resp.status_code)}")
        if passing(resp.status_code):
            raise RegistryUnreachable(
                f"registering {fullname}: the registry failed or is busy ({resp.status_code})"
            )
        if resp.status_code >= 400:
            raise RegistryError(f"registering {fullname} failed: {resp.status_code} {resp.text}")
        schema_id = int(resp.json()["id"])
        self._id_by_name[fullname] = schema_id
        self._schema_by_id[schema_id] = text
        return schema_id

    def _look_up(
        self, client: httpx.Client, fullname: str, text: str, *, refused: int
    ) -> httpx.Response:
        """The id of ``text`` already registered under ``fullname`` (the registry's
        lookup, a read), where this client may not register: a production registry
        takes writes only from whoever publishes the contract (`privops schemas
        register`), and a connector or CLI that tried to register at start stopped there
        (review, session 25). A schema nobody registered yet is a RegistryError saying so."""
        found = self._post(client, f"/subjects/{fullname}", text)
        if found.status_code == 404:
            raise RegistryError(
                f"{fullname} is not registered, and the registry refused to register it "
                f"here ({refused}): run `privops schemas register` as a principal that may"
            )
        return found

    def _post(self, client: httpx.Client, path: str, schema: str) -> httpx.Response:
        """POST ``schema`` to the registry's ``path``; RegistryError if it cannot be asked."""
        try:
            return client.post(
                self.registry_url + path,
                json={"schema": schema},
                headers={"Content-Type": CONTENT_TYPE},
            )
        except httpx.HTTPError as exc:
            raise RegistryUnreachable(
                f"schema registry at {self.registry_url} unreachable ({exc}); "
                "is it running? try `privops local up`"
            ) from exc

    def schema_id(self, fullname: str) -> int:
        try:
            return self._id_by_name[fullname]
        except KeyError:
            with self._client() as client:
                return self._register(client, fullname)

    # --- encode / decode ------------------------------------------------------------
    def encode(self, record: Record) -> bytes:
        return frame(self.schema_id(record.fullname()), self.codec.encode(record))

    def encode_datum(self, fullname: str, datum: Mapping[str, Any]) -> bytes:
        """Framed Avro of a plain dict of ``fullname``'s fields (``Codec.encode_datum``)."""
        return frame(self.schema_id(fullname), self.codec.encode_datum(fullname, datum))

    def decode(self, data: bytes | None) -> Record:
        schema_id, payload = unframe(data)
        writer = self._known(schema_id)
        if writer is None:
            writer = self._judge(schema_id, self._fetch(schema_id))
        return self.codec.read(writer, payload)

    async def decode_async(self, data: bytes | None) -> Record:
        """Like decode, but a cache miss is fetched without blocking the event loop."""
        schema_id, payload = unframe(data)
        writer = self._known(schema_id)
        if writer is None:
            writer = self._judge(schema_id, await self._fetch_async(schema_id))
        return self.codec.read(writer, payload)

    def _known(self, schema_id: int) -> Writer | None:
        """The cached verdict on ``schema_id``: its writer, a DecodeError, or None (ask)."""
        writer = self._trusted.get(schema_id)
        if writer is not None:
            return writer
        rejected = self._rejected.get(schema_id)
        if rejected is not None:
            raise DecodeError(*rejected)
        text = self._schema_by_id.get(schema_id)
        if text is not None:
            return self._judge(schema_id, text)
        until = self._absent.get(schema_id)
        if until is not None:
            if self._clock() < until:
                raise _absent(schema_id)
            del self._absent[schema_id]
        return None

    def _judge(self, schema_id: int, text: str) -> Writer:
        try:
            writer = self.codec.writer(text)
        except DecodeError as exc:
            raise self._reject(schema_id, exc) from exc
        self._trusted[schema_id] = writer
        return writer

    def _reject(self, schema_id: int, exc: DecodeError) -> DecodeError:
        """Remember that ``schema_id`` is unusable (ids never change their schema)."""
        if len(self._rejected) >= MAX_REJECTED_IDS:
            del self._rejected[next(iter(self._rejected))]
        self._rejected[schema_id] = (exc.reason, f"schema id {schema_id}: {exc.detail}")
        return DecodeError(*self._rejected[schema_id])

    def _url(self, schema_id: int) -> str:
        return f"{self.registry_url}/schemas/ids/{schema_id}"

    def _fetch(self, schema_id: int) -> str:
        try:
            with (
                self._client() as client,
                client.stream("GET", self._url(schema_id)) as resp,
            ):
                body = _limited(resp.iter_bytes())
        except httpx.HTTPError as exc:
            raise RegistryUnreachable(f"schema registry unreachable: {exc}") from exc
        return self._answer(schema_id, resp.status_code, body)

    async def _fetch_async(self, schema_id: int) -> str:
        try:
            async with (
                self._async_client() as client,
                client.stream("GET", self._url(schema_id)) as resp,
            ):
                body = await _limited_async(resp.aiter_bytes())
        except httpx.HTTPError as exc:
            raise RegistryUnreachable(f"schema registry unreachable: {exc}") from exc
        return self._answer(schema_id, resp.status_code, body)

    def _remember_absent(self, schema_id: int) -> None:
        now = self._clock()
        absent = self._absent
        while absent and (next(iter(absent.values())) <= now or len(absent) >= MAX_ABSENT_IDS):
            del absent[next(iter(absent))]
        absent.pop(schema_id, None)  # re-inserted last, so the oldest stays first
        absent[schema_id] = now + ABSENT_ID_SECONDS

    def _answer(self, schema_id: int, status: int, body: bytes | None) -> str:
        if status == 404:  # remembered a while only: a lagging registry may know it soon
            self._remember_absent(schema_id)
            raise _absent(schema_id)
        if status in (401, 403):
            raise RegistryError(f"fetching schema {schema_id}: {self._refused(status)}")
        if passing(status):
            raise RegistryUnreachable(
                f"fetching schema {schema_id}: the registry failed or is busy ({status})"
            )
        if status >= 400:
            shown = "(too large)" if body is None else repr(body[:200])
            raise RegistryError(f"fetching schema {schema_id}: {status} {shown}")
        try:
            return schema_text(body)
        except DecodeError as exc:
            raise self._reject(schema_id, exc) from exc


BUSY_STATUSES: Final = frozenset({408, 429})


def passing(status: int) -> bool:
    """A registry answer asking again can mend: a failure (5xx), a timeout or "too many
    requests" (a registry behind a gateway answers 429 under load). A connector stopped
    on one at start (connector review, session 33): it is waited out like a registry
    that cannot be reached (``RegistryUnreachable``)."""
    return status >= 500 or status in BUSY_STATUSES


def _absent(schema_id: int) -> DecodeError:
    return DecodeError("unknown_schema", f"schema id {schema_id} is not in the registry")


def _limited(chunks: Iterator[bytes]) -> bytes | None:
    """The body, or None once it is over the size limit (the rest is not read)."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > MAX_REGISTRY_ANSWER_BYTES:
            return None
    return bytes(body)


async def _limited_async(chunks: AsyncIterator[bytes]) -> bytes | None:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > MAX_REGISTRY_ANSWER_BYTES:
            return None
    return bytes(body)


def schema_text(body: bytes | None) -> str:
    """The Avro schema text in a registry's 200 answer; anything else is ``unknown_schema``."""
    if body is None:
        raise DecodeError("unknown_schema", "registry answer over the size limit")
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DecodeError("unknown_schema", f"registry answer is not JSON: {exc}") from exc
    text = answer.get("schema") if isinstance(answer, dict) else None
    kind = answer.get("schemaType", "AVRO") if isinstance(answer, dict) else None
    if not isinstance(text, str) or kind != "AVRO":
        raise DecodeError("unknown_schema", "registry answer holds no Avro schema")
    return text
