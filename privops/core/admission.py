"""What the request workflow checks before a record may touch a request.

Four checks that hold whatever the request's state: the record came from the topic its
type belongs on (`admit_workflow`), the command is signed by a trusted key of the actor
it names (`authenticate`), the command names its actor as a principal and its request by
a plain id (`check_names`), and its dates are in order and not in the future
(`check_dates`).
They run before any decision, so a command that fails one is rejected with nothing
stored, sent or notified (DESIGN.md section 8).

Names: the audit keeps the actor and the request id for ten years and refuses anything
shaped like contact details, so an email address as actor once crashed the workflow
after it had already stored the request and sent a task. A principal name (`dpo`,
`system-crm`, `privops-scheduler`) is what the actor must be; anything else is refused
up front, never echoed back, and audited under a placeholder. A request id also names
its audit chain, so one that names a subject's chain or the system chain is refused too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any, Final

from privops.core import records as r
from privops.core.audit import SYSTEM_CHAIN
from privops.core.errors import DecodeError, WrongTopic
from privops.core.facts import MAX_CLOCK_SKEW
from privops.core.identity import SUBJECT_REF_PREFIX
from privops.core.pii import REDACT_CHARS, recorded_as_contact, redact
from privops.core.request import FOLLOWUP_ACTOR, Reason, Refused, RequestRecord
from privops.core.signing import SignatureInvalid, Signers
from privops.core.topics import COMMANDS, REQUEST_TICKS, system_of_results_topic

WorkflowInput = r.Command | r.TaskResult | r.RequestTick
"""What the request workflow acts on."""


def admit_workflow(topic: str, record: r.Record) -> WorkflowInput:
    """`record` if the workflow may act on it having read it from `topic`.

    Raises WrongTopic otherwise: the topic's ACL, not the record's type, says who wrote
    it, so a command on a results topic is a system (or an attacker) issuing commands, and
    an answer counts only on the results topic of the system it answers for.
    """
    if topic == COMMANDS and isinstance(record, r.Command):
        return record
    answering = system_of_results_topic(topic)
    if answering is not None and isinstance(record, r.TaskResult):
        if record.system is not answering:
            # Only <system>'s principal writes privacy.task-results.<system>: an answer
            # claiming another system is that system's word put in someone else's mouth.
            raise WrongTopic(
                f"{type(record).__name__} does not belong on {topic} "
                f"(it answers for {record.system.value})"
            )
        return checked_answer(record)
    if topic == REQUEST_TICKS and isinstance(record, r.RequestTick):
        return record
    raise WrongTopic(f"{type(record).__name__} does not belong on {topic}")


MAX_ANSWER_REASON_CHARS: Final = 500
"""The most of an answer's reason privops keeps (redacted first: a reason is for people,
and a connector should never put contact details in it)."""


def checked_answer(result: r.TaskResult) -> r.TaskResult:
    """An answer whose ids privops could have written, its reason cut to
    ``MAX_ANSWER_REASON_CHARS`` (redacted before it is cut, so the cut leaves no part of an
    address or number): an id privops never made answers no task, and would go into the
    audit as it is (an email-shaped one once stopped the worker); a reason of a megabyte
    would be kept in the request record and copied into its audit.

    Raises ``DecodeError`` (``invalid_record``: a dead letter) for an id that is not a
    plain id; the text names no value."""
    if not _is_task_id(result.task_id, result.request_id):
        raise DecodeError(
            "invalid_record",
            f"{type(result).__name__}: the task and request ids must be the task's own "
            "(the request id: letters, digits, '.', '_', ':' or '-', at most "
            f"{MAX_ID_LENGTH} characters; the task id: the request id, ':', its system "
            "and action)",
        )
    reason = getattr(result, "reason", None)
    if isinstance(reason, str) and len(reason) > MAX_ANSWER_REASON_CHARS:
        kept = redact(reason[:REDACT_CHARS])[:MAX_ANSWER_REASON_CHARS]
        return result.model_copy(update={"reason": kept})
    return result


# --- signature ----------------------------------------------------------------------------

UNAUTHENTICATED: Final = "unauthenticated"
"""Who the audit names for a command whose signature proves nothing: not its claimed actor."""


def authenticate(cmd: r.Command, signers: Signers, deployment: str) -> str:
    """The principal whose trusted key signed `cmd` for `deployment` (the Kafka
    cluster's id): the actor the audit names.

    A command naming one actor but signed with another's key is refused rather than
    re-attributed: what was signed says who the signer claimed to be, and quietly
    auditing someone else would hide a borrowed key file or a misconfigured CLI. The
    worker's own follow-ups are signed for no deployment (any worker, of any version, on
    any cluster id, takes them): the workflow acts on one only as the follow-up its
    request issued.
    """
    try:
        signer = signers.verify(cmd, deployment, unbound_ok=cmd.actor == FOLLOWUP_ACTOR)
    except SignatureInvalid as exc:
        raise Refused(Reason(exc.problem.value), exc.message) from exc
    if signer.owner != cmd.actor:
        raise Refused(
            Reason.signer_mismatch,
            f"the command is signed with key {signer.key_id}, which belongs to another "
            "principal than its actor (see `privops keys list`)",
        )
    return signer.owner


# --- names --------------------------------------------------------------------------------

MAX_ACTOR_LENGTH: Final = 64
MAX_ID_LENGTH: Final = 128
_PRINCIPAL: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
INVALID_ACTOR: Final = "invalid-actor"
"""Who the audit names when a command's actor is not a principal name."""


