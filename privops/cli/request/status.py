"""`privops request status`: a request as the worker sees it.

The worker owns request state (the CLI only publishes commands), so status is a question
over HTTP; `--json` prints the worker's answer unchanged.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from rich.table import Table

from privops.cli.common import EXIT_UNAVAILABLE, Json, check_id, console, emit_json, fail
from privops.cli.request.options import RequestId
from privops.cli.worker_http import worker_json, worker_url
from privops.core.vocab import OPEN_STATES, Capacity
from privops.tools.views import art15_table, cell, exports_table, grid, table, task_exports


def status(request_id: RequestId, as_json: Json = False) -> None:
    """A request's state, deadline, tasks per system, retained data and, for an access
    request, its exports and the Art. 15 response (from the worker)."""
    rid = check_id(request_id)
    body = worker_json(
        f"/requests/{quote(rid, safe='')}",
        not_found=(
            f"unknown request {rid} (is the id right? requests appear a moment after "
            "submission, and a finished request's record is deleted once the data map's "
            "request_records.period_days have passed; the audit trail keeps its steps)"
        ),
    )
    if not _a_status_of(body, rid):
        # An older or newer worker, or another server that answers JSON at that path:
        # rendered as it was, "{}" read as a request with no state, and a list given
        # as a string crashed the table (review, session 35).
        fail(
            f"the worker at {worker_url('')} did not answer with the status of request "
            f"{rid}; is it the privops worker, of this version?",
            EXIT_UNAVAILABLE,
        )
    if as_json:
        emit_json(body)
        return
    render_status(body)


_LISTS = ("tasks", "retained", "history", "pauses")


def _a_status_of(body: Any, request_id: str) -> bool:
    """Whether ``body`` is what a worker answers for ``request_id``: its id and state,
    and each list a list of objects."""
    return (
        isinstance(body, dict)
        and body.get("request_id") == request_id
        and isinstance(body.get("state"), str)
        and all(
            isinstance(rows := body.get(name) or [], list)
            and all(isinstance(row, dict) for row in rows)
            for name in _LISTS
        )
    )


def render_status(body: dict[str, Any]) -> None:
    console.print(_summary(body))
    tasks = _tasks(body.get("tasks") or [])
    console.print(tasks if tasks is not None else "[dim]no system tasks yet[/]")
    retained = _rows(
        "Retained data",
        ("system", "category", "ground", "until"),
        body.get("retained") or [],
    )
    exports = exports_table(_marked(body))
    history = _rows("History", ("at", "event", "state"), body.get("history") or [])
    for part in (retained, exports, history):
        if part is not None:
            console.print(part)
    if body.get("state") == AWAITING_REVIEW:
        console.print(review_hint(str(body.get("request_id")), bool(body.get("send_to"))))
    manifest = body.get("manifest")
    if isinstance(manifest, dict) and manifest.get("kind", ACCESS) == ACCESS:
        console.print("[bold]Art. 15 response[/] (what the subject is told)")
        console.print(art15_table(manifest))


AWAITING_REVIEW = "awaiting_review"
ACCESS = "access_response"
"""An access response's manifest; a portability response's record (``kind``
``portability_response``) says only which copies were sent or left out, as the exports
table shows."""


def _marked(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The exports, each the DPO withheld from the response marked so (the manifest's
    ``withheld_exports``): the status must not show a withheld copy as one sent."""
    manifest = body.get("manifest") if isinstance(body.get("manifest"), dict) else {}
    withheld = {w.get("system") for w in (manifest or {}).get("withheld_exports") or []}
    return [
        {**e, "withheld": e.get("system") in withheld}
        for e in task_exports(body.get("tasks") or [])
    ]


