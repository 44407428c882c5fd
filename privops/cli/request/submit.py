"""The submission verbs: erase, restrict, lift, access, port, rectify, object, withdraw,
complain.

Each publishes a RequestSubmitted (a complaint with --restrict-while-investigating also a
linked restriction) and prints every request id first, one a line, for scripts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import typer

from privops.adapters.datamap_file import load_datamap
from privops.cli.common import (
    check_id,
    choices,
    console,
    emit_json,
    fail,
    handled,
    parse_choice,
    parse_date,
    settings,
    uk_today,
)
from privops.cli.request.answers import Verdict
from privops.cli.request.options import Submission, submission_verb
from privops.cli.request.publish import (
    actor_name,
    conclude,
    envelope,
    new_request_id,
    note,
    publish,
    report,
    tell,
    waiting,
)
from privops.core import search
from privops.core.consent import CONSENT_PURPOSES
from privops.core.datamap import DEFAULT_CONTACT_FIELDS, FIELD_NAME_RE, STATEMENT_PREFIX, DataMap
from privops.core.lifecycle import IDENTITY_REQUIRED
from privops.core.records import RequestSubmitted
from privops.core.topics import COMMANDS
from privops.core.vocab import (
    Capacity,
    Channel,
    ObjectionScope,
    Purpose,
    RequestType,
    SearchDetail,
)
from privops.core.workflow import MAX_RECTIFIED_CHARS, representative_problem, send_to_problem

_FIELDS_HELP = (
    "those the data map lists for each category (categories.<category>.fields, shown by "
    f"`privops ropa`; contact's by default: {', '.join(DEFAULT_CONTACT_FIELDS)})"
)


def date_order_problem(
    received: date,
    verified: date | None,
    information: date | None,
    *,
    verified_option: str = "--identity-verified",
    received_option: str = "--received",
) -> str | None:
    """What is wrong with the order of a request's dates, or None.

    Identity is verified after the request arrives and after the information for it
    arrived; the information itself may predate the request (a signed-in customer).
    """
    if verified is not None and verified < received:
        return (
            f"{verified_option} {verified} is before {received_option} {received}: identity "
            "is verified after the request arrives (--received defaults to today)"
        )
    if verified is not None and information is not None and information > verified:
        return (
            f"--identity-received {information} is after {verified_option} {verified}: the "
            "information is checked after it arrives"
        )
    return None


def clock_from_the_check(verified_on: date) -> str:
    """What the DPO is told when only the day identity was verified is given: the law
    counts from the day the information asked for arrived (legal review, session 33)."""
    return (
        f"no --identity-received: the one-month clock counts from the day identity was "
        f"verified ({verified_on}), or a representative's authority arrived if later; the "
        "law counts from the day the information asked for arrived, so give "
        "--identity-received if that was earlier"
    )


def submission(request_type: RequestType, common: Submission, **extra: Any) -> RequestSubmitted:
    """The RequestSubmitted for the shared options; exit 2 on any of them malformed."""
    subject_id = check_id(common.subject, "subject id")
    # ``is not None``: an empty value (a script's unset variable) is an error, not "not
    # given" (today, or unverified); before, the clock started on the wrong day (review,
    # session 43).
    received_on = (
        parse_date(common.received, "--received") if common.received is not None else uk_today()
    )
    if common.identity_verified is not None and common.verified_now:
        fail("use either --identity-verified DATE or --verified-now, not both")
    verified_on: date | None = None
    if common.identity_verified is not None:
        verified_on = parse_date(common.identity_verified, "--identity-verified")
    elif common.verified_now:
        verified_on = received_on
    information_on: date | None = None
    if common.identity_received is not None:
        information_on = parse_date(common.identity_received, "--identity-received")
    problem = date_order_problem(
        received_on,
        verified_on,
        information_on,
        verified_option="--verified-now (the day received)"
        if common.verified_now
        else "--identity-verified",
    )
    if problem:
        fail(problem)
    if verified_on is not None and verified_on > received_on and information_on is None:
        tell(clock_from_the_check(verified_on))
    return RequestSubmitted(
        **envelope(new_request_id(), actor_name(common.actor)),
        request_type=request_type,
        subject_id=subject_id,
        received_on=received_on,
        identity_verified_on=verified_on,
        identity_received_on=information_on,
        reason=note(common.reason),
        **_representation(common, received_on),
        **extra,
    )


def _representation(common: Submission, received_on: date) -> dict[str, Any]:
    """The representative's fields of a submission (none when the subject asks
    themselves); exit 2 on any of them malformed or missing (details not echoed)."""
    if common.representative is None:
        if common.capacity is not None or common.authority_received is not None:
            fail("--capacity and --authority-received go with --representative: name them")
        return {}
    if problem := representative_problem(common.representative):
        fail(f"--representative {problem}")
    if common.capacity is None:
        fail(f"--representative needs --capacity: one of {choices(Capacity)}")
    fields: dict[str, Any] = {
        "representative": common.representative.strip(),
        "capacity": parse_choice(Capacity, common.capacity, "--capacity", echo=False),
    }
    if common.authority_received is not None:
        day = parse_date(common.authority_received, "--authority-received")
        if day < received_on:
            fail(
                f"--authority-received {day} is before --received {received_on}: give the "
                "day the evidence for this request arrived (--received defaults to today)"
            )
        fields["authority_received_on"] = day
    return fields


def _report_json(submitted: Sequence[RequestSubmitted], verdicts: Sequence[Verdict]) -> None:
    rows = [
        {
            "request_id": s.request_id,
            "command_id": s.command_id,
            "request_type": s.request_type.value,
            "subject_id": s.subject_id,
            "received_on": s.received_on.isoformat(),
            "identity_verified_on": _iso(s.identity_verified_on),
            "identity_received_on": _iso(s.identity_received_on),
            "capacity": s.capacity.value if s.capacity else None,
            "authority_received_on": _iso(s.authority_received_on),
            "linked_request_id": s.linked_request_id,
            "topic": COMMANDS,
            "answer": v.as_json(),
        }
        for s, v in zip(submitted, verdicts, strict=True)
    ]
    emit_json(rows[0] if len(rows) == 1 else rows)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _summary(s: RequestSubmitted) -> str:
    if s.identity_verified_on:
        clock = f"identity verified {s.identity_verified_on}"
    elif s.identity_received_on:
        clock = f"identity information received {s.identity_received_on}, not yet verified"
    else:
        clock = "clock waits for identity verification (`privops request verify`)"
    link = f", linked to {s.linked_request_id}" if s.linked_request_id else ""
    return (
        f"{s.request_type.value} request {s.request_id} submitted, "
        f"received {s.received_on}, {clock}{link}{_made_by(s)}"
    )


def _made_by(s: RequestSubmitted) -> str:
    if s.capacity is None:
        return ""
    if s.authority_received_on:
        received = s.authority_received_on
        return f", made by a representative ({s.capacity.value}; authority received {received})"
    if s.request_type in IDENTITY_REQUIRED:
        return (
            f", made by a representative ({s.capacity.value}): the work and the clock wait "
            "for the evidence of their authority (`privops request authority`)"
        )
    return (
        f", made by a representative ({s.capacity.value}): the notices go to the subject "
        "until their authority is recorded (`privops request authority`)"
    )


def submit(submitted: Sequence[RequestSubmitted], common: Submission) -> None:
    """Publish the requests and wait for the worker's answers; print their ids first
    (and, unless --quiet, what the worker said); exit with the verdict."""
    verdicts = publish(submitted, waiting(common.wait, common.no_wait))
    if common.as_json:
        _report_json(submitted, verdicts)
        conclude(verdicts)
        return
    for s in submitted:
        typer.echo(s.request_id)
    report(verdicts, [_summary(s) for s in submitted], quiet=common.quiet)
    if not common.quiet:
        console.print(
            f"[dim]•[/] follow it with `privops request status {submitted[0].request_id}`",
            highlight=False,
        )


def _simple_verb(request_type: RequestType, doc: str) -> Callable[..., None]:
    """A submission verb whose only input is the shared options."""

    def verb(common: Submission) -> None:
        submit([submission(request_type, common)], common)

    verb.__doc__ = doc
    return submission_verb(verb)


def lift(
    common: Submission,
    restriction: str | None = typer.Option(
        None,
        "--restriction",
        metavar="REQUEST_ID",
        help="The restriction request this lift ends (needed while the subject has more than "
        "one in force; with one, that one). Systems resume only once none stands.",
    ),
) -> None:
    """Lift a restriction (Art. 18(3)): the subject is told first, with your --reason
    (required: it is sent to them) and their right to complain; then systems resume.
    While another of the subject's restrictions stands, the one named ends and nothing
    is lifted."""
    if not (common.reason or "").strip():
        fail(
            "say why the restriction is lifted with --reason: the subject is told it before "
            "the lift, with their right to complain (Art. 18(3), Art. 12(4))"
        )
    linked = check_id(restriction, "--restriction request id") if restriction is not None else None
    submit([submission(RequestType.restriction_lift, common, linked_request_id=linked)], common)


def _datamap() -> DataMap:
    """The data map, as the worker reads it (PRIVOPS_DATAMAP); exit 2 if it is wrong."""
    with handled():
        return load_datamap(settings().datamap)
    raise AssertionError("unreachable")


def _name(text: str) -> str | None:
    """``text`` as a field or category name, or None: what is not one is never
    repeated (it may be a value put in the wrong place)."""
    name = text.strip().lower()
    return name if FIELD_NAME_RE.match(name) else None


def parse_changes(pairs: Sequence[str], fields: Sequence[str] | None = None) -> dict[str, str]:
    """--set FIELD=VALUE pairs as a dict, FIELD one of ``fields`` (the data map's when
    None); exit 2 on anything malformed (values not echoed)."""
    allowed = list(_datamap().rectifiable_fields()) if fields is None else list(fields)
    return _assignments(
        pairs, "--set", ("FIELD", "field"), ("VALUE", "the corrected value"), allowed
    )


def parse_statements(pairs: Sequence[str], categories: Sequence[str]) -> dict[str, str]:
    """--statement CATEGORY=TEXT pairs as rectification keys ``statement:<category>``;
    exit 2 on anything malformed (the text never echoed)."""
    texts = _assignments(
        pairs, "--statement", ("CATEGORY", "category"), ("TEXT", "the statement"), categories
    )
    return {f"{STATEMENT_PREFIX}{category}": text for category, text in texts.items()}


def _assignments(
    pairs: Sequence[str],
    option: str,
    name: tuple[str, str],
    value: tuple[str, str],
    allowed: Sequence[str],
    *,
    echo_names: bool = True,
) -> dict[str, str]:
    """``option``'s NAME=VALUE pairs as a dict, NAME one of ``allowed``; exit 2 on
    anything malformed, never echoing a value (personal data). ``name`` and ``value``:
    how the messages call them (placeholder, word)."""
    (left, kind), (right, wanted) = name, value
    listed = ", ".join(allowed)
    found: dict[str, str] = {}
    for pair in pairs:
        raw, sep, given = pair.partition("=")
        key = _name(raw)
        if not sep or key is None:
            fail(f"malformed {option}: expected {left}={right} with {left} one of {listed}")
        if key not in allowed:
            named = f" '{key}'" if echo_names else ""
            fail(f"unknown {kind}{named} in {option}: use one of {listed}")
        if not given.strip():
            fail(f"empty {right.lower()} for {option} {key}=: give {wanted}")
        if len(given.strip()) > MAX_RECTIFIED_CHARS:
            fail(f"{option} {key}= is over {MAX_RECTIFIED_CHARS} characters: shorten it")
        if key in found:
            fail(f"{option} {key} given twice")
        found[key] = given.strip()
    return found


@submission_verb
def rectify(
    common: Submission,
    set_: list[str] = typer.Option(
        [],
        "--set",
        help=f"A correction FIELD=VALUE (repeatable); fields: {_FIELDS_HELP}.",
    ),
    statement: list[str] = typer.Option(
        [],
        "--statement",
        help="Completion by a supplementary statement CATEGORY=TEXT (repeatable, one per "
        "category), e.g. credit='the 2025 default was disputed and withdrawn'.",
    ),
) -> None:
    """Rectification (Art. 16): correct fields, or complete a category's data with a
    supplementary statement, in every system that holds it; recipients are told (Art. 19).

    The corrected values and statements are sealed under the subject's key by the
    worker's key service before they go on privacy.commands, so the subject's erasure
    makes that copy unreadable too (no KEK is needed here)."""
    if not set_ and not statement:
        fail(
            "rectify needs at least one --set FIELD=VALUE or --statement CATEGORY=TEXT; "
            f"fields: {_FIELDS_HELP}"
        )
    datamap = _datamap()
    changes = parse_changes(set_, list(datamap.rectifiable_fields()))
    changes |= parse_statements(statement, [c.value for c in datamap.categories])
    submit([submission(RequestType.rectification, common, rectification=changes)], common)


@submission_verb
def access(
    common: Submission,
    search_: list[str] = typer.Option(
        [],
        "--search",
        help="Where and when to look for the subject in footage, DETAIL=VALUE (repeatable): "
        "date=YYYY-MM-DD (required with any), times=HH:MM-HH:MM (UK time; an end before "
        "the start is the next day), location=TEXT, "
        f"appearance=TEXT; e.g. {search.EXAMPLE}.",
    ),
) -> None:
    """Access (Art. 15, DSAR): exports from every system and the Art. 15 manifest.

    With --search, a system that finds people by such details (CCTV: searched_by_details
    in the data map) is asked to look for them too, even when no system ever reported
    the subject: a visitor who never gave a name is in the footage all the same. The
    details are sealed under the subject's key before they go on privacy.commands."""
    details = _assignments(
        search_,
        "--search",
        ("DETAIL", "search detail"),
        ("VALUE", "what to search by"),
        [d.value for d in SearchDetail],
        echo_names=False,  # one may be the subject's name put in the wrong place
    )
    command = submission(RequestType.access, common, search=details)
    if details and (problem := search.problem(details, command.received_on)):
        fail(f"--search: {problem}")
    if details and not _datamap().searched_by_details():
        # Refused here, before the details are sealed: sealing makes a stranger a key.
        fail(
            "--search: no system of the data map is searched by details "
            "(searched_by_details); submit the access request without them"
        )
    submit([command], common)


