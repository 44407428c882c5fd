"""The follow-up verbs: what happens to a request after it is submitted.

Identity verified, a representative's authority received, a waiting erasure released,
fee received, clarification asked and received, extension, answer, cancellation,
refusal, objection decided, an access response's copy redacted and the response
approved: one command each, keyed by the request id, each waiting for the worker's
answer. The options they share (`Delivery`: --actor, --json, --wait, --no-wait) are
declared once, in `privops.cli.request.options`.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import typer

from privops.cli.common import check_id, fail, parse_choice, parse_date, uk_today
from privops.cli.request.options import (
    SEALED_HELP,
    Delivery,
    IdentityReceivedOn,
    On,
    RequestId,
    follow_up_verb,
)
from privops.cli.request.publish import (
    actor_name,
    envelope,
    publish_one,
    required_reason,
    tell,
    waiting,
)
from privops.cli.request.submit import clock_from_the_check, date_order_problem
from privops.core.records import (
    AccessResponseApproved,
    AuthorityReceived,
    ClarificationReceived,
    ClarificationRequested,
    Command,
    DeadlineExtended,
    ErasureReleased,
    ExportRedacted,
    ExportReference,
    FeeReceived,
    IdentityVerified,
    ObjectionDecided,
    RequestAnswered,
    RequestCancelled,
    RequestRefused,
)
from privops.core.vocab import FeeGround, RefusalGround, System
from privops.core.workflow import not_feasible_problem


def _day(value: str | None, option: str = "--on") -> date:
    # An empty value (a script's unset variable) is an error, never today (review, session 43).
    return parse_date(value, option) if value is not None else uk_today()


def _send(kind: type[Command], rid: str, done: str, common: Delivery, **fields: Any) -> None:
    """Publish a follow-up for a checked request id and wait for its answer; `done` is
    said after the id when the worker accepts it."""
    seconds = waiting(common.wait, common.no_wait)
    command = kind(**envelope(rid, actor_name(common.actor)), **fields)
    publish_one(command, common.as_json, f"{rid}: {done}", seconds)


@follow_up_verb
def verify(
    common: Delivery,
    request_id: RequestId,
    on: On = None,
    identity_received: IdentityReceivedOn = None,
    method: str = typer.Option(
        "documents",
        "--method",
        help="How identity was verified (anything but the default is sealed by the worker "
        "before it is sent: needs a worker answering).",
    ),
) -> None:
    """Record that the subject's identity was verified: the one-month clock starts (from
    the day the identity information arrived, if --identity-received says so), or, for a
    request a representative made, once their authority is recorded too."""
    rid = check_id(request_id)
    day = _day(on)
    information = (
        parse_date(identity_received, "--identity-received")
        if identity_received is not None
        else None
    )
    problem = date_order_problem(day, day, information, verified_option="--on")
    if problem:
        fail(problem)
    if information is None:
        tell(clock_from_the_check(day))
    done = f"identity verified on {day}"
    _send(
        IdentityVerified,
        rid,
        done,
        common,
        verified_on=day,
        method=method,
        information_received_on=information,
    )


@follow_up_verb
def authority(
    common: Delivery,
    request_id: RequestId,
    on: str = typer.Option(
        ...,
        "--on",
        help="Date the evidence arrived, YYYY-MM-DD: the clock counts from it, not from the "
        "day you finished checking it.",
    ),
) -> None:
    """Record that the evidence of a representative's authority (the subject's written
    authority, a power of attorney, a deputyship order, parental responsibility) arrived,
    once it satisfies you: a request that changes or discloses data starts once identity
    is verified too, and its one-month clock runs from the later of the two; from then
    on the notices go to the representative. A day given while no clock runs yet (no
    identity information has arrived) may be corrected by recording it again."""
    rid = check_id(request_id)
    day = parse_date(on, "--on")
    _send(
        AuthorityReceived,
        rid,
        f"representative's authority received on {day}",
        common,
        received_on=day,
    )


@follow_up_verb
def erase_now(common: Delivery, request_id: RequestId) -> None:
    """Let an erasure waiting for the subject's access or portability response send its
    work now, once the subject has their copies or asks for the erasure at once. (Beside
    such a response an erasure waits, so that the copy shows what was held and can be
    fetched, until a day told to the subject: 7 days before the erasure is due, or 14
    days after a response already out; sooner if the response closes without copies.
    `privops request status` shows what it waits for and until when.) Released before
    the response went out, its copy is made from what the erasure leaves, and its letter
    says so. Refused for a request that is not waiting so."""
    rid = check_id(request_id)
    _send(ErasureReleased, rid, "the erasure's work goes out now", common)


@follow_up_verb
def fee_received(
    common: Delivery,
    request_id: RequestId,
    ground: str = typer.Option(
        ...,
        "--ground",
        help="Why a fee is charged: manifestly_unfounded, excessive (UK GDPR Art. 12(5)), "
        "or further_copies (an access request's extra copies, Art. 15(3)); a request is "
        "free otherwise.",
    ),
    on: On = None,
) -> None:
    """Record a fee received for a manifestly unfounded or excessive request, or further
    copies: the clock starts again from the day it was received."""
    rid = check_id(request_id)
    chosen = parse_choice(FeeGround, ground, "--ground")
    day = _day(on)
    _send(
        FeeReceived,
        rid,
        f"fee received on {day} ({chosen.value})",
        common,
        received_on=day,
        ground=chosen,
    )


@follow_up_verb
def clarify(
    common: Delivery,
    request_id: RequestId,
    asked: str | None = typer.Option(
        None, "--asked", help="Date clarification was asked, YYYY-MM-DD (default: today, UK)."
    ),
    question_ref: str | None = typer.Option(
        None, "--question-ref", help="Reference of the letter or message asking." + SEALED_HELP
    ),
) -> None:
    """Ask the subject of an access request to clarify (Art. 12A): the clock pauses
    until the answer arrives.

    Only an access request's clock stops, where you reasonably need the subject to say
    which information or processing the request is about (for example, you hold a
    large amount of information about them). For any other request the worker refuses:
    ask while its clock runs, and, where its type allows, extend it (request extend) or
    refuse it.
    """
    rid = check_id(request_id)
    day = _day(asked, "--asked")
    done = f"clarification asked on {day}; clock paused"
    _send(ClarificationRequested, rid, done, common, asked_on=day, question_ref=question_ref)


@follow_up_verb
def clarified(common: Delivery, request_id: RequestId, on: On = None) -> None:
    """Record the subject's clarification: the clock runs again."""
    rid = check_id(request_id)
    day = _day(on)
    done = f"clarification received on {day}; clock running"
    _send(ClarificationReceived, rid, done, common, received_on=day)


