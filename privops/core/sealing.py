"""privops' own copies of personal data, sealed under the subject's key: pure, no I/O.

The worker keeps personal values in four tables (the identity map's identifiers,
current and earlier, the retention facts' recipient references, a request's rectified
values, task identifiers, export locations and access manifest, and free text that may
name people: the DPO's reasons, the systems' answers, a legal hold's reason). In memory
they are plaintext, for the decisions; whatever is written (the RocksDB store and the
table's changelog topic) holds each of them as a ``pv1:`` field ciphertext under the
subject's data key, exactly like the business systems' events (privops.core.fieldcrypt).
Destroying the key therefore reaches every copy the changelog and its backups still
hold, compacted or not.

A ``TableSealing`` names a table's personal paths in its JSON value (the shape
``model_dump(mode="json")`` gives); ``seal`` encrypts them, ``open`` decrypts them,
and ``stripped`` is the value without them, for when the key is gone (the subject was
erased: what was sealed under it is unreadable by design, and nothing of it is kept).
docs/crypto-shredding.md, "privops' own copies".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import BaseModel

from privops.core.fieldcrypt import (
    DataKey,
    KeyLookup,
    ShreddedKey,
    decrypt_field,
    encrypting,
    is_encrypted,
    parse_field,
)
from privops.core.personal import ITEMS, VALUES, PersonalPath, holds_personal, map_personal
from privops.core.vocab import OPEN_STATES

Json = dict[str, Any]


def _path(*steps: str) -> PersonalPath:
    return PersonalPath(steps)


@dataclass(frozen=True)
class TableSealing:
    """How one table's values are sealed: their personal paths, and the value without
    them (None: nothing worth keeping is left, the entry is dropped)."""

    name: str
    paths: tuple[PersonalPath, ...]
    strip: Callable[[Json], Json | None]
    subject: Callable[[str, Json], str]
    """(table key, JSON value) -> the subject whose key seals it."""
    pack: Callable[[Json], Json] = lambda value: value
    unpack: Callable[[Json], Json] = lambda value: value
    unkeyed: Callable[[Json], Json | None] | None = None
    """What is written of a plaintext value whose subject has no key to seal it under (an
    erased subject with nothing kept); default ``strip``."""

    def without_key(self, value: Json) -> Json | None:
        return (self.unkeyed or self.strip)(value)


# --- the tables ------------------------------------------------------------------------------


def _by_key(key: str, _value: Json) -> str:
    return key


def _own_subject(_key: str, value: Json) -> str:
    subject: str = value["subject_id"]
    return subject


def _identifier_paths(*steps: str) -> tuple[PersonalPath, ...]:
    """An identifier's value and the earlier values it replaced (``identity.Superseded``),
    which are an erased person's old addresses and numbers: in plaintext, they outlived
    the erasure in the store and the changelog (review, session 27)."""
    return (_path(*steps, "value"), _path(*steps, "previous", ITEMS, "value"))


IDENTITIES: Final = TableSealing(
    "identities",
    (
        *_identifier_paths("email"),
        *_identifier_paths("phone"),
        *_identifier_paths("systems", VALUES, VALUES),
    ),
    strip=lambda _value: None,  # an identity is nothing but identifiers
    subject=_by_key,
)


def _facts_without_refs(value: Json) -> Json:
    disclosures = [{**d, "recipient_ref": None} for d in value.get("disclosures") or ()]
    return {**value, "disclosures": disclosures}


FACTS: Final = TableSealing(
    "subject-facts",
    (_path("disclosures", ITEMS, "recipient_ref"),),
    strip=_facts_without_refs,
    subject=_by_key,
)

MANIFEST: Final = "manifest"


def _manifest_as_text(value: Json) -> Json:
    """The access manifest is a JSON document: sealed whole, as its canonical text."""
    manifest = value.get(MANIFEST)
    if manifest is None or isinstance(manifest, str):
        return value
    return {**value, MANIFEST: json.dumps(manifest, sort_keys=True, separators=(",", ":"))}


def _manifest_as_json(value: Json) -> Json:
    manifest = value.get(MANIFEST)
    if not isinstance(manifest, str):
        return value
    return {**value, MANIFEST: json.loads(manifest)}


REQUEST_FREE_TEXT: Final = ("reason", "extension_reason")
"""A request's free text from the DPO (why refused, extended, decided: "Ann Jones phoned
from 12 Acacia Avenue"), sealed like its values (review, session 26). A system's own
words are its task's ``outcome_reason``; what a request keeps and why (``kept[].ground``)
is privops' text, from the data map and the legal holds (``fanout``), never sealed: the
DPO's view keeps it after the erasure."""