@submission_verb
def port(
    common: Submission,
    send_to: str | None = typer.Option(
        None,
        "--send-to",
        help="The organisation the subject asked to have the copies sent to directly, and "
        "how to reach it (Art. 20(2)): the response waits for you to send them and say so "
        "(`privops request approve --sent-on`, or --not-feasible). Sealed by the worker "
        "before it is sent.",
    ),
) -> None:
    """Data portability (Art. 20): the data the subject gave us, used with their consent
    or under a contract, as structured machine-readable copies (JSON, CSV...) from each
    system holding it; the data map's purposes say which (`privops ropa`, each system's
    "portable")."""
    extra: dict[str, Any] = {}
    if send_to is not None:
        if problem := send_to_problem(send_to):
            fail(f"--send-to {problem}")
        extra["send_to"] = send_to.strip()
    submit([submission(RequestType.portability, common, **extra)], common)


@submission_verb
def object_(
    common: Submission,
    scope: str = typer.Option(
        ...,
        "--scope",
        help="What the subject objects to: direct_marketing (absolute) or legitimate_interest.",
    ),
) -> None:
    """Objection (Art. 21): direct marketing stops at once; legitimate interest is decided."""
    objection_scope = parse_choice(ObjectionScope, scope, "objection scope")
    submit([submission(RequestType.objection, common, objection_scope=objection_scope)], common)


