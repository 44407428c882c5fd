"""What `privops subject forget-check` looks for in a record's bytes (no I/O).

After an erasure a DPO must be able to show that nothing of the subject still reads
(docs/forget-check.md). Three things would say otherwise, and each is decided here from
bytes alone, so the same rules hold for a Kafka record, a changelog entry and a value in
a worker's RocksDB store:

- **plaintext**: a value the DPO knows (email, phone, name) or one privops' own identity
  record still holds, in any of the forms it is written in: UTF-8 (Avro strings, JSON),
  JSON's ``\\u`` escapes, any letter case; a phone in any layout that has its digits;
- **live ciphertext**: a ``pv1:<subject>/<scope>/<nonce>:...`` field whose key id is still
  live on ``privacy.subject-keys``; no KEK is needed to judge it: whoever holds the KEK
  can unwrap a live key, so the field decrypts;
- **live entries**: the subject id as the key of a compacted table whose latest value is
  not a tombstone.

A value searched for is never returned: findings carry a label and a masked hint.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Final

from privops.core.errors import DomainError
from privops.core.fieldcrypt import PREFIX
from privops.core.identity import EMAIL, PHONE, normalise_email, normalise_phone

MIN_VALUE_CHARS: Final = 4
"""Shorter values match unrelated bytes everywhere; the scan would prove nothing."""

# Up to two separators between digits: "(0)20", "555-0123", "07700 900 123".
_PHONE_SEPARATORS: Final = rb"[\s\-().]{0,2}"
_UK: Final = "44"
# A national number outside the UK: its last nine digits, whatever the country code's length.
_FOREIGN_DIGITS: Final = 9
_KEY_NONCE: Final = rb"[0-9a-f]{16}"
_SCOPE: Final = rb"[a-z0-9][a-z0-9:._-]{0,63}"
_SLASH: Final = rb"\\?/"  # JSON may escape '/'


class Kind(StrEnum):
    """What was found; any of them means the subject is not forgotten yet."""

    PLAINTEXT = "plaintext"
    LIVE_CIPHERTEXT = "live-ciphertext"
    LIVE_ENTRY = "live-entry"
    LIVE_KEY = "live-key"


class ValueKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    TEXT = "text"


@dataclass(frozen=True)
class Needle:
    """One value to look for, as the byte patterns it can appear as (never printed)."""

    label: str
    kind: ValueKind
    hint: str
    canonical: str = field(repr=False)
    patterns: tuple[bytes, ...] = field(repr=False)
    phone: re.Pattern[bytes] | None = field(default=None, repr=False)

    def first(self, data: bytes, lowered: bytes) -> int | None:
        """Byte offset of the first match in ``data`` (``lowered`` is ``data.lower()``)."""
        if self.phone is not None:
            found = self.phone.search(data)
            return None if found is None else found.start()
        offsets = [i for i in (lowered.find(p) for p in self.patterns) if i >= 0]
        return min(offsets) if offsets else None

    @property
    def described(self) -> str:
        return f"{self.label} ({self.hint})"


def classify(value: str) -> ValueKind:
    try:
        if "@" in value:
            normalise_email(value)
            return ValueKind.EMAIL
        normalise_phone(value)
        return ValueKind.PHONE
    except DomainError:
        return ValueKind.TEXT


def mask(value: str, kind: ValueKind) -> str:
    """At most the first character: enough for a DPO to tell their values apart."""
    head = value.strip()[:1] or "?"
    return f"{head}***@***" if kind is ValueKind.EMAIL else f"{head}***"


def needle(value: str, label: str) -> Needle:
    """The needle for one value; ``ValueError`` (without the value) if it is too short."""
    text = value.strip()
    if len(text) < MIN_VALUE_CHARS:
        raise ValueError(
            f"{label} is shorter than {MIN_VALUE_CHARS} characters: it would match "
            "unrelated data everywhere"
        )
    kind = classify(text)
    hint = mask(text, kind)
    if kind is ValueKind.PHONE:
        normalised = normalise_phone(text)
        return Needle(label, kind, hint, normalised, (), _phone_pattern(normalised))
    canonical = normalise_email(text) if kind is ValueKind.EMAIL else text.lower()
    forms = {text, canonical}
    forms |= {json.dumps(f)[1:-1] for f in tuple(forms)}
    patterns = tuple(sorted({f.encode().lower() for f in forms}))
    return Needle(label, kind, hint, canonical, patterns)


def _phone_pattern(normalised: str) -> re.Pattern[bytes]:
    """The national number's digits in order, any prefix (+44, 0044, 0, (0)) before them."""
    digits = normalised.removeprefix("+")
    national = digits[len(_UK) :] if digits.startswith(_UK) else digits[-_FOREIGN_DIGITS:]
    body = _PHONE_SEPARATORS.join(re.escape(d.encode()) for d in national)
    return re.compile(body + rb"(?!\d)")


