"""Personal fields encrypted with their subject's own data key (DESIGN.md section 8).

Kafka cannot delete one person from a log, but it can lose the only key that reads
them: every personal field of every record is AES-256-GCM ciphertext under a data key
that belongs to one data subject (and one scope, so data kept under a retention rule
can outlive the rest). Destroying the key is the erasure, for every copy at once.

A field's ciphertext is a string, so encrypting changes no Avro type:
``pv1:<key id>:<base64url(nonce | ciphertext | tag)>``. The key id says which key to
ask for; the associated data binds the ciphertext to the subject, the field and the
key, so a value cannot be replayed into another field or onto another subject (an
email moved into ``phone``, or Ann's address pasted into Bob's event, fails to decrypt).

Everything here is pure: keys come in as arguments; where they are kept is the key
ring's business (``privops.core.subject_keys``) and the KEK provider's
(``privops.adapters.kek``).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privops.core.errors import DecodeError

FORMAT: Final = "pv1"
PREFIX: Final = f"{FORMAT}:"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
KEY_NONCE_BYTES: Final = 8
MAX_SUBJECT_ID_CHARS: Final = 256
MAIN_SCOPE: Final = "main"
"""The scope of everything no retention rule keeps past an erasure."""

_SCOPE: Final = re.compile(r"[a-z0-9][a-z0-9:._-]{0,63}")
_KEY_NONCE: Final = re.compile(rf"[0-9a-f]{{{2 * KEY_NONCE_BYTES}}}")
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_MIN_PAYLOAD: Final = NONCE_BYTES + TAG_BYTES


class ShreddedKey(DecodeError):
    """The field's key is gone: the subject (or this scope of them) was erased.

    Also what a key never stored looks like, once the reader has caught up with the
    key topic (a key is stored before any data is written under it).
    """

    def __init__(self, key_id: str) -> None:
        super().__init__("shredded_key", f"no data key {key_id!r}: shredded or never stored")
        self.key_id = key_id


class TamperedField(DecodeError):
    """The ciphertext does not authenticate for this subject, field and key."""

    def __init__(self, detail: str) -> None:
        super().__init__("tampered_field", detail)


class MalformedField(DecodeError):
    """Not a field ciphertext of a format this version reads."""

    def __init__(self, detail: str) -> None:
        super().__init__("malformed_field", detail)


# --- key ids ------------------------------------------------------------------------------


def check_subject_id(subject_id: str) -> str:
    if not subject_id or len(subject_id) > MAX_SUBJECT_ID_CHARS or not subject_id.isprintable():
        raise ValueError(
            f"a subject id is 1 to {MAX_SUBJECT_ID_CHARS} printable characters, "
            f"not {len(subject_id)}"
        )
    return subject_id


def check_scope(scope: str) -> str:
    if not _SCOPE.fullmatch(scope):
        raise ValueError(f"a key scope is lower-case letters, digits and ':._-', not {scope!r}")
    return scope


def make_key_id(subject_id: str, scope: str, nonce: str) -> str:
    """``<subject id>/<scope>/<16 hex digits>``: unique even when two creators race."""
    if not _KEY_NONCE.fullmatch(nonce):
        raise ValueError(f"a key id nonce is {2 * KEY_NONCE_BYTES} lower-case hex digits")
    return f"{check_subject_id(subject_id)}/{check_scope(scope)}/{nonce}"


# Remembered: each event's ciphertexts name its subject's key, which the worker checks as
# it parses each one and again as it looks the subject up. Only a valid key id is kept
# (an error is raised again each time), so at most ~16k ids of under 340 characters.
@lru_cache(maxsize=16_384)
def split_key_id(key_id: str) -> tuple[str, str, str]:
    """(subject id, scope, nonce); split from the right, as only a subject id may hold '/'."""
    parts = key_id.rsplit("/", 2)
    try:
        if len(parts) != 3 or make_key_id(*parts) != key_id:
            raise ValueError("not <subject>/<scope>/<nonce>")
    except ValueError as exc:
        raise MalformedField(f"bad key id {key_id[:80]!r}: {exc}") from exc
    return parts[0], parts[1], parts[2]


# --- data keys ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataKey:
    """One subject's AES-256-GCM key for one scope. Never logged, never written unwrapped."""

    key_id: str
    secret: bytes = field(repr=False)
    subject_id: str = field(init=False)
    scope: str = field(init=False)
    _aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise ValueError(f"a data key is {KEY_BYTES} bytes, not {len(self.secret)}")
        subject_id, scope, _ = split_key_id(self.key_id)
        object.__setattr__(self, "subject_id", subject_id)
        object.__setattr__(self, "scope", scope)
        # Building the cipher costs more than a short field's encryption: once per key.
        object.__setattr__(self, "_aead", AESGCM(self.secret))

    @classmethod
    def generate(cls, subject_id: str, scope: str = MAIN_SCOPE) -> DataKey:
        nonce = os.urandom(KEY_NONCE_BYTES).hex()
        return cls(make_key_id(subject_id, scope, nonce), os.urandom(KEY_BYTES))

    def seal(self, plaintext: bytes, associated: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, associated)

    def open(self, sealed: bytes, associated: bytes) -> bytes:
        """``InvalidTag`` when ``sealed`` was not made by this key with ``associated``."""
        return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)


KeyLookup = Callable[[str], DataKey | None]
"""A key by its id, or None when there is none (shredded)."""


