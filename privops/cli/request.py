"""`privops request ...`: the DPO submits rights requests and follows them up.

Every verb publishes one command (two for a complaint with a linked restriction) to
`privacy.commands`, keyed by the request id, and prints the request id as the first
line of output so a script can capture it. `status` asks the worker over HTTP.

Also home to the input helpers the other verbs share (dates in UK local time, worker
HTTP calls with meaningful exit codes).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import typer
from rich.markup import escape
from rich.table import Table

from privops.adapters.kafka import producer
from privops.adapters.serde import Serde
from privops.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    console,
    emit_json,
    fail,
    run_async,
    settings,
)
from privops.core.records import (
    ClarificationReceived,
    ClarificationRequested,
    Command,
    DeadlineExtended,
    FeeReceived,
    IdentityVerified,
    LegalHoldPlaced,
    LegalHoldReleased,
    ObjectionDecided,
    RequestAnswered,
    RequestCancelled,
    RequestRefused,
    RequestSubmitted,
)
from privops.core.topics import COMMANDS
from privops.core.vocab import Category, ObjectionScope, RequestType

UK = ZoneInfo("Europe/London")
RECTIFIABLE_FIELDS: tuple[str, ...] = ("name", "email", "phone", "address", "postcode")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_WORKER_TIMEOUT = 5.0

app = typer.Typer(
    help=(
        "Submit rights requests (erasure, restriction, lift, rectification, objection, "
        "access, complaint), follow them up, and show their status."
    ),
    no_args_is_help=True,
)
hold_app = typer.Typer(
    help="Legal holds: keep a subject's categories from erasure (Art. 17(3)(e)).",
    no_args_is_help=True,
)
app.add_typer(hold_app, name="hold")


# --- shared input helpers ------------------------------------------------------------------


def uk_today() -> date:
    """Today's date in the UK: legal deadlines are UK local dates."""
    return datetime.now(UTC).astimezone(UK).date()


def parse_date(value: str, option: str, *, allow_future: bool = False) -> date:
    """A YYYY-MM-DD option value, or exit 2 naming the option."""
    text = value.strip()
    try:
        if not _DATE_RE.fullmatch(text):
            raise ValueError(text)
        parsed = date.fromisoformat(text)
    except ValueError:
        fail(f"invalid date '{escape(value)}' for {option}: use YYYY-MM-DD")
    if not allow_future and parsed > uk_today():
        fail(f"{option} {parsed} is in the future (today in the UK is {uk_today()})")
    return parsed


def check_id(value: str, what: str = "request id") -> str:
    """A request, hold or subject id: a short word without spaces or slashes."""
    value = value.strip()
    if not _ID_RE.fullmatch(value):
        fail(
            f"invalid {what} '{escape(value)}': use letters, digits and . _ : - "
            "(at most 64 characters)"
        )
    return value


def worker_url(path: str) -> str:
    cfg = settings()
    return f"http://{cfg.web_host}:{cfg.web_port}{path}"


def worker_get(path: str, params: dict[str, str] | None = None) -> httpx.Response:
    """GET from the worker's HTTP API; exit 3 with what to run if it is not answering."""
    url = worker_url(path)
    try:
        with httpx.Client(timeout=_WORKER_TIMEOUT) as client:
            return client.get(url, params=params)
    except httpx.HTTPError as exc:
        fail(
            f"the privops worker at {worker_url('')} is unreachable ({type(exc).__name__}); "
            "start it with `privops worker` (or run `privops demo`)",
            EXIT_UNAVAILABLE,
        )