@follow_up_verb
def extend(
    common: Delivery,
    request_id: RequestId,
    reason: str = typer.Option(
        ...,
        "--reason",
        help="Why (complex or numerous requests); told to the subject (or the "
        "representative who made the request, once their authority is recorded)." + SEALED_HELP,
    ),
    notified: str | None = typer.Option(
        None,
        "--notified",
        help="Date the subject (or their representative) was told of the extension, "
        "YYYY-MM-DD (default: today, UK).",
    ),
) -> None:
    """Extend the deadline by two months (only within the first month, with a reason; not
    a complaint's, whose response date is the one its acknowledgement gave)."""
    rid = check_id(request_id)
    text = required_reason(reason)
    day = _day(notified, "--notified")
    done = f"extension requested, notified {day}"
    _send(DeadlineExtended, rid, done, common, reason=text, notified_on=day)


def _closing_verb(
    kind: type[Command], reason_help: str, done: str, doc: str
) -> Callable[..., None]:
    """A verb that ends a request with a reason and nothing else (answer, cancel)."""

    def verb(
        common: Delivery,
        request_id: RequestId,
        reason: str = typer.Option(..., "--reason", help=reason_help + SEALED_HELP),
    ) -> None:
        rid = check_id(request_id)
        text = required_reason(reason)
        _send(kind, rid, done, common, reason=text)

    verb.__doc__ = doc
    return follow_up_verb(verb)


