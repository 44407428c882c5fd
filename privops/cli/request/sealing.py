"""The CLI's side of sealing a command's personal values (privops.tools.command_sealing
says what and why): the key service asked over HTTP with the CLI's exit codes, and what
the DPO is told when a subject has nothing left to seal under."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

import httpx
from rich.markup import escape

from privops.cli.common import EXIT_FAILED, EXIT_UNAVAILABLE, err_console, fail
from privops.cli.worker_http import answer_json, worker_request, worker_url
from privops.core.records import Command, RequestSubmitted
from privops.tools.command_sealing import (
    NothingToSealUnder,
    ciphertexts,
    seal_body,
    seal_command,
    seal_path,
    withheld,
)

RETRY_SECONDS: Final = 10.0
"""How long a 503 (a partition moving between workers) is retried."""


def sealed_commands(commands: Sequence[Command], subjects: Sequence[str]) -> list[Command]:
    """Each command with its personal values sealed under its subject's key (through the
    worker's key service); exit 3 if the worker does not answer, 1 for a rectification
    of an erased subject. Text about a subject with nothing left to seal under is not
    sent, and the DPO is told."""
    out: list[Command] = []
    for command, subject in zip(commands, subjects, strict=True):
        try:
            out.append(seal_command(command, subject, key_service_seal))
        except NothingToSealUnder as exc:
            if isinstance(command, RequestSubmitted) and command.rectification:
                fail(
                    "the subject was erased: there is nothing of theirs left to rectify",
                    EXIT_FAILED,
                )
            why = (
                "was erased and privops keeps nothing of theirs"
                if exc.erased
                else "has no key at privops (no system has reported personal data of theirs)"
            )
            err_console.print(
                f"[yellow]![/] {escape(subject)} {why}: the text of this "
                f"{type(command).__name__} is not sent (it would stay readable on "
                "privacy.commands for its retention); keep it in your own case file",
                highlight=False,
            )
            out.append(withheld(command))
    return out


def key_service_seal(subject_id: str, fields: dict[str, str], new_key: bool) -> dict[str, str]:
    """``Seal`` through the worker's key service, asked as the CLI's principal; a 503 is
    retried for up to ``RETRY_SECONDS``."""
    deadline = time.monotonic() + RETRY_SECONDS
    delay = 0.25
    while True:
        resp = worker_request("POST", seal_path(subject_id), body=seal_body(fields, new_key))
        if resp.status_code != 503 or time.monotonic() + delay > deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    if resp.status_code == 410 or (resp.status_code == 404 and not new_key and _said_no_key(resp)):
        raise NothingToSealUnder(subject_id, erased=resp.status_code == 410)
    body = answer_json(
        resp,
        not_found=f"the privops worker at {worker_url('')} does not seal values: it is older "
        "than this CLI; upgrade it first",
        not_found_exit=EXIT_UNAVAILABLE,
    )
    try:
        return ciphertexts(body.get("fields"), fields, subject_id)
    except ValueError as exc:
        fail(
            f"the privops worker at {worker_url('')}: {exc}; is it the same privops version "
            "as this CLI?",
            EXIT_UNAVAILABLE,
        )


def _said_no_key(resp: httpx.Response) -> bool:
    """Whether a 404 is the key service's "no key" (an older worker's is "not found")."""
    try:
        body = resp.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("error") == "no key"