def response_json(resp: httpx.Response) -> dict[str, Any]:
    """The worker's JSON body, or exit 1 if the worker answered something else."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        fail(
            f"the worker answered {resp.status_code} without a JSON object at {resp.url}",
            EXIT_FAILED,
        )
    return body


# --- publishing ----------------------------------------------------------------------------


def quiet_kafka_logs() -> None:
    """aiokafka logs each failed connect; the CLI reports the failure once, itself."""
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def new_request_id() -> str:
    return "REQ-" + uuid.uuid4().hex[:12].upper()


def new_hold_id() -> str:
    return "HOLD-" + uuid.uuid4().hex[:12].upper()


def _envelope(request_id: str, actor: str) -> dict[str, Any]:
    # Commands are to be Ed25519-signed (DESIGN.md section 8); no signing key is
    # configured for the CLI yet, so the signature is left empty.
    return {
        "command_id": str(uuid.uuid4()),
        "request_id": request_id,
        "issued_at": datetime.now(UTC),
        "actor": actor,
        "signature": None,
    }


def publish(commands: Sequence[Command]) -> None:
    """Register the schemas and produce each command to privacy.commands (acks=all).

    The broker is contacted first, so an unreachable broker is reported with its address
    before the registry is tried.
    """
    cfg = settings()
    serde = Serde(cfg.registry_url, cfg.schema_dir)
    quiet_kafka_logs()

    async def send() -> None:
        async with producer(cfg.kafka_bootstrap) as prod:
            await asyncio.to_thread(serde.register_all)
            for command in commands:
                await prod.send_and_wait(
                    COMMANDS, value=serde.encode(command), key=command.request_id.encode()
                )

    run_async(send)


def _actor(actor: str | None) -> str:
    name = (actor if actor is not None else settings().actor).strip()
    if not name:
        fail("--actor must not be empty")
    return name


def _reason(reason: str | None, *, required: bool = False) -> str | None:
    if reason is None:
        if required:
            fail("--reason is required")
        return None
    text = reason.strip()
    if not text:
        fail("--reason must not be empty")
    return text


# --- options shared by the submission verbs --------------------------------------------------

SubjectOpt = typer.Option(..., "--subject", help="The subject id (as the systems know it).")
ReceivedOpt = typer.Option(
    None, "--received", help="Date the request was received, YYYY-MM-DD (default: today, UK)."
)
VerifiedOpt = typer.Option(
    None,
    "--identity-verified",
    help="Date the subject's identity was verified, YYYY-MM-DD (the clock starts then).",
)
VerifiedNowOpt = typer.Option(
    False, "--verified-now", help="Identity is verified: on the date received."
)
ReasonOpt = typer.Option(None, "--reason", help="Free-text reason or note for the audit trail.")
ActorOpt = typer.Option(
    None, "--actor", help="Who issues the command (default: PRIVOPS_ACTOR setting)."
)
JsonOpt = typer.Option(False, "--json", help="Machine-readable output.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only the request id.")


def _submission(
    request_type: RequestType,
    *,
    request_id: str,
    subject: str,
    received: str | None,
    identity_verified: str | None,
    verified_now: bool,
    reason: str | None,
    actor: str | None,
    **extra: Any,
) -> RequestSubmitted:
    subject_id = check_id(subject, "subject id")
    received_on = parse_date(received, "--received") if received else uk_today()
    if identity_verified and verified_now:
        fail("use either --identity-verified DATE or --verified-now, not both")
    verified_on: date | None = None
    if identity_verified:
        verified_on = parse_date(identity_verified, "--identity-verified")
    elif verified_now:
        verified_on = received_on
    return RequestSubmitted(
        **_envelope(request_id, _actor(actor)),
        request_type=request_type,
        subject_id=subject_id,
        received_on=received_on,
        identity_verified_on=verified_on,
        reason=_reason(reason),
        **extra,
    )


def _report(submitted: Sequence[RequestSubmitted], *, as_json: bool, quiet: bool) -> None:
    if as_json:
        rows = [
            {
                "request_id": s.request_id,
                "command_id": s.command_id,
                "request_type": s.request_type.value,
                "subject_id": s.subject_id,
                "received_on": s.received_on.isoformat(),
                "identity_verified_on": (
                    s.identity_verified_on.isoformat() if s.identity_verified_on else None
                ),
                "linked_request_id": s.linked_request_id,
                "topic": COMMANDS,
            }
            for s in submitted
        ]
        emit_json(rows[0] if len(rows) == 1 else rows)
        return
    for s in submitted:
        typer.echo(s.request_id)
    if quiet:
        return
    for s in submitted:
        clock = (
            f"identity verified {s.identity_verified_on}"
            if s.identity_verified_on
            else "clock waits for identity verification (`privops request verify`)"
        )
        link = f", linked to {s.linked_request_id}" if s.linked_request_id else ""
        console.print(
            f"[dim]•[/] {s.request_type.value} request {s.request_id} submitted, "
            f"received {s.received_on}, {clock}{link}",
            highlight=False,
        )
    console.print(
        f"[dim]•[/] follow it with `privops request status {submitted[0].request_id}`",
        highlight=False,
    )


def _submit_simple(
    request_type: RequestType,
    subject: str,
    received: str | None,
    identity_verified: str | None,
    verified_now: bool,
    reason: str | None,
    actor: str | None,
    as_json: bool,
    quiet: bool,
    **extra: Any,
) -> None:
    command = _submission(
        request_type,
        request_id=new_request_id(),
        subject=subject,
        received=received,
        identity_verified=identity_verified,
        verified_now=verified_now,
        reason=reason,
        actor=actor,
        **extra,
    )
    publish([command])
    _report([command], as_json=as_json, quiet=quiet)


# --- submission verbs ----------------------------------------------------------------------


def _simple_verb(request_type: RequestType, doc: str) -> Callable[..., None]:
    """A submission verb whose only input is the common options (erase, restrict, ...)."""

    def verb(
        subject: str = SubjectOpt,
        received: str | None = ReceivedOpt,
        identity_verified: str | None = VerifiedOpt,
        verified_now: bool = VerifiedNowOpt,
        reason: str | None = ReasonOpt,
        actor: str | None = ActorOpt,
        as_json: bool = JsonOpt,
        quiet: bool = QuietOpt,
    ) -> None:
        _submit_simple(
            request_type,
            subject,
            received,
            identity_verified,
            verified_now,
            reason,
            actor,
            as_json,
            quiet,
        )

    verb.__doc__ = doc
    return verb


for _name, _type, _doc in (
    (
        "erase",
        RequestType.erasure,
        "Erasure (Art. 17): systems erase what need not be kept; the rest is kept with its ground.",
    ),
    (
        "restrict",
        RequestType.restriction,
        "Restriction (Art. 18): systems keep the subject's data but stop processing it.",
    ),
    (
        "lift",
        RequestType.restriction_lift,
        "Lift a restriction (Art. 18(3)): the subject is told first, then systems resume.",
    ),
    (
        "access",
        RequestType.access,
        "Access (Art. 15, DSAR): exports from every system and the Art. 15 manifest.",
    ),
):
    app.command(_name)(_simple_verb(_type, _doc))


@app.command()
def rectify(
    subject: str = SubjectOpt,
    set_: list[str] = typer.Option(
        [],
        "--set",
        help=f"A correction FIELD=VALUE (repeatable); fields: {', '.join(RECTIFIABLE_FIELDS)}.",
    ),
    received: str | None = ReceivedOpt,
    identity_verified: str | None = VerifiedOpt,
    verified_now: bool = VerifiedNowOpt,
    reason: str | None = ReasonOpt,
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Rectification (Art. 16): correct fields in every system that holds them."""
    changes = parse_changes(set_)
    _submit_simple(
        RequestType.rectification,
        subject,
        received,
        identity_verified,
        verified_now,
        reason,
        actor,
        as_json,
        quiet,
        rectification=changes,
    )