@follow_up_verb
def refuse(
    common: Delivery,
    request_id: RequestId,
    ground: str = typer.Option(
        ...,
        "--ground",
        help="On what ground: manifestly_unfounded or excessive (UK GDPR Art. 12(5)), "
        "identity_not_established (Art. 12(6); only while the identity, or a "
        "representative's authority, waits), "
        "right_does_not_apply (an erasure or restriction none of whose grounds hold), or "
        "exemption (Data Protection Act 2018 Schedules 2-4; the subject's notice names "
        "none: say in --reason what may be said). A consent withdrawal, an objection to "
        "direct marketing, a complaint and a lift are never refused. The subject is told "
        "the ground, and privops keeps it after an erasure scrubs the reason.",
    ),
    reason: str = typer.Option(
        ...,
        "--reason",
        help="The letter to the subject (or the representative who made the request, once "
        "their authority is recorded): why, on that ground." + SEALED_HELP,
    ),
) -> None:
    """Refuse a request before its work goes out, on a ground and with the reasons: the
    subject is told both, and of their right to complain (Art. 12(4))."""
    rid = check_id(request_id)
    chosen = parse_choice(RefusalGround, ground, "--ground")
    text = required_reason(reason)
    _send(
        RequestRefused,
        rid,
        f"refusal submitted ({chosen.value})",
        common,
        reason=text,
        ground=chosen,
    )


@follow_up_verb
def decide_objection(
    common: Delivery,
    request_id: str = typer.Argument(..., help="The objection request id (REQ-...)."),
    accept: bool | None = typer.Option(
        None,
        "--accept/--refuse",
        help="Uphold the objection, or refuse it (compelling legitimate grounds).",
    ),
    reason: str = typer.Option(..., "--reason", help="The grounds for the decision." + SEALED_HELP),
    purpose: list[str] = typer.Option(
        [],
        "--purpose",
        help="With --accept: a purpose of the data map based on legitimate interests to "
        "uphold it for (`privops ropa` lists them); repeat for more. Default: every one; "
        "the others go on (compelling grounds), and the subject is told so.",
    ),
) -> None:
    """Decide a legitimate-interest objection (Art. 21(1)): upheld, the systems that
    process the subject's data for those purposes stop doing so for them only."""
    rid = check_id(request_id)
    if accept is None:
        fail("say --accept or --refuse")
    if purpose and not accept:
        fail("--purpose says what an upheld objection stops: only with --accept")
    if any(not p.strip() for p in purpose):
        fail("--purpose is empty: name a purpose of the data map (`privops ropa` lists them)")
    text = required_reason(reason)
    upheld = sorted({p.strip() for p in purpose})
    done = f"objection {'upheld' if accept else 'refused'}" + (
        f" for {', '.join(upheld)}" if upheld else ""
    )
    _send(ObjectionDecided, rid, done, common, accepted=accept, reason=text, upheld_purposes=upheld)


SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _media_type(location: str) -> str:
    """A copy's media type from its name's extension (``.mp4``: video/mp4)."""
    guessed, _ = mimetypes.guess_type(urlsplit(location.strip()).path)
    return guessed or "application/octet-stream"


@follow_up_verb
def redact(
    common: Delivery,
    request_id: RequestId,
    system: str = typer.Option(..., "--system", help="The system whose copy this replaces."),
    location: str = typer.Option(
        ...,
        "--location",
        help="Where the redacted copy is: below the system's export_root in the data map, "
        "as ROOT/REQUEST_ID/NAME or ROOT/REQUEST_ID.EXT." + SEALED_HELP,
    ),
    records: int = typer.Option(
        ..., "--records", min=0, help="How many records the redacted copy holds."
    ),
    sha256: str = typer.Option(
        ..., "--sha256", help="The redacted file's SHA-256, 64 hex digits (sha256sum FILE)."
    ),
    media_type: str | None = typer.Option(
        None, "--media-type", help="Its media type (default: from the location's extension)."
    ),
) -> None:
    """Replace one system's copy in an access or portability response held for review
    (awaiting_review: footage showing other people) with your redacted one; then `approve`
    it."""
    rid = check_id(request_id)
    chosen = parse_choice(System, system, "--system")
    digest = sha256.strip().lower().removeprefix("sha256:")
    if not SHA256_HEX.fullmatch(digest):
        fail("--sha256 must be 64 hex digits (as `sha256sum FILE` prints them)")
    export = ExportReference(
        location=location.strip(),
        record_count=records,
        checksum=f"sha256:{digest}",
        media_type=(media_type or "").strip() or _media_type(location),
    )
    done = f"redacted copy of {chosen.value} recorded; approve the response to send it"
    _send(ExportRedacted, rid, done, common, system=chosen, export=export)