def associated_data(label: bytes, *parts: str) -> bytes:
    """Length-prefixed parts under a purpose label: no two different inputs give the same."""
    out = bytearray(label)
    for part in parts:
        raw = part.encode()
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


_FIELD_LABEL: Final = b"privops-field/" + FORMAT.encode()


# --- field ciphertext ---------------------------------------------------------------------


def encrypt_field(key: DataKey, subject_id: str, field_path: str, plaintext: str) -> str:
    """``plaintext`` as the ciphertext string that replaces it in ``field_path``."""
    if key.subject_id != subject_id:
        raise ValueError("a field is encrypted only with its own subject's key")
    sealed = key.seal(
        plaintext.encode(), associated_data(_FIELD_LABEL, subject_id, field_path, key.key_id)
    )
    return f"{PREFIX}{key.key_id}:{base64.urlsafe_b64encode(sealed).rstrip(b'=').decode()}"


def encrypting(key: DataKey, subject_id: str) -> Callable[[str, str], str]:
    """A ``map_personal`` visit: each plaintext value encrypted under ``key`` in its field;
    a value that is ciphertext already is left as it is (encrypting twice changes
    nothing)."""

    def visit(field_path: str, value: str) -> str:
        return value if is_encrypted(value) else encrypt_field(key, subject_id, field_path, value)

    return visit


MAX_SEALED_FIELDS: Final = 64
MAX_SEALED_CHARS: Final = 20_000
MAX_FIELD_PATH_CHARS: Final = 200


def sealable(fields: object) -> dict[str, str]:
    """``fields`` of a ``POST /subject-keys/{id}/seal`` (field path -> plaintext,
    labelled as ``personal.map_personal`` labels them), checked before any key is made
    for them: ``ValueError`` saying what is wrong (not an object of strings, none or too
    many, a path or value too long, a value sealed already)."""
    if not isinstance(fields, dict) or not 0 < len(fields) <= MAX_SEALED_FIELDS:
        raise ValueError(f"'fields' is an object of 1 to {MAX_SEALED_FIELDS} field paths")
    for path, value in fields.items():
        if not 0 < len(path) <= MAX_FIELD_PATH_CHARS or not path.isprintable():
            raise ValueError(f"a field path is 1 to {MAX_FIELD_PATH_CHARS} printable characters")
        if not isinstance(value, str) or len(value) > MAX_SEALED_CHARS:
            raise ValueError(
                f"{path}: a value is a string of at most {MAX_SEALED_CHARS} characters"
            )
        if is_encrypted(value):
            raise ValueError(f"{path}: the value is sealed already")
    return fields


def seal_fields(key: DataKey, subject_id: str, fields: Mapping[str, str]) -> dict[str, str]:
    """Each plaintext of ``fields`` (``sealable``) sealed in its field path under ``key``:
    how the key service seals for a caller that does not hold the KEK (the DPO's CLI
    sealing a command's free text)."""
    return {path: encrypt_field(key, subject_id, path, value) for path, value in fields.items()}


def parse_field(token: str) -> tuple[str, bytes]:
    """(key id, sealed bytes) of a field ciphertext; ``MalformedField`` if it is none."""
    if not token.startswith(PREFIX):
        raise MalformedField("not a field ciphertext (no 'pv1:' prefix)")
    key_id, sep, payload = token[len(PREFIX) :].rpartition(":")
    if not sep or not key_id or not _B64URL.fullmatch(payload):
        raise MalformedField("a field ciphertext is pv1:<key id>:<base64url>")
    split_key_id(key_id)
    try:
        sealed = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedField("the ciphertext is not base64url") from exc
    if len(sealed) < _MIN_PAYLOAD:
        raise MalformedField(f"a ciphertext is at least {_MIN_PAYLOAD} bytes")
    return key_id, sealed


def is_encrypted(value: str) -> bool:
    """Whether ``value`` is a well-formed field ciphertext (not whether it decrypts)."""
    if not value.startswith(PREFIX):  # plaintext, the common case, without an exception
        return False
    try:
        parse_field(value)
    except MalformedField:
        return False
    return True


def decrypt_field(token: str, subject_id: str, field_path: str, keys: KeyLookup) -> str:
    """The plaintext of a field ciphertext found in ``field_path`` of ``subject_id``'s record.

    ``ShreddedKey`` if ``keys`` has no such key, ``TamperedField`` if the ciphertext
    does not authenticate here (altered, or moved from another field or subject).
    """
    key_id, sealed = parse_field(token)
    return open_field(key_id, sealed, subject_id, field_path, keys)


def open_field(
    key_id: str, sealed: bytes, subject_id: str, field_path: str, keys: KeyLookup
) -> str:
    """``decrypt_field`` of a ciphertext its caller has parsed already (``parse_field``)."""
    key = keys(key_id)
    if key is None:
        raise ShreddedKey(key_id)
    if key.key_id != key_id:
        raise ValueError(f"the key lookup answered {key.key_id!r} for {key_id!r}")
    try:
        plain = key.open(sealed, associated_data(_FIELD_LABEL, subject_id, field_path, key_id))
    except InvalidTag as exc:
        raise TamperedField(
            f"{field_path}: ciphertext does not authenticate for this subject, field and key"
        ) from exc
    try:
        return plain.decode()
    except UnicodeDecodeError as exc:  # authenticated, so written by a faulty encoder
        raise MalformedField(f"{field_path}: plaintext is not UTF-8") from exc