def needles(values: Iterable[tuple[str, str]]) -> list[Needle]:
    """Needles for (label, value) pairs; a value already searched for is not repeated."""
    out: dict[tuple[ValueKind, str], Needle] = {}
    for label, value in values:
        made = needle(value, label)
        out.setdefault((made.kind, made.canonical), made)
    return list(out.values())


# --- where a match sits ----------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One finding in one record: what, in its key or value, and where in it."""

    kind: Kind
    what: str
    part: str
    at: str
    test: Callable[[bytes], bool] | None = field(default=None, repr=False, compare=False)


MATCHING_KEY = "{matching key}"
"""Stands in a field path for a mapping key that is one of the values searched for: the
path is printed, the values never are."""


def _leaves(
    obj: object, path: str = "", hidden: Callable[[bytes], bool] = lambda _: False
) -> Iterator[tuple[str, str]]:
    """(path, text) of every string, number and mapping key in a decoded document; a key
    ``hidden`` matches is named MATCHING_KEY in every path through it."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            secret = hidden(str(key).encode())
            name = MATCHING_KEY if secret else str(key)
            where = f"{path}.{name}" if path else name
            yield where if secret else where + "{}", str(key)
            yield from _leaves(value, where, hidden)
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from _leaves(value, f"{path}[{i}]", hidden)
    elif isinstance(obj, str | int | float) and not isinstance(obj, bool):
        yield path or "(whole)", str(obj)


def locate(
    obj: object,
    test: Callable[[bytes], bool],
    others: Sequence[Callable[[bytes], bool]] = (),
) -> str | None:
    """The field path of the first string in a decoded document that ``test`` matches.

    A mapping key that ``test`` or any of ``others`` (the record's other findings) matches
    is a searched-for value, so the path names it MATCHING_KEY instead."""
    tests = (test, *others)
    for path, text in _leaves(obj, hidden=lambda key: any(t(key) for t in tests)):
        if test(text.encode()):
            return path
    return None


def _json(data: bytes) -> object | None:
    if data[:1] not in (b"{", b"["):
        return None
    try:
        decoded: object = json.loads(data)
    except ValueError:
        return None
    return decoded


def placed(hits: Iterable[Hit], document: object) -> list[Hit]:
    """``hits`` with a field path instead of a byte offset where ``document`` (the decoded
    value they were found in) shows which field holds them."""
    hits = list(hits)
    tests = [hit.test for hit in hits if hit.test is not None]
    out = []
    for hit in hits:
        path = locate(document, hit.test, tests) if hit.test is not None else None
        out.append(hit if path is None else Hit(hit.kind, hit.what, hit.part, path, hit.test))
    return out


# --- the three searches -----------------------------------------------------------------------


def _token_pattern(subject_id: str) -> re.Pattern[bytes]:
    """A ciphertext under one of ``subject_id``'s keys, its id as bytes or as JSON writes
    it: a table value is JSON, which escapes a subject id's non-ASCII characters, quotes
    and backslashes, and for such an id a live ciphertext in a changelog or store was not
    found, and the check passed (review, session 44)."""
    spellings = sorted(
        {
            subject_id.encode(),
            json.dumps(subject_id)[1:-1].encode(),
            json.dumps(subject_id, ensure_ascii=False)[1:-1].encode(),
        },
        key=len,
        reverse=True,
    )
    return re.compile(
        re.escape(PREFIX.encode())
        + b"(?:"
        + b"|".join(re.escape(s) for s in spellings)
        + b")"
        + _SLASH
        + b"("
        + _SCOPE
        + b")"
        + _SLASH
        + b"("
        + _KEY_NONCE
        + b"):[A-Za-z0-9_-]+"
    )


def _holds(token: bytes, text: bytes) -> bool:
    return token in text


def _matches(n: Needle, text: bytes) -> bool:
    return n.first(text, text.lower()) is not None


@dataclass(frozen=True)
class Matcher:
    """Everything one scan looks for, compiled once for every record."""

    subject_id: str
    needles: tuple[Needle, ...]
    live_keys: frozenset[str]
    _tokens: re.Pattern[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tokens", _token_pattern(self.subject_id))

    def scan(self, part: str, data: bytes | None) -> tuple[list[Hit], int]:
        """Findings in one key or value, and how many ciphertexts under destroyed keys."""
        if not data:
            return [], 0
        hits = self._plaintext(part, data)
        shredded = 0
        if PREFIX.encode() in data:
            for found in self._tokens.finditer(data):
                key_id = f"{self.subject_id}/{found[1].decode()}/{found[2].decode()}"
                if key_id not in self.live_keys:
                    shredded += 1
                    continue
                # As the decoded value holds it (``placed``): the id unescaped.
                token = (PREFIX + key_id).encode() + data[found.end(2) : found.end()]
                hits.append(
                    Hit(
                        Kind.LIVE_CIPHERTEXT,
                        f"key {key_id} (key live: decryptable by anyone holding the KEK)",
                        part,
                        f"byte {found.start()}",
                        partial(_holds, token),
                    )
                )
        document = _json(data) if hits else None
        return (hits if document is None else placed(hits, document)), shredded

    def _plaintext(self, part: str, data: bytes) -> list[Hit]:
        lowered = data.lower()
        hits = []
        for n in self.needles:
            at = n.first(data, lowered)
            if at is not None:
                hits.append(
                    Hit(
                        Kind.PLAINTEXT,
                        n.described,
                        part,
                        f"byte {at}",
                        partial(_matches, n),
                    )
                )
        return hits

    def record(self, key: bytes | None, value: bytes | None) -> tuple[list[Hit], int]:
        key_hits, key_shredded = self.scan("key", key)
        value_hits, value_shredded = self.scan("value", value)
        return key_hits + value_hits, key_shredded + value_shredded


# --- the key topic and compacted tables --------------------------------------------------------


def key_subject(key_id: str) -> str | None:
    """The subject a key id belongs to (split from the right: only a subject id holds '/')."""
    parts = key_id.rsplit("/", 2)
    return parts[0] if len(parts) == 3 and parts[0] else None


class Latest:
    """The latest value per Kafka key and partition of a compacted topic, read in order.

    A key is live while its latest record in any partition is not a tombstone. For the
    key topic the keys are key ids; for a table, only the subject's own key is kept.
    """

    def __init__(self, only: bytes | None = None) -> None:
        self._only = only
        self._latest: dict[tuple[bytes, int], tuple[int, bool]] = {}

    def apply(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        if key is None or (self._only is not None and key != self._only):
            return
        self._latest[(key, partition)] = (offset, value is not None)

    def live(self) -> list[tuple[bytes, int, int]]:
        """(key, partition, offset of the latest record) of every key not tombstoned."""
        return sorted(
            (key, partition, offset)
            for (key, partition), (offset, present) in self._latest.items()
            if present
        )

    def live_keys(self) -> frozenset[str]:
        return frozenset(k.decode(errors="replace") for k, _, _ in self.live())


def identity_values(data: bytes | None) -> list[tuple[str, str]]:
    """(label, value) of the email and phone numbers an identity record still holds in
    plaintext, current and earlier (``previous``); none from ciphertext, from a
    tombstone or from bytes that are not one."""
    document = _json(data) if data else None
    if not isinstance(document, dict):
        return []
    found: list[tuple[str, str]] = []

    def take(holder: object, label: str) -> None:
        """The identifier's value and the earlier ones it keeps (``previous``)."""
        earlier = holder.get("previous") if isinstance(holder, dict) else None
        for item in (holder, *(earlier if isinstance(earlier, list) else ())):
            value = item.get("value") if isinstance(item, dict) else None
            if isinstance(value, str) and value.strip() and not value.startswith(PREFIX):
                found.append((label, value))

    for name in (EMAIL, PHONE):
        take(document.get(name), f"identity record {name}")
    systems = document.get("systems")
    for system, idents in sorted(systems.items()) if isinstance(systems, dict) else ():
        for name in (EMAIL, PHONE):
            if isinstance(idents, dict):
                take(idents.get(name), f"identity record {system}.{name}")
    return found