PREVIOUS_IDENTIFIERS: Final = "previous_identifiers"
"""A task's earlier identifiers (``records.Task.previous_identifiers``); a request
recorded before tasks carried them has none."""


ORIGINAL_EXPORT: Final = "original_export"
"""A task's export the DPO's redacted copy replaced (``workflow._export_redacted``)."""


SEARCH: Final = "search"
"""An access request's search details (privops.core.search)."""


SEND_TO: Final = "send_to"
"""A portability request's recipient organisation, in the subject's words (Art. 20(2)):
sealed, stripped, and kept while the request is open, as the DPO's free text is; only
written when there is one (``RequestRecord.send_to``), so a record without it reads in
a release of before 0.40."""

REPRESENTATIVE: Final = "representative"
"""Who made the request for the subject, and how to reach them (from 0.41): as
``SEND_TO``, and written only when there is one, so a record without it reads in a
release of before 0.41."""

OPTIONAL_TEXT: Final = (SEND_TO, REPRESENTATIVE)
"""A request's free text written only when given (``RequestRecord``'s ``exclude_if``)."""

CAPACITY: Final = "capacity"
"""In what capacity a representative acts: not personal text, so not sealed, but gone
with the key as the representative's details are ("deputy" tells of the subject's
mental capacity, "parent" that they are a child; ``shredding.scrubbed`` likewise),
once the request is closed: an open one's wait for the authority depends on it."""


_OPEN: Final = frozenset(state.value for state in OPEN_STATES)


def _request_without_values(value: Json) -> Json:
    tasks = {
        task_id: {
            **task,
            "identifiers": {},
            "changes": {},
            "export": None,
            "outcome_reason": None,
            **({ORIGINAL_EXPORT: None} if ORIGINAL_EXPORT in task else {}),
            **({PREVIOUS_IDENTIFIERS: {}} if PREVIOUS_IDENTIFIERS in task else {}),
        }
        for task_id, task in (value.get("tasks") or {}).items()
    }
    return {
        **value,
        "rectification": {},
        **({SEARCH: {}} if SEARCH in value else {}),
        **{name: None for name in OPTIONAL_TEXT if name in value},
        # an open request's wait for the authority depends on it: gone once closed
        **({CAPACITY: None} if CAPACITY in value and value.get("state") not in _OPEN else {}),
        "tasks": tasks,
        MANIFEST: None,
        **dict.fromkeys(REQUEST_FREE_TEXT),
    }


def _request_unkeyed(value: Json) -> Json:
    """An open request of a subject with no key left (a complaint from someone already
    erased, with nothing kept) keeps the DPO's free text as it is until it closes, when
    it is cleared (``shredding.scrubbed``, on settling a closed request of an erased
    subject): stripped at the write, a complaint lost its text at once, which the DPO
    needs to answer it (review, session 26). The rest is stripped as ever."""
    stripped = _request_without_values(value)
    if value.get("state") in _OPEN:
        stripped.update({name: value.get(name) for name in REQUEST_FREE_TEXT})
        stripped.update({name: value[name] for name in OPTIONAL_TEXT if name in value})
    return stripped


REQUESTS: Final = TableSealing(
    "requests",
    (
        _path("rectification", VALUES),
        _path(SEARCH, VALUES),
        _path("tasks", VALUES, "identifiers", VALUES),
        _path("tasks", VALUES, PREVIOUS_IDENTIFIERS, VALUES, ITEMS),
        _path("tasks", VALUES, "changes", VALUES),
        _path("tasks", VALUES, "export", "location"),
        _path("tasks", VALUES, ORIGINAL_EXPORT, "location"),
        _path("tasks", VALUES, "outcome_reason"),
        _path(MANIFEST),
        *(_path(name) for name in REQUEST_FREE_TEXT),
        *(_path(name) for name in OPTIONAL_TEXT),
    ),
    strip=_request_without_values,
    subject=_own_subject,
    pack=_manifest_as_text,
    unpack=_manifest_as_json,
    unkeyed=_request_unkeyed,
)


