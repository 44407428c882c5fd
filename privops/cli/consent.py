"""`privops consent check`: may we contact a subject on a channel for a purpose?

Asks the worker (`GET /consent/{subject}?purpose=&channel=`), which decides from the
subject's current consent state. Exit codes: 0 allowed, 1 not allowed, 2 bad input or
the worker refused our credentials, 3 worker unreachable or unable to answer (never 1:
a script reads 1 as "do not contact", and an outage is not a decision), 4 unknown subject.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import typer

from privops.cli.common import (
    EXIT_FAILED,
    EXIT_UNAVAILABLE,
    Json,
    check_id,
    choices,
    console,
    emit_json,
    fail,
    parse_choice,
    shown,
)
from privops.cli.worker_http import worker_json
from privops.core.vocab import Channel, Purpose
from privops.tools.views import cell, grid

app = typer.Typer(
    help="Consent and preferences: ask the worker whether a contact is allowed.",
    no_args_is_help=True,
)


@app.command()
def check(
    subject: str = typer.Argument(..., help="The subject id."),
    purpose: str = typer.Option(..., "--purpose", help=f"Purpose: {choices(Purpose)}."),
    channel: str = typer.Option(..., "--channel", help=f"Channel: {choices(Channel)}."),
    as_json: Json = False,
) -> None:
    """ALLOWED or NOT ALLOWED with the rule, reason and evidence. Exit 0 allowed, 1 not
    allowed, 2 bad input, 3 no answer from the worker, 4 unknown subject."""
    subject_id = check_id(subject, "subject id")
    p = parse_choice(Purpose, purpose, "purpose")
    c = parse_choice(Channel, channel, "channel")
    body = worker_json(
        f"/consent/{quote(subject_id, safe='')}",
        params={"purpose": p.value, "channel": c.value},
        not_found=f"unknown subject {shown(subject_id)}",
    )
    allowed = body.get("allowed")
    if not isinstance(allowed, bool):
        fail(
            "the worker's answer holds no allowed decision: is it the same privops version?",
            EXIT_UNAVAILABLE,
        )
    asked = {"subject_id": subject_id, "purpose": p.value, "channel": c.value}
    if any(body.get(name) != value for name, value in asked.items()):
        # A decision about something else (an older worker ignoring the query, a proxy's
        # cache) was printed as if it answered the question, and exit 0 (review,
        # session 35).
        fail(
            "the worker's answer is about another subject, purpose or channel than was "
            "asked: is it the privops worker, of this version?",
            EXIT_UNAVAILABLE,
        )
    if as_json:
        emit_json(body)
    else:
        render_decision(body, allowed)
    if not allowed:
        raise typer.Exit(EXIT_FAILED)


def render_decision(body: dict[str, Any], allowed: bool) -> None:
    verdict = "[bold green]ALLOWED[/]" if allowed else "[bold red]NOT ALLOWED[/]"
    console.print(
        f"{verdict}  {cell(body.get('purpose'))} by {cell(body.get('channel'))} "
        f"for {cell(body.get('subject_id'))}",
        highlight=False,
    )
    summary = grid()
    summary.add_row("rule", cell(body.get("rule")))
    summary.add_row("reason", cell(body.get("reason")))
    evidence = body.get("evidence")
    if isinstance(evidence, dict):
        summary.add_row(
            "evidence",
            f"{cell(evidence.get('basis'))} from {cell(evidence.get('source'))} "
            f"at {cell(evidence.get('occurred_at'))}",
        )
        summary.add_row("event", cell(evidence.get("event_id")))
        if evidence.get("reference"):
            summary.add_row("reference", cell(evidence.get("reference")))
    else:
        summary.add_row("evidence", "none recorded")
    console.print(summary)
