"""Encrypting a record's personal fields before it is produced, and reading them back.

A business system calls ``encrypt_record`` on each event before sending it to
``<system>.events``: every field the contract marks personal (``privops.personal`` in
the .avsc) becomes ciphertext under the subject's data key, so the event log forgets
the subject when privops destroys that key. A connector calls ``task_identifiers`` (or
``decrypt_record``) to read the identifiers a task carries. Where the keys come from is
a ``KeySource``: ``WorkerKeySource`` asks privops' key service on the worker over HTTP
(what a business system uses: it may not read ``privacy.subject-keys``; ``worker_keys``
builds it from settings); ``RingKeySource`` reads a ``KeyRing``
(docs/crypto-shredding.md). ``sealed_key_ids``, ``sealed_scope`` and ``plaintext_fields``
look at a record's personal fields without opening them (the connector runner decides
with them what to open, what to skip and what to encrypt).
"""

from __future__ import annotations

import base64
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import ValidationError

from privops import contract
from privops.adapters import web_tls
from privops.adapters.api_auth import api_auth
from privops.adapters.avro import latest_schemas
from privops.adapters.kek import KekProvider, KekWatch
from privops.adapters.settings import Settings, is_loopback
from privops.core.errors import ConfigError, PrivopsError, RuntimeUnavailable
from privops.core.fieldcrypt import (
    MAIN_SCOPE,
    PREFIX,
    DataKey,
    TamperedField,
    decrypt_field,
    encrypting,
    is_encrypted,
    open_field,
    parse_field,
    split_key_id,
)
from privops.core.personal import (
    PersonalPath,
    Visit,
    fields_only,
    map_personal,
    personal_paths,
    visit_model,
)
from privops.core.records import Record, Task
from privops.core.subject_keys import KeyRing, SubjectErased, SubjectKey, unwrap

R = TypeVar("R", bound=Record | dict[str, Any])


class KeySource(Protocol):
    def current_key(self, subject_id: str, scope: str) -> DataKey:
        """The key new data of ``subject_id`` in ``scope`` is written under (created if none)."""
        ...

    def key(self, key_id: str) -> DataKey | None:
        """A key by id; None once it is shredded."""
        ...


class SameKey:
    """A ``KeySource`` whose current key is the one key ``key_id`` names, read through
    ``keys`` (never made): what a system seals its answer to a task under, the key the
    task came sealed under. ``SubjectErased`` once that key is shredded."""

    def __init__(self, keys: KeySource, key_id: str) -> None:
        self._keys = keys
        self._key_id = key_id

    def current_key(self, subject_id: str, scope: str) -> DataKey:
        if split_key_id(self._key_id)[:2] != (subject_id, scope):
            raise ValueError(f"the task's key is not of this subject's {scope} scope")
        key = self._keys.key(self._key_id)
        if key is None:
            raise SubjectErased("the key the task was sealed under is shredded")
        return key

    def key(self, key_id: str) -> DataKey | None:
        return self._keys.key(key_id)


class RingKeySource:
    """Keys from a ring that follows ``privacy.subject-keys``; ``create`` asks for new ones.

    ``create(subject_id, scope)`` is privops' key service: it answers with the subject's
    current key record for that scope, creating it if there is none, and only once the
    broker has acknowledged it, so no data is ever written under a key that can be lost.
    The answer is wrapped, so it may travel over any channel; it is unwrapped here with
    the KEK, and its copy from the topic later changes nothing.
    """

    def __init__(self, ring: KeyRing, create: Callable[[str, str], SubjectKey]) -> None:
        self.ring = ring
        self._create = create

    def current_key(self, subject_id: str, scope: str) -> DataKey:
        found = self.ring.current(subject_id, scope)
        if found is not None:
            return found
        record = self._create(subject_id, scope)
        if (record.subject_id, record.scope) != (subject_id, scope):
            raise ValueError(f"the key service answered {record.key_id!r} for {subject_id!r}")
        return self.ring.add(record)

    def key(self, key_id: str) -> DataKey | None:
        return self.ring.get(key_id)