HOLDS_LIST: Final = "holds"
HOLD_REASON_GONE: Final = "(erased: the key it was sealed under is destroyed)"
"""A legal hold's reason once its key is gone: the hold itself stays (an active one
keeps its categories from erasure), its free text does not."""


def _holds_as_record(value: Any) -> Json:
    """The legal-holds value is a list of holds; sealed as a record holding it."""
    return value if isinstance(value, dict) else {HOLDS_LIST: value}


def _holds_as_list(value: Any) -> Any:
    return value[HOLDS_LIST] if isinstance(value, dict) else value


def _holds_without_reasons(value: Any) -> Any:
    return [{**hold, "reason": HOLD_REASON_GONE} for hold in _holds_as_list(value)]


HOLDS: Final = TableSealing(
    "legal-holds",
    (_path(HOLDS_LIST, ITEMS, "reason"),),
    strip=_holds_without_reasons,
    subject=_by_key,
    pack=_holds_as_record,
    unpack=_holds_as_list,
)
"""A legal hold's reason is the DPO's free text about the claim or investigation it
serves, and names people (review, session 26)."""


# --- sealing and opening -----------------------------------------------------------------------


def personal_values(value: Json, sealing: TableSealing) -> bool:
    """Whether ``value`` holds any personal value to seal (plaintext or not)."""
    return holds_personal(sealing.pack(value), sealing.paths)


def seal(value: Json, sealing: TableSealing, subject_id: str, key: DataKey) -> Json:
    """``value`` with every personal value encrypted under ``key`` (a value sealed
    already, under a key of this subject, is left as it is)."""

    sealed: Json = map_personal(sealing.pack(value), sealing.paths, encrypting(key, subject_id))
    return sealed


def open_(value: Json, sealing: TableSealing, subject_id: str, keys: KeyLookup) -> Json | None:
    """``value`` with its personal values in plaintext; ``stripped`` of them when a key
    that sealed them is gone (``ShreddedKey``). Plaintext (written before sealing) is
    read as it is. ``TamperedField``/``MalformedField`` propagate: privops alone
    writes these values, so either is a fault to stop at, not data to drop."""

    def decrypt(label: str, item: str) -> str:
        if not item.startswith("pv1:"):
            return item
        return decrypt_field(item, subject_id, label, keys)

    try:
        opened: Json = map_personal(sealing.pack(value), sealing.paths, decrypt)
    except ShreddedKey:
        return sealing.strip(value)
    return sealing.unpack(opened)


def key_ids(value: Json, sealing: TableSealing) -> set[str]:
    """The key ids ``value``'s ciphertexts name (what a stored value can be read with)."""
    found: set[str] = set()

    def see(_label: str, item: str) -> str:
        if is_encrypted(item):
            found.add(parse_field(item)[0])
        return item

    map_personal(sealing.pack(value), sealing.paths, see)
    return found


def plaintext_left(value: Mapping[str, Any], sealing: TableSealing) -> list[str]:
    """The labels of personal values still in plaintext (should be none once sealed)."""
    labels: list[str] = []

    def see(label: str, item: str) -> str:
        if not is_encrypted(item):
            labels.append(label)
        return item

    map_personal(sealing.pack(dict(value)), sealing.paths, see)
    return labels


# --- records privops sends ------------------------------------------------------------------


R = TypeVar("R", bound=BaseModel)


def personal_values_in(datum: Mapping[str, Any], paths: tuple[PersonalPath, ...]) -> bool:
    """Whether a record (as a dict) holds any non-empty personal value on ``paths``."""
    return holds_personal(datum, paths, empty=False)


def _blank(_label: str, _item: str) -> str:
    return ""


def seal_record(
    record: R, subject_id: str, key: DataKey | None, paths: tuple[PersonalPath, ...]
) -> R:
    """``record`` (a task, a notification) with its personal values on ``paths`` sealed
    under ``key``, labelled as ``decrypt_record`` reads them; blanked (empty strings)
    when there is no key: the subject was erased and nothing of theirs is kept."""

    visit = encrypting(key, subject_id) if key is not None else _blank
    datum = map_personal(record.model_dump(mode="python"), paths, visit)
    return type(record).model_validate(datum)