def parse_changes(pairs: Sequence[str]) -> dict[str, str]:
    """--set FIELD=VALUE pairs as a dict; exit 2 on anything malformed (values not echoed)."""
    if not pairs:
        fail(
            f"rectify needs at least one --set FIELD=VALUE; fields: {', '.join(RECTIFIABLE_FIELDS)}"
        )
    changes: dict[str, str] = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        field = field.strip().lower()
        if not sep or not field:
            fields = ", ".join(RECTIFIABLE_FIELDS)
            fail(f"malformed --set: expected FIELD=VALUE with FIELD one of {fields}")
        if field not in RECTIFIABLE_FIELDS:
            fail(
                f"unknown field '{escape(field)}' in --set: use one of "
                f"{', '.join(RECTIFIABLE_FIELDS)}"
            )
        if not value.strip():
            fail(f"empty value for --set {field}=: give the corrected value")
        if field in changes:
            fail(f"--set {field} given twice")
        changes[field] = value.strip()
    return changes


def parse_scope(value: str) -> ObjectionScope:
    try:
        return ObjectionScope(value.strip().lower())
    except ValueError:
        fail(
            f"unknown objection scope '{escape(value)}': use one of "
            f"{', '.join(s.value for s in ObjectionScope)}"
        )


def parse_categories(values: Sequence[str]) -> list[Category]:
    if not values:
        fail(f"give at least one --category: {', '.join(c.value for c in Category)}")
    out: list[Category] = []
    for value in values:
        try:
            category = Category(value.strip().lower())
        except ValueError:
            fail(
                f"unknown category '{escape(value)}': use one of "
                f"{', '.join(c.value for c in Category)}"
            )
        if category not in out:
            out.append(category)
    return out


