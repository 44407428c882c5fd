"""Confluent wire format through the schema registry.

Frame: magic byte 0, 4-byte big-endian schema id, Avro binary. Subjects use the record
name strategy (subject = record full name), so one topic can carry several record types
(the commands, the upstream events) and a reader picks the model from the writer's
schema. Ids are cached both ways; all bundled schemas are registered once at start-up
(``register_all``) so encoding never blocks on the network, and decoding only goes to
the registry for a schema id it has never seen (a newer producer).
"""

from __future__ import annotations

import struct
from pathlib import Path

import httpx

from privops.adapters.avro import Codec
from privops.core.errors import DecodeError, RegistryError
from privops.core.records import Record

MAGIC = 0
_HEADER = struct.Struct(">bI")
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


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
    """Encode records to framed Avro and decode them back, with cached registry ids."""

    def __init__(self, registry_url: str, schema_dir: Path, *, timeout: float = 10.0) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.codec = Codec(schema_dir)
        self.timeout = timeout
        self._id_by_name: dict[str, int] = {}
        self._schema_by_id: dict[int, str] = {}

    # --- registration ---------------------------------------------------------------
    def register_all(self) -> int:
        """Register every bundled schema (idempotent: the registry returns existing ids)."""
        with httpx.Client(timeout=self.timeout) as client:
            for fullname in self.codec.latest:
                self._register(client, fullname)
        return len(self._id_by_name)

    def _register(self, client: httpx.Client, fullname: str) -> int:
        text = self.codec.schema_text(fullname)
        url = f"{self.registry_url}/subjects/{fullname}/versions"
        try:
            resp = client.post(url, json={"schema": text}, headers={"Content-Type": CONTENT_TYPE})
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"schema registry at {self.registry_url} unreachable ({exc}); "
                "is it running? try `privops local up`"
            ) from exc
        if resp.status_code >= 400:
            raise RegistryError(f"registering {fullname} failed: {resp.status_code} {resp.text}")
        schema_id = int(resp.json()["id"])
        self._id_by_name[fullname] = schema_id
        self._schema_by_id[schema_id] = text
        return schema_id

    def schema_id(self, fullname: str) -> int:
        try:
            return self._id_by_name[fullname]
        except KeyError:
            with httpx.Client(timeout=self.timeout) as client:
                return self._register(client, fullname)

    # --- encode / decode ------------------------------------------------------------
    def encode(self, record: Record) -> bytes:
        return frame(self.schema_id(record.fullname()), self.codec.encode(record))

    def decode(self, data: bytes | None) -> Record:
        schema_id, payload = unframe(data)
        writer = self._schema_by_id.get(schema_id)
        if writer is None:
            writer = self._fetch(schema_id)
        return self.codec.decode(writer, payload)

    async def decode_async(self, data: bytes | None) -> Record:
        """Like decode, but a cache miss is fetched without blocking the event loop."""
        schema_id, payload = unframe(data)
        writer = self._schema_by_id.get(schema_id)
        if writer is None:
            writer = await self._fetch_async(schema_id)
        return self.codec.decode(writer, payload)

    def _url(self, schema_id: int) -> str:
        return f"{self.registry_url}/schemas/ids/{schema_id}"

    def _fetch(self, schema_id: int) -> str:
        try:
            with httpx.Client(timeout=self.timeout) as client:
                resp = client.get(self._url(schema_id))
        except httpx.HTTPError as exc:
            raise RegistryError(f"schema registry unreachable: {exc}") from exc
        return self._remember(schema_id, self._check(resp, schema_id))

    async def _fetch_async(self, schema_id: int) -> str:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                resp = await client.get(self._url(schema_id))
        except httpx.HTTPError as exc:
            raise RegistryError(f"schema registry unreachable: {exc}") from exc
        return self._remember(schema_id, self._check(resp, schema_id))

    @staticmethod
    def _check(resp: httpx.Response, schema_id: int) -> httpx.Response:
        if resp.status_code == 404:
            raise DecodeError("unknown_schema", f"schema id {schema_id} is not in the registry")
        if resp.status_code >= 400:
            raise RegistryError(f"fetching schema {schema_id}: {resp.status_code} {resp.text}")
        return resp

    def _remember(self, schema_id: int, resp: httpx.Response) -> str:
        text = str(resp.json()["schema"])
        self._schema_by_id[schema_id] = text
        return text