def review_hint(request_id: str, send_on: bool = False) -> str:
    """What the DPO does with a response held for review (the exports above list the
    copies; those marked redacted are the DPO's own); ``send_on``: the subject asked for
    the copies to be sent to another organisation (Art. 20(2))."""
    rid = cell(request_id)
    redact = f"privops request redact {rid} --system SYSTEM --location URL --records N --sha256 HEX"
    if send_on:
        return (
            "[bold yellow]Awaiting you:[/] the subject asked for the copies above to be sent "
            "to the organisation named (Art. 20(2)); nothing goes to the subject until you "
            "approve, and the deadline runs on.\n"
            f"  1. a copy showing other people: redact it ({redact}), or decide to "
            "--withhold or --disclose it\n"
            "  2. send the organisation the copies as the subject gets them (redacted, "
            "without those you withhold)\n"
            f"  3. privops request approve {rid} --sent-on YYYY-MM-DD (or --not-feasible "
            "WHY), with the --withhold/--disclose/--reason of step 1\n"
            f"  withdrawn by the subject before you sent them: privops request cancel {rid} "
            "--reason TEXT"
        )
    return (
        "[bold yellow]Awaiting your review:[/] a copy above may show other people, and "
        "nothing goes to the subject until you approve; the deadline runs on.\n"
        f"  redact a copy:  {redact}\n"
        f"  then send it:   privops request approve {rid} [--withhold SYSTEM] --reason TEXT"
    )


def _lifted_nothing(body: dict[str, Any]) -> str:
    """Why a lift lifted nothing (from 0.45): other restrictions still stand, named by
    their requests, or the one it named had already ended."""
    others = [cell(x) for x in body.get("still_restricted_by") or []]
    if others:
        return "still restricted by " + ", ".join(others)
    return "the restriction it named had already ended"


def _send_to(body: dict[str, Any]) -> str:
    """Where the subject asked for the copies to go, and what became of it (the
    record's ``transmission``, once the response went out)."""
    manifest = body.get("manifest")
    done = manifest.get("transmission") if isinstance(manifest, dict) else None
    told = cell(body.get("send_to"))
    if not isinstance(done, dict):
        return told + " [dim](not sent yet)[/]" if body.get("state") == AWAITING_REVIEW else told
    if done.get("sent_on"):
        what = f"sent on {cell(done['sent_on'])}"
    elif done.get("not_feasible"):
        what = f"not technically feasible: {cell(done.get('why_not'), 'why not kept')}"
    else:
        what = "nothing sent"
    pending = done.get("pending")
    if isinstance(pending, list) and pending:
        what += "; still to send once made: " + ", ".join(cell(s) for s in pending)
    return f"{told} [dim]({what})[/]"


def _representative(body: dict[str, Any]) -> str:
    """Who made the request for the subject, in what capacity, and whether the evidence
    of their authority is in; while it is not, what waits for it and how to record it."""
    who = cell(body.get("representative"), "their details are not kept")
    capacity = cell(body.get("capacity"), "capacity not kept")
    received = body.get("authority_received_on")
    if received:
        return f"{who} [dim]({capacity}; authority received {cell(received)})[/]"
    if body.get("state") not in {s.value for s in OPEN_STATES}:
        return f"{who} [dim]({capacity}; no evidence of authority recorded)[/]"
    rid = cell(body.get("request_id"))
    waits = (
        "[bold yellow]waiting for the evidence of their authority[/]"
        if body.get("awaiting_authority")
        else "no evidence of their authority yet (the notices go to the subject meanwhile)"
    )
    return (
        f"{who} [dim]({capacity})[/]\n{waits}: record the day it arrived, privops request "
        f"authority {rid} --on YYYY-MM-DD"
        + (_CHILD if body.get("capacity") == Capacity.parent.value else "")
    )


def _waits_for(body: dict[str, Any]) -> str:
    """An erasure's wait for the subject's access or portability responses to go out."""
    ids = body["waits_for"]
    listed = ", ".join(cell(i) for i in ids) if isinstance(ids, list) else cell(ids)
    rid = cell(body.get("request_id"))
    return (
        f"{listed} [dim](the subject's access or portability responses first; its work "
        f"goes out on {cell(body.get('erase_on'))}, or sooner if each still to go out closes "
        f"without copies; the subject has their copies: privops request erase-now {rid})[/]"
    )