@app.command("object")
def object_(
    subject: str = SubjectOpt,
    scope: str = typer.Option(
        ...,
        "--scope",
        help="What the subject objects to: direct_marketing (absolute) or legitimate_interest.",
    ),
    received: str | None = ReceivedOpt,
    identity_verified: str | None = VerifiedOpt,
    verified_now: bool = VerifiedNowOpt,
    reason: str | None = ReasonOpt,
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Objection (Art. 21): direct marketing stops at once; legitimate interest is decided."""
    objection_scope = parse_scope(scope)
    _submit_simple(
        RequestType.objection,
        subject,
        received,
        identity_verified,
        verified_now,
        reason,
        actor,
        as_json,
        quiet,
        objection_scope=objection_scope,
    )


@app.command()
def complain(
    subject: str = SubjectOpt,
    restrict_while_investigating: bool = typer.Option(
        False,
        "--restrict-while-investigating",
        help="Also submit a linked restriction, lifted when the complaint is resolved.",
    ),
    link: str | None = typer.Option(None, "--link", help="The request id the complaint is about."),
    received: str | None = ReceivedOpt,
    identity_verified: str | None = VerifiedOpt,
    verified_now: bool = VerifiedNowOpt,
    reason: str | None = ReasonOpt,
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Complaint to the DPO: acknowledged within the configured days; prints every id submitted."""
    linked = check_id(link) if link is not None else None
    complaint = _submission(
        RequestType.complaint,
        request_id=new_request_id(),
        subject=subject,
        received=received,
        identity_verified=identity_verified,
        verified_now=verified_now,
        reason=reason,
        actor=actor,
        linked_request_id=linked,
    )
    commands = [complaint]
    if restrict_while_investigating:
        commands.append(
            complaint.model_copy(
                update={
                    **_envelope(new_request_id(), complaint.actor),
                    "request_type": RequestType.restriction,
                    "linked_request_id": complaint.request_id,
                    "reason": f"restricted while complaint {complaint.request_id} is investigated",
                }
            )
        )
    publish(commands)
    _report(commands, as_json=as_json, quiet=quiet)


# --- follow-up commands --------------------------------------------------------------------

OnOpt = typer.Option(None, "--on", help="Date, YYYY-MM-DD (default: today, UK).")


def _follow_up(command: Command, as_json: bool, summary: str) -> None:
    publish([command])
    if as_json:
        emit_json(
            {
                "request_id": command.request_id,
                "command_id": command.command_id,
                "command": type(command).__name__,
                "topic": COMMANDS,
            }
        )
        return
    typer.echo(command.request_id)
    console.print(f"[dim]•[/] {escape(summary)}", highlight=False)


def _on(value: str | None, option: str = "--on") -> date:
    return parse_date(value, option) if value else uk_today()


@app.command()
def verify(
    request_id: str = typer.Argument(..., help="The request id (REQ-...)."),
    on: str | None = OnOpt,
    method: str = typer.Option("documents", "--method", help="How identity was verified."),
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record that the subject's identity was verified: the one-month clock starts."""
    rid = check_id(request_id)
    day = _on(on)
    cmd = IdentityVerified(**_envelope(rid, _actor(actor)), verified_on=day, method=method)
    _follow_up(cmd, as_json, f"{rid}: identity verified on {day}")


@app.command("fee-received")
def fee_received(
    request_id: str = typer.Argument(..., help="The request id (REQ-...)."),
    on: str | None = OnOpt,
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record a fee received (manifestly unfounded/excessive requests, extra copies)."""
    rid = check_id(request_id)
    day = _on(on)
    cmd = FeeReceived(**_envelope(rid, _actor(actor)), received_on=day)
    _follow_up(cmd, as_json, f"{rid}: fee received on {day}")


@app.command()
def clarify(
    request_id: str = typer.Argument(..., help="The request id (REQ-...)."),
    asked: str | None = typer.Option(
        None, "--asked", help="Date clarification was asked, YYYY-MM-DD (default: today, UK)."
    ),
    question_ref: str | None = typer.Option(
        None, "--question-ref", help="Reference of the letter or message asking."
    ),
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Ask the subject to clarify (Art. 12A): the clock pauses until the answer arrives."""
    rid = check_id(request_id)
    day = _on(asked, "--asked")
    cmd = ClarificationRequested(
        **_envelope(rid, _actor(actor)), asked_on=day, question_ref=question_ref
    )
    _follow_up(cmd, as_json, f"{rid}: clarification asked on {day}; clock paused")


@app.command()
def clarified(
    request_id: str = typer.Argument(..., help="The request id (REQ-...)."),
    on: str | None = OnOpt,
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Record the subject's clarification: the clock runs again."""
    rid = check_id(request_id)
    day = _on(on)
    cmd = ClarificationReceived(**_envelope(rid, _actor(actor)), received_on=day)
    _follow_up(cmd, as_json, f"{rid}: clarification received on {day}; clock running")


@app.command()
def extend(
    request_id: str = typer.Argument(..., help="The request id (REQ-...)."),
    reason: str = typer.Option(
        ..., "--reason", help="Why (complex or numerous requests); told to the subject."
    ),
    notified: str | None = typer.Option(
        None,
        "--notified",
        help="Date the subject was told of the extension, YYYY-MM-DD (default: today, UK).",
    ),
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Extend the deadline by two months (only within the first month, with a reason)."""
    rid = check_id(request_id)
    text = _reason(reason, required=True)
    assert text is not None
    day = _on(notified, "--notified")
    cmd = DeadlineExtended(**_envelope(rid, _actor(actor)), reason=text, notified_on=day)
    _follow_up(cmd, as_json, f"{rid}: extension requested, subject notified {day}")


@app.command()
def answer(
    request_id: str = typer.Argument(..., help="The request id (REQ-...)."),
    reason: str = typer.Option(
        ..., "--reason", help="The answer given to the subject (e.g. a complaint's outcome)."
    ),
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Close a request that needs no system work, such as a complaint, with its answer."""
    rid = check_id(request_id)
    text = _reason(reason, required=True)
    assert text is not None
    cmd = RequestAnswered(**_envelope(rid, _actor(actor)), reason=text)
    _follow_up(cmd, as_json, f"{rid}: answered")


@app.command()
def cancel(
    request_id: str = typer.Argument(..., help="The request id (REQ-...)."),
    reason: str = typer.Option(..., "--reason", help="Why the request is cancelled."),
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cancel a request (e.g. withdrawn by the subject)."""
    rid = check_id(request_id)
    text = _reason(reason, required=True)
    assert text is not None
    cmd = RequestCancelled(**_envelope(rid, _actor(actor)), reason=text)
    _follow_up(cmd, as_json, f"{rid}: cancellation submitted")


@app.command()
def refuse(
    request_id: str = typer.Argument(..., help="The request id (REQ-...)."),
    reason: str = typer.Option(
        ..., "--reason", help="Why it is manifestly unfounded or excessive; told to the subject."
    ),
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Refuse a manifestly unfounded or excessive request, with the reason."""
    rid = check_id(request_id)
    text = _reason(reason, required=True)
    assert text is not None
    cmd = RequestRefused(**_envelope(rid, _actor(actor)), reason=text)
    _follow_up(cmd, as_json, f"{rid}: refusal submitted")


@app.command("decide-objection")
def decide_objection(
    request_id: str = typer.Argument(..., help="The objection request id (REQ-...)."),
    accept: bool | None = typer.Option(
        None,
        "--accept/--refuse",
        help="Uphold the objection, or refuse it (compelling legitimate grounds).",
    ),
    reason: str = typer.Option(..., "--reason", help="The grounds for the decision."),
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Decide a legitimate-interest objection (Art. 21(1))."""
    rid = check_id(request_id)
    if accept is None:
        fail("say --accept or --refuse")
    text = _reason(reason, required=True)
    assert text is not None
    cmd = ObjectionDecided(**_envelope(rid, _actor(actor)), accepted=accept, reason=text)
    _follow_up(cmd, as_json, f"{rid}: objection {'upheld' if accept else 'refused'}")


@hold_app.command("place")
def hold_place(
    subject: str = SubjectOpt,
    category: list[str] = typer.Option(
        [],
        "--category",
        help=f"A category to hold (repeatable): {', '.join(c.value for c in Category)}.",
    ),
    reason: str = typer.Option(..., "--reason", help="Why (e.g. the investigation reference)."),
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the hold id."),
) -> None:
    """Place a legal hold; prints the hold id (keyed by it on privacy.commands)."""
    subject_id = check_id(subject, "subject id")
    categories = parse_categories(category)
    text = _reason(reason, required=True)
    assert text is not None
    hold_id = new_hold_id()
    cmd = LegalHoldPlaced(
        **_envelope(hold_id, _actor(actor)),
        hold_id=hold_id,
        subject_id=subject_id,
        categories=categories,
        reason=text,
    )
    publish([cmd])
    if as_json:
        emit_json(
            {
                "hold_id": hold_id,
                "command_id": cmd.command_id,
                "subject_id": subject_id,
                "categories": [c.value for c in categories],
                "topic": COMMANDS,
            }
        )
        return
    typer.echo(hold_id)
    if not quiet:
        console.print(
            f"[dim]•[/] legal hold {hold_id} placed on {', '.join(c.value for c in categories)}",
            highlight=False,
        )


@hold_app.command("release")
def hold_release(
    hold_id: str = typer.Argument(..., help="The hold id (HOLD-...)."),
    subject: str = SubjectOpt,
    actor: str | None = ActorOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Release a legal hold; held data follows its retention rule again."""
    hid = check_id(hold_id, "hold id")
    subject_id = check_id(subject, "subject id")
    cmd = LegalHoldReleased(**_envelope(hid, _actor(actor)), hold_id=hid, subject_id=subject_id)
    _follow_up(cmd, as_json, f"legal hold {hid} release submitted")


# --- status --------------------------------------------------------------------------------


@app.command()
def status(
    request_id: str = typer.Argument(..., help="The request id (REQ-...)."),
    as_json: bool = JsonOpt,
) -> None:
    """A request's state, deadline, tasks per system and retained data (from the worker)."""
    rid = check_id(request_id)
    resp = worker_get(f"/requests/{quote(rid, safe='')}")
    body = response_json(resp)
    if resp.status_code == 404:
        fail(
            f"unknown request {rid} (is the id right? requests appear a moment after submission)",
            EXIT_NOT_FOUND,
        )
    if resp.status_code >= 400:
        fail(
            f"the worker answered {resp.status_code}: {escape(str(body.get('error', body)))}",
            EXIT_FAILED,
        )
    if as_json:
        emit_json(body)
        return
    render_status(body)


def _s(value: Any, default: str = "-") -> str:
    return default if value is None or value == "" else escape(str(value))


def render_status(body: dict[str, Any]) -> None:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    days_left = body.get("days_left")
    if isinstance(days_left, int) and days_left < 0:
        days = f"[bold red]{-days_left} overdue[/]"
    elif isinstance(days_left, int) and days_left <= 3:
        days = f"[yellow]{days_left}[/]"
    else:
        days = _s(days_left)
    extension = "no"
    if body.get("extended"):
        extension = "yes" + (
            f": {_s(body.get('extension_reason'))}" if body.get("extension_reason") else ""
        )
    for label, value in (
        ("request", _s(body.get("request_id"))),
        ("type", _s(body.get("request_type"))),
        ("state", f"[bold]{_s(body.get('state'))}[/]"),
        ("subject ref", _s(body.get("subject_ref"))),
        ("received", _s(body.get("received_on"))),
        ("clock start", _s(body.get("clock_start"), "not started (identity or fee pending)")),
        ("due", _s(body.get("due_on"))),
        ("days left", days),
        ("paused days", _s(body.get("paused_days"), "0")),
        ("extension", extension),
    ):
        summary.add_row(label, value)
    console.print(summary)

    tasks = body.get("tasks") or []
    if tasks:
        table = Table(title="Tasks", show_lines=False)
        for col in ("system", "action", "state", "attempts", "categories", "kept (ground)"):
            table.add_column(col)
        for t in tasks:
            kept = "\n".join(
                f"{_s(k.get('category'))}: {_s(k.get('ground'))}"
                + (f" until {_s(k.get('until'))}" if k.get("until") else "")
                for k in t.get("keep") or []
            )
            state = _s(t.get("state"))
            if t.get("outcome_reason"):
                state += f"\n[dim]{_s(t.get('outcome_reason'))}[/]"
            table.add_row(
                _s(t.get("system")),
                _s(t.get("action")),
                state,
                _s(t.get("attempts")),
                ", ".join(_s(c) for c in t.get("categories") or []) or "-",
                kept or "-",
            )
        console.print(table)
    else:
        console.print("[dim]no system tasks yet[/]")

    retained = body.get("retained") or []
    if retained:
        table = Table(title="Retained data")
        for col in ("system", "category", "ground", "until"):
            table.add_column(col)
        for r in retained:
            table.add_row(
                _s(r.get("system")), _s(r.get("category")), _s(r.get("ground")), _s(r.get("until"))
            )
        console.print(table)

    history = body.get("history") or []
    if history:
        table = Table(title="History")
        for col in ("at", "event", "state"):
            table.add_column(col)
        for h in history:
            table.add_row(_s(h.get("at")), _s(h.get("event")), _s(h.get("state")))
        console.print(table)