@follow_up_verb
def approve(
    common: Delivery,
    request_id: RequestId,
    withhold: list[str] = typer.Option(
        [],
        "--withhold",
        help="A system whose copy is left out (others' data that can be neither redacted nor "
        "disclosed: DPA 2018 Sch. 2 para. 16 for access, UK GDPR Art. 20(4) for "
        "portability); repeat for more.",
    ),
    disclose: list[str] = typer.Option(
        [],
        "--disclose",
        help="A system whose copy held for review goes as the system made it: you found no "
        "one else in it (or they consented); repeat for more.",
    ),
    reason: str | None = typer.Option(
        None,
        "--reason",
        help="Why a copy was redacted or left out; told to the subject, and required when "
        "one was." + SEALED_HELP,
    ),
    not_subject: list[str] = typer.Option(
        [],
        "--not-subject",
        help="A system whose copy, found by the request's --search details, shows no one "
        "who is the subject: it is dropped, and the response says nothing of it; repeat "
        "for more.",
    ),
    sent_on: str | None = typer.Option(
        None,
        "--sent-on",
        help="A portability request naming an organisation to send the copies to (port "
        "--send-to): the day (YYYY-MM-DD) you sent them there, as the subject gets them "
        "(redacted, without those you --withhold). The subject is told, with the copies.",
    ),
    not_feasible: str | None = typer.Option(
        None,
        "--not-feasible",
        help="Instead of --sent-on: why sending the copies to that organisation is not "
        "technically feasible (Art. 20(2)); told to the subject, who gets the copies to "
        "pass on." + SEALED_HELP,
    ),
) -> None:
    """Approve an access or portability response held for review: it goes to the subject, with the
    redacted copies `redact` recorded, without the --withhold ones, and the --disclose ones
    as their systems made them; a copy a search found that is not the subject is
    --not-subject. Each copy held for review must be one of these. A portability response
    whose subject asked for the copies to be sent on says what became of that: --sent-on
    or --not-feasible."""
    rid = check_id(request_id)
    left_out = sorted({parse_choice(System, s, "--withhold") for s in withhold})
    as_made = sorted({parse_choice(System, s, "--disclose") for s in disclose})
    not_theirs = sorted({parse_choice(System, s, "--not-subject") for s in not_subject})
    if both := set(left_out) & set(as_made):
        fail(f"{', '.join(sorted(s.value for s in both))}: --withhold and --disclose both; say one")
    if both := set(not_theirs) & (set(left_out) | set(as_made)):
        fail(
            f"{', '.join(sorted(s.value for s in both))}: --not-subject and --withhold or "
            "--disclose both; say one"
        )
    if left_out and reason is None:
        fail("--withhold needs --reason: the subject is told why their copy leaves it out")
    text = required_reason(reason) if reason is not None else None
    if sent_on is not None and not_feasible is not None:
        fail("--sent-on and --not-feasible both: the copies were sent, or could not be; say one")
    sent_day = parse_date(sent_on, "--sent-on") if sent_on is not None else None
    if not_feasible is not None and (problem := not_feasible_problem(not_feasible)):
        fail(problem)
    why_not = not_feasible.strip() if not_feasible is not None else None
    done = "response approved and sent" + (
        f" without the copy from {', '.join(s.value for s in left_out)}" if left_out else ""
    )
    _send(
        AccessResponseApproved,
        rid,
        done,
        common,
        withheld=left_out,
        disclosed=as_made,
        reason=text,
        not_subject=not_theirs,
        transmitted_on=sent_day,
        not_feasible=why_not,
    )


VERBS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("verify", verify),
    ("authority", authority),
    ("erase-now", erase_now),
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
    ("refuse", refuse),
    ("decide-objection", decide_objection),
    ("redact", redact),
    ("approve", approve),
)
"""The follow-up verbs in the order `privops request --help` lists them."""