K = TypeVar("K")
V = TypeVar("V")


class _Expiring(Generic[K, V]):
    """A bounded LRU whose entries expire: how long a shredded key can outlive its
    tombstone in a system's memory."""

    def __init__(self, size: int, ttl: float, clock: Callable[[], float]) -> None:
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._size, self._ttl, self._clock = size, ttl, clock

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: K, value: V) -> None:
        self._items[key] = (self._clock() + self._ttl, value)
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class WorkerKeySource:
    """Keys from privops' key service (``/subject-keys/{subject_id}`` on any worker: it
    forwards to the subject's owner), unwrapped here with the KEK.

    ``current_key`` asks the service for the subject's key of a scope, which creates it
    if there is none and answers only once it is stored; ``key`` lists the subject's
    stored keys. Unwrapped keys are cached for ``ttl_seconds`` (bounded), which is how
    long a key shredded by an erasure can still be used here. A worker answering 503
    (a partition moving between workers) is asked again for up to ``retry_seconds``.
    ``SubjectErased`` when the subject was erased: produce nothing about them.
    ``auth``: the caller's principal and password (``api_auth``), which the worker
    checks with the broker; a refusal is a ``PrivopsError`` naming it. With ``auth``, a
    plain ``http://`` address beyond loopback is a ``ConfigError`` unless
    ``allow_plaintext``: build it with ``worker_keys``, which follows the settings.
    """

    def __init__(
        self,
        base_url: str,
        kek: KekProvider,
        *,
        auth: httpx.Auth | None = None,
        ttl_seconds: float = 300.0,
        cache_size: int = 4096,
        retry_seconds: float = 15.0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        verify: ssl.SSLContext | bool = True,
        allow_plaintext: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        plain = parts.scheme.lower() != "https" and not is_loopback(parts.hostname or "")
        if auth is not None and plain and not allow_plaintext:
            raise ConfigError(
                f"privops' key service at {self.base_url} is plain HTTP beyond loopback: "
                "the password would cross the network in the clear. Use https://, or "
                "allow_plaintext=True where the network encrypts it (worker_keys applies "
                "PRIVOPS_WEB_PLAINTEXT)"
            )
        self.kek = kek
        self._http = httpx.Client(timeout=timeout, transport=transport, auth=auth, verify=verify)
        self._keys: _Expiring[str, DataKey] = _Expiring(cache_size, ttl_seconds, clock)
        self._current: _Expiring[tuple[str, str], DataKey] = _Expiring(
            cache_size, ttl_seconds, clock
        )
        self._retry_seconds = retry_seconds
        self._clock = clock

    def close(self) -> None:
        self._http.close()

    def forget(self) -> None:
        """Drop every cached key (a system told of an erasure need not wait for the TTL)."""
        self._keys.clear()
        self._current.clear()

    def current_key(self, subject_id: str, scope: str) -> DataKey:
        found = self._current.get((subject_id, scope))
        if found is not None:
            return found
        answer = self._call("POST", subject_id, {"scope": scope})
        record = key_record(answer)
        if (record.subject_id, record.scope) != (subject_id, scope):
            raise PrivopsError(f"the key service answered {record.key_id!r} for {subject_id!r}")
        key = self._unwrapped(record)
        self._current.put((subject_id, scope), key)
        return key

    def key(self, key_id: str) -> DataKey | None:
        found = self._keys.get(key_id)
        if found is not None:
            return found
        subject_id = split_key_id(key_id)[0]
        answer = self._call("GET", subject_id, {})
        items = answer.get("keys") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise PrivopsError("the key service answered no key list")
        for item in items:
            record = key_record(item)
            if record.subject_id == subject_id:
                self._unwrapped(record)
        return self._keys.get(key_id)

    def _unwrapped(self, record: SubjectKey) -> DataKey:
        key = unwrap(record, self.kek.version(record.kek_version))
        self._keys.put(record.key_id, key)
        return key

    def _call(self, method: str, subject_id: str, params: dict[str, str]) -> Any:
        url = f"{self.base_url}{KEY_SERVICE_PATH}{quote(subject_id, safe='')}"
        deadline = self._clock() + self._retry_seconds
        delay = 0.25
        while True:
            try:
                answer = self._http.request(method, url, params=params)
            except httpx.HTTPError as exc:
                raise RuntimeUnavailable(
                    f"privops' key service at {self.base_url} is unreachable ({exc})"
                ) from exc
            if answer.status_code != 503 or self._clock() + delay > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        return _answer(answer, self.base_url)


def worker_url(settings: Settings) -> str:
    """The worker's HTTP API (and key service) as settings name it (PRIVOPS_WEB_URL,
    else web_host and web_port; https with PRIVOPS_WEB_CA)."""
    return web_tls.api_url(settings)


def worker_keys(
    settings: Settings,
    base_url: str | None = None,
    *,
    principal: str,
    say: Callable[[str], None] = lambda _message: None,
    **options: Any,
) -> WorkerKeySource:
    """A business system's key source: privops' key service at ``base_url`` (default:
    the worker settings name), asked as ``principal`` (PRIVOPS_KAFKA_PRINCIPAL if set:
    the process's own), keys unwrapped with the KEK in ``settings.kek_file``, followed
    as it rotates. Under ``PRIVOPS_ENV=dev`` a missing KEK file is created (told to
    ``say``); anywhere else it is a ``ConfigError``. ``options`` go to
    ``WorkerKeySource`` (``retry_seconds``, ``ttl_seconds``, ...); it trusts
    ``PRIVOPS_WEB_CA`` (else the system's CA bundle) for an https API, and outside dev
    refuses a plain-HTTP one beyond loopback (``web_tls.api_url``: a ``ConfigError``)."""
    url = web_tls.api_url(settings, base_url)  # PRIVOPS_WEB_PLAINTEXT applied here
    options.setdefault("verify", web_tls.client_context(settings))
    kek = KekWatch(settings.kek_file, settings.env, say)
    auth = api_auth(settings, settings.kafka_principal or principal)
    return WorkerKeySource(url, kek, auth=auth, allow_plaintext=True, **options)


class _KeyServiceUrls(logging.Filter):
    """httpx logs every request's URL at INFO, and the key service's name the subject
    (``/subject-keys/<subject id>``): a system logging at INFO wrote one line per
    subject it met (review, session 25). The URL is logged without its last part; every
    other line httpx logs is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            KEY_SERVICE_PATH in str(arg) for arg in record.args
        ):
            record.args = tuple(_without_subject(arg) for arg in record.args)
        return True


KEY_SERVICE_PATH = "/subject-keys/"


def _without_subject(arg: object) -> object:
    text = str(arg)
    at = text.find(KEY_SERVICE_PATH)
    return arg if at < 0 else text[: at + len(KEY_SERVICE_PATH)] + "..."


logging.getLogger("httpx").addFilter(_KeyServiceUrls())


def _answer(answer: httpx.Response, base_url: str) -> Any:
    try:
        body = answer.json()
    except ValueError:
        body = None
    reason = body.get("reason") or body.get("error") if isinstance(body, dict) else None
    if answer.status_code == 410:
        raise SubjectErased(f"the subject was erased ({reason})")
    if answer.status_code == 400:
        raise ValueError(f"the key service refused the request: {reason}")
    if answer.status_code == 503:
        raise RuntimeUnavailable(f"privops' key service at {base_url}: {reason}")
    if (
        answer.status_code == 403
        and isinstance(body, dict)
        and body.get("error") == ("scope not allowed")
    ):
        raise PrivopsError(f"privops' key service at {base_url}: {reason}")
    if answer.status_code in (401, 403):
        raise PrivopsError(
            f"privops' key service at {base_url} refused this caller ({answer.status_code}: "
            f"{reason}); it takes a Kafka principal that may ask for keys and its password"
        )
    if answer.status_code != 200 or body is None:
        raise PrivopsError(f"privops' key service at {base_url} answered {answer.status_code}")
    return body


def key_json(record: SubjectKey) -> dict[str, Any]:
    """A wrapped key as the key service answers it (and ``key_record`` reads it back):
    useless without the KEK, so it may travel over any channel."""
    return {
        "subject_id": record.subject_id,
        "key_id": record.key_id,
        "scope": record.scope,
        "kek_version": record.kek_version,
        "wrapped": base64.b64encode(record.wrapped).decode(),
        "created_at": record.created_at.isoformat(),
    }


def key_record(item: Any) -> SubjectKey:
    """A key record from the service's JSON (``key_json``)."""
    try:
        fields = dict(item)
        fields["wrapped"] = base64.b64decode(fields["wrapped"], validate=True)
        return SubjectKey.model_validate(fields)
    except (TypeError, ValueError, KeyError, ValidationError) as exc:
        raise PrivopsError(
            f"the key service answered no key record ({type(exc).__name__})"
        ) from exc


@cache
def _paths_by_record(schema_dir: Path) -> dict[str, tuple[PersonalPath, ...]]:
    return {name: personal_paths(v.schema) for name, v in latest_schemas(schema_dir).items()}


@cache
def _default_schema_dir() -> Path:
    return contract.schema_dir()  # looks at the file system: once


def personal_fields(record_name: str, schema_dir: Path | None = None) -> tuple[PersonalPath, ...]:
    """The personal field paths of a record, from its newest committed schema."""
    paths = _paths_by_record(schema_dir or _default_schema_dir())
    try:
        return paths[record_name]
    except KeyError:
        raise ValueError(f"no committed schema for {record_name!r}") from None


def _as_dict(
    record: Record | dict[str, Any], record_name: str | None
) -> tuple[dict[str, Any], str]:
    if isinstance(record, Record):
        return record.model_dump(mode="python"), record_name or record.fullname()
    if record_name is None:
        raise ValueError("a dict record needs its record_name (the Avro full name)")
    return record, record_name


def _subject(found: object, subject_id: str | None) -> str:
    """``subject_id`` if given, else the record's own (``found``)."""
    found = subject_id or found
    if not isinstance(found, str) or not found:
        raise ValueError("the record has no subject_id field: pass subject_id (the Kafka key)")
    return found


def _rebuild(record: R, datum: dict[str, Any]) -> R:
    if isinstance(record, Record):
        return type(record).model_validate(datum)
    return datum  # type: ignore[return-value]  # R is the dict branch here


def encrypt_record(
    record: R,
    keys: KeySource,
    *,
    subject_id: str | None = None,
    scope: str = MAIN_SCOPE,
    record_name: str | None = None,
    schema_dir: Path | None = None,
) -> R:
    """``record`` with every personal field encrypted under the subject's key for ``scope``.

    Fields that already hold ciphertext are left as they are, so encrypting a record
    twice (a retry) changes nothing. ``scope`` is ``main`` unless the data is kept
    under a retention rule past an erasure (``subject_keys.retained_scope``).
    """

    def visit(subject: str) -> Visit:
        return encrypting(keys.current_key(subject, scope), subject)

    return _mapped(record, visit, subject_id, record_name, schema_dir)


def decrypt_record(
    record: R,
    keys: KeySource,
    *,
    subject_id: str | None = None,
    record_name: str | None = None,
    schema_dir: Path | None = None,
    legacy_plaintext: bool = False,
    parsed: Mapping[str, tuple[str, bytes]] | None = None,
) -> R:
    """``record`` with its personal fields in plaintext.

    ``ShreddedKey`` when the subject's key is gone, ``TamperedField`` when a ciphertext
    does not belong to this subject and field, ``MalformedField`` when a personal field
    is not ciphertext (unless ``legacy_plaintext``: records from before encryption).
    ``parsed``: ciphertexts the caller has parsed already (``parse_field``: value ->
    (key id, sealed bytes)), not parsed again.
    """

    def visit(subject: str) -> Visit:
        def open_(label: str, value: str) -> str:
            found = parsed.get(value) if parsed else None
            if found is not None:
                return open_field(found[0], found[1], subject, label, keys.key)
            if legacy_plaintext and not is_encrypted(value):
                return value
            return decrypt_field(value, subject, label, keys.key)

        return open_

    return _mapped(record, visit, subject_id, record_name, schema_dir)


def _mapped(
    record: R,
    visit: Callable[[str], Visit],
    subject_id: str | None,
    record_name: str | None,
    schema_dir: Path | None,
) -> R:
    """``record`` with the subject's ``visit(subject)`` applied to each personal string
    (none: ``record`` itself). A model whose personal fields are all record fields (every
    upstream event's) is visited in place, each model along a changed path validated
    again; anything else is dumped, visited and validated whole."""
    if isinstance(record, Record):
        paths = personal_fields(record_name or record.fullname(), schema_dir)
        if fields_only(paths):
            subject = _subject(getattr(record, "subject_id", None), subject_id)
            return visit_model(record, paths, visit(subject)) if paths else record
    datum, name = _as_dict(record, record_name)
    subject = _subject(datum.get("subject_id"), subject_id)
    paths = personal_fields(name, schema_dir)
    if not paths:
        return record
    return _rebuild(record, map_personal(datum, paths, visit(subject)))


def task_identifiers(
    task: Task, keys: KeySource, *, legacy_plaintext: bool = False
) -> dict[str, str]:
    """The identifiers a task asks the connector to act on, in plaintext."""
    return decrypt_record(task, keys, legacy_plaintext=legacy_plaintext).identifiers


def sealed_key_ids(
    record: Record | dict[str, Any],
    *,
    subject_id: str | None = None,
    record_name: str | None = None,
    schema_dir: Path | None = None,
) -> list[str]:
    """The key ids a record's personal fields are encrypted under, in field order, each
    once; empty when none is (a record from before encryption).

    Checked before any key is looked up: ``MalformedField`` for a value that starts
    ``pv1:`` but is no field ciphertext (it is never taken for plaintext),
    ``TamperedField`` for one whose key id names another subject (the associated data
    would refuse it anyway, but only after asking for a key that is none of its business).
    """
    datum, name = _as_dict(record, record_name)
    subject = _subject(datum.get("subject_id"), subject_id)
    found: list[str] = []

    def look(label: str, value: str) -> str:
        if value.startswith(PREFIX):
            key_id, _ = parse_field(value)
            if split_key_id(key_id)[0] != subject:
                raise TamperedField(f"{label}: encrypted under another subject's key")
            if key_id not in found:
                found.append(key_id)
        return value

    map_personal(datum, personal_fields(name, schema_dir), look)
    return found


def sealed_scope(
    record: Record | dict[str, Any],
    *,
    subject_id: str | None = None,
    record_name: str | None = None,
    schema_dir: Path | None = None,
) -> str:
    """The scope of the key a record's personal fields are encrypted under (its first
    ciphertext's), ``main`` when none is: where an answer about it is written."""
    return scope_of(
        sealed_key_ids(
            record, subject_id=subject_id, record_name=record_name, schema_dir=schema_dir
        )
    )


def scope_of(key_ids: list[str]) -> str:
    """The scope of the first of ``key_ids`` (``sealed_key_ids``' answer), ``main`` if none."""
    return split_key_id(key_ids[0])[1] if key_ids else MAIN_SCOPE


def plaintext_fields(
    record: Record | dict[str, Any],
    *,
    record_name: str | None = None,
    schema_dir: Path | None = None,
) -> list[str]:
    """The labels of a record's personal fields that hold a value not encrypted (an
    empty string counts: send null). Empty when there is nothing for ``encrypt_record``
    to do, so no key need be asked for: a ``TaskCompleted`` without an export."""
    datum, name = _as_dict(record, record_name)
    found: list[str] = []

    def look(label: str, value: str) -> str:
        if not is_encrypted(value):
            found.append(label)
        return value

    map_personal(datum, personal_fields(name, schema_dir), look)
    return found
