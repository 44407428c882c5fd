"""What the worker's answer to a command means for the DPO: an exit code and words.

Pure, so every case is a table test. The worker answers each command on
privacy.command-results with CommandAccepted or CommandRejected(reason code); the CLI
exits 0 accepted, 1 rejected, 4 when the request or subject is unknown, and 3 when no
answer came in time (DESIGN.md section 6). Reason codes are the workflow's; one this
table does not know yet is still shown, with the worker's own message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from privops.cli.common import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_UNAVAILABLE
from privops.core.records import (
    Command,
    CommandAccepted,
    CommandAnswer,
    CommandRejected,
    LegalHoldReleased,
    RequestSubmitted,
)
from privops.core.topics import COMMAND_RESULTS

REASONS: dict[str, str] = {
    "unknown_request": "the worker knows no request with this id",
    "unknown_subject": "no system has reported this subject, so there is nothing to act on",
    "duplicate": "this request id was already submitted",
    "invalid_command": "the command is not valid",
    "invalid_transition": "the request's current state does not allow it",
    "unknown_task": "the worker knows no such task",
    "not_restricted": "the restriction named is not in force, or the subject has none to lift",
    "restriction_not_named": "the subject has several restrictions in force: name the one "
    "this lift ends with --restriction REQUEST_ID",
    "already_extended": "the deadline was already extended; an extension is allowed once",
    "request_finished": "the request is already finished (completed, refused or cancelled)",
    "dates_out_of_order": "the dates are out of order",
    "unsigned": "the command carries no signature (privops keys generate)",
    "unknown_signer": "the worker does not trust the signing key (is it in its signers file?)",
    "revoked_key": "the signing key was revoked",
    "bad_signature": "the signature does not match the command as signed for the worker's "
    "Kafka cluster (changed on the way, signed for another cluster, or the worker is older "
    "than this CLI: upgrade it)",
    "unbound_signature": "it was signed by an older privops CLI, for no Kafka cluster: "
    "upgrade the CLI to the worker's version and run the command again",
    "signer_mismatch": "the signing key belongs to someone other than the command's actor",
    "wrong_key": "the command was not keyed by its subject's id (use `privops request`)",
}
"""Reason codes in words; the code itself is always shown beside them."""

NOT_FOUND_REASONS = frozenset({"unknown_request", "unknown_subject"})

_COPY_TOO = (
    "a copy of this command put on the topic by someone else draws this answer too, and "
    "this CLI waited its whole --wait for another: check `privops request status ID` "
    "before sending it again"
)
_HINTS = {
    "unknown_request": "check the id (`privops audit show ID` lists what happened to it)",
    "unknown_subject": "check the subject id as the business systems know it",
    # The answers given before a command is decided (reader.PROVISIONAL) that this CLI's
    # own command cannot draw by itself (review, session 44).
    "wrong_key": f"this CLI keys every command by its subject; {_COPY_TOO}",
    "bad_signature": _COPY_TOO,
}


class Outcome(StrEnum):
    accepted = "accepted"
    rejected = "rejected"
    no_answer = "no_answer"
    not_waited = "not_waited"


@dataclass(frozen=True)
class Verdict:
    """One command's outcome as the CLI reports it: `text` is plain (no markup)."""

    outcome: Outcome
    exit_code: int
    text: str
    answer: CommandAnswer | None = None

    def as_json(self) -> dict[str, Any]:
        answer = self.answer
        return {
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            "message": self.text,
            "reason": answer.reason if isinstance(answer, CommandRejected) else None,
            "request_state": answer.request_state.value
            if answer and answer.request_state
            else None,
            "due_on": answer.due_on.isoformat() if answer and answer.due_on else None,
        }


def reason_words(code: str) -> str:
    return REASONS.get(code, "the worker refused it")


def judge(
    command: Command, answer: CommandAnswer | None, *, wait: float | None, bootstrap: str
) -> Verdict:
    """The verdict on `command` given the answer read (None: none came or none was awaited).

    `wait` is how long the CLI waited (None: --no-wait); `bootstrap` is the broker address
    named when no answer came, since a CLI and a worker on different brokers is the usual
    cause.
    """
    if wait is None:
        return Verdict(
            Outcome.not_waited,
            0,
            "--no-wait: the worker's answer is not awaited; `privops request status` (a "
            "legal hold: `privops request hold list`) shows whether it was applied",
        )
    if answer is None:
        return Verdict(
            Outcome.no_answer,
            EXIT_UNAVAILABLE,
            f"no answer from the worker to {_what(command)} within {wait:g} s on "
            f"{COMMAND_RESULTS} (the command was published and may still be applied). Check "
            "that a privops worker is running (`privops worker`, or `privops demo --keep`), "
            "that Kafka is up (`privops local status`), and that the worker uses the same "
            f"bootstrap address as this CLI ({bootstrap}, PRIVOPS_KAFKA_BOOTSTRAP); "
            "or wait longer with --wait SECONDS.",
        )
    if isinstance(answer, CommandAccepted):
        return Verdict(Outcome.accepted, 0, _accepted(answer), answer)
    if isinstance(answer, CommandRejected):
        return _rejected(command, answer)
    raise TypeError(f"not a command answer: {type(answer).__name__}")


def _what(command: Command) -> str:
    if isinstance(command, RequestSubmitted):
        return f"{command.request_type.value} request {command.request_id}"
    return f"{type(command).__name__} for {command.request_id}"


def _accepted(answer: CommandAccepted) -> str:
    parts = ["accepted"]
    if answer.request_state is not None:
        parts.append(f"state {answer.request_state.value}")
    if answer.due_on is not None:
        parts.append(f"due {answer.due_on.isoformat()}")
    text = ", ".join(parts)
    return f"{text} ({answer.message})" if answer.message else text


def _rejected(command: Command, answer: CommandRejected) -> Verdict:
    code = EXIT_NOT_FOUND if answer.reason in NOT_FOUND_REASONS else EXIT_FAILED
    words = reason_words(answer.reason)
    hint = _HINTS.get(answer.reason)
    unknown_hold = False
    if isinstance(command, LegalHoldReleased) and answer.reason == "unknown_request":
        unknown_hold = True
        # No request is involved: the hold is not active on the subject given (often the
        # wrong --subject: review, session 43).
        words = f"the subject {command.subject_id} has no active hold with this id"
        hint = f"`privops request hold list --subject {command.subject_id}` lists their holds"
    text = f"{_what(command)} rejected: {words} [{answer.reason}]"
    if answer.message and not unknown_hold and answer.message.lower() not in words.lower():
        text += f": {answer.message}"
    if answer.request_state is not None:
        text += f" (request state: {answer.request_state.value})"
    if hint:
        text += f"; {hint}"
    return Verdict(Outcome.rejected, code, text, answer)


_SEVERITY = {0: 0, EXIT_FAILED: 1, EXIT_NOT_FOUND: 2, EXIT_UNAVAILABLE: 3}


def exit_code(verdicts: Iterable[Verdict]) -> int:
    """One exit code for several commands (a complaint with its restriction): the gravest.

    No answer outranks a rejection (nothing is known), and an unknown id outranks a plain
    refusal (the likelier typo).
    """
    return max((v.exit_code for v in verdicts), key=_SEVERITY.__getitem__, default=0)
