"""A command's personal values sealed by the worker's key service before it is signed.

What the DPO types about a person stays on `privacy.commands` for its retention (120
days), where a destroyed key cannot reach plaintext: a legal hold's reason, a refusal's,
a cancellation's, an answer's, an extension's, an objection decision's, a submission's
note, and a rectification's values (each field the contract marks personal). Whoever
issues commands (the CLI, `privops demo`) has them sealed by `POST
/subject-keys/{id}/seal`, asked as the DPO, under the key privops seals its own copies
of the subject under; the signature then covers the ciphertext, and the workflow opens
them after checking it. No KEK is needed for this.

A subject erased with nothing of theirs kept has no key to seal under: privops would keep
nothing of such text either (its records drop it), so it is not sent: the command
carries `personal.WITHHELD` instead (``withheld``). Nor is a key made for someone no
system has reported unless the workflow keeps their text (``new_key``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from privops.connectors.encryption import personal_fields
from privops.core.errors import DecodeError
from privops.core.fieldcrypt import is_encrypted, parse_field, split_key_id
from privops.core.personal import WITHHELD, map_personal, typed_text
from privops.core.records import Command, LegalHoldPlaced, RequestSubmitted
from privops.core.vocab import RequestType

C = TypeVar("C", bound=Command)


Seal = Callable[[str, dict[str, str], bool], dict[str, str]]
"""(subject id, field path -> plaintext, whether a key may be made) -> field path ->
ciphertext; ``NothingToSealUnder`` when there is no key to seal under."""


class NothingToSealUnder(Exception):
    """No key to seal under: the subject was erased and nothing of theirs is kept
    (``erased``), or they have none and none was to be made."""

    def __init__(self, subject_id: str, *, erased: bool) -> None:
        super().__init__(subject_id)
        self.erased = erased


def new_key(command: Command, request_type: RequestType | None) -> bool:
    """Whether sealing ``command``'s text may make its subject a key (``request_type``:
    the request it submits or follows up). Only where the workflow keeps the text for
    someone no system has reported: a legal hold (placed before any system reports them)
    and a complaint and its follow-ups (anyone may complain; the answer is their
    letter), and an access request with search details (privops.core.search: the
    footage may hold them, and the request keeps the details to look for them by).
    Anything else about such a subject is refused, or, for an access request without
    them, answered "we hold nothing" without its text; a subject privops knows has a key
    already."""
    searching = isinstance(command, RequestSubmitted) and bool(command.search)
    return (
        isinstance(command, LegalHoldPlaced) or request_type is RequestType.complaint or searching
    )


def seal_path(subject_id: str) -> str:
    """The key service's sealing call for ``subject_id``, on any worker."""
    return f"/subject-keys/{quote(subject_id, safe='')}/seal"


def seal_body(fields: Mapping[str, str], new_key: bool) -> dict[str, Any]:
    return {"fields": dict(fields), "new_key": new_key}


def plaintexts(command: Command) -> dict[str, str]:
    """The personal values of ``command`` not sealed yet, by field path; a field left at
    its default (``verify``'s method "documents") is privops' own word, not sealed."""
    found: dict[str, str] = {}

    def collect(label: str, value: str) -> str:
        if not is_encrypted(value) and typed_text(command, label, value):
            found[label] = value
        return value

    map_personal(command.model_dump(mode="python"), personal_fields(command.fullname()), collect)
    return found


def seal_command(command: C, subject_id: str, request_type: RequestType | None, seal: Seal) -> C:
    """``command`` with every personal value on its contract's marked paths replaced by
    what ``seal`` answers for it (the same object if it has none to seal);
    ``NothingToSealUnder`` from ``seal``. ``request_type``: the request it submits or
    follows up (``new_key``)."""
    plain = plaintexts(command)
    if not plain:
        return command
    sealed = seal(subject_id, plain, new_key(command, request_type))
    return _replaced(command, lambda label, value: sealed.get(label, value))


def withheld(command: C) -> C:
    """``command`` with every personal value replaced by ``WITHHELD``."""
    return _replaced(command, lambda _label, _value: WITHHELD)


def _replaced(command: C, visit: Callable[[str, str], str]) -> C:
    datum = map_personal(
        command.model_dump(mode="python"), personal_fields(command.fullname()), visit
    )
    return type(command).model_validate(datum)


def ciphertexts(answer: Any, asked: Mapping[str, str], subject_id: str) -> dict[str, str]:
    """The key service's ``fields``: one ciphertext per field asked, each under one of the
    subject's own keys; ``ValueError`` otherwise (whatever answered is not a worker of
    this version)."""
    values = list(answer.values()) if isinstance(answer, dict) else []
    if values and answer.keys() == asked.keys() and all(isinstance(v, str) for v in values):
        try:
            owners = {split_key_id(parse_field(value)[0])[0] for value in values}
        except DecodeError:  # not a ciphertext
            owners = set()
        if owners == {subject_id}:
            return dict(zip(answer.keys(), values, strict=True))
    raise ValueError(
        "the key service did not answer a ciphertext of each value under the subject's key"
    )
