"""A command's personal values sealed before it goes on `privacy.commands`.

What the DPO types about a person stays on `privacy.commands` for its retention (120
days), where a destroyed key cannot reach plaintext: a legal hold's reason, a refusal's,
a cancellation's, an answer's, an extension's, an objection decision's, a submission's
note, and a rectification's values (each field the contract marks personal). So the CLI
has them sealed by the worker's key service (`POST /subject-keys/{id}/seal`, as the DPO's
principal) under the key privops seals its own copies of the subject under, and the
signature covers the ciphertext; the workflow opens them after checking it. The CLI
needs no KEK for this.

A subject erased with nothing of theirs kept has no key to seal under: privops would
keep nothing of such text either (its records drop it), so a reason is not sent (the
command carries `WITHHELD`, and the DPO is told to keep it in their own case file),
and a rectification is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar
from urllib.parse import quote

from rich.markup import escape

from privops.cli.common import EXIT_FAILED, EXIT_UNAVAILABLE, err_console, fail
from privops.cli.worker_http import answer_json, worker_request, worker_url
from privops.connectors.encryption import personal_fields
from privops.core.errors import DecodeError
from privops.core.fieldcrypt import is_encrypted, parse_field, split_key_id
from privops.core.personal import map_personal
from privops.core.records import Command, RequestSubmitted

C = TypeVar("C", bound=Command)

WITHHELD: Final = "(withheld: the subject was erased and privops keeps nothing of theirs)"
"""What a command carries in place of free text about a subject with nothing left to seal
it under."""
RETRY_SECONDS: Final = 10.0
"""How long a 503 (a partition moving between workers) is retried."""

Seal = Callable[[str, dict[str, str]], dict[str, str] | None]
"""(subject id, field path -> plaintext) -> field path -> ciphertext, or None when the
subject was erased and nothing of theirs is kept."""


class SubjectErased(Exception):
    """Nothing of the subject is kept: nothing can be sealed for them."""


def sealed_commands(commands: Sequence[Command], subjects: Sequence[str]) -> list[Command]:
    """Each command with its personal values sealed under its subject's key (through the
    worker's key service); exit 3 if the worker does not answer, 1 for a rectification
    of an erased subject."""
    out: list[Command] = []
    for command, subject in zip(commands, subjects, strict=True):
        try:
            out.append(seal_command(command, subject, key_service_seal))
        except SubjectErased:
            if isinstance(command, RequestSubmitted) and command.rectification:
                fail(
                    "the subject was erased: there is nothing of theirs left to rectify",
                    EXIT_FAILED,
                )
            err_console.print(
                f"[yellow]![/] {escape(subject)} was erased and privops keeps nothing of "
                f"theirs: the text of this {type(command).__name__} is not sent (it would "
                "stay readable on privacy.commands for its retention); keep it in your own "
                "case file",
                highlight=False,
            )
            out.append(withheld(command))
    return out


def seal_command(command: C, subject_id: str, seal: Seal) -> C:
    """``command`` with every personal value on its contract's marked paths replaced by
    what ``seal`` answers for it (the same object if it has none); ``SubjectErased`` when
    ``seal`` says nothing is kept of the subject."""
    paths = personal_fields(command.fullname())
    datum = command.model_dump(mode="python")
    plain: dict[str, str] = {}

    def collect(label: str, value: str) -> str:
        if not is_encrypted(value):
            plain[label] = value
        return value

    map_personal(datum, paths, collect)
    if not plain:
        return command
    sealed = seal(subject_id, plain)
    if sealed is None:
        raise SubjectErased(subject_id)
    return type(command).model_validate(
        map_personal(datum, paths, lambda label, value: sealed.get(label, value))
    )


def withheld(command: C) -> C:
    """``command`` with every personal value replaced by ``WITHHELD``."""
    paths = personal_fields(command.fullname())
    datum = map_personal(command.model_dump(mode="python"), paths, lambda _l, _v: WITHHELD)
    return type(command).model_validate(datum)


def key_service_seal(subject_id: str, fields: dict[str, str]) -> dict[str, str] | None:
    """``Seal`` through the worker's key service, asked as the CLI's principal; a 503 is
    retried for up to ``RETRY_SECONDS``."""
    path = f"/subject-keys/{quote(subject_id, safe='')}/seal"
    deadline = time.monotonic() + RETRY_SECONDS
    delay = 0.25
    while True:
        resp = worker_request("POST", path, body={"fields": fields})
        if resp.status_code != 503 or time.monotonic() + delay > deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    if resp.status_code == 410:
        return None
    body = answer_json(
        resp,
        not_found=f"the privops worker at {worker_url('')} does not seal values: it is older "
        "than this CLI; upgrade it first",
        not_found_exit=EXIT_UNAVAILABLE,
    )
    return _checked(body.get("fields"), fields, subject_id)


def _checked(answer: Any, asked: dict[str, str], subject_id: str) -> dict[str, str]:
    """The service's ciphertexts, one per field asked and under the subject's own key;
    exit 3 otherwise (whatever answered is not a worker of this version)."""
    values = list(answer.values()) if isinstance(answer, dict) else []
    if values and answer.keys() == asked.keys() and all(isinstance(v, str) for v in values):
        try:
            owners = {split_key_id(parse_field(value)[0])[0] for value in values}
        except DecodeError:  # not a ciphertext
            owners = set()
        if owners == {subject_id}:
            return dict(zip(answer.keys(), values, strict=True))
    fail(
        f"the privops worker at {worker_url('')} answered the seal without a ciphertext of "
        "each value under the subject's key: is it the same privops version as this CLI?",
        EXIT_UNAVAILABLE,
    )
