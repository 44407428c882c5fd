"""The CLI's side of sealing a command's personal values (privops.tools.command_sealing
says what and why): the key service asked over HTTP with the CLI's exit codes, and what
the DPO is told when there is no key to seal under."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

import httpx
from rich.markup import escape

from privops.cli.common import EXIT_FAILED, EXIT_UNAVAILABLE, err_console, fail
from privops.cli.worker_http import answer_json, json_or_none, worker_request, worker_url
from privops.core.records import (
    AccessResponseApproved,
    Command,
    DeadlineExtended,
    ExportRedacted,
    ObjectionDecided,
    RequestAnswered,
    RequestRefused,
    RequestSubmitted,
)
from privops.core.vocab import RequestType
from privops.tools.command_sealing import (
    NothingToSealUnder,
    ciphertexts,
    seal_body,
    seal_command,
    seal_path,
    withheld,
)

SEALING: Final = (
    "the command's text is sealed by the privops worker before it is sent, and nothing was sent"
)
TOLD_TO_THE_SUBJECT: Final = (
    RequestAnswered,
    RequestRefused,
    DeadlineExtended,
    ObjectionDecided,
    AccessResponseApproved,
)
"""Commands whose text the subject is told (through privacy.notifications)."""


class Addressed(NamedTuple):
    """Whose a command is: the subject id it travels under, and the type of the request
    it submits or follows up (None for a legal hold, which belongs to no request)."""

    subject_id: str
    request_type: RequestType | None


def sealed_commands(commands: Sequence[Command], whose: Sequence[Addressed]) -> list[Command]:
    """Each command with its personal values sealed under its subject's key (through the
    worker's key service); exit 3 if the worker does not answer, 1 for a rectification
    or a search of an erased subject. Text with no key to seal it under is not sent, and the DPO is
    told."""
    out: list[Command] = []
    for command, (subject, kind) in zip(commands, whose, strict=True):
        try:
            out.append(seal_command(command, subject, kind, key_service_seal))
        except NothingToSealUnder as exc:
            if isinstance(command, RequestSubmitted) and command.rectification:
                fail(
                    "the subject was erased: there is nothing of theirs left to rectify"
                    if exc.erased
                    else "privops holds no key for the subject (no system has reported "
                    "personal data of theirs): there is nothing of theirs to rectify",
                    EXIT_FAILED,
                )
            if isinstance(command, RequestSubmitted) and command.search:
                # A key is made for anyone else (``new_key``); an erased subject's key
                # is gone for good, and the details would reach the worker unreadable.
                fail(
                    "the subject was erased and privops keeps nothing of theirs: search "
                    "details cannot be sealed for them; submit the access request under a "
                    "new subject id",
                    EXIT_FAILED,
                )
            if isinstance(command, ExportRedacted):
                fail(
                    "the subject was erased: their copies went with them, and no redacted "
                    "copy can be sealed for them; approve the response without it "
                    "(privops request approve ID --withhold SYSTEM --reason ...)"
                    if exc.erased
                    else "privops holds no key for the subject: a redacted copy cannot be "
                    "sealed for them",
                    EXIT_FAILED,
                )
            _say_withheld(command, subject, erased=exc.erased)
            out.append(withheld(command))
    return out


def _say_withheld(command: Command, subject: str, *, erased: bool) -> None:
    why = (
        "was erased and privops keeps nothing of theirs"
        if erased
        else "has no key at privops (no system has reported personal data of theirs), and "
        "privops keeps no such text about them"
    )
    told = (
        "; it does not reach the subject either: send it to them yourself"
        if isinstance(command, TOLD_TO_THE_SUBJECT)
        else ""
    )
    err_console.print(
        f"[yellow]![/] {escape(subject)} {why}: the text you gave is not sent (it would "
        "stay readable on privacy.commands for its retention); keep it in your own case "
        f"file{told}",
        highlight=False,
    )


def key_service_seal(subject_id: str, fields: dict[str, str], new_key: bool) -> dict[str, str]:
    """``Seal`` through the worker's key service, asked as the CLI's principal; a 503 is
    asked again for a while (``worker_request``, patient)."""
    resp = worker_request(
        "POST",
        seal_path(subject_id),
        body=seal_body(fields, new_key),
        needed_for=SEALING,
        patient=True,
    )
    if resp.status_code == 410 or (resp.status_code == 404 and _said_no_key(resp)):
        raise NothingToSealUnder(subject_id, erased=resp.status_code == 410)
    body = answer_json(
        resp,
        no_route=f"the privops worker at {worker_url('')} does not seal values: it is older "
        f"than this CLI; upgrade it first ({SEALING})",
    )
    try:
        return ciphertexts(body.get("fields"), fields, subject_id)
    except ValueError as exc:
        fail(
            f"the privops worker at {worker_url('')}: {exc}; is it the same privops version "
            f"as this CLI? ({SEALING})",
            EXIT_UNAVAILABLE,
        )


def _said_no_key(resp: httpx.Response) -> bool:
    """Whether a 404 is the key service's "no key" (an older worker's is "not found")."""
    body = json_or_none(resp)
    return body is not None and body.get("error") == "no key"