def is_principal_name(actor: str) -> bool:
    return (
        len(actor) <= MAX_ACTOR_LENGTH
        and _PRINCIPAL.fullmatch(actor) is not None
        and not recorded_as_contact(actor)
    )


def is_plain_id(value: str) -> bool:
    """An id the audit can keep as it is (a digits-only id may look like a phone number)."""
    return (
        len(value) <= MAX_ID_LENGTH
        and _ID.fullmatch(value) is not None
        and not recorded_as_contact(value)
    )


_TASK_SUFFIX_CHARS: Final = 64


def _is_task_id(task_id: str, request_id: str) -> bool:
    """Whether ``task_id`` could be a task of ``request_id`` (``retries.make_task_id``:
    the request id, then ":<system>:<action>"), both plain ids."""
    return (
        is_plain_id(request_id)
        and task_id.startswith(request_id + ":")
        and len(task_id) <= len(request_id) + _TASK_SUFFIX_CHARS
        and _ID.fullmatch(task_id) is not None
        and not recorded_as_contact(task_id)
    )


def names_another_chain(request_id: str) -> bool:
    """Whether ``request_id`` is, or could be, the name of an audit chain that is not a
    request's: a request's steps chain under its id (``audit.chain_key``), a subject's
    under their ref (``sr_`` and 24 hex digits), the rest under ``privops``. A request
    named like one would append its steps to that chain: the DPO could interleave
    steps into a subject's trail or the system chain (review, session 34). Any case, any
    ``sr_`` id: what is refused must be easy to say."""
    lowered = request_id.lower()
    return lowered == SYSTEM_CHAIN or lowered.startswith(SUBJECT_REF_PREFIX)


def check_names(cmd: r.Command) -> None:
    """The actor and the request id go into the ten-year audit as they are, the request
    id as its chain's name: refuse others."""
    if not is_principal_name(cmd.actor):
        raise Refused(
            Reason.invalid_command,
            "the actor must be a principal name (letters, digits, '.', '_' or '-', at most "
            f"{MAX_ACTOR_LENGTH} characters), not an email address or a person's name",
        )
    if not is_plain_id(cmd.request_id):
        raise Refused(
            Reason.invalid_command,
            "the request id must be letters, digits, '.', '_', ':' or '-' (at most "
            f"{MAX_ID_LENGTH} characters), not contact details",
        )
    # Only a new id: a request stored before the rule came (or the follow-up erasure the
    # worker issues for it, ``<id>-F1``) must still take its commands; its steps are
    # audited apart already (``audited_request_id``; second review, session 34).
    new_id = isinstance(cmd, r.RequestSubmitted | r.LegalHoldPlaced) and cmd.actor != FOLLOWUP_ACTOR
    if new_id and names_another_chain(cmd.request_id):
        raise Refused(
            Reason.invalid_command,
            f"the request id may not be {SYSTEM_CHAIN!r} or start with "
            f"{SUBJECT_REF_PREFIX!r} (in any case): those name the audit's system and "
            "subject chains; use the CLI's REQ-... ids",
        )


def audited_actor(actor: str) -> str:
    """The actor to audit: never a value the audit would refuse or should not keep."""
    return actor if is_principal_name(actor) else INVALID_ACTOR


def audited_request_id(request_id: str) -> str | None:
    """The request id to audit under; an unusable one is left out (the subject's chain,
    else the system chain): one the audit should not keep, or one naming another chain
    (``names_another_chain``: a request stored before those were refused)."""
    usable = is_plain_id(request_id) and not names_another_chain(request_id)
    return request_id if usable else None


# --- dates --------------------------------------------------------------------------------

Order = tuple[str, date | None, str, date | None]
"""(name, day, later name, later day): the first day may not come after the second."""

_RECEIVED = "the request's received_on"