_CHILD: Final = (
    "\n[dim]for a child: act for a parent only if the child cannot understand their "
    "rights, or authorised it, or it is in their best interests; a child who can is "
    "answered themselves[/]"
)


def days_left_cell(days_left: Any) -> str:
    if isinstance(days_left, int) and days_left < 0:
        return f"[bold red]{-days_left} overdue[/]"
    if isinstance(days_left, int) and days_left <= 3:
        return f"[yellow]{days_left}[/]"
    return cell(days_left)


def _extension(body: dict[str, Any]) -> str:
    if not body.get("extended"):
        return "no"
    reason = body.get("extension_reason")
    return "yes" + (f": {cell(reason)}" if reason else "")


def _search(details: Any) -> str:
    """An access request's search details, as the subject gave them (the DPO looks for
    them in the footage found)."""
    if not isinstance(details, dict):
        return "?"
    return "; ".join(f"{cell(name)} {cell(value)}" for name, value in details.items())


def _summary(body: dict[str, Any]) -> Table:
    summary = grid()
    for label, value in (
        ("request", cell(body.get("request_id"))),
        ("type", cell(body.get("request_type"))),
        ("state", f"[bold]{cell(body.get('state'))}[/]"),
        ("subject ref", cell(body.get("subject_ref"))),
        ("received", cell(body.get("received_on"))),
        ("identity info", cell(body.get("identity_received_on"), "not received")),
        ("identity verified", cell(body.get("identity_verified_on"), "no")),
        (
            "clock start",
            cell(body.get("clock_start"), "not started (identity, authority or fee pending)"),
        ),
        ("due", cell(body.get("due_on"))),
        ("days left", days_left_cell(body.get("days_left"))),
        # How far the pauses moved the month's end (deadlines.CountedPause.moves): their
        # days, and for one asked while the due date was rolled, the days up to it.
        ("days added by pauses", cell(body.get("paused_days"), "0")),
        ("extension", _extension(body)),
        *(
            [("objection upheld for", ", ".join(cell(p) for p in body["objected_purposes"]))]
            if body.get("objected_purposes")
            else []
        ),
        *([("refused on", cell(body["refusal_ground"]))] if body.get("refusal_ground") else []),
        *([("searched by", _search(body["search"]))] if body.get("search") else []),
        *([("send copies to", _send_to(body))] if body.get("send_to") else []),
        *(
            [("made by", _representative(body))]
            if body.get("capacity") or body.get("authority_received_on")
            else []
        ),
        *([("waits for", _waits_for(body))] if body.get("waits_for") else []),
        *([("lifted nothing", _lifted_nothing(body))] if body.get("lifted_nothing") else []),
        *(
            [
                (
                    "kept from deletion",
                    "what the search finds, at " + ", ".join(map(cell, body["preserved"])),
                )
            ]
            if body.get("preserved")
            else []
        ),
        ("record kept until", cell(body.get("record_kept_until"), "not finished yet")),
    ):
        summary.add_row(label, value)
    return summary


def _tasks(tasks: list[dict[str, Any]]) -> Table | None:
    if not tasks:
        return None
    out = table(
        "system", "action", "state", "attempts", "categories", "kept (ground)", title="Tasks"
    )
    for t in tasks:
        kept = "\n".join(
            f"{cell(k.get('category'))}: {cell(k.get('ground'))}"
            + (f" until {cell(k.get('until'))}" if k.get("until") else "")
            for k in t.get("keep") or []
        )
        state = cell(t.get("state"))
        if t.get("outcome_reason"):
            state += f"\n[dim]{cell(t.get('outcome_reason'))}[/]"
        out.add_row(
            cell(t.get("system")),
            cell(t.get("action")),
            state,
            cell(t.get("attempts")),
            ", ".join(cell(c) for c in t.get("categories") or []) or "-",
            kept or "-",
        )
    return out


def _rows(title: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Table | None:
    """A table of the worker's rows by column name, or None when there are none."""
    if not rows:
        return None
    out = table(*columns, title=title)
    for row in rows:
        out.add_row(*(cell(row.get(col)) for col in columns))
    return out
