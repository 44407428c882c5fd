"""`privops request hold place|release|list`: legal holds keep categories from erasure, and
from each system's deletion by age (privacy.legal-holds.<system>, docs/connectors.md).

A hold belongs to no request: it has its own id, and that id, not a request id, is what
`place` prints (and `release` takes). Like every command, it travels on privacy.commands
keyed by its subject's id, so it lands on the partition holding the subject's requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape

from privops.cli.common import (
    EXIT_UNAVAILABLE,
    Json,
    check_id,
    choices,
    console,
    emit_json,
    fail,
    parse_choice,
)
from privops.cli.request.options import SEALED_HELP, WAIT_S, Actor, NoWait, Subject, Wait
from privops.cli.request.publish import (
    actor_name,
    conclude,
    envelope,
    new_hold_id,
    publish,
    publish_one,
    report,
    required_reason,
    waiting,
)
from privops.cli.worker_http import answer_json, worker_request, worker_url
from privops.core.records import LegalHoldPlaced, LegalHoldReleased
from privops.core.topics import COMMANDS
from privops.core.vocab import Category
from privops.tools.views import cell, table

app = typer.Typer(
    help=(
        "Legal holds: keep a subject's categories from erasure (Art. 17(3)(e)), and from"
        " deletion by age at each system privops knows the subject by."
    ),
    no_args_is_help=True,
)


def parse_categories(values: Sequence[str]) -> list[Category]:
    if not values:
        fail(f"give at least one --category: {choices(Category)}")
    out: list[Category] = []
    for value in values:
        category = parse_choice(Category, value, "category")
        if category not in out:
            out.append(category)
    return out


@app.command("place")
def place(
    subject: Subject,
    category: list[str] = typer.Option(
        [],
        "--category",
        help=f"A category to hold; at least one, repeatable: {choices(Category)}.",
    ),
    reason: str = typer.Option(
        ..., "--reason", help="Why (e.g. the investigation reference)." + SEALED_HELP
    ),
    actor: Actor = None,
    as_json: Json = False,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the hold id."),
    wait: Wait = WAIT_S,
    no_wait: NoWait = False,
) -> None:
    """Place a legal hold on a subject's categories; prints the new hold id (the command
    goes to privacy.commands keyed by the subject id, like every command). The worker's
    answer names the systems sent the hold (their deletion by age keeps the held data)
    and those privops could not send it to, which the DPO tells by hand."""
    subject_id = check_id(subject, "subject id")
    categories = parse_categories(category)
    text = required_reason(reason)
    seconds = waiting(wait, no_wait)
    hold_id = new_hold_id()
    cmd = LegalHoldPlaced(
        **envelope(hold_id, actor_name(actor)),
        hold_id=hold_id,
        subject_id=subject_id,
        categories=categories,
        reason=text,
    )
    verdicts = publish([cmd], seconds)
    held = [c.value for c in categories]
    if as_json:
        emit_json(
            {
                "hold_id": hold_id,
                "command_id": cmd.command_id,
                "subject_id": subject_id,
                "categories": held,
                "topic": COMMANDS,
                "answer": verdicts[0].as_json(),
            }
        )
        conclude(verdicts)
        return
    typer.echo(hold_id)
    report(verdicts, [f"legal hold {hold_id} placed on {', '.join(held)}"], quiet=quiet)


@app.command("release")
def release(
    hold_id: Annotated[str, typer.Argument(help="The hold id (HOLD-...).")],
    subject: Subject,
    actor: Actor = None,
    as_json: Json = False,
    wait: Wait = WAIT_S,
    no_wait: NoWait = False,
) -> None:
    """Release a legal hold: data no other hold keeps follows its retention rule again
    (what is already past its period goes at each system's next deletion by age)."""
    hid = check_id(hold_id, "hold id")
    subject_id = check_id(subject, "subject id")
    seconds = waiting(wait, no_wait)
    cmd = LegalHoldReleased(**envelope(hid, actor_name(actor)), hold_id=hid, subject_id=subject_id)
    publish_one(cmd, as_json, f"legal hold {hid} release submitted", seconds)


@app.command("list")
def list_holds(
    subject: Subject,
    as_json: Json = False,
) -> None:
    """A subject's legal holds, active and released: id (what `release` takes),
    categories, reason, when placed and released (from the worker)."""
    subject_id = check_id(subject, "subject id")
    body = answer_json(
        worker_request("GET", f"/holds/{quote(subject_id, safe='')}", patient=True),
        no_route=f"the privops worker at {worker_url('')} (or the worker owning the "
        "subject, which it asked) does not list holds: it is older than this CLI; upgrade it",
    )
    holds = body.get("holds")
    if not isinstance(holds, list):
        fail(
            f"the worker's answer has no list of holds ({escape(str(sorted(body))[:200])})",
            EXIT_UNAVAILABLE,
        )
    if as_json:
        emit_json(body)
        return
    if not holds:
        console.print(f"no legal holds on {escape(subject_id)}")
        return
    out = table(
        "hold", "state", "categories", "reason", "placed (UTC)", "released (UTC)",
        title=f"Legal holds on {escape(subject_id)}",
    )  # fmt: skip
    for hold in holds:
        out.add_row(
            cell(hold.get("hold_id")),
            _state(hold),
            ", ".join(cell(c) for c in hold.get("categories") or []) or "-",
            cell(hold.get("reason")),
            cell((hold.get("placed_at") or "")[:19].replace("T", " ")),
            cell((hold.get("released_at") or "")[:19].replace("T", " ")),
        )
    console.print(out)


def _state(hold: dict[str, Any]) -> str:
    if hold.get("active"):
        return "[bold]active[/]"
    return "released" if hold.get("released_at") else "not yet active"