def _submitted(cmd: r.RequestSubmitted, _rec: RequestRecord | None) -> list[Order]:
    """Identity information may predate the request (a signed-in customer's, checked
    before they asked): the clock then starts on receipt (``deadlines.clock_start``).
    Refused here, the DPO was left to give no information day, and the clock ran from
    the check, later than the law's (legal review, session 43)."""
    received = ("received_on", cmd.received_on)
    return [
        (*received, "identity_verified_on", cmd.identity_verified_on),
        (
            "identity_received_on",
            cmd.identity_received_on,
            "identity_verified_on",
            cmd.identity_verified_on,
        ),
        (*received, "authority_received_on", cmd.authority_received_on),
    ]


def _verified(cmd: r.IdentityVerified, rec: RequestRecord | None) -> list[Order]:
    if rec is None:
        return []
    information = cmd.information_received_on or rec.identity_received_on
    return [  # information before receipt is taken (``_submitted``)
        (_RECEIVED, rec.received_on, "verified_on", cmd.verified_on),
        ("information_received_on", information, "verified_on", cmd.verified_on),
    ]


def _authority(cmd: r.AuthorityReceived, rec: RequestRecord | None) -> list[Order]:
    """The evidence for a request arrives with it or after it (a standing power of
    attorney on file is recorded as received with the request)."""
    if rec is None:
        return []
    return [(_RECEIVED, rec.received_on, "received_on", cmd.received_on)]


def _approved(cmd: r.AccessResponseApproved, rec: RequestRecord | None) -> list[Order]:
    if rec is None:
        return []
    return [(_RECEIVED, rec.received_on, "transmitted_on", cmd.transmitted_on)]


_ORDERS: Final[dict[type[r.Command], Callable[[Any, RequestRecord | None], list[Order]]]] = {
    r.RequestSubmitted: _submitted,
    r.IdentityVerified: _verified,
    r.AuthorityReceived: _authority,
    r.AccessResponseApproved: _approved,
}


def _days(cmd: r.Command) -> Iterator[tuple[str, date]]:
    """The days the DPO states in the command.

    Not `issued_at`: the CLI's machine clock sets it, and a worker's clock may be
    shifted for demos and deadline tests (settings.clock_offset_days).
    """
    for name, value in cmd:
        if isinstance(value, date) and not isinstance(value, datetime):
            yield name, value


MAX_COMMAND_AGE: Final = timedelta(days=14)
"""How long after it was signed a command that its request has not seen is acted on."""


def check_fresh(cmd: r.Command, now: datetime) -> None:
    """Refuse a command signed more than ``MAX_COMMAND_AGE`` ago that its request has not
    answered: a request remembers only its last answers (``MAX_REMEMBERED_ANSWERS``),
    and the partition the answers no request keeps only that long
    (``workflow.CommandAnswers``), so an old signed command put on the topic again (by
    anyone who may write it) would otherwise be acted on twice: a clarification asked
    again, a deadline moved again, a released hold placed again. A redelivery is
    answered from memory before this check; a command that waited this long is issued
    again.

    One dated more than ``MAX_CLOCK_SKEW`` ahead of ``now`` is refused too: its window
    would not even have started, so it could be put on the topic again for as long as
    its date lies ahead, and fourteen days after that."""
    ahead = cmd.issued_at - now
    if ahead > MAX_CLOCK_SKEW:
        raise Refused(
            Reason.invalid_command,
            f"the command is dated {int(ahead.total_seconds() // 60)} minutes ahead of "
            f"privops' clock (at most {int(MAX_CLOCK_SKEW.total_seconds() // 60)} "
            "allowed): check the signing machine's clock, then issue it again",
        )
    if now - cmd.issued_at > MAX_COMMAND_AGE:
        raise Refused(
            Reason.invalid_command,
            f"the command was signed more than {MAX_COMMAND_AGE.days} days ago and is not "
            "acted on (a replay?): issue it again if it is still wanted",
        )


def check_dates(cmd: r.Command, rec: RequestRecord | None, today: date) -> None:
    """Refuse a command dated after `today` or whose days contradict each other or the request.

    A day in the future cannot have happened yet; an identity checked before the request
    arrived, or information received after the check it fed, is a typing mistake that
    would otherwise move the legal deadline silently.
    """
    for name, day in _days(cmd):
        if day > today:
            raise Refused(Reason.dates_out_of_order, f"{name} {day} is after today ({today})")
    orders = _ORDERS.get(type(cmd))
    for first, first_day, then, then_day in orders(cmd, rec) if orders else []:
        if first_day is not None and then_day is not None and then_day < first_day:
            raise Refused(
                Reason.dates_out_of_order, f"{then} {then_day} is earlier than {first} {first_day}"
            )
