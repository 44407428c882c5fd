"""The follow-up verbs: what happens to a request after it is submitted.

Identity verified, fee received, clarification asked and received, extension, answer,
cancellation, refusal, objection decided: one command each, keyed by the request id.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import typer

from privops.cli.common import Json, check_id, fail, parse_date, uk_today
from privops.cli.request.options import Actor, On, RequestId
from privops.cli.request.publish import actor_name, envelope, publish_one, required_reason
from privops.core.records import (
    ClarificationReceived,
    ClarificationRequested,
    Command,
    DeadlineExtended,
    FeeReceived,
    IdentityVerified,
    ObjectionDecided,
    RequestAnswered,
    RequestCancelled,
    RequestRefused,
)


def _day(value: str | None, option: str = "--on") -> date:
    return parse_date(value, option) if value else uk_today()


def _send(
    kind: type[Command], rid: str, actor: str | None, as_json: bool, done: str, **fields: Any
) -> None:
    """Publish a follow-up for a checked request id; `done` is said after the id."""
    publish_one(kind(**envelope(rid, actor_name(actor)), **fields), as_json, f"{rid}: {done}")


def verify(
    request_id: RequestId,
    on: On = None,
    method: str = typer.Option("documents", "--method", help="How identity was verified."),
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Record that the subject's identity was verified: the one-month clock starts."""
    rid = check_id(request_id)
    day = _day(on)
    done = f"identity verified on {day}"
    _send(IdentityVerified, rid, actor, as_json, done, verified_on=day, method=method)


def fee_received(
    request_id: RequestId, on: On = None, actor: Actor = None, as_json: Json = False
) -> None:
    """Record a fee received (manifestly unfounded/excessive requests, extra copies)."""
    rid = check_id(request_id)
    day = _day(on)
    _send(FeeReceived, rid, actor, as_json, f"fee received on {day}", received_on=day)


def clarify(
    request_id: RequestId,
    asked: str | None = typer.Option(
        None, "--asked", help="Date clarification was asked, YYYY-MM-DD (default: today, UK)."
    ),
    question_ref: str | None = typer.Option(
        None, "--question-ref", help="Reference of the letter or message asking."
    ),
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Ask the subject to clarify (Art. 12A): the clock pauses until the answer arrives."""
    rid = check_id(request_id)
    day = _day(asked, "--asked")
    done = f"clarification asked on {day}; clock paused"
    _send(
        ClarificationRequested, rid, actor, as_json, done, asked_on=day, question_ref=question_ref
    )


def clarified(
    request_id: RequestId, on: On = None, actor: Actor = None, as_json: Json = False
) -> None:
    """Record the subject's clarification: the clock runs again."""
    rid = check_id(request_id)
    day = _day(on)
    done = f"clarification received on {day}; clock running"
    _send(ClarificationReceived, rid, actor, as_json, done, received_on=day)


def extend(
    request_id: RequestId,
    reason: str = typer.Option(
        ..., "--reason", help="Why (complex or numerous requests); told to the subject."
    ),
    notified: str | None = typer.Option(
        None,
        "--notified",
        help="Date the subject was told of the extension, YYYY-MM-DD (default: today, UK).",
    ),
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Extend the deadline by two months (only within the first month, with a reason)."""
    rid = check_id(request_id)
    text = required_reason(reason)
    day = _day(notified, "--notified")
    done = f"extension requested, subject notified {day}"
    _send(DeadlineExtended, rid, actor, as_json, done, reason=text, notified_on=day)


def _closing_verb(
    kind: type[Command], reason_help: str, done: str, doc: str
) -> Callable[..., None]:
    """A verb that ends a request with a reason and nothing else (answer, cancel, refuse)."""

    def verb(
        request_id: RequestId,
        reason: str = typer.Option(..., "--reason", help=reason_help),
        actor: Actor = None,
        as_json: Json = False,
    ) -> None:
        rid = check_id(request_id)
        text = required_reason(reason)
        _send(kind, rid, actor, as_json, done, reason=text)

    verb.__doc__ = doc
    return verb


def decide_objection(
    request_id: str = typer.Argument(..., help="The objection request id (REQ-...)."),
    accept: bool | None = typer.Option(
        None,
        "--accept/--refuse",
        help="Uphold the objection, or refuse it (compelling legitimate grounds).",
    ),
    reason: str = typer.Option(..., "--reason", help="The grounds for the decision."),
    actor: Actor = None,
    as_json: Json = False,
) -> None:
    """Decide a legitimate-interest objection (Art. 21(1))."""
    rid = check_id(request_id)
    if accept is None:
        fail("say --accept or --refuse")
    text = required_reason(reason)
    done = f"objection {'upheld' if accept else 'refused'}"
    _send(ObjectionDecided, rid, actor, as_json, done, accepted=accept, reason=text)


VERBS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("verify", verify),
    ("fee-received", fee_received),
    ("clarify", clarify),
    ("clarified", clarified),
    ("extend", extend),
    (
        "answer",
        _closing_verb(
            RequestAnswered,
            "The answer given to the subject (e.g. a complaint's outcome).",
            "answered",
            "Close a request that needs no system work, such as a complaint, with its answer.",
        ),
    ),
    (
        "cancel",
        _closing_verb(
            RequestCancelled,
            "Why the request is cancelled.",
            "cancellation submitted",
            "Cancel a request (e.g. withdrawn by the subject).",
        ),
    ),
    (
        "refuse",
        _closing_verb(
            RequestRefused,
            "Why it is manifestly unfounded or excessive; told to the subject.",
            "refusal submitted",
            "Refuse a manifestly unfounded or excessive request, with the reason.",
        ),
    ),
    ("decide-objection", decide_objection),
)
"""The follow-up verbs in the order `privops request --help` lists them."""
