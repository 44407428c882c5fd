"""`privops consent check`: may we contact a subject on a channel for a purpose?

Asks the worker (`GET /consent/{subject}?purpose=&channel=`), which decides from the
subject's current consent state. Exit codes: 0 allowed, 1 not allowed, 2 bad input,
3 worker unreachable, 4 unknown subject.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from privops.cli.common import EXIT_FAILED, EXIT_NOT_FOUND, console, emit_json, fail
from privops.cli.request import check_id, response_json, worker_get
from privops.core.vocab import Channel, Purpose

app = typer.Typer(
    help="Consent and preferences: ask the worker whether a contact is allowed.",
    no_args_is_help=True,
)


def parse_purpose(value: str) -> Purpose:
    try:
        return Purpose(value.strip().lower())
    except ValueError:
        fail(f"unknown purpose '{escape(value)}': use one of {', '.join(p.value for p in Purpose)}")


def parse_channel(value: str) -> Channel:
    try:
        return Channel(value.strip().lower())
    except ValueError:
        fail(f"unknown channel '{escape(value)}': use one of {', '.join(c.value for c in Channel)}")


@app.command()
def check(
    subject: str = typer.Argument(..., help="The subject id."),
    purpose: str = typer.Option(
        ..., "--purpose", help=f"Purpose: {', '.join(p.value for p in Purpose)}."
    ),
    channel: str = typer.Option(
        ..., "--channel", help=f"Channel: {', '.join(c.value for c in Channel)}."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """ALLOWED or NOT ALLOWED with the rule, reason and evidence. Exit 0 allowed, 1 not allowed."""
    subject_id = check_id(subject, "subject id")
    p = parse_purpose(purpose)
    c = parse_channel(channel)
    resp = worker_get(
        f"/consent/{quote(subject_id, safe='')}", params={"purpose": p.value, "channel": c.value}
    )
    body = response_json(resp)
    if resp.status_code == 404:
        fail(f"unknown subject {escape(subject_id)}", EXIT_NOT_FOUND)
    if resp.status_code >= 400:
        fail(
            f"the worker answered {resp.status_code}: {escape(str(body.get('error', body)))}",
            EXIT_FAILED,
        )
    allowed = body.get("allowed") is True
    if as_json:
        emit_json(body)
    else:
        render_decision(body, allowed)
    if not allowed:
        raise typer.Exit(EXIT_FAILED)


def _s(value: Any) -> str:
    return "-" if value is None or value == "" else escape(str(value))


def render_decision(body: dict[str, Any], allowed: bool) -> None:
    verdict = "[bold green]ALLOWED[/]" if allowed else "[bold red]NOT ALLOWED[/]"
    console.print(
        f"{verdict}  {_s(body.get('purpose'))} by {_s(body.get('channel'))} "
        f"for {_s(body.get('subject_id'))}",
        highlight=False,
    )
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("rule", _s(body.get("rule")))
    grid.add_row("reason", _s(body.get("reason")))
    evidence = body.get("evidence")
    if isinstance(evidence, dict):
        grid.add_row(
            "evidence",
            f"{_s(evidence.get('basis'))} from {_s(evidence.get('source'))} "
            f"at {_s(evidence.get('occurred_at'))}",
        )
        grid.add_row("event", _s(evidence.get("event_id")))
        if evidence.get("reference"):
            grid.add_row("reference", _s(evidence.get("reference")))
    else:
        grid.add_row("evidence", "none recorded")
    console.print(grid)