@submission_verb
def withdraw(
    common: Submission,
    purpose: str | None = typer.Option(
        None,
        "--purpose",
        help="Only this purpose's consent: marketing, profiling or analytics "
        "(default: every consent the subject gave).",
    ),
    channel: str | None = typer.Option(
        None,
        "--channel",
        help="Only this channel: email, sms, post or telephone (default: every channel).",
    ),
) -> None:
    """Consent withdrawal (Art. 7(3)), as the subject told the DPO: recorded at once in the
    consent state, which every system consults before each use (no task is sent)."""
    chosen = parse_choice(Purpose, purpose, "purpose") if purpose is not None else None
    if chosen is not None and chosen not in CONSENT_PURPOSES:
        fail(
            f"--purpose {chosen.value}: rests on no consent to withdraw; use one of "
            + ", ".join(p.value for p in CONSENT_PURPOSES)
        )
    # ``is not None``: an empty --channel is an error, never every channel (session 43).
    channel_chosen = parse_choice(Channel, channel, "channel") if channel is not None else None
    command = submission(
        RequestType.consent_withdrawal,
        common,
        withdrawn_purpose=chosen,
        withdrawn_channel=channel_chosen,
    )
    submit([command], common)


@submission_verb
def complain(
    common: Submission,
    restrict_while_investigating: bool = typer.Option(
        False,
        "--restrict-while-investigating",
        help="Also submit a linked restriction (the subject's identity verified: "
        "--verified-now or --identity-verified; made by a representative, their "
        "--authority-received too); lift it with `privops request lift --restriction ID` "
        "(its id, printed second) once the complaint is resolved.",
    ),
    link: str | None = typer.Option(None, "--link", help="The request id the complaint is about."),
) -> None:
    """Complaint to the DPO: acknowledged within the configured days; prints every id submitted."""
    linked = check_id(link) if link is not None else None
    complaint = submission(RequestType.complaint, common, linked_request_id=linked)
    commands = [complaint]
    if restrict_while_investigating and complaint.identity_verified_on is None:
        # A restriction waits for the subject's identity: without it nothing was
        # restricted, while the DPO believed it was (legal review, session 35).
        fail(
            "--restrict-while-investigating: a restriction is applied once the subject's "
            "identity is verified; add --verified-now or --identity-verified DATE"
        )
    if restrict_while_investigating and complaint.capacity and not complaint.authority_received_on:
        fail(
            "--restrict-while-investigating: a restriction asked for by a representative is "
            "applied once their authority is shown; add --authority-received DATE"
        )
    if restrict_while_investigating:
        commands.append(
            complaint.model_copy(
                update={
                    **envelope(new_request_id(), complaint.actor),
                    "request_type": RequestType.restriction,
                    "linked_request_id": complaint.request_id,
                    "reason": f"restricted while complaint {complaint.request_id} is investigated",
                }
            )
        )
    submit(commands, common)


VERBS: tuple[tuple[str, Callable[..., None]], ...] = (
    (
        "erase",
        _simple_verb(
            RequestType.erasure,
            "Erasure (Art. 17): systems erase what need not be kept; the rest is kept with its "
            "ground.",
        ),
    ),
    (
        "restrict",
        _simple_verb(
            RequestType.restriction,
            "Restriction (Art. 18): systems keep the subject's data but stop processing it.",
        ),
    ),
    ("lift", submission_verb(lift)),
    ("access", access),
    ("port", port),
    ("rectify", rectify),
    ("object", object_),
    ("withdraw", withdraw),
    ("complain", complain),
)
"""The submission verbs in the order `privops request --help` lists them."""
